"""The Vertex AI registry backend against the installed SDK, with Vertex AI's services faked.

Only the SDK's generated v1 clients are patched (autospec, see ``fake_vertex``): ``Model.upload``,
``ModelRegistry`` and the request protos are the SDK's own code. The contract runs twice, once
for each reading of Vertex AI's alias rule (a held alias is refused / is moved).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest import mock

import pytest
from contract_registry import LABELS, METRICS, RegistryContract, register
from fake_vertex import LOCATION, PROJECT, FakeVertex, serving

# hard imports: the SDK is a dev dependency, and this suite must never skip quietly
from google.api_core import exceptions
from google.auth import default as adc_default
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud.aiplatform_v1 import ModelServiceClient

from salesmesh.backends import gcp_vertex
from salesmesh.backends.gcp_registry import MAX_METRICS_CHARS, VertexModelRegistry
from salesmesh.ports import CHAMPION, PREVIOUS

MODEL = "salesmesh-demand"
IMAGE = "europe-docker.pkg.dev/demo-project/salesmesh/serve:1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}/models/{MODEL}"
CREDENTIALS = AnonymousCredentials()


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    with serving(FakeVertex()) as fake:
        yield fake


@pytest.fixture
def registry(vertex: FakeVertex) -> VertexModelRegistry:
    return VertexModelRegistry(PROJECT, LOCATION, MODEL, IMAGE, credentials=CREDENTIALS)


class TestVertexRegistryContract(RegistryContract):
    @pytest.fixture(params=["refuse", "move"])
    def vertex(self, request: pytest.FixtureRequest) -> Iterator[FakeVertex]:
        with serving(FakeVertex(alias_conflict=request.param)) as fake:
            yield fake


def requests(vertex: FakeVertex, method: str) -> list[Any]:
    return [request for name, request in vertex.calls if name == method]


@pytest.fixture
def upload_spy() -> Iterator[mock.MagicMock]:
    with mock.patch.object(
        aiplatform.Model, "upload", autospec=True, side_effect=aiplatform.Model.upload
    ) as spy:
        yield spy


def test_first_register_creates_the_model(registry, vertex, upload_spy):
    """The first version creates model_name as the default version, serving /predict on 8080."""
    version = register(registry, "r-1", aliases=[CHAMPION])
    common = {
        "serving_container_image_uri": IMAGE,
        "artifact_uri": "gs://salesmesh-models/runs/r-1",
        "display_name": MODEL,
        "labels": {**LABELS, "salesmesh-run": "r-1"},
        "version_description": json.dumps(METRICS, sort_keys=True, separators=(",", ":")),
        "serving_container_predict_route": "/predict",
        "serving_container_health_route": "/health",
        "serving_container_ports": [8080],
        "project": PROJECT,
        "location": LOCATION,
        "credentials": CREDENTIALS,
        "sync": True,
    }
    upload_spy.assert_called_once_with(
        model_id=MODEL, is_default_version=True, version_aliases=mock.ANY, **common
    )
    (request,) = requests(vertex, "upload_model")
    assert (request.model_id, request.parent_model) == (MODEL, "")
    assert list(request.model.version_aliases) == [CHAMPION, "default"]
    spec = request.model.container_spec
    assert (spec.image_uri, spec.predict_route, spec.health_route) == (IMAGE, "/predict", "/health")
    assert [port.container_port for port in spec.ports] == [8080]
    assert version.version_id == "1"
    assert version.aliases == (CHAMPION,)  # "default" is Vertex AI's, not reported


def test_second_register_adds_a_version_that_is_not_default(registry, vertex, upload_spy):
    """Later versions go under parent_model with is_default_version=False; default stays on 1."""
    register(registry, "r-1")
    second = register(registry, "r-2")
    kwargs = upload_spy.call_args_list[1].kwargs
    assert (kwargs["parent_model"], kwargs["is_default_version"]) == (PARENT, False)
    assert "model_id" not in kwargs
    request = requests(vertex, "upload_model")[1]
    assert (request.parent_model, request.model_id) == (PARENT, "")
    assert list(request.model.version_aliases) == []
    assert second.version_id == "2"
    first, latest = vertex.models[MODEL]
    assert ("default" in first.version_aliases, "default" in latest.version_aliases) == (
        True,
        False,
    )


def test_losing_the_race_to_create_the_model_adds_a_version(registry, vertex):
    """If another registration created the model meanwhile, this one becomes its next version."""
    other = VertexModelRegistry(PROJECT, LOCATION, MODEL, IMAGE, credentials=CREDENTIALS)
    register(other, "r-1")
    with mock.patch.object(registry, "versions", return_value=[]):  # it looked before r-1 landed
        version = register(registry, "r-2")
    assert version.version_id == "2"
    assert [(r.model_id, r.parent_model) for r in requests(vertex, "upload_model")] == [
        (MODEL, ""),
        (MODEL, ""),
        ("", PARENT),
    ]


def test_alias_moves_by_removing_then_adding(registry, vertex):
    """set_alias takes the alias from its holder, then gives it: two version-named merges."""
    register(registry, "r-1", aliases=[CHAMPION])
    register(registry, "r-2")
    vertex.calls.clear()
    registry.set_alias(CHAMPION, "2")
    merges = [(r.name, list(r.version_aliases)) for r in requests(vertex, "merge_version_aliases")]
    assert merges == [(f"{PARENT}@1", [f"-{CHAMPION}"]), (f"{PARENT}@2", [CHAMPION])]


def test_held_alias_moves_only_after_the_upload(registry, vertex):
    """A held alias is not in the upload; it moves once the new version exists."""
    register(registry, "r-1", aliases=[CHAMPION, PREVIOUS])
    vertex.calls.clear()
    register(registry, "r-2", aliases=[CHAMPION, "canary"])
    steps = [
        (name, list(r.model.version_aliases) if name == "upload_model" else list(r.version_aliases))
        for name, r in vertex.calls
        if name in ("upload_model", "merge_version_aliases")
    ]
    assert steps == [
        ("upload_model", ["canary"]),
        ("merge_version_aliases", [f"-{CHAMPION}"]),
        ("merge_version_aliases", [CHAMPION]),
    ]
    assert registry.get("1").aliases == (PREVIOUS,)


def test_failed_upload_leaves_aliases_where_they_were(registry, vertex):
    """If the upload fails, the alias its new version was to take stays with its holder."""
    register(registry, "r-1", aliases=[CHAMPION])
    vertex.faults["upload_model"] = exceptions.ServiceUnavailable("try again")
    with pytest.raises(exceptions.ServiceUnavailable):
        register(registry, "r-2", aliases=[CHAMPION])
    assert registry.alias(CHAMPION).version_id == "1"


def test_update_labels_changes_one_version_only(registry, vertex):
    """Labels go to the named version (a versioned UpdateModel), not to every version."""
    register(registry, "r-1")
    register(registry, "r-2")
    registry.update_labels("1", {"salesmesh-deploy": "gated"})
    (request,) = requests(vertex, "update_model")
    assert (request.model.name, list(request.update_mask.paths)) == (f"{PARENT}@1", ["labels"])
    assert "salesmesh-deploy" not in registry.get("2").labels


def test_find_asks_vertex_with_a_label_filter(registry, vertex):
    """find() sends every wanted label as a Vertex AI filter term."""
    register(registry, "r-1")
    registry.find({"salesmesh-run": "r-1", "salesmesh-correlation": "c-1"})
    filters = [r.filter for r in requests(vertex, "list_model_versions")]
    assert filters[-1] == 'labels.salesmesh-run="r-1" AND labels.salesmesh-correlation="c-1"'


def test_refusals_happen_before_any_api_call(registry, vertex):
    """Bad labels, aliases, metrics or artifact URIs fail here, without calling Vertex AI."""
    bad_calls: list[dict[str, Any]] = [
        {"labels": {"Run": "x"}},
        {"aliases": ["Champion"]},
        {"metrics": {"mase": float("nan")}},
        {"metrics": {"origins": ("2025-11-05",)}},
        {"metrics": {"curve": "x" * MAX_METRICS_CHARS}},
        {"artifact_uri": "/tmp/runs/r-1"},
    ]
    for bad in bad_calls:
        arguments = {"artifact_uri": "gs://b/runs/r-1", "labels": {}, "metrics": {}, **bad}
        with pytest.raises(ValueError):
            registry.register(arguments.pop("artifact_uri"), **arguments)
    assert vertex.calls == []


def test_metrics_round_trip_exactly(registry):
    """Metrics come back as an equal dict, floats to the last digit."""
    metrics = {"models": {"salesmesh": {"mase": 0.1 + 0.2, "bias": -1e-9}}, "note": None}
    version = registry.register("gs://b/runs/r-1", labels={}, metrics=metrics)
    assert registry.get(version.version_id).metrics == metrics


def test_get_ignores_aliases_and_unknown_names(registry):
    """get() takes version ids only; alias() takes our alias names only."""
    register(registry, "r-1", aliases=[CHAMPION])
    assert registry.get(CHAMPION) is None
    assert registry.get("default") is None
    assert registry.alias("default") is None
    assert registry.alias("1") is None


def test_patched_sdk_rejects_wrong_argument_names(vertex):
    """The autospec boundary is real: a misspelt keyword fails as it would against Vertex AI."""
    with pytest.raises(TypeError):
        ModelServiceClient.upload_model(object(), requst={})


@pytest.fixture
def fresh_process() -> Iterator[None]:
    """No SDK set-up recorded yet, as in a new process; aiplatform's own config restored after."""
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    with mock.patch.dict(gcp_vertex._SDK, clear=True):
        yield
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


def test_application_default_credentials_are_resolved_once(fresh_process):
    """Without credentials, ADC is looked up once, with the cloud-platform scope, and reused."""
    adc = AnonymousCredentials()
    with (
        mock.patch("google.auth.default", autospec=True, return_value=(adc, PROJECT)) as default,
        mock.patch.object(aiplatform, "init", autospec=True) as init,
    ):
        assert gcp_vertex.vertex_sdk(PROJECT, LOCATION, None) == (aiplatform, adc)
        assert gcp_vertex.vertex_sdk(PROJECT, LOCATION, None) == (aiplatform, adc)
    default.assert_called_once_with(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    init.assert_called_once_with(project=PROJECT, location=LOCATION, credentials=adc)


def test_sdk_is_set_up_again_only_for_another_project_location_or_credentials(fresh_process):
    """aiplatform.init is process-wide: it runs again when, and only when, what it holds changes."""
    other = AnonymousCredentials()
    with mock.patch.object(aiplatform, "init", autospec=True) as init:
        for project, location, credentials in [
            (PROJECT, LOCATION, CREDENTIALS),
            (PROJECT, LOCATION, CREDENTIALS),
            (PROJECT, "us-central1", CREDENTIALS),
            (PROJECT, "us-central1", other),
            ("other-project", "us-central1", other),
            ("other-project", "us-central1", other),
        ]:
            gcp_vertex.vertex_sdk(project, location, credentials)
    assert init.call_args_list == [
        mock.call(project=PROJECT, location=LOCATION, credentials=CREDENTIALS),
        mock.call(project=PROJECT, location="us-central1", credentials=CREDENTIALS),
        mock.call(project=PROJECT, location="us-central1", credentials=other),
        mock.call(project="other-project", location="us-central1", credentials=other),
    ]


def test_concurrent_first_uses_set_the_sdk_up_once(fresh_process):
    """Threads of one function server racing to the first call resolve ADC and init once."""
    adc = AnonymousCredentials()

    def slow_default(**_: Any) -> tuple[Any, str]:
        time.sleep(0.05)  # a metadata-server round trip: long enough for every thread to arrive
        return adc, PROJECT

    with (
        mock.patch("google.auth.default", autospec=True, side_effect=slow_default) as default,
        mock.patch.object(aiplatform, "init", autospec=True) as init,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        results = list(pool.map(lambda _: gcp_vertex.vertex_sdk(PROJECT, LOCATION, None), range(8)))
    assert results == [(aiplatform, adc)] * 8
    assert (default.call_count, init.call_count) == (1, 1)


def test_one_sdk_set_up_per_process_and_one_model_client_per_backend(vertex):
    """Two registries, many calls: ADC and aiplatform.init once, one ModelServiceClient each."""
    setup = VertexModelRegistry(PROJECT, LOCATION, MODEL, IMAGE, credentials=CREDENTIALS)
    register(setup, "r-1", aliases=[CHAMPION])
    register(setup, "r-2")
    adc = AnonymousCredentials()
    with (
        mock.patch.dict(gcp_vertex._SDK, clear=True),  # a new process, as far as salesmesh knows
        # over the fake's refusing stand-in, so autospec'd from the real function
        mock.patch(
            "google.auth.default", mock.create_autospec(adc_default, return_value=(adc, PROJECT))
        ) as default,
        mock.patch.object(aiplatform, "init", autospec=True, side_effect=aiplatform.init) as init,
        mock.patch.object(
            ModelServiceClient,
            "__init__",
            autospec=True,
            side_effect=ModelServiceClient.__init__,
        ) as built,
    ):
        # a function builds its backends per event: two events, each with its own registry
        for _event in range(2):
            registry = VertexModelRegistry(PROJECT, LOCATION, MODEL, IMAGE)
            for _ in range(3):
                assert [v.version_id for v in registry.versions()] == ["1", "2"]
                assert registry.get("2") is not None
                assert registry.alias(CHAMPION) is not None
            registry.set_alias(CHAMPION, "2")
            registry.set_alias(CHAMPION, "1")
            registry.update_labels("1", {"salesmesh-deploy": "gated"})
    default.assert_called_once_with(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    init.assert_called_once_with(project=PROJECT, location=LOCATION, credentials=adc)
    assert built.call_count == 2  # one generated v1 client per registry, none per call


def test_gcp_serving_backends_import_the_sdk_only_when_used():
    """Building the registry and the endpoint does not import google.cloud.aiplatform."""
    code = textwrap.dedent(
        """
        import sys
        from salesmesh.backends.gcp_endpoint import VertexEndpoint
        from salesmesh.backends.gcp_registry import VertexModelRegistry
        VertexModelRegistry("p", "europe-west4", "m", "image")
        VertexEndpoint("p", "europe-west4", "salesmesh", "m")
        print("google.cloud.aiplatform" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "False"
