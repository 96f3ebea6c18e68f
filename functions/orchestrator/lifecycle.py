"""A task's life, as pure decisions: which transitions are allowed, and whether a task may go now.

A task goes `queued -> dispatched -> running -> waiting_approval -> succeeded | failed | cancelled
| blocked`. The store applies these decisions inside one Firestore transaction, so two deliveries
racing for the same task see the same facts and only one of them dispatches.

Nothing here reads a clock, the environment or Firestore: the shell gathers `GateFacts` and passes
`now` in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.errors import PermanentError

QUEUED = "queued"
DISPATCHED = "dispatched"
RUNNING = "running"
WAITING_APPROVAL = "waiting_approval"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
BLOCKED = "blocked"

STATES = (QUEUED, DISPATCHED, RUNNING, WAITING_APPROVAL, SUCCEEDED, FAILED, CANCELLED, BLOCKED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, BLOCKED})
ACTIVE = frozenset({DISPATCHED, RUNNING})  # holding a concurrency slot and counted as busy

# Every allowed move. A stalled or retried task goes back to queued with a new attempt; an approved
# one goes back to queued to be dispatched past its gate; only a human's /retry revives a terminal one.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({DISPATCHED, WAITING_APPROVAL, CANCELLED, BLOCKED}),
    DISPATCHED: frozenset({RUNNING, WAITING_APPROVAL, SUCCEEDED, FAILED, CANCELLED, BLOCKED, QUEUED}),
    RUNNING: frozenset({WAITING_APPROVAL, SUCCEEDED, FAILED, CANCELLED, BLOCKED, QUEUED}),
    WAITING_APPROVAL: frozenset({QUEUED, CANCELLED, BLOCKED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED}),
    BLOCKED: frozenset({QUEUED}),
}


class InvalidTransition(PermanentError):
    pass


def allowed(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check_transition(task_id: str, current: str, target: str) -> None:
    if not allowed(current, target):
        raise InvalidTransition(f"task {task_id} cannot go from {current or 'nothing'} to {target}")


def history_entry(now: datetime, current: str, target: str, reason: str, actor: str) -> dict[str, Any]:
    return {"at": now, "from": current, "to": target, "reason": reason[:500], "actor": actor}


# Which named step a task kind must have approved before it is dispatched, when the repo's policy
# configures an approval rule for that step. Agents ask for the other steps (merge of an agent PR,
# a change to a protected path) themselves by reporting `waiting_approval` with the step's name.
PRE_DISPATCH_STEP: Mapping[str, str] = {"deploy_merge": "deploy"}

# Concurrency slots: which agents are limited, and what they are limited per.
SLOT_SCOPE: Mapping[str, str] = {"code": "repo", "deploy": "service"}


def slot_key(agent: str, repository: str, service: str | None) -> str:
    """The concurrency slot a task takes, or "" when its agent is not limited."""
    scope = SLOT_SCOPE.get(agent)
    if scope == "service":
        return f"deploy:{service or repository}"
    if scope == "repo" and repository:
        return f"{agent}:{repository}"
    return ""


# ---- budgets ---------------------------------------------------------------------------------


def budget_day(now: datetime) -> str:
    """Budgets are per UTC day; the day's key is its date."""
    return f"{now:%Y-%m-%d}"


def next_reset(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


@dataclass(frozen=True)
class Usage:
    """One budget's use on one day: tasks dispatched and cost units reported."""

    day: str = ""
    tasks: int = 0
    cost: float = 0.0

    @classmethod
    def from_doc(cls, value: Any) -> Usage:
        if not isinstance(value, Mapping):
            return cls()
        return cls(str(value.get("day") or ""), int(value.get("tasks") or 0), float(value.get("cost") or 0.0))

    def on(self, day: str) -> Usage:
        """This usage as seen on `day`: a new day starts from zero, which is the daily reset."""
        return self if self.day == day else Usage(day)

    def plus(self, tasks: int = 0, cost: float = 0.0) -> Usage:
        """Add (or give back) use; never below zero, as when a give-back crosses midnight."""
        return Usage(self.day, max(self.tasks + tasks, 0), max(self.cost + cost, 0.0))

    def to_doc(self) -> dict[str, Any]:
        return {"day": self.day, "tasks": self.tasks, "cost": self.cost}


def over_budget(scope: str, usage: Usage, daily_tasks: int | None, daily_cost: float | None) -> str:
    """Why one more task would exceed the budget, or "" when it fits."""
    if daily_tasks is not None and usage.tasks >= daily_tasks:
        return f"{scope} budget spent: {usage.tasks} of {daily_tasks} tasks today"
    if daily_cost is not None and usage.cost >= daily_cost:
        return f"{scope} budget spent: {usage.cost:g} of {daily_cost:g} cost units today"
    return ""


# ---- the dispatch gate -----------------------------------------------------------------------


@dataclass(frozen=True)
class GateFacts:
    """Everything the gate needs to know, read in the dispatch transaction."""

    agent: str
    repository: str
    kind: str
    number: int = 0  # the issue or pull request the task is about, 0 for none
    agent_enabled: bool = True
    disabled_reason: str = ""
    global_paused: bool = False
    global_pause_reason: str = ""
    agent_paused: bool = False
    repo_paused: bool = False
    repo_pause_reason: str = ""
    held_by: str = ""
    dependencies: Mapping[str, str] = field(default_factory=dict)  # task id -> its status ("" missing)
    slot: str = ""
    slot_holders: tuple[str, ...] = ()
    slot_limit: int | None = None
    repo_usage: Usage = Usage()
    repo_daily_tasks: int | None = None
    repo_daily_cost: float | None = None
    global_usage: Usage = Usage()
    global_daily_tasks: int | None = None
    global_daily_cost: float | None = None
    approval_step: str = ""  # a step this task must have approved before it goes
    approved: bool = False
    exempt_from_pause: bool = False  # the orchestrator's own jobs (sweeps) run while agents are paused
    policy_unavailable: str = ""  # why the repo's policy could not be read, so nothing can be decided


@dataclass(frozen=True)
class Gate:
    outcome: str  # "dispatch" | "wait" | "approval" | "block"
    reason: str = ""

    @property
    def dispatch(self) -> bool:
        return self.outcome == "dispatch"


def gate(facts: GateFacts, task_id: str, now: datetime) -> Gate:
    """May this queued task be dispatched now? If not, why, in words a person can act on."""
    if facts.policy_unavailable:
        return Gate("wait", facts.policy_unavailable)
    if not facts.agent_enabled:
        return Gate("block", facts.disabled_reason or f"the {facts.agent} agent is off for this repository")
    if facts.global_paused and not facts.exempt_from_pause:
        return Gate("wait", f"all agents are paused{_because(facts.global_pause_reason)}")
    if facts.agent_paused:
        return Gate("wait", f"the {facts.agent} agent is paused")
    if facts.repo_paused:
        return Gate("wait", f"agents are paused in {facts.repository}{_because(facts.repo_pause_reason)}")
    if facts.held_by:
        return Gate("wait", f"on hold by {facts.held_by}")
    # An ended dependency blocks even when another one sorts first and is still running.
    for dependency, status in sorted(facts.dependencies.items()):
        if status in (FAILED, CANCELLED, BLOCKED):
            return Gate("block", f"dependency {dependency} ended {status}")
    for dependency, status in sorted(facts.dependencies.items()):
        if status != SUCCEEDED:
            return Gate("wait", f"waiting for dependency {dependency} ({status or 'not created yet'})")
    if facts.approval_step and not facts.approved:
        return Gate("approval", f"{facts.approval_step} needs approval")
    if facts.slot and facts.slot_limit is not None:
        others = [holder for holder in facts.slot_holders if holder != task_id]
        if len(others) >= facts.slot_limit:
            running = ", ".join(others)
            return Gate("wait", f"{facts.slot} is at its limit of {facts.slot_limit}: running {running}")
    if facts.repository:  # installation-wide ticks are not charged to a repository's budget
        day = budget_day(now)
        reason = (over_budget(f"{facts.repository} daily", facts.repo_usage.on(day),
                              facts.repo_daily_tasks, facts.repo_daily_cost)
                  or over_budget("global daily", facts.global_usage.on(day),
                                 facts.global_daily_tasks, facts.global_daily_cost))
        if reason:
            return Gate("wait", f"{reason}; resets at {next_reset(now):%Y-%m-%d %H:%M} UTC")
    return Gate("dispatch")


def _because(reason: str) -> str:
    return f": {reason}" if reason else ""


# ---- stalls ----------------------------------------------------------------------------------

DEFAULT_DEADLINES: Mapping[str, timedelta] = {
    "implement_issue": timedelta(hours=2),
    "test_pull_request": timedelta(hours=2),
    "review_pull_request": timedelta(hours=1),
    "deploy_merge": timedelta(hours=3),
    "scan_repos": timedelta(hours=1),
    "probe_production": timedelta(minutes=10),
}
DEFAULT_DEADLINE = timedelta(hours=1)


def deadline_for(kind: str, dispatched_at: datetime) -> datetime:
    return dispatched_at + DEFAULT_DEADLINES.get(kind, DEFAULT_DEADLINE)


def stall_reason(task: Mapping[str, Any], now: datetime, heartbeat: timedelta) -> str:
    """Why an active task counts as stalled, or "" when it is alive.

    A task waiting on an external event (CI, a workflow run) is alive until its deadline; one that
    is working must also beat its heartbeat.
    """
    if task.get("status") not in ACTIVE:
        return ""
    deadline = task.get("deadline_at")
    if isinstance(deadline, datetime) and now >= deadline:
        return f"past its deadline of {deadline:%Y-%m-%d %H:%M} UTC"
    if task.get("waits_for"):
        return ""
    last = task.get("heartbeat_at") or task.get("dispatched_at")
    if isinstance(last, datetime) and now - last >= heartbeat:
        minutes = int((now - last).total_seconds() // 60)
        return f"no heartbeat from the {task.get('agent')} agent for {minutes} min"
    return ""


def needs_recheck(task: Mapping[str, Any], now: datetime, interval: timedelta) -> bool:
    """Whether a task waiting on an event has waited `interval` since its agent last spoke.

    The sweep then wakes it once, so an event that arrived before the wait was recorded is not lost.
    """
    if task.get("status") not in ACTIVE or not task.get("waits_for"):
        return False
    last = task.get("heartbeat_at") or task.get("dispatched_at")
    return isinstance(last, datetime) and now - last >= interval


def after_stall(retries: int, max_attempts: int) -> str:
    """"retry" while attempts remain, else "escalate" to a human."""
    return "retry" if retries + 1 < max_attempts else "escalate"
