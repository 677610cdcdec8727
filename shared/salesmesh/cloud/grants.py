"""Every IAM grant the mesh's code needs on Google Cloud, with the code that needs it.

One table for two readers: the offline Terraform checks (``tests/terraform``) fail when the
Terraform does not make one of these, and ``salesmesh doctor --project`` reads each from the
real project's IAM policies. Identities are the mesh's roles (``train_trigger``, ...,
``builder``: the account ``salesmesh-<role>`` Terraform creates) or a Google service agent
(:data:`AGENTS`); a target is a bucket, topic or function by its role in the mesh, a service
account by its mesh role, the queue, or the project itself.
"""

from __future__ import annotations

from dataclasses import dataclass

# the accounts Terraform creates, by mesh role: salesmesh-<role with '-'>@<project>.iam...
ACCOUNTS = (
    "train_trigger",
    "deploy_model",
    "alert_handler",
    "training",
    "serving",
    "rollout_invoker",
    "builder",
    "scheduler",
)
# Google's service agents, by name here -> the account's name, of the project's number
AGENTS = {
    "storage agent": "service-{number}@gs-project-accounts.iam.gserviceaccount.com",
    "monitoring notification agent": (
        "service-{number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
    ),
    "pubsub agent": "service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com",
}


@dataclass(frozen=True)
class Need:
    """``who`` needs ``role`` on ``kind`` ``target`` ("" for the project) because ``why``."""

    who: str
    kind: str  # project, bucket, topic, queue, service_account, function
    target: str
    role: str
    why: str

    @property
    def grant(self) -> tuple[str, str, str, str]:
        return (self.who, self.kind, self.target, self.role)


def account_email(role: str, project: str) -> str:
    """The email of the account Terraform creates for a mesh role."""
    if role not in ACCOUNTS:
        raise ValueError(f"no mesh account {role!r}; known: {', '.join(ACCOUNTS)}")
    return f"salesmesh-{role.replace('_', '-')}@{project}.iam.gserviceaccount.com"


def member(who: str, project: str, number: str) -> str:
    """The IAM member string of a mesh role or a service agent."""
    if who in AGENTS:
        return "serviceAccount:" + AGENTS[who].format(number=number)
    return "serviceAccount:" + account_email(who, project)


_VIEW, _USE = "roles/storage.objectViewer", "roles/storage.objectUser"
_INVOKE, _ACT_AS = "roles/run.invoker", "roles/iam.serviceAccountUser"
NEEDS: tuple[Need, ...] = (
    Need("train_trigger", "bucket", "data", _VIEW, "reads each upload (intake)"),
    Need(
        "train_trigger",
        "bucket",
        "state",
        _USE,
        "merges the sales history, claims the pending run, records uploads, quarantines, "
        "writes accuracy/",
    ),
    Need(
        "train_trigger", "bucket", "model", _VIEW, "reads serving runs' gate.json for live accuracy"
    ),
    Need(
        "train_trigger",
        "project",
        "",
        "roles/aiplatform.user",
        "submits the Vertex AI training job",
    ),
    Need(
        "train_trigger",
        "service_account",
        "training",
        _ACT_AS,
        "runs the job as the training account",
    ),
    Need(
        "train_trigger",
        "topic",
        "alerts",
        "roles/pubsub.publisher",
        "publishes a degraded version's incident (salesmesh.accuracy)",
    ),
    Need("deploy_model", "bucket", "model", _VIEW, "verifies and reads each run (artifact)"),
    Need("deploy_model", "bucket", "state", _USE, "writes the rollout ledger"),
    Need(
        "deploy_model",
        "project",
        "",
        "roles/aiplatform.user",
        "registers versions, deploys to the endpoint, moves traffic",
    ),
    Need(
        "deploy_model",
        "project",
        "",
        "roles/monitoring.viewer",
        "reads the canary's traffic and latency (gcp Metrics)",
    ),
    Need(
        "deploy_model",
        "service_account",
        "serving",
        _ACT_AS,
        "deploys models as the serving account",
    ),
    Need(
        "deploy_model",
        "service_account",
        "rollout_invoker",
        _ACT_AS,
        "schedules steps with the invoker's OIDC token (gcp_tasks)",
    ),
    Need(
        "deploy_model", "queue", "rollout", "roles/cloudtasks.enqueuer", "schedules the next step"
    ),
    Need("alert_handler", "bucket", "state", _USE, "writes the rollback into the ledger"),
    Need(
        "alert_handler", "project", "", "roles/aiplatform.user", "moves the endpoint's traffic back"
    ),
    Need(
        "alert_handler",
        "queue",
        "rollout",
        "roles/cloudtasks.enqueuer",
        "re-arms the rollout after an abort",
    ),
    Need(
        "training",
        "bucket",
        "state",
        _USE,
        "resolves the history, releases the pending claim, records its run",
    ),
    Need("training", "bucket", "model", _USE, "publishes the run folder"),
    Need("serving", "bucket", "model", _VIEW, "the prediction container loads its run"),
    Need(
        "monitoring notification agent",
        "topic",
        "alerts",
        "roles/pubsub.publisher",
        "the notification channel publishes incidents",
    ),
    Need(
        "storage agent",
        "project",
        "",
        "roles/pubsub.publisher",
        "Eventarc's Cloud Storage triggers",
    ),
    Need(
        "train_trigger",
        "function",
        "train_trigger",
        _INVOKE,
        "Eventarc delivers each upload's event as train_trigger's account",
    ),
    Need(
        "deploy_model",
        "function",
        "deploy_model",
        _INVOKE,
        "Eventarc delivers each run's event as deploy_model's account",
    ),
    Need(
        "alert_handler",
        "function",
        "alert_handler",
        _INVOKE,
        "Eventarc delivers each incident as alert_handler's account",
    ),
    Need(
        "rollout_invoker",
        "function",
        "deploy_model",
        _INVOKE,
        "Cloud Tasks posts each rollout step with the invoker's OIDC token (gcp_tasks)",
    ),
    *(
        Need(
            f,
            "project",
            "",
            "roles/eventarc.eventReceiver",
            f"{f}'s trigger delivers events as its account",
        )
        for f in ("train_trigger", "deploy_model", "alert_handler")
    ),
    Need(
        "scheduler",
        "function",
        "train_trigger",
        _INVOKE,
        "Cloud Scheduler posts the retrain with the scheduler's OIDC token (scheduler.tf)",
    ),
    Need(
        "builder",
        "project",
        "",
        "roles/cloudbuild.builds.builder",
        "Cloud Build builds each function's container from its package",
    ),
    Need(
        "pubsub agent",
        "topic",
        "alerts_dead_letter",
        "roles/pubsub.publisher",
        "Pub/Sub forwards what alert_handler keeps failing on to the dead-letter topic",
    ),
)
