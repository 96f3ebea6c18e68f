# Secret Manager secrets, empty. Terraform never holds their values (they would land in the
# state): the operator adds each value as a new version with gcloud after the first apply, e.g.
#
#   printf '%s' "$WEBHOOK_SECRET" | gcloud secrets versions add github-webhook-secret --data-file=-
#   gcloud secrets versions add github-app-private-key --data-file=app-private-key.pem
#   printf '%s' "$SLACK_WEBHOOK_URL" | gcloud secrets versions add slack-webhook-url --data-file=-
#
# and rotates them the same way. slack-webhook-url (a Slack incoming-webhook URL) is needed only for
# Slack notices of deploys and incidents. Only the functions named in topology.tf may read each secret.

locals {
  secret_readers = {
    for grant in flatten([
      for secret, readers in local.secrets : [
        for function in readers : { secret = secret, function = function }
      ]
    ]) : "${grant.secret} ${grant.function}" => grant
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.key

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_readers

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}
