# Rollout steps: deploy_model schedules each next step as a named HTTP task to itself. The
# retries match deploy_model's trigger wiring (5 attempts, 1-60 s).

resource "google_cloud_tasks_queue" "rollout" {
  name     = "salesmesh-rollout"
  project  = var.project_id
  location = var.region

  rate_limits {
    max_concurrent_dispatches = 1
    max_dispatches_per_second = 5
  }

  retry_config {
    max_attempts = local.triggers.deploy_model.retry.max_attempts
    min_backoff  = "${local.triggers.deploy_model.retry.initial_backoff_seconds}s"
    max_backoff  = "${local.triggers.deploy_model.retry.max_backoff_seconds}s"
  }

  depends_on = [google_project_service.required]
}
