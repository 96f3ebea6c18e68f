"""Incidents from health probes, as pure decisions: one issue per outage, edited in place, closed on recovery.

The shell keeps a `MonitorState` on each service's document and, for every new probe, calls `decide`
inside a transaction; it stores the new state and carries out the actions. `open_after` consecutive
failures open ONE incident; later failures edit the same issue at most every `update_every` (at once
when the error changes); `close_after_successes` consecutive successes close it with its duration.
Every failed probe also yields a `ReportBreach`, so a deploy's canary or watch window hears of it.

An incident is recorded with issue number 0 the moment it is decided, before the issue exists: the
shell creates the issue and then records its number with `issue_created`. Until then no second issue
is opened and updates wait; a close decided meanwhile carries number 0, and the shell finds the issue
by its marker (`incident_marker`).

Error text comes from the probed service, so it is untrusted: it is neutralised before Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.monitor_agent.slo import Probe, SloReport
from shared import markdown
from shared.errors import ConfigError

MAX_BODY_CHARS = 60_000  # an issue body may hold 65,536 characters
MAX_TITLE_CHARS = 200
MAX_ERROR_SHOWN = 300
MAX_PROBES_SHOWN = 30
INCIDENT_LABELS: tuple[str, ...] = ("incident", "agent-ops:monitor")

# ---------------------------------------------------------------------------------------------
# Neutralising untrusted text

_NOT_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def neutralise(text: str, limit: int = MAX_ERROR_SHOWN) -> str:
    """Make untrusted text inert in Markdown (see `shared.markdown.neutralise`)."""
    return markdown.neutralise(text, limit)


def incident_marker(service: str) -> str:
    """The hidden line that lets the shell find a service's incident issue again."""
    slug = _NOT_SLUG.sub("-", service).strip("-")[:100] or "unnamed"
    return f"<!-- agent-ops:incident:{slug} -->"


# ---------------------------------------------------------------------------------------------
# State and actions


@dataclass(frozen=True)
class IncidentPolicy:
    open_after: int = 3  # consecutive failures that open an incident
    update_every: timedelta = timedelta(minutes=15)  # the most often an open issue is edited
    close_after_successes: int = 2  # consecutive successes that close it

    def __post_init__(self) -> None:
        if self.open_after < 1:
            raise ConfigError(f"incident open_after {self.open_after!r} must be at least 1")
        if self.close_after_successes < 1:
            raise ConfigError(
                f"incident close_after_successes {self.close_after_successes!r} must be at least 1")
        if self.update_every < timedelta(0):
            raise ConfigError(f"incident update_every {self.update_every!r} must not be negative")


def _time_or(value: Any, default: datetime | None = None) -> Any:
    return value if isinstance(value, datetime) else default


@dataclass(frozen=True)
class ActiveIncident:
    """The open incident of a service. Number 0: its issue is being created."""

    number: int
    opened_at: datetime
    last_updated_at: datetime  # when its issue was last written
    failures: int  # failed probes since it opened (not only consecutive ones)
    last_error: str  # as last written to the issue
    failing_since: datetime | None = None  # the first failure of the streak that opened it

    @classmethod
    def from_doc(cls, value: Any) -> ActiveIncident | None:
        if not isinstance(value, Mapping) or not isinstance(value.get("opened_at"), datetime):
            return None
        opened = value["opened_at"]
        return cls(int(value.get("number") or 0), opened, _time_or(value.get("last_updated_at"), opened),
                   int(value.get("failures") or 0), str(value.get("last_error") or ""),
                   _time_or(value.get("failing_since")))

    def to_doc(self) -> dict[str, Any]:
        return {"number": self.number, "opened_at": self.opened_at, "last_updated_at": self.last_updated_at,
                "failures": self.failures, "last_error": self.last_error, "failing_since": self.failing_since}


@dataclass(frozen=True)
class MonitorState:
    """What the monitor remembers of one service between probes (kept on the service's document)."""

    consecutive_failures: int = 0
    consecutive_successes: int = 0
    open_incident: ActiveIncident | None = None
    last_probe_at: datetime | None = None
    failing_since: datetime | None = None  # the first failure of the current streak

    @classmethod
    def from_doc(cls, value: Any) -> MonitorState:
        if not isinstance(value, Mapping):
            return cls()
        return cls(int(value.get("consecutive_failures") or 0), int(value.get("consecutive_successes") or 0),
                   ActiveIncident.from_doc(value.get("open_incident")),
                   _time_or(value.get("last_probe_at")), _time_or(value.get("failing_since")))

    def to_doc(self) -> dict[str, Any]:
        return {"consecutive_failures": self.consecutive_failures,
                "consecutive_successes": self.consecutive_successes,
                "open_incident": self.open_incident.to_doc() if self.open_incident else None,
                "last_probe_at": self.last_probe_at, "failing_since": self.failing_since}


@dataclass(frozen=True)
class OpenIncident:
    title: str
    body: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class UpdateIncident:
    number: int
    body: str  # replaces the issue's body; not a new comment


@dataclass(frozen=True)
class CloseIncident:
    number: int  # 0: the issue's creation was in flight; find it by its marker
    body: str
    duration: timedelta


@dataclass(frozen=True)
class ReportBreach:
    service: str
    reason: str


Action = OpenIncident | UpdateIncident | CloseIncident | ReportBreach


def issue_created(state: MonitorState, number: int) -> MonitorState:
    """Record the number of the issue just created for the open incident (if it is still open)."""
    incident = state.open_incident
    if incident is None or incident.number:
        return state
    return replace(state, open_incident=replace(incident, number=number))


def _error_text(probe: Probe) -> str:
    detail = probe.error or "no detail"
    return f"status {probe.status}: {detail}" if probe.status else detail


def decide(state: MonitorState, probe: Probe, policy: IncidentPolicy = IncidentPolicy(), *,
           service: str, recent: Sequence[Probe] = (), slo: SloReport | None = None,
           ) -> tuple[MonitorState, tuple[Action, ...]]:
    """The new state and what to do after one probe. `recent` and `slo` only go into issue bodies.

    A probe no newer than the last one seen (a redelivered or late tick) changes nothing.
    """
    if state.last_probe_at is not None and probe.at <= state.last_probe_at:
        return state, ()
    shown = [*recent, probe] if not recent or recent[-1].at != probe.at else list(recent)
    incident = state.open_incident
    if probe.ok:
        successes = state.consecutive_successes + 1
        new = replace(state, consecutive_failures=0, consecutive_successes=successes, last_probe_at=probe.at,
                      failing_since=None)
        if incident is None or successes < policy.close_after_successes:
            return new, ()
        duration = probe.at - incident.opened_at
        body = incident_markdown(service, incident, shown, slo, closed_at=probe.at)
        return replace(new, open_incident=None), (CloseIncident(incident.number, body, duration),)

    failures = state.consecutive_failures + 1
    error = _error_text(probe)
    since = state.failing_since or probe.at
    actions: list[Action] = [ReportBreach(service, f"{service} failed its health probe "
                                                   f"{failures} time(s) in a row: {error}")]
    if incident is None:
        if failures >= policy.open_after:
            incident = ActiveIncident(0, probe.at, probe.at, failures, error, since)
            title = neutralise(f"Incident: {service} is failing its health checks", MAX_TITLE_CHARS)
            actions.append(OpenIncident(title, incident_markdown(service, incident, shown, slo),
                                        INCIDENT_LABELS))
    else:
        changed = error != incident.last_error
        incident = replace(incident, failures=incident.failures + 1)
        due = probe.at - incident.last_updated_at >= policy.update_every
        if incident.number and (changed or due):
            incident = replace(incident, last_updated_at=probe.at, last_error=error)
            actions.append(UpdateIncident(incident.number, incident_markdown(service, incident, shown, slo)))
    new = MonitorState(failures, 0, incident, probe.at, since)
    return new, tuple(actions)


# ---------------------------------------------------------------------------------------------
# Markdown


def incident_markdown(service: str, incident: ActiveIncident, probes_recent: Sequence[Probe],
                      slo_report: SloReport | None, closed_at: datetime | None = None) -> str:
    """The incident issue's body: state, SLO, the newest probes. Neutralised, under MAX_BODY_CHARS."""
    name = neutralise(service, 100)
    lines = [incident_marker(service)]
    if closed_at is None:
        lines.append(f"## {name} is failing its health checks")
    else:
        lines.append(f"## Resolved: {name} recovered after {format_duration(closed_at - incident.opened_at)}")
    lines += ["", "| | |", "|---|---|"]
    if incident.failing_since is not None:
        lines.append(f"| Failing since | {_time(incident.failing_since)} |")
    lines.append(f"| Opened | {_time(incident.opened_at)} |")
    if closed_at is not None:
        lines.append(f"| Closed | {_time(closed_at)} |")
        lines.append(f"| Duration | {format_duration(closed_at - incident.opened_at)} |")
    lines.append(f"| Failed probes | {incident.failures} |")
    lines.append(f"| Last error | {neutralise(incident.last_error) or 'none'} |")
    if slo_report is not None:
        lines += ["", "### SLO", "", *_slo_lines(slo_report)]
    shown = sorted(probes_recent, key=lambda probe: probe.at, reverse=True)[:MAX_PROBES_SHOWN]
    if shown:
        lines += ["", "### Recent probes", "", "| Time (UTC) | Result | Status | Latency | Error |",
                  "|---|---|---|---|---|"]
        for probe in shown:
            result = "ok" if probe.ok else "**failed**"
            lines.append(f"| {probe.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} | {result} | {probe.status} | "
                         f"{probe.latency_ms:.0f} ms | {neutralise(probe.error, 120)} |")
    lines += ["", "_Kept up to date by the monitor agent; it closes this issue when the service recovers._"]
    body = "\n".join(lines) + "\n"
    return body if len(body) <= MAX_BODY_CHARS else body[:MAX_BODY_CHARS - 2] + "…\n"


def _slo_lines(report: SloReport) -> list[str]:
    if report.status == "no_data":
        return ["No probe data in the SLO window yet."]
    lines = [f"- Status: **{'met' if report.met else 'breached'}** ({report.probes} probes, "
             f"{report.failed} failed)"]
    if report.availability is not None:
        lines.append(f"- Availability: {100 * report.availability:.3f}%")
    if report.latency_good_ratio is not None:
        lines.append(f"- Within the latency target: {100 * report.latency_good_ratio:.2f}%")
    if report.p95_ms is not None:
        lines.append(f"- p95 latency: ≤ {report.p95_ms:.0f} ms")
    budget = f"{100 * report.error_budget_remaining_ratio:.1f}% remaining"
    lines.append(f"- Error budget: {'exhausted' if report.error_budget_exhausted else budget}")
    lines += [f"- {neutralise(reason)}" for reason in report.reasons]
    return lines


def _time(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def format_duration(span: timedelta) -> str:
    seconds = max(int(span.total_seconds()), 0)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    if not days and not hours:
        parts.append(f"{seconds} s" if seconds or not minutes else "")
    return " ".join(part for part in parts if part)


# ---------------------------------------------------------------------------------------------
# MTTR


def mttr(incidents: Iterable[tuple[datetime, datetime | None]]) -> timedelta | None:
    """The mean time to recovery of closed incidents; None when none has closed.

    Open incidents are left out, and so is a record closed before it opened (corrupt, not a recovery).
    """
    durations = [closed - opened for opened, closed in incidents
                 if closed is not None and closed >= opened]
    if not durations:
        return None
    return sum(durations, timedelta(0)) / len(durations)
