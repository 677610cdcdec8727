# The mesh's logs kept together, for var.log_retention_days: the functions (Cloud Run services
# named as salesmesh.backends.gcp_logs.SERVICES reads them), the project's Vertex AI training
# jobs and the endpoint. `salesmesh logs` reads the same entries; the _Default bucket keeps its copy too.

locals {
  log_filter = join(" OR ", [
    "(resource.type = \"cloud_run_revision\" AND resource.labels.service_name = (${join(" OR ", [for f in values(local.function_names) : "\"${f}\""])}))",
    # a custom job's entries carry no job labels to select ours by: every job of the project
    "resource.type = \"ml_job\"",
    "(resource.type = \"aiplatform.googleapis.com/Endpoint\" AND resource.labels.endpoint_id = \"${var.endpoint_id}\")",
  ])
}

resource "google_logging_project_bucket_config" "mesh" {
  project        = var.project_id
  location       = "global"
  bucket_id      = "salesmesh"
  retention_days = var.log_retention_days
  description    = "salesmesh: functions, training jobs and the endpoint"

  depends_on = [google_project_service.required]
}

resource "google_logging_project_sink" "mesh" {
  project     = var.project_id
  name        = "salesmesh"
  description = "The salesmesh functions, training jobs and endpoint, into the salesmesh log bucket"
  destination = "logging.googleapis.com/${google_logging_project_bucket_config.mesh.id}"
  filter      = local.log_filter
  # a log bucket of the sink's own project: no writer identity to grant
  unique_writer_identity = true
}
