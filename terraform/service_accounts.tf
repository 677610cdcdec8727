# One identity per function, one for training jobs, one for the prediction containers and one
# whose OIDC token Cloud Tasks sends with each rollout step. No key is ever created for any.

locals {
  service_accounts = {
    train_trigger   = "Runs train_trigger: validates uploads, merges the sales history, launches training"
    deploy_model    = "Runs deploy_model: registers, gates and rolls out model versions"
    alert_handler   = "Runs alert_handler: logs incidents and rolls the endpoint back"
    training        = "Runs the Vertex AI training jobs"
    serving         = "Runs the prediction containers on the Vertex AI endpoint"
    rollout_invoker = "Identity of Cloud Tasks' rollout steps when they call deploy_model"
  }
}

resource "google_service_account" "mesh" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "salesmesh-${replace(each.key, "_", "-")}"
  display_name = "salesmesh ${replace(each.key, "_", " ")}"
  description  = each.value

  depends_on = [google_project_service.required]
}
