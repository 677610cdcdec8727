# The endpoint deploy_model deploys each version to and alert_handler rolls back on, by the id
# var.endpoint_id (the functions' SALESMESH_ENDPOINT; the settings take a numeric id). It is not
# public: predicting needs aiplatform.endpoints.predict. Versions are deployed by the functions,
# never by Terraform (a traffic split Terraform applied would fight the rollout ledger).

resource "google_vertex_ai_endpoint" "mesh" {
  # checkov:skip=CKV2_GCP_24:Google-managed encryption keys; customer-managed keys are an organisation's choice (key ownership, rotation, cost) the module leaves to a fork
  # checkov:skip=CKV2_GCP_33:reachable only with aiplatform.endpoints.predict (IAM), never unauthenticated; a Private Service Connect endpoint would need a VPC and Direct VPC egress for every function (issue notes)
  project      = var.project_id
  location     = var.region
  region       = var.region
  name         = var.endpoint_id # the provider takes a number only
  display_name = "salesmesh"
  description  = "salesmesh: the versions of ${local.model_name}, as the rollout ledger splits traffic"
  labels       = var.labels

  depends_on = [google_project_service.required]
}
