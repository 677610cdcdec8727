# Four buckets, one region (the model bucket must be in Vertex AI's), all private: uniform
# access, public access prevented, versioned, their access logged to a fifth bucket.

resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62:the access-log bucket itself: logging into itself would log its own log writes
  name                        = "${var.prefix}-access-logs"
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

# sales uploads (uploads/) fire train_trigger, which only reads them
resource "google_storage_bucket" "data" {
  name                        = local.buckets.data
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "data/"
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

# training runs (runs/<run_id>/, manifest.json last) fire deploy_model
resource "google_storage_bucket" "model" {
  name                        = local.buckets.model
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "model/"
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

# the rollout ledger, the sales history (sales/<model>/), live accuracy (accuracy/), and
# rejected uploads with their reasons (quarantine/: no function listens to this bucket, so a
# quarantined copy fires nothing)
resource "google_storage_bucket" "state" {
  name                        = local.buckets.state
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "state/"
  }

  lifecycle_rule {
    condition {
      age            = var.quarantine_days
      matches_prefix = ["quarantine/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

# the functions' deploy packages (functions.tf); only Terraform writes here
resource "google_storage_bucket" "sources" {
  name                        = local.buckets.sources
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "sources/"
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}
