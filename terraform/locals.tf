locals {
  # One source of truth with the local mesh: which function listens to which bucket or topic
  # (salesmesh.wiring reads the same file), and the alert policies the local monitor evaluates.
  wiring   = jsondecode(file("${path.module}/../shared/salesmesh/triggers.json"))
  triggers = { for t in local.wiring.triggers : t.function => t }
  policies = jsondecode(file("${path.module}/../shared/salesmesh/alerts/policies.json"))

  buckets = {
    data    = "${var.prefix}-data"
    model   = "${var.prefix}-models"
    state   = "${var.prefix}-state"
    sources = "${var.prefix}-sources"
  }
  alerts_topic = "salesmesh-alerts"
  # the one model every run becomes a version of (the settings' default SALESMESH_MODEL_NAME)
  model_name = "salesmesh-demand"
}
