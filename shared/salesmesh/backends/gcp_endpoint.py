"""Vertex AI endpoint backend: deployed model versions and the traffic split across them.

Terraform creates the endpoint; this backend deploys versions of the registry's model to it.
Everything is read fresh from the endpoint resource on each call, so several processes (the
deploy and alert functions) can share one endpoint.

What Vertex AI can and cannot tell about one deployed model:

- ``Endpoint.deploy`` returns only once the container's health route answered: Vertex AI fails
  the deploy operation (``FailedPrecondition: Model server never became ready ...``) otherwise,
  and leaves the endpoint's models and split as they were. That failure is a DeployError here.
- A public shared endpoint cannot send a request to one chosen deployed model: ``predict`` and
  ``rawPredict`` follow the traffic split; ``explain`` takes a ``deployed_model_id`` but needs an
  explanation spec; ``invoke`` takes one only on dedicated endpoints. So :meth:`health` sends the
  probe when the model takes all the traffic (the answer must come from it) and otherwise reports
  a deployed, listed model as healthy on the strength of the deploy's own health wait.
- Live request and error counts per deployed model are Cloud Monitoring metrics
  (``prediction/online/prediction_count``, ``error_count``); reading them needs the Monitoring
  client, which the mesh's alert policy already watches, so ``Health.requests/errors`` stay 0.

The Vertex AI SDK is imported on first use only.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from typing import Any

from salesmesh.backends.gcp_vertex import VertexBackend, api_errors
from salesmesh.errors import DeployError, PredictionError
from salesmesh.ports import DeployedModel, Health, ModelVersion, check_split, rfc3339
from salesmesh.settings import endpoint_resource_name


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
    ) -> None:
        """``endpoint`` is a custom or numeric endpoint id or its full resource name (in this
        project and location, else ConfigError); ``model_name`` the registry's model id, whose
        versions :meth:`deploy` receives."""
        super().__init__(project, location, credentials)
        self.resource_name = endpoint_resource_name(endpoint, project, location)
        self.model_resource_name = f"projects/{project}/locations/{location}/models/{model_name}"
        self.model_name = model_name
        self.machine_type = machine_type
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.service_account = service_account

    def _endpoint(self) -> Any:
        """A fresh SDK Endpoint; its first use reads the resource from Vertex AI."""
        return self._aiplatform().Endpoint(
            self.resource_name, self.project, self.location, self._credentials
        )

    def deployed(self) -> builtins.list[DeployedModel]:
        """Every deployed model, oldest first."""
        return _deployed(self._endpoint().list_models())

    def traffic(self) -> dict[str, int]:
        """The current split over every deployed model (0 where it takes none)."""
        return _split(self._endpoint().gca_resource)

    def deploy(self, version: ModelVersion, traffic_percentage: int) -> DeployedModel:
        """Deploy ``version`` at ``traffic_percentage`` (the SDK scales the others)."""
        endpoint = self._endpoint()
        before = {d.id for d in endpoint.list_models()}
        name = f"{self.model_resource_name}@{version.version_id}"
        errors = api_errors()
        try:
            model = self._aiplatform().Model(name, self.project, self.location, self._credentials)
            endpoint.deploy(
                model=model,
                deployed_model_display_name=f"{self.model_name}-v{version.version_id}",
                traffic_percentage=traffic_percentage,
                machine_type=self.machine_type,
                min_replica_count=self.min_replicas,
                max_replica_count=self.max_replicas,
                service_account=self.service_account,
                sync=True,
            )
        except (errors.GoogleAPIError, RuntimeError) as exc:
            raise DeployError(
                f"version {version.version_id} ({name}) did not deploy to {self.resource_name}: "
                f"{exc}. The endpoint's models and traffic are as they were. A container that "
                "never became ready has its logs linked above; the serving image must answer "
                f"GET /health on AIP_HTTP_PORT once {version.artifact_uri} is loaded"
            ) from exc
        new = [
            d
            for d in _deployed(endpoint.list_models())
            if d.id not in before and d.version_id == version.version_id
        ]
        if not new:
            raise DeployError(
                f"Vertex AI reported version {version.version_id} deployed to "
                f"{self.resource_name}, but no new deployed model of it is listed there"
            )
        return new[-1]

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
        """Undeploy a model that takes no traffic while others are deployed."""
        endpoint = self._endpoint()
        split = _split(endpoint.gca_resource)
        if deployed_model_id not in split:
            raise KeyError(f"{deployed_model_id!r} is not deployed on {self.resource_name}")
        if split[deployed_model_id] > 0 and len(split) > 1:
            raise ValueError(
                f"deployed model {deployed_model_id} takes {split[deployed_model_id]} % of the "
                f"traffic on {self.resource_name}: move it elsewhere with set_traffic first"
            )
        endpoint.undeploy(deployed_model_id=deployed_model_id, sync=True)

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
