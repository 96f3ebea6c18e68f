terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.5"
    }
  }

  # State lives in a GCS bucket you create once (see terraform.tfvars.example). Give the bucket at
  # init time, as cloudbuild.yaml does:
  #   terraform init -backend-config="bucket=<state-bucket>" -backend-config="prefix=agent-ops"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
