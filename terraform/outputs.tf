output "buckets" {
  description = "The data, model and state buckets (SALESMESH_DATA_BUCKET, SALESMESH_MODEL_BUCKET, SALESMESH_STATE_BUCKET)."
  value = {
    data  = google_storage_bucket.data.name
    model = google_storage_bucket.model.name
    state = google_storage_bucket.state.name
  }
}

output "alerts_topic" {
  description = "The topic incidents are published to (SALESMESH_ALERTS_TOPIC)."
  value       = google_pubsub_topic.alerts.name
}

output "service_accounts" {
  description = "Each identity's email: training is SALESMESH_SERVICE_ACCOUNT, rollout_invoker SALESMESH_TASKS_SERVICE_ACCOUNT."
  value       = { for k, v in google_service_account.mesh : k => v.email }
}

output "rollout_queue" {
  description = "The Cloud Tasks queue of rollout steps (SALESMESH_TASKS_QUEUE)."
  value       = google_cloud_tasks_queue.rollout.name
}
