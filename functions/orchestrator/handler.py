"""The orchestrator's shell: gather facts, call the pure router, apply its decisions.

Consumes github-events, schedule-ticks, agent-results and cloud-builds. Dispatch is exactly-once
in effect: the task document is created under a deterministic id and a dispatch lease is taken in
one transaction, the task is published, and only then marked dispatched. A redelivered message
finds the task dispatched and does nothing; a publish that failed leaves the task queued, so the
retry publishes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from functions.orchestrator import core
from shared import topology
from shared.errors import ConfigError, InvalidInput, PermanentError, RetryableError
from shared.messages import AgentTask, AgentTaskResult, CloudBuildNotification, GithubEvent, ScheduleTick
from shared.ports import AuditLog, DeliveryLedger, Dispatch, Publisher, TaskSpec, TaskStore
from shared.runtime import Envelope

log = logging.getLogger("agentops.orchestrator")

NAME = "orchestrator"

MESSAGE_TYPES = {
    topology.GITHUB_EVENTS: GithubEvent,
    topology.SCHEDULE_TICKS: ScheduleTick,
    topology.AGENT_RESULTS: AgentTaskResult,
    topology.CLOUD_BUILDS: CloudBuildNotification,
}


class Orchestrator:
    def __init__(
        self,
        ledger: Callable[[], DeliveryLedger],
        tasks: Callable[[], TaskStore],
        publisher: Callable[[], Publisher],
        audit: Callable[[], AuditLog],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        internal_jobs: Mapping[str, Callable[[], str]] | None = None,
        installations: Callable[[], Any] | None = None,
    ) -> None:
        self._installations = installations
        self._internal_jobs = dict(internal_jobs or {})
        self._ledger = ledger
        self._tasks = tasks
        self._publisher = publisher
        self._audit = audit
        self._clock = clock

    def __call__(self, envelope: Envelope) -> None:
        message = envelope.message
        if isinstance(message, GithubEvent):
            self.on_github_event(message)
        elif isinstance(message, ScheduleTick):
            self.on_tick(message, envelope)
        elif isinstance(message, AgentTaskResult):
            self.on_result(message)
        elif isinstance(message, CloudBuildNotification):
            self.on_build(message, envelope)
        else:  # pragma: no cover - MESSAGE_TYPES and this dispatch are kept in step by tests
            raise InvalidInput(f"orchestrator cannot handle {type(message).__name__}")

    def on_github_event(self, event: GithubEvent) -> None:
        seen = self._ledger().get(event.delivery_id) or {}
        if NAME in (seen.get("processed_by") or {}):
            log.info("delivery already processed", extra={"outcome": "duplicate"})
            return
        facts = core.EventFacts(
            event=event.event,
            action=event.action,
            delivery_id=event.delivery_id,
            repository=event.repository,
            installation_id=event.installation_id,
            payload=event.body(),
        )
        change = core.installation_change(facts)
        if change is not None and self._installations is not None:
            # Idempotent: the same event sets the same fields again.
            self._installations().apply(change, event.delivery_id, self._clock())
        specs = core.route_event(facts)
        for spec in specs:
            self.dispatch(spec)
        self._ledger().mark_processed(
            event.delivery_id, NAME, [spec.task_id for spec in specs], self._clock(),
            routed=bool(specs),
        )

    def on_tick(self, tick: ScheduleTick, envelope: Envelope) -> None:
        if tick.job not in topology.TICK_JOBS:
            raise InvalidInput(f"unknown tick job {tick.job!r}")
        key = f"tick-{envelope.message_id}"
        specs = core.route_tick(tick.job, envelope.message_id, envelope.publish_time)
        for spec in specs:
            self.dispatch(spec)
        self._ledger().mark_processed(key, NAME, [spec.task_id for spec in specs], self._clock(),
                                      job=tick.job)

    def dispatch(self, spec: TaskSpec) -> None:
        tasks = self._tasks()
        now = self._clock()
        outcome, attempt = tasks.begin_dispatch(spec, now)
        if outcome is Dispatch.ALREADY:
            log.info("task already dispatched", extra={"task_id": spec.task_id, "outcome": "duplicate"})
            return
        if outcome is Dispatch.BUSY:
            raise RetryableError(f"task {spec.task_id} is being dispatched by another delivery")
        if spec.agent == core.ORCHESTRATOR:
            self._run_internal(spec, attempt)
            return
        task = AgentTask(
            task_id=spec.task_id,
            kind=spec.kind,
            agent=spec.agent,
            attempt=attempt,
            repository=spec.repository,
            installation_id=spec.installation_id,
            subject=spec.subject,
            source=spec.source,
            created_at=int(now.timestamp() * 1000),
            inputs=json.dumps(dict(spec.inputs), separators=(",", ":")),
        )
        topic = topology.AGENTS_BY_NAME[spec.agent].topic
        try:
            message_id = self._publisher().publish(topic, task.encode(), task.attributes())
        except RetryableError as exc:
            tasks.abandon_dispatch(spec.task_id, str(exc), self._clock())
            raise
        tasks.finish_dispatch(spec.task_id, message_id, self._clock())
        self._audit().record(
            key=f"dispatch:{spec.task_id}:{attempt}",
            actor=NAME,
            action="dispatch_task",
            subject=f"task/{spec.task_id}",
            outcome="dispatched",
            agent=spec.agent,
            topic=topic,
            repository=spec.repository,
            source=spec.source,
            message_id=message_id,
        )
        log.info("task dispatched", extra={"task_id": spec.task_id, "agent": spec.agent,
                                           "outcome": "dispatched"})

    def _run_internal(self, spec: TaskSpec, attempt: int) -> None:
        """Run one of the orchestrator's own jobs in place and record its outcome on the task."""
        tasks = self._tasks()
        job = self._internal_jobs.get(spec.kind)
        if job is None:
            status, summary = "not_implemented", f"{spec.kind} is not implemented yet"
        else:
            try:
                status, summary = "succeeded", job()
            except ConfigError as exc:
                status, summary = "blocked", f"{spec.kind} cannot run: {exc}"
            except RetryableError as exc:
                tasks.abandon_dispatch(spec.task_id, str(exc), self._clock())
                raise
            except PermanentError as exc:
                status, summary = "failed", f"{spec.kind} failed: {exc}"
        tasks.finish_dispatch(spec.task_id, "internal", self._clock())
        tasks.record_result(spec.task_id, spec.agent, attempt, status, summary, self._clock())
        self._audit().record(
            key=f"internal:{spec.task_id}:{attempt}",
            actor=NAME,
            action=f"run_{spec.kind}",
            subject=f"task/{spec.task_id}",
            outcome=status,
            summary=summary[:500],
        )

    def on_result(self, result: AgentTaskResult) -> None:
        applied = self._tasks().record_result(
            result.task_id, result.agent, result.attempt, result.status, result.summary, self._clock()
        )
        if not applied:
            log.info("result already recorded or stale",
                     extra={"task_id": result.task_id, "outcome": "duplicate"})
            return
        self._audit().record(
            key=f"result:{result.task_id}:{result.attempt}:{result.status}",
            actor=result.agent,
            action="report_result",
            subject=f"task/{result.task_id}",
            outcome=result.status,
            summary=result.summary[:500],
        )

    def on_build(self, build: CloudBuildNotification, envelope: Envelope) -> None:
        # Builds are recorded now; the deploy agent's release state machine will consume them.
        self._ledger().mark_processed(
            f"build-{envelope.message_id}", NAME, [], self._clock(),
            build_id=build.build_id, build_status=build.status,
        )
