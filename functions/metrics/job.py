"""The daily metrics job: `metrics/{YYYY-MM-DD}`, one document per UTC day.

`run_daily(now)` computes yesterday and every day of the seven before today that has no document
yet, a partial one (GitHub was unavailable: `partial`) or a provisional one, so a missed tick heals
on the next one. `compute_day(day)` computes and writes one day.

A day is computed twice. The night after it, its figures are provisional (`final: false`), taken as
known at the day's end plus `SETTLE` (the tick's minute past midnight). The next night they are final
(`final: true`), taken as known a day later: a release that started at 23:50 and went live at 00:30,
or an incident that blamed a release the next morning, then counts on the day it started. `as_of`
is `now` when that comes first (a day still going, shown by the CLI). So the same records give the
same document whenever the day is computed again in the same regime (a redelivered tick, the CLI an
hour later): `set` writes it whole, and it is the same document. Its `inputs` count only the
records that bear on the day as known then, not everything a run read (a span of several days, the
next morning's tasks); only `notes` may differ, saying what could not be read at the time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from functions.metrics import METRICS, DailyMetrics, MetricsInputs, daily_metrics
from functions.metrics.agents import ACTIVE, Task
from functions.metrics.dora import NO_DATA, Window, day_window, utc
from functions.metrics.sources import LOOKBACK, Gathered, MetricsSources

log = logging.getLogger("agentops.metrics")

SETTLE = timedelta(minutes=15)  # the daily tick runs at 00:15 UTC: what is known by then counts
FINAL_AFTER = timedelta(days=1)  # and the next night's tick computes the day again, final
HEAL_DAYS = 7


def is_final(window: Window, now: datetime) -> bool:
    """Whether a window's figures computed `now` are final: a night has passed since its first tick."""
    return utc(now) >= window.end + SETTLE + FINAL_AFTER


def as_of(window: Window, now: datetime) -> datetime:
    """When a window's figures are taken: its end plus SETTLE (provisional) or plus SETTLE and a day
    (final), or `now` if earlier."""
    settle = SETTLE + FINAL_AFTER if is_final(window, now) else SETTLE
    return min(utc(now), window.end + settle)


def _span(windows: Sequence[Window]) -> Window:
    return Window(min(item.start for item in windows), max(item.end for item in windows))


def _bears(task: Task, span: Window) -> bool:
    """Whether the task moved in the span, or was dispatched or running when it began."""
    before = [entry for entry in task.history if entry.at < span.start]
    return (bool(before) and before[-1].target in ACTIVE) or any(entry.at in span for entry in task.history)


def input_counts(inputs: MetricsInputs, window: Window, known: datetime) -> dict[str, int]:
    """How many of the records read bear on the window as known at `known`.

    Not everything read is counted: a span of several days, or a later run, reads more (the next
    day's tasks, say), and the same day must give the same document.
    """
    span, back = window.until(known), window.start - LOOKBACK
    return {
        "deployments": sum(1 for item in inputs.deployments if back <= item.started_at < known),
        "incidents": sum(1 for item in inputs.incidents if back <= item.opened_at < known),
        "tasks": sum(1 for item in inputs.tasks if _bears(item, span)),
        "pull_requests": sum(1 for item in inputs.pull_requests if item.opened_at < known
                             and (item.resolved_at is None or item.resolved_at >= window.start)),
        "ci_runs": sum(1 for item in inputs.ci_runs if item.finished_at in span),
        "coverage_samples": sum(1 for item in inputs.coverage if back <= item.at < known),
    }


def metrics_doc(metrics: DailyMetrics, gathered: Gathered) -> dict[str, Any]:
    """The stored document: the core's `to_doc()` plus what it was computed from."""
    return {
        **metrics.to_doc(),
        "notes": list(gathered.notes),
        "partial": gathered.partial,
        "final": metrics.computed_at >= metrics.window.end + SETTLE + FINAL_AFTER,
        "inputs": input_counts(gathered.inputs, metrics.window, metrics.computed_at),
    }


@dataclass
class MetricsJob:
    """The jobs' shell: Firestore (`client`), the readers, the budget and a clock."""

    client: Any
    sources: MetricsSources
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    daily_budget: float | None = None

    def compute(self, window: Window, gathered: Gathered, now: datetime) -> DailyMetrics:
        known = as_of(window, now)
        return daily_metrics(gathered.inputs, window, known, self.sources.app_login(), self.daily_budget,
                             gathered.spent(window.until(known)))

    def gather(self, windows: Sequence[Window]) -> Gathered:
        return self.sources.gather(_span(windows))

    def stored(self, day: date) -> dict[str, Any] | None:
        snap = self.sources._call(f"read metrics {day}", self.client.collection(METRICS)
                                  .document(day.isoformat()).get)
        return snap.to_dict() if snap.exists else None

    def missing(self, days: Iterable[date], now: datetime | None = None) -> list[date]:
        """The days without a document, with a partial one (GitHub was unavailable), or with a
        provisional one that can be final by `now`."""
        now = utc(now or self.clock())
        refs = [self.client.collection(METRICS).document(day.isoformat()) for day in days]
        if not refs:
            return []
        snaps = self.sources._call("read the metrics days", lambda: list(self.client.get_all(refs)))
        have = {snap.id for snap in snaps if snap.exists and _settled(snap.to_dict() or {}, snap.id, now)}
        wanted = sorted({date.fromisoformat(ref.id) for ref in refs})
        return [day for day in wanted if day.isoformat() not in have]

    def write(self, metrics: DailyMetrics, gathered: Gathered) -> dict[str, Any]:
        doc = metrics_doc(metrics, gathered)
        ref = self.client.collection(METRICS).document(metrics.doc_id)
        self.sources._call(f"write metrics {metrics.doc_id}", lambda: ref.set(doc))
        return doc

    def compute_days(self, days: Sequence[date], now: datetime | None = None) -> list[DailyMetrics]:
        """Compute and write each day (one read of the records for all of them)."""
        now = utc(now or self.clock())
        windows = [day_window(day) for day in days if day_window(day).start < now]
        if not windows:
            return []
        gathered = self.gather(windows)
        out = []
        for window in windows:
            metrics = self.compute(window, gathered, now)
            self.write(metrics, gathered)
            out.append(metrics)
        return out

    def compute_day(self, day: date, now: datetime | None = None) -> DailyMetrics:
        found = self.compute_days([day], now)
        if not found:
            raise ValueError(f"{day} has not started yet")
        return found[0]

    def run_daily(self, now: datetime | None = None) -> list[DailyMetrics]:
        """Yesterday, and any day of the week before it without a document or with a partial one."""
        now = utc(now or self.clock())
        yesterday = now.date() - timedelta(days=1)
        earlier = [yesterday - timedelta(days=back) for back in range(1, HEAL_DAYS)]
        days = sorted({yesterday, *self.missing(earlier, now)})
        return self.compute_days(days, now)

    def daily_job(self) -> str:
        """The orchestrator's `daily_metrics` job: run_daily, summed up in one line."""
        done = self.run_daily()
        if not done:
            return "no day to compute"
        latest = done[-1]
        healed = [item.date for item in done[:-1]]
        return summary(latest) + (f"; also computed the missing {', '.join(healed)}" if healed else "")


def _settled(doc: dict[str, Any], day: str, now: datetime) -> bool:
    """Whether a stored day needs no computing again: complete, and final once it can be."""
    if doc.get("partial"):
        return False
    return bool(doc.get("final")) or not is_final(day_window(date.fromisoformat(day)), now)


def summary(metrics: DailyMetrics) -> str:
    """One line of headline figures."""
    dora = metrics.dora.all
    freq, lead, cfr, ttr = (dora.deployment_frequency, dora.lead_time, dora.change_failure_rate,
                            dora.time_to_restore)
    build = metrics.delivery.build
    parts = [
        f"metrics {metrics.date}: deploys {freq.deploys} ({freq.band})",
        f"lead time {_hours(lead.median_seconds)} ({lead.band})",
        f"change failure {_rate(cfr.rate)} ({cfr.band})",
        f"restore {_hours(ttr.median_seconds)} ({ttr.band})",
        f"builds {_rate(build.success_rate)}",
        f"tasks {metrics.agents.tasks.all.ended} ended, {_rate(metrics.agents.tasks.all.autonomous_rate)} "
        "autonomous",
    ]
    return ", ".join(parts)


def _hours(seconds: float | None) -> str:
    return NO_DATA if seconds is None else f"{seconds / 3600:.1f} h"


def _rate(rate: float | None) -> str:
    return NO_DATA if rate is None else f"{rate:.0%}"


def from_services(services: Any) -> MetricsJob:
    """The job over a `shared.bootstrap.Services`: its Firestore, GitHub App, budget and clock."""
    config = services.config
    sources = MetricsSources(services.firestore(), github=services.github_or_none,
                             app_login=services.app_login)
    return MetricsJob(services.firestore(), sources, clock=services.clock,
                      daily_budget=config.global_daily_cost or None)
