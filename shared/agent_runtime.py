"""The imperative shell every agent shares: receive a task, act through the executor, report back.

An agent implements `handle(ctx) -> Outcome`. The runner around it:
- checks the task is for this agent, and that nothing stops it (kill switch, agent or repository
  paused, the issue or PR on hold): a stopped task does nothing and is audited as deferred, and the
  orchestrator's sweep retries it once the stop is lifted;
- runs one turn of a task at a time: a delivery that finds another turn of the same task running
  (two events woke it at once) is retried by Pub/Sub a little later, so two turns never both act;
- gives it a `TaskContext`: the task's inputs, its checkpoint and wake, the repository's policy,
  a GitHub client scoped to the agent's own permissions, and `apply()` for every effect (keyed,
  audited, dry-run aware);
- publishes the outcome on `agent-results`. A transient error (GitHub 5xx, a rate limit) is raised
  so Pub/Sub retries; every other error becomes a `failed` result with what failed, after the
  agent's `on_failure` has told the humans, so a task never ends silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from shared import topology
from shared.errors import InvalidInput, PermanentError, RetryableError
from shared.executor import Action, Executor
from shared.messages import AgentTask, AgentTaskResult
from shared.ports import Publisher
from shared.runtime import Envelope

log = logging.getLogger("agentops.agent")

RUNNING, SUCCEEDED, FAILED, WAITING_APPROVAL, BLOCKED = (
    "running", "succeeded", "failed", "waiting_approval", "blocked")
OUTCOME_STATUSES = (RUNNING, SUCCEEDED, FAILED, WAITING_APPROVAL, BLOCKED)
MAX_SUMMARY = 2000
TURN_LEASE = timedelta(minutes=5)  # an agent's ack deadline: a crashed turn's lease ends with it


@dataclass(frozen=True)
class Outcome:
    """What an agent says about a task after one turn.

    `running` with `waits_for` means: wake me when one of these events arrives (see
    `functions.orchestrator.core.wake_keys`); `checkpoint` comes back in the next turn's inputs.
    """

    status: str
    summary: str
    waits_for: tuple[str, ...] = ()
    checkpoint: Mapping[str, Any] | None = None
    cost: Mapping[str, Any] | None = None  # {"units": n, ...}; see shared.task_store.cost_units
    approval: Mapping[str, Any] | None = None  # step, rule, head_sha, pull_number
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in OUTCOME_STATUSES:
            raise ValueError(f"an outcome is one of {OUTCOME_STATUSES}, not {self.status!r}")

    def to_details(self) -> dict[str, Any]:
        details: dict[str, Any] = dict(self.details)
        if self.waits_for:
            details["waits_for"] = list(self.waits_for)
        if self.checkpoint is not None:
            details["checkpoint"] = dict(self.checkpoint)
        if self.cost:
            details["cost"] = dict(self.cost)
        if self.approval:
            details["approval"] = dict(self.approval)
        return details


def running(summary: str, waits_for: tuple[str, ...] | list[str], checkpoint: Mapping[str, Any],
            cost: Mapping[str, Any] | None = None) -> Outcome:
    return Outcome(RUNNING, summary, tuple(waits_for), checkpoint, cost)


class Links:
    """Where a human finds a task and its audit trail: the dashboard, or the CLI commands."""

    def __init__(self, dashboard_url: str = "") -> None:
        self._base = dashboard_url.rstrip("/")

    def task(self, task_id: str, repository: str) -> str:
        if self._base:
            return f"[task `{task_id}`]({self._base}/tasks/{task_id})"
        return f"task `{task_id}` (`agentops tasks --repo {repository}`)"

    def audit(self, task_id: str) -> str:
        if self._base:
            return f"[audit trail]({self._base}/audit?task={task_id})"
        return f"audit trail: `agentops audit show --task {task_id}`"

    def task_url(self, task_id: str) -> str:
        return f"{self._base}/tasks/{task_id}" if self._base.startswith("https://") else ""


class TaskContext:
    """One turn of one task, as its agent sees it. Built by the runner; tests build their own."""

    def __init__(self, task: AgentTask, *, client: Callable[[], Any], executor: Executor,
                 policy: Callable[[], Any], publisher: Callable[[], Publisher], links: Links,
                 delivery_id: str, clock: Callable[[], datetime],
                 client_for: Callable[[int, str], Any] | None = None, dry_run: bool = False) -> None:
        self.task = task
        self.inputs = task.input_values()
        self.checkpoint: dict[str, Any] = dict(self.inputs.get("checkpoint") or {})
        self.wake: dict[str, Any] | None = self.inputs.get("wake")
        self.approval: dict[str, Any] | None = self.inputs.get("approval")
        self.links = links
        self.delivery_id = delivery_id
        self._client_factory = client
        self._client: Any = None
        self._client_for = client_for
        self._executor = executor
        self._policy_factory = policy
        self._policy: Any = None
        self._publisher = publisher
        self._clock = clock
        self._dry_run = bool(dry_run)
        # What the turn has spent so far (LLM tokens): charged even when the turn then fails.
        self.cost: dict[str, Any] = {}

    @property
    def repository(self) -> str:
        return self.task.repository

    @property
    def installation_id(self) -> int:
        return self.task.installation_id

    @property
    def number(self) -> int:
        return int(self.inputs.get("issue_number") or self.inputs.get("pull_number") or 0)

    @property
    def dry_run(self) -> bool:
        """Whether the deployment runs dry (`AGENTOPS_DRY_RUN`): the executor applies no effect, and an
        agent that writes state of its own (Firestore) should not write it as if the effects were made."""
        return self._dry_run

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def client_for(self, installation_id: int, repository: str) -> Any:
        """A client for another installation's repository, for a task that spans them (a tick)."""
        if self._client_for is None:
            raise PermanentError("this task may only act on its own repository")
        return self._client_for(installation_id, repository)

    def policy(self) -> Any:
        """The repository's PolicyLoad, read once per turn (a 304 when unchanged)."""
        if self._policy is None:
            self._policy = self._policy_factory()
        return self._policy

    def now(self) -> datetime:
        return self._clock()

    def apply(self, action: Action, raise_refused: bool = False,
              installation_id: int | None = None) -> dict[str, Any] | None:
        """Apply one effect once: GitHub's answer, or None when it was done before (or dry-run).

        A refusal by GitHub is audited and gives None too, unless `raise_refused`: then it raises
        GitHub's PermanentError, for an effect the task cannot go on without. `installation_id`
        acts in another installation (an installation-wide tick acting on one repository).
        """
        installation = self.installation_id if installation_id is None else installation_id
        return self._executor.apply(action, installation, self.task.task_id, self.delivery_id,
                                    raise_refused=raise_refused)

    def heartbeat(self, summary: str, waits_for: tuple[str, ...] = (),
                  checkpoint: Mapping[str, Any] | None = None) -> None:
        """Say "still working" during a long turn, so the sweep does not take the task for stalled."""
        publish_result(self._publisher(), self.task, Outcome(RUNNING, summary, waits_for, checkpoint),
                       self._clock())

    def key(self, *parts: Any) -> str:
        """An idempotency key for an effect of this task: the same parts, the same key."""
        return ":".join([self.task.agent, self.task.task_id, *(str(part) for part in parts)])


class Agent(Protocol):
    name: str

    def handle(self, ctx: TaskContext) -> Outcome: ...

    def on_failure(self, ctx: TaskContext, summary: str) -> None: ...


def publish_result(publisher: Publisher, task: AgentTask, outcome: Outcome, now: datetime) -> str:
    result = AgentTaskResult(
        task_id=task.task_id,
        agent=task.agent,
        attempt=task.attempt,
        status=outcome.status,
        summary=outcome.summary[:MAX_SUMMARY],
        details=json.dumps(outcome.to_details(), separators=(",", ":"), default=str),
        finished_at=int(now.timestamp() * 1000),
    )
    return publisher.publish(topology.AGENT_RESULTS, result.encode(), result.attributes())


class AgentRunner:
    """The consumer handler for one agent's topic."""

    def __init__(self, agent: Agent, *, publisher: Callable[[], Publisher], tasks: Callable[[], Any],
                 audit: Callable[[], Any], github: Callable[[], Any], policy_for: Callable[[Any, str], Any],
                 links: Links, dry_run: bool = False,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.agent = agent
        self._publisher = publisher
        self._tasks = tasks
        self._audit = audit
        self._github = github  # () -> GitHubApp | None
        self._policy_for = policy_for  # (client, repository) -> PolicyLoad
        self._links = links
        self._clock = clock
        self._dry_run = dry_run
        self._executor = Executor(audit, self._client_for, actor=agent.name, dry_run=dry_run)

    def _client_for(self, installation_id: int, repository: str, task_id: str) -> Any:
        app = self._github()
        return app.client_for(self.agent.name, installation_id, [repository.split("/")[-1]] if repository
                              else [], task_id=task_id, audit=self._audit())

    def __call__(self, envelope: Envelope) -> None:
        task = envelope.message
        if not isinstance(task, AgentTask) or task.agent != self.agent.name:
            raise InvalidInput(f"agent {self.agent.name} received a task for {getattr(task, 'agent', '?')}")
        now = self._clock()
        if self._github() is None:
            publish_result(self._publisher(), task, Outcome(
                BLOCKED, f"the {self.agent.name} agent needs the GitHub App (GITHUB_APP_ID is not set)"), now)
            return
        inputs = task.input_values()
        number = int(inputs.get("issue_number") or inputs.get("pull_number") or 0)
        stopped = self._tasks().stop_reason(task.agent, task.repository, number)
        if stopped:
            # Nothing is done while stopped; the task keeps its place and the sweep retries it.
            self._audit().record(
                key=f"{task.agent}:deferred:{task.task_id}:{task.attempt}:{envelope.message_id}",
                actor=task.agent, action="defer_task", subject=f"task/{task.task_id}", outcome="deferred",
                repository=task.repository, task_id=task.task_id, reason=stopped)
            log.info("task deferred: %s", stopped, extra={"task_id": task.task_id, "outcome": "deferred"})
            return
        if not self._tasks().claim_turn(task.task_id, envelope.message_id, now, TURN_LEASE):
            # Another turn of this task is running (two events woke it): this delivery waits its turn.
            raise RetryableError(f"another turn of task {task.task_id} is running; this one is retried")
        try:
            self._run_turn(task, envelope)
        finally:
            self._tasks().release_turn(task.task_id, envelope.message_id)

    def _run_turn(self, task: AgentTask, envelope: Envelope) -> None:
        ctx = TaskContext(
            task,
            client=lambda: self._client_for(task.installation_id, task.repository, task.task_id),
            executor=self._executor,
            policy=lambda: self._policy_for(ctx.client, task.repository),
            publisher=self._publisher,
            links=self._links,
            delivery_id=envelope.message_id,
            clock=self._clock,
            client_for=lambda installation_id, repository: self._client_for(installation_id, repository,
                                                                             task.task_id),
            dry_run=self._dry_run,
        )
        outcome = self._turn(ctx)
        publish_result(self._publisher(), task, outcome, self._clock())
        log.info("task turn done", extra={"task_id": task.task_id, "outcome": outcome.status})

    def _turn(self, ctx: TaskContext) -> Outcome:
        task = ctx.task
        try:
            outcome = self.agent.handle(ctx)
        except RetryableError:
            raise
        except PermanentError as exc:
            outcome = Outcome(FAILED, f"{task.kind} failed: {exc}", cost=ctx.cost or None)
        except Exception as exc:  # a bug must still end the task with a word, not in silence
            log.exception("agent failed unexpectedly", extra={"task_id": task.task_id, "outcome": "error"})
            outcome = Outcome(FAILED, f"{task.kind} failed: an internal error ({type(exc).__name__}); "
                                      "the logs have the details", cost=ctx.cost or None)
        if outcome.status == FAILED:
            try:
                self.agent.on_failure(ctx, outcome.summary)
            except RetryableError:
                raise
            except Exception:  # the failure result still goes out, and is itself the record
                log.exception("could not report the failure on GitHub", extra={"task_id": task.task_id})
        return outcome
