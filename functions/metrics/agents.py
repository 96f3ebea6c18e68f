"""The agents' figures, as pure arithmetic over tasks and pull requests.

Nothing here reads a clock or Firestore: the shell fills `Task` (`task_from_doc` maps a `tasks/{id}`
document) and `PullRequest` (from GitHub's pulls and reviews), and passes a `Window` and `now` in.
Facts stamped after `now` have not happened yet, as in `functions.metrics.dora`.

- *Autonomous completion rate*: of the tasks whose run ended in the window (their status at the
  window's end is terminal, reached in the window), those that succeeded with no human intervention:
  no human actor in their history up to that end (a `/retry`, a `/cancel`, an approval grant, an
  operator's move) and no approvers. `succeeded = autonomous + assisted`.
- *Approval rate of pull requests*: of the PRs resolved (merged or closed) in the window, those with an
  approving review by a human (not a bot, not the author) before they were resolved. The figure the
  issue asks for is the agent's (`by_actor["agent"]`); the humans' PRs are the comparison.
- *Time to first human review*: over the PRs whose first human review came in the window, the time
  from opening to it; PRs still waiting at the window's end are counted with the longest wait.
- *Review rounds*: a PR's changes-requested cycles, the distinct heads (`commit_id`) on which a human
  requested changes (a review without a commit id is a round of its own), over the resolved PRs.
- *Utilisation*: per agent, the time at least one of its tasks was active (dispatched or running)
  within the window, over the window; `task_seconds` adds the tasks' active times up (concurrency).
- *Cost*: the cost units of the tasks that ended in the window, per task, and spend against a budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.metrics.dora import (
    ACTOR_KINDS,
    HUMAN,
    Window,
    actor_kind,
    check_number,
    is_bot,
    maybe_utc,
    median,
    percentile,
    plain,
    ratio,
    utc,
)
from functions.orchestrator import lifecycle
from shared import topology

TERMINAL = lifecycle.TERMINAL
ACTIVE = lifecycle.ACTIVE
APPROVED = "APPROVED"
CHANGES_REQUESTED = "CHANGES_REQUESTED"
NOT_A_REVIEW = frozenset({"PENDING", ""})  # a draft review nobody has seen yet
KNOWN_AGENTS: tuple[str, ...] = tuple(agent.name for agent in topology.AGENTS)


# ---- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One entry of a task's history (`lifecycle.history_entry`): `source` and `target` are its from/to."""

    at: datetime
    source: str
    target: str
    actor: str
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", utc(self.at))


@dataclass(frozen=True)
class Task:
    """A task (`tasks/{id}`): its history in the order it was written, its cost and who approved it."""

    task_id: str
    agent: str
    kind: str
    repository: str
    history: tuple[Transition, ...]
    cost_units: float = 0.0
    approvers: tuple[str, ...] = ()  # the logins counted for, or given on, an approval

    def __post_init__(self) -> None:
        object.__setattr__(self, "history", tuple(self.history))
        object.__setattr__(self, "approvers", tuple(self.approvers))
        object.__setattr__(self, "cost_units", check_number(self.cost_units, f"task {self.task_id}'s cost"))


def task_from_doc(doc: Mapping[str, Any]) -> Task:
    """A `tasks/{id}` document (`shared.task_store._new_task` and the transitions after it) as a Task."""
    history = tuple(
        Transition(entry["at"], str(entry.get("from") or ""), str(entry.get("to") or ""),
                   str(entry.get("actor") or ""), str(entry.get("reason") or ""))
        for entry in doc.get("history") or []
        if isinstance(entry, Mapping) and isinstance(entry.get("at"), datetime))
    approval = doc.get("approval") if isinstance(doc.get("approval"), Mapping) else {}
    approvers = [str(login) for login in approval.get("counted") or []]
    approvers += [str(item.get("login")) for item in approval.get("approvers") or []
                  if isinstance(item, Mapping) and item.get("login")]
    return Task(str(doc.get("task_id") or ""), str(doc.get("agent") or ""), str(doc.get("kind") or ""),
                str(doc.get("repository") or ""), history, float(doc.get("cost_units") or 0.0),
                tuple(dict.fromkeys(approvers)))


@dataclass(frozen=True)
class Review:
    """A pull request review as GitHub's reviews API gives it (`user.login`, `state`, `submitted_at`)."""

    reviewer: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
    submitted_at: datetime
    commit_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "submitted_at", utc(self.submitted_at))
        object.__setattr__(self, "state", self.state.upper())


@dataclass(frozen=True)
class PullRequest:
    repository: str
    number: int
    author: str  # the App's login (or "code") for the code agent's pull requests
    opened_at: datetime
    reviews: tuple[Review, ...] = ()
    merged_at: datetime | None = None
    closed_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "opened_at", utc(self.opened_at))
        object.__setattr__(self, "merged_at", maybe_utc(self.merged_at))
        object.__setattr__(self, "closed_at", maybe_utc(self.closed_at))
        object.__setattr__(self, "reviews", tuple(self.reviews))

    @property
    def resolved_at(self) -> datetime | None:
        return self.merged_at or self.closed_at


# ---- tasks -----------------------------------------------------------------------------------------


def _human(actor: str, app_login: str) -> bool:
    return actor_kind(actor, app_login) == HUMAN


def run_end(task: Task, span: Window) -> Transition | None:
    """The entry that ended the task's run in `span`: its last entry before the span's end, if that
    reached a terminal state inside the span; None for a task still going or ended before."""
    last = None
    for entry in task.history:
        if entry.at < span.end:
            last = entry
    if last is None or last.target not in TERMINAL or last.at < span.start:
        return None
    return last


def human_touched(task: Task, until: datetime, app_login: str = "") -> bool:
    """Whether a human intervened in the task up to `until`: an entry by a human, a /retry, approvers."""
    if task.approvers:
        return True
    return any(entry.at <= until and (_human(entry.actor, app_login) or entry.reason.startswith("/retry"))
               for entry in task.history)


@dataclass(frozen=True)
class TaskStats:
    ended: int
    succeeded: int
    autonomous: int  # succeeded with no human intervention
    assisted: int  # succeeded with a human's help
    failed: int
    cancelled: int
    blocked: int
    autonomous_rate: float | None  # autonomous / ended
    success_rate: float | None  # succeeded / ended
    cost_units: float
    cost_per_task: float | None


@dataclass(frozen=True)
class AgentTasks:
    agent: str
    tasks: TaskStats


@dataclass(frozen=True)
class TaskReport:
    all: TaskStats
    by_agent: tuple[AgentTasks, ...] = ()


def _task_stats(ended: Sequence[tuple[Task, Transition, bool]]) -> TaskStats:
    outcomes = [entry.target for _, entry, _ in ended]
    succeeded = outcomes.count(lifecycle.SUCCEEDED)
    autonomous = sum(1 for _, entry, touched in ended
                     if entry.target == lifecycle.SUCCEEDED and not touched)
    cost = sum(task.cost_units for task, _, _ in ended)
    return TaskStats(len(ended), succeeded, autonomous, succeeded - autonomous,
                     outcomes.count(lifecycle.FAILED), outcomes.count(lifecycle.CANCELLED),
                     outcomes.count(lifecycle.BLOCKED), ratio(autonomous, len(ended)),
                     ratio(succeeded, len(ended)), cost, ratio(cost, len(ended)))


def _ended(tasks: Iterable[Task], span: Window, app_login: str) -> list[tuple[Task, Transition, bool]]:
    out = []
    for task in tasks:
        end = run_end(task, span)
        if end is not None:
            out.append((task, end, human_touched(task, end.at, app_login)))
    return out


# The scheduler's routine ticks: a minute's probe, a four-hourly scan. Counted per agent (they are the
# monitor's and the scout's work), but not in the overall figures: 1,440 probes a day would make any
# autonomous completion rate read 99%, whatever the agents did with the issues and pull requests.
ROUTINE_KINDS = frozenset({"probe_production", "scan_repos"})


def task_report(tasks: Iterable[Task], window: Window, now: datetime, app_login: str = "") -> TaskReport:
    """Tasks that ended in the window: over all agents (the routine ticks left out) and per agent
    (sorted by name, each with all its tasks)."""
    ended = _ended(tasks, window.until(now), app_login)
    agents = sorted({task.agent for task, _, _ in ended})
    work = [item for item in ended if item[0].kind not in ROUTINE_KINDS]
    return TaskReport(_task_stats(work), tuple(
        AgentTasks(agent, _task_stats([item for item in ended if item[0].agent == agent]))
        for agent in agents))


# ---- utilisation -----------------------------------------------------------------------------------


def active_intervals(task: Task, span: Window) -> list[tuple[datetime, datetime]]:
    """The times the task was dispatched or running, clipped to `span`; still active runs to its end.

    An entry written earlier than the one before it (a clock skew) cannot make an interval negative:
    such an interval is empty and dropped.
    """
    out, since = [], None
    for entry in task.history:
        if entry.at >= span.end:
            break
        if entry.target in ACTIVE and since is None:
            since = entry.at
        elif entry.target not in ACTIVE and since is not None:
            out.append((since, entry.at))
            since = None
    if since is not None:
        out.append((since, span.end))
    clipped = [(max(start, span.start), min(end, span.end)) for start, end in out]
    return [(start, end) for start, end in clipped if end > start]


def _union_seconds(intervals: Iterable[tuple[datetime, datetime]]) -> float:
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += (end - start).total_seconds()
            reach = end
        elif end > reach:
            total += (end - reach).total_seconds()
            reach = end
    return total


@dataclass(frozen=True)
class Utilisation:
    agent: str
    busy_seconds: float  # at least one task active
    task_seconds: float  # the tasks' active times added up
    window_seconds: float
    utilisation: float  # busy / window, 0 to 1
    tasks: int  # tasks active at some time in the window


def utilisation(tasks: Iterable[Task], window: Window, now: datetime,
                agents: Iterable[str] = KNOWN_AGENTS) -> tuple[Utilisation, ...]:
    """Per agent (every one of `agents`, idle ones at 0, and any other with tasks), sorted by name."""
    span = window.until(now)
    intervals: dict[str, list[list[tuple[datetime, datetime]]]] = {agent: [] for agent in agents}
    for task in tasks:
        found = active_intervals(task, span)
        if found:
            intervals.setdefault(task.agent, []).append(found)
    out = []
    for agent in sorted(intervals):
        runs = intervals[agent]
        flat = [interval for run in runs for interval in run]
        busy = _union_seconds(flat)
        out.append(Utilisation(agent, busy, sum((end - start).total_seconds() for start, end in flat),
                               span.seconds, busy / span.seconds, len(runs)))
    return tuple(out)


# ---- cost ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentCost:
    agent: str
    tasks: int
    cost_units: float
    per_task: float | None


@dataclass(frozen=True)
class Spend:
    tasks: int
    cost_units: float  # of the tasks that ended in the window
    per_task: float | None
    spent: float  # against the budget: the usage records' figure when given, else cost_units
    budget: float | None  # None: no budget
    remaining: float | None
    used: float | None  # spent / budget; None without a budget or with a zero one
    over: bool | None
    by_agent: tuple[AgentCost, ...] = ()


def spend(tasks: Iterable[Task], window: Window, now: datetime, daily_budget: float | None = None,
          spent: float | None = None) -> Spend:
    """Cost per task and spend against `daily_budget` times the window's days.

    `spent`: what the budget counters recorded for the window (`control/usage-{day}` docs' `cost`),
    which also holds the cost of tasks still running; without it the ended tasks' cost is the spend.
    A zero budget allows nothing: any spend is over it, and `used` is None.
    """
    span = window.until(now)
    ended = [task for task, _, _ in _ended(tasks, span, "")]
    cost = sum(task.cost_units for task in ended)
    total = cost if spent is None else check_number(spent, "the spend")
    budget = None if daily_budget is None else check_number(daily_budget, "the daily budget") * span.days
    by_agent = []
    for agent in sorted({task.agent for task in ended}):
        mine = [task for task in ended if task.agent == agent]
        units = sum(task.cost_units for task in mine)
        by_agent.append(AgentCost(agent, len(mine), units, ratio(units, len(mine))))
    return Spend(len(ended), cost, ratio(cost, len(ended)), total, budget,
                 None if budget is None else budget - total,
                 None if not budget else total / budget,
                 None if budget is None else total > budget, tuple(by_agent))


# ---- pull requests ---------------------------------------------------------------------------------


def human_reviews(pull: PullRequest, app_login: str = "", until: datetime | None = None) -> list[Review]:
    """The reviews a human gave (not the App, no bot, not the author), oldest first."""
    reviews = [review for review in pull.reviews if review.state not in NOT_A_REVIEW
               and _human(review.reviewer, app_login) and not is_bot(review.reviewer)
               and review.reviewer.lower() != pull.author.lower()
               and (until is None or review.submitted_at <= until)]
    return sorted(reviews, key=lambda review: review.submitted_at)


def review_rounds(pull: PullRequest, app_login: str = "", until: datetime | None = None) -> int:
    """Changes-requested cycles: distinct heads a human requested changes on."""
    heads, rounds = set(), 0
    for review in human_reviews(pull, app_login, until):
        if review.state != CHANGES_REQUESTED:
            continue
        if not review.commit_id:
            rounds += 1
        elif review.commit_id not in heads:
            heads.add(review.commit_id)
            rounds += 1
    return rounds


@dataclass(frozen=True)
class PullStats:
    opened: int
    resolved: int
    merged: int
    approved: int  # resolved with a human approval
    approval_rate: float | None  # approved / resolved
    first_reviews: int  # PRs whose first human review came in the window
    first_review_median_seconds: float | None
    first_review_p90_seconds: float | None
    awaiting_first_review: int  # open at the window's end with no human review yet
    longest_wait_seconds: float | None
    review_rounds: int  # changes-requested cycles over the resolved PRs
    review_rounds_mean: float | None
    review_rounds_max: int
    skewed: int = 0  # a review or resolution before the PR opened: excluded
    by_actor: Mapping[str, PullStats] = field(default_factory=dict)


def _pull_stats(pulls: Sequence[PullRequest], span: Window, app_login: str, split: bool) -> PullStats:
    opened = sum(1 for pull in pulls if pull.opened_at in span)
    resolved, approved, merged, rounds, waits, awaiting, skewed = 0, 0, 0, [], [], [], 0
    for pull in pulls:
        if pull.opened_at >= span.end:
            continue
        end = pull.resolved_at
        reviews = [review for review in human_reviews(pull, app_login) if review.submitted_at < span.end]
        if end is not None and end in span:
            if end < pull.opened_at:
                skewed += 1
                continue
            resolved += 1
            merged += pull.merged_at is not None
            approved += any(review.state == APPROVED and review.submitted_at <= end for review in reviews)
            rounds.append(review_rounds(pull, app_login, until=end))
        if reviews and reviews[0].submitted_at in span:
            wait = (reviews[0].submitted_at - pull.opened_at).total_seconds()
            if wait < 0:
                skewed += 1
            else:
                waits.append(wait)
        elif not reviews and (end is None or end >= span.end):
            awaiting.append((span.end - pull.opened_at).total_seconds())
    by_actor = {kind: _pull_stats([pull for pull in pulls if actor_kind(pull.author, app_login) == kind],
                                  span, app_login, False)
                for kind in ACTOR_KINDS} if split else {}
    return PullStats(opened, resolved, merged, approved, ratio(approved, resolved), len(waits), median(waits),
                     percentile(waits, 90), len(awaiting), max(awaiting) if awaiting else None, sum(rounds),
                     ratio(sum(rounds), len(rounds)), max(rounds, default=0), skewed, by_actor)


def pull_stats(pulls: Iterable[PullRequest], window: Window, now: datetime, app_login: str = "") -> PullStats:
    """Review figures over every PR, split by author kind: `by_actor["agent"]` is the code agent's."""
    return _pull_stats(list(pulls), window.until(now), app_login, True)


# ---- all of it -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentMetrics:
    tasks: TaskReport
    pull_requests: PullStats
    utilisation: tuple[Utilisation, ...]
    cost: Spend

    def to_doc(self) -> dict[str, Any]:
        return plain(self)


def agent_metrics(tasks: Iterable[Task], pulls: Iterable[PullRequest], window: Window, now: datetime,
                  app_login: str = "", daily_budget: float | None = None, spent: float | None = None,
                  agents: Iterable[str] = KNOWN_AGENTS) -> AgentMetrics:
    tasks = list(tasks)
    return AgentMetrics(task_report(tasks, window, now, app_login),
                        pull_stats(pulls, window, now, app_login), utilisation(tasks, window, now, agents),
                        spend(tasks, window, now, daily_budget, spent))
