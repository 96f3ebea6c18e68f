"""The dashboard's view models: Firestore documents in, plain values for the templates out. Pure.

`overview(snapshot)` shapes one `Snapshot` (what `functions.dashboard.reader` read) into the panels
of the overview page; `task_page` and `audit_page` shape one task and its audit trail. Nothing here
reads a clock, Firestore or the environment, and nothing here escapes text: the templates do that
(autoescape is on for every template), so every value is the text as stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from functions.dashboard.charts import Series, line_chart
from functions.metrics.dora import dig
from functions.orchestrator import lifecycle
from shared import topology

# Task statuses, as `functions.orchestrator.lifecycle` names them (pure, like this module).
OPEN_STATUSES = tuple(status for status in lifecycle.STATES if status not in lifecycle.TERMINAL)
STATUSES = lifecycle.STATES
ENDED_STATUSES = lifecycle.TERMINAL

RECENT_DEPLOYMENTS = 8
RECENT_INCIDENTS = 10
TREND_DAYS = 30
NOTHING = "—"


@dataclass(frozen=True)
class Snapshot:
    """What the reader read, as Firestore documents (dicts); every list may be empty."""

    now: datetime
    agents: Sequence[Mapping[str, Any]] = ()  # agents/{name}
    control: Mapping[str, Any] = field(default_factory=dict)  # control/global
    queue: Sequence[Mapping[str, Any]] = ()  # tasks in an open status
    recent_tasks: Sequence[Mapping[str, Any]] = ()  # tasks updated lately, whatever their status
    active_deployments: Sequence[Mapping[str, Any]] = ()  # deployments with active == True
    recent_deployments: Sequence[Mapping[str, Any]] = ()  # the newest releases, any state
    open_incidents: Sequence[Mapping[str, Any]] = ()  # incidents with closed_at None
    recent_incidents: Sequence[Mapping[str, Any]] = ()  # incidents opened lately
    repos: Sequence[Mapping[str, Any]] = ()  # repos/{owner:name}, with "id" the document id
    metrics: Sequence[Mapping[str, Any]] = ()  # metrics/{date}, any order


# ---- formatting ------------------------------------------------------------------------------------


def _aware(moment: Any) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def duration(seconds: float | None) -> str:
    """A short human duration: 45s, 12m, 3h 5m, 2d 4h; "—" for None."""
    if seconds is None:
        return NOTHING
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def age(moment: Any, now: datetime) -> str:
    at = _aware(moment)
    return duration((now - at).total_seconds()) if at is not None else NOTHING


def when(moment: Any) -> str:
    at = _aware(moment)
    return f"{at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" if at is not None else NOTHING


def percent(value: Any, digits: int = 0) -> str:
    if not _is_number(value):
        return NOTHING
    return f"{float(value) * 100:.{digits}f}%"


def number(value: Any, digits: int = 2) -> str:
    if not _is_number(value):
        return NOTHING
    text = f"{float(value):.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, limit: int = 200) -> str:
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_url(url: Any) -> str:
    """`url` when it is an https (or loopback http) URL, else "": nothing else becomes a link."""
    text = str(url or "")
    if text.startswith("https://") or text.startswith("http://127.0.0.1") or text.startswith("http://localhost"):
        return text if not any(ch in text for ch in "\"'<> \t\r\n") else ""
    return ""


# ---- agents ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRow:
    name: str
    state: str
    paused: bool
    current_task: str
    counts: Mapping[str, int]  # status => tasks, over the open and recent tasks
    done: int
    failed: int
    last_task: str
    last_result: str  # the status of its newest ended task
    last_summary: str
    last_at: str


def _updated(doc: Mapping[str, Any]) -> datetime:
    return (_aware(doc.get("updated_at")) or _aware(doc.get("created_at"))
            or datetime.min.replace(tzinfo=timezone.utc))


def _all_tasks(snapshot: Snapshot) -> list[Mapping[str, Any]]:
    """The open and recent tasks, one per id (the open list's copy wins: it is read together)."""
    seen: dict[str, Mapping[str, Any]] = {}
    for doc in [*snapshot.recent_tasks, *snapshot.queue]:
        seen[str(doc.get("task_id") or id(doc))] = doc
    return list(seen.values())


def agent_rows(snapshot: Snapshot) -> list[AgentRow]:
    docs = {str(doc.get("name") or ""): doc for doc in snapshot.agents if doc.get("name")}
    paused_agents = snapshot.control.get("agents_paused") or {}
    tasks = [task for task in _all_tasks(snapshot) if task.get("agent") != "orchestrator"]
    names = [agent.name for agent in topology.AGENTS]
    names += sorted({*docs, *(str(t.get("agent")) for t in tasks if t.get("agent"))} - set(names)
                    - {"orchestrator"})
    rows = []
    for name in names:
        doc = docs.get(name, {})
        mine = [task for task in tasks if task.get("agent") == name]
        counts = Counter(str(task.get("status") or "") for task in mine)
        ended = sorted((task for task in mine if task.get("status") in ENDED_STATUSES), key=_updated)
        last = ended[-1] if ended else {}
        paused = bool(doc.get("paused")) or name in paused_agents
        state = "paused" if paused else str(doc.get("state") or ("idle" if doc or mine else "not started"))
        rows.append(AgentRow(
            name=name, state=state, paused=paused, current_task=str(doc.get("current_task") or ""),
            counts={status: counts[status] for status in STATUSES if counts[status]},
            done=int(doc.get("done") or 0), failed=int(doc.get("failed") or 0),
            last_task=str(last.get("task_id") or ""), last_result=str(last.get("status") or ""),
            last_summary=_text(dig(last, "result", "summary"), 160), last_at=when(last.get("updated_at")),
        ))
    return rows


# ---- the task queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """What one open task waits on: a reason, events, other tasks, an approval."""

    reason: str = ""
    events: tuple[str, ...] = ()
    tasks: tuple[tuple[str, str], ...] = ()  # (task id, its status or "unknown")
    approval: str = ""

    @property
    def empty(self) -> bool:
        return not (self.reason or self.events or self.tasks or self.approval)


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    status: str
    agent: str
    kind: str
    repository: str
    number: int
    subject: str
    waiting: Waiting
    age: str
    created: str


def _approval_text(task: Mapping[str, Any]) -> str:
    approval = task.get("approval") if isinstance(task.get("approval"), Mapping) else {}
    if not approval or approval.get("state") != "pending":
        return ""
    approvers = [str(item.get("login")) for item in approval.get("approvers") or []
                 if isinstance(item, Mapping) and item.get("login")]
    needed = dig(approval, "rule", "count") or 1
    text = f"{approval.get('step') or 'approval'}: {len(approvers)} of {needed} approval(s)"
    return text + (f" ({', '.join(approvers)})" if approvers else "")


def waiting(task: Mapping[str, Any], statuses: Mapping[str, str]) -> Waiting:
    depends = [str(dep) for dep in task.get("depends_on") or []]
    open_deps = tuple((dep, statuses.get(dep, "unknown")) for dep in depends
                      if statuses.get(dep) != lifecycle.SUCCEEDED)
    return Waiting(reason=_text(task.get("waiting_on"), 300),
                   events=tuple(_text(key, 120) for key in task.get("waits_for") or [])[:10],
                   tasks=open_deps, approval=_approval_text(task))


def task_row(task: Mapping[str, Any], statuses: Mapping[str, str], now: datetime) -> TaskRow:
    number = task.get("number")
    return TaskRow(
        task_id=str(task.get("task_id") or ""), status=str(task.get("status") or ""),
        agent=str(task.get("agent") or ""), kind=str(task.get("kind") or ""),
        repository=str(task.get("repository") or ""), number=number if isinstance(number, int) else 0,
        subject=_text(task.get("subject"), 160), waiting=waiting(task, statuses),
        age=age(task.get("created_at"), now), created=when(task.get("created_at")),
    )


def queue_rows(snapshot: Snapshot) -> list[TaskRow]:
    statuses = {str(t.get("task_id")): str(t.get("status") or "") for t in _all_tasks(snapshot)}
    open_tasks = [task for task in snapshot.queue if task.get("status") in OPEN_STATUSES]
    open_tasks.sort(key=lambda t: (_aware(t.get("created_at")) or snapshot.now, str(t.get("task_id"))))
    return [task_row(task, statuses, snapshot.now) for task in open_tasks]


# ---- deployments -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentRow:
    release_id: str
    repository: str
    service: str
    sha: str
    pull_number: int
    version: str
    state: str
    traffic: int
    held: bool
    reasons: str
    started: str
    age: str
    last_step: str


def deployment_row(doc: Mapping[str, Any], now: datetime) -> DeploymentRow:
    timeline = [entry for entry in doc.get("timeline") or [] if isinstance(entry, Mapping)]
    last = timeline[-1] if timeline else {}
    traffic = doc.get("traffic")
    return DeploymentRow(
        release_id=str(doc.get("id") or ""), repository=str(doc.get("repository") or ""),
        service=str(doc.get("service") or ""), sha=str(doc.get("sha") or "")[:7],
        pull_number=int(doc.get("pull_number") or 0), version=str(doc.get("version") or ""),
        state=str(doc.get("state") or ""), traffic=int(traffic) if _is_number(traffic) else 0,
        held=bool(doc.get("held")), reasons=_text("; ".join(str(r) for r in doc.get("reasons") or []), 200),
        started=when(doc.get("started_at")), age=age(doc.get("started_at"), now),
        last_step=_text(f"{last.get('step') or ''}: {last.get('what') or ''}" if last else "", 160),
    )


def _started(doc: Mapping[str, Any]) -> datetime:
    return (_aware(doc.get("started_at")) or _aware(doc.get("created_at"))
            or datetime.min.replace(tzinfo=timezone.utc))


# ---- incidents -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentRow:
    incident_id: str
    repository: str
    service: str
    kind: str
    opened: str
    age: str
    closed: str
    duration: str
    issue_number: int
    issue_url: str
    release_id: str


def incident_row(doc: Mapping[str, Any], now: datetime) -> IncidentRow:
    closed = _aware(doc.get("closed_at"))
    opened = _aware(doc.get("opened_at"))
    length = (closed - opened).total_seconds() if closed and opened else None
    return IncidentRow(
        incident_id=str(doc.get("incident_id") or ""), repository=str(doc.get("repository") or ""),
        service=str(doc.get("service") or ""), kind=str(doc.get("kind") or ""), opened=when(opened),
        age=age(opened, now), closed=when(closed) if closed else "", duration=duration(length),
        issue_number=int(doc.get("issue_number") or 0), issue_url=safe_url(doc.get("issue_url")),
        release_id=str(doc.get("release_id") or ""),
    )


# ---- repo health -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoRow:
    repository: str
    scanned: bool
    score: int | None
    grade: str  # good / fair / poor, for the colour
    reasons: tuple[str, ...]
    findings_open: int
    by_severity: tuple[tuple[str, int], ...]
    scanned_at: str
    issue_number: int
    paused: bool


SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


def grade(score: int | None) -> str:
    if score is None:
        return "none"
    return "good" if score >= 80 else "fair" if score >= 50 else "poor"


def repo_row(doc: Mapping[str, Any]) -> RepoRow:
    name = str(doc.get("full_name") or str(doc.get("id") or "").replace(":", "/"))
    health = doc.get("health") if isinstance(doc.get("health"), Mapping) else None
    if not health:
        return RepoRow(name, False, None, "none", (), 0, (), NOTHING, 0, bool(doc.get("paused")))
    score = health.get("score")
    score = int(score) if _is_number(score) else None
    severities = health.get("by_severity") if isinstance(health.get("by_severity"), Mapping) else {}
    ordered = [s for s in SEVERITY_ORDER if s in severities] + sorted(set(severities) - set(SEVERITY_ORDER))
    counts = tuple((str(s), int(severities[s])) for s in ordered
                   if _is_number(severities[s]) and severities[s])
    return RepoRow(
        repository=name, scanned=True, score=score, grade=grade(score),
        reasons=tuple(_text(reason, 200) for reason in health.get("reasons") or [])[:8],
        findings_open=int(health.get("findings_open") or 0), by_severity=counts,
        scanned_at=when(health.get("scanned_at")), issue_number=int(health.get("issue_number") or 0),
        paused=bool(doc.get("paused")),
    )


def repo_rows(snapshot: Snapshot) -> list[RepoRow]:
    rows = [repo_row(doc) for doc in snapshot.repos if doc.get("full_name") or doc.get("id")]
    return sorted(rows, key=lambda row: row.repository)


# ---- KPIs and trends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    key: str  # the data-testid
    label: str
    value: str
    band: str = ""
    note: str = ""
    raw: str = ""  # the stored number behind `value`, for machines (data-value); "" when absent


@dataclass(frozen=True)
class Trend:
    key: str
    title: str
    svg: str  # inline SVG, built from numbers and escaped labels only


@dataclass(frozen=True)
class Kpis:
    date: str  # the newest metrics document's date, "" when there is none
    window_days: int
    dora: tuple[Kpi, ...]
    agents: tuple[Kpi, ...]
    trends: tuple[Trend, ...]
    points: int = 0  # how many daily documents the trends draw


def _metrics_sorted(docs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((doc for doc in docs if doc.get("date")), key=lambda doc: str(doc.get("date")))


def deployment_frequency(doc: Mapping[str, Any]) -> Any:
    """The figure the page shows as the deployment frequency: successful deploys per day."""
    return dig(doc, "dora", "all", "deployment_frequency", "per_day")


def change_failure_rate(doc: Mapping[str, Any]) -> Any:
    return dig(doc, "dora", "all", "change_failure_rate", "rate")


def raw(value: Any) -> str:
    return repr(float(value)) if _is_number(value) else ""


def kpis(snapshot: Snapshot) -> Kpis:
    docs = _metrics_sorted(snapshot.metrics)[-TREND_DAYS:]
    if not docs:
        return Kpis("", 0, (), (), ())
    latest = docs[-1]
    dora = dig(latest, "dora", "all") or {}
    frequency = dora.get("deployment_frequency") or {}
    lead = dora.get("lead_time") or {}
    failure = dora.get("change_failure_rate") or {}
    restore = dora.get("time_to_restore") or {}
    tasks = dig(latest, "agents", "tasks", "all") or {}
    cost = dig(latest, "agents", "cost") or {}
    pulls = dig(latest, "agents", "pull_requests") or {}
    days = int(dig(latest, "window", "days") or 1)
    dora_kpis = (
        Kpi("kpi-deployment-frequency", "Deployment frequency", f"{number(frequency.get('per_day'))}/day",
            str(frequency.get("band") or ""), f"{int(frequency.get('deploys') or 0)} deploy(s)",
            raw(frequency.get("per_day"))),
        Kpi("kpi-lead-time", "Lead time (median)", duration(lead.get("median_seconds")),
            str(lead.get("band") or ""), f"{int(lead.get('changes') or 0)} change(s)",
            raw(lead.get("median_seconds"))),
        Kpi("kpi-change-failure-rate", "Change failure rate", percent(failure.get("rate")),
            str(failure.get("band") or ""),
            f"{int(failure.get('failed') or 0)} of {int(failure.get('deploys') or 0)} deploy(s)",
            raw(failure.get("rate"))),
        Kpi("kpi-time-to-restore", "Time to restore (median)", duration(restore.get("median_seconds")),
            str(restore.get("band") or ""), f"{int(restore.get('open') or 0)} open",
            raw(restore.get("median_seconds"))),
    )
    agent_kpis = (
        Kpi("kpi-autonomous-rate", "Autonomous completion", percent(tasks.get("autonomous_rate")),
            note=f"{int(tasks.get('autonomous') or 0)} of {int(tasks.get('ended') or 0)} ended task(s)",
            raw=raw(tasks.get("autonomous_rate"))),
        Kpi("kpi-success-rate", "Task success rate", percent(tasks.get("success_rate")),
            note=f"{int(tasks.get('failed') or 0)} failed, {int(tasks.get('blocked') or 0)} blocked",
            raw=raw(tasks.get("success_rate"))),
        Kpi("kpi-spend", "Spend", f"{number(cost.get('spent'))} units",
            note=("no budget" if cost.get("budget") is None
                  else f"of {number(cost.get('budget'))} ({percent(cost.get('used'))})"),
            raw=raw(cost.get("spent"))),
        Kpi("kpi-approval-rate", "PR approval rate", percent(pulls.get("approval_rate")),
            note=f"{int(pulls.get('merged') or 0)} merged", raw=raw(pulls.get("approval_rate"))),
    )
    labels = [str(doc.get("date"))[5:] for doc in docs]

    def trend(key: str, title: str, values: list[Any], unit: str, scale: float = 1.0) -> Trend:
        numbers = [float(v) * scale if _is_number(v) else None for v in values]
        return Trend(key, title, line_chart(title, labels, [Series(title, numbers)], unit=unit))

    lead_hours = [dig(doc, "dora", "all", "lead_time", "median_seconds") for doc in docs]
    trends = (
        trend("trend-deployment-frequency", "Deployments per day",
              [deployment_frequency(doc) for doc in docs], ""),
        trend("trend-lead-time", "Lead time, median (hours)", lead_hours, "h", 1 / 3600),
        trend("trend-change-failure-rate", "Change failure rate (%)",
              [change_failure_rate(doc) for doc in docs], "%", 100),
        trend("trend-autonomous-rate", "Autonomous completion (%)",
              [dig(doc, "agents", "tasks", "all", "autonomous_rate") for doc in docs], "%", 100),
        trend("trend-spend", "Spend (cost units)",
              [dig(doc, "agents", "cost", "spent") for doc in docs], ""),
    )
    return Kpis(str(latest.get("date")), days, dora_kpis, agent_kpis, trends, len(docs))


# ---- the pages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    generated: str
    paused: bool
    pause_reason: str
    agents: list[AgentRow]
    queue: list[TaskRow]
    active_deployments: list[DeploymentRow]
    recent_deployments: list[DeploymentRow]
    open_incidents: list[IncidentRow]
    recent_incidents: list[IncidentRow]
    repos: list[RepoRow]
    kpis: Kpis

    @property
    def empty(self) -> bool:
        return not (self.queue or self.active_deployments or self.recent_deployments or self.open_incidents
                    or self.recent_incidents or self.repos or self.kpis.date
                    or any(row.counts or row.done or row.failed for row in self.agents))


def overview(snapshot: Snapshot) -> Overview:
    now = snapshot.now
    active_ids = {str(doc.get("id")) for doc in snapshot.active_deployments}
    active = sorted(snapshot.active_deployments, key=_started, reverse=True)
    recent = sorted((doc for doc in snapshot.recent_deployments if str(doc.get("id")) not in active_ids),
                    key=_started, reverse=True)[:RECENT_DEPLOYMENTS]
    open_ids = {str(doc.get("incident_id")) for doc in snapshot.open_incidents}
    opened = sorted(snapshot.open_incidents, key=lambda d: _aware(d.get("opened_at")) or now)
    closed = sorted((doc for doc in snapshot.recent_incidents
                     if str(doc.get("incident_id")) not in open_ids and doc.get("closed_at") is not None),
                    key=lambda d: _aware(d.get("opened_at")) or now, reverse=True)[:RECENT_INCIDENTS]
    control = snapshot.control
    return Overview(
        generated=when(now), paused=bool(control.get("paused")),
        pause_reason=_text(", ".join(str(p) for p in (control.get("paused_by"), control.get("pause_reason"))
                                     if p), 200),
        agents=agent_rows(snapshot), queue=queue_rows(snapshot),
        active_deployments=[deployment_row(doc, now) for doc in active],
        recent_deployments=[deployment_row(doc, now) for doc in recent],
        open_incidents=[incident_row(doc, now) for doc in opened],
        recent_incidents=[incident_row(doc, now) for doc in closed],
        repos=repo_rows(snapshot), kpis=kpis(snapshot),
    )


@dataclass(frozen=True)
class HistoryRow:
    at: str
    source: str
    target: str
    actor: str
    reason: str


@dataclass(frozen=True)
class TaskPage:
    found: bool
    task_id: str
    row: TaskRow | None = None
    attempt: int = 0
    retries: int = 0
    cost_units: str = NOTHING
    result_status: str = ""
    result_summary: str = ""
    progress: str = ""
    history: tuple[HistoryRow, ...] = ()
    dependencies: tuple[tuple[str, str], ...] = ()  # every dependency: (id, status)
    dependents: tuple[tuple[str, str], ...] = ()  # tasks that wait on this one: (id, status)


def task_page(task_id: str, task: Mapping[str, Any] | None, related: Sequence[Mapping[str, Any]],
              now: datetime) -> TaskPage:
    """One task; `related`: its dependencies and the tasks that depend on it, as read."""
    if not task:
        return TaskPage(False, task_id)
    statuses = {str(doc.get("task_id")): str(doc.get("status") or "") for doc in related}
    history = tuple(HistoryRow(when(entry.get("at")), str(entry.get("from") or ""),
                               str(entry.get("to") or ""), str(entry.get("actor") or ""),
                               _text(entry.get("reason"), 300))
                    for entry in task.get("history") or [] if isinstance(entry, Mapping))
    depends = [str(dep) for dep in task.get("depends_on") or []]
    dependents = tuple((str(doc.get("task_id")), str(doc.get("status") or "")) for doc in related
                       if task_id in (doc.get("depends_on") or []))
    result = task.get("result") if isinstance(task.get("result"), Mapping) else {}
    return TaskPage(
        found=True, task_id=task_id, row=task_row(task, statuses, now), attempt=int(task.get("attempt") or 1),
        retries=int(task.get("retries") or 0), cost_units=number(task.get("cost_units") or 0.0),
        result_status=str(result.get("status") or ""), result_summary=_text(result.get("summary"), 2000),
        progress=_text(task.get("progress"), 500), history=history,
        dependencies=tuple((dep, statuses.get(dep, "unknown")) for dep in depends), dependents=dependents,
    )


@dataclass(frozen=True)
class AuditRow:
    at: str
    actor: str
    action: str
    subject: str
    outcome: str
    chain: str
    seq: int
    link: str


@dataclass(frozen=True)
class AuditPage:
    task_id: str
    rows: tuple[AuditRow, ...]


def audit_page(task_id: str, records: Sequence[Mapping[str, Any]]) -> AuditPage:
    return AuditPage(task_id, tuple(
        AuditRow(when(record.get("at")), str(record.get("actor") or ""), str(record.get("action") or ""),
                 _text(record.get("subject"), 200), _text(record.get("outcome"), 200),
                 str(record.get("chain") or ""), int(record.get("seq") or 0), safe_url(record.get("link")))
        for record in records))
