"""The ModelRegistry contract, run against every backend (fsspec's abstract test style).

A backend's test module subclasses :class:`RegistryContract` and provides a ``registry``
fixture: a fresh registry of one model with no versions yet.
"""

from __future__ import annotations

from typing import Any

import pytest

from salesmesh.ports import CHAMPION, PREVIOUS, ModelRegistry

METRICS: dict[str, Any] = {
    "protocol": {"horizon": 28, "origins": ["2025-11-05", "2025-12-03"], "freq": "D"},
    "models": {"salesmesh": {"mase": 0.88, "wape": 51.2}, "seasonal_naive": {"mase": 1.18}},
}
LABELS = {"salesmesh-run": "r-0123456789abcdef", "salesmesh-correlation": "c-0123456789abcdef"}


def register(registry: ModelRegistry, run: str, **kwargs: Any) -> Any:
    labels = {**LABELS, "salesmesh-run": run}
    return registry.register(
        f"gs://salesmesh-models/runs/{run}", labels=labels, metrics=METRICS, **kwargs
    )


class RegistryContract:
    """What every ModelRegistry backend must do."""

    def test_empty_registry(self, registry: ModelRegistry) -> None:
        """A new registry has no versions, no aliases and finds nothing."""
        assert registry.versions() == []
        assert registry.alias(CHAMPION) is None
        assert registry.get("1") is None
        assert registry.find({"salesmesh-run": "r-1"}) == []

    def test_register_keeps_artifact_labels_and_metrics(self, registry: ModelRegistry) -> None:
        """A registered version returns its artifact, labels, metrics and a creation time."""
        version = register(registry, "r-1")
        assert version.artifact_uri == "gs://salesmesh-models/runs/r-1"
        assert dict(version.labels) == {**LABELS, "salesmesh-run": "r-1"}
        assert version.metrics["models"]["salesmesh"]["mase"] == pytest.approx(0.88)
        assert version.metrics["protocol"]["horizon"] == 28
        assert version.created.endswith("Z")
        assert registry.get(version.version_id) == version

    def test_versions_are_distinct_and_ordered(self, registry: ModelRegistry) -> None:
        """Each registration is a new version of the same model, listed oldest first."""
        ids = [register(registry, f"r-{n}").version_id for n in range(3)]
        assert len(set(ids)) == 3
        assert [v.version_id for v in registry.versions()] == ids
        assert [v.labels["salesmesh-run"] for v in registry.versions()] == ["r-0", "r-1", "r-2"]

    def test_find_by_labels(self, registry: ModelRegistry) -> None:
        """find() returns the versions carrying every given label and nothing else."""
        register(registry, "r-1")
        second = register(registry, "r-2")
        assert registry.find({"salesmesh-run": "r-2"}) == [second]
        assert registry.find({"salesmesh-run": "r-2", "salesmesh-correlation": "other"}) == []
        assert len(registry.find({"salesmesh-correlation": LABELS["salesmesh-correlation"]})) == 2

    def test_aliases_given_at_registration(self, registry: ModelRegistry) -> None:
        """Aliases passed to register() name the new version."""
        version = register(registry, "r-1", aliases=[CHAMPION])
        assert registry.alias(CHAMPION) == version
        assert version.aliases == (CHAMPION,)

    def test_alias_moves_to_one_version(self, registry: ModelRegistry) -> None:
        """set_alias gives the alias to one version and takes it from the one that held it."""
        first = register(registry, "r-1", aliases=[CHAMPION])
        second = register(registry, "r-2")
        registry.set_alias(PREVIOUS, first.version_id)
        registry.set_alias(CHAMPION, second.version_id)
        champion, previous = registry.alias(CHAMPION), registry.alias(PREVIOUS)
        assert champion is not None and champion.version_id == second.version_id
        assert previous is not None and previous.version_id == first.version_id
        holders = [v for v in registry.versions() if CHAMPION in v.aliases]
        assert [v.version_id for v in holders] == [second.version_id]
        moved = registry.get(first.version_id)
        assert moved is not None and moved.aliases == (PREVIOUS,)

    def test_remove_alias_takes_it_from_its_holder(self, registry: ModelRegistry) -> None:
        """remove_alias leaves no version holding the alias; removing it again is a no-op."""
        first = register(registry, "r-1", aliases=[CHAMPION, PREVIOUS])
        registry.remove_alias(PREVIOUS)
        registry.remove_alias(PREVIOUS)
        assert registry.alias(PREVIOUS) is None
        kept = registry.get(first.version_id)
        assert kept is not None and kept.aliases == (CHAMPION,)
        with pytest.raises(ValueError):
            registry.remove_alias("Not An Alias!")

    def test_alias_at_registration_moves_too(self, registry: ModelRegistry) -> None:
        """Registering with an alias another version holds moves it to the new version."""
        first = register(registry, "r-1", aliases=[CHAMPION])
        second = register(registry, "r-2", aliases=[CHAMPION])
        assert registry.alias(CHAMPION) == registry.get(second.version_id)
        old = registry.get(first.version_id)
        assert old is not None and CHAMPION not in old.aliases

    def test_set_alias_on_unknown_version(self, registry: ModelRegistry) -> None:
        """Aliasing a version that does not exist raises KeyError and changes nothing."""
        register(registry, "r-1", aliases=[CHAMPION])
        with pytest.raises(KeyError):
            registry.set_alias(CHAMPION, "999")
        assert registry.alias(CHAMPION) is not None

    def test_invalid_alias_names(self, registry: ModelRegistry) -> None:
        """Alias names that Vertex AI refuses are refused by every backend."""
        version = register(registry, "r-1")
        for bad in ("Champion", "7", "default", "", "with space"):
            with pytest.raises(ValueError):
                registry.set_alias(bad, version.version_id)

    def test_update_labels_merges(self, registry: ModelRegistry) -> None:
        """update_labels adds and replaces labels, keeping the others."""
        version = register(registry, "r-1")
        updated = registry.update_labels(version.version_id, {"salesmesh-deploy": "gated"})
        assert updated.labels["salesmesh-deploy"] == "gated"
        assert updated.labels["salesmesh-run"] == "r-1"
        again = registry.update_labels(version.version_id, {"salesmesh-deploy": "deployed"})
        assert again.labels["salesmesh-deploy"] == "deployed"
        assert registry.get(version.version_id) == again

    def test_update_labels_of_unknown_version(self, registry: ModelRegistry) -> None:
        """Labelling a version that does not exist raises KeyError."""
        with pytest.raises(KeyError):
            registry.update_labels("999", {"salesmesh-deploy": "gated"})

    def test_label_values_must_be_label_safe(self, registry: ModelRegistry) -> None:
        """A label Vertex AI would refuse (uppercase, '/', over 63 characters) is ValueError."""
        for bad in ({"salesmesh-run": "R-1"}, {"src": "gs://b/x"}, {"k": "x" * 64}):
            with pytest.raises(ValueError):
                registry.register("gs://salesmesh-models/runs/x", labels=bad, metrics=METRICS)
        assert registry.versions() == []
