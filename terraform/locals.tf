locals {
  # One source of truth with the local mesh: which function listens to which bucket or topic
  # (salesmesh.wiring reads the same file), and the alert policies the local monitor evaluates.
  wiring   = jsondecode(file("${path.module}/../shared/salesmesh/triggers.json"))
  triggers = { for t in local.wiring.triggers : t.function => t }
  policies = jsondecode(file("${path.module}/../shared/salesmesh/alerts/policies.json"))

  buckets = {
    data  = "${var.prefix}-data"
    model = "${var.prefix}-models"
    state = "${var.prefix}-state"
  }
  alerts_topic = "salesmesh-alerts"
}
