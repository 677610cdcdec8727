"""deploy_model and the rollout's steps on the real local backends: registry and ledger in an
emulated bucket, step tasks in the local queue, an endpoint of real prediction-server processes.

Steps are delivered here by :meth:`World.drain`, in due order, as the mesh's delivery loop
would; each deployment starts a real server (seconds), so every test deploys only what its
claim needs."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from rollout_world import World, live
from run_folders import variant

from salesmesh.events import StorageObject
from salesmesh.ports import CHAMPION, PREVIOUS
from salesmesh.rollout import deploy


def test_first_run_takes_all_traffic_and_a_redelivery_changes_nothing(
    world: World, model_artifact: Path
) -> None:
    """The first run becomes champion at 100 %; delivering its manifest again is a no-op."""
    manifest = world.publish(model_artifact, "r-first")
    outcome = world.deliver(manifest)
    assert (outcome.action, outcome.step) == ("queued", "deploying")
    world.drain()
    version = world.version_of("r-first")
    assert version["state"] == "deployed", version
    champion = world.registry.alias(CHAMPION)
    assert champion is not None and champion.version_id == version["version_id"]
    assert champion.labels["salesmesh-run"] == "r-first"
    assert champion.labels["salesmesh-deploy"] == "deployed"  # the label copy
    assert champion.metrics["protocol"]["horizon"] == 28
    (model,) = world.endpoint.deployed()
    assert world.endpoint.traffic() == {model.id: 100}
    doc = world.ledger.read().document
    assert [r["state"] for r in doc["rollouts"][0]["transitions"]] == [
        "registered",
        "deploying",
        "promoting",
        "done",
    ]
    assert [(h["from"], h["to"]) for h in doc["history"]] == [({}, {"1": 100})]

    again = world.deliver(manifest)
    assert (again.action, again.reason) == ("duplicate", "already deployed")
    assert world.drain() == []
    assert len(world.registry.versions()) == 1 and len(world.endpoint.deployed()) == 1


def test_worse_run_is_registered_but_gated(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """A challenger worse than the champion beyond tolerance is registered, not deployed."""
    good = variant(model_artifact, tmp_path / "good", 0.50)
    assert world.ship(good, "r-good")["state"] == "deployed"
    gated = world.ship(model_artifact, "r-worse")
    assert gated["state"] == "gated"
    assert "credibly worse" in gated["reason"], gated["reason"]
    assert "higher than the champion's" in gated["reason"]
    assert gated["gate"]["mode"] == "naive_relative"
    version = world.registry.get(gated["version_id"])
    assert version is not None and version.labels["salesmesh-deploy"] == "gated"
    assert [d.version_id for d in world.endpoint.deployed()] == ["1"]
    assert any("gated, not deployed" in m for m in world.log.messages("WARNING"))


def test_better_run_canaries_then_promotes_and_old_ones_retire(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """Canary share first, then 100 %; the old champion stays at 0 %, older ones go."""
    world.settings = dataclasses.replace(world.settings, canary_percent=25)
    assert world.ship(model_artifact, "r-one")["state"] == "deployed"
    seen: list[dict[str, int]] = []
    real = world.endpoint.set_traffic
    with (
        mock.patch.object(world.endpoint, "set_traffic", autospec=True) as spy,
        mock.patch.object(world.metrics, "window", autospec=True, side_effect=live(50)),
    ):
        spy.side_effect = lambda split: (seen.append(dict(split)), real(split))[1]
        second = world.ship(variant(model_artifact, tmp_path / "b", 0.80), "r-two")
    assert second["state"] == "deployed", second
    first_id, second_id = (d.id for d in world.endpoint.deployed())
    assert seen == [{first_id: 75, second_id: 25}, {first_id: 0, second_id: 100}]
    assert world.split_by_version() == {"1": 0, "2": 100}
    assert [(v.version_id, v.aliases) for v in world.registry.versions()] == [
        ("1", (PREVIOUS,)),
        ("2", (CHAMPION,)),
    ]
    assert world.version_of("r-one")["state"] == "standby"

    with mock.patch.object(world.metrics, "window", autospec=True, side_effect=live(50)):
        third = world.ship(variant(model_artifact, tmp_path / "c", 0.79), "r-three")
    assert third["state"] == "deployed"
    assert world.split_by_version() == {"2": 0, "3": 100}  # version 1 retired: keep 2
    assert world.version_of("r-one")["state"] == "retired"
    history = world.ledger.read().document["history"]
    assert [h["to"] for h in history] == [
        {"1": 100},
        {"1": 75, "2": 25},
        {"1": 0, "2": 100},
        {"1": 0, "2": 75, "3": 25},
        {"1": 0, "2": 0, "3": 100},
    ]


def test_failed_health_check_leaves_the_split_untouched(
    world: World, model_artifact: Path, broken_artifact: Path, tmp_path: Path
) -> None:
    """A run whose server never becomes healthy is failed; traffic stays put."""
    world.ship(model_artifact, "r-one")
    (first,) = world.endpoint.deployed()
    broken = variant(broken_artifact, tmp_path / "broken", 0.10)  # would win the gate
    failed = world.ship(broken, "r-broken")
    assert failed["state"] == "failed"
    assert "deployment failed" in failed["reason"]
    assert world.endpoint.traffic() == {first.id: 100}
    version = world.registry.get(failed["version_id"])
    assert version is not None and version.aliases == ()
    assert world.deliver(world.publish(broken, "r-broken")).action == "duplicate"


@pytest.mark.parametrize(
    ("requests", "errors", "p99", "why"),
    [
        (200, 30, 20.0, "30 of 200 live requests failed"),
        (200, 0, 900.0, "live p99 latency 900 ms is over 500 ms"),
    ],
)
def test_canary_failing_live_traffic_is_rolled_back(
    world: World,
    model_artifact: Path,
    tmp_path: Path,
    requests: int,
    errors: int,
    p99: float,
    why: str,
) -> None:
    """If the canary's live requests fail or are slow, the split returns to what it was."""
    world.ship(model_artifact, "r-one")
    (first,) = world.endpoint.deployed()
    with mock.patch.object(
        world.metrics, "window", autospec=True, side_effect=live(requests, errors, p99)
    ):
        failed = world.ship(variant(model_artifact, tmp_path / "b", 0.7), "r-2")
    assert failed["state"] == "failed"
    assert why in failed["reason"]
    assert world.endpoint.traffic() == {first.id: 100}
    assert [d.id for d in world.endpoint.deployed()] == [first.id]
    assert world.ledger.read().document["history"][-1]["why"].startswith("rolled back")


def test_a_canary_without_traffic_is_extended_then_promoted_on_its_probe(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """Too few live requests for a verdict: the canary runs longer, then the health probe
    alone decides, and the ledger says so."""
    # long enough that a step delayed by a loaded machine still lands inside the extension
    # (the canary may run to twice its time): 0.3 s was taken over whole by a slow step once
    world.settings = dataclasses.replace(world.settings, canary_seconds=2.0)
    world.ship(model_artifact, "r-one")
    promoted = world.ship(variant(model_artifact, tmp_path / "b", 0.7), "r-2")
    assert promoted["state"] == "deployed"
    rollout = world.ledger.read().document["rollouts"][-1]
    reasons = [t["reason"] for t in rollout["transitions"]]
    assert any(r.startswith("canary extended: 0 live request(s)") for r in reasons), reasons
    assert any(r.startswith("promoted on the health probe alone") for r in reasons), reasons


def test_tampered_artifact_is_refused_before_registration(
    world: World, model_artifact: Path
) -> None:
    """A file that does not match its manifest: nothing registered, ERROR logged."""
    manifest = world.publish(model_artifact, "r-tampered")
    world.bucket.blob("runs/r-tampered/series.csv").upload_from_string("series_id\nX\n")
    outcome = world.deliver(manifest)
    assert outcome.action == "rejected"
    assert "series.csv" in outcome.reason and "sha256" in outcome.reason
    assert world.registry.versions() == []
    assert any("refusing to deploy run r-tampered" in m for m in world.log.messages("ERROR"))


@pytest.mark.parametrize(
    "name",
    ["runs/r-1/model.lgb.txt", "uploads/x.csv", "runs/Bad Id/manifest.json", "manifest.json"],
)
def test_other_objects_are_ignored(world: World, name: str) -> None:
    """Only a run's manifest starts a deployment; everything else is ignored, cheaply."""
    outcome = world.deliver(StorageObject(world.bucket.name, name, "1"))
    assert outcome.action == "ignored"
    assert world.registry.versions() == []


def test_vertex_layout_is_recognised() -> None:
    """Vertex AI nests the artifact in model/: the run id is still the folder under runs/."""
    assert deploy.run_of("runs/r-1/model/manifest.json") == ("r-1", "runs/r-1/model/")
    assert deploy.run_of("runs/r-1/manifest.json") == ("r-1", "runs/r-1/")


def test_concurrent_deliveries_deploy_once(world: World, model_artifact: Path) -> None:
    """Five simultaneous deliveries of one manifest: one version queued, one deployment."""
    manifest = world.publish(model_artifact, "r-once")
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(world.deliver(manifest).action))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.drain()
    assert sorted(outcomes).count("queued") == 1 and len(outcomes) == 5
    assert len(world.registry.versions()) == 1 and len(world.endpoint.deployed()) == 1
    assert world.version_of("r-once")["state"] == "deployed"


def test_a_stale_step_changes_nothing(world: World, model_artifact: Path) -> None:
    """A step scheduled for an older ledger sequence neither acts nor writes the ledger."""
    world.deliver(world.publish(model_artifact, "r-one"))
    before = world.ledger.read()
    with mock.patch.object(world.endpoint, "set_traffic", autospec=True) as changed:
        outcome = deploy.handle_step(
            {"endpoint": "salesmesh", "seq": before.document["seq"] - 1}, world.rollouts()
        )
    assert outcome == "stale"
    assert changed.call_count == 0
    assert world.ledger.read().generation == before.generation
    world.drain()
    assert world.version_of("r-one")["state"] == "deployed"


def test_two_rollouts_started_at_once_never_interleave(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """Two runs arriving together are rolled out one after the other, never both at once."""
    world.ship(model_artifact, "r-one")
    runs = {"r-a": variant(model_artifact, tmp_path / "a", 0.7), "r-b": None}
    runs["r-b"] = variant(model_artifact, tmp_path / "b", 0.69)
    manifests = [world.publish(folder, run) for run, folder in runs.items() if folder]
    threads = [threading.Thread(target=world.deliver, args=(m,)) for m in manifests]
    with mock.patch.object(world.metrics, "window", autospec=True, side_effect=live(50)):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        world.drain()
    doc = world.ledger.read().document
    spans = [
        (r["transitions"][0]["at"], r["transitions"][-1]["at"], r["run_id"])
        for r in doc["rollouts"][1:]
    ]
    assert len(spans) == 2 and spans[0][1] <= spans[1][0], spans
    assert {world.version_of(r)["state"] for r in ("r-a", "r-b")} == {"deployed", "standby"}
    assert sum(world.endpoint.traffic().values()) == 100


def test_a_registration_claim_is_held_once_and_taken_over_when_stale() -> None:
    """One delivery claims a run's registration; another waits while the claim is young,
    takes it over once its holder must be dead, and nobody claims a run already queued."""
    from salesmesh.rollout import record
    from salesmesh.rollout.ledger import empty

    doc = empty("salesmesh")
    assert record.claim_registration("r-1", "a", 100.0, 300.0, doc) is True
    assert record.claim_registration("r-1", "a", 101.0, 300.0, doc) is True  # its own again
    assert record.claim_registration("r-1", "b", 200.0, 300.0, doc) is None
    assert record.claim_registration("r-1", "b", 401.0, 300.0, doc) is True
    assert doc["registering"]["r-1"]["token"] == "b"
    doc["runs"]["r-1"] = "1"
    assert record.claim_registration("r-1", "c", 900.0, 300.0, doc) is False


def test_a_delivery_finding_the_run_being_registered_asks_to_be_retried(
    world: World, model_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another delivery holds a fresh claim on the run, a delivery waits, then fails
    with a retry-later error: the event comes again and nothing is registered twice."""
    manifest = world.publish(model_artifact, "r-busy")
    world.ledger.update(
        lambda doc: doc.setdefault("registering", {}).update(
            {"r-busy": {"token": "someone", "at": time.time()}}
        )
    )
    monkeypatch.setattr(deploy, "CLAIM_WAIT_SECONDS", 0.5)
    with pytest.raises(deploy.DeployInProgressError, match="being registered by another"):
        world.deliver(manifest)
    assert world.registry.versions() == []


def test_the_functions_cold_path_does_not_import_the_gate() -> None:
    """deploy_model fires for every object in the model bucket and alert_handler for every
    incident: importing their cores must not load pandas, which only gating needs."""
    import subprocess
    import sys

    code = (
        "import sys, salesmesh.rollout.deploy, salesmesh.alerts.handler; "
        "print(sorted(m for m in ('pandas', 'salesmesh.gate.runs') if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
