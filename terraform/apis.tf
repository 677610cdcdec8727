resource "google_project_service" "required" {
  # the APIs `salesmesh doctor` checks: one list, read by both
  for_each = toset(jsondecode(file("${path.module}/../shared/salesmesh/cloud/apis.json")).apis)

  project = var.project_id
  service = each.value
  # turning an API off on destroy would break whatever else the project runs
  disable_on_destroy = false
}
