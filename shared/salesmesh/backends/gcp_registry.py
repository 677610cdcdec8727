"""Vertex AI Model Registry backend: every run is a new version of one model.

The model's id is ``model_name`` (``projects/P/locations/L/models/<model_name>``). The first
``register`` creates it with ``model_id``; later ones add versions with ``parent_model``.

``default`` is Vertex AI's alias, not ours. Vertex AI gives it to a model's first version and
requires exactly one version to hold it; it is what ``Model(name)`` without a version, the console
and ``gcloud`` pick. salesmesh always names versions explicitly (``<model>@<version_id>``) and
marks the serving one with ``champion``, so ``default`` stays on version 1 (every later upload
passes ``is_default_version=False``: a fresh, ungated challenger must not become what an
unqualified reference resolves to) and is left out of :attr:`ModelVersion.aliases`.

Aliases: an alias names one version of a model at a time. The docs say assigning one another
version holds takes it from that version, but do not promise it for the API, so a move here is
explicit either way: remove from the holder, then add. New versions are uploaded with the aliases
nobody holds and receive the held ones after the upload succeeded, so a failed upload takes
nothing from the current holder.

Metrics live in the version's ``version_description`` as compact JSON and come back as an equal
dict. Neither the v1 protos nor the registry docs state a length limit for it; metrics longer
than :data:`MAX_METRICS_CHARS` are refused here with a clear message (a backtest summary is
~700 characters; pass the summary, not per-horizon arrays).

Version labels: ``Model.update(labels=...)`` updates the *model's* labels whatever version the
object names (googleapis/python-aiplatform#3049), which would label every version; this backend
sends ``UpdateModel`` with the versioned name, which Vertex AI documents as a version update.

The Vertex AI SDK is imported on first use only (see :mod:`salesmesh.backends.gcp_vertex`).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from typing import Any

from salesmesh.backends.gcp_vertex import VertexBackend, api_errors
from salesmesh.errors import ConfigError
from salesmesh.ports import ModelVersion, check_alias, check_labels, rfc3339

PREDICT_ROUTE, HEALTH_ROUTE, PORT = "/predict", "/health", 8080
MAX_METRICS_CHARS = 8192


class VertexModelRegistry(VertexBackend):
    """Versions of one Vertex AI model; built from Settings (project, region, model_name,
    serving_image)."""

    def __init__(
        self,
        project: str,
        location: str,
        model_name: str,
        serving_image: str,
        *,
        credentials: Any = None,
    ) -> None:
        """``credentials``: google.auth credentials; None means Application Default Credentials."""
        super().__init__(project, location, credentials)
        self.model_name = model_name
        self.serving_image = serving_image
        self.resource_name = f"projects/{project}/locations/{location}/models/{model_name}"

    def _client(self) -> Any:
        """The generated v1 ModelService client of this registry."""
        return self._generated("ModelServiceClient")

    def register(
        self,
        artifact_uri: str,
        *,
        labels: Mapping[str, str],
        metrics: Mapping[str, Any],
        aliases: Sequence[str] = (),
    ) -> ModelVersion:
        """Upload a new version of the model (the first call creates the model)."""
        labels = check_labels(labels)
        names = list(dict.fromkeys(check_alias(name) for name in aliases))
        description = _encode_metrics(metrics)
        if not artifact_uri.startswith("gs://"):
            raise ValueError(f"artifact_uri {artifact_uri!r}: Vertex AI serves gs:// folders only")
        if not self.serving_image:
            raise ConfigError(
                "SALESMESH_SERVING_IMAGE is not set: a version needs the serving container's "
                "image URI (e.g. europe-west1-docker.pkg.dev/PROJECT/salesmesh/serve:TAG)"
            )
        aiplatform = self._aiplatform()  # resolves the credentials the upload names
        current = self.versions()
        holders = {alias: v.version_id for v in current for alias in v.aliases}
        free = [name for name in names if name not in holders]
        upload = {
            "serving_container_image_uri": self.serving_image,
            "artifact_uri": artifact_uri,
            "display_name": self.model_name,
            "labels": labels,
            "version_description": description,
            "serving_container_predict_route": PREDICT_ROUTE,
            "serving_container_health_route": HEALTH_ROUTE,
            "serving_container_ports": [PORT],
            "project": self.project,
            "location": self.location,
            "credentials": self._credentials,
            "sync": True,
        }
        model = None
        if not current:
            try:
                model = aiplatform.Model.upload(
                    model_id=self.model_name,
                    is_default_version=True,
                    version_aliases=list(free),  # a fresh list: the SDK appends "default"
                    **upload,
                )
            except api_errors().AlreadyExists:
                pass  # another registration created the model a moment ago: add a version
        if model is None:
            model = aiplatform.Model.upload(
                parent_model=self.resource_name,
                is_default_version=False,
                version_aliases=list(free),
                **upload,
            )
        version_id = str(model.version_id)
        for name in names:
            if name in holders:
                self._move_alias(name, holders[name], version_id)
        return self._require(version_id)

    def get(self, version_id: str) -> ModelVersion | None:
        """The version with this id, or None (aliases are not version ids here)."""
        if not version_id.isdigit():
            return None
        return self._get(f"{self.resource_name}@{version_id}")

    def _get(self, name: str) -> ModelVersion | None:
        try:
            return _to_version(self._client().get_model(name=name))
        except api_errors().NotFound:
            return None

    def _require(self, version_id: str) -> ModelVersion:
        version = self.get(version_id)
        if version is None:
            raise KeyError(f"version {version_id!r} of model {self.resource_name} does not exist")
        return version

    def versions(self) -> builtins.list[ModelVersion]:
        """Every version, oldest first (none before the first registration)."""
        return self._list("")

    def find(self, labels: Mapping[str, str]) -> builtins.list[ModelVersion]:
        """Versions carrying every one of ``labels``, by Vertex AI's label filter."""
        wanted = check_labels(labels)  # label-safe values cannot break out of the quotes
        found = self._list(" AND ".join(f'labels.{k}="{v}"' for k, v in wanted.items()))
        return [v for v in found if all(v.labels.get(k) == val for k, val in wanted.items())]

    def _list(self, filter_: str) -> builtins.list[ModelVersion]:
        request = {"name": self.resource_name, "filter": filter_}
        try:
            # the generated client, not ModelRegistry.list_versions: its VersionInfo has no labels
            models = builtins.list(self._client().list_model_versions(request=request))
        except api_errors().NotFound:
            return []
        versions = [_to_version(model) for model in models]
        return sorted(versions, key=lambda v: (v.created, int(v.version_id)))

    def alias(self, name: str) -> ModelVersion | None:
        """The version holding alias ``name``, or None."""
        try:
            check_alias(name)
        except ValueError:
            return None  # "7" or "default" would resolve to a version, but not as our alias
        return self._get(f"{self.resource_name}@{name}")

    def set_alias(self, name: str, version_id: str) -> None:
        """Move alias ``name`` to ``version_id``: removed from its holder first, then added."""
        check_alias(name)
        self._require(version_id)
        holder = self.alias(name)
        if holder is None or holder.version_id != version_id:
            self._move_alias(name, holder.version_id if holder else None, version_id)

    def _move_alias(self, name: str, holder: str | None, version_id: str) -> None:
        # the merges ModelRegistry.remove/add_version_aliases send, on the cached client
        merge = self._client().merge_version_aliases
        if holder is not None:
            merge(name=f"{self.resource_name}@{holder}", version_aliases=[f"-{name}"])
        merge(name=f"{self.resource_name}@{version_id}", version_aliases=[name])

    def remove_alias(self, name: str) -> None:
        """Take alias ``name`` from its holder (``-name`` merged into its aliases)."""
        check_alias(name)
        holder = self.alias(name)
        if holder is not None:
            self._client().merge_version_aliases(
                name=f"{self.resource_name}@{holder.version_id}", version_aliases=[f"-{name}"]
            )

    def update_labels(self, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        """Merge ``labels`` into the version's own labels (a version-level UpdateModel)."""
        merged = {**self._require(version_id).labels, **check_labels(labels)}
        self._client().update_model(
            request={
                "model": {"name": f"{self.resource_name}@{version_id}", "labels": merged},
                "update_mask": {"paths": ["labels"]},
            }
        )
        return self._require(version_id)


def _encode_metrics(metrics: Mapping[str, Any]) -> str:
    """``metrics`` as compact JSON that decodes to an equal dict, or ValueError saying why not."""
    try:
        text = json.dumps(metrics, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metrics must be plain JSON (no NaN, no objects): {exc}") from exc
    if json.loads(text) != dict(metrics):
        raise ValueError("metrics must round-trip through JSON: use str keys and lists, not tuples")
    if len(text) > MAX_METRICS_CHARS:
        raise ValueError(
            f"metrics are {len(text)} characters as JSON, over the {MAX_METRICS_CHARS} kept in a "
            "version description: register the backtest summary without per-horizon detail"
        )
    return text


def _to_version(model: Any) -> ModelVersion:
    """A Model proto (one version) as a ModelVersion."""
    try:
        metrics = json.loads(model.version_description) if model.version_description else {}
    except ValueError:
        metrics = {}  # a description written outside salesmesh (e.g. in the console)
    return ModelVersion(
        version_id=str(model.version_id),
        artifact_uri=model.artifact_uri,
        created=rfc3339(model.version_create_time),
        aliases=tuple(sorted(a for a in model.version_aliases if a != "default")),
        labels=dict(model.labels),
        metrics=metrics if isinstance(metrics, dict) else {},
    )
