# The names below mirror shared/topology.py, the single source of truth for the system's shape.
# tests/unit/test_terraform.py parses this file and fails when the two disagree in either
# direction, so edit both together. Every resource that carries one of these names iterates over
# these locals with for_each; nothing else in this directory spells a schema, topic,
# subscription, secret or scheduler job name (iam.tf names the two agents that need extra roles,
# and the test checks that they exist).

locals {
  # Pub/Sub schema id => Avro file in pubsub_schemas/ (topology.SCHEMA_FILES).
  schema_files = {
    "github-event-v1"      = "github_event.v1.avsc"
    "schedule-tick-v1"     = "schedule_tick.v1.avsc"
    "agent-task-v1"        = "agent_task.v1.avsc"
    "agent-task-result-v1" = "agent_task_result.v1.avsc"
  }

  # Topic => schema id, or null for a topic whose format we do not own (topology.TOPICS).
  # cloud-builds must be named exactly that: Cloud Build publishes its notifications there.
  topics = {
    "github-events"  = "github-event-v1"
    "schedule-ticks" = "schedule-tick-v1"
    "agent-results"  = "agent-task-result-v1"
    "cloud-builds"   = null
    "agent-scout"    = "agent-task-v1"
    "agent-code"     = "agent-task-v1"
    "agent-test"     = "agent-task-v1"
    "agent-qa"       = "agent-task-v1"
    "agent-deploy"   = "agent-task-v1"
    "agent-monitor"  = "agent-task-v1"
  }

  # Agent entry point => the topic it consumes (topology.AGENTS).
  agent_topics = {
    repo_scout    = "agent-scout"
    code_agent    = "agent-code"
    test_agent    = "agent-test"
    qa_agent      = "agent-qa"
    deploy_agent  = "agent-deploy"
    monitor_agent = "agent-monitor"
  }

  # The topics with a fixed role (topology.GITHUB_EVENTS, SCHEDULE_TICKS, AGENT_RESULTS): the
  # webhook publishes events, Cloud Scheduler publishes ticks, every agent publishes its results.
  events_topic  = "github-events"
  ticks_topic   = "schedule-ticks"
  results_topic = "agent-results"

  # The only public HTTP function (topology.WEBHOOK_FUNCTION), the read-only dashboard
  # (topology.DASHBOARD_FUNCTION, HTTP, invoked only by var.dashboard_viewers), and the function
  # that dispatches tasks to the agent topics (topology.ORCHESTRATOR_FUNCTION).
  webhook_function      = "github_webhook"
  dashboard_function    = "dashboard"
  orchestrator_function = "orchestrator"

  # Entry point => runtime sizing (topology.FUNCTIONS). A consumer's timeout never exceeds the ack
  # deadline of its subscriptions, so Pub/Sub does not redeliver a message that is still running.
  functions = {
    github_webhook = { timeout_seconds = 10, memory = "256M" }
    dashboard      = { timeout_seconds = 30, memory = "256M" }
    orchestrator   = { timeout_seconds = 300, memory = "512M" }
    repo_scout     = { timeout_seconds = 300, memory = "512M" }
    code_agent     = { timeout_seconds = 300, memory = "1G" }
    test_agent     = { timeout_seconds = 300, memory = "512M" }
    qa_agent       = { timeout_seconds = 300, memory = "512M" }
    deploy_agent   = { timeout_seconds = 300, memory = "512M" }
    monitor_agent  = { timeout_seconds = 300, memory = "512M" }
  }

  # Push subscription => its delivery settings (topology.SUBSCRIPTIONS). Each has its own
  # dead-letter topic, and a pull subscription of the same name keeps what lands there.
  subscriptions = {
    "github-events-to-orchestrator" = {
      topic                   = "github-events"
      consumer                = "orchestrator"
      dead_letter_topic       = "github-events-to-orchestrator-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "schedule-ticks-to-orchestrator" = {
      topic                   = "schedule-ticks"
      consumer                = "orchestrator"
      dead_letter_topic       = "schedule-ticks-to-orchestrator-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "agent-results-to-orchestrator" = {
      topic                   = "agent-results"
      consumer                = "orchestrator"
      dead_letter_topic       = "agent-results-to-orchestrator-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "cloud-builds-to-orchestrator" = {
      topic                   = "cloud-builds"
      consumer                = "orchestrator"
      dead_letter_topic       = "cloud-builds-to-orchestrator-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "agent-scout-to-repo-scout" = {
      topic                   = "agent-scout"
      consumer                = "repo_scout"
      dead_letter_topic       = "agent-scout-to-repo-scout-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "agent-code-to-code-agent" = {
      topic                   = "agent-code"
      consumer                = "code_agent"
      dead_letter_topic       = "agent-code-to-code-agent-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "agent-test-to-test-agent" = {
      topic                   = "agent-test"
      consumer                = "test_agent"
      dead_letter_topic       = "agent-test-to-test-agent-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "agent-qa-to-qa-agent" = {
      topic                   = "agent-qa"
      consumer                = "qa_agent"
      dead_letter_topic       = "agent-qa-to-qa-agent-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "agent-deploy-to-deploy-agent" = {
      topic                   = "agent-deploy"
      consumer                = "deploy_agent"
      dead_letter_topic       = "agent-deploy-to-deploy-agent-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
    "agent-monitor-to-monitor-agent" = {
      topic                   = "agent-monitor"
      consumer                = "monitor_agent"
      dead_letter_topic       = "agent-monitor-to-monitor-agent-dead-letter"
      ack_deadline_seconds    = 300
      max_delivery_attempts   = 5
      minimum_backoff_seconds = 10
      maximum_backoff_seconds = 600
    }
  }

  # Secret Manager secret id => the functions that may read it (topology.SECRETS).
  secrets = {
    "github-webhook-secret" = ["github_webhook"]
    "github-app-private-key" = [
      "orchestrator",
      "repo_scout",
      "code_agent",
      "test_agent",
      "qa_agent",
      "deploy_agent",
      "monitor_agent",
    ]
    "llm-api-key"       = ["code_agent"]
    "slack-webhook-url" = ["deploy_agent", "monitor_agent"]
  }

  # Cloud Scheduler job => the tick it publishes to schedule-ticks (topology.SCHEDULER_JOBS).
  scheduler_jobs = {
    "repo-scout-tick"       = { job = "repo_scout", schedule = "0 */4 * * *" }
    "weekly-report-tick"    = { job = "weekly_report", schedule = "0 9 * * 1" }
    "daily-metrics-tick"    = { job = "daily_metrics", schedule = "15 0 * * *" }
    "monitor-tick"          = { job = "monitor", schedule = "* * * * *" }
    "redelivery-sweep-tick" = { job = "redelivery_sweep", schedule = "*/15 * * * *" }
    "task-sweep-tick"       = { job = "task_sweep", schedule = "*/5 * * * *" }
  }
}
