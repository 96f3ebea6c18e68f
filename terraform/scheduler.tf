# Cloud Scheduler jobs publishing {"job": "<job>"} to the ticks topic. The body is constant: the
# orchestrator takes the tick's time from the message's publish time.

resource "google_cloud_scheduler_job" "tick" {
  for_each = local.scheduler_jobs

  project     = var.project_id
  region      = var.region
  name        = each.key
  description = "Agent Ops tick ${each.value.job}"
  schedule    = each.value.schedule
  time_zone   = var.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.topic[local.ticks_topic].id
    data       = base64encode(jsonencode({ job = each.value.job }))
  }

  depends_on = [
    google_project_service.api,
    google_pubsub_topic_iam_member.scheduler_publisher,
  ]
}
