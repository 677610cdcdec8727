"""Vertex AI in memory behind the installed SDK: models, endpoints and predictions.

:func:`serving` patches the SDK's generated v1 clients (``ModelServiceClient``,
``EndpointServiceClient``, ``PredictionServiceClient``) method by method with ``autospec=True``:
a wrong argument name fails as it would against Vertex AI, and everything above those methods is
the SDK's own code: ``Model.upload`` building its request, ``ModelRegistry``'s alias merges,
``Endpoint.update`` and ``predict``. The endpoint service's mixin ``get_operation`` is patched
the same way.
:class:`FakeVertex` is the server side (the model service is in ``fake_vertex_models``): it
builds each real request proto, applies Vertex AI's documented rules and answers with real protos
and long-running operations.

Deployments take time, on a clock the test holds: ``FakeVertex(deploy_seconds=900)`` answers
``DeployModel`` with an operation that ``GetOperation`` reports not done until
``fake.clock.advance(...)`` has moved 900 s past the request; only then does the model start
(or fail to) and enter the endpoint, as on Vertex AI. ``undeploy_seconds`` does the same for
``UndeployModel`` (the model stays listed meanwhile). The defaults, 0, finish at once. The
SDK's future for an operation still running refuses to be polled: waiting on one is a bug.

A deployed model runs :class:`ServingContainer`: the serving image's own app
(``salesmesh.serving``) configured from the ``AIP_*`` variables Vertex AI derives from the
version's container spec, loading the run folder its ``artifact_uri`` maps to in
``FakeVertex.artifacts``. Only the process and the download are left out. If it does not load or
its health route does not answer 200, the deploy operation fails as Vertex AI's does
(``FailedPrecondition: Model server never became ready``), leaving the endpoint as it was.

Two readings of the docs are open, so they are a switch: ``alias_conflict="refuse"`` rejects an
alias another version holds; ``"move"`` takes it from that version, as the console does.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from fake_vertex_models import (
    LOCATION,
    PROJECT,
    PROJECT_NUMBER,
    FakeModelService,
    parse,
)
from google.api_core import exceptions, operation
from google.api_core.gapic_v1.method import _GapicCallable
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform_v1 import (
    EndpointServiceClient,
    ModelServiceClient,
    PredictionServiceClient,
    types,
)
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from werkzeug.test import Client

from salesmesh.backends import gcp_vertex
from salesmesh.serving import Predictor, ServeSettings, create_app

__all__ = ["LOCATION", "PROJECT", "PROJECT_NUMBER", "FakeClock", "FakeVertex", "serving"]
NEVER_READY = (
    "Model server never became ready. Please validate that your model file or container "
    "configuration are valid. Model server logs can be found at "
    "https://console.cloud.google.com/logs/query?project={project}"
)
_FAKED = {
    ModelServiceClient: (
        "upload_model",
        "get_model",
        "list_model_versions",
        "merge_version_aliases",
        "update_model",
    ),
    EndpointServiceClient: (
        "get_endpoint",
        "deploy_model",
        "undeploy_model",
        "update_endpoint",
        "get_operation",
    ),
    PredictionServiceClient: ("predict",),
}


@contextlib.contextmanager
def serving(fake: FakeVertex) -> Iterator[FakeVertex]:
    """Route the SDK's v1 clients to ``fake``; any other RPC or credential lookup fails fast."""

    def unfaked(*_: Any, **__: Any) -> None:
        raise AssertionError("an RPC the fake does not serve would have gone to Vertex AI")

    config = initializer.global_config
    saved = dict(vars(config))  # aiplatform.init() changes process-wide state
    with contextlib.ExitStack() as stack:
        for client, methods in _FAKED.items():
            for name in methods:
                stack.enter_context(
                    mock.patch.object(client, name, autospec=True, side_effect=getattr(fake, name))
                )
        stack.enter_context(mock.patch.object(_GapicCallable, "__call__", unfaked))
        stack.enter_context(
            mock.patch("google.auth.default", side_effect=AssertionError("ADC looked up"))
        )
        # salesmesh's record of the SDK set-up goes with the configuration restored below
        stack.enter_context(mock.patch.dict(gcp_vertex._SDK, clear=True))
        try:
            yield fake
        finally:
            vars(config).clear()
            vars(config).update(saved)


class FakeClock:
    """Time as the fake's operations see it: seconds from 0, moved only by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        """Move time forward (a poll loop may pass this as its ``sleep``)."""
        if seconds < 0:
            raise ValueError(f"time does not go back ({seconds} s)")
        self.now += seconds


class FakeVertex(FakeModelService):
    """The server side: the model service plus endpoints, deployed models and predictions."""

    def __init__(
        self,
        alias_conflict: str = "refuse",
        deploy_seconds: float = 0.0,
        undeploy_seconds: float = 0.0,
    ) -> None:
        super().__init__(alias_conflict)
        self.endpoints: dict[str, types.Endpoint] = {}
        self.artifacts: dict[str, Path] = {}  # artifact_uri -> local run folder
        self.containers: dict[str, ServingContainer] = {}  # deployed model id -> container
        self.clock = FakeClock()
        self.deploy_seconds = deploy_seconds
        self.undeploy_seconds = undeploy_seconds
        self.operations: dict[str, operations_pb2.Operation] = {}  # name -> its state now
        # operation name -> (when it is over, what then happens to the endpoint)
        self._in_flight: dict[str, tuple[float, Callable[[operations_pb2.Operation], None]]] = {}
        self._operation_ids = itertools.count(4_000_000_000_000_000_001)
        self._route = random.Random(0)

    def create_endpoint(self, endpoint_id: str) -> str:
        """What Terraform does before the mesh runs: an empty endpoint."""
        name = f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{endpoint_id}"
        self.endpoints[endpoint_id] = types.Endpoint(
            name=name, display_name=endpoint_id, create_time=self._now()
        )
        return name

    def _endpoint(self, name: str) -> types.Endpoint:
        found = parse(name, "endpoints")
        if found["id"] not in self.endpoints:
            raise exceptions.NotFound(f"Endpoint {name} not found.")
        return self.endpoints[found["id"]]

    def _record(self, method: str, cls: Any, request: Any, flattened: dict[str, Any]) -> Any:
        self._settle()  # whatever the caller sees next, deployments whose time came are over
        return super()._record(method, cls, request, flattened)

    @staticmethod
    def _check_split(split: dict[str, int], ids: set[str]) -> None:
        if set(split) - ids:
            raise exceptions.InvalidArgument(
                f"traffic split names unknown models {sorted(set(split) - ids)}"
            )
        if any(not 0 <= v <= 100 for v in split.values()) or (split and sum(split.values()) != 100):
            raise exceptions.InvalidArgument(f"traffic split {split} must be 0-100 each, sum 100")

    def get_endpoint(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("get_endpoint", types.GetEndpointRequest, request, flattened)
        return types.Endpoint(self._endpoint(req.name))

    def deploy_model(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        """Check the request as Vertex AI does at once, then start the deployment's clock."""
        req = self._record("deploy_model", types.DeployModelRequest, request, flattened)
        endpoint = self._endpoint(req.endpoint)
        deployed = types.DeployedModel(req.deployed_model)
        self._version(deployed.model)
        resources = deployed.dedicated_resources
        if not resources.machine_spec.machine_type or resources.min_replica_count < 1:
            raise exceptions.InvalidArgument("custom-container models need dedicated resources")
        self._check_split(dict(req.traffic_split), {d.id for d in endpoint.deployed_models} | {"0"})
        deployed.id = str(next(self._ids))
        finish = functools.partial(self._deployed, req, deployed)
        kinds = types.DeployModelResponse, types.DeployModelOperationMetadata
        return self._start(endpoint, kinds, self.deploy_seconds, finish)

    def _deployed(
        self, req: Any, deployed: types.DeployedModel, state: operations_pb2.Operation
    ) -> None:
        """The container started or failed; only a serving one enters the endpoint."""
        endpoint = self._endpoint(req.endpoint)
        split = dict(req.traffic_split)
        try:  # the split was checked at the request; the endpoint may have changed since
            self._check_split(split, {d.id for d in endpoint.deployed_models} | {"0"})
        except exceptions.InvalidArgument as exc:
            state.error.CopyFrom(
                status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(exc))
            )
            return
        try:
            _, version = self._version(deployed.model)
            folder = self.artifacts[version.artifact_uri]
            container = ServingContainer(version, folder, deployed.id, endpoint.name)
        except Exception:  # whatever the container dies of, Vertex AI reports the same way
            message = NEVER_READY.format(project=PROJECT_NUMBER)
            state.error.CopyFrom(
                status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=message)
            )
            return
        deployed.model_version_id = version.version_id
        deployed.create_time = self._now()
        endpoint.deployed_models.append(deployed)
        if split:
            endpoint.traffic_split = {deployed.id if k == "0" else k: v for k, v in split.items()}
        self.containers[deployed.id] = container
        response = types.DeployModelResponse(deployed_model=deployed)
        state.response.Pack(types.DeployModelResponse.pb(response))

    def undeploy_model(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        """Refuse at once what Vertex AI refuses; the model goes when the operation is over."""
        req = self._record("undeploy_model", types.UndeployModelRequest, request, flattened)
        endpoint = self._endpoint(req.endpoint)
        ids = {d.id for d in endpoint.deployed_models}
        if req.deployed_model_id not in ids:
            raise exceptions.NotFound(f"DeployedModel {req.deployed_model_id} not found.")
        split = dict(req.traffic_split) or dict(endpoint.traffic_split)
        if len(ids) > 1 and split.get(req.deployed_model_id, 0) > 0:
            raise exceptions.FailedPrecondition(
                f"DeployedModel {req.deployed_model_id} still has traffic assigned to it."
            )
        remaining = ids - {req.deployed_model_id}
        split = {k: v for k, v in split.items() if k != req.deployed_model_id}
        self._check_split(split, remaining)

        def undeployed(state: operations_pb2.Operation) -> None:
            endpoint.deployed_models = [
                d for d in endpoint.deployed_models if d.id != req.deployed_model_id
            ]
            endpoint.traffic_split = split if remaining else {}
            del self.containers[req.deployed_model_id]
            state.response.Pack(types.UndeployModelResponse.pb(types.UndeployModelResponse()))

        kinds = types.UndeployModelResponse, types.UndeployModelOperationMetadata
        return self._start(endpoint, kinds, self.undeploy_seconds, undeployed)

    # --- long-running operations ---------------------------------------------------------------

    def _start(
        self,
        endpoint: types.Endpoint,
        kinds: tuple[Any, Any],
        seconds: float,
        finish: Callable[[operations_pb2.Operation], None],
    ) -> operation.Operation:
        """A new operation of ``endpoint``, over (``finish`` run) ``seconds`` from now.

        ``kinds`` are its response and metadata types. The SDK's future for it refuses to be
        polled while it runs: a backend that waits on it would block past a function's limit.
        """
        result_type, metadata_type = kinds
        name = f"{endpoint.name}/operations/{next(self._operation_ids)}"
        state = operations_pb2.Operation(name=name, done=False)
        started = types.GenericOperationMetadata(create_time=self._now())
        state.metadata.Pack(metadata_type.pb(metadata_type(generic_metadata=started)))
        self.operations[name] = state
        self._in_flight[name] = (self.clock.now + seconds, finish)
        self._settle()

        def refresh() -> operations_pb2.Operation:
            if not self.operations[name].done:
                raise AssertionError(
                    f"{name} waited on: it lasts {seconds:g} s, longer than a function may run"
                )
            return self.operations[name]

        return operation.Operation(
            state,
            refresh=refresh,
            cancel=lambda: None,
            result_type=result_type,
            metadata_type=metadata_type,
        )

    def _settle(self) -> None:
        """Finish, oldest first, every operation whose time has come."""
        for name, (due, finish) in list(self._in_flight.items()):
            if due <= self.clock.now:
                del self._in_flight[name]
                finish(self.operations[name])
                self.operations[name].done = True

    def get_operation(self, _client: Any, request: Any = None, **_: Any) -> Any:
        """The operation's state now; NotFound for a name the fake never gave."""
        self._settle()
        if not isinstance(request, operations_pb2.GetOperationRequest):
            request = operations_pb2.GetOperationRequest(**(request or {}))
        self.calls.append(("get_operation", request))
        if "get_operation" in self.faults:
            raise self.faults.pop("get_operation")
        if request.name not in self.operations:
            raise exceptions.NotFound(f"Operation {request.name} not found.")
        found = operations_pb2.Operation()
        found.CopyFrom(self.operations[request.name])
        return found

    def update_endpoint(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("update_endpoint", types.UpdateEndpointRequest, request, flattened)
        endpoint = self._endpoint(req.endpoint.name)
        for path in req.update_mask.paths:
            if path == "traffic_split":
                split = dict(req.endpoint.traffic_split)
                self._check_split(split, {d.id for d in endpoint.deployed_models})
                endpoint.traffic_split = split
            elif path in ("display_name", "description", "labels"):
                setattr(endpoint, path, getattr(req.endpoint, path))
            else:
                raise exceptions.InvalidArgument(f"update_mask path {path!r} is not updatable")
        return types.Endpoint(endpoint)

    # --- prediction service ------------------------------------------------------------------

    def predict(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("predict", types.PredictRequest, request, flattened)
        endpoint = self._endpoint(req.endpoint)
        split = {k: v for k, v in endpoint.traffic_split.items() if v > 0}
        if not split:
            raise exceptions.FailedPrecondition(f"Endpoint {endpoint.name} has no deployed models")
        (chosen,) = self._route.choices(list(split), weights=list(split.values()))
        # the instances as JSON, numbers as the doubles the SDK sent (7 arrives as 7.0)
        instances = json_format.MessageToDict(types.PredictRequest.pb(req))["instances"]
        status, body = self.containers[chosen].predict(instances)
        if 400 <= status < 500:  # as Vertex AI reports a container's refusal
            raise exceptions.FailedPrecondition(json.dumps(body))
        if status != 200:
            raise exceptions.from_http_status(status, json.dumps(body))
        deployed = next(d for d in endpoint.deployed_models if d.id == chosen)
        response = types.PredictResponse(
            deployed_model_id=chosen,
            model=deployed.model.split("@")[0],
            model_version_id=deployed.model_version_id,
        )
        response.predictions.extend(body["predictions"])  # JSON values, as the container sent
        return response


class ServingContainer:
    """The serving image on one deployed model, in-process: ``salesmesh.serving``'s app set up
    from the ``AIP_*`` variables Vertex AI passes, after the start-up ``salesmesh.serve`` does."""

    def __init__(self, version: types.Model, folder: Path, deployed_id: str, endpoint: str) -> None:
        spec = version.container_spec
        own = f"/v1/{endpoint}/deployedModels/{deployed_id}"  # Vertex AI's routes when unset
        env = {
            "AIP_STORAGE_URI": version.artifact_uri,
            "AIP_HTTP_PORT": str(spec.ports[0].container_port if spec.ports else 8080),
            "AIP_HEALTH_ROUTE": spec.health_route or own,
            "AIP_PREDICT_ROUTE": spec.predict_route or f"{own}:predict",
            "AIP_DEPLOYED_MODEL_ID": deployed_id,
        }
        self.settings = ServeSettings.from_env(env)
        predictor = Predictor.from_folder(folder, version.artifact_uri)
        self.client = Client(create_app(predictor, self.settings))
        health = self.client.get(self.settings.health_route)
        if health.status_code != 200:
            raise RuntimeError(f"health route answered {health.status_code}")

    def predict(self, instances: list[Any]) -> tuple[int, dict[str, Any]]:
        response = self.client.post(self.settings.predict_route, json={"instances": instances})
        return response.status_code, response.get_json()
