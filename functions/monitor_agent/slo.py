"""Health probes, their hourly buckets and the SLOs computed from them. Pure.

The shell probes every service once a minute and stores ONE Firestore document per service per hour
(`bucket_id`), folding each probe in with `add_probe`. A bucket keeps counts and a fixed latency
histogram, so availability, percentiles and "under the threshold" ratios are computable over any
number of hours without storing every probe; it also keeps the hour's last probes compactly, which
makes the edges of a rolling window exact. A service with several health endpoints is probed as one:
the shell folds the endpoints' results of a tick with `combine`.

A bucket is idempotent per minute: a redelivered tick (the same minute of the same hour) is counted
once. Documents are Firestore-friendly: snake_case keys, lists and maps of plain values, no dots in
keys and no JSON strings.

Latency is measured over successful probes only: a failed probe (a refused connection, a 503, a
timeout) already counts against availability, and its latency says nothing about serving.

Nothing here reads a clock: the shell passes `now`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.errors import ConfigError, InvalidInput

# Upper bounds (inclusive, milliseconds) of the latency histogram; the last bucket holds the rest.
LATENCY_BOUNDS_MS: tuple[float, ...] = (50, 100, 200, 300, 500, 750, 1000, 2000, 5000, math.inf)
MAX_LAST_PROBES = 60
MAX_ERROR_CHARS = 200
HOUR = timedelta(hours=1)
# Ratios come from counts; a value exactly at a target must not fail on float noise.
EPSILON = 1e-9

# Burn-rate windows, and the rate in each that spends the budget fast enough to be worth saying
# (the multiwindow thresholds of the Google SRE workbook for a 30-day window).
BURN_WINDOWS: Mapping[str, timedelta] = {"1h": timedelta(hours=1), "6h": timedelta(hours=6)}
FAST_BURN: Mapping[str, float] = {"1h": 14.4, "6h": 6.0}

SloStatus = Literal["met", "breached", "no_data"]


@dataclass(frozen=True)
class Probe:
    """One health probe of one service. `at` must carry a time zone; it is kept in UTC."""

    at: datetime
    ok: bool
    status: int
    latency_ms: float
    error: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.at, datetime) or self.at.tzinfo is None or self.at.utcoffset() is None:
            raise InvalidInput(f"probe time {self.at!r} has no time zone")
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise InvalidInput(f"probe latency {self.latency_ms!r} is not a duration in milliseconds")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        object.__setattr__(self, "error", str(self.error)[:MAX_ERROR_CHARS])


def combine(probes: Sequence[Probe]) -> Probe:
    """Fold one tick's probes of a service's endpoints into one: ok only if all are, the slowest latency.

    The status and error are the first failing endpoint's (or the first endpoint's when all pass).
    """
    if not probes:
        raise InvalidInput("no probes to combine")
    failing = [probe for probe in probes if not probe.ok]
    shown = failing[0] if failing else probes[0]
    error = "; ".join(dict.fromkeys(probe.error for probe in failing if probe.error))
    return Probe(min(probe.at for probe in probes), not failing, shown.status,
                 max(probe.latency_ms for probe in probes), error)


# ---------------------------------------------------------------------------------------------
# Hourly buckets


def hour_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def bucket_id(service: str, at: datetime) -> str:
    """The hourly document's id, e.g. `widgets@2026-12-01T15`. A service name holds no `/`."""
    if not service or "/" in service:
        raise InvalidInput(f"service name {service!r} cannot name a document")
    return f"{service}@{hour_start(at):%Y-%m-%dT%H}"


def empty_bucket(service: str, hour: datetime) -> dict[str, Any]:
    return {
        "service": service,
        "hour": hour_start(hour),
        "probes": 0,
        "ok": 0,
        "failed": 0,
        "latency_sum_ms": 0.0,  # over successful probes
        "latency_max_ms": 0.0,
        "latency_histogram": [0] * len(LATENCY_BOUNDS_MS),  # counts per LATENCY_BOUNDS_MS, ok probes only
        "minutes": [],  # the minutes of the hour already counted, sorted: a redelivered tick is ignored
        "last": [],  # the newest MAX_LAST_PROBES probes, oldest first
        "last_probe_at": None,
    }


def histogram_index(latency_ms: float) -> int:
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BOUNDS_MS) - 1


def add_probe(bucket_doc: Mapping[str, Any], probe: Probe) -> dict[str, Any]:
    """The bucket with `probe` counted in; the input is not changed. A minute already counted is ignored."""
    doc = _normalised(bucket_doc)
    if hour_start(probe.at) != doc["hour"]:
        raise InvalidInput(f"probe at {probe.at:%Y-%m-%d %H:%M} UTC is outside the bucket's hour "
                           f"{doc['hour']:%Y-%m-%dT%H}")
    minute = probe.at.minute
    if minute in doc["minutes"]:
        return doc
    doc["minutes"] = sorted([*doc["minutes"], minute])
    doc["probes"] += 1
    if probe.ok:
        doc["ok"] += 1
        doc["latency_sum_ms"] += probe.latency_ms
        doc["latency_max_ms"] = max(doc["latency_max_ms"], probe.latency_ms)
        doc["latency_histogram"][histogram_index(probe.latency_ms)] += 1
    else:
        doc["failed"] += 1
    entry: dict[str, Any] = {"at": probe.at, "ok": probe.ok, "status": probe.status,
                             "ms": round(probe.latency_ms, 1)}
    if probe.error:
        entry["error"] = probe.error
    last = sorted([*doc["last"], entry], key=lambda item: item["at"])
    doc["last"] = last[-MAX_LAST_PROBES:]
    if doc["last_probe_at"] is None or probe.at > doc["last_probe_at"]:
        doc["last_probe_at"] = probe.at
    return doc


def _normalised(bucket_doc: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh, complete copy of a stored bucket, tolerant of missing fields."""
    hour = bucket_doc.get("hour")
    if not isinstance(hour, datetime) or hour.tzinfo is None:
        raise InvalidInput(f"bucket {bucket_doc.get('service')!r} has no hour")
    doc = empty_bucket(str(bucket_doc.get("service") or ""), hour)
    for key in ("probes", "ok", "failed"):
        doc[key] = int(bucket_doc.get(key) or 0)
    for key in ("latency_sum_ms", "latency_max_ms"):
        doc[key] = float(bucket_doc.get(key) or 0.0)
    histogram = [int(count or 0) for count in bucket_doc.get("latency_histogram") or []]
    size = len(LATENCY_BOUNDS_MS)
    doc["latency_histogram"] = (histogram + [0] * size)[:size]
    doc["minutes"] = sorted({int(minute) for minute in bucket_doc.get("minutes") or []})
    doc["last"] = [dict(entry) for entry in bucket_doc.get("last") or [] if isinstance(entry, Mapping)]
    doc["last_probe_at"] = bucket_doc.get("last_probe_at")
    return doc


def recent_probes(buckets: Iterable[Mapping[str, Any]], limit: int = MAX_LAST_PROBES) -> list[Probe]:
    """The newest `limit` probes kept in the buckets, oldest first."""
    probes = []
    for bucket in buckets:
        for entry in bucket.get("last") or []:
            at = entry.get("at")
            if isinstance(at, datetime) and at.tzinfo is not None:
                probes.append(Probe(at, bool(entry.get("ok")), int(entry.get("status") or 0),
                                    max(float(entry.get("ms") or 0.0), 0.0), str(entry.get("error") or "")))
    probes.sort(key=lambda probe: probe.at)
    return probes[-limit:] if limit > 0 else []


# ---------------------------------------------------------------------------------------------
# SLOs


@dataclass(frozen=True)
class SloTarget:
    availability: float = 0.999  # the share of probes that must succeed
    latency_ms: float = 500  # a successful probe this fast or faster is good
    latency_percent: float = 0.99  # the share of successful probes that must be good
    window: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        if not 0 < self.availability < 1:
            raise ConfigError(f"slo availability {self.availability!r} must be between 0 and 1 (exclusive)")
        if not 0 < self.latency_percent <= 1:
            raise ConfigError(f"slo latency_percent {self.latency_percent!r} must be in (0, 1]")
        if not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ConfigError(f"slo latency_ms {self.latency_ms!r} must be a positive number")
        if self.window <= timedelta(0):
            raise ConfigError(f"slo window {self.window!r} must be positive")


@dataclass(frozen=True)
class SloReport:
    status: SloStatus
    availability: float | None  # None when there were no probes
    latency_good_ratio: float | None  # None when no probe succeeded
    p95_ms: float | None  # an upper estimate from the histogram; None when no probe succeeded
    probes: int
    failed: int
    error_budget_total: float  # failed probes the target allows in the window
    error_budget_used: int
    error_budget_remaining_ratio: float  # 1 untouched .. 0 spent; clamped at 0
    error_budget_exhausted: bool
    burn_rate_1h: float | None  # how many times faster than sustainable the budget burns; None: no data
    burn_rate_6h: float | None
    reasons: tuple[str, ...]  # why it is breached, and anything else worth saying

    @property
    def met(self) -> bool:
        """No data is not a breach."""
        return self.status != "breached"

    def to_doc(self) -> dict[str, Any]:
        return {
            "status": self.status, "met": self.met, "availability": self.availability,
            "latency_good_ratio": self.latency_good_ratio, "p95_ms": self.p95_ms, "probes": self.probes,
            "failed": self.failed, "error_budget_total": self.error_budget_total,
            "error_budget_used": self.error_budget_used,
            "error_budget_remaining_ratio": self.error_budget_remaining_ratio,
            "error_budget_exhausted": self.error_budget_exhausted, "burn_rate_1h": self.burn_rate_1h,
            "burn_rate_6h": self.burn_rate_6h, "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class _Counts:
    probes: int = 0
    ok: int = 0
    failed: int = 0
    histogram: tuple[int, ...] = (0,) * len(LATENCY_BOUNDS_MS)
    max_ms: float = 0.0

    def plus(self, other: _Counts) -> _Counts:
        return _Counts(self.probes + other.probes, self.ok + other.ok, self.failed + other.failed,
                       tuple(a + b for a, b in zip(self.histogram, other.histogram, strict=True)),
                       max(self.max_ms, other.max_ms))


def _bucket_counts(doc: Mapping[str, Any], start: datetime, end: datetime) -> _Counts:
    """What of one bucket falls in [start, end]: the whole hour, or its kept probes at the window's edge."""
    hour = doc["hour"]
    if hour > end or hour + HOUR <= start:
        return _Counts()
    if hour >= start:  # the hour starts inside the window; no probe is later than now
        return _Counts(doc["probes"], doc["ok"], doc["failed"], tuple(doc["latency_histogram"]),
                       doc["latency_max_ms"])
    histogram = [0] * len(LATENCY_BOUNDS_MS)
    probes = ok = 0
    max_ms = 0.0
    for entry in doc["last"]:
        at = entry.get("at")
        if not isinstance(at, datetime) or not start <= at <= end:
            continue
        probes += 1
        if entry.get("ok"):
            ok += 1
            ms = float(entry.get("ms") or 0.0)
            histogram[histogram_index(ms)] += 1
            max_ms = max(max_ms, ms)
    return _Counts(probes, ok, probes - ok, tuple(histogram), max_ms)


def _window(docs: Sequence[Mapping[str, Any]], start: datetime, end: datetime) -> _Counts:
    total = _Counts()
    for doc in docs:
        total = total.plus(_bucket_counts(doc, start, end))
    return total


def histogram_percentile(histogram: Sequence[int], max_ms: float, fraction: float) -> float | None:
    """The nearest-rank percentile, estimated from above: the upper bound of the bucket holding it.

    Capped by the largest latency seen, which also stands in for the open-ended last bucket.
    """
    total = sum(histogram)
    if total <= 0:
        return None
    rank = max(math.ceil(fraction * total - EPSILON), 1)
    seen = 0
    for count, bound in zip(histogram, LATENCY_BOUNDS_MS, strict=True):
        seen += count
        if seen >= rank:
            return float(min(bound, max_ms))
    return float(max_ms)


def good_latency_count(histogram: Sequence[int], threshold_ms: float) -> int:
    """Successful probes at or under the threshold. Exact when the threshold is a histogram bound;
    otherwise counts only buckets wholly under it, so the ratio errs on the strict side."""
    pairs = zip(histogram, LATENCY_BOUNDS_MS, strict=True)
    return sum(count for count, bound in pairs if bound <= threshold_ms)


def _burn_rate(counts: _Counts, target: SloTarget) -> float | None:
    if counts.probes == 0:
        return None
    return (counts.failed / counts.probes) / (1 - target.availability)


def evaluate(buckets: Iterable[Mapping[str, Any]], target: SloTarget, now: datetime) -> SloReport:
    """The SLOs over the rolling window ending at `now`, from hourly bucket documents.

    Buckets outside the window are ignored; one straddling its start counts by its kept probes. A
    document without an hour (not a bucket) is skipped rather than failing every later evaluation.
    """
    if now.tzinfo is None:
        raise InvalidInput("now has no time zone")
    now = now.astimezone(UTC)
    docs = [_normalised(bucket) for bucket in buckets if isinstance(bucket.get("hour"), datetime)
            and bucket["hour"].tzinfo is not None]
    counts = _window(docs, now - target.window, now)
    burn = {name: _burn_rate(_window(docs, now - span, now), target) for name, span in BURN_WINDOWS.items()}
    if counts.probes == 0:
        return SloReport("no_data", None, None, None, 0, 0, 0.0, 0, 1.0, False, burn["1h"], burn["6h"],
                         (f"no data: no probes in the last {_span(target.window)}",))

    availability = counts.ok / counts.probes
    good_ratio = good_latency_count(counts.histogram, target.latency_ms) / counts.ok if counts.ok else None
    p95 = histogram_percentile(counts.histogram, counts.max_ms, 0.95)
    budget_total = (1 - target.availability) * counts.probes
    remaining = 1 - counts.failed / budget_total
    exhausted = remaining <= EPSILON
    reasons: list[str] = []
    if availability < target.availability - EPSILON:
        reasons.append(f"availability {_pct(availability)} is below the {_pct(target.availability)} target "
                       f"({counts.failed} of {counts.probes} probes failed)")
    if good_ratio is not None and good_ratio < target.latency_percent - EPSILON:
        reasons.append(f"only {_pct(good_ratio)} of successful probes answered within "
                       f"{target.latency_ms:g} ms; the target is {_pct(target.latency_percent)}")
    breached = bool(reasons)
    if exhausted:
        reasons.append(f"error budget exhausted: {counts.failed} failed probes of "
                       f"{budget_total:.1f} allowed in the last {_span(target.window)}")
    for name, rate in burn.items():
        if rate is not None and rate >= FAST_BURN[name]:
            reasons.append(f"error budget burning {rate:.1f}x the sustainable rate over the last {name}")
    return SloReport("breached" if breached else "met", availability, good_ratio, p95, counts.probes,
                     counts.failed, budget_total, counts.failed, max(remaining, 0.0), exhausted,
                     burn["1h"], burn["6h"], tuple(reasons))


def _pct(ratio: float) -> str:
    return f"{100 * ratio:.3f}".rstrip("0").rstrip(".") + "%"


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} days" if span.days != 1 else "day"
    hours = span / HOUR
    return f"{hours:g} hours" if hours != 1 else "hour"
