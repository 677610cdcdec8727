"""Vertex AI endpoint backend: deployed model versions and the traffic split across them.

Terraform creates the endpoint; this backend deploys versions of the registry's model to it.
Everything is read fresh from the endpoint resource on each call, so several processes (the
deploy and alert functions) can share one endpoint.

Deployments are long-running operations that outlive the caller: a custom-container deploy
commonly takes 10-30 minutes and an event-driven function has 540 s at most. So
:meth:`VertexEndpoint.start_deploy` sends ``DeployModel`` through the generated v1
``EndpointServiceClient`` and returns the operation's name at once, and
:meth:`VertexEndpoint.operation` reads it back (``GetOperation``, from any process, any time
later). :meth:`~VertexEndpoint.deploy` is the two joined by a poll, for callers that may wait.

What Vertex AI can and cannot tell about one deployed model:

- A deploy operation succeeds only once the container's health route answered: Vertex AI fails
  it (``FailedPrecondition: Model server never became ready ...``) otherwise, and leaves the
  endpoint's models and split as they were. That failure is the operation's ``error`` here, and
  a DeployError from :meth:`~VertexEndpoint.deploy`.
- A public shared endpoint cannot send a request to one chosen deployed model: ``predict`` and
  ``rawPredict`` follow the traffic split; ``explain`` takes a ``deployed_model_id`` but needs an
  explanation spec; ``invoke`` takes one only on dedicated endpoints. So :meth:`health` sends the
  probe when the model takes all the traffic (the answer must come from it) and otherwise reports
  a deployed, listed model as healthy on the strength of the deploy's own health wait.
- Live request and error counts per deployed model are Cloud Monitoring metrics
  (``prediction/online/prediction_count``, ``error_count``), read through the Metrics port
  (:mod:`salesmesh.backends.gcp_metrics`), which the canary verdict uses; so here
  ``Health.requests/errors`` stay 0.

The Vertex AI SDK is imported on first use only.
"""

from __future__ import annotations

import builtins
import importlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from salesmesh.backends.gcp_vertex import VertexBackend, api_errors
from salesmesh.errors import DeployError, PredictionError
from salesmesh.ports import (
    DeployedModel,
    Health,
    ModelVersion,
    Operation,
    allocate,
    check_split,
    rfc3339,
)
from salesmesh.settings import endpoint_resource_name

# deploy() polls a deployment this often at first, backing off to the longest gap: a custom
# container takes minutes to start, and every poll is one GetOperation call.
FIRST_POLL_SECONDS, LONGEST_POLL_SECONDS = 1.0, 30.0
_NEW_MODEL = "0"  # the DeployModel traffic_split key for the model being deployed


class VertexEndpoint(VertexBackend):
    """One Vertex AI endpoint serving versions of one registry model."""

    def __init__(
        self,
        project: str,
        location: str,
        endpoint: str,
        model_name: str,
        *,
        machine_type: str = "n1-standard-2",
        min_replicas: int = 1,
        max_replicas: int = 1,
        service_account: str | None = None,
        credentials: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``endpoint`` is a custom or numeric endpoint id or its full resource name (in this
        project and location, else ConfigError); ``model_name`` the registry's model id, whose
        versions :meth:`deploy` receives. ``sleep`` is how :meth:`deploy` waits between polls
        (a test's fake clock moves instead)."""
        super().__init__(project, location, credentials)
        self.resource_name = endpoint_resource_name(endpoint, project, location)
        self.model_resource_name = f"projects/{project}/locations/{location}/models/{model_name}"
        self.model_name = model_name
        self.machine_type = machine_type
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.service_account = service_account
        self._sleep = sleep
        self._service: Any = None

    def _endpoint(self) -> Any:
        """A fresh SDK Endpoint; its first use reads the resource from Vertex AI."""
        return self._aiplatform().Endpoint(
            self.resource_name, self.project, self.location, self._credentials
        )

    def _client(self) -> Any:
        """The generated v1 ``EndpointServiceClient``, built once with the SDK's settings.

        The SDK's own wrapper builds a new client (and gRPC channel) on every attribute use;
        this one is kept for the life of the backend.
        """
        if self._service is None:
            self._aiplatform()  # first: it sets the SDK up and resolves the credentials
            config = importlib.import_module("google.cloud.aiplatform.initializer").global_config
            options = config.get_client_options(location_override=self.location)
            v1 = importlib.import_module("google.cloud.aiplatform_v1")
            self._service = v1.EndpointServiceClient(
                credentials=self._credentials, client_options=options
            )
        return self._service

    def _resource(self) -> Any:
        """The endpoint resource as Vertex AI holds it now."""
        return self._client().get_endpoint(name=self.resource_name)

    def deployed(self) -> builtins.list[DeployedModel]:
        """Every deployed model, oldest first."""
        return _deployed(self._resource().deployed_models)

    def traffic(self) -> dict[str, int]:
        """The current split over every deployed model (0 where it takes none)."""
        return _split(self._resource())

    def start_deploy(self, version: ModelVersion, traffic_percentage: int = 0) -> str:
        """Send ``DeployModel`` for ``version`` and return the operation's name, not waiting.

        The split is the SDK's allocation (:func:`~salesmesh.ports.allocate`); ValueError for
        a percentage Vertex AI would refuse, DeployError if Vertex AI refuses the request.
        """
        split = _split(self._resource())
        taking = {model: share for model, share in split.items() if share}
        full = {**dict.fromkeys(split, 0), **allocate(taking, _NEW_MODEL, traffic_percentage)}
        v1 = importlib.import_module("google.cloud.aiplatform_v1")
        name = f"{self.model_resource_name}@{version.version_id}"
        deployed_model = v1.DeployedModel(
            model=name,
            display_name=f"{self.model_name}-v{version.version_id}",
            service_account=self.service_account or "",
            dedicated_resources=v1.DedicatedResources(
                machine_spec=v1.MachineSpec(machine_type=self.machine_type),
                min_replica_count=self.min_replicas,
                max_replica_count=self.max_replicas,
            ),
        )
        errors = api_errors()
        try:
            started = self._client().deploy_model(
                endpoint=self.resource_name, deployed_model=deployed_model, traffic_split=full
            )
        except errors.GoogleAPICallError as exc:
            raise DeployError(
                f"Vertex AI refused to deploy version {version.version_id} ({name}) to "
                f"{self.resource_name}: {exc}. Nothing was started; check that the version is "
                "registered and the serving account may act as the service account"
            ) from exc
        return str(started.operation.name)

    def operation(self, name: str) -> Operation:
        """The deployment ``name`` as Vertex AI reports it now (one ``GetOperation``)."""
        return self._operation(name)[0]

    def _operation(self, name: str) -> tuple[Operation, Exception | None]:
        """The operation and, if it failed, its error as the API exception it stands for."""
        # Vertex AI names it <this endpoint>/operations/N, with the project's number for its id
        own = "/".join(self.resource_name.split("/")[2:]) + "/operations/"
        if not (name.startswith("projects/") and own in name):
            raise KeyError(f"{name!r} is not an operation of endpoint {self.resource_name}")
        errors = api_errors()
        longrunning = importlib.import_module("google.longrunning.operations_pb2")
        try:
            found = self._client().get_operation(request=longrunning.GetOperationRequest(name=name))
        except (errors.NotFound, errors.InvalidArgument) as exc:
            raise KeyError(f"Vertex AI knows no operation {name!r}: {exc.message}") from exc
        kind = found.metadata.type_url
        if kind and not kind.endswith(".DeployModelOperationMetadata"):
            raise KeyError(f"operation {name!r} is not a deployment: its metadata is {kind}")
        if not found.done:
            return Operation(name, done=False), None
        if found.HasField("error"):
            code = importlib.import_module("google.rpc.code_pb2").Code
            status = found.error
            error = f"{code.Name(status.code)}: {status.message}"
            cause = errors.from_grpc_status(status.code, status.message, errors=(status,))
            return Operation(name, done=True, error=error), cause
        v1 = importlib.import_module("google.cloud.aiplatform_v1")
        response = v1.DeployModelResponse.deserialize(found.response.value)
        return Operation(name, done=True, deployed_model_id=response.deployed_model.id), None

    def deploy(self, version: ModelVersion, traffic_percentage: int) -> DeployedModel:
        """Start the deployment, then poll it until Vertex AI says it is done."""
        name = self.start_deploy(version, traffic_percentage)
        wait = FIRST_POLL_SECONDS
        while not (found := self._operation(name))[0].done:
            self._sleep(wait)  # Vertex AI's own pace: a deployment takes minutes
            wait = min(wait * 2, LONGEST_POLL_SECONDS)
        state, cause = found
        if state.error is not None:
            raise DeployError(
                f"version {version.version_id} ({self.model_resource_name}@"
                f"{version.version_id}) did not deploy to {self.resource_name}: {state.error}. "
                "The endpoint's models and traffic are as they were. A container that never "
                "became ready has its logs linked above; the serving image must answer "
                f"GET /health on AIP_HTTP_PORT once {version.artifact_uri} is loaded"
            ) from cause
        listed = [d for d in self.deployed() if d.id == state.deployed_model_id]
        if not listed:
            raise DeployError(
                f"Vertex AI reported version {version.version_id} deployed to "
                f"{self.resource_name} as {state.deployed_model_id} ({name}), but no such "
                "deployed model is listed there"
            )
        return listed[0]

    def set_traffic(self, split: Mapping[str, int]) -> None:
        """Replace the split; ValueError (from check_split or Vertex AI) leaves it unchanged."""
        endpoint = self._endpoint()
        full = check_split(split, [d.id for d in _deployed(endpoint.list_models())])
        if not full:
            return  # nothing deployed: the only valid split is the empty one it has
        errors = api_errors()
        try:
            endpoint.update(traffic_split=full)
        except (errors.InvalidArgument, errors.FailedPrecondition) as exc:
            raise ValueError(f"Vertex AI refused the split {full}: {exc}") from exc

    def undeploy(self, deployed_model_id: str) -> None:
        """Ask Vertex AI to undeploy a model that takes no traffic while others are deployed.

        Returns once Vertex AI accepted the request, without waiting for its long-running
        operation: Vertex AI carries it out, and until it has, the model may stay listed by
        :meth:`deployed` and :meth:`traffic` (at 0 %) for minutes. KeyError if the model is
        not deployed, ValueError if it takes traffic (as the SDK's ``Endpoint.undeploy``).
        """
        split = _split(self._resource())
        if deployed_model_id not in split:
            raise KeyError(f"{deployed_model_id!r} is not deployed on {self.resource_name}")
        if split[deployed_model_id] > 0 and len(split) > 1:
            raise ValueError(
                f"deployed model {deployed_model_id} takes {split[deployed_model_id]} % of the "
                f"traffic on {self.resource_name}: move it elsewhere with set_traffic first"
            )
        rest = {model: share for model, share in split.items() if model != deployed_model_id}
        errors = api_errors()
        try:
            self._client().undeploy_model(
                endpoint=self.resource_name,
                deployed_model_id=deployed_model_id,
                traffic_split=rest,
            )
        except errors.NotFound as exc:
            raise KeyError(f"{deployed_model_id!r} is not deployed: {exc.message}") from exc
        except (errors.InvalidArgument, errors.FailedPrecondition) as exc:
            raise ValueError(f"Vertex AI refused to undeploy {deployed_model_id}: {exc}") from exc

    def health(self, deployed_model_id: str, probe: Mapping[str, Any]) -> Health:
        """Deployed and listed; also answers ``probe`` when it takes all the traffic."""
        split = self.traffic()
        if deployed_model_id not in split:
            return Health(False, f"{deployed_model_id!r} is not deployed on {self.resource_name}")
        if split[deployed_model_id] < 100:
            return Health(True)  # no request can be routed to it alone: see the module doc
        try:
            response = self.predict([probe])
        except PredictionError as exc:
            reasons = "; ".join(exc.reasons)
            return Health(False, f"the probe {dict(probe)} was refused ({exc.status}): {reasons}")
        if response["deployedModelId"] != deployed_model_id:
            return Health(False, f"the probe was answered by {response['deployedModelId']}")
        predictions = response["predictions"]
        if not predictions or not predictions[0].get("forecast"):
            return Health(False, f"the probe {dict(probe)} got no forecast: {predictions}")
        return Health(True)

    def predict(self, instances: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``{"predictions": [...], "deployedModelId": ...}`` through the endpoint's split."""
        errors = api_errors()
        try:
            result = self._endpoint().predict(instances=[dict(i) for i in instances])
        except errors.GoogleAPICallError as exc:
            raise PredictionError(
                f"{self.resource_name} refused the prediction: {exc}",
                status=int(exc.code or 0),
                reasons=_reasons(exc.message),
            ) from exc
        return {
            "predictions": list(result.predictions),
            "deployedModelId": result.deployed_model_id,
        }


def _deployed(models: Any) -> builtins.list[DeployedModel]:
    found = [DeployedModel(d.id, d.model_version_id, rfc3339(d.create_time)) for d in models]
    return sorted(found, key=lambda d: (d.created, d.id))


def _split(resource: Any) -> dict[str, int]:
    """The endpoint's split over every deployed model, oldest first, 0 where absent."""
    shares = dict(resource.traffic_split)
    return {d.id: int(shares.get(d.id, 0)) for d in _deployed(resource.deployed_models)}


def _reasons(message: str) -> builtins.list[str]:
    """The container's reasons, from a Vertex AI error message that carries its JSON body.

    The serving image refuses with ``{"error": ..., "reasons": [{"index": i, "reason": ...}]}``;
    anything else becomes one reason, the message itself.
    """
    start, end = message.find("{"), message.rfind("}")
    try:
        body = json.loads(message[start : end + 1]) if 0 <= start < end else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return [message]
    reasons = body.get("reasons")
    if isinstance(reasons, list) and reasons:
        return [_reason(item) for item in reasons]
    error = body.get("error")
    return [error] if isinstance(error, str) and error else [message]


def _reason(item: Any) -> str:
    if isinstance(item, dict) and "reason" in item:
        return (
            f"instance {item['index']}: {item['reason']}"
            if "index" in item
            else str(item["reason"])
        )
    return str(item)
