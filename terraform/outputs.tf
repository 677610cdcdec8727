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
