"""The weekly report, rendered: GitHub Markdown for the report issue, and one static HTML file. Pure.

The shell gathers a `WeeklyInputs` (this week's and last week's metrics documents, `metrics.daily_metrics`
over `week_window(monday)`, `.to_doc()`; the week's releases, incidents, the top findings and, if it
has them, a few examples of what each agent did) and calls:

- `weekly_markdown(inputs, repo_link_base)`: the body of the report issue, under `MAX_BODY_CHARS`
  (an issue body may hold 65,536 characters). Its first line is `report_marker(week)`, a hidden
  comment naming the week, so the shell can find last week's (or this week's, to update it instead of
  posting twice) report issue: `report_week(body)` reads it back. Title: `report_title(week)`.
- `weekly_html(inputs, repo_link_base)`: the same report as one self-contained HTML page (no script,
  no external resource, a restrictive Content-Security-Policy; charts as inline SVG).

Both are rendered from one small document model, so they say the same thing:

1. **Summary**: the headline metrics with last week's values, the change and whether it is better or
   worse. Which way is better comes from `metrics.week_over_week` (lower lead time is better, more
   deploys are better, a count of tasks is neither). A week without last week's document shows "—".
2. **DORA by repository**: each repository (and its services) with its four keys' bands, and a band
   that moved says from where; then builds and coverage per repository.
3. **Incidents**: opened, closed, still open (with its age), the mean and median time to restore of
   those closed in the week, and a table naming each incident's issue as `owner/repo#N`.
4. **Deploys and rollbacks**: the releases by outcome, a Mermaid `xychart-beta` bar chart of the
   deploys that reached production per UTC day (none: "No deploys this week.", no chart), and the
   releases' table (rolled back and failed ones are kept first when the table is cut).
5. **Top findings**: at most `max_findings`, most severe first (the given order within a severity).
6. **What each agent did**: a Mermaid `pie` of the week's task outcomes, a table per agent (tasks by
   status, autonomous completions, utilisation, cost) and its examples.

Untrusted text. Every text that comes from a repository or a document (repository, service and agent
names, release reasons, finding titles, example lines, states) is made inert for Markdown
(`repo_scout.health.inert`: `shared.markdown.neutralise` plus no issue references or emphasis) and
HTML-escaped in the page. Mermaid blocks hold only labels written here, filtered again to letters,
digits and a few punctuation marks, and finite non-negative numbers. Links are built only from
checked parts: `repo_link_base` (an http(s) origin), a repository name matching `owner/name`, a
number, a finding's checked relative path. Pass `https://redirect.github.com` as the base to link
pull requests without GitHub putting a back-link on each at every edit (as the scout's issue does).

Size. Lists are cut with "…and N more"; when the body is still too long the lists shrink step by step
(`STEPS`), and a last resort cuts the body at a line and closes an open code block.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from functions.deploy_agent import release as rel
from functions.metrics import DailyMetrics, week_over_week
from functions.metrics.dora import BANDS, NO_DATA, deployment_from_release_doc, dig, utc
from functions.repo_scout.health import KIND_LABELS, SEVERITIES, Finding, inert, safe_link, severity_rank
from shared.errors import InvalidInput

MAX_BODY_CHARS = 60_000  # GitHub's issue body limit is 65,536 characters
MAX_FINDINGS = 10
REPORT_LABEL = "agent-ops:weekly-report"
MARKER_PREFIX = "<!-- agent-ops:weekly-report"
_MARKER = re.compile(r"<!-- agent-ops:weekly-report week=(\d{4}-\d{2}-\d{2}) -->")
_REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_BASE = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~-]{1,100}){0,5}")
_SHA = re.compile(r"[0-9a-f]{7,40}")
_VERSION = re.compile(r"[a-z][a-z0-9-]{0,62}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/+-]+")

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ROLLED_BACK_STATES = frozenset({rel.ROLLING_BACK, rel.ROLLED_BACK})
PROBLEM_STATES = ROLLED_BACK_STATES | {rel.FAILED}
STATE_LABELS: Mapping[str, str] = {
    rel.SUCCEEDED: "✅ succeeded", rel.ROLLING_BACK: "↩️ rolling back", rel.ROLLED_BACK: "↩️ rolled back",
    rel.FAILED: "❌ failed", rel.CANCELLED: "⏹️ cancelled", rel.PREFLIGHT: "⏳ pre-flight",
    rel.BUILDING: "⏳ building", rel.SMOKE: "⏳ smoke test", rel.CANARY: "⏳ canary",
    rel.WATCHING: "⏳ watching",
}
TASK_STATUSES = ("succeeded", "failed", "cancelled", "blocked")  # the order statuses are listed in


# ---- the week ------------------------------------------------------------------------------------------


def week_monday(week_start: date | datetime) -> date:
    """The week's Monday (a datetime is taken in UTC); InvalidInput for any other day."""
    if isinstance(week_start, datetime):
        day = utc(week_start).date()
    elif isinstance(week_start, date):
        day = week_start
    else:
        raise InvalidInput(f"a week starts on a date, not {type(week_start).__name__}")
    if day.weekday() != 0:
        raise InvalidInput(f"a report's week starts on a Monday, not on {DAYS[day.weekday()]} {day}")
    return day


def _day_text(day: date, year: bool = False) -> str:
    text = f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]}"
    return f"{text} {day.year}" if year else text


def report_title(week_start: date | datetime) -> str:
    """Like "Weekly report 2026-W49: Mon 30 Nov – Sun 6 Dec 2026"."""
    monday = week_monday(week_start)
    iso = monday.isocalendar()
    return (f"Weekly report {iso.year}-W{iso.week:02d}: {_day_text(monday)} – "
            f"{_day_text(monday + timedelta(days=6), year=True)}")


def report_marker(week_start: date | datetime) -> str:
    """The hidden first line of the week's report body."""
    return f"{MARKER_PREFIX} week={week_monday(week_start).isoformat()} -->"


def report_week(body: str) -> date | None:
    """The week named by a report body's marker; None when the body is not a weekly report's."""
    found = _MARKER.search(body[:2000]) if isinstance(body, str) else None
    if found is None:
        return None
    try:
        return week_monday(date.fromisoformat(found.group(1)))
    except (ValueError, InvalidInput):
        return None


# ---- inputs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One line of what an agent did, like "opened PR 13 for issue 12". `number`, with `repository`, is
    shown as the reference `owner/repo#N` before the text. The text is untrusted (neutralised: a `#12`
    in it never becomes a reference)."""

    text: str
    repository: str = ""
    number: int = 0


@dataclass(frozen=True)
class AgentActivity:
    """What one agent did in the week. `tasks`: counts of its tasks by status (from the metrics
    document: those that ended in the week, by outcome; the shell may add others, like "running").
    `autonomous`: its tasks that succeeded without a human; `utilisation` is 0 to 1."""

    agent: str
    tasks: Mapping[str, int] = field(default_factory=dict)
    autonomous: int | None = None
    utilisation: float | None = None
    cost_units: float | None = None
    examples: Sequence[str | Example] = ()


@dataclass(frozen=True)
class TopFinding:
    """A finding with its repository (`Finding` itself has none). `finding`: a Finding or its doc."""

    repository: str
    finding: Finding | Mapping[str, Any]


@dataclass(frozen=True)
class WeeklyInputs:
    """Everything the report shows.

    week_start: the Monday (UTC) the week starts on. this_week / last_week: `daily_metrics` over the
    week's window (a DailyMetrics or its `to_doc()`); last_week None when there is none. releases:
    `deployments/{id}` documents of the week's releases. incidents: `incidents/{id}` documents opened
    in the week or still open in it. findings: the top findings, as `TopFinding`, `Finding` or finding
    documents (with a `repository` field), most important first. activity: per agent; None derives it
    from this week's document (`agent_activity`), with `examples` (agent -> lines) added. now: when the
    report is made, for the age of open incidents (default: the week's end).
    """

    week_start: date
    this_week: Mapping[str, Any]
    last_week: Mapping[str, Any] | None = None
    releases: Sequence[Mapping[str, Any]] = ()
    incidents: Sequence[Mapping[str, Any]] = ()
    findings: Sequence[TopFinding | Finding | Mapping[str, Any]] = ()
    activity: Sequence[AgentActivity] | None = None
    examples: Mapping[str, Sequence[str | Example]] = field(default_factory=dict)
    now: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "week_start", week_monday(self.week_start))
        for name in ("this_week", "last_week"):
            value = getattr(self, name)
            if isinstance(value, DailyMetrics):
                object.__setattr__(self, name, value.to_doc())
            elif value is not None and not isinstance(value, Mapping):
                raise InvalidInput(f"{name} must be a metrics document, not {type(value).__name__}")
        if self.this_week is None:
            raise InvalidInput("the report needs this week's metrics document")

    @property
    def start(self) -> datetime:
        return datetime(self.week_start.year, self.week_start.month, self.week_start.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def as_of(self) -> datetime:
        return self.end if self.now is None else utc(self.now)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def _count(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None and number > 0 else 0


def _named(items: Any, key: str) -> dict[str, Mapping[str, Any]]:
    return {str(item.get(key)): item for item in items or [] if isinstance(item, Mapping) and item.get(key)}


def agent_activity(doc: Mapping[str, Any], examples: Mapping[str, Sequence[str | Example]] | None = None,
                   ) -> tuple[AgentActivity, ...]:
    """Per agent, from a metrics document's `agents` section (every agent it names, idle ones too),
    with the shell's `examples` (agent -> lines); sorted by name."""
    examples = examples or {}
    tasks = _named(dig(doc, "agents", "tasks", "by_agent"), "agent")
    usage = _named(dig(doc, "agents", "utilisation"), "agent")
    cost = _named(dig(doc, "agents", "cost", "by_agent"), "agent")
    out = []
    for agent in sorted(set(tasks) | set(usage) | set(cost) | {str(name) for name in examples}):
        stats = dig(tasks.get(agent), "tasks") or {}
        out.append(AgentActivity(
            agent, {status: _count(stats.get(status)) for status in TASK_STATUSES},
            _count(stats.get("autonomous")) if stats else None,
            _number(dig(usage.get(agent), "utilisation")), _number(dig(cost.get(agent), "cost_units")),
            tuple(examples.get(agent) or ())))
    return tuple(out)


# ---- the document model ----------------------------------------------------------------------------------

SpanKind = Literal["raw", "text", "ref", "link", "code", "good", "bad"]


@dataclass(frozen=True)
class _Span:
    """raw: text written here (trusted, no `|` or newline); text: untrusted, at most `limit` shown; ref:
    `owner/repo#N` (href: its issue); link: untrusted label to a checked href; code: a checked sha or
    version; good / bad: a verdict."""

    kind: SpanKind
    text: str
    href: str = ""
    limit: int = 100
    bold: bool = False


Cell = tuple[_Span, ...]


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Para:
    spans: Cell
    note: bool = False  # a remark, in italics


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class _List:
    items: tuple[Cell, ...]


@dataclass(frozen=True)
class _Chart:
    kind: Literal["bar", "pie"]
    title: str
    labels: tuple[str, ...]
    values: tuple[float, ...]
    axis: str = ""


Block = _Heading | _Para | _Table | _List | _Chart


def _raw(text: str, bold: bool = False) -> _Span:
    return _Span("raw", text, bold=bold)


def _text(text: Any, limit: int = 100, bold: bool = False) -> _Span:
    return _Span("text", str(text if text is not None else ""), limit=limit, bold=bold)


@dataclass(frozen=True)
class _Links:
    """Links built from checked parts only."""

    base: str

    def repo(self, repository: str) -> str | None:
        return repository if _REPO.fullmatch(repository) else None

    def ref(self, repository: str, number: Any) -> _Span:
        value = _count(number)
        if value and self.repo(repository):
            return _Span("ref", f"{repository}#{value}", href=f"{self.base}/{repository}/issues/{value}")
        return _text(f"{repository} {value}" if value else repository)

    def pull(self, repository: str, number: Any) -> _Span | None:
        value = _count(number)
        if not value or not self.repo(repository):
            return None
        return _Span("link", f"PR {value}", href=f"{self.base}/{repository}/pull/{value}")

    def path(self, repository: str, path: str, label: str) -> _Span | None:
        checked = safe_link(path)
        if not checked or not self.repo(repository):
            return None
        return _Span("link", label or "open", href=f"{self.base}/{repository}/{checked}", limit=40)


def _check_base(base: str) -> str:
    base = str(base or "").rstrip("/")
    if not _BASE.fullmatch(base):
        raise InvalidInput(f"the links' base must be an http(s) origin, not {inert(base)!r}")
    return base


# ---- formatting ------------------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _when(moment: Any) -> str:
    if not isinstance(moment, datetime):
        return "—"
    moment = utc(moment)
    return f"{_day_text(moment.date())} {moment:%H:%M}"


def _signed(value: float, text: str) -> str:
    return f"+{text}" if value > 0 else f"−{text}" if value < 0 else text


Unit = Literal["count", "percent", "duration", "number", "cost"]


def _value(value: Any, unit: Unit) -> str:
    number = _number(value)
    if number is None:
        return "—"
    if unit == "count":
        return f"{number:,.0f}"
    if unit == "percent":
        return f"{number * 100:.1f}%"
    if unit == "duration":
        return _duration(number)
    return f"{number:,.2f}"


def _delta(delta: float, unit: Unit) -> str:
    if unit == "count":
        return _signed(delta, f"{abs(delta):,.0f}")
    if unit == "percent":
        return _signed(delta, f"{abs(delta) * 100:.1f} pp")
    if unit == "duration":
        return _signed(delta, _duration(delta))
    return _signed(delta, f"{abs(delta):,.2f}")


def _percent(value: Any) -> str:
    return _value(value, "percent")


def _cut_head_tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def _plain(text: str, limit: int) -> str:
    """Untrusted text for HTML, before escaping: no control characters, at most `limit` characters."""
    if len(text) > 4 * limit + 64:
        text = text[:2 * limit] + "…" + text[-2 * limit:]
    return _cut_head_tail(_CONTROL.sub(" ", text), limit)


def _band(value: Any) -> _Span:
    band = str(value) if value is not None else NO_DATA
    return _raw(band) if band in BANDS or band == NO_DATA else _text(band, 20)


# ---- the sections ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How many items each list shows before "…and N more"."""

    releases: int = 40
    incidents: int = 40
    findings: int = MAX_FINDINGS
    repositories: int = 40  # table rows: repositories and their services
    agents: int = 20
    examples: int = 5  # per agent


STEPS: tuple[Limits, ...] = (Limits(), Limits(20, 20, 10, 20, 20, 3), Limits(10, 10, 5, 10, 10, 2),
                             Limits(5, 5, 3, 5, 5, 1), Limits(3, 3, 3, 3, 3, 0))
HTML_LIMITS = Limits(200, 200, MAX_FINDINGS, 200, 50, 10)


@dataclass(frozen=True)
class Headline:
    label: str
    path: tuple[str, ...]
    unit: Unit


HEADLINES: tuple[Headline, ...] = (
    Headline("Successful deploys", ("dora", "all", "deployment_frequency", "deploys"), "count"),
    Headline("Lead time for changes (median)", ("dora", "all", "lead_time", "median_seconds"), "duration"),
    Headline("Change failure rate", ("dora", "all", "change_failure_rate", "rate"), "percent"),
    Headline("Time to restore (median)", ("dora", "all", "time_to_restore", "median_seconds"), "duration"),
    Headline("Incidents open at the week's end", ("dora", "all", "time_to_restore", "open"), "count"),
    Headline("Build success rate", ("delivery", "build", "success_rate"), "percent"),
    Headline("Agent tasks ended", ("agents", "tasks", "all", "ended"), "count"),
    Headline("Autonomous completion rate", ("agents", "tasks", "all", "autonomous_rate"), "percent"),
    Headline("Agent PR approval rate", ("agents", "pull_requests", "by_actor", "agent", "approval_rate"),
              "percent"),
    Headline("Time to first human review (median)",
              ("agents", "pull_requests", "first_review_median_seconds"), "duration"),
    Headline("Review rounds per PR (mean)", ("agents", "pull_requests", "review_rounds_mean"), "number"),
    Headline("Cost per task", ("agents", "cost", "per_task"), "cost"),
    Headline("Spend", ("agents", "cost", "spent"), "cost"),
)


def _verdict(compared: Any) -> tuple[_Span, ...]:
    improved = dig(compared, "improved")
    if improved is True:
        return (_Span("good", "better"),)
    if improved is False:
        return (_Span("bad", "worse"),)
    if dig(compared, "delta") == 0:
        return (_raw("unchanged"),)
    return (_raw("—" if dig(compared, "delta") is None else ""),)


def _summary(inputs: WeeklyInputs, wow: Mapping[str, Any]) -> list[Block]:
    rows = []
    for headline in HEADLINES:
        compared = dig(wow, *headline.path)
        this, last = dig(compared, "this"), dig(compared, "last")
        delta, change = _number(dig(compared, "delta")), _number(dig(compared, "change"))
        now_text = _value(this, headline.unit)
        if headline.path[-1] == "spent":
            budget = _number(dig(inputs.this_week, "agents", "cost", "budget"))
            if budget is not None and _number(this) is not None:
                now_text += f" of {_value(budget, 'cost')} budget"
                if dig(inputs.this_week, "agents", "cost", "over") is True:
                    now_text += " (over)"
        if delta is None:
            moved = "—"
        else:
            arrow = "↑" if delta > 0 else "↓" if delta < 0 else "→"
            moved = f"{arrow} {_delta(delta, headline.unit)}"
            if change is not None and headline.unit != "percent" and delta:
                moved += f" ({_signed(change, f'{abs(change) * 100:.0f}%')})"
        rows.append(((_raw(headline.label),), (_raw(now_text),), (_raw(_value(last, headline.unit)),),
                     (_raw(moved),), _verdict(compared)))
    header = ("Metric", "This week", "Last week", "Change", "vs last week")
    blocks: list[Block] = [_Heading(2, "Summary"), _Table(header, tuple(rows))]
    if inputs.last_week is None:
        blocks.append(_Para((_raw("No metrics for last week: its values and the changes show as —."),),
                            note=True))
    return blocks


def _band_cell(scope: Any, compared: Any, key: str, unit: Unit | None) -> Cell:
    band = dig(scope, key, "band")
    figure = {"lead_time": "median_seconds", "change_failure_rate": "rate",
              "time_to_restore": "median_seconds"}.get(key)
    spans = [_band(band)]
    if unit is not None and figure is not None and _number(dig(scope, key, figure)) is not None:
        spans.append(_raw(f" · {_value(dig(scope, key, figure), unit)}"))
    moved = dig(compared, key, "band")
    last = dig(moved, "last")
    if moved and dig(moved, "changed") and last is not None:
        improved = dig(moved, "improved")
        if str(last) not in BANDS and str(last) != NO_DATA:
            last = "another band"
        word = f"↑ from {last}" if improved else f"↓ from {last}" if improved is False else f"(was {last})"
        spans += [_raw(" "), _Span("good", word) if improved else _Span("bad", word) if improved is False
                  else _raw(word)]
    return tuple(spans)


def _dora_row(name: Cell, scope: Any, compared: Any) -> tuple[Cell, ...]:
    deploys = dig(scope, "deployment_frequency", "deploys")
    return (name, (_raw(_value(deploys, "count")),),
            _band_cell(scope, compared, "deployment_frequency", None),
            _band_cell(scope, compared, "lead_time", "duration"),
            _band_cell(scope, compared, "change_failure_rate", "percent"),
            _band_cell(scope, compared, "time_to_restore", "duration"))


def _dora(inputs: WeeklyInputs, wow: Mapping[str, Any], limits: Limits) -> list[Block]:
    blocks: list[Block] = [_Heading(2, "DORA by repository")]
    header = ("Repository", "Deploys", "Deployment frequency", "Lead time", "Change failure rate",
              "Time to restore")
    rows = [_dora_row((_raw("All repositories", bold=True),), dig(inputs.this_week, "dora", "all"),
                      dig(wow, "dora", "all"))]
    repositories = [repo for repo in dig(inputs.this_week, "dora", "repositories") or []
                    if isinstance(repo, Mapping)]
    compared = _named(dig(wow, "dora", "repositories"), "repository")
    all_rows = []
    for repo in repositories:
        name = str(repo.get("repository") or "")
        all_rows.append((name, _dora_row((_text(name),), repo, compared.get(name))))
        services = _named(dig(compared.get(name), "services"), "service")
        for service in repo.get("services") or []:
            if isinstance(service, Mapping):
                label = str(service.get("service") or "")
                row = _dora_row((_raw("↳ "), _text(label, 60)), service, services.get(label))
                all_rows.append((name, row))
    rows += [row for _, row in all_rows[:limits.repositories]]
    blocks.append(_Table(header, tuple(rows)))
    hidden = {name for name, _ in all_rows[limits.repositories:]} - {name for name, _ in
                                                                      all_rows[:limits.repositories]}
    if len(all_rows) > limits.repositories:
        blocks.append(_Para((_raw(f"…and {len(all_rows) - limits.repositories} more rows"
                                  f" ({len(hidden)} more repositories)."),), note=True))
    if not repositories:
        blocks.append(_Para((_raw("No deploys or incidents in any repository this week."),), note=True))
    blocks += _delivery(inputs, limits)
    return blocks


def _delivery(inputs: WeeklyInputs, limits: Limits) -> list[Block]:
    repositories = [repo for repo in dig(inputs.this_week, "delivery", "repositories") or []
                    if isinstance(repo, Mapping)]
    if not repositories:
        return [_Para((_raw("No CI runs or coverage baselines this week."),), note=True)]
    rows = []
    for repo in repositories[:limits.repositories]:
        name = str(repo.get("repository") or "")
        build = dig(repo, "build") or {}
        runs = _count(build.get("runs"))
        rate = (_percent(build.get("success_rate")) + f" of {runs} runs") if runs else "no runs"
        latest = _number(dig(repo, "coverage", "latest"))
        change = _number(dig(repo, "coverage", "change_points"))
        change_cell: Cell = (_raw("—" if change is None else _signed(change, f"{abs(change):.2f} pp")),)
        if change:
            change_cell += (_raw(" "), _Span("good", "up") if change > 0 else _Span("bad", "down"))
        rows.append(((_text(name),), (_raw(rate),),
                     (_raw("—" if latest is None else f"{latest:.1f}%"),), change_cell))
    header = ("Repository", "Build success", "Coverage", "Coverage change")
    blocks: list[Block] = [_Table(header, tuple(rows))]
    if len(repositories) > limits.repositories:
        blocks.append(_Para((_raw(f"…and {len(repositories) - limits.repositories} more repositories."),),
                            note=True))
    return blocks


@dataclass(frozen=True)
class _Incident:
    id: str
    repository: str
    service: str
    kind: str
    opened_at: datetime
    closed_at: datetime | None
    issue_number: int


def _incidents_of(inputs: WeeklyInputs) -> list[_Incident]:
    out: dict[str, _Incident] = {}
    listed = list(inputs.incidents) + [
        item for item in dig(inputs.this_week, "dora", "all", "time_to_restore", "open_incidents") or []
        if isinstance(item, Mapping)]
    for index, doc in enumerate(listed):
        if not isinstance(doc, Mapping) or not isinstance(doc.get("opened_at"), datetime):
            continue
        ident = str(doc.get("incident_id") or f"#{index}")
        if ident in out:
            continue
        closed = doc.get("closed_at")
        item = _Incident(ident, str(doc.get("repository") or ""), str(doc.get("service") or ""),
                         str(doc.get("kind") or "incident"), utc(doc["opened_at"]),
                         utc(closed) if isinstance(closed, datetime) else None,
                         _count(doc.get("issue_number")))
        if item.opened_at < inputs.end and (item.closed_at is None or item.closed_at >= inputs.start):
            out[ident] = item
    return list(out.values())


def _incidents(inputs: WeeklyInputs, links: _Links, limits: Limits) -> list[Block]:
    blocks: list[Block] = [_Heading(2, "Incidents")]
    items = _incidents_of(inputs)
    if not items:
        return [*blocks, _Para((_raw("No incidents this week."),))]
    as_of = inputs.as_of

    def is_open(item: _Incident) -> bool:
        return item.closed_at is None or item.closed_at > as_of

    opened = sum(1 for item in items if inputs.start <= item.opened_at < inputs.end)
    closed = [item for item in items
              if item.closed_at is not None and inputs.start <= item.closed_at < inputs.end]
    durations = []
    for item in closed:
        assert item.closed_at is not None
        seconds = (item.closed_at - item.opened_at).total_seconds()
        if seconds >= 0:  # closed before it opened: a clock skew, left out
            durations.append(seconds)
    still_open = [item for item in items if is_open(item)]
    summary = f"{opened} opened, {len(closed)} closed, {len(still_open)} still open."
    if durations:
        summary += (f" Mean time to restore {_duration(statistics.fmean(durations))}"
                    f" (median {_duration(statistics.median(durations))}) over {len(durations)} restored.")
    blocks.append(_Para((_raw(summary),)))
    ordered = sorted(items, key=lambda item: (not is_open(item), item.opened_at, item.id))
    rows = []
    for item in ordered[:limits.incidents]:
        if is_open(item):
            age = max((as_of - item.opened_at).total_seconds(), 0.0)
            status: Cell = (_Span("bad", f"open for {_duration(age)}"),)
        else:
            assert item.closed_at is not None
            status = (_raw(f"restored in {_duration((item.closed_at - item.opened_at).total_seconds())}"),)
        issue = (links.ref(item.repository, item.issue_number),) if item.issue_number else (_raw("—"),)
        rows.append(((_raw(_when(item.opened_at)),), (_text(item.repository),), (_text(item.service, 60),),
                     (_text(item.kind, 30),), status, issue))
    blocks.append(_Table(("Opened (UTC)", "Repository", "Service", "Kind", "Status", "Issue"), tuple(rows)))
    rest = ordered[limits.incidents:]
    if rest:
        still = sum(1 for item in rest if is_open(item))
        blocks.append(_Para((_raw(f"…and {len(rest)} more incidents ({still} of them open)."),), note=True))
    return blocks


@dataclass(frozen=True)
class _Release:
    repository: str
    service: str
    version: str
    state: str
    started_at: datetime | None
    sha: str
    pull_number: int
    reasons: tuple[str, ...]
    deployed_at: datetime | None


def _release_of(doc: Mapping[str, Any]) -> _Release:
    try:
        deployed = deployment_from_release_doc(doc).deployed_at
    except (ValueError, TypeError, KeyError, AttributeError, InvalidInput):
        deployed = None
    started = doc.get("started_at") or doc.get("created_at")
    reasons = doc.get("reasons") or ()
    return _Release(str(doc.get("repository") or ""), str(doc.get("service") or ""),
                    str(doc.get("version") or ""), str(doc.get("state") or ""),
                    utc(started) if isinstance(started, datetime) else None, str(doc.get("sha") or ""),
                    _count(doc.get("pull_number")),
                    tuple(str(reason) for reason in reasons) if isinstance(reasons, list | tuple) else (),
                    deployed)


def _group(state: str) -> str:
    if state == rel.SUCCEEDED:
        return "succeeded"
    if state in ROLLED_BACK_STATES:
        return "rolled back"
    if state in (rel.FAILED, rel.CANCELLED):
        return state
    return "in progress"


def _deploys(inputs: WeeklyInputs, links: _Links, limits: Limits) -> list[Block]:
    blocks: list[Block] = [_Heading(2, "Deploys and rollbacks")]
    releases = [_release_of(doc) for doc in inputs.releases if isinstance(doc, Mapping)]
    per_day = [0] * 7
    for item in releases:
        if item.deployed_at is not None and inputs.start <= item.deployed_at < inputs.end:
            per_day[(item.deployed_at.date() - inputs.week_start).days] += 1
    groups = Counter(_group(item.state) for item in releases)
    if releases:
        parts = ", ".join(f"{groups[name]} {name}" for name in
                          ("succeeded", "rolled back", "failed", "cancelled", "in progress") if groups[name])
        noun = "release" if len(releases) == 1 else "releases"
        blocks.append(_Para((_raw(f"{len(releases)} {noun}: {parts}. {sum(per_day)} reached production"
                                  " this week."),)))
    if sum(per_day) == 0:
        blocks.append(_Para((_raw("No deploys this week."),)))
    else:
        days = [inputs.week_start + timedelta(days=offset) for offset in range(7)]
        blocks.append(_Chart("bar", "Deploys reaching production per UTC day",
                             tuple(f"{DAYS[day.weekday()]} {day.day}" for day in days), tuple(per_day),
                             axis="Deploys"))
    if not releases:
        return blocks
    far_past = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(releases, key=lambda item: item.started_at or far_past)
    shown = ordered
    if len(ordered) > limits.releases:  # the rolled back and failed first, then the newest
        ranked = sorted(ordered, key=lambda item: (item.state not in PROBLEM_STATES,
                                                   -(item.started_at or far_past).timestamp()))
        keep = {id(item) for item in ranked[:limits.releases]}
        shown = [item for item in ordered if id(item) in keep]
    rows = []
    for item in shown:
        change: list[_Span] = []
        pull = links.pull(item.repository, item.pull_number)
        if pull is not None:
            change.append(pull)
        if _SHA.fullmatch(item.sha):
            change += [_raw(" ")] if change else []
            change.append(_Span("code", item.sha[:7]))
        version = _Span("code", item.version) if _VERSION.fullmatch(item.version) else _text(item.version, 40)
        state = _raw(STATE_LABELS[item.state]) if item.state in STATE_LABELS else _text(item.state, 30)
        rows.append(((_raw(_when(item.started_at)),), (_text(item.repository),), (_text(item.service, 60),),
                     (version,), tuple(change) or (_raw("—"),), (state,),
                     (_text("; ".join(item.reasons), 200),) if item.reasons else (_raw(""),)))
    blocks.append(_Table(("Started (UTC)", "Repository", "Service", "Version", "Change", "State", "Why"),
                         tuple(rows)))
    if len(ordered) > len(shown):
        blocks.append(_Para((_raw(f"…and {len(ordered) - len(shown)} more releases."),), note=True))
    return blocks


@dataclass(frozen=True)
class _Finding:
    repository: str
    severity: str
    kind: str
    title: str
    detail: str
    link: str
    label: str


def _finding_of(item: Any) -> _Finding | None:
    repository = ""
    if isinstance(item, TopFinding):
        repository, item = item.repository, item.finding
    if isinstance(item, Finding):
        item = item.to_doc()
    if not isinstance(item, Mapping):
        return None
    repository = repository or str(item.get("repository") or item.get("repo") or "")
    severity = str(item.get("severity") or "")
    return _Finding(repository, severity if severity in SEVERITIES else "medium", str(item.get("kind") or ""),
                    str(item.get("title") or ""), str(item.get("detail") or ""), str(item.get("link") or ""),
                    str(item.get("label") or ""))


def _findings(inputs: WeeklyInputs, links: _Links, limits: Limits) -> list[Block]:
    blocks: list[Block] = [_Heading(2, "Top findings")]
    items = [found for found in (_finding_of(item) for item in inputs.findings) if found is not None]
    if not items:
        return [*blocks, _Para((_raw("No open findings."),))]
    items = sorted(items, key=lambda item: severity_rank(item.severity))  # stable: the given rank within
    bullets = []
    for item in items[:limits.findings]:
        spans = [_raw(item.severity.capitalize(), bold=True), _raw(" ")]
        if item.repository:
            spans += [_text(item.repository), _raw(" · ")]
        kind = KIND_LABELS.get(item.kind)
        spans += [_raw(kind) if kind else _text(item.kind or "finding", 40), _raw(": ")]
        link = links.path(item.repository, item.link, item.label)
        if link is not None:
            spans += [link, _raw(" ")]
        spans.append(_text(item.title or "(untitled)", 200))
        if item.detail:
            spans += [_raw(" — "), _text(item.detail, 300)]
        bullets.append(tuple(spans))
    blocks.append(_List(tuple(bullets)))
    rest = items[limits.findings:]
    if rest:
        counts = Counter(item.severity for item in rest)
        split = ", ".join(f"{counts[severity]} {severity}" for severity in SEVERITIES if counts[severity])
        blocks.append(_Para((_raw(f"…and {len(rest)} more findings ({split})."),), note=True))
    return blocks


def _statuses(tasks: Mapping[str, Any]) -> list[tuple[str, int]]:
    known = [status for status in TASK_STATUSES if status in tasks]
    others = sorted(str(status) for status in tasks if status not in TASK_STATUSES)
    return [(status, _count(tasks.get(status))) for status in known + others if _count(tasks.get(status))]


def _example(item: str | Example, links: _Links) -> Cell:
    if isinstance(item, Example):
        if item.number and links.repo(item.repository):
            return (links.ref(item.repository, item.number), _raw(" "), _text(item.text, 150))
        prefix = (_text(item.repository), _raw(": ")) if item.repository else ()
        return (*prefix, _text(item.text, 150))
    return (_text(str(item), 150),)


def _agents(inputs: WeeklyInputs, links: _Links, limits: Limits) -> list[Block]:
    blocks: list[Block] = [_Heading(2, "What each agent did")]
    outcomes = dig(inputs.this_week, "agents", "tasks", "all") or {}
    slices = [(label, _count(outcomes.get(key))) for label, key in
              (("Autonomous", "autonomous"), ("Assisted", "assisted"), ("Failed", "failed"),
               ("Cancelled", "cancelled"), ("Blocked", "blocked"))]
    slices = [(label, value) for label, value in slices if value > 0]
    if slices:
        blocks.append(_Chart("pie", "Task outcomes this week", tuple(label for label, _ in slices),
                             tuple(value for _, value in slices)))
    else:
        blocks.append(_Para((_raw("No tasks ended this week."),)))
    activity = list(inputs.activity) if inputs.activity is not None else list(
        agent_activity(inputs.this_week, inputs.examples))
    if not activity:
        return blocks
    rows = []
    for item in activity[:limits.agents]:
        statuses = _statuses(item.tasks)
        tasks: Cell = ()
        for index, (status, count) in enumerate(statuses):
            tasks += ((_raw(" · "),) if index else ()) + (_raw(f"{count} "), _text(status, 30))
        usage = _number(item.utilisation)
        rows.append(((_text(item.agent, 40),), tasks or (_raw("idle"),),
                     (_raw("—" if item.autonomous is None else str(_count(item.autonomous))),),
                     (_raw("—" if usage is None else f"{usage * 100:.1f}%"),),
                     (_raw(_value(item.cost_units, "cost")),)))
    blocks.append(_Table(("Agent", "Tasks", "Autonomous", "Utilisation", "Cost"), tuple(rows)))
    if len(activity) > limits.agents:
        blocks.append(_Para((_raw(f"…and {len(activity) - limits.agents} more agents."),), note=True))
    for item in activity[:limits.agents]:
        examples = list(item.examples)
        if not examples or limits.examples <= 0:
            continue
        blocks.append(_Para((_text(item.agent, 40, bold=True),)))
        bullets = [_example(example, links) for example in examples[:limits.examples]]
        if len(examples) > limits.examples:
            bullets.append((_raw(f"…and {len(examples) - limits.examples} more"),))
        blocks.append(_List(tuple(bullets)))
    return blocks


def _document(inputs: WeeklyInputs, links: _Links, limits: Limits) -> list[Block]:
    wow = week_over_week(inputs.this_week, inputs.last_week)
    monday = inputs.week_start
    computed = dig(inputs.this_week, "computed_at")
    intro = (f"{_day_text(monday, year=True)} to {_day_text(monday + timedelta(days=6), year=True)}, in UTC."
             + (f" Metrics computed {_when(computed)} UTC." if isinstance(computed, datetime) else ""))
    return [
        _Heading(1, report_title(monday)), _Para((_raw(intro),)),
        *_summary(inputs, wow), *_dora(inputs, wow, limits), *_incidents(inputs, links, limits),
        *_deploys(inputs, links, limits), *_findings(inputs, links, limits), *_agents(inputs, links, limits),
        _Para((_raw("Generated by Agent Ops. DORA bands follow the 2023 State of DevOps report."),),
              note=True),
    ]


# ---- Markdown ----------------------------------------------------------------------------------------------


def _md_span(span: _Span) -> str:
    if span.kind == "text":
        text = inert(span.text, span.limit)
    elif span.kind == "link":
        text = f"[{inert(span.text, 40) or 'open'}]({span.href})"
    elif span.kind == "code":
        text = f"`{span.text}`"
    elif span.kind == "good":
        text = f"🟢 {span.text}"
    elif span.kind == "bad":
        text = f"🔴 {span.text}"
    else:  # raw, ref: written here or checked
        text = span.text
    return f"**{text}**" if span.bold and text else text


def _md_cell(cell: Cell) -> str:
    return "".join(_md_span(span) for span in cell).strip() or " "


def mermaid_label(text: str, limit: int = 40) -> str:
    """A label safe inside a quoted Mermaid string: letters, digits, spaces and `._:/+-` only."""
    cleaned = " ".join(_MERMAID_UNSAFE.sub(" ", str(text)).split())[:limit].strip()
    return cleaned or "item"


def _mermaid_number(value: float) -> str:
    number = _number(value)
    if number is None or number < 0:
        return "0"
    return str(int(number)) if float(number).is_integer() else f"{number:.2f}"


def _md_chart(chart: _Chart) -> str:
    if chart.kind == "pie":
        lines = ["pie showData", f"    title {mermaid_label(chart.title, 60)}"]
        lines += [f'    "{mermaid_label(label)}" : {_mermaid_number(value)}'
                  for label, value in zip(chart.labels, chart.values, strict=True)
                  if (_number(value) or 0) > 0]
    else:
        top = max((_number(value) or 0 for value in chart.values), default=0)
        labels = ", ".join(f'"{mermaid_label(label)}"' for label in chart.labels)
        lines = ["xychart-beta", f'    title "{mermaid_label(chart.title, 60)}"', f"    x-axis [{labels}]",
                 f'    y-axis "{mermaid_label(chart.axis or "Count")}" 0 --> {_mermaid_number(max(top, 1))}',
                 f"    bar [{', '.join(_mermaid_number(value) for value in chart.values)}]"]
    return "```mermaid\n" + "\n".join(lines) + "\n```"


def _md_block(block: Block) -> str:
    if isinstance(block, _Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, _Para):
        text = "".join(_md_span(span) for span in block.spans)
        return f"_{text}_" if block.note else text
    if isinstance(block, _Table):
        lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
        lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, _List):
        return "\n".join(f"- {_md_cell(item)}" for item in block.items)
    return _md_chart(block)


def _markdown(inputs: WeeklyInputs, links: _Links, limits: Limits) -> str:
    blocks = _document(inputs, links, limits)
    text = "\n\n".join(_md_block(block) for block in blocks)
    return f"{report_marker(inputs.week_start)}\n\n{text}\n"


def _cut(body: str, max_chars: int) -> str:
    """The last resort: `body` cut at a line under `max_chars`, an open code block closed, and a note."""
    note = "\n\n_The report was cut here to fit an issue._\n"
    room = max(max_chars - len(note) - 8, 0)
    text = body[:room]
    if "\n" in text:
        text = text[:text.rindex("\n")]
    if sum(1 for line in text.split("\n") if line.startswith("```")) % 2:
        text += "\n```"
    return text + note


def weekly_markdown(inputs: WeeklyInputs, repo_link_base: str = "https://github.com", *,
                    max_findings: int = MAX_FINDINGS, max_chars: int = MAX_BODY_CHARS) -> str:
    """The report issue's body (GitHub-flavoured Markdown with Mermaid charts), under `max_chars`."""
    links = _Links(_check_base(repo_link_base))
    body = ""
    for step in STEPS:
        limits = replace(step, findings=min(step.findings, max(max_findings, 0)))
        body = _markdown(inputs, links, limits)
        if len(body) <= max_chars:
            return body
    return _cut(body, max_chars)


# ---- HTML --------------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;max-width:1100px;
margin:2em auto;padding:0 1em}
h1{font-size:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}h2{font-size:1.25em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.95em}th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}code{font-family:ui-monospace,monospace;font-size:.9em;
background:#f6f8fa;padding:0 3px}.good{color:#1a7f37}.bad{color:#cf222e}.note{color:#656d76;font-style:italic}
figure{margin:.8em 0}figcaption{color:#656d76;font-size:.9em}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
.bar{fill:#0969da}.slice0{fill:#1a7f37}.slice1{fill:#0969da}.slice2{fill:#cf222e}.slice3{fill:#8c959f}
.slice4{fill:#bf8700}
""".strip()
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_span(span: _Span) -> str:
    if span.kind == "text":
        text = _h(_plain(span.text, span.limit))
    elif span.kind in ("link", "ref"):
        label = _plain(span.text, 40 if span.kind == "link" else 220) or "open"
        text = f'<a href="{_h(span.href)}" rel="noopener noreferrer nofollow">{_h(label)}</a>'
    elif span.kind == "code":
        text = f"<code>{_h(span.text)}</code>"
    elif span.kind in ("good", "bad"):
        text = f'<span class="{span.kind}">{_h(span.text)}</span>'
    else:
        text = _h(span.text)
    return f"<strong>{text}</strong>" if span.bold and text else text


def _html_cell(cell: Cell) -> str:
    return "".join(_html_span(span) for span in cell)


def svg_bars(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """A vertical bar chart as inline SVG; all-zero (or no) values draw empty bars, never divide by 0."""
    numbers = [max(_number(value) or 0.0, 0.0) for value in values]
    top = max(numbers, default=0.0)
    scale = top if top > 0 else 1.0
    step, plot = 64, 120
    width = 40 + step * max(len(numbers), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="190" viewBox="0 0 {width} 190"'
             f' role="img" aria-label="{_h(_plain(title, 100))}">',
             f'<line x1="30" y1="{plot + 20}" x2="{width - 10}" y2="{plot + 20}" stroke="#d0d7de"/>']
    for index, (label, value) in enumerate(zip(labels, numbers, strict=False)):
        height = round(plot * value / scale)
        x = 30 + index * step + 12
        y = plot + 20 - height
        parts.append(f'<rect class="bar" x="{x}" y="{y}" width="40" height="{height}"/>')
        middle = f'x="{x + 20}" text-anchor="middle"'
        parts.append(f'<text {middle} y="{y - 4}">{_h(_mermaid_number(value))}</text>')
        parts.append(f'<text {middle} y="{plot + 36}">{_h(_plain(label, 20))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_shares(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """Shares of a whole (a pie's data) as one stacked bar with a legend; an empty whole draws nothing."""
    numbers = [max(_number(value) or 0.0, 0.0) for value in values]
    total = sum(numbers)
    width, height = 600, 40 + 18 * len(numbers)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
             f' viewBox="0 0 {width} {height}" role="img" aria-label="{_h(_plain(title, 100))}">']
    x = 0.0
    for index, value in enumerate(numbers):
        share = value / total if total > 0 else 0.0
        parts.append(f'<rect class="slice{index % 5}" x="{x:.1f}" y="0" width="{share * width:.1f}"'
                     ' height="22"/>')
        x += share * width
    for index, (label, value) in enumerate(zip(labels, numbers, strict=False)):
        y = 36 + 18 * index
        share = value / total if total > 0 else 0.0
        parts.append(f'<rect class="slice{index % 5}" x="0" y="{y}" width="12" height="12"/>')
        parts.append(f'<text x="18" y="{y + 10}">{_h(_plain(label, 40))}: {_h(_mermaid_number(value))}'
                     f" ({share * 100:.0f}%)</text>")
    parts.append("</svg>")
    return "".join(parts)


def _html_block(block: Block) -> str:
    if isinstance(block, _Heading):
        return f"<h{block.level}>{_h(block.text)}</h{block.level}>"
    if isinstance(block, _Para):
        opening = '<p class="note">' if block.note else "<p>"
        return f"{opening}{_html_cell(block.spans)}</p>"
    if isinstance(block, _Table):
        head = "".join(f"<th>{_h(title)}</th>" for title in block.header)
        body = "".join("<tr>" + "".join(f"<td>{_html_cell(cell)}</td>" for cell in row) + "</tr>"
                       for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, _List):
        return "<ul>" + "".join(f"<li>{_html_cell(item)}</li>" for item in block.items) + "</ul>"
    draw = svg_shares if block.kind == "pie" else svg_bars
    return (f"<figure>{draw(block.title, block.labels, block.values)}"
            f"<figcaption>{_h(block.title)}</figcaption></figure>")


def weekly_html(inputs: WeeklyInputs, repo_link_base: str = "https://github.com", *,
                max_findings: int = MAX_FINDINGS, limits: Limits = HTML_LIMITS) -> str:
    """The report as one static, self-contained HTML page: no script, no external resource."""
    links = _Links(_check_base(repo_link_base))
    blocks = _document(inputs, links, replace(limits, findings=max(max_findings, 0)))
    body = "\n".join(_html_block(block) for block in blocks)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_h(report_title(inputs.week_start))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


__all__ = [
    "HEADLINES", "HTML_LIMITS", "MARKER_PREFIX", "MAX_BODY_CHARS", "MAX_FINDINGS", "REPORT_LABEL", "STEPS",
    "AgentActivity", "Example", "Headline", "Limits", "TopFinding", "WeeklyInputs", "agent_activity",
    "mermaid_label", "report_marker", "report_title", "report_week", "svg_bars", "svg_shares", "week_monday",
    "weekly_html", "weekly_markdown",
]
