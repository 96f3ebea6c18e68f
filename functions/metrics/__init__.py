"""Success metrics, pure: DORA's four keys, delivery, the agents' KPIs, split by agent versus human.

`daily_metrics(inputs, window, now)` computes everything for one window (a UTC day for
`metrics/{YYYY-MM-DD}`, a week for the weekly report) from records the shell read; `to_doc()` is the
Firestore document: plain maps, lists, numbers, strings, booleans, None and datetimes, snake_case.
`week_over_week(this, last)` compares two such documents for the weekly report.

The arithmetic lives in `functions.metrics.dora` (DORA, builds, coverage, the shared helpers) and
`functions.metrics.agents` (tasks, pull requests, utilisation, cost). Nothing here does I/O or reads
a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.metrics.agents import (
    KNOWN_AGENTS,
    AgentMetrics,
    PullRequest,
    PullStats,
    Review,
    Spend,
    Task,
    TaskReport,
    TaskStats,
    Transition,
    Utilisation,
    agent_metrics,
    pull_stats,
    review_rounds,
    spend,
    task_from_doc,
    task_report,
    utilisation,
)
from functions.metrics.dora import (
    AGENT,
    BANDS,
    ELITE,
    HIGH,
    HUMAN,
    LOW,
    MEDIUM,
    NO_DATA,
    ActorKind,
    BuildStats,
    ChangeFailureRate,
    CiRun,
    CoverageSample,
    CoverageStats,
    Delivery,
    Deployment,
    Dora,
    DoraReport,
    Frequency,
    Incident,
    LeadTime,
    MetricsInputError,
    TimeToRestore,
    Window,
    actor_kind,
    band_rank,
    build_stats,
    change_failure_band,
    coverage_stats,
    day_window,
    delivery,
    deployment_from_release_doc,
    dora_report,
    four_keys,
    frequency_band,
    incident_from_doc,
    lead_time_band,
    percentile,
    restore_band,
    utc,
    week_window,
)

METRICS = "metrics"  # the collection: metrics/{YYYY-MM-DD}
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MetricsInputs:
    """Everything the shell read for one computation.

    Deployments and incidents should reach back a few weeks before the window, so an incident in the
    window can be attributed to an older deploy and a baseline before the window anchors the coverage
    trend; anything outside the window is otherwise ignored. `first_commits` maps a deployed sha to
    the first commit time of its change.
    """

    deployments: Sequence[Deployment] = ()
    incidents: Sequence[Incident] = ()
    first_commits: Mapping[str, datetime] = field(default_factory=dict)
    tasks: Sequence[Task] = ()
    pull_requests: Sequence[PullRequest] = ()
    ci_runs: Sequence[CiRun] = ()
    coverage: Sequence[CoverageSample] = ()


@dataclass(frozen=True)
class DailyMetrics:
    """The metrics of one window, shaped for `metrics/{date}` (`date`: the window's first UTC day)."""

    date: str
    window: Window
    computed_at: datetime
    dora: DoraReport
    delivery: Delivery
    agents: AgentMetrics

    @property
    def doc_id(self) -> str:
        return self.date

    def to_doc(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "date": self.date,
            "window": {"start": self.window.start, "end": self.window.end, "days": self.window.days},
            "computed_at": self.computed_at,
            "dora": self.dora.to_doc(),
            "delivery": self.delivery.to_doc(),
            "agents": self.agents.to_doc(),
        }


def daily_metrics(inputs: MetricsInputs, window: Window, now: datetime, app_login: str = "",
                  daily_budget: float | None = None, spent: float | None = None,
                  agents: Iterable[str] = KNOWN_AGENTS) -> DailyMetrics:
    """Every metric over `window`, as known at `now`.

    `app_login`: the GitHub App's bot login, so its pull requests and reviews count as the agents'.
    `daily_budget`: the cost units allowed per day (None: no budget); `spent`: the budget counters'
    spend over the window, when the shell has it.
    """
    now = utc(now)
    return DailyMetrics(
        date=window.start.date().isoformat(), window=window, computed_at=now,
        dora=dora_report(inputs.deployments, inputs.incidents, inputs.first_commits, window, now, app_login),
        delivery=delivery(inputs.ci_runs, inputs.coverage, window, now, app_login),
        agents=agent_metrics(inputs.tasks, inputs.pull_requests, window, now, app_login, daily_budget, spent,
                             agents),
    )


# ---- week over week --------------------------------------------------------------------------------

# Fields that describe the window or list items rather than measure anything.
NOT_COMPARED = frozenset({"schema_version", "date", "window", "computed_at", "open_incidents", "latest_at",
                          "last_success_at", "opened_at", "start"})
# Lists of items matched by name between the two weeks.
IDENTITIES = ("repository", "service", "agent")
# Which way is better, by a field's name (a bare `rate` and `deploys` by where they are).
HIGHER_IS_BETTER = frozenset({"per_day", "per_week", "success_rate", "approval_rate", "autonomous_rate",
                              "latest", "change_points", "autonomous"})
LOWER_IS_BETTER = frozenset({"median_seconds", "p90_seconds", "mean_seconds", "open", "skewed", "failed",
                             "first_review_median_seconds", "first_review_p90_seconds",
                             "longest_wait_seconds", "awaiting_first_review", "review_rounds_mean",
                             "cost_per_task", "per_task", "since_last_success_seconds"})


def _direction(path: tuple[str, ...]) -> int:
    """+1 when more is better, -1 when less is, 0 when neither (a count of things measured, say)."""
    leaf = path[-1]
    if leaf == "rate":
        return -1 if "change_failure_rate" in path else 0
    if leaf == "deploys" and "deployment_frequency" in path:
        return 1
    if leaf in LOWER_IS_BETTER:
        return -1
    return 1 if leaf in HIGHER_IS_BETTER else 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(this: Any, last: Any, path: tuple[str, ...]) -> Any:
    if isinstance(this, Mapping) or isinstance(last, Mapping):
        this = this if isinstance(this, Mapping) else {}
        last = last if isinstance(last, Mapping) else {}
        out = {}
        for key in list(this) + [key for key in last if key not in this]:
            if key in NOT_COMPARED:
                continue
            compared = _compare(this.get(key), last.get(key), (*path, str(key)))
            if compared is not None:
                out[str(key)] = compared
        return out
    if isinstance(this, list) or isinstance(last, list):
        return _compare_items(this if isinstance(this, list) else [], last if isinstance(last, list) else [],
                              path)
    if path and path[-1] in ("band", "trend"):
        return _compare_labels(this, last, path[-1])
    if (this is None or _number(this)) and (last is None or _number(last)):
        if this is None and last is None:
            return {"this": None, "last": None, "delta": None, "change": None, "improved": None}
        delta = None if this is None or last is None else this - last
        change = None if delta is None or not last else delta / abs(last)
        direction = _direction(path)
        improved = None if delta is None or direction == 0 or delta == 0 else (delta > 0) == (direction > 0)
        return {"this": this, "last": last, "delta": delta, "change": change, "improved": improved}
    return None  # text and anything else is not a measure


def _compare_labels(this: Any, last: Any, kind: str) -> dict[str, Any]:
    improved = None
    if kind == "band":
        now_rank, then_rank = band_rank(str(this)), band_rank(str(last))
        if now_rank is not None and then_rank is not None and now_rank != then_rank:
            improved = now_rank < then_rank
    return {"this": this, "last": last, "changed": this != last, "improved": improved}


def _identity(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, Mapping):
        return None
    for key in IDENTITIES:
        if key in item:
            return key, str(item[key])
    return None


def _compare_items(this: list[Any], last: list[Any], path: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """Items of a list matched by name; an item only one week has is compared with nothing."""
    named_this = {_identity(item): item for item in this if _identity(item) is not None}
    named_last = {_identity(item): item for item in last if _identity(item) is not None}
    if not named_this and not named_last:
        return None
    out = []
    for identity in list(named_this) + [key for key in named_last if key not in named_this]:
        assert identity is not None
        key, name = identity
        compared = _compare(named_this.get(identity, {}), named_last.get(identity, {}), path)
        out.append({key: name, **compared})
    return out


def week_over_week(this: DailyMetrics | Mapping[str, Any],
                   last: DailyMetrics | Mapping[str, Any] | None) -> dict[str, Any]:
    """This week's metrics against last week's, field by field, in the documents' shape.

    Each number becomes `{this, last, delta, change, improved}`: `delta` is this - last, `change` the
    delta relative to last (None when last is 0 or missing), `improved` whether the delta goes the
    better way (None when it does not move, is missing, or has no better way). A band or trend becomes
    `{this, last, changed, improved}`. Repositories, services and agents are matched by name.
    """
    this_doc = this.to_doc() if isinstance(this, DailyMetrics) else this
    last_doc = last.to_doc() if isinstance(last, DailyMetrics) else (last or {})
    return _compare(this_doc, last_doc, ())


__all__ = [
    "AGENT", "BANDS", "ELITE", "HIGH", "HUMAN", "KNOWN_AGENTS", "LOW", "MEDIUM", "METRICS", "NO_DATA",
    "SCHEMA_VERSION", "ActorKind", "AgentMetrics", "BuildStats", "ChangeFailureRate", "CiRun",
    "CoverageSample", "CoverageStats", "DailyMetrics", "Delivery", "Deployment", "Dora", "DoraReport",
    "Frequency", "Incident", "LeadTime", "MetricsInputError", "MetricsInputs", "PullRequest", "PullStats",
    "Review", "Spend", "Task", "TaskReport", "TaskStats", "TimeToRestore", "Transition", "Utilisation",
    "Window", "actor_kind", "agent_metrics", "band_rank", "build_stats", "change_failure_band",
    "coverage_stats", "daily_metrics", "day_window", "delivery", "deployment_from_release_doc",
    "dora_report", "four_keys", "frequency_band", "incident_from_doc", "lead_time_band", "percentile",
    "pull_stats", "restore_band", "review_rounds", "spend", "task_from_doc", "task_report", "utilisation",
    "week_over_week", "week_window",
]
