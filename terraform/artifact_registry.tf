# The training and serving images (containers/: salesmesh-train, salesmesh-serve), tagged with
# the commit and never overwritten: a model version records the image it was uploaded with, so
# a rollback must find that exact image again. Vertex AI pulls from a repository of its own
# project with its service agent, which needs no grant here.

locals {
  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:Google-managed encryption keys; customer-managed keys are an organisation's choice (key ownership, rotation, cost) the module leaves to a fork
  project       = var.project_id
  location      = var.region
  repository_id = "salesmesh"
  format        = "DOCKER"
  description   = "salesmesh training and serving images, tagged by commit"
  labels        = var.labels

  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.required]
}
