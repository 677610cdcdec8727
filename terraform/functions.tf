# The three gen2 functions, built from the same packages as `make package`: functions/build.py
# runs at plan time (Terraform's external data source) and hands over each zip and its sha256.
# The object is named by that hash, so a changed package is a new object and a new revision.
#
# Sizes, from measurements (bench/functions.py, bench/gate.py; 1.1 M rows, 3,000 series): cold,
# with the SDKs their gcp backends import, train_trigger takes 283 MiB, deploy_model 205 and
# alert_handler 200; train_trigger peaks at 818 MiB merging a full re-export and then a week,
# deploy_model's gate judges two runs at 507 MiB on top of its SDKs. Every event-driven
# invocation may run for 540 s at most; a rollout never needs that long (each step is one
# short call).

data "external" "packages" {
  program = ["python3", "${path.module}/../functions/build.py", "--terraform"]
}

locals {
  # Cloud Run service names allow no '_': a function's name is its folder's with '-'
  # (salesmesh.backends.gcp_logs.SERVICES reads their logs by these names)
  function_names = { for f in keys(local.triggers) : f => replace(f, "_", "-") }

  sizes = {
    train_trigger = { memory = "1Gi", max_instances = 3 }
    deploy_model  = { memory = "1Gi", max_instances = 1 } # one rollout step at a time
    alert_handler = { memory = "512Mi", max_instances = 3 }
  }

  # Each function's deterministic run.app URL, known before the function exists: Cloud Tasks
  # posts rollout steps to deploy_model's (the function cannot be handed its own uri: it would
  # name itself), Cloud Scheduler the retrain to train_trigger's; Cloud Run takes it as the
  # OIDC audience, and requests from both count as internal
  function_urls = {
    for f, name in local.function_names : f => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }
  deploy_url = local.function_urls.deploy_model

  images = {
    training = "${local.image_repository}/salesmesh-train:${var.image_tag}"
    serving  = "${local.image_repository}/salesmesh-serve:${var.image_tag}"
  }

  # what every function reads (salesmesh.settings.ENV_VARS; a test checks each name)
  function_env = {
    SALESMESH_BACKEND                 = "gcp"
    GOOGLE_CLOUD_PROJECT              = var.project_id
    SALESMESH_REGION                  = var.region
    SALESMESH_DATA_BUCKET             = google_storage_bucket.data.name
    SALESMESH_MODEL_BUCKET            = google_storage_bucket.model.name
    SALESMESH_STATE_BUCKET            = google_storage_bucket.state.name
    SALESMESH_ALERTS_TOPIC            = google_pubsub_topic.alerts.name
    SALESMESH_ENDPOINT                = google_vertex_ai_endpoint.mesh.name
    SALESMESH_MODEL_NAME              = local.model_name
    SALESMESH_TRAINING_IMAGE          = local.images.training
    SALESMESH_SERVING_IMAGE           = local.images.serving
    SALESMESH_SERVICE_ACCOUNT         = google_service_account.mesh["training"].email
    SALESMESH_SERVING_SERVICE_ACCOUNT = google_service_account.mesh["serving"].email
    SALESMESH_TASKS_QUEUE             = google_cloud_tasks_queue.rollout.name
    SALESMESH_DEPLOY_URL              = local.deploy_url
    SALESMESH_TASKS_SERVICE_ACCOUNT   = google_service_account.mesh["rollout_invoker"].email
  }
}

resource "google_storage_bucket_object" "package" {
  for_each = local.triggers

  bucket = google_storage_bucket.sources.name
  name   = "functions/${each.key}-${data.external.packages.result["${each.key}_sha256"]}.zip"
  source = data.external.packages.result["${each.key}_zip"]
}

# uploads under uploads/ in the data bucket
resource "google_cloudfunctions2_function" "train_trigger" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.train_trigger
  description = "Validates each sales upload, merges it into the sales history and launches training"
  labels      = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = local.triggers.train_trigger.entry_point
    service_account = google_service_account.mesh["builder"].id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.package["train_trigger"].name
      }
    }
  }

  service_config {
    available_memory               = local.sizes.train_trigger.memory
    max_instance_count             = local.sizes.train_trigger.max_instances
    timeout_seconds                = 540
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.mesh["train_trigger"].email
    environment_variables          = local.function_env
  }

  event_trigger {
    trigger_region        = var.region # the bucket's
    event_type            = local.triggers.train_trigger.event_type
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.mesh["train_trigger"].email

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.data.name
    }
  }

  depends_on = [time_sleep.iam_propagation]
}

# run folders in the model bucket (manifest.json is written last), and rollout steps from the queue
resource "google_cloudfunctions2_function" "deploy_model" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.deploy_model
  description = "Registers each trained run as a model version, gates it and rolls it out in steps"
  labels      = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = local.triggers.deploy_model.entry_point
    service_account = google_service_account.mesh["builder"].id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.package["deploy_model"].name
      }
    }
  }

  service_config {
    available_memory               = local.sizes.deploy_model.memory
    max_instance_count             = local.sizes.deploy_model.max_instances
    timeout_seconds                = 540
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.mesh["deploy_model"].email
    environment_variables          = local.function_env
  }

  event_trigger {
    trigger_region        = var.region # the bucket's
    event_type            = local.triggers.deploy_model.event_type
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.mesh["deploy_model"].email

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.model.name
    }
  }

  depends_on = [time_sleep.iam_propagation]
}

# incidents published to the alerts topic (Cloud Monitoring, salesmesh.accuracy)
resource "google_cloudfunctions2_function" "alert_handler" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.alert_handler
  description = "Logs each incident and rolls the endpoint back from the version at fault"
  labels      = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = local.triggers.alert_handler.entry_point
    service_account = google_service_account.mesh["builder"].id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.package["alert_handler"].name
      }
    }
  }

  service_config {
    available_memory               = local.sizes.alert_handler.memory
    max_instance_count             = local.sizes.alert_handler.max_instances
    timeout_seconds                = 540
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.mesh["alert_handler"].email
    environment_variables          = local.function_env
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = local.triggers.alert_handler.event_type
    retry_policy          = "RETRY_POLICY_RETRY"
    pubsub_topic          = google_pubsub_topic.alerts.id
    service_account_email = google_service_account.mesh["alert_handler"].email
  }

  depends_on = [time_sleep.iam_propagation]
}

locals {
  functions = {
    train_trigger = google_cloudfunctions2_function.train_trigger
    deploy_model  = google_cloudfunctions2_function.deploy_model
    alert_handler = google_cloudfunctions2_function.alert_handler
  }
}
