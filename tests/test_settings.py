"""Settings read once from an environment mapping, with defaults and named validation errors."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from salesmesh.errors import ConfigError, MeshError
from salesmesh.settings import ENV_VARS, Settings

FULL_ENV = {
    "GOOGLE_CLOUD_PROJECT": "acme-forecasts",
    "SALESMESH_REGION": "us-central1",
    "SALESMESH_BACKEND": "gcp",
    "SALESMESH_DATA_BUCKET": "acme-sales-data",
    "SALESMESH_MODEL_BUCKET": "acme.sales.models",
    "SALESMESH_STATE_BUCKET": "acme_sales_state",
    "SALESMESH_UPLOAD_PREFIX": "incoming/csv/",
    "SALESMESH_QUARANTINE_PREFIX": "rejected/",
    "SALESMESH_HORIZON": "14",
    "SALESMESH_STATE_DIR": "/var/lib/salesmesh",
    "SALESMESH_TRAINING_IMAGE": "europe-west1-docker.pkg.dev/acme/mesh/trainer:1.2",
    "SALESMESH_SERVICE_ACCOUNT": "trainer@acme-forecasts.iam.gserviceaccount.com",
}


def test_empty_environment_gives_the_defaults():
    """With nothing set, settings point at the local mesh with the documented defaults."""
    assert Settings.from_env({}) == Settings(
        project="local",
        region="europe-west1",
        backend="local",
        data_bucket="salesmesh-data",
        model_bucket="salesmesh-models",
        state_bucket="salesmesh-state",
        upload_prefix="uploads/",
        quarantine_prefix="quarantine/",
        horizon=28,
        state_dir=Path(".salesmesh"),
        training_image=None,
        service_account=None,
    )


def test_every_variable_is_read():
    """Each variable lands in its field, horizon as an int and state_dir as a Path."""
    assert Settings.from_env(FULL_ENV) == Settings(
        project="acme-forecasts",
        region="us-central1",
        backend="gcp",
        data_bucket="acme-sales-data",
        model_bucket="acme.sales.models",
        state_bucket="acme_sales_state",
        upload_prefix="incoming/csv/",
        quarantine_prefix="rejected/",
        horizon=14,
        state_dir=Path("/var/lib/salesmesh"),
        training_image="europe-west1-docker.pkg.dev/acme/mesh/trainer:1.2",
        service_account="trainer@acme-forecasts.iam.gserviceaccount.com",
    )


def test_every_field_has_its_variable():
    """No setting can be added without an environment variable to set it."""
    assert set(ENV_VARS) == {f.name for f in dataclasses.fields(Settings)}


def test_empty_values_count_as_unset():
    """VAR= (as Terraform and shells export optional values) keeps the default."""
    settings = Settings.from_env({"SALESMESH_TRAINING_IMAGE": "", "SALESMESH_HORIZON": ""})
    assert (settings.training_image, settings.horizon) == (None, 28)


def test_unrelated_variables_are_ignored():
    """Variables that are not ours change nothing."""
    assert Settings.from_env({"PATH": "/bin", "SALESMESH_UNKNOWN": "x"}) == Settings()


def test_settings_are_frozen():
    """Settings cannot be changed after they are read."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.backend = "gcp"  # type: ignore[misc]


def test_bucket_role_resolves_wiring_roles():
    """The wiring's bucket roles data, model and state map to the configured names."""
    settings = Settings.from_env(FULL_ENV)
    assert [settings.bucket(r) for r in ("data", "model", "state")] == [
        "acme-sales-data",
        "acme.sales.models",
        "acme_sales_state",
    ]


def test_unknown_bucket_role_is_refused():
    """An unknown role names itself and the known ones."""
    with pytest.raises(ConfigError) as caught:
        Settings().bucket("logs")
    assert (
        str(caught.value)
        == "unknown bucket role 'logs'; expected one of ['data', 'model', 'state']"
    )


def test_config_error_is_a_mesh_error():
    """ConfigError belongs to the one error family."""
    assert issubclass(ConfigError, MeshError)


def refused(env: dict[str, str]) -> str:
    """The ConfigError message for ``env``."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return str(caught.value)


@pytest.mark.parametrize("value", ["aws", "GCP", "local "])
def test_unknown_backend(value):
    """Only 'local' and 'gcp' are backends."""
    assert refused({"SALESMESH_BACKEND": value}) == (
        f"SALESMESH_BACKEND={value!r} is invalid: expected one of local, gcp"
    )


@pytest.mark.parametrize("value", ["0", "-7", "two", "1.5"])
def test_horizon_must_be_a_positive_whole_number(value):
    """Zero, negative, words and fractions are refused for the horizon."""
    assert refused({"SALESMESH_HORIZON": value}) == (
        f"SALESMESH_HORIZON={value!r} is invalid: expected a positive whole number of periods"
    )


def test_horizon_built_directly_is_checked_too():
    """Constructing Settings in code goes through the same validation."""
    with pytest.raises(ConfigError, match=r"^SALESMESH_HORIZON=True is invalid"):
        Settings(horizon=True)


@pytest.mark.parametrize(
    "value",
    ["ab", "a" * 64, "Sales-Data", "-sales", "sales-", "sales data", "sales/data", "sales@data"],
)
@pytest.mark.parametrize(
    "variable", ["SALESMESH_DATA_BUCKET", "SALESMESH_MODEL_BUCKET", "SALESMESH_STATE_BUCKET"]
)
def test_implausible_bucket_names(variable, value):
    """Each bucket must follow GCS naming: 3-63 lowercase chars, alphanumeric at both ends."""
    assert refused({variable: value}) == (
        f"{variable}={value!r} is invalid: expected 3-63 lowercase letters, digits, '-', '_' "
        "or '.', starting and ending alphanumeric"
    )


def test_bucket_name_limits_are_inclusive():
    """Names of exactly 3 and 63 characters are fine."""
    settings = Settings.from_env(
        {"SALESMESH_DATA_BUCKET": "abc", "SALESMESH_STATE_BUCKET": "s" * 63}
    )
    assert (settings.data_bucket, len(settings.state_bucket)) == ("abc", 63)


def test_model_bucket_must_differ_from_data_bucket():
    """A shared data and model bucket would make every model look like an upload."""
    assert refused({"SALESMESH_MODEL_BUCKET": "salesmesh-data"}) == (
        "SALESMESH_MODEL_BUCKET='salesmesh-data' is invalid: "
        "expected a bucket other than SALESMESH_DATA_BUCKET's"
    )


def test_state_bucket_must_differ_from_model_bucket():
    """State and model buckets are distinct too."""
    assert refused({"SALESMESH_STATE_BUCKET": "salesmesh-models"}) == (
        "SALESMESH_STATE_BUCKET='salesmesh-models' is invalid: "
        "expected a bucket other than SALESMESH_MODEL_BUCKET's"
    )


@pytest.mark.parametrize("variable", ["SALESMESH_UPLOAD_PREFIX", "SALESMESH_QUARANTINE_PREFIX"])
@pytest.mark.parametrize("value", ["uploads", "/uploads/", "/"])
def test_prefixes_are_relative_folders(variable, value):
    """A prefix must end with '/' and not start with one."""
    assert refused({variable: value}) == (
        f"{variable}={value!r} is invalid: expected a folder such as 'uploads/': "
        "ends with '/', no leading '/'"
    )


@pytest.mark.parametrize(
    ("upload", "quarantine"),
    [("uploads/", "uploads/bad/"), ("data/", "data/"), ("data/in/", "data/")],
)
def test_quarantine_must_not_overlap_uploads(upload, quarantine):
    """A quarantined copy under the upload prefix would be delivered again: refused."""
    env = {"SALESMESH_UPLOAD_PREFIX": upload, "SALESMESH_QUARANTINE_PREFIX": quarantine}
    assert refused(env) == (
        f"SALESMESH_QUARANTINE_PREFIX={quarantine!r} is invalid: "
        f"expected a folder that neither contains nor is inside {upload!r}"
    )


@pytest.mark.parametrize("value", ["Europe-West1", "europe", "europe-west"])
def test_region_must_look_like_a_region(value):
    """Regions look like 'europe-west1'."""
    assert refused({"SALESMESH_REGION": value}) == (
        f"SALESMESH_REGION={value!r} is invalid: expected a Google Cloud region such as "
        "'europe-west1'"
    )


def test_project_built_directly_must_not_be_empty():
    """An empty project id is refused (from the environment, empty means the default)."""
    with pytest.raises(ConfigError) as caught:
        Settings(project="")
    assert str(caught.value) == (
        "GOOGLE_CLOUD_PROJECT='' is invalid: expected a Google Cloud project id"
    )


def test_readme_documents_every_variable():
    """The README's configuration table names every variable Settings reads, and no other."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    assert documented == set(ENV_VARS.values())


def test_deploy_knobs_are_read_and_checked():
    """Canary share and wait, gate tolerance and models kept come from the environment."""
    settings = Settings.from_env(
        {
            "SALESMESH_CANARY_PERCENT": "25",
            "SALESMESH_CANARY_SECONDS": "0.5",
            "SALESMESH_GATE_TOLERANCE": "0.1",
            "SALESMESH_KEEP_DEPLOYED": "3",
            "SALESMESH_MODEL_NAME": "acme-demand",
            "SALESMESH_ENDPOINT": "acme",
        }
    )
    assert (settings.canary_percent, settings.canary_wait) == (25, 0.5)
    assert (settings.gate_tolerance, settings.keep_deployed) == (0.1, 3)
    assert (settings.model_name, settings.endpoint) == ("acme-demand", "acme")


def test_canary_wait_defaults_by_backend():
    """Unset, the canary waits 2 s on the local mesh and 240 s on Vertex AI."""
    assert Settings().canary_wait == 2.0
    assert Settings(backend="gcp").canary_wait == 240.0
    assert Settings(canary_seconds=0).canary_wait == 0


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("SALESMESH_CANARY_PERCENT", "100", "a whole percentage from 1 to 99"),
        ("SALESMESH_CANARY_PERCENT", "ten", "a whole percentage from 1 to 99"),
        ("SALESMESH_CANARY_SECONDS", "-1", "seconds from 0 to 86400"),
        ("SALESMESH_CANARY_SECONDS", "nan", "seconds from 0 to 86400"),
        ("SALESMESH_GATE_TOLERANCE", "5", "a fraction from 0 to 1"),
        ("SALESMESH_KEEP_DEPLOYED", "0", "at least 1"),
        ("SALESMESH_MODEL_NAME", "Demand Model", "lowercase letters"),
        ("SALESMESH_ENDPOINT", "9lives", "starting with a letter"),
    ],
)
def test_bad_deploy_knobs_name_the_variable(variable: str, value: str, allowed: str):
    """A bad value stops start-up, quoting the variable, the value and what is allowed."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert f"{variable}={value!r} is invalid" in str(caught.value)
    assert allowed in str(caught.value)


def test_task_settings_are_read():
    """Queue id, deploy_model's URL and the invoker account come from the environment."""
    settings = Settings.from_env(
        {
            "SALESMESH_TASKS_QUEUE": "acme-rollout",
            "SALESMESH_DEPLOY_URL": "https://deploy-model-abc123-ew.a.run.app",
            "SALESMESH_TASKS_SERVICE_ACCOUNT": "tasks@acme-forecasts.iam.gserviceaccount.com",
        }
    )
    assert settings.tasks_queue == "acme-rollout"
    assert settings.deploy_url == "https://deploy-model-abc123-ew.a.run.app"
    assert settings.tasks_service_account == "tasks@acme-forecasts.iam.gserviceaccount.com"
    assert (Settings().tasks_queue, Settings().deploy_url) == ("salesmesh-rollout", None)


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("SALESMESH_TASKS_QUEUE", "rollout queue", "a Cloud Tasks queue id"),
        ("SALESMESH_TASKS_QUEUE", "q" * 101, "1-100 letters, digits or '-'"),
        ("SALESMESH_DEPLOY_URL", "http://deploy-model.run.app", "an https:// URL"),
        ("SALESMESH_DEPLOY_URL", "deploy-model.run.app", "an https:// URL"),
        ("SALESMESH_TASKS_SERVICE_ACCOUNT", "tasks", "a service account email"),
    ],
)
def test_bad_task_settings_name_the_variable(variable: str, value: str, allowed: str):
    """A malformed queue id, a URL that is not https (the OIDC token would travel in the clear)
    or an account that is no email stops start-up with the variable named."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert f"{variable}={value!r} is invalid" in str(caught.value)
    assert allowed in str(caught.value)
