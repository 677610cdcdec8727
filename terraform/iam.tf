# Least privilege: buckets, topics, queues and service accounts are granted per resource; a
# project-level role only where the service has no resource-level grant (Vertex AI, logging,
# monitoring, Eventarc). No primitive role anywhere.

data "google_project" "this" {
  project_id = var.project_id
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

locals {
  sa = { for k, v in google_service_account.mesh : k => "serviceAccount:${v.email}" }

  # who reads or writes which bucket
  bucket_grants = {
    "train_trigger-data"  = { bucket = "data", who = "train_trigger", role = "roles/storage.objectViewer" }
    "train_trigger-state" = { bucket = "state", who = "train_trigger", role = "roles/storage.objectUser" }
    "train_trigger-model" = { bucket = "model", who = "train_trigger", role = "roles/storage.objectViewer" }
    "deploy_model-model"  = { bucket = "model", who = "deploy_model", role = "roles/storage.objectViewer" }
    "deploy_model-state"  = { bucket = "state", who = "deploy_model", role = "roles/storage.objectUser" }
    "alert_handler-state" = { bucket = "state", who = "alert_handler", role = "roles/storage.objectUser" }
    "training-data"       = { bucket = "data", who = "training", role = "roles/storage.objectViewer" }
    "training-state"      = { bucket = "state", who = "training", role = "roles/storage.objectUser" }
    "training-model"      = { bucket = "model", who = "training", role = "roles/storage.objectUser" }
    "serving-model"       = { bucket = "model", who = "serving", role = "roles/storage.objectViewer" }
  }

  # project-level roles, each because no resource-level grant exists for what is done
  project_grants = {
    "train_trigger-aiplatform" = { who = "train_trigger", role = "roles/aiplatform.user" }
    "deploy_model-aiplatform"  = { who = "deploy_model", role = "roles/aiplatform.user" }
    "alert_handler-aiplatform" = { who = "alert_handler", role = "roles/aiplatform.user" }
    "deploy_model-monitoring"  = { who = "deploy_model", role = "roles/monitoring.viewer" }
    "train_trigger-events"     = { who = "train_trigger", role = "roles/eventarc.eventReceiver" }
    "deploy_model-events"      = { who = "deploy_model", role = "roles/eventarc.eventReceiver" }
    "alert_handler-events"     = { who = "alert_handler", role = "roles/eventarc.eventReceiver" }
    "train_trigger-logging"    = { who = "train_trigger", role = "roles/logging.logWriter" }
    "deploy_model-logging"     = { who = "deploy_model", role = "roles/logging.logWriter" }
    "alert_handler-logging"    = { who = "alert_handler", role = "roles/logging.logWriter" }
    "training-logging"         = { who = "training", role = "roles/logging.logWriter" }
    "serving-logging"          = { who = "serving", role = "roles/logging.logWriter" }
  }

  # who may act as which account: launching a job or deploying a model runs it as that account;
  # scheduling a step with an OIDC token mints a token for the invoker
  act_as = {
    "train_trigger-training"        = { who = "train_trigger", as = "training" }
    "deploy_model-serving"          = { who = "deploy_model", as = "serving" }
    "deploy_model-rollout_invoker"  = { who = "deploy_model", as = "rollout_invoker" }
    "alert_handler-serving"         = { who = "alert_handler", as = "serving" }
    "alert_handler-rollout_invoker" = { who = "alert_handler", as = "rollout_invoker" }
  }

  # who may call which function: each trigger's own account (Eventarc delivers as it), the
  # rollout invoker on deploy_model (Cloud Tasks' OIDC token), the scheduler on train_trigger
  invokers = {
    "train_trigger-train_trigger"  = { function = "train_trigger", who = "train_trigger" }
    "deploy_model-deploy_model"    = { function = "deploy_model", who = "deploy_model" }
    "alert_handler-alert_handler"  = { function = "alert_handler", who = "alert_handler" }
    "deploy_model-rollout_invoker" = { function = "deploy_model", who = "rollout_invoker" }
    "train_trigger-scheduler"      = { function = "train_trigger", who = "scheduler" }
  }
}

resource "google_storage_bucket_iam_member" "mesh" {
  for_each = local.bucket_grants

  bucket = {
    data  = google_storage_bucket.data.name
    model = google_storage_bucket.model.name
    state = google_storage_bucket.state.name
  }[each.value.bucket]
  role   = each.value.role
  member = local.sa[each.value.who]
}

resource "google_project_iam_member" "mesh" {
  for_each = local.project_grants

  project = var.project_id
  role    = each.value.role
  member  = local.sa[each.value.who]
}

resource "google_service_account_iam_member" "act_as" {
  for_each = local.act_as

  service_account_id = google_service_account.mesh[each.value.as].name
  role               = "roles/iam.serviceAccountUser"
  member             = local.sa[each.value.who]
}

# the functions' builds (their build_config.service_account), not the Compute Engine default
# account; this role is the one Google documents for a function's build account
resource "google_project_iam_member" "builder" {
  # checkov:skip=CKV_GCP_49:the role Google documents for a function's build account; the builds run only build.py's packages

  project = var.project_id
  role    = "roles/cloudbuild.builds.builder"
  member  = local.sa.builder
}

# rollout steps: deploy_model (and a rollback, which may re-arm one) put tasks on the queue
resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = toset(["deploy_model", "alert_handler"])

  project  = var.project_id
  location = google_cloud_tasks_queue.rollout.location
  name     = google_cloud_tasks_queue.rollout.name
  role     = "roles/cloudtasks.enqueuer"
  member   = local.sa[each.key]
}

# a degraded version's live accuracy is published as an incident (salesmesh.accuracy)
resource "google_pubsub_topic_iam_member" "train_trigger_publishes" {
  project = var.project_id
  topic   = google_pubsub_topic.alerts.name
  role    = "roles/pubsub.publisher"
  member  = local.sa.train_trigger
}

# Cloud Monitoring's notification channel publishes incidents as its service agent
resource "google_pubsub_topic_iam_member" "monitoring_publishes" {
  project = var.project_id
  topic   = google_pubsub_topic.alerts.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
}

# Eventarc's Cloud Storage triggers: the bucket's service agent publishes its events
resource "google_project_iam_member" "gcs_publishes" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# a gen2 function is a Cloud Run service: invoking it takes run.invoker on that service
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invokers

  project  = var.project_id
  location = var.region
  name     = local.functions[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = local.sa[each.value.who]
}

# IAM is eventually consistent: a grant made a moment ago may not yet let the Cloud Storage
# agent publish or a trigger's account receive events, and the first apply would fail on the
# triggers. The functions wait for this (Google documents propagation in about 60 s, rarely
# up to 7 minutes); an event lost to a late grant is retried (RETRY_POLICY_RETRY).
resource "time_sleep" "iam_propagation" {
  create_duration = "120s"

  depends_on = [
    google_project_iam_member.mesh,
    google_project_iam_member.gcs_publishes,
    google_project_iam_member.builder,
    google_storage_bucket_iam_member.mesh,
    google_service_account_iam_member.act_as,
    google_pubsub_topic_iam_member.train_trigger_publishes,
    google_cloud_tasks_queue_iam_member.enqueuer,
  ]
}

# Pub/Sub forwards a message alert_handler keeps failing on to the dead-letter topic as its
# service agent, once the trigger's subscription names that topic (README: deploying)
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.alerts_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
