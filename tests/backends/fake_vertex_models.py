"""Vertex AI's model service in memory: models, their versions, aliases and labels.

The server half of ``fake_vertex`` (which adds endpoints and predictions and patches the SDK).
Every method takes the arguments of the generated ``ModelServiceClient`` method it stands in for,
builds the real request proto from them the way that client does, and applies Vertex AI's
documented rules: the first version of a model holds ``default``; an alias names one version at
a time; a versioned ``UpdateModel`` changes that version's labels, an unversioned one the model's
(which every version then shows). Names come back with the project number, as Vertex AI's do.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions, operation
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.model_service import pagers
from google.longrunning import operations_pb2
from google.rpc import status_pb2

PROJECT, PROJECT_NUMBER, LOCATION = "demo-project", "123456789012", "europe-west4"
_NAME = re.compile(
    r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/(?P<kind>models|endpoints)/(?P<id>[^/@]+)(?:@(?P<version>[^/@]+))?"
)
# The strictest of the documented alias formats (model-registry docs; the v1 protos allow more).
ALIAS = re.compile(r"[a-z][a-z0-9-]{0,126}[a-z0-9]")
_MODEL_ID = re.compile(r"[a-z_][a-z0-9_-]{0,62}")
_LABEL_KEY, _LABEL_VALUE = re.compile(r"[a-z][a-z0-9_-]{0,62}"), re.compile(r"[a-z0-9_-]{0,63}")
_LABEL_TERM = re.compile(r'labels\.([a-z][a-z0-9_-]*)="([^"]*)"')


def build(cls: Any, request: Any, flattened: dict[str, Any]) -> Any:
    """The request proto, assembled as the generated client assembles it."""
    fields = {
        key: value
        for key, value in flattened.items()
        if key not in ("retry", "timeout", "metadata") and value is not None
    }
    if request is not None and fields:
        raise ValueError("If the `request` argument is set, then none of the individual fields")
    built = request if isinstance(request, cls) else cls(request)
    for key, value in fields.items():
        target = getattr(built, key)
        if cls.meta.fields[key].repeated and not hasattr(target, "keys"):  # a list, not a map
            target.extend(value)
        else:
            setattr(built, key, value)
    return built


def done(response: Any, error: status_pb2.Status | None = None) -> operation.Operation:
    """A finished long-running operation, as Vertex AI's are once ``result()`` returns."""
    pb = operations_pb2.Operation(name=f"projects/{PROJECT_NUMBER}/operations/1", done=True)
    if error is not None:
        pb.error.CopyFrom(error)
    else:
        pb.response.Pack(type(response).pb(response))
    return operation.Operation(
        pb, refresh=lambda: pb, cancel=lambda: None, result_type=type(response)
    )


def parse(name: str, kind: str) -> re.Match[str]:
    """``name`` split into project, location, kind, id and version, or the API's error."""
    found = _NAME.fullmatch(name)
    if not found or found["kind"] != kind:
        raise exceptions.InvalidArgument(f"invalid {kind[:-1]} resource name {name!r}")
    if found["project"] not in (PROJECT, PROJECT_NUMBER) or found["location"] != LOCATION:
        raise exceptions.NotFound(f"{name} not found (the fake serves {PROJECT} in {LOCATION})")
    return found


class FakeModelService:
    """Models with versions; ``alias_conflict`` is "refuse" or "move" (see ``fake_vertex``)."""

    def __init__(self, alias_conflict: str = "refuse") -> None:
        self.alias_conflict = alias_conflict
        self.models: dict[str, list[types.Model]] = {}  # model id -> versions, oldest first
        self.model_labels: dict[str, dict[str, str]] = {}
        self.calls: list[tuple[str, Any]] = []  # (method, request proto), in order
        self.faults: dict[str, Exception] = {}  # method -> error its next call raises
        self._ticks = itertools.count(1)
        self._ids = itertools.count(7_000_000_000_000_000_001)

    def _now(self) -> datetime:
        return datetime(2026, 11, 3, tzinfo=UTC) + timedelta(seconds=next(self._ticks))

    def _record(self, method: str, cls: Any, request: Any, flattened: dict[str, Any]) -> Any:
        built = build(cls, request, flattened)
        self.calls.append((method, built))
        if method in self.faults:
            raise self.faults.pop(method)
        return built

    def model_name(self, model_id: str) -> str:
        return f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/models/{model_id}"

    def _version(self, name: str, explicit: bool = False) -> tuple[str, types.Model]:
        """The stored version ``name`` points at: by id, by alias, or the default one."""
        found = parse(name, "models")
        versions = self.models.get(found["id"])
        if versions is None:
            raise exceptions.NotFound(f"Model {name} does not exist.")
        wanted = found["version"] or "default"
        if explicit and not wanted.isdigit():
            raise exceptions.InvalidArgument(f"{name} must name a version id after '@'")
        for version in versions:
            if wanted in (version.version_id, *version.version_aliases):
                return found["id"], version
        raise exceptions.NotFound(f"Model version {name} does not exist.")

    def _view(self, model_id: str, version: types.Model) -> types.Model:
        """A version as GetModel returns it: model and version labels merged."""
        view = types.Model(version)
        view.labels = {**self.model_labels.get(model_id, {}), **version.labels}
        return view

    @staticmethod
    def _check_labels(labels: Any) -> None:
        bad = sorted(
            k
            for k, v in labels.items()
            if not _LABEL_KEY.fullmatch(k) or not _LABEL_VALUE.fullmatch(v)
        )
        if bad or len(labels) > 64:
            raise exceptions.InvalidArgument(f"invalid labels {bad} (or more than 64)")

    def _claim(self, model_id: str, aliases: list[str], version_id: str) -> None:
        """Give ``aliases`` to a version: an alias names one version of a model at a time."""
        bad = [a for a in aliases if a != "default" and not ALIAS.fullmatch(a)]
        if bad:
            raise exceptions.InvalidArgument(f"version aliases {bad} must match {ALIAS.pattern}")
        others = [v for v in self.models.get(model_id, []) if v.version_id != version_id]
        held = [(a, v) for a in aliases for v in others if a in v.version_aliases]
        for alias, other in held:
            if alias != "default" and self.alias_conflict == "refuse":
                raise exceptions.FailedPrecondition(
                    f"Alias {alias} is already used by version {other.version_id}."
                )
        for other in others:  # "default" always moves: exactly one version holds it
            other.version_aliases = [a for a in other.version_aliases if a not in aliases]

    def upload_model(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("upload_model", types.UploadModelRequest, request, flattened)
        if req.parent != f"projects/{PROJECT}/locations/{LOCATION}":
            raise exceptions.InvalidArgument(f"parent {req.parent!r} is not this fake's location")
        model = types.Model(req.model)
        if not model.container_spec.image_uri:
            raise exceptions.InvalidArgument("model.container_spec.image_uri is required")
        self._check_labels(model.labels)
        aliases = list(model.version_aliases)
        if len(set(aliases)) != len(aliases):
            raise exceptions.InvalidArgument(f"duplicate version aliases {aliases}")
        if req.parent_model:
            model_id, _ = self._version(req.parent_model)
        else:
            model_id = req.model_id or f"{next(self._ids)}"
            if not _MODEL_ID.fullmatch(model_id):
                raise exceptions.InvalidArgument(f"model_id {model_id!r} is not a valid model id")
            if model_id in self.models:
                raise exceptions.AlreadyExists(f"Model {self.model_name(model_id)} already exists.")
        versions = self.models.get(model_id, [])
        if not versions and "default" not in aliases:
            aliases.append("default")  # the first version is always the default one
        version_id = str(len(versions) + 1)
        self._claim(model_id, aliases, version_id)
        now = self._now()
        model.name = self.model_name(model_id)
        model.version_id = version_id
        model.version_aliases = aliases
        model.create_time = versions[0].create_time if versions else now
        model.version_create_time = model.version_update_time = model.update_time = now
        model.supported_deployment_resources_types = [
            types.Model.DeploymentResourcesType.DEDICATED_RESOURCES
        ]
        self.models[model_id] = [*versions, model]
        return done(types.UploadModelResponse(model=model.name, model_version_id=version_id))

    def get_model(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("get_model", types.GetModelRequest, request, flattened)
        return self._view(*self._version(req.name))

    def list_model_versions(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record(
            "list_model_versions", types.ListModelVersionsRequest, request, flattened
        )
        model_id, _ = self._version(req.name)
        wanted = {}
        for term in filter(None, req.filter.split(" AND ")):
            found = _LABEL_TERM.fullmatch(term)
            if not found:
                raise AssertionError(f"filter the fake does not know: {req.filter!r}")
            wanted[found[1]] = found[2]
        views = [self._view(model_id, v) for v in self.models[model_id]]
        matching = [v for v in views if all(v.labels.get(k) == val for k, val in wanted.items())]
        response = types.ListModelVersionsResponse(models=matching)
        return pagers.ListModelVersionsPager(lambda *_, **__: response, req, response)

    def merge_version_aliases(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record(
            "merge_version_aliases", types.MergeVersionAliasesRequest, request, flattened
        )
        model_id, version = self._version(req.name, explicit=True)
        removed = [a[1:] for a in req.version_aliases if a.startswith("-")]
        added = [a for a in req.version_aliases if not a.startswith("-")]
        if "default" in removed:
            raise exceptions.FailedPrecondition("the default alias cannot be removed, only moved")
        self._claim(model_id, added, version.version_id)
        kept = [a for a in version.version_aliases if a not in removed]
        version.version_aliases = kept + [a for a in added if a not in kept]
        return self._view(model_id, version)

    def update_model(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("update_model", types.UpdateModelRequest, request, flattened)
        versioned = parse(req.model.name, "models")["version"] not in (None, "-")
        model_id, version = self._version(
            req.model.name if versioned else req.model.name.split("@")[0]
        )
        paths = list(req.update_mask.paths)
        if "labels" in paths:
            self._check_labels(req.model.labels)
        for path in paths:
            if versioned and path in ("labels", "version_description"):
                setattr(version, path, getattr(req.model, path))
            elif not versioned and path == "labels":  # a model-level update: every version
                self.model_labels[model_id] = dict(req.model.labels)
            elif not versioned and path in ("display_name", "description"):
                for each in self.models[model_id]:
                    setattr(each, path, getattr(req.model, path))
            else:
                raise exceptions.FailedPrecondition(f"update_mask path {path!r} does not apply")
        return self._view(model_id, version)
