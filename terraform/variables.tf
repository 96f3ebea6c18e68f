variable "project_id" {
  description = "The Google Cloud project that hosts Agent Ops."
  type        = string
}

variable "region" {
  description = "Region of the functions, the source bucket and the Cloud Scheduler jobs."
  type        = string
  default     = "us-central1"
}

variable "github_app_id" {
  description = "The GitHub App's numeric id (or its client id, which starts with Iv)."
  type        = string

  validation {
    condition     = can(regex("^([0-9]+|Iv[A-Za-z0-9.]+)$", var.github_app_id))
    error_message = "github_app_id must be the App's numeric id or its client id (Iv...)."
  }
}

variable "github_api_url" {
  description = "GitHub REST API base URL. Change it only for GitHub Enterprise Server."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https?://", var.github_api_url))
    error_message = "github_api_url must be an http(s) URL."
  }
}

variable "watched_repos" {
  description = "Repositories (owner/name) the scheduled agents look after. Empty: every installed repository."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for repo in var.watched_repos : can(regex("^[^/,\\s]+/[^/,\\s]+$", repo))])
    error_message = "Each watched_repos entry must be owner/name."
  }
}

variable "time_zone" {
  description = "IANA time zone in which the Cloud Scheduler schedules are evaluated."
  type        = string
  default     = "Etc/UTC"
}

variable "name_prefix" {
  description = "Prefix of the service account ids and of the source bucket. Topic, subscription, function and secret names are fixed by shared/topology.py and are not prefixed."
  type        = string
  default     = "ao"

  validation {
    # The longest account id is "<prefix>-push-monitor-agent"; ids are at most 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{0,9}$", var.name_prefix))
    error_message = "name_prefix must be 1-10 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of every function: DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "dry_run" {
  description = "AGENTOPS_DRY_RUN of every function."
  type        = bool
  default     = false
}

variable "global_daily_tasks" {
  description = "Tasks the agents may be dispatched per UTC day across every repository (0: no limit)."
  type        = number
  default     = 500

  validation {
    condition     = var.global_daily_tasks >= 0
    error_message = "global_daily_tasks must be 0 (no limit) or positive."
  }
}

variable "global_daily_cost" {
  description = "Cost units (LLM tokens, build minutes x 1000) agents may report per UTC day across every repository (0: no limit)."
  type        = number
  default     = 0

  validation {
    condition     = var.global_daily_cost >= 0
    error_message = "global_daily_cost must be 0 (no limit) or positive."
  }
}

variable "llm_provider" {
  description = "The LLM provider of the code agent's llm implementer: anthropic or openai (empty: the implementer is off)."
  type        = string
  default     = ""

  validation {
    condition     = contains(["", "anthropic", "openai"], var.llm_provider)
    error_message = "llm_provider must be empty, anthropic or openai."
  }
}

variable "llm_api_url" {
  description = "The provider's API base URL (empty: the provider's public URL)."
  type        = string
  default     = ""
}

variable "llm_model" {
  description = "The model the code agent asks for; a repository's .github/agent-ops.yml may name another."
  type        = string
  default     = ""
}

variable "dashboard_url" {
  description = "The dashboard's URL, for task and audit links in comments (empty: comments name CLI commands)."
  type        = string
  default     = ""
}

variable "dashboard_viewers" {
  description = "IAM members allowed to open the read-only dashboard (user:, group:, serviceAccount:); never allUsers."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for member in var.dashboard_viewers : !contains(["allUsers", "allAuthenticatedUsers"], member)])
    error_message = "The dashboard is not public: name users, groups or service accounts."
  }
}

variable "report_repo" {
  description = "The repository (owner/name) the weekly report issue is posted in (empty: the report is stored, not posted)."
  type        = string
  default     = ""
  validation {
    condition     = var.report_repo == "" || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.report_repo))
    error_message = "report_repo must be owner/name, or empty."
  }
}

variable "deploy_backend" {
  description = "How the deploy agent builds a release: cloudbuild (gcloud app deploy --no-promote in Cloud Build) or versions (the App Engine versions API)."
  type        = string
  default     = "cloudbuild"
  validation {
    condition     = contains(["cloudbuild", "versions"], var.deploy_backend)
    error_message = "deploy_backend must be cloudbuild or versions."
  }
}

# --- Function source and sizing -------------------------------------------------------------

variable "source_dir" {
  description = "Directory zipped as every function's source. Null means the repository root (the parent of this directory)."
  type        = string
  default     = null
}

variable "source_excludes" {
  description = "Extra paths or glob patterns, relative to source_dir, left out of the function source archive."
  type        = list(string)
  default     = []
}

variable "source_bucket_location" {
  description = "Location of the function source bucket. Null means var.region."
  type        = string
  default     = null
}

variable "python_runtime" {
  description = "Cloud Functions runtime of every function."
  type        = string
  default     = "python311"
}

variable "webhook_min_instances" {
  description = "Instances of github_webhook kept warm. GitHub waits 10 s for an answer; 1 removes cold starts at a small cost."
  type        = number
  default     = 0
}

variable "webhook_max_instances" {
  description = "Upper bound of github_webhook instances."
  type        = number
  default     = 20
}

variable "consumer_max_instances" {
  description = "Upper bound of instances of each Pub/Sub-pushed function (the orchestrator and every agent)."
  type        = number
  default     = 10
}

# --- Firestore, App Engine, safety ----------------------------------------------------------

variable "firestore_location" {
  description = "Location of the (default) Firestore database, for example nam5, eur3 or a region. It cannot be changed later."
  type        = string
  default     = "nam5"
}

variable "create_firestore_database" {
  description = "Create the (default) Firestore database in Native mode. Set false when the project already has one (it must be in Native mode); the TTL policies are applied either way."
  type        = bool
  default     = true
}

variable "enable_app_engine_deploy" {
  description = "Grant deploy_agent the roles to deploy this project's App Engine app. When true the App Engine app must already exist (gcloud app create), because the grant is on its default service account."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Protect stateful resources: the Firestore database cannot be deleted and the source bucket is not force-destroyed."
  type        = bool
  default     = true
}
