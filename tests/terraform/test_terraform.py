"""terraform/, checked offline: parsed with python-hcl2, held to the rules in tf_checks, and
formatted as `terraform fmt` wants; mutated copies show each check fails, naming the fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tf_checks import TERRAFORM, all_problems, grants, load, resolve

from salesmesh.cloud import grants as grants_needed
from salesmesh.settings import Settings

# What the code does on Google Cloud, and the grant each act needs (salesmesh.cloud.grants, the
# table `salesmesh doctor` checks a real project against): the Terraform must make every one.
NEEDS = [(need.grant, need.why) for need in grants_needed.NEEDS]


def test_the_terraform_keeps_every_rule():
    """No problem at all in the repository's terraform/ (which holds what the checks read)."""
    resources = load()["resource"]
    assert set(resources["google_storage_bucket"]) == {
        "access_logs",
        "data",
        "model",
        "state",
        "sources",
    }
    assert set(resources["google_pubsub_topic"]) == {"alerts", "alerts_dead_letter"}
    assert set(resources["google_monitoring_alert_policy"]) == {"mesh"}
    assert set(resources["google_cloudfunctions2_function"]) == {
        "train_trigger",
        "deploy_model",
        "alert_handler",
    }
    assert list(all_problems(needs=NEEDS)) == []


def test_grants_are_read_from_every_form_the_terraform_uses():
    """Bucket, project and act-as grants from the locals' tables, the queue's for_each, the
    topic's and the agents' resources: all counted, so a missing one cannot hide."""
    made = grants(load())
    assert len(made) == 39
    assert ("alert_handler", "queue", "rollout", "roles/cloudtasks.enqueuer") in made
    assert ("rollout_invoker", "function", "deploy_model", "roles/run.invoker") in made
    assert ("monitoring notification agent", "topic", "alerts", "roles/pubsub.publisher") in made


def test_quarantined_uploads_expire_where_train_trigger_puts_them():
    """train_trigger copies a rejected upload into the state bucket under the quarantine
    prefix (pinned by tests/test_intake.py's quarantine test): that bucket, and only it,
    deletes that prefix after var.quarantine_days."""
    buckets = load()["resource"]["google_storage_bucket"]
    found = {
        name: [rule["condition"][0] for rule in body.get("lifecycle_rule", [])]
        for name, body in buckets.items()
    }
    quarantine = {
        name: [c for c in rules if c.get("matches_prefix")]
        for name, rules in found.items()
        if any(c.get("matches_prefix") for c in rules)
    }
    assert quarantine == {
        "state": [
            {"age": "${var.quarantine_days}", "matches_prefix": [Settings().quarantine_prefix]}
        ]
    }


def test_the_alerts_topics_are_named_as_the_functions_name_them():
    """The topic and its dead-letter topic carry the names the settings derive."""
    settings = Settings()
    config = load()
    topics = config["resource"]["google_pubsub_topic"]
    assert config["locals"]["alerts_topic"] == settings.alerts_topic
    assert topics["alerts_dead_letter"]["name"] == "${local.alerts_topic}-dead-letter"
    assert settings.dead_letter_topic("alerts") == f"{settings.alerts_topic}-dead-letter"


def test_the_functions_are_named_as_their_logs_are_read():
    """`salesmesh logs` on gcp reads the Cloud Run services gcp_logs.SERVICES names; the
    functions carry those names and the log sink selects them."""
    from salesmesh.backends.gcp_logs import SERVICES

    config = load()
    functions = config["resource"]["google_cloudfunctions2_function"]
    names = {resolve(body["name"], config) for body in functions.values()}
    assert names == set(SERVICES)
    assert 'for f in values(local.function_names) : "\\"${f}\\""' in config["locals"]["log_filter"]


def test_deploy_model_is_posted_to_at_its_deterministic_url():
    """Cloud Tasks posts rollout steps to deploy_model's deterministic run.app URL, known
    before the function exists; the settings accept it, the longest project number still fits
    one DNS label, and the OIDC audience is its origin."""
    from salesmesh.backends.gcp_tasks import _origin

    config = load()
    assert config["locals"]["function_env"]["SALESMESH_DEPLOY_URL"] == "${local.deploy_url}"
    assert config["locals"]["deploy_url"] == "${local.function_urls.deploy_model}"
    assert config["locals"]["function_urls"] == (
        '${{for f, name in local.function_names : f => "https://${name}-'
        '${data.google_project.this.number}.${var.region}.run.app"}}'
    )
    name = resolve("${local.function_names.deploy_model}", config)
    label = f"{name}-{'9' * 19}"  # a project number is at most 19 digits
    assert len(label) <= 63
    url = f"https://{label}.northamerica-northeast2.run.app"
    assert Settings.from_env({"SALESMESH_DEPLOY_URL": url}).deploy_url == url
    assert _origin(url) == url


def test_the_functions_get_every_setting_the_gcp_backend_needs():
    """The functions' environment names exactly the settings the gcp backend reads: the
    project, the buckets, topic, endpoint, model, images, the three accounts, queue and URL."""
    from salesmesh.settings import ENV_VARS

    env = load()["locals"]["function_env"]
    wanted = {
        "backend",
        "project",
        "region",
        "data_bucket",
        "model_bucket",
        "state_bucket",
        "alerts_topic",
        "endpoint",
        "model_name",
        "training_image",
        "serving_image",
        "service_account",
        "serving_service_account",
        "tasks_queue",
        "deploy_url",
        "tasks_service_account",
    }
    assert set(env) == {ENV_VARS[field] for field in wanted}
    assert env["SALESMESH_BACKEND"] == "gcp"
    assert env["SALESMESH_ENDPOINT"] == "${google_vertex_ai_endpoint.mesh.name}"
    config = load()
    assert config["resource"]["google_vertex_ai_endpoint"]["mesh"]["name"] == "${var.endpoint_id}"
    assert config["locals"]["model_name"] == Settings().model_name
    # the provider wants the endpoint's name numeric; the functions take such an id
    numeric = config["variable"]["endpoint_id"]["default"]
    gcp = {"SALESMESH_BACKEND": "gcp", "GOOGLE_CLOUD_PROJECT": "p", "SALESMESH_REGION": "us-east1"}
    settings = Settings.from_env({**gcp, "SALESMESH_ENDPOINT": numeric})
    assert settings.endpoint_id == numeric


def test_the_apis_are_the_ones_the_preflight_checks():
    """apis.tf enables the APIs of the very file `salesmesh doctor` reads them from."""
    from salesmesh.cloud import doctor

    body = load()["resource"]["google_project_service"]["required"]
    listed = Path(doctor.__file__).with_name("apis.json")
    assert body["for_each"] == (
        '${toset(jsondecode(file("${path.module}/../shared/salesmesh/cloud/apis.json")).apis)}'
    )
    assert (TERRAFORM / "../shared/salesmesh/cloud/apis.json").resolve() == listed.resolve()
    assert "cloudtasks.googleapis.com" in doctor.APIS and len(doctor.APIS) == 13


def test_the_retrain_schedule_posts_what_the_local_schedule_posts():
    """Off by default; when set, Cloud Scheduler posts train_trigger the retrain CloudEvent the
    local mesh's schedule posts (same type, the same ce-* attributes but the time), as the
    scheduler account, whose token train_trigger accepts."""
    from salesmesh.local.binary import RETRAIN_EVENT, retrain_event

    config = load()
    job = config["resource"]["google_cloud_scheduler_job"]["retrain"]
    assert job["count"] == '${var.retrain_schedule == "" ? 0 : 1}'
    assert config["variable"]["retrain_schedule"]["default"] == ""
    assert config["locals"]["retrain_event"] == RETRAIN_EVENT
    target = job["http_target"][0]
    assert target["uri"] == "${local.function_urls.train_trigger}"
    assert target["oidc_token"][0]["audience"] == target["uri"]
    local = retrain_event("p", "l").headers()
    assert set(target["headers"]) == set(local) - {"ce-time"}  # optional in CloudEvents
    assert target["headers"]["ce-type"] == "${local.retrain_event}"
    assert 'who = "schedule"' in target["body"]
    assert ("scheduler", "function", "train_trigger", "roles/run.invoker") in grants(config)


def _replace(name: str, old: str, new: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        path = folder / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new, 1))

    return mutate


def _remove(relative: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        (folder.parent / relative).unlink()

    return mutate


MUTATIONS = {
    "wrong bucket filter": (
        _replace(
            "functions.tf",
            "value     = google_storage_bucket.data.name",
            "value     = google_storage_bucket.model.name",
        ),
        "google_cloudfunctions2_function.train_trigger: event_trigger must filter on the data "
        "bucket only",
    ),
    "wrong event type": (
        _replace(
            "functions.tf",
            "event_type            = local.triggers.deploy_model.event_type",
            'event_type            = "google.cloud.storage.object.v1.deleted"',
        ),
        "google_cloudfunctions2_function.deploy_model: event_trigger.event_type must be "
        "google.cloud.storage.object.v1.finalized",
    ),
    "missing function source": (
        _remove("functions/train_trigger/main.py"),
        "functions/train_trigger/main.py does not define train_trigger(): the function's "
        "source is missing",
    ),
    "another function's package": (
        _replace("functions.tf", 'package["deploy_model"]', 'package["train_trigger"]'),
        "google_cloudfunctions2_function.deploy_model: build_config.source.storage_source.object "
        'must be google_storage_bucket_object.package["deploy_model"].name',
    ),
    "packages not built by build.py": (
        _replace("functions.tf", '"--terraform"', '"--json"'),
        "data.external.packages must run functions/build.py --terraform",
    ),
    "public ingress": (
        _replace("functions.tf", '"ALLOW_INTERNAL_ONLY"', '"ALLOW_ALL"'),
        'google_cloudfunctions2_function.train_trigger: set service_config.ingress_settings = "'
        'ALLOW_INTERNAL_ONLY"',
    ),
    "too little memory": (
        _replace(
            "functions.tf", 'deploy_model  = { memory = "1Gi"', 'deploy_model  = { memory = "256Mi"'
        ),
        "google_cloudfunctions2_function.deploy_model: available_memory '256Mi' is under the 1024 "
        "MiB deploy_model was measured to need",
    ),
    "concurrent rollout steps": (
        _replace("functions.tf", "max_instances = 1 }", "max_instances = 3 }"),
        "google_cloudfunctions2_function.deploy_model: max_instance_count must be 1",
    ),
    "a setting the code does not read": (
        _replace("functions.tf", "SALESMESH_DEPLOY_URL ", "SALESMESH_DEPLOYURL  "),
        "local.function_env sets SALESMESH_DEPLOYURL, which salesmesh.settings does not read",
    ),
    "a provider not pinned": (
        _replace("versions.tf", "    time = {", "    times = {"),
        "time_sleep: the provider 'time' is not in versions.tf's required_providers",
    ),
    "the rollout invoker may not call deploy_model": (
        _replace(
            "iam.tf",
            '"deploy_model-rollout_invoker" = { function = "deploy_model", '
            'who = "rollout_invoker" }',
            "",
        ),
        "rollout_invoker needs roles/run.invoker on the deploy_model function: Cloud Tasks posts",
    ),
    "public bucket": (
        _replace("storage.tf", '"enforced"', '"inherited"'),
        'google_storage_bucket.access_logs: set public_access_prevention = "enforced"',
    ),
    "no uniform access": (
        _replace(
            "storage.tf",
            "uniform_bucket_level_access = true",
            "uniform_bucket_level_access = false",
        ),
        "google_storage_bucket.access_logs: set uniform_bucket_level_access = true",
    ),
    "wiring read from a copy": (
        _replace("locals.tf", "shared/salesmesh/triggers.json", "terraform/triggers.json"),
        "local.wiring must be jsondecode(file(...)) of shared/salesmesh/triggers.json",
    ),
    "thresholds read from elsewhere": (
        _replace("locals.tf", "alerts/policies.json", "alerts/thresholds.json"),
        "local.policies must be jsondecode(file(...)) of shared/salesmesh/alerts/policies.json",
    ),
    "trigger bucket missing": (
        _replace(
            "storage.tf",
            'resource "google_storage_bucket" "model"',
            'resource "google_storage_bucket" "models"',
        ),
        "deploy_model listens to google_storage_bucket.model, which is missing",
    ),
    "misspelled argument": (
        _replace("storage.tf", "uniform_bucket_level_access", "uniform_bucket_level_acess"),
        "google_storage_bucket.access_logs: the provider knows no argument or block "
        "'uniform_bucket_level_acess'",
    ),
    "misspelled nested argument": (
        _replace(
            "storage.tf",
            "days_since_noncurrent_time = var.noncurrent_days",
            "days_since_noncurrent = var.noncurrent_days",
        ),
        "google_storage_bucket.data.lifecycle_rule[0].condition[0]: the provider knows no "
        "argument or block 'days_since_noncurrent'",
    ),
    "missing required argument": (
        _replace("apis.tf", "  service = each.value\n", ""),
        "google_project_service.required: the required argument 'service' is missing",
    ),
    "unknown resource type": (
        _replace(
            "pubsub.tf",
            'resource "google_pubsub_topic" "alerts_dead_letter"',
            'resource "google_pubsub_topics" "alerts_dead_letter"',
        ),
        "google_pubsub_topics.alerts_dead_letter: hashicorp/google 8.7.0 has no resource",
    ),
    "primitive role": (
        _replace("iam.tf", '"roles/monitoring.viewer"', '"roles/editor"'),
        "primitive role roles/editor",
    ),
    "a grant the code needs is missing": (
        _replace(
            "iam.tf",
            '"deploy_model-state"  = { bucket = "state", who = "deploy_model", '
            'role = "roles/storage.objectUser" }\n',
            "",
        ),
        "deploy_model needs roles/storage.objectUser on the state bucket: writes the rollout "
        "ledger",
    ),
    "a grant to an account that does not exist": (
        _replace(
            "iam.tf",
            'who = "serving", role = "roles/storage.objectViewer"',
            'who = "servign", role = "roles/storage.objectViewer"',
        ),
        "names an unknown account 'servign'",
    ),
    "a threshold written in, not read": (
        _replace(
            "monitoring.tf",
            "threshold_value         = each.value.threshold_value",
            "threshold_value         = 400",
        ),
        "google_monitoring_alert_policy.mesh: threshold_value must come from policies.json "
        "(each.value.threshold_value), not '400'",
    ),
    "a policy key that does not exist": (
        _replace(
            "monitoring.tf",
            "denominator_aggregations.value.reducer",
            "denominator_aggregations.value.reduce",
        ),
        "google_monitoring_alert_policy.mesh: policies.json entries have no key 'reduce'",
    ),
    "a misspelled argument in a dynamic block": (
        _replace(
            "monitoring.tf",
            "per_series_aligner   = denominator_aggregations",
            "per_series_align     = denominator_aggregations",
        ),
        "google_monitoring_alert_policy.mesh.conditions[0].condition_threshold[0]."
        "denominator_aggregations: the provider knows no argument or block 'per_series_align'",
    ),
    "untyped variable": (
        _replace(
            "variables.tf", "  type        = number\n  default     = 90", "  default     = 90"
        ),
        "variable.quarantine_days: give it a type",
    ),
    "unformatted": (
        _replace(
            "pubsub.tf",
            "  project                    = var.project_id",
            "  project = var.project_id",
        ),
        "terraform fmt would change: ",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_mutated_copy_fails_naming_the_fix(name: str, tmp_path: Path):
    """Each mutation of a copy (beside a link to shared/, as the real one sits) is caught."""
    mutate, expected = MUTATIONS[name]
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    (tmp_path / "shared").symlink_to(TERRAFORM.parent / "shared")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(TERRAFORM.parent / "functions", tmp_path / "functions", ignore=ignore)
    mutate(copy)
    problems = list(all_problems(copy, NEEDS))
    assert any(expected in p for p in problems), problems


def test_the_schema_is_derived_from_the_providers_own_names():
    """derive.py reads a resource's Terraform name and each argument's from the metadata's
    registry links, required from optionality, blocks from nested datatypes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("derive", TERRAFORM / "schema" / "derive.py")
    assert spec is not None and spec.loader is not None
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    link = "Docs at Terraform Registry: {@link https://x/docs/resources/storage_bucket#%s B#%s}"
    prop = lambda name, attr, kind, optional=True: {  # noqa: E731
        "name": name,
        "optional": optional,
        "type": kind,
        "docs": {"remarks": link % (attr, attr)},
    }
    types = {
        "@cdktn/p.b.B": {
            "kind": "class",
            "docs": {
                "summary": "Represents a {@link https://x/docs/resources/storage_bucket "
                "google_storage_bucket}"
            },
            "initializer": {"parameters": [{"type": {"fqn": "@cdktn/p.b.BConfig"}}]},
        },
        "@cdktn/p.b.BConfig": {
            "properties": [
                prop("name", "name", {"primitive": "string"}, optional=False),
                prop("publicAccessPrevention", "public_access_prevention", {"primitive": "string"}),
                prop("versioning", "versioning", {"fqn": "@cdktn/p.b.BVersioning"}),
            ]
        },
        "@cdktn/p.b.BVersioning": {
            "datatype": True,
            "properties": [prop("enabled", "enabled", {"primitive": "boolean"}, optional=False)],
        },
    }
    found = derive.derive({"types": types, "name": "p", "version": "1"})
    assert found["resources"] == {
        "google_storage_bucket": {
            "arguments": ["name"],
            "optional": ["public_access_prevention"],
            "blocks": {
                "versioning": {
                    "arguments": ["enabled"],
                    "optional": [],
                    "blocks": {},
                    "required": False,
                }
            },
        }
    }
