"""The Vertex AI endpoint backend against the installed SDK, with Vertex AI's services faked.

Only the SDK's generated v1 clients are patched (autospec, see ``fake_vertex``), so a wrong
argument to ``deploy_model``, ``undeploy_model`` or ``get_operation`` fails here, and the SDK's
``Endpoint.update`` and ``predict`` run as in production. Versions come from the Vertex registry
backend; deployed models serve the session's real trained artifact, and the broken one fails its
deploy as Vertex AI would. Deployments take the fake's clock time (0 unless a test sets it).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_endpoint import PROBE, EndpointContract, VersionFor
from fake_vertex import LOCATION, PROJECT, PROJECT_NUMBER, FakeVertex, serving

# hard imports: the SDK is a dev dependency, and this suite must never skip quietly
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform

from salesmesh.backends.gcp_endpoint import LONGEST_POLL_SECONDS, VertexEndpoint, _reasons
from salesmesh.backends.gcp_registry import VertexModelRegistry
from salesmesh.errors import DeployError, PredictionError
from salesmesh.ports import ModelVersion, Operation, allocate

MODEL = "salesmesh-demand"
IMAGE = "europe-docker.pkg.dev/demo-project/salesmesh/serve:1"
SERVICE_ACCOUNT = "serving@demo-project.iam.gserviceaccount.com"
CREDENTIALS = AnonymousCredentials()
# the version as the backend names it (Vertex AI takes the project id or its number)
SERVED = f"projects/{PROJECT}/locations/{LOCATION}/models/{MODEL}"


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    with serving(FakeVertex()) as fake:
        fake.create_endpoint("salesmesh")
        yield fake


@pytest.fixture
def registry(vertex: FakeVertex) -> VertexModelRegistry:
    return VertexModelRegistry(PROJECT, LOCATION, MODEL, IMAGE, credentials=CREDENTIALS)


@pytest.fixture
def endpoint(vertex: FakeVertex) -> VertexEndpoint:
    return VertexEndpoint(
        PROJECT,
        LOCATION,
        "salesmesh",
        MODEL,
        service_account=SERVICE_ACCOUNT,
        credentials=CREDENTIALS,
    )


def _register(
    vertex: FakeVertex, registry: VertexModelRegistry, run: str, folder: Path
) -> ModelVersion:
    uri = f"gs://salesmesh-models/runs/{run}/model"
    vertex.artifacts[uri] = folder  # what the serving container finds at AIP_STORAGE_URI
    return registry.register(uri, labels={"salesmesh-run": run}, metrics={})


@pytest.fixture
def version_for(
    vertex: FakeVertex, registry: VertexModelRegistry, model_artifact: Path
) -> VersionFor:
    versions = {n: _register(vertex, registry, f"r-{n}", model_artifact) for n in (1, 2, 3)}
    return versions.__getitem__


@pytest.fixture
def broken_version(
    vertex: FakeVertex, registry: VertexModelRegistry, broken_artifact: Path
) -> ModelVersion:
    return _register(vertex, registry, "r-broken", broken_artifact)


class TestVertexEndpointContract(EndpointContract):
    pass


def deploys(vertex: FakeVertex) -> list:
    return [request for name, request in vertex.calls if name == "deploy_model"]


def test_deploy_sends_machine_replicas_account_and_split(vertex, endpoint, version_for):
    """The deployed model gets the version, machine type, replicas, service account and split."""
    first = endpoint.deploy(version_for(1), 0)
    endpoint.deploy(version_for(2), 10)
    one, two = deploys(vertex)
    deployed = one.deployed_model
    assert deployed.model == f"{SERVED}@1"
    assert deployed.display_name == f"{MODEL}-v1"
    assert deployed.service_account == SERVICE_ACCOUNT
    resources = deployed.dedicated_resources
    assert resources.machine_spec.machine_type == "n1-standard-2"
    assert (resources.min_replica_count, resources.max_replica_count) == (1, 1)
    assert dict(one.traffic_split) == {"0": 100}
    assert dict(two.traffic_split) == {first.id: 90, "0": 10}


def test_deploy_uses_the_configured_machine(vertex, version_for):
    """machine_type, min_replicas and max_replicas reach the deploy request."""
    endpoint = VertexEndpoint(
        PROJECT,
        LOCATION,
        f"projects/{PROJECT}/locations/{LOCATION}/endpoints/salesmesh",
        MODEL,
        machine_type="n1-highmem-4",
        min_replicas=2,
        max_replicas=3,
        credentials=CREDENTIALS,
    )
    endpoint.deploy(version_for(1), 100)
    resources = deploys(vertex)[0].deployed_model.dedicated_resources
    assert resources.machine_spec.machine_type == "n1-highmem-4"
    assert (resources.min_replica_count, resources.max_replica_count) == (2, 3)


def test_broken_deploy_is_a_deploy_error_with_vertex_cause(endpoint, version_for, broken_version):
    """Vertex AI's failed deploy operation becomes DeployError naming the version; cause kept."""
    endpoint.deploy(version_for(1), 0)
    with pytest.raises(DeployError, match="never became ready") as caught:
        endpoint.deploy(broken_version, 10)
    assert isinstance(caught.value.__cause__, exceptions.FailedPrecondition)
    assert f"version {broken_version.version_id}" in str(caught.value)


def test_deploying_an_unregistered_version_is_refused_at_once(vertex, endpoint):
    """Vertex AI refuses a version the registry does not hold: DeployError, no operation."""
    ghost = ModelVersion("42", "gs://salesmesh-models/runs/ghost", "2026-11-03T00:00:00.000Z")
    with pytest.raises(DeployError, match="42") as caught:
        endpoint.start_deploy(ghost, 0)
    assert isinstance(caught.value.__cause__, exceptions.NotFound)
    assert vertex.operations == {}
    assert (endpoint.deployed(), endpoint.traffic()) == ([], {})


def test_deployment_takes_its_time_on_the_fake_clock(vertex, endpoint, version_for):
    """A 15-minute deployment is pending (nothing listed) until its time has passed, then done."""
    vertex.deploy_seconds = 900
    name = endpoint.start_deploy(version_for(1), 0)
    prefix = f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/salesmesh/operations/"
    assert name.startswith(prefix)
    vertex.clock.advance(899)
    assert endpoint.operation(name) == Operation(name, done=False)
    assert (endpoint.deployed(), endpoint.traffic()) == ([], {})
    vertex.clock.advance(1)
    done = endpoint.operation(name)
    assert done.done and done.error is None
    assert endpoint.traffic() == {done.deployed_model_id: 100}
    assert endpoint.health(str(done.deployed_model_id), PROBE).ok


def test_failed_deployment_reports_vertex_status(vertex, endpoint, broken_version):
    """A container that never became ready fails its operation with Vertex AI's status."""
    vertex.deploy_seconds = 60
    name = endpoint.start_deploy(broken_version, 0)
    assert not endpoint.operation(name).done
    vertex.clock.advance(60)
    failed = endpoint.operation(name)
    assert failed.done and failed.deployed_model_id is None
    assert failed.error is not None and failed.error.startswith("FAILED_PRECONDITION: ")
    assert "never became ready" in failed.error


def test_deploy_polls_with_backoff_until_done(vertex, version_for):
    """deploy() waits out a 15-minute operation by polling, each wait at most 30 s."""
    vertex.deploy_seconds = 900
    endpoint = VertexEndpoint(
        PROJECT, LOCATION, "salesmesh", MODEL, credentials=CREDENTIALS, sleep=vertex.clock.advance
    )
    deployed = endpoint.deploy(version_for(1), 0)
    assert endpoint.traffic() == {deployed.id: 100}
    assert 900 <= vertex.clock.now < 900 + LONGEST_POLL_SECONDS
    polls = [request.name for name, request in vertex.calls if name == "get_operation"]
    assert 900 / LONGEST_POLL_SECONDS < len(polls) < 45  # backed off, yet never slept past 30 s


def test_operations_not_of_this_endpoint_are_unknown(vertex, endpoint, version_for):
    """Another endpoint's name, an unknown id and an undeploy operation are all KeyError."""
    name = endpoint.start_deploy(version_for(1), 0)
    vertex.calls.clear()
    with pytest.raises(KeyError):
        endpoint.operation(name.replace("/endpoints/salesmesh/", "/endpoints/other/"))
    assert vertex.calls == []  # refused without asking Vertex AI
    with pytest.raises(KeyError, match="knows no operation"):
        endpoint.operation(name.rsplit("/", 1)[0] + "/operations/12345")
    endpoint.undeploy(str(endpoint.operation(name).deployed_model_id))
    *_, undeploy = vertex.operations  # the newest operation of the fake
    with pytest.raises(KeyError, match="not a deployment"):
        endpoint.operation(undeploy)


def test_undeploy_does_not_wait_for_vertex(vertex, endpoint, version_for):
    """undeploy returns once Vertex AI accepted it; the model stays listed until it is done."""
    first = endpoint.deploy(version_for(1), 0)
    second = endpoint.deploy(version_for(2), 0)
    vertex.undeploy_seconds = 600
    endpoint.undeploy(second.id)  # the fake's future fails the test if it is waited on
    (request,) = [r for name, r in vertex.calls if name == "undeploy_model"]
    assert dict(request.traffic_split) == {first.id: 100}
    assert [d.id for d in endpoint.deployed()] == [first.id, second.id]
    vertex.clock.advance(600)
    assert [d.id for d in endpoint.deployed()] == [first.id]
    assert endpoint.traffic() == {first.id: 100}


def test_bad_split_is_refused_before_vertex_is_asked(vertex, endpoint, version_for):
    """set_traffic checks the split itself; Vertex AI sees no update for a bad one."""
    first = endpoint.deploy(version_for(1), 0)
    with pytest.raises(ValueError):
        endpoint.set_traffic({first.id: 60})
    assert [name for name, _ in vertex.calls if name == "update_endpoint"] == []


def test_health_probes_only_a_model_with_all_traffic(vertex, endpoint, version_for):
    """A model at 100 % answers the probe; one at 0 % is healthy by its deploy's health wait."""
    first = endpoint.deploy(version_for(1), 0)
    second = endpoint.deploy(version_for(2), 0)
    vertex.calls.clear()
    assert endpoint.health(second.id, PROBE).ok
    assert [name for name, _ in vertex.calls if name == "predict"] == []
    assert endpoint.health(first.id, PROBE).ok
    assert [name for name, _ in vertex.calls if name == "predict"] == ["predict"]


def test_health_reports_a_refused_probe(endpoint, version_for):
    """A probe the serving model refuses makes it unhealthy, with the container's reason."""
    first = endpoint.deploy(version_for(1), 0)
    health = endpoint.health(first.id, {**PROBE, "product_id": "P404"})
    assert not health.ok
    assert "unknown series" in health.reason and "P404" in health.reason


def test_prediction_error_carries_status_and_reasons(endpoint, version_for):
    """A 4xx from Vertex AI becomes PredictionError with one reason per refused instance."""
    endpoint.deploy(version_for(1), 0)
    with pytest.raises(PredictionError) as caught:
        endpoint.predict([{**PROBE, "store_id": "S98"}, PROBE, {**PROBE, "store_id": "S99"}])
    assert caught.value.status == 400
    assert [reason.split(":")[0] for reason in caught.value.reasons] == ["instance 0", "instance 2"]


def test_reasons_fall_back_to_the_message():
    """Without per-instance reasons, the container's error or else the whole message is one."""
    assert _reasons("Endpoint has no deployed models") == ["Endpoint has no deployed models"]
    assert _reasons('{"error": "the request body is not valid JSON", "reasons": []}') == [
        "the request body is not valid JSON"
    ]
    assert _reasons('400 {"reasons": [{"reason": "x"}, "y"]}') == ["x", "y"]


def test_the_last_model_can_be_undeployed(endpoint, version_for):
    """As on Vertex AI, undeploying the only model empties the endpoint and its split."""
    only = endpoint.deploy(version_for(1), 0)
    endpoint.undeploy(only.id)
    assert (endpoint.deployed(), endpoint.traffic()) == ([], {})


def test_ports_allocate_is_the_sdks_allocation():
    """ports.allocate (the local endpoint's rule) splits traffic exactly as the SDK's deploy."""
    chance = random.Random(7)
    for _ in range(3000):
        cuts = sorted(chance.randint(0, 100) for _ in range(chance.randint(0, 3)))
        shares = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
        split = {f"m{i}": share for i, share in enumerate(shares)}
        percentage = chance.randint(0, 100)
        sdk = aiplatform.Endpoint._allocate_traffic(dict(split), percentage)
        expected = {
            **dict.fromkeys(split, 0),
            **{k if k != "0" else "new": v for k, v in sdk.items()},
        }
        assert allocate(split, "new", percentage) == expected, (split, percentage)
