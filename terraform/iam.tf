# Identities and grants. Least privilege: every function runs as its own service account; each
# consumer is invoked by its own push service account; roles are granted on the single topic,
# secret, service account or Cloud Run service they concern. On the project, functions get only
# Firestore (which has no per-collection IAM; the dashboard only reads it), deploy_agent App
# Engine, Cloud Build and Monitoring reads, and monitor_agent Monitoring reads; the build account
# gets what function builds need. No basic role (owner, editor, viewer) is used anywhere.

locals {
  # Project-level roles of a function's service account beyond Firestore, which every function
  # reads and writes. App Engine, Cloud Build and Monitoring have no narrower resource to grant
  # on than the project (the app is the project's one application).
  extra_project_roles = {
    deploy_agent = var.enable_app_engine_deploy ? [
      # Create versions (the versions backend), read the app, its services, versions and
      # operations, and delete versions that serve no traffic (clean-up). It cannot move traffic,
      # so a new version is never promoted by this role.
      "roles/appengine.deployer",
      # Patch a service's traffic split: the canary steps and the one-call rollback.
      "roles/appengine.serviceAdmin",
      # Create, list (find a release's build by its tag) and read builds that run
      # `gcloud app deploy --no-promote`; builds.viewer cannot create.
      "roles/cloudbuild.builds.editor",
      # Read the new version's response counts (timeSeries.list) for the canary analysis.
      "roles/monitoring.viewer",
    ] : []
    # Read-only: the monitor probes over HTTP and reads metrics; it never changes App Engine.
    monitor_agent = ["roles/monitoring.viewer"]
  }

  # Firestore access: read and write, except the read-only dashboard's.
  firestore_roles = { for name, settings in local.functions : name => name == local.dashboard_function ? "roles/datastore.viewer" : "roles/datastore.user" }

  function_project_roles = {
    for grant in flatten([
      for name, settings in local.functions : [
        for role in concat([local.firestore_roles[name]], lookup(local.extra_project_roles, name, [])) :
        { function = name, role = role }
      ]
    ]) : "${grant.function} ${grant.role}" => grant
  }

  # Topic => function grants of roles/pubsub.publisher: the webhook publishes events, the
  # orchestrator dispatches to every agent topic, every agent reports on the results topic.
  topic_publishers = merge(
    {
      "${local.events_topic} ${local.webhook_function}" = {
        topic    = local.events_topic
        function = local.webhook_function
      }
    },
    {
      for agent, topic in local.agent_topics : "${topic} ${local.orchestrator_function}" => {
        topic    = topic
        function = local.orchestrator_function
      }
    },
    {
      for agent, topic in local.agent_topics : "${local.results_topic} ${agent}" => {
        topic    = local.results_topic
        function = agent
      }
    },
  )

  # What Cloud Functions' builds need when they run as our own build service account instead of
  # a default one (which new projects no longer grant broad roles to).
  build_roles = [
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectAdmin",
  ]
}

# --- Service accounts -----------------------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "Agent Ops function ${each.key}"

  depends_on = [google_project_service.api]
}

resource "google_service_account" "push" {
  for_each = local.consumers

  project      = var.project_id
  account_id   = "${var.name_prefix}-push-${replace(each.key, "_", "-")}"
  display_name = "Agent Ops Pub/Sub push to ${each.key}"

  depends_on = [google_project_service.api]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "Agent Ops function builds"

  depends_on = [google_project_service.api]
}

# --- Project-level grants -------------------------------------------------------------------

resource "google_project_iam_member" "function" {
  for_each = local.function_project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.function[each.value.function].member
}

resource "google_project_iam_member" "build" {
  for_each = toset(local.build_roles)

  project = var.project_id
  role    = each.value
  member  = google_service_account.build.member
}

# deploy_agent deploys versions that run as the App Engine default service account, and may act
# as that account only.
resource "google_service_account_iam_member" "deploy_agent_app_engine" {
  count = var.enable_app_engine_deploy ? 1 : 0

  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.project_id}@appspot.gserviceaccount.com"
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function["deploy_agent"].member
}

# --- Pub/Sub --------------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.topic_publishers

  project = var.project_id
  topic   = google_pubsub_topic.topic[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.function[each.value.function].member
}

# Cloud Scheduler publishes the ticks as its service agent.
resource "google_pubsub_topic_iam_member" "scheduler_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topic[local.ticks_topic].name
  role    = "roles/pubsub.publisher"
  member  = local.scheduler_service_agent
}

# Dead-lettering: the Pub/Sub service agent publishes to each dead-letter topic and must be a
# subscriber of the source subscription to acknowledge the message it forwarded.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.subscriptions

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The Pub/Sub service agent mints the OIDC tokens of the push service accounts.
resource "google_service_account_iam_member" "push_token_creator" {
  for_each = local.consumers

  service_account_id = google_service_account.push[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- Invocation -----------------------------------------------------------------------------

# A consumer is invoked only by its own push service account.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = local.consumers

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push[each.key].member
}

# GitHub cannot authenticate to Google: the webhook is public and authenticates every request
# itself (HMAC over the body with the secret in github-webhook-secret).
resource "google_cloud_run_v2_service_iam_member" "webhook_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[local.webhook_function].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# The dashboard is not public: only the listed members (operators, a group) may invoke it, through
# `gcloud run services proxy` or with an identity token.
resource "google_cloud_run_v2_service_iam_member" "dashboard_viewer" {
  for_each = toset(var.dashboard_viewers)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[local.dashboard_function].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}
