output "webhook_url" {
  description = "Set this as the GitHub App's webhook URL."
  value       = google_cloudfunctions2_function.function[local.webhook_function].url
}

output "dashboard_url" {
  description = "The read-only dashboard (IAM-protected): open it with gcloud run services proxy, or set it as dashboard_url for the links in comments."
  value       = google_cloudfunctions2_function.function[local.dashboard_function].service_config[0].uri
}

output "function_uris" {
  description = "Cloud Run URL of every function, by entry point."
  value       = { for name, function in google_cloudfunctions2_function.function : name => function.service_config[0].uri }
}

output "topics" {
  description = "Every topic: the topology's topics and one dead-letter topic per subscription."
  value = concat(
    [for topic in google_pubsub_topic.topic : topic.name],
    [for topic in google_pubsub_topic.dead_letter : topic.name],
  )
}

output "subscriptions" {
  description = "Push subscription => the pull subscription that keeps its dead letters."
  value       = { for name, subscription in google_pubsub_subscription.push : name => google_pubsub_subscription.dead_letter[name].name }
}

output "function_service_accounts" {
  description = "Service account each function runs as, by entry point."
  value       = { for name, account in google_service_account.function : name => account.email }
}

output "push_service_accounts" {
  description = "Service account whose OIDC token each consumer accepts, by entry point."
  value       = { for name, account in google_service_account.push : name => account.email }
}

output "build_service_account" {
  description = "Service account Cloud Build runs the function builds as."
  value       = google_service_account.build.email
}

output "secret_ids" {
  description = "Secret Manager secrets to add versions to (gcloud secrets versions add)."
  value       = [for secret in google_secret_manager_secret.secret : secret.secret_id]
}

output "source_bucket" {
  description = "Bucket holding the function source archives."
  value       = google_storage_bucket.source.name
}
