"""The declared shape of the system: functions, topics, subscriptions, secrets, scheduler jobs.

This module is the single source of truth that the local runner (`agentops local up`), the
runtime and the Terraform consistency test all read. Terraform declares the same names; a test
parses `terraform/*.tf` and fails when the two disagree in either direction.
"""

from __future__ import annotations

from dataclasses import dataclass

# Topics we own carry a versioned Avro schema from pubsub_schemas/ with JSON encoding.
GITHUB_EVENTS = "github-events"
SCHEDULE_TICKS = "schedule-ticks"
AGENT_RESULTS = "agent-results"
# Cloud Build publishes its own notification format to a topic that must be named exactly this.
CLOUD_BUILDS = "cloud-builds"


@dataclass(frozen=True)
class Agent:
    """An agent: its short name (topic `agent-<name>`) and its Cloud Functions entry point."""

    name: str
    entry_point: str

    @property
    def topic(self) -> str:
        return f"agent-{self.name}"


AGENTS: tuple[Agent, ...] = (
    Agent("scout", "repo_scout"),
    Agent("code", "code_agent"),
    Agent("test", "test_agent"),
    Agent("qa", "qa_agent"),
    Agent("deploy", "deploy_agent"),
    Agent("monitor", "monitor_agent"),
)
AGENTS_BY_NAME = {agent.name: agent for agent in AGENTS}


@dataclass(frozen=True)
class Topic:
    name: str
    schema: str | None  # schema id in Pub/Sub, also the file stem in pubsub_schemas/


SCHEMA_GITHUB_EVENT = "github-event-v1"
SCHEMA_TICK = "schedule-tick-v1"
SCHEMA_TASK = "agent-task-v1"
SCHEMA_TASK_RESULT = "agent-task-result-v1"

SCHEMA_FILES = {
    SCHEMA_GITHUB_EVENT: "github_event.v1.avsc",
    SCHEMA_TICK: "schedule_tick.v1.avsc",
    SCHEMA_TASK: "agent_task.v1.avsc",
    SCHEMA_TASK_RESULT: "agent_task_result.v1.avsc",
}

TOPICS: tuple[Topic, ...] = (
    Topic(GITHUB_EVENTS, SCHEMA_GITHUB_EVENT),
    Topic(SCHEDULE_TICKS, SCHEMA_TICK),
    Topic(AGENT_RESULTS, SCHEMA_TASK_RESULT),
    Topic(CLOUD_BUILDS, None),
    *(Topic(agent.topic, SCHEMA_TASK) for agent in AGENTS),
)
TOPICS_BY_NAME = {topic.name: topic for topic in TOPICS}

WEBHOOK_FUNCTION = "github_webhook"
# The read-only dashboard: HTTP, invoked only by the IAM members Terraform names (never public).
DASHBOARD_FUNCTION = "dashboard"
HTTP_FUNCTIONS: tuple[str, ...] = (WEBHOOK_FUNCTION, DASHBOARD_FUNCTION)
ORCHESTRATOR_FUNCTION = "orchestrator"
CONSUMER_FUNCTIONS: tuple[str, ...] = (
    ORCHESTRATOR_FUNCTION,
    *(agent.entry_point for agent in AGENTS),
)
FUNCTIONS: tuple[str, ...] = (*HTTP_FUNCTIONS, *CONSUMER_FUNCTIONS)


@dataclass(frozen=True)
class Subscription:
    """A push subscription delivering one topic to one consumer function."""

    topic: str
    consumer: str
    ack_deadline_seconds: int = 60
    max_delivery_attempts: int = 5
    minimum_backoff_seconds: int = 10
    maximum_backoff_seconds: int = 600

    @property
    def name(self) -> str:
        return f"{self.topic}-to-{self.consumer.replace('_', '-')}"

    @property
    def dead_letter_topic(self) -> str:
        # Each dead-letter topic has a pull subscription of the same name so parked messages are
        # kept for inspection and replay instead of being dropped by a topic without subscribers.
        return f"{self.name}-dead-letter"


# The orchestrator answers events in milliseconds, but its own jobs (the redelivery sweep, the daily
# metrics and the weekly report read GitHub) may take minutes: its deadline is an agent's.
ORCHESTRATOR_ACK_DEADLINE = 300
SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(GITHUB_EVENTS, ORCHESTRATOR_FUNCTION, ack_deadline_seconds=ORCHESTRATOR_ACK_DEADLINE),
    Subscription(SCHEDULE_TICKS, ORCHESTRATOR_FUNCTION, ack_deadline_seconds=ORCHESTRATOR_ACK_DEADLINE),
    Subscription(AGENT_RESULTS, ORCHESTRATOR_FUNCTION, ack_deadline_seconds=ORCHESTRATOR_ACK_DEADLINE),
    Subscription(CLOUD_BUILDS, ORCHESTRATOR_FUNCTION, ack_deadline_seconds=ORCHESTRATOR_ACK_DEADLINE),
    *(Subscription(agent.topic, agent.entry_point, ack_deadline_seconds=300) for agent in AGENTS),
)

# Secret Manager secret ids, and which functions may read each.
WEBHOOK_SECRET = "github-webhook-secret"
PRIVATE_KEY_SECRET = "github-app-private-key"
LLM_API_KEY_SECRET = "llm-api-key"  # only the code agent calls the LLM provider
SLACK_WEBHOOK_SECRET = "slack-webhook-url"  # deploy and incident notices
SECRETS: dict[str, tuple[str, ...]] = {
    WEBHOOK_SECRET: (WEBHOOK_FUNCTION,),
    PRIVATE_KEY_SECRET: CONSUMER_FUNCTIONS,
    LLM_API_KEY_SECRET: ("code_agent",),
    SLACK_WEBHOOK_SECRET: ("deploy_agent", "monitor_agent"),
}


@dataclass(frozen=True)
class SchedulerJob:
    """A Cloud Scheduler job publishing `{"job": <job>}` to schedule-ticks."""

    name: str
    job: str
    schedule: str  # unix-cron, evaluated in the configured time zone


SCHEDULER_JOBS: tuple[SchedulerJob, ...] = (
    SchedulerJob("repo-scout-tick", "repo_scout", "0 */4 * * *"),
    SchedulerJob("weekly-report-tick", "weekly_report", "0 9 * * 1"),
    # Yesterday's metrics/{date} (and any missing day of the week before), after midnight UTC.
    SchedulerJob("daily-metrics-tick", "daily_metrics", "15 0 * * *"),
    SchedulerJob("monitor-tick", "monitor", "* * * * *"),
    SchedulerJob("redelivery-sweep-tick", "redelivery_sweep", "*/15 * * * *"),
    # Stalled tasks, waiting tasks whose reason has gone (a new budget day, a finished dependency).
    SchedulerJob("task-sweep-tick", "task_sweep", "*/5 * * * *"),
)
TICK_JOBS: tuple[str, ...] = tuple(job.job for job in SCHEDULER_JOBS)

# Firestore collections whose documents carry an `expire_at` the runtime sets; Terraform declares a
# TTL policy on each so Firestore deletes them.
TTL_FIELDS: dict[str, str] = {
    "deliveries": "expire_at",
    "audit": "expire_at",
    "http_cache": "expire_at",
    "health": "expire_at",  # collection group: repos/*/services/*/health and deployments/*/health
    "scans": "expire_at",  # collection group: repos/*/scans, the repo scout's snapshots (180 days)
}
