# Schemas, topics and subscriptions, all from the locals in topology.tf.
#
# Every subscription of topology.SUBSCRIPTIONS is a push subscription to its consumer function,
# authenticated with an OIDC token of that consumer's own push service account. The push endpoint
# ends with /projects/<project>/topics/<topic>: the consumer runtime reads the topic, and so the
# message schema, from that path. A message failing max_delivery_attempts times is parked on the
# subscription's own dead-letter topic, whose pull subscription of the same name keeps it for
# inspection and replay.

resource "google_pubsub_schema" "schema" {
  for_each = local.schema_files

  project    = var.project_id
  name       = each.key
  type       = "AVRO"
  definition = file("${path.module}/../pubsub_schemas/${each.value}")

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "topic" {
  for_each = local.topics

  project = var.project_id
  name    = each.key

  # Topics we own validate every message against their Avro schema, JSON-encoded. cloud-builds
  # carries Cloud Build's own format and has none.
  dynamic "schema_settings" {
    for_each = each.value == null ? [] : [each.value]
    content {
      schema   = google_pubsub_schema.schema[schema_settings.value].id
      encoding = "JSON"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = local.subscriptions

  project = var.project_id
  name    = each.value.dead_letter_topic

  depends_on = [google_project_service.api]
}

# Parked messages stay here for the longest retention Pub/Sub allows a subscription (7 days).
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.subscriptions

  project                    = var.project_id
  name                       = each.value.dead_letter_topic
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  # Never expire: a quiet dead-letter subscription is the normal case.
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.subscriptions

  project              = var.project_id
  name                 = each.key
  topic                = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds = each.value.ack_deadline_seconds

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.function[each.value.consumer].service_config[0].uri}/projects/${var.project_id}/topics/${each.value.topic}"

    oidc_token {
      service_account_email = google_service_account.push[each.value.consumer].email
      audience              = google_cloudfunctions2_function.function[each.value.consumer].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${each.value.minimum_backoff_seconds}s"
    maximum_backoff = "${each.value.maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  # Never expire: an agent topic may see no task for more than the default 31 days.
  expiration_policy {
    ttl = ""
  }

  # Pub/Sub must be able to park messages and to mint the push tokens before the first delivery.
  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_service_account_iam_member.push_token_creator,
    google_cloud_run_v2_service_iam_member.push_invoker,
  ]
}
