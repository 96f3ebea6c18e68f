# Project-wide plumbing: the APIs, the project number (for Google's service agents) and the one
# source archive every function is built from.

locals {
  apis = [
    "appengine.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]

  # Google-managed service agents that act on our resources.
  pubsub_service_agent    = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  scheduler_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"

  source_dir = coalesce(var.source_dir, "${path.module}/..")

  # Never ship local state, secrets of the local runner, tests, the local sandboxes or tooling to
  # Cloud Functions.
  source_excludes = concat([
    ".agentops",
    ".ci",
    ".git",
    ".gitignore",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".venv",
    "bench",
    "build",
    "docs",
    "sandbox",
    "scripts",
    "terraform",
    "tests",
    "*.egg-info",
    "**/__pycache__",
    "**/*.pyc",
  ], var.source_excludes)
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "api" {
  for_each = toset(local.apis)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- Function source ------------------------------------------------------------------------

# Excludes are matched against paths relative to source_dir and support globs (archive >= 2.5).
# A fixed file mode keeps the archive, and so its hash, the same on every machine: functions are
# rebuilt only when the source really changes.
data "archive_file" "source" {
  type             = "zip"
  source_dir       = local.source_dir
  excludes         = local.source_excludes
  output_file_mode = "0644"
  output_path      = "${path.module}/.terraform/function-source.zip"
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-function-source"
  location                    = coalesce(var.source_bucket_location, var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  # Archives are named by content hash and never overwritten; a replaced archive becomes a
  # noncurrent version, kept a month for rollbacks.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "function-source-${data.archive_file.source.output_md5}.zip"
  source = data.archive_file.source.output_path
}
