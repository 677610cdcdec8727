terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 8.0"
    }
    # functions.tf: the function packages, built by functions/build.py at plan time
    external = {
      source  = "hashicorp/external"
      version = "~> 2.3"
    }
    # iam.tf: the wait for new grants to reach every Google service before the functions
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
