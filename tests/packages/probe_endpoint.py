"""Vertex AI's endpoint and prediction services in memory, for ``probe_cloud``.

One endpoint, empty as Terraform creates it. ``DeployModel`` is checked as Vertex AI checks it at
the request and answers a long-running operation that stays running (``GetOperation`` says not
done; waiting on the SDK's future for it fails: a deployment outlasts a function) until
:meth:`FakeEndpoints.finish_deployments`; then the model is listed, takes the split it asked
for and the operation holds its ``DeployModelResponse``. ``Predict`` routes to the one model
taking traffic, which answers as the serving image does: a fixed forecast for the series it is
told it serves, a refusal for any other instance.

A mixin over ``fake_vertex_models.FakeModelService`` (its ``_record``, ``_version`` and
``_now``); the class using it provides ``_endpoint(name)``.
"""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from typing import Any

from google.api_core import exceptions, operation
from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import json_format

FORECAST_START = date(2026, 11, 2)


class FakeEndpoints:
    """The endpoint service's deployments and operations, and the prediction service."""

    endpoint: types.Endpoint
    _record: Any
    _version: Any
    _now: Any
    _endpoint: Any

    def _serve(self, serves: tuple[dict[str, Any], ...]) -> None:
        """Set up: ``serves`` are the series (store_id, product_id) a deployed model answers."""
        self.serves = {(s["store_id"], s["product_id"]) for s in serves}
        self.operations: dict[str, operations_pb2.Operation] = {}
        self.deploying: dict[str, tuple[types.DeployModelRequest, types.DeployedModel]] = {}
        self._deployed_ids = itertools.count(5_016_785_436_197_257_217)
        self._operation_ids = itertools.count(2_849_613_357_480_181_761)

    def get_endpoint(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("get_endpoint", types.GetEndpointRequest, request, flattened)
        return types.Endpoint(self._endpoint(req.name))

    @staticmethod
    def _check_split(split: dict[str, int], ids: set[str]) -> None:
        if set(split) - ids:
            unknown = sorted(set(split) - ids)
            raise exceptions.InvalidArgument(f"traffic split names unknown models {unknown}")
        if any(not 0 <= v <= 100 for v in split.values()) or (split and sum(split.values()) != 100):
            raise exceptions.InvalidArgument(f"traffic split {split} must be 0-100 each, sum 100")

    def deploy_model(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        """Vertex AI's checks at the request; the operation runs until finish_deployments."""
        req = self._record("deploy_model", types.DeployModelRequest, request, flattened)
        endpoint = self._endpoint(req.endpoint)
        deployed = types.DeployedModel(req.deployed_model)
        _, version = self._version(deployed.model, explicit=True)
        resources = deployed.dedicated_resources
        if not resources.machine_spec.machine_type or resources.min_replica_count < 1:
            raise exceptions.InvalidArgument("custom-container models need dedicated resources")
        ids = {d.id for d in endpoint.deployed_models}
        self._check_split(dict(req.traffic_split), ids | {"0"})
        deployed.id = str(next(self._deployed_ids))
        deployed.model_version_id = version.version_id
        name = f"{endpoint.name}/operations/{next(self._operation_ids)}"
        state = operations_pb2.Operation(name=name, done=False)
        metadata = types.DeployModelOperationMetadata(
            generic_metadata=types.GenericOperationMetadata(create_time=self._now())
        )
        state.metadata.Pack(types.DeployModelOperationMetadata.pb(metadata))
        self.operations[name] = state
        self.deploying[name] = (req, deployed)

        def refresh() -> operations_pb2.Operation:
            raise AssertionError(f"{name} waited on: a deployment outlasts a function")

        return operation.Operation(
            state,
            refresh=refresh,
            cancel=lambda: None,
            result_type=types.DeployModelResponse,
            metadata_type=types.DeployModelOperationMetadata,
        )

    def finish_deployments(self) -> list[dict[str, str]]:
        """Every deployment in flight is over: its model serves with the split it asked for."""
        finished = []
        for name, (req, deployed) in self.deploying.items():
            deployed.create_time = self._now()
            self.endpoint.deployed_models.append(deployed)
            split = {deployed.id if k == "0" else k: v for k, v in req.traffic_split.items()}
            if split:
                self.endpoint.traffic_split = split
            state = self.operations[name]
            response = types.DeployModelResponse(deployed_model=deployed)
            state.response.Pack(types.DeployModelResponse.pb(response))
            state.done = True
            finished.append({"operation": name, "deployed_model_id": deployed.id})
        self.deploying.clear()
        return finished

    def get_operation(self, _client: Any, request: Any = None, **_: Any) -> Any:
        if not isinstance(request, operations_pb2.GetOperationRequest):
            request = operations_pb2.GetOperationRequest(**(request or {}))
        self.calls.append(("get_operation", request))
        if request.name not in self.operations:
            raise exceptions.NotFound(f"Operation {request.name} not found.")
        found = operations_pb2.Operation()
        found.CopyFrom(self.operations[request.name])
        return found

    def update_endpoint(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("update_endpoint", types.UpdateEndpointRequest, request, flattened)
        endpoint = self._endpoint(req.endpoint.name)
        for path in req.update_mask.paths:
            if path != "traffic_split":
                raise exceptions.InvalidArgument(f"the fake updates traffic_split only: {path}")
            split = dict(req.endpoint.traffic_split)
            self._check_split(split, {d.id for d in endpoint.deployed_models})
            endpoint.traffic_split = split
        return types.Endpoint(endpoint)

    def predict(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        """The one model taking traffic answers, as the serving image would, or refuses."""
        req = self._record("predict", types.PredictRequest, request, flattened)
        endpoint = self._endpoint(req.endpoint)
        taking = [model for model, share in endpoint.traffic_split.items() if share > 0]
        if len(taking) != 1:
            raise exceptions.FailedPrecondition(f"the fake routes to one model, not {taking}")
        instances = json_format.MessageToDict(types.PredictRequest.pb(req))["instances"]
        answers = [self._forecast(instance) for instance in instances]
        refused = [{"index": i, "reason": a} for i, a in enumerate(answers) if isinstance(a, str)]
        if refused:
            raise exceptions.FailedPrecondition(json.dumps({"error": "bad", "reasons": refused}))
        (deployed,) = [d for d in endpoint.deployed_models if d.id == taking[0]]
        response = types.PredictResponse(
            deployed_model_id=deployed.id,
            model=deployed.model.split("@")[0],
            model_version_id=deployed.model_version_id,
        )
        response.predictions.extend(answers)
        return response

    def _forecast(self, instance: dict[str, Any]) -> dict[str, Any] | str:
        key = (instance.get("store_id"), instance.get("product_id"))
        horizon = instance.get("horizon")
        if key not in self.serves or not isinstance(horizon, float) or not horizon.is_integer():
            return f"the fake serves {sorted(self.serves)} with a whole horizon, not {instance}"
        days = [FORECAST_START + timedelta(days=i) for i in range(int(horizon))]
        forecast = [{"date": d.isoformat(), "sales": 3.5} for d in days]
        return {"store_id": key[0], "product_id": key[1], "forecast": forecast}
