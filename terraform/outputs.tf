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

output "functions" {
  description = "Each function's Cloud Run service (gcloud run services describe NAME --region REGION)."
  value       = { for k, f in local.functions : k => f.service_config[0].service }
}

output "deploy_url" {
  description = "deploy_model's URL, which Cloud Tasks posts rollout steps to (SALESMESH_DEPLOY_URL)."
  value       = local.deploy_url
}

output "endpoint" {
  description = "The Vertex AI endpoint serving the model's versions (SALESMESH_ENDPOINT)."
  value       = google_vertex_ai_endpoint.mesh.name
}

output "image_repository" {
  description = "Where to push salesmesh-train and salesmesh-serve, tagged var.image_tag."
  value       = local.image_repository
}

output "images" {
  description = "The training and serving images the functions use (SALESMESH_TRAINING_IMAGE, SALESMESH_SERVING_IMAGE)."
  value       = local.images
}

output "cli_environment" {
  description = "The settings the functions run with: export them to point the salesmesh CLI at this project."
  value       = local.function_env
}
