# Cloud Monitoring publishes incidents here (and salesmesh.accuracy a degraded version);
# alert_handler's trigger subscribes. Messages it keeps failing on go to the dead-letter topic.

resource "google_pubsub_topic" "alerts" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption keys; customer-managed keys are an organisation's choice (key ownership, rotation, cost) the module leaves to a fork
  name                       = local.alerts_topic
  project                    = var.project_id
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.required]
}

resource "google_pubsub_topic" "alerts_dead_letter" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption keys; customer-managed keys are an organisation's choice (key ownership, rotation, cost) the module leaves to a fork
  name                       = "${local.alerts_topic}-dead-letter"
  project                    = var.project_id
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.required]
}
