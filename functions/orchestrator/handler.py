"""The orchestrator's shell: gather facts, call the pure decisions, apply them.

Consumes github-events, schedule-ticks, agent-results and cloud-builds.

- Events and ticks become tasks (`core.ROUTES`, `core.TICK_ROUTES`); comments, reviews, pushes and
  CI events act on tasks that exist (`core.SIGNALS`).
- Dispatch is exactly-once in effect: the task is created under a deterministic id and gated in
  one transaction (kill switch, pauses, holds, dependencies, approvals, concurrency, budgets), then
  published, and only then marked dispatched. A redelivered message finds it dispatched.
- A task that may not go yet stays `queued` with `waiting_on` saying why; it is woken when the
  reason may have gone (a task finished, a hold or pause lifted, the task sweep every 5 minutes).
- Every effect on GitHub goes through the executor, keyed, audited and applied once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from functions.orchestrator import approvals, chatops, core, lifecycle
from shared import policy as policies
from shared import topology
from shared.errors import ConfigError, InvalidInput, PermanentError, RetryableError
from shared.executor import AddReaction, CreateCheckRun, Executor, PostComment, UpdateCheckRun
from shared.messages import AgentTask, AgentTaskResult, CloudBuildNotification, GithubEvent, ScheduleTick
from shared.ports import AuditLog, DeliveryLedger, Dispatch, Publisher, TaskSpec
from shared.runtime import Envelope
from shared.task_store import DispatchPolicy, cost_units

log = logging.getLogger("agentops.orchestrator")

NAME = "orchestrator"
MAX_WAKE_KEYS = 200  # releases one monitor tick may wake
APPROVAL_CHECK = "agent-ops/approval"

MESSAGE_TYPES = {
    topology.GITHUB_EVENTS: GithubEvent,
    topology.SCHEDULE_TICKS: ScheduleTick,
    topology.AGENT_RESULTS: AgentTaskResult,
    topology.CLOUD_BUILDS: CloudBuildNotification,
}


@dataclass(frozen=True)
class Limits:
    """The installation-wide budgets per UTC day (0: no limit)."""

    global_daily_tasks: int = 0
    global_daily_cost: float = 0.0


@dataclass
class Turn:
    """What one message's handling has learned, so it asks GitHub each question once."""

    delivery_id: str = ""
    policies: dict[str, policies.PolicyLoad] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # repo -> why its policy cannot be read
    failures: int = 0  # tasks a sweep or wake could not handle this time
    roles: dict[tuple[str, str], str] = field(default_factory=dict)


def spec_from_task(task: Mapping[str, Any]) -> TaskSpec:
    """The spec of a stored task, to dispatch it again (after a wait, an approval or a retry)."""
    inputs = dict(task.get("inputs") or {})
    approval = task.get("approval") or {}
    requested = int(approval.get("requested_attempt") or 0)
    # A grant lets the attempt it was given for go on, not every later /retry or stall retry.
    current = int(task.get("attempt") or 1)
    if approval.get("state") == "granted" and (not requested or current <= requested + 1):
        inputs["approval"] = {
            "step": approval.get("step"),
            "approved_by": list(approval.get("counted") or []),
            "head_sha": approval.get("head_sha"),
        }
    if task.get("depends_on"):
        inputs["depends_on"] = list(task["depends_on"])
    if task.get("checkpoint"):
        inputs["checkpoint"] = dict(task["checkpoint"])
    return TaskSpec(
        task_id=str(task["task_id"]),
        kind=str(task["kind"]),
        agent=str(task["agent"]),
        repository=str(task.get("repository") or ""),
        installation_id=int(task.get("installation_id") or 0),
        subject=str(task.get("subject") or ""),
        source=str(task.get("source") or ""),
        inputs=inputs,
    )


class Orchestrator:
    def __init__(
        self,
        ledger: Callable[[], DeliveryLedger],
        tasks: Callable[[], Any],
        publisher: Callable[[], Publisher],
        audit: Callable[[], AuditLog],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        internal_jobs: Mapping[str, Callable[[], str]] | None = None,
        installations: Callable[[], Any] | None = None,
        github: Callable[[], Any] | None = None,
        limits: Limits = Limits(),
        dry_run: bool = False,
        deployments: Callable[[], Any] | None = None,
    ) -> None:
        self._installations = installations
        self._deployments = deployments  # the deploy agent's releases, for /rollback
        self._internal_jobs = {"task_sweep": self.sweep, **dict(internal_jobs or {})}
        self._ledger = ledger
        self._tasks = tasks
        self._publisher = publisher
        self._audit = audit
        self._clock = clock
        self._github = github  # the GitHub App, or None where it is not configured
        self._limits = limits
        self._executor = Executor(audit, self._client, actor=NAME, dry_run=dry_run)

    # ---- entry ----------------------------------------------------------------------------

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
        turn = Turn(delivery_id=event.delivery_id)
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
        if facts.event == "issues" and facts.action == "labeled" and facts.repository:
            load = self._policy(facts.repository, facts.installation_id, turn)
            facts = core.EventFacts(**{**facts.__dict__, "task_label": load.policy.labels["task"]})
        specs = core.route_event(facts)
        for spec in specs:
            self.dispatch(spec, turn)
        for handler in core.signals_for(facts):
            {
                core.CHATOPS: self._on_comment,
                core.APPROVAL: self._on_review,
                core.HEAD_MOVED: self._on_head_moved,
                core.WAKE: self._on_wake,
            }[handler](facts, turn)
        self._ledger().mark_processed(
            event.delivery_id,
            NAME,
            [spec.task_id for spec in specs],
            self._clock(),
            routed=bool(specs),
        )

    def on_tick(self, tick: ScheduleTick, envelope: Envelope) -> None:
        if tick.job not in topology.TICK_JOBS:
            raise InvalidInput(f"unknown tick job {tick.job!r}")
        key = f"tick-{envelope.message_id}"
        specs = core.route_tick(tick.job, envelope.message_id, envelope.publish_time)
        turn = Turn(delivery_id=key)
        for spec in specs:
            self.dispatch(spec, turn)
        self._ledger().mark_processed(
            key, NAME, [spec.task_id for spec in specs], self._clock(), job=tick.job
        )

    # ---- dispatch -------------------------------------------------------------------------

    def dispatch(self, spec: TaskSpec, turn: Turn | None = None, waking: bool = False) -> str:
        """Create or wake a task and dispatch it if its gate allows. Returns the outcome."""
        turn = turn or Turn()
        tasks = self._tasks()
        now = self._clock()
        begun = tasks.begin_dispatch(spec, self._dispatch_policy(spec, turn), now)
        outcome = begun.outcome
        if outcome is Dispatch.ALREADY:
            log.info("task already dispatched", extra={"task_id": spec.task_id, "outcome": "duplicate"})
            if begun.task.get("status") == lifecycle.WAITING_APPROVAL:
                # A redelivery after the request's GitHub effects failed: they are keyed, so
                # asking again makes only the ones that are missing.
                self._request_approval(begun.task, turn)
            return "already"
        if outcome is Dispatch.BUSY:
            if waking:  # someone else is dispatching it right now: nothing for the waker to do
                return "busy"
            raise RetryableError(f"task {spec.task_id} is being dispatched by another delivery")
        if outcome == "wait":
            log.info(
                "task waits: %s", begun.gate.reason, extra={"task_id": spec.task_id, "outcome": "waiting"}
            )
            self._audit_task(
                "task_waiting",
                begun.task,
                "waiting",
                reason=begun.gate.reason,
                key=f"wait:{spec.task_id}:{begun.attempt}:{_digest(begun.gate.reason)}",
            )
            return "wait"
        if outcome == "approval":
            self._audit_task(
                "request_approval",
                begun.task,
                "waiting_approval",
                reason=begun.gate.reason,
                key=f"approval-request:{spec.task_id}:{begun.attempt}",
            )
            self._request_approval(begun.task, turn)
            return "approval"
        if outcome == "block":
            self._audit_task(
                "block_task",
                begun.task,
                "blocked",
                reason=begun.gate.reason,
                key=f"block:{spec.task_id}:{begun.attempt}",
            )
            load = turn.policies.get(spec.repository)
            if load is None or load.valid or load.policy.agent_enabled(spec.agent):
                # Otherwise the invalid policy turned the agent off, and its own report says so.
                self._tell(
                    begun.task,
                    f"Agent Ops will not run `{spec.kind}` here: {begun.gate.reason}.",
                    f"blocked:{spec.task_id}:{begun.attempt}",
                    turn,
                )
            return "block"
        if spec.agent == core.ORCHESTRATOR:
            self._run_internal(spec, begun.attempt)
            return "internal"
        self._publish(spec, begun.attempt)
        return "dispatched"

    def _publish(self, spec: TaskSpec, attempt: int, wake: Mapping[str, Any] | None = None) -> str:
        tasks = self._tasks()
        now = self._clock()
        inputs = {**dict(spec.inputs), **({"wake": dict(wake)} if wake else {})}
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
            inputs=json.dumps(inputs, separators=(",", ":"), default=str),
        )
        topic = topology.AGENTS_BY_NAME[spec.agent].topic
        try:
            message_id = self._publisher().publish(topic, task.encode(), task.attributes())
        except RetryableError as exc:
            if not wake:
                tasks.abandon_dispatch(spec.task_id, str(exc), self._clock())
            raise
        if wake:
            return message_id
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
            task_id=spec.task_id,
            source=spec.source,
            message_id=message_id,
        )
        log.info(
            "task dispatched", extra={"task_id": spec.task_id, "agent": spec.agent, "outcome": "dispatched"}
        )
        return message_id

    def _dispatch_policy(self, spec: TaskSpec, turn: Turn) -> DispatchPolicy:
        limits = {
            "global_daily_tasks": self._limits.global_daily_tasks or None,
            "global_daily_cost": self._limits.global_daily_cost or None,
        }
        if not spec.repository or spec.agent == core.ORCHESTRATOR:
            return DispatchPolicy(exempt_from_pause=spec.agent == core.ORCHESTRATOR, **limits)
        load = self._policy(spec.repository, spec.installation_id, turn)
        policy = load.policy
        number = int(spec.inputs.get("issue_number") or spec.inputs.get("pull_number") or 0)
        if spec.repository in turn.unreadable:
            return DispatchPolicy(unavailable=turn.unreadable[spec.repository], **limits)
        if not load.valid:
            self._report_invalid_policy(load, spec.repository, spec.installation_id, number, turn)
        enabled = policy.agent_enabled(spec.agent)
        reason = ""
        if not enabled:
            reason = (
                f"{policies.POLICY_PATH} is invalid, so the {spec.agent} agent is off until it is fixed"
                if not load.valid
                else f"the {spec.agent} agent is off in {policies.POLICY_PATH}"
            )
            if spec.agent == "deploy" and load.valid and policy.agents.get("deploy"):
                reason = f"no deploy service is configured in {policies.POLICY_PATH}"
        step = lifecycle.PRE_DISPATCH_STEP.get(spec.kind, "")
        rule = policy.approval_for(step) if step else None
        return DispatchPolicy(
            agent_enabled=enabled,
            disabled_reason=reason,
            slot=lifecycle.slot_key(spec.agent, spec.repository, policy.deploy_service),
            slot_limit=policy.limit_for(spec.agent),
            repo_daily_tasks=policy.daily_tasks,
            repo_daily_cost=policy.daily_cost,
            approval_step=step if rule else "",
            approval_rule=_rule_doc(rule) if rule else {},
            **limits,
        )

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
            task_id=spec.task_id,
            summary=summary[:500],
        )

    # ---- results --------------------------------------------------------------------------

    def on_result(self, result: AgentTaskResult) -> None:
        details = result.detail_values()
        changed = self._tasks().record_result(
            result.task_id,
            result.agent,
            result.attempt,
            result.status,
            result.summary,
            self._clock(),
            details,
        )
        # Before anything may return: a redelivered result wakes nobody twice (each wake is keyed).
        self._wake_named(result, details, changed.after or changed.before)
        if not changed.applied:
            log.info(
                "result already recorded or stale", extra={"task_id": result.task_id, "outcome": "duplicate"}
            )
            before = changed.before
            if (result.status == "waiting_approval" and before.get("status") == lifecycle.WAITING_APPROVAL
                    and int(before.get("attempt") or 0) == result.attempt):
                self._request_approval(before, Turn(delivery_id=f"result-{result.task_id}-{result.attempt}"))
            return
        task = changed.after
        if result.status == "running":
            return  # a heartbeat: recorded on the task and the agent, not worth an audit record each
        self._audit().record(
            key=f"result:{result.task_id}:{result.attempt}:{result.status}",
            actor=result.agent,
            action="report_result",
            subject=f"task/{result.task_id}",
            outcome=result.status,
            repository=str(task.get("repository") or ""),
            task_id=result.task_id,
            summary=result.summary[:500],
            cost_units=cost_units(details),
        )
        turn = Turn(delivery_id=f"result-{result.task_id}-{result.attempt}")
        if task.get("status") == lifecycle.WAITING_APPROVAL:
            self._request_approval(task, turn)
        if changed.released_slot or task.get("status") in lifecycle.TERMINAL:
            self.wake_waiting(str(task.get("repository") or ""), turn)

    def _wake_named(self, result: AgentTaskResult, details: Mapping[str, Any],
                    task: Mapping[str, Any]) -> None:
        """The monitor's tick wakes the releases it measured, so they decide on what it saw.

        Only the monitor may wake this way, and only `release:<id>` keys: no agent can poke
        another's tasks in general.
        """
        keys = details.get("wake")
        if result.agent != core.MONITOR_AGENT or not isinstance(keys, list):
            return
        if (task or {}).get("agent") != core.MONITOR_AGENT:
            return  # the message says monitor; the task it reports on must be the monitor's too
        facts = core.EventFacts("monitor", "tick", f"result-{result.task_id}-{result.attempt}", "", 0, {})
        turn = Turn(delivery_id=facts.delivery_id)
        for key in keys[:MAX_WAKE_KEYS]:
            if isinstance(key, str) and key.startswith(core.RELEASE_WAKE_PREFIX):
                for task in self._tasks().query(waits_for=key):
                    self._wake(task, facts, turn)

    def on_build(self, build: CloudBuildNotification, envelope: Envelope) -> None:
        # Builds are recorded; a task that waits for one names `build:<id>` in its waits_for.
        self._ledger().mark_processed(
            f"build-{envelope.message_id}",
            NAME,
            [],
            self._clock(),
            build_id=build.build_id,
            build_status=build.status,
        )
        facts = core.EventFacts(
            "cloud_build",
            build.status.lower(),
            f"build-{envelope.message_id}",
            "",
            0,
            {"build": {"id": build.build_id, "status": build.status}},
        )
        for task in self._tasks().query(waits_for=f"build:{build.build_id}"):
            self._wake(task, facts, Turn(delivery_id=facts.delivery_id))

    # ---- waking ---------------------------------------------------------------------------

    def wake_waiting(self, repository: str | None, turn: Turn | None = None) -> int:
        """Try every queued task (of one repo, or all) again; returns how many went."""
        turn = turn or Turn()
        woken = 0
        for task in self._tasks().query(repository=repository or None, status=lifecycle.QUEUED):
            if task.get("agent") == core.ORCHESTRATOR:
                continue  # the orchestrator's own jobs run when their tick comes, not when woken
            try:
                if self.dispatch(spec_from_task(task), turn, waking=True) == "dispatched":
                    woken += 1
            except (RetryableError, PermanentError) as exc:
                # One task (one repo's rate limit, one failed publish) must not keep the others
                # waiting; it stays queued and the next sweep tries it again.
                turn.failures += 1
                log.error("could not wake task: %s", exc, extra={"task_id": task.get("task_id"),
                                                                  "outcome": "wake_failed"})
        return woken

    def _stopped(self, task: Mapping[str, Any]) -> str:
        """Why a task must not continue now (kill switch, agent or repo paused, held), or ""."""
        return self._tasks().stop_reason(str(task.get("agent") or ""), str(task.get("repository") or ""),
                                         int(task.get("number") or 0))

    def _on_wake(self, facts: core.EventFacts, turn: Turn) -> None:
        for key in core.wake_keys(facts):
            for task in self._tasks().query(waits_for=key):
                self._wake(task, facts, turn)

    def _wake(self, task: Mapping[str, Any], facts: core.EventFacts, turn: Turn) -> bool:
        """Pass the event on to the task's agent (or defer it while stopped); False when done before."""
        if task.get("status") not in lifecycle.ACTIVE:
            return False
        key = f"wake:{task['task_id']}:{task.get('attempt')}:{facts.delivery_id}"
        if self._audit().has(key):
            return False
        stopped = self._stopped(task)
        if stopped:
            # Nothing continues while stopped: the task stays put until its deadline, and the
            # sweep then retries it with a new attempt, which waits for the stop to be lifted.
            self._audit_task("wake_task", task, "deferred", key=key, reason=stopped,
                             event=f"{facts.event}.{facts.action}", delivery_id=facts.delivery_id)
            return True
        message_id = self._publish(
            spec_from_task(task), int(task.get("attempt") or 1), core.wake_summary(facts)
        )
        self._audit_task(
            "wake_task",
            task,
            "woken",
            key=key,
            event=f"{facts.event}.{facts.action}",
            message_id=message_id,
            delivery_id=facts.delivery_id,
        )
        return True

    # ---- approvals ------------------------------------------------------------------------

    def _request_approval(self, task: Mapping[str, Any], turn: Turn) -> None:
        approval = task.get("approval") or {}
        repository, task_id = str(task.get("repository") or ""), str(task["task_id"])
        installation_id = int(task.get("installation_id") or 0)
        rule = _rule(approval.get("rule") or {})
        head_sha = str(approval.get("head_sha") or "")
        step = str(approval.get("step") or "approval")
        attempt = int(task.get("attempt") or 1)
        who = _who(rule)
        how = f"comment `/approve {task_id}`" + (" or approve the pull request" if step != "deploy" else "")
        text = (
            f"**{step}** for task `{task_id}` ({task.get('kind')}) needs {rule.count} approval"
            f"{'s' if rule.count != 1 else ''} from {who} with at least the **{rule.permission}** role "
            f"on the current head `{head_sha[:12]}`. To approve, {how}."
        )
        if not self._can_write(installation_id, repository):
            return
        if head_sha:
            created = self._executor.apply(
                CreateCheckRun(
                    repository,
                    head_sha,
                    APPROVAL_CHECK,
                    f"{task_id}:{step}:{attempt}:{head_sha}",
                    "in_progress",
                    f"Waiting for approval: {step}",
                    text,
                    key=f"approval-check:{task_id}:{step}:{attempt}:{head_sha}",
                ),
                installation_id,
                task_id,
                turn.delivery_id,
            )
            if created and created.get("id"):
                check_run_id = int(created["id"])
                self._tasks().update_approval(
                    task_id,
                    lambda a: {**a, "check_run_id": check_run_id} if a.get("head_sha") == head_sha else None,
                    self._clock(),
                )
        if task.get("number"):
            self._executor.apply(
                PostComment(
                    repository, int(task["number"]), text,
                    key=f"approval-comment:{task_id}:{step}:{attempt}:{head_sha}",
                ),
                installation_id,
                task_id,
                turn.delivery_id,
            )

    def _evaluate_approval(self, task: Mapping[str, Any], turn: Turn) -> approvals.ApprovalCount | None:
        """Count the approvals of a waiting task from GitHub; let it go when there are enough."""
        repository, task_id = str(task.get("repository") or ""), str(task["task_id"])
        installation_id = int(task.get("installation_id") or 0)
        if not self._can_write(installation_id, repository):
            return None
        approval = dict(task.get("approval") or {})
        rule = _rule(approval.get("rule") or {})
        step, head_sha = str(approval.get("step") or ""), str(approval.get("head_sha") or "")
        given = [
            approvals.Approval(
                str(a.get("login")),
                approvals.COMMENT,
                str(a.get("sha") or ""),
                str(a.get("user_type") or "User"),
            )
            for a in approval.get("approvers") or []
        ]
        author = ""
        pull_number = int(approval.get("pull_number") or 0)
        client = self._client(installation_id, repository, task_id)
        current_head = head_sha
        pull = None
        if pull_number:
            # The number is an issue's when an agent asks before any pull request exists (a change to
            # a protected path): then only /approve comments count, and the issue's author is the author.
            issue = client.request("GET", f"/repos/{repository}/issues/{pull_number}")
            author = str((issue.get("user") or {}).get("login") or "")
            if issue.get("pull_request"):
                pull = client.request("GET", f"/repos/{repository}/pulls/{pull_number}")
                author = str((pull.get("user") or {}).get("login") or "")
        if pull is not None:
            if step != "deploy":  # a code review is not a deploy approval; the PR's author is known
                current_head = str((pull.get("head") or {}).get("sha") or "")
                reviews = list(client.paginate(f"/repos/{repository}/pulls/{pull_number}/reviews"))
                given += approvals.approvals_from_reviews(reviews)
        logins = approvals.candidates(given)
        roles = {login: self._role(repository, installation_id, login, turn) for login in logins}
        teams_of = {login: self._teams(client, login, rule.teams) for login in logins}
        count = approvals.count_approvals(given, rule, head_sha, self._app_login(), author, roles, teams_of)
        summary = approvals.summary(count, step)
        details = "\n".join(f"- {chatops.neutralise(login, 60)}: {why}" for login, why in count.ignored)
        check_run_id = int(approval.get("check_run_id") or 0)
        attempt = int(task.get("attempt") or 1)
        if current_head != head_sha:
            # The PR moved and its synchronize event has not expired these approvals yet (or was
            # lost): they were given for another head, so they cannot let the task go.
            log.warning("approvals for %s are for %s, the PR head is %s", task_id, head_sha[:12],
                        current_head[:12], extra={"task_id": task_id, "outcome": "stale_head"})
            return approvals.ApprovalCount((), count.ignored, count.required)
        if not count.satisfied:
            if check_run_id:
                self._executor.apply(
                    UpdateCheckRun(
                        repository,
                        check_run_id,
                        "in_progress",
                        f"Waiting for approval: {step}",
                        f"{summary}.\n\nNot counted:\n{details or '- none'}",
                        key=f"approval-progress:{task_id}:{attempt}:{head_sha}:{_digest(summary + details)}",
                    ),
                    installation_id,
                    task_id,
                    turn.delivery_id,
                )
            return count
        now = self._clock()
        granted = {**approval, "state": "granted", "granted_at": now, "counted": list(count.counted),
                   "requested_attempt": attempt}
        changed = self._tasks().transition(
            task_id,
            lifecycle.QUEUED,
            summary,
            ",".join(count.counted),
            now,
            expected=[lifecycle.WAITING_APPROVAL],
            extra={"approval": granted},
            new_attempt=True,
            # Granted only for the head the approvals were counted on, checked in the transaction.
            guard=lambda stored: (stored.get("approval") or {}).get("head_sha") == head_sha,
        )
        if changed.applied:
            self._after_grant(changed.after, turn)
        return count

    def _after_grant(self, task: Mapping[str, Any], turn: Turn) -> None:
        """What follows a grant: the check run succeeds, the task goes, the grant is audited.

        Each is keyed, so a redelivered message whose first try failed half-way (a contended audit
        chain, say) finishes the rest instead of finding the task no longer waiting and stopping.
        """
        approval = task.get("approval") or {}
        if approval.get("state") != "granted" or task.get("status") in lifecycle.TERMINAL:
            return
        task_id, repository = str(task["task_id"]), str(task.get("repository") or "")
        installation_id = int(task.get("installation_id") or 0)
        step, head_sha = str(approval.get("step") or ""), str(approval.get("head_sha") or "")
        attempt = int(approval.get("requested_attempt") or 1)
        counted = list(approval.get("counted") or [])
        check_run_id = int(approval.get("check_run_id") or 0)
        if check_run_id and self._can_write(installation_id, repository):
            self._executor.apply(
                UpdateCheckRun(repository, check_run_id, "completed", f"Approved: {step}",
                               f"{step}: approved by {', '.join(counted)}.", conclusion="success",
                               key=f"approval-done:{task_id}:{attempt}:{head_sha}"),
                installation_id, task_id, turn.delivery_id)
        self.dispatch(spec_from_task(task), turn)
        self._audit_task("grant_approval", task, "granted",
                         key=f"approval-granted:{task_id}:{attempt}:{head_sha}", step=step, approvers=counted)

    def _on_review(self, facts: core.EventFacts, turn: Turn) -> None:
        number = facts.payload.get("pull_request", {}).get("number")
        if not isinstance(number, int):
            return
        for task in self._waiting_approval(facts.repository, number):
            self._evaluate_approval(task, turn)

    def _on_head_moved(self, facts: core.EventFacts, turn: Turn) -> None:
        """A push to a PR expires its approvals: they were given for the old head."""
        pull = facts.payload.get("pull_request") or {}
        number, head = pull.get("number"), str((pull.get("head") or {}).get("sha") or "")
        if not isinstance(number, int) or not head:
            return
        for task in self._waiting_approval(facts.repository, number):
            old = str((task.get("approval") or {}).get("head_sha") or "")
            if old == head:
                continue
            now = self._clock()

            def expire(
                approval: dict[str, Any], old: str = old, now: datetime = now
            ) -> dict[str, Any] | None:
                if approval.get("head_sha") != old:
                    return None
                expired = list(approval.get("expired") or []) + [
                    {
                        "head_sha": old,
                        "approvers": [a.get("login") for a in approval.get("approvers") or []],
                        "at": now,
                    }
                ]
                return {
                    **approval,
                    "head_sha": head,
                    "approvers": [],
                    "check_run_id": 0,
                    "expired": expired[-10:],
                }

            updated = self._tasks().update_approval(str(task["task_id"]), expire, now)
            if updated is None:
                continue
            self._audit_task(
                "expire_approvals",
                updated,
                "expired",
                key=f"approval-expired:{task['task_id']}:{head}",
                old_head=old,
                new_head=head,
            )
            check_run_id = int((task.get("approval") or {}).get("check_run_id") or 0)
            installation_id = int(task.get("installation_id") or 0)
            if check_run_id and self._can_write(installation_id, facts.repository):
                self._executor.apply(
                    UpdateCheckRun(
                        facts.repository,
                        check_run_id,
                        "completed",
                        "Superseded by a new push",
                        f"Approvals for {old[:12]} expired when the head moved to {head[:12]}.",
                        conclusion="neutral",
                        key=f"approval-stale:{task['task_id']}:{old}",
                    ),
                    installation_id,
                    str(task["task_id"]),
                    turn.delivery_id,
                )
            self._request_approval(updated, turn)

    def _close_approval_check(self, task: Mapping[str, Any], why: str, turn: Turn) -> None:
        """A task that stops waiting for approval must not leave its check run in progress."""
        approval = task.get("approval") or {}
        check_run_id = int(approval.get("check_run_id") or 0)
        repository, installation_id = str(task.get("repository") or ""), int(task.get("installation_id") or 0)
        if task.get("status") != lifecycle.WAITING_APPROVAL or not check_run_id:
            return
        if self._can_write(installation_id, repository):
            self._executor.apply(
                UpdateCheckRun(repository, check_run_id, "completed", why,
                               f"{why}; no approval is needed now.", conclusion="cancelled",
                               key=f"approval-closed:{task['task_id']}:{check_run_id}"),
                installation_id, str(task["task_id"]), turn.delivery_id)

    def _waiting_approval(self, repository: str, number: int) -> list[dict[str, Any]]:
        return [
            t
            for t in self._tasks().query(repository=repository, status=lifecycle.WAITING_APPROVAL)
            # The request is posted on the task's issue, the reviews come on the pull request.
            if number in (int((t.get("approval") or {}).get("pull_number") or 0), int(t.get("number") or 0))
        ]

    # ---- ChatOps --------------------------------------------------------------------------

    def _on_comment(self, facts: core.EventFacts, turn: Turn) -> None:
        comment = facts.payload.get("comment") or {}
        issue = facts.payload.get("issue") or {}
        sender = facts.payload.get("sender") or comment.get("user") or {}
        commands = chatops.parse_commands(str(comment.get("body") or ""))
        if not commands or not isinstance(issue.get("number"), int) or not facts.repository:
            return
        comment_id = int(comment.get("id") or 0)
        login = str(sender.get("login") or "")
        base = dict(
            repository=facts.repository,
            delivery_id=facts.delivery_id,
            link=str(comment.get("html_url") or ""),
        )
        if not self._can_write(facts.installation_id, facts.repository):
            self._audit().record(
                key=f"chatops:{comment_id}:unavailable",
                actor=login or "unknown",
                action="chatops_ignored",
                subject=f"{facts.repository}#{issue['number']}",
                outcome="github_not_configured",
                **base,
            )
            return
        app_id, app_login = self._app_identity()
        ignored = chatops.ignore_reason(sender, comment, app_id, app_login)
        if ignored:
            self._audit().record(
                key=f"chatops:{comment_id}:ignored",
                actor=login or "unknown",
                action="chatops_ignored",
                subject=f"{facts.repository}#{issue['number']}",
                outcome="ignored",
                reason=ignored,
                **base,
            )
            return
        load = self._policy(facts.repository, facts.installation_id, turn)
        role = self._role(facts.repository, facts.installation_id, login, turn)
        for index, command in enumerate(commands):
            self._command(
                facts, turn, load.policy, int(issue["number"]), comment_id, login, role, index, command, base
            )

    def _command(
        self,
        facts: core.EventFacts,
        turn: Turn,
        policy: policies.Policy,
        number: int,
        comment_id: int,
        login: str,
        role: str,
        index: int,
        command: chatops.Command,
        base: dict[str, Any],
    ) -> None:
        repository, installation_id = facts.repository, facts.installation_id
        key = f"chatops:{comment_id}:{index}"
        if self._audit().has(f"{key}:done") or self._audit().has(f"{key}:refused"):
            return  # a redelivered comment: its command was carried out (or refused) once already
        verb = command.verb
        needed = {
            "chatops": policy.chatops_permission,
            "admin": policy.chatops_admin_permission,
            "read": "read",
            "approval": "write",
        }.get(chatops.VERB_PERMISSION.get(verb, "read"), "read")
        waiting = self._waiting_approval(repository, number) if verb == chatops.APPROVE else []
        if verb == chatops.APPROVE:
            # Granted but not finished (the grant's message failed half-way): /approve finishes it.
            waiting += [t for t in self._tasks().query(repository=repository, number=number)
                        if (t.get("approval") or {}).get("state") == "granted"
                        and t.get("status") == lifecycle.QUEUED and t not in waiting]
        if verb == chatops.APPROVE:
            waiting = [
                t for t in waiting if not command.argument or command.argument in (t["task_id"], t["kind"])
            ]
            needed = min(
                (
                    str((t.get("approval") or {}).get("rule", {}).get("permission") or "write")
                    for t in waiting
                ),
                key=policies.ROLES.index,
                default="write",
            )
        subject = f"{repository}#{number}"
        if verb != chatops.UNKNOWN and not policies.role_at_least(role, needed):
            self._executor.apply(
                AddReaction(repository, comment_id, "-1", key=f"{key}:reaction"),
                installation_id,
                "",
                turn.delivery_id,
            )
            self._answer(repository, installation_id, number, key, chatops.refusal(login, verb, needed, role),
                         turn, login=login, verb=verb, subject=subject, outcome="refused", role=role,
                         needed=needed, **base)
            return
        now = self._clock()
        actor = f"@{login}"
        affected: list[str] = []
        if verb == chatops.HOLD:
            changed = self._tasks().set_hold(repository, number, actor, command.argument, now, held=True)
            reply = (
                f"Held #{number}: no new work on it is dispatched and no waiting step continues until "
                "`/unhold`."
                if changed
                else f"#{number} was already on hold."
            )
        elif verb == chatops.UNHOLD:
            changed = self._tasks().set_hold(repository, number, actor, "", now, held=False)
            woken = self._wake_number(repository, number, turn) if changed else 0
            reply = (
                f"Released #{number}; {woken} waiting task(s) dispatched."
                if changed
                else f"#{number} was not on hold."
            )
        elif verb == chatops.RETRY:
            for task in self._tasks().query(repository=repository, number=number):
                if task.get("status") in (lifecycle.FAILED, lifecycle.BLOCKED, lifecycle.CANCELLED):
                    moved = self._tasks().transition(
                        task["task_id"],
                        lifecycle.QUEUED,
                        f"/retry by {actor}",
                        actor,
                        now,
                        new_attempt=True,
                        extra={"retries": 0},
                    )
                    if moved.applied:
                        affected.append(
                            f"`{task['task_id']}` ({self.dispatch(spec_from_task(moved.after), turn)})"
                        )
            reply = (
                ("Retrying: " + ", ".join(affected) + ".")
                if affected
                else "Nothing here failed, was blocked or cancelled."
            )
        elif verb == chatops.CANCEL:
            stopped_release = False
            for task in self._tasks().query(repository=repository, number=number):
                if task.get("status") not in lifecycle.TERMINAL:
                    moved = self._tasks().transition(
                        task["task_id"], lifecycle.CANCELLED, f"/cancel by {actor}", actor, now
                    )
                    if moved.applied:
                        affected.append(f"`{task['task_id']}`")
                        self._close_approval_check(moved.before, f"Cancelled by {actor}", turn)
                        if task.get("agent") == "deploy":
                            stopped_release = True
            if affected:
                self.wake_waiting(repository, turn)
            reply = (
                ("Cancelled " + ", ".join(affected) + ".")
                if affected
                else "Nothing here was running or waiting."
            )
            if stopped_release:
                # A release does not end with its task: it is stopped (cancelled before any traffic
                # moved, else rolled back) so no half-done release holds the service.
                releases = self._deployments().releases(repository=repository) if self._deployments else []
                for release in releases:
                    if release.get("active") and int(release.get("pull_number") or 0) == number:
                        reply += " " + self.rollback(repository, installation_id, actor, turn, number=number,
                                                     release=release)
        elif verb == chatops.APPROVE:
            reply = self._approve(waiting, login, turn)
        elif verb in (chatops.AGENTS_PAUSE, chatops.AGENTS_RESUME):
            pause = verb == chatops.AGENTS_PAUSE
            changed = self._tasks().set_pause(f"repo:{repository}", pause, actor, f"from {subject}", now)
            woken = self.wake_waiting(repository, turn) if changed and not pause else 0
            reply = (
                (
                    f"Paused every agent in {repository}: nothing new is dispatched until `/agents resume`."
                    if pause
                    else f"Resumed the agents in {repository}; {woken} waiting task(s) dispatched."
                )
                if changed
                else f"The agents in {repository} were already {'paused' if pause else 'running'}."
            )
        elif verb == chatops.AGENTS_STATUS:
            reply = self._status_reply(repository)
        elif verb == chatops.IMPLEMENT:
            reply = self._implement(facts, number, actor, turn)
        elif verb == chatops.DEPLOY:
            reply = self._deploy(facts, number, actor, turn)
        elif verb == chatops.ROLLBACK:
            reply = self.rollback(repository, installation_id, actor, turn, number=number)
        else:
            reply = (
                f"Unknown command `{chatops.neutralise(command.argument, 40)}`. Commands: `/hold`, "
                "`/unhold`, `/retry`, `/cancel`, `/approve [task]`, `/agent implement`, `/deploy`, "
                "`/rollback`, `/agents pause`, "
                "`/agents resume`, `/agents status`."
            )
        self._answer(repository, installation_id, number, key, f"@{chatops.neutralise(login, 60)} {reply}",
                     turn, login=login, verb=verb, subject=subject, outcome="ok", role=role,
                     affected=affected, argument=command.argument[:200], **base)

    def _answer(self, repo: str, installation_id: int, number: int, key: str, reply: str, turn: Turn,
                *, login: str, verb: str, subject: str, outcome: str, **facts: Any) -> None:
        """Reply to a command, then audit it as done (or refused): the audit record is its receipt."""
        self._executor.apply(PostComment(repo, number, reply, key=f"{key}:reply"), installation_id, "",
                             turn.delivery_id)
        self._audit().record(key=f"{key}:{'done' if outcome == 'ok' else outcome}", actor=login,
                             action=f"chatops_{verb.replace(' ', '_')}", subject=subject, outcome=outcome,
                             **facts)

    def _implement(self, facts: core.EventFacts, number: int, actor: str, turn: Turn) -> str:
        """`/agent implement`: the same task the task label makes, so the two never make two."""
        issue = facts.payload.get("issue") or {}
        if issue.get("pull_request"):
            return "`/agent implement` works on issues, not on pull requests."
        spec = core.implement_spec(facts.repository, facts.installation_id, number,
                                   str(issue.get("title") or ""), f"delivery/{facts.delivery_id}",
                                   {"event": facts.event, "action": facts.action, "requested_by": actor})
        outcome = self.dispatch(spec, turn)
        if outcome == "already":
            task = self._tasks().get(spec.task_id) or {}
            return (f"#{number} already has the code agent's task `{spec.task_id}` "
                    f"({task.get('status', 'unknown')}); `/retry` starts it again if it failed.")
        return f"Handed #{number} to the code agent: task `{spec.task_id}` ({outcome})."

    def _deploy(self, facts: core.EventFacts, number: int, actor: str, turn: Turn) -> str:
        """`/deploy` on a merged pull request: the merge's own deploy task, so the two never make two."""
        issue = facts.payload.get("issue") or {}
        if not issue.get("pull_request"):
            return "`/deploy` works on a merged pull request: it deploys its merge commit."
        pull = self._client(facts.installation_id, facts.repository).request(
            "GET", f"/repos/{facts.repository}/pulls/{number}")
        spec = core.deploy_spec(facts.repository, facts.installation_id, pull or {},
                                f"delivery/{facts.delivery_id}", {"requested_by": actor})
        if spec is None:
            return f"#{number} is not merged into the default branch; only such a merge is deployed."
        outcome = self.dispatch(spec, turn)
        if outcome == "already":
            task = self._tasks().get(spec.task_id) or {}
            status = task.get("status", "unknown")
            return (f"#{number} already has the deploy task `{spec.task_id}` ({status}); "
                    "`/retry` deploys it again once it has ended.")
        return f"Deploying the merge of #{number}: task `{spec.task_id}` ({outcome})."

    def rollback(self, repository: str, installation_id: int, actor: str, turn: Turn | None = None, *,
                 number: int = 0, service: str = "", release: Mapping[str, Any] | None = None) -> str:
        """Roll back what a repository (or service) serves, from `/rollback` or the CLI.

        The target is the pull request's own release when `number` has one, else the newest release
        carrying traffic (canary, watch window, live), else the newest one still in progress. One in
        progress is stopped by waking its own task (its state machine rolls it back, or cancels it
        before any traffic moved); an ended one gets a rollback task.
        """
        turn = turn or Turn()
        if self._deployments is None:
            return "Deploys are not set up here."
        if release is None:
            release = _rollback_target(self._deployments().releases(repository=repository, service=service,
                                                                    limit=50), number)
            if release is None:
                return "There is no release serving traffic or in progress to roll back."
        release_id = str(release.get("id") or "")
        what = f"{release.get('service')} {release.get('version')}"
        if release.get("state") in ("rolled_back", "failed", "cancelled"):
            return f"The release {what} is {release.get('state')}; there is nothing to roll back."
        if release.get("active"):
            facts = core.EventFacts("chatops", "rollback", f"rollback-{release_id}-{turn.delivery_id}",
                                    repository, installation_id, {"chatops": {"actor": actor}})
            waiting = self._tasks().query(waits_for=f"{core.RELEASE_WAKE_PREFIX}{release_id}")
            woken = [task for task in waiting if self._wake(task, facts, turn)]
            if woken:
                stopped = self._stopped(woken[0])
                when = f"once this is lifted: {stopped}" if stopped else "now"
                return f"Rolling back {what}: its deploy task `{woken[0]['task_id']}` stops it {when}."
        spec = core.rollback_spec(str(release.get("repository") or repository),
                                  int(release.get("installation_id") or installation_id), release_id, number,
                                  f"rollback/{turn.delivery_id}", actor, self._clock())
        outcome = self.dispatch(spec, turn)
        target = release.get("previous_version") or "nothing"
        return f"Rolling back {what} to {target}: task `{spec.task_id}` ({outcome})."

    def _approve(self, waiting: list[dict[str, Any]], login: str, turn: Turn) -> str:
        if not waiting:
            return "Nothing here is waiting for approval."
        lines = []
        for task in waiting:
            task_id = str(task["task_id"])
            head_sha = str((task.get("approval") or {}).get("head_sha") or "")

            def add(approval: dict[str, Any], head_sha: str = head_sha) -> dict[str, Any] | None:
                if (approval.get("head_sha") or "") != head_sha:
                    return None
                others = [a for a in approval.get("approvers") or [] if a.get("login") != login]
                return {
                    **approval,
                    "approvers": others
                    + [{"login": login, "sha": head_sha, "via": "comment", "user_type": "User"}],
                }

            updated = self._tasks().update_approval(task_id, add, self._clock())
            if updated is None:
                current = self._tasks().get(task_id) or {}
                if (current.get("approval") or {}).get("state") == "granted":
                    self._after_grant(current, turn)  # finish what an interrupted grant left undone
                    lines.append(f"`{task_id}` is approved.")
                else:
                    lines.append(f"`{task_id}` is no longer waiting.")
                continue
            count = self._evaluate_approval(updated, turn)
            if count is None:
                continue
            mine = dict(count.ignored).get(login)
            lines.append(
                f"`{task_id}`: "
                + (
                    f"not counted, {mine}."
                    if mine
                    else f"{approvals.summary(count, str(updated['approval']['step']))}"
                    + (", approved." if count.satisfied else ".")
                )
            )
        return " ".join(lines)

    def _wake_number(self, repository: str, number: int, turn: Turn) -> int:
        woken = 0
        for task in self._tasks().query(repository=repository, number=number, status=lifecycle.QUEUED):
            if self.dispatch(spec_from_task(task), turn, waking=True) == "dispatched":
                woken += 1
        return woken

    def _status_reply(self, repository: str) -> str:
        rows = [
            t for t in self._tasks().query(repository=repository) if t.get("status") not in lifecycle.TERMINAL
        ]
        state = self._tasks().repo_state(repository)
        head = f"Agents in {repository} are **{'paused' if state.get('paused') else 'running'}**"
        holds = sorted((state.get("holds") or {}).keys(), key=int)
        if holds:
            head += "; on hold: " + ", ".join(f"#{n}" for n in holds)
        if not rows:
            return head + ". No task is open."
        table = ["| task | agent | status | waiting on |", "|---|---|---|---|"]
        for row in sorted(rows, key=lambda r: str(r.get("task_id")))[:30]:
            table.append(
                f"| `{row.get('task_id')}` | {row.get('agent')} | {row.get('status')} | "
                f"{chatops.neutralise(str(row.get('waiting_on') or '-'), 120)} |"
            )
        return head + ".\n\n" + "\n".join(table)

    # ---- the task sweep -------------------------------------------------------------------

    def sweep(self) -> str:
        """Stalled tasks are retried, then escalated; waiting tasks are tried again."""
        now = self._clock()
        turn = Turn(delivery_id=f"sweep-{now:%Y%m%dT%H%M}")
        retried = escalated = rechecked = 0
        for status in sorted(lifecycle.ACTIVE):
            for task in self._tasks().query(status=status):
                if task.get("agent") == core.ORCHESTRATOR:
                    continue
                try:
                    repository = str(task.get("repository") or "")
                    installation_id = int(task.get("installation_id") or 0)
                    policy = (self._policy(repository, installation_id, turn).policy if repository
                              else policies.DEFAULT_POLICY)
                    interval = timedelta(minutes=policy.heartbeat_minutes)
                    reason = lifecycle.stall_reason(task, now, interval)
                    if not reason:
                        if lifecycle.needs_recheck(task, now, interval):
                            rechecked += self._recheck(task, turn)
                        continue
                    if self._stalled(task, reason, policy.max_attempts, turn) == "retry":
                        retried += 1
                    else:
                        escalated += 1
                except (RetryableError, PermanentError) as exc:
                    turn.failures += 1
                    log.error("could not sweep task: %s", exc, extra={"task_id": task.get("task_id"),
                                                                       "outcome": "sweep_failed"})
        woken = self.wake_waiting(None, turn)
        summary = (f"{retried} stalled task(s) retried, {escalated} escalated, "
                   f"{woken} waiting task(s) dispatched, {rechecked} rechecked")
        return summary + (f"; {turn.failures} could not be handled and wait for the next sweep"
                          if turn.failures else "")

    def _recheck(self, task: Mapping[str, Any], turn: Turn) -> int:
        """Wake a task that has waited a while for an event, in case the event came and went.

        An agent names what it waits for after it has looked; an event that arrived in between
        woke nobody. Agents judge from GitHub's state, not from the event, so a recheck is harmless.
        """
        facts = core.EventFacts("recheck", "", turn.delivery_id, str(task.get("repository") or ""),
                                int(task.get("installation_id") or 0), {})
        return 1 if self._wake(task, facts, turn) else 0

    def _stalled(self, task: Mapping[str, Any], reason: str, max_attempts: int, turn: Turn) -> str:
        task_id, now = str(task["task_id"]), self._clock()
        retries = int(task.get("retries") or 0)
        where = (
            f"agent `{task.get('agent')}` (topic `{topology.AGENTS_BY_NAME[str(task['agent'])].topic}`), "
            f"attempt {task.get('attempt')}, message `{task.get('message_id', '')}`"
        )
        if lifecycle.after_stall(retries, max_attempts) == "retry":
            moved = self._tasks().transition(
                task_id,
                lifecycle.QUEUED,
                f"stalled: {reason}; retrying",
                NAME,
                now,
                expected=sorted(lifecycle.ACTIVE),
                new_attempt=True,
                extra={"retries": retries + 1, "stalled": reason},
            )
            if moved.applied:
                self._audit_task(
                    "retry_stalled",
                    moved.after,
                    "retried",
                    key=f"stall:{task_id}:{task.get('attempt')}",
                    reason=reason,
                )
                self.dispatch(spec_from_task(moved.after), turn)
            return "retry"
        moved = self._tasks().transition(
            task_id,
            lifecycle.BLOCKED,
            f"stalled: {reason}; escalated to a human",
            NAME,
            now,
            expected=sorted(lifecycle.ACTIVE),
            extra={"escalated": True, "stalled": reason},
        )
        if moved.applied:
            self._audit_task(
                "escalate_stalled",
                moved.after,
                "escalated",
                key=f"escalate:{task_id}:{task.get('attempt')}",
                reason=reason,
            )
            self._tell(
                moved.after,
                f"Task `{task_id}` ({task.get('kind')}) stalled: {reason}, at {where}. It was tried "
                f"{retries + 1} time(s) and is now blocked. A human can `/retry` or `/cancel` it.",
                f"escalate-comment:{task_id}:{task.get('attempt')}",
                turn,
            )
            log.error(
                "task stalled and escalated: %s", reason, extra={"task_id": task_id, "outcome": "escalated"}
            )
        return "escalate"

    # ---- GitHub access --------------------------------------------------------------------

    def _app(self) -> Any:
        return self._github() if self._github is not None else None

    def _can_write(self, installation_id: int, repository: str) -> bool:
        return bool(installation_id and repository and self._app() is not None)

    def _client(self, installation_id: int, repository: str, task_id: str = "") -> Any:
        return self._app().client_for(NAME, installation_id, [repository], task_id=task_id)

    def _app_identity(self) -> tuple[int, str]:
        return self._app().identity()

    def _app_login(self) -> str:
        return self._app_identity()[1] if self._app() is not None else ""

    def _policy(self, repository: str, installation_id: int, turn: Turn) -> policies.PolicyLoad:
        cached = turn.policies.get(repository)
        if cached is None:
            if not self._can_write(installation_id, repository):
                cached = policies.parse_policy(None)
            else:
                try:
                    cached = policies.fetch_policy(self._client(installation_id, repository), repository)
                except PermanentError as exc:
                    # Forbidden (a suspended installation, say): the safe policy for anything that
                    # asks, and tasks wait rather than run or end under rules nobody wrote.
                    cached = policies.unreadable(exc)
                    turn.unreadable[repository] = f"{policies.POLICY_PATH} cannot be read: {exc}"
            turn.policies[repository] = cached
        return cached

    def _report_invalid_policy(
        self, load: policies.PolicyLoad, repository: str, installation_id: int, number: int, turn: Turn
    ) -> None:
        key = f"policy-invalid:{repository}:{load.blob_sha}:{number}"
        if number and self._can_write(installation_id, repository):
            self._executor.apply(
                PostComment(repository, number, policies.problems_markdown(load), key=key),
                installation_id,
                "",
                turn.delivery_id,
            )
        else:
            log.warning(
                "invalid %s in %s: %s",
                policies.POLICY_PATH,
                repository,
                "; ".join(str(p) for p in load.problems[:5]),
                extra={"outcome": "invalid_policy"},
            )

    def _role(self, repository: str, installation_id: int, login: str, turn: Turn) -> str:
        key = (repository, login)
        if key not in turn.roles:
            from shared.github.rest import NotFound

            try:
                answer = self._client(installation_id, repository).request(
                    "GET", f"/repos/{repository}/collaborators/{login}/permission"
                )
                turn.roles[key] = str(answer.get("role_name") or answer.get("permission") or "none")
            except NotFound:
                turn.roles[key] = "none"
        return turn.roles[key]

    def _teams(self, client: Any, login: str, teams: tuple[str, ...]) -> frozenset[str]:
        from shared.github.rest import NotFound

        member = set()
        for team in teams:
            org, _, slug = team.partition("/")
            try:
                answer = client.request("GET", f"/orgs/{org}/teams/{slug}/memberships/{login}")
            except NotFound:
                continue
            if answer.get("state") == "active":
                member.add(team)
        return frozenset(member)

    def _tell(self, task: Mapping[str, Any], text: str, key: str, turn: Turn) -> None:
        """Say something on the issue or PR a task is about, once per key."""
        repository, number = str(task.get("repository") or ""), int(task.get("number") or 0)
        installation_id = int(task.get("installation_id") or 0)
        if number and self._can_write(installation_id, repository):
            self._executor.apply(
                PostComment(repository, number, text, key=key),
                installation_id,
                str(task.get("task_id") or ""),
                turn.delivery_id,
            )

    def _audit_task(self, action: str, task: Mapping[str, Any], outcome: str, key: str, **facts: Any) -> None:
        self._audit().record(
            key=key,
            actor=NAME,
            action=action,
            subject=f"task/{task.get('task_id')}",
            outcome=outcome,
            repository=str(task.get("repository") or ""),
            task_id=str(task.get("task_id") or ""),
            **facts,
        )


TRAFFIC_STATES = ("canary", "watching", "succeeded", "rolling_back")
IN_PROGRESS_STATES = ("preflight", "building", "smoke")


def _rollback_target(releases: list[dict[str, Any]], number: int) -> dict[str, Any] | None:
    """Newest first: the PR's own live or in-progress release, else what serves, else what is under way."""
    live = [r for r in releases if r.get("state") in TRAFFIC_STATES or
            (r.get("active") and r.get("state") in IN_PROGRESS_STATES)]
    if number:
        own = next((r for r in live if int(r.get("pull_number") or 0) == number), None)
        if own is not None:
            return own
    serving = next((r for r in live if r.get("state") in TRAFFIC_STATES), None)
    return serving or next(iter(live), None)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _rule(doc: Mapping[str, Any]) -> policies.ApprovalRule:
    return policies.ApprovalRule(
        count=int(doc.get("count") or 1),
        teams=tuple(doc.get("teams") or ()),
        users=tuple(doc.get("users") or ()),
        permission=str(doc.get("permission") or "write"),
    )


def _rule_doc(rule: policies.ApprovalRule) -> dict[str, Any]:
    return {
        "count": rule.count,
        "teams": list(rule.teams),
        "users": list(rule.users),
        "permission": rule.permission,
    }


def _who(rule: policies.ApprovalRule) -> str:
    names = [f"@{chatops.neutralise(u, 60)}" for u in rule.users] + [f"team {t}" for t in rule.teams]
    return ", ".join(names) if names else "a maintainer"
