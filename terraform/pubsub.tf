# Cloud Monitoring publishes incidents here (and salesmesh.accuracy a degraded version);
# alert_handler's trigger subscribes. Messages it keeps failing on go to the dead-letter topic.

resource "google_pubsub_topic" "alerts" {
  name                       = local.alerts_topic
  project                    = var.project_id
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.required]
}

resource "google_pubsub_topic" "alerts_dead_letter" {
  name                       = "${local.alerts_topic}-dead-letter"
  project                    = var.project_id
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.required]
}
