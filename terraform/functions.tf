# One Cloud Functions (2nd gen) function per entry point of main.py, each running as its own
# service account. A function is named after its entry point with hyphens for underscores
# (github_webhook is the function github-webhook), the form Cloud Run service names require.
# No event triggers: the consumers are invoked by the push subscriptions in pubsub.tf, so retry,
# backoff and dead-lettering are declared in one place.

locals {
  # The two HTTP functions: the public webhook and the IAM-protected dashboard. Every other
  # function is a Pub/Sub-pushed consumer.
  http_functions = [local.webhook_function, local.dashboard_function]
  consumers      = { for name, settings in local.functions : name => settings if !contains(local.http_functions, name) }

  function_env = {
    GOOGLE_CLOUD_PROJECT   = var.project_id
    GITHUB_APP_ID          = var.github_app_id
    GITHUB_API_URL         = var.github_api_url
    AGENTOPS_WATCHED_REPOS = join(",", var.watched_repos)
    AGENTOPS_DRY_RUN       = tostring(var.dry_run)
    LOG_LEVEL              = var.log_level
    # Installation-wide budgets per UTC day; each repo's own is in its .github/agent-ops.yml.
    AGENTOPS_GLOBAL_DAILY_TASKS = tostring(var.global_daily_tasks)
    AGENTOPS_GLOBAL_DAILY_COST  = tostring(var.global_daily_cost)
    # The code agent's llm implementer; its key is the secret llm-api-key.
    AGENTOPS_LLM_PROVIDER = var.llm_provider
    AGENTOPS_LLM_API_URL  = var.llm_api_url
    AGENTOPS_LLM_MODEL    = var.llm_model
    # Where task and audit links in comments point (the dashboard); empty: links name CLI commands.
    AGENTOPS_DASHBOARD_URL = var.dashboard_url
    # How releases are built: Cloud Build (gcloud app deploy --no-promote) or the versions API.
    AGENTOPS_DEPLOY_BACKEND = var.deploy_backend
    # The repository (owner/name) the orchestrator posts the weekly report in; empty: stored only.
    AGENTOPS_REPORT_REPO = var.report_repo
  }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = replace(each.key, "_", "-")
  description = "Agent Ops entry point ${each.key}"

  build_config {
    runtime         = var.python_runtime
    entry_point     = each.key
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.function[each.key].email
    available_memory               = each.value.memory
    timeout_seconds                = each.value.timeout_seconds
    min_instance_count             = each.key == local.webhook_function ? var.webhook_min_instances : 0
    max_instance_count             = each.key == local.webhook_function ? var.webhook_max_instances : var.consumer_max_instances
    ingress_settings               = contains(local.http_functions, each.key) ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.function_env
  }

  depends_on = [
    google_project_service.api,
    google_project_iam_member.build,
  ]
}
