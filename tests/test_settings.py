"""Settings read once from an environment mapping, with defaults and named validation errors."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError

from salesmesh.errors import ConfigError, MeshError
from salesmesh.settings import ENV_VARS, Settings, declared_regressors

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
    assert Settings(backend="gcp", project="acme-forecasts").canary_wait == 240.0
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
        ("SALESMESH_SERVICE_ACCOUNT", "trainer", "a service account email"),
        ("SALESMESH_SERVING_SERVICE_ACCOUNT", "serving at acme", "a service account email"),
    ],
)
def test_bad_task_settings_name_the_variable(variable: str, value: str, allowed: str):
    """A malformed queue id, a URL that is not https (the OIDC token would travel in the clear)
    or an account that is no email stops start-up with the variable named."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert f"{variable}={value!r} is invalid" in str(caught.value)
    assert allowed in str(caught.value)


GCP = {"SALESMESH_BACKEND": "gcp", "SALESMESH_REGION": "europe-west4"}
NUMERIC_ID = "4876523089237741568"  # what Vertex AI gives an endpoint created without an id


@pytest.fixture
def adc() -> Iterator[mock.MagicMock]:
    """google.auth.default, autospec'd: Application Default Credentials naming 'adc-project'."""
    with mock.patch(
        "google.auth.default", autospec=True, return_value=(AnonymousCredentials(), "adc-project")
    ) as default:
        yield default


@pytest.mark.parametrize(
    ("endpoint", "endpoint_id"),
    [
        ("salesmesh", "salesmesh"),
        (NUMERIC_ID, NUMERIC_ID),
        ("123", "123"),
        ("projects/acme-forecasts/locations/europe-west4/endpoints/salesmesh", "salesmesh"),
        (f"projects/acme-forecasts/locations/europe-west4/endpoints/{NUMERIC_ID}", NUMERIC_ID),
        # Vertex AI and Terraform write the project number; it cannot be compared with an id
        (f"projects/123456789012/locations/europe-west4/endpoints/{NUMERIC_ID}", NUMERIC_ID),
    ],
)
def test_gcp_accepts_custom_and_numeric_ids_and_resource_names(endpoint, endpoint_id):
    """On gcp an endpoint is a custom id, Vertex AI's numeric id or its resource name."""
    settings = Settings.from_env(
        {**GCP, "GOOGLE_CLOUD_PROJECT": "acme-forecasts", "SALESMESH_ENDPOINT": endpoint}
    )
    assert (settings.endpoint, settings.endpoint_id) == (endpoint, endpoint_id)


def test_a_project_number_accepts_a_name_with_a_project_id():
    """A configured project number cannot be compared with an id in the name either: accepted."""
    name = f"projects/acme-forecasts/locations/europe-west4/endpoints/{NUMERIC_ID}"
    env = {**GCP, "GOOGLE_CLOUD_PROJECT": "123456789012", "SALESMESH_ENDPOINT": name}
    assert Settings.from_env(env).endpoint_id == NUMERIC_ID


@pytest.mark.parametrize(
    ("project", "name", "reason"),
    [
        (
            "acme-forecasts",
            "projects/acme-forecasts/locations/us-central1/endpoints/7",
            "expected an endpoint in SALESMESH_REGION='europe-west4', not in 'us-central1': "
            "set the region the endpoint lives in",
        ),
        (
            "acme-forecasts",
            "projects/other-project/locations/europe-west4/endpoints/7",
            "expected an endpoint of GOOGLE_CLOUD_PROJECT='acme-forecasts', not of "
            "'other-project': a function serves its own project's endpoint",
        ),
        (
            "123456789012",
            "projects/210987654321/locations/europe-west4/endpoints/7",
            "expected an endpoint of GOOGLE_CLOUD_PROJECT='123456789012', not of "
            "'210987654321': a function serves its own project's endpoint",
        ),
    ],
)
def test_a_resource_name_elsewhere_stops_start_up(project, name, reason):
    """A full name in another region, or in a comparably named other project, is refused."""
    env = {**GCP, "GOOGLE_CLOUD_PROJECT": project, "SALESMESH_ENDPOINT": name}
    assert refused(env) == f"SALESMESH_ENDPOINT={name!r} is invalid: {reason}"


@pytest.mark.parametrize(
    "endpoint",
    [
        "9lives",
        "0123",
        "12345678901234567890",
        "Salesmesh",
        "projects/acme-forecasts/locations/europe-west4/endpoints/Bad_Id",
        "projects/acme-forecasts/endpoints/7",
        "locations/europe-west4/endpoints/7",
        "projects/acme-forecasts/locations/europe-west4/endpoints/7/",
    ],
)
def test_gcp_refuses_what_is_neither_an_id_nor_a_resource_name(endpoint):
    """Anything else on gcp is refused, and the message shows the forms that work."""
    env = {**GCP, "GOOGLE_CLOUD_PROJECT": "acme-forecasts", "SALESMESH_ENDPOINT": endpoint}
    assert refused(env) == (
        f"SALESMESH_ENDPOINT={endpoint!r} is invalid: expected an endpoint id (1-63 lowercase "
        "letters, digits or '-', starting with a letter; or Vertex AI's numeric id) or its "
        "resource name projects/PROJECT/locations/REGION/endpoints/ID"
    )


@pytest.mark.parametrize(
    "endpoint", [NUMERIC_ID, "projects/local/locations/europe-west1/endpoints/salesmesh"]
)
def test_local_endpoint_is_a_folder_name_only(endpoint):
    """The local endpoint is a folder: numeric ids and resource names are Vertex AI's only."""
    assert refused({"SALESMESH_ENDPOINT": endpoint}) == (
        f"SALESMESH_ENDPOINT={endpoint!r} is invalid: expected on the local backend a folder "
        "name: 1-63 lowercase letters, digits or '-', starting with a letter"
    )


def test_gcp_project_comes_from_the_environment_first(adc):
    """GOOGLE_CLOUD_PROJECT, when set, is the project; ADC is not even asked."""
    assert Settings.from_env({**GCP, "GOOGLE_CLOUD_PROJECT": "acme-forecasts"}).project == (
        "acme-forecasts"
    )
    adc.assert_not_called()


def test_gcp_project_falls_back_to_application_default_credentials(adc):
    """Without GOOGLE_CLOUD_PROJECT the gcp backend takes the project ADC names."""
    assert Settings.from_env(GCP).project == "adc-project"
    adc.assert_called_once_with()


def test_local_backend_keeps_the_local_project(adc):
    """Locally the project stays 'local' and ADC is never consulted."""
    assert Settings.from_env({}).project == "local"
    adc.assert_not_called()


NO_PROJECT_MESSAGE = (
    "no Google Cloud project for SALESMESH_BACKEND=gcp: GOOGLE_CLOUD_PROJECT is not set and "
    "Application Default Credentials name none. Set GOOGLE_CLOUD_PROJECT=<project id>, or give "
    "ADC a project (`gcloud config set project <project id>` after `gcloud auth "
    "application-default login`, or a service-account key in GOOGLE_APPLICATION_CREDENTIALS)"
)


def test_gcp_without_credentials_or_project_stops_start_up(adc):
    """No GOOGLE_CLOUD_PROJECT and no ADC: start-up fails naming both ways to fix it."""
    adc.side_effect = DefaultCredentialsError("Your default credentials were not found.")
    assert refused(GCP) == NO_PROJECT_MESSAGE


def test_gcp_with_credentials_that_name_no_project_stops_start_up(adc):
    """ADC without a project (user credentials, no gcloud project set) is no project either."""
    adc.return_value = (AnonymousCredentials(), None)
    assert refused(GCP) == NO_PROJECT_MESSAGE


def test_gcp_settings_built_in_code_need_a_project():
    """Settings(backend='gcp') cannot keep the local default project."""
    with pytest.raises(ConfigError) as caught:
        Settings(backend="gcp")
    assert str(caught.value) == NO_PROJECT_MESSAGE


def test_alert_settings_are_read_and_names_derive_from_the_topic():
    """The alerts topic and scale come from the environment; subscription and dead-letter
    topic names are derived from the topic in one place."""
    settings = Settings.from_env(
        {"SALESMESH_ALERTS_TOPIC": "acme-alerts", "SALESMESH_ALERT_SCALE": "0.05"}
    )
    assert (settings.alerts_topic, settings.alert_scale) == ("acme-alerts", 0.05)
    assert settings.topic("alerts") == "acme-alerts"
    assert settings.subscription("alerts", "alert_handler") == "acme-alerts-alert-handler"
    assert settings.dead_letter_topic("alerts") == "acme-alerts-dead-letter"
    assert (Settings().alerts_topic, Settings().alert_scale) == ("salesmesh-alerts", 1.0)
    with pytest.raises(ConfigError, match="unknown topic role 'data'"):
        settings.topic("data")


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "nan", "fast"])
def test_alert_scale_is_a_fraction_above_zero_up_to_one(value: str):
    """SALESMESH_ALERT_SCALE outside (0, 1] stops start-up, naming the variable."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SALESMESH_ALERT_SCALE": value})
    assert str(caught.value) == (
        f"SALESMESH_ALERT_SCALE={value!r} is invalid: expected a factor above 0 and at most 1, "
        "such as 0.05"
    )


@pytest.mark.parametrize("value", ["ab", "9alerts", "googalerts", "has space", "x" * 191])
def test_alerts_topic_must_be_a_pubsub_topic_id(value: str):
    """A topic id Pub/Sub would refuse stops start-up, naming the variable."""
    with pytest.raises(ConfigError, match=r"SALESMESH_ALERTS_TOPIC=.* is invalid: expected a Pub"):
        Settings.from_env({"SALESMESH_ALERTS_TOPIC": value})


def test_the_replace_prefix_lies_inside_the_upload_prefix():
    """An upload under <upload prefix><replace prefix> replaces; elsewhere it merges."""
    settings = Settings.from_env({"SALESMESH_REPLACE_PREFIX": "full/"})
    assert settings.replaces_history("uploads/full/all.csv")
    assert not settings.replaces_history("uploads/all.csv")
    assert not settings.replaces_history("full/all.csv")
    with pytest.raises(ConfigError, match="SALESMESH_REPLACE_PREFIX"):
        Settings.from_env({"SALESMESH_REPLACE_PREFIX": "/full"})
    with pytest.raises(ConfigError, match="SALESMESH_HISTORY_QUIET"):
        Settings.from_env({"SALESMESH_HISTORY_QUIET": "-1"})


def test_regressors_are_a_comma_separated_list():
    """SALESMESH_REGRESSORS gives a tuple of names; a key column among them is refused."""
    settings = Settings.from_env({"SALESMESH_REGRESSORS": " holiday, planned_discount ,"})
    assert settings.regressors == ("holiday", "planned_discount")
    assert Settings.from_env({}).regressors == ()
    with pytest.raises(ConfigError, match="SALESMESH_REGRESSORS='date,holiday' is invalid"):
        Settings.from_env({"SALESMESH_REGRESSORS": "date,holiday"})


def test_declared_regressors_are_read_without_the_rest_of_the_settings():
    """The trainer's one setting is read alone: a gcp backend with no project does not matter."""
    env = {"SALESMESH_BACKEND": "gcp", "SALESMESH_REGRESSORS": "holiday"}
    assert declared_regressors(env) == ("holiday",)
    assert declared_regressors({}) == ()
    with pytest.raises(ConfigError, match="SALESMESH_REGRESSORS='sales' is invalid"):
        declared_regressors({"SALESMESH_REGRESSORS": "sales"})
