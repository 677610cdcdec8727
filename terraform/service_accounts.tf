# One identity per function, one for training jobs, one for the prediction containers, one
# whose OIDC token Cloud Tasks sends with each rollout step and one that builds the functions
# (not the Compute Engine default account, which may hold Editor). No key is ever created.

locals {
  service_accounts = {
    train_trigger   = "Runs train_trigger: validates uploads, merges the sales history, launches training"
    deploy_model    = "Runs deploy_model: registers, gates and rolls out model versions"
    alert_handler   = "Runs alert_handler: logs incidents and rolls the endpoint back"
    training        = "Runs the Vertex AI training jobs"
    serving         = "Runs the prediction containers on the Vertex AI endpoint"
    rollout_invoker = "Identity of Cloud Tasks' rollout steps when they call deploy_model"
    builder         = "Builds the functions' containers from their packages (Cloud Build)"
    scheduler       = "Identity of the Cloud Scheduler retrain job when it calls train_trigger"
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
