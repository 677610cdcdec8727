variable "project_id" {
  description = "The Google Cloud project the mesh runs in."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the functions, the buckets and Vertex AI (one region: the model bucket must be in Vertex AI's)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west4."
  }
}

variable "prefix" {
  description = "Prefix of every bucket name (bucket names are global): <prefix>-data, <prefix>-models, <prefix>-state."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{2,40}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 4-42 lowercase letters, digits or hyphens, not starting or ending with a hyphen."
  }
}

variable "quarantine_days" {
  description = "Days a rejected upload (and the reason beside it) stays under quarantine/ before deletion."
  type        = number
  default     = 90

  validation {
    condition     = var.quarantine_days >= 1 && var.quarantine_days <= 3650
    error_message = "quarantine_days must be from 1 to 3650."
  }
}

variable "noncurrent_days" {
  description = "Days an overwritten or deleted object version is kept (data, models and state are versioned)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_days >= 1 && var.noncurrent_days <= 3650
    error_message = "noncurrent_days must be from 1 to 3650."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = { app = "salesmesh" }
}

variable "image_tag" {
  description = "Tag of the salesmesh-train and salesmesh-serve images pushed to the Artifact Registry repository (a commit, never latest: a model version records its image)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a Docker tag (letters, digits, '_', '.', '-'; at most 128) and not latest."
  }
}

variable "log_retention_days" {
  description = "Days the salesmesh log bucket keeps the functions', training jobs' and endpoint's logs."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 1 && var.log_retention_days <= 3650
    error_message = "log_retention_days must be from 1 to 3650."
  }
}

variable "retrain_schedule" {
  description = "Cron schedule of a retrain on the sales history's latest snapshot (e.g. \"0 3 * * 1\", Mondays 03:00); empty: no schedule. A run starts only when no run trained that snapshot yet."
  type        = string
  default     = ""

  validation {
    condition     = var.retrain_schedule == "" || length(split(" ", trimspace(var.retrain_schedule))) == 5
    error_message = "retrain_schedule must be empty or a five-field cron expression such as \"0 3 * * 1\"."
  }
}

variable "retrain_time_zone" {
  description = "Time zone of retrain_schedule (a tz database name)."
  type        = string
  default     = "Etc/UTC"
}

variable "endpoint_id" {
  description = "Id of the Vertex AI endpoint (SALESMESH_ENDPOINT): the google provider takes a number of at most 10 digits, no leading zero; ids Vertex AI makes up are 19 digits, so a short one never meets them."
  type        = string
  default     = "1001"

  validation {
    condition     = can(regex("^[1-9][0-9]{0,9}$", var.endpoint_id))
    error_message = "endpoint_id must be a number of 1-10 digits without a leading zero."
  }
}
