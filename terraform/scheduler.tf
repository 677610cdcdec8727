# The weekly (or any cron) retrain the seed's Composer environment was there for, off unless
# var.retrain_schedule is set: Cloud Scheduler posts the retrain CloudEvent to train_trigger,
# which trains on the sales history's latest snapshot unless a run trained it already
# (salesmesh.sales.retrain). Locally, `salesmesh up --retrain-every DURATION` posts the same.

locals {
  retrain_event = "dev.salesmesh.retrain.v1" # salesmesh.local.binary.RETRAIN_EVENT
}

resource "google_cloud_scheduler_job" "retrain" {
  count = var.retrain_schedule == "" ? 0 : 1

  project          = var.project_id
  region           = var.region
  name             = "salesmesh-retrain"
  description      = "Retrain salesmesh on the sales history's latest snapshot"
  schedule         = var.retrain_schedule
  time_zone        = var.retrain_time_zone
  attempt_deadline = "120s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "600s"
  }

  # a binary-mode CloudEvent, as Eventarc delivers the uploads' (functions-framework reads the
  # ce-* headers); the same every time: train_trigger decides from the history, not the id
  http_target {
    uri         = local.function_urls.train_trigger
    http_method = "POST"
    headers = {
      "Content-Type"   = "application/json"
      "ce-id"          = "salesmesh-retrain"
      "ce-specversion" = "1.0"
      "ce-type"        = local.retrain_event
      "ce-source"      = "//cloudscheduler.googleapis.com/projects/${var.project_id}/locations/${var.region}/jobs/salesmesh-retrain"
    }
    body = base64encode(jsonencode({ who = "schedule" }))

    oidc_token {
      service_account_email = google_service_account.mesh["scheduler"].email
      audience              = local.function_urls.train_trigger
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}
