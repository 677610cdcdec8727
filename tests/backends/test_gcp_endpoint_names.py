"""The Vertex AI endpoint is found from any form SALESMESH_ENDPOINT may take.

Custom ids, the numeric ids Vertex AI gives endpoints created without one (Terraform's
``google_vertex_ai_endpoint`` among them) and full resource names, with the project as an id or
as the number Vertex AI writes. Read through the installed SDK against the faked service.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_vertex import LOCATION, PROJECT, PROJECT_NUMBER, FakeVertex, serving
from google.auth.credentials import AnonymousCredentials

from salesmesh import runtime
from salesmesh.backends.gcp_endpoint import VertexEndpoint
from salesmesh.errors import ConfigError
from salesmesh.settings import Settings

MODEL = "salesmesh-demand"
NUMERIC_ID = "4876523089237741568"
BASE = f"projects/{PROJECT}/locations/{LOCATION}"


@pytest.mark.parametrize(
    ("given", "resource_name"),
    [
        ("salesmesh", f"{BASE}/endpoints/salesmesh"),
        (NUMERIC_ID, f"{BASE}/endpoints/{NUMERIC_ID}"),
        (f"{BASE}/endpoints/{NUMERIC_ID}", f"{BASE}/endpoints/{NUMERIC_ID}"),
        (
            f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{NUMERIC_ID}",
            f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{NUMERIC_ID}",
        ),
    ],
)
def test_resource_name_is_built_from_each_form(given, resource_name):
    """A custom id, a numeric id and a full name (project id or number) all name the endpoint."""
    endpoint = VertexEndpoint(PROJECT, LOCATION, given, MODEL)
    assert endpoint.resource_name == resource_name
    assert endpoint.model_resource_name == f"{BASE}/models/{MODEL}"


@pytest.mark.parametrize(
    "given",
    [
        f"projects/{PROJECT}/locations/us-central1/endpoints/{NUMERIC_ID}",
        f"projects/other-project/locations/{LOCATION}/endpoints/{NUMERIC_ID}",
        "Salesmesh",
    ],
)
def test_an_endpoint_elsewhere_or_malformed_is_refused(given):
    """A name in another region or project, or no endpoint id at all, is a ConfigError."""
    with pytest.raises(ConfigError, match=r"^SALESMESH_ENDPOINT=.* is invalid"):
        VertexEndpoint(PROJECT, LOCATION, given, MODEL)


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    with serving(FakeVertex()) as fake:
        fake.create_endpoint(NUMERIC_ID)  # as Terraform creates it: Vertex AI picks the id
        yield fake


@pytest.mark.parametrize(
    "given",
    [NUMERIC_ID, f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{NUMERIC_ID}"],
)
def test_a_numerically_named_endpoint_is_read_through_the_sdk(vertex, given):
    """The SDK reaches the endpoint by its numeric id and by the name Terraform outputs."""
    endpoint = VertexEndpoint(PROJECT, LOCATION, given, MODEL, credentials=AnonymousCredentials())
    assert (endpoint.deployed(), endpoint.traffic()) == ([], {})
    reads = [request.name for name, request in vertex.calls if name == "get_endpoint"]
    assert reads and all(read.endswith(f"/endpoints/{NUMERIC_ID}") for read in reads)


def test_settings_wire_a_numeric_endpoint_into_the_gcp_backend():
    """runtime.endpoint builds the Vertex endpoint named by SALESMESH_ENDPOINT's numeric id."""
    settings = Settings.from_env(
        {
            "SALESMESH_BACKEND": "gcp",
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "SALESMESH_REGION": LOCATION,
            "SALESMESH_ENDPOINT": NUMERIC_ID,
        }
    )
    endpoint = runtime.endpoint(settings)
    assert isinstance(endpoint, VertexEndpoint)
    assert endpoint.resource_name == f"{BASE}/endpoints/{NUMERIC_ID}"
    assert settings.endpoint_id == NUMERIC_ID


@pytest.mark.parametrize(
    ("account", "expected"),
    [("serve@p.iam.gserviceaccount.com", "serve@p.iam.gserviceaccount.com"), (None, "train@p.iam")],
)
def test_deployed_models_run_as_the_serving_account(account: str | None, expected: str):
    """Models are deployed as SALESMESH_SERVING_SERVICE_ACCOUNT (Terraform's serving account,
    which only reads the model bucket), falling back to the training account when unset."""
    env = {
        "SALESMESH_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SALESMESH_REGION": LOCATION,
        "SALESMESH_SERVICE_ACCOUNT": "train@p.iam",
    }
    if account:
        env["SALESMESH_SERVING_SERVICE_ACCOUNT"] = account
    endpoint = runtime.endpoint(Settings.from_env(env))
    assert isinstance(endpoint, VertexEndpoint)
    assert endpoint.service_account == expected
