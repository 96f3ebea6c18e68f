"""The monitor's pure SLO core: probes, hourly buckets, histogram percentiles and rolling-window SLOs."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from functions.monitor_agent import slo
from functions.monitor_agent.slo import (
    LATENCY_BOUNDS_MS,
    MAX_LAST_PROBES,
    Probe,
    SloTarget,
    add_probe,
    bucket_id,
    combine,
    empty_bucket,
    evaluate,
    histogram_percentile,
    recent_probes,
)
from shared.errors import ConfigError, InvalidInput

HOUR0 = datetime(2026, 12, 1, 15, tzinfo=UTC)
NOW = datetime(2026, 12, 31, 12, 30, tzinfo=UTC)


def ok(at: datetime, ms: float = 100.0) -> Probe:
    return Probe(at, True, 200, ms)


def bad(at: datetime, status: int = 503, error: str = "unavailable") -> Probe:
    return Probe(at, False, status, 20.0, error)


def bucket(service: str, hour: datetime, probes: list[Probe]) -> dict:
    doc = empty_bucket(service, hour)
    for probe in probes:
        doc = add_probe(doc, probe)
    return doc


def hour_of(hour: datetime, failed: int = 0, ms: float = 100.0, minutes: int = 60) -> dict:
    """A full hour of per-minute probes; the first `failed` minutes fail."""
    probes = [bad(hour + timedelta(minutes=m)) if m < failed else ok(hour + timedelta(minutes=m), ms)
              for m in range(minutes)]
    return bucket("widgets", hour, probes)


def shifted(doc: dict, hour: datetime) -> dict:
    """The same bucket moved to another hour (building a month probe by probe is slow)."""
    offset = hour - doc["hour"]
    moved = {**doc, "hour": hour, "last_probe_at": doc["last_probe_at"] + offset}
    moved["last"] = [{**entry, "at": entry["at"] + offset} for entry in doc["last"]]
    return moved


def hours_back(count: int, failed_per_hour: int = 0, ms: float = 100.0) -> list[dict]:
    """`count` full hours ending with the hour before NOW's hour."""
    start = slo.hour_start(NOW)
    template = hour_of(start - timedelta(hours=1), failed_per_hour, ms)
    return [shifted(template, start - timedelta(hours=h + 1)) for h in range(count)]


# ---------------------------------------------------------------------------------------------
# Probes and buckets


def test_probe_is_kept_in_utc_and_rejects_naive_times_and_bad_latency():
    at = datetime(2026, 12, 1, 16, 5, tzinfo=timezone(timedelta(hours=1)))
    assert Probe(at, True, 200, 1.0).at == datetime(2026, 12, 1, 15, 5, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        Probe(datetime(2026, 12, 1, 15), True, 200, 1.0)
    for latency in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidInput):
            Probe(HOUR0, True, 200, latency)


@pytest.mark.parametrize("service,at,expected", [
    ("widgets", datetime(2026, 12, 1, 15, 0, tzinfo=UTC), "widgets@2026-12-01T15"),
    ("widgets", datetime(2026, 12, 1, 15, 59, 59, 999_999, tzinfo=UTC), "widgets@2026-12-01T15"),
    ("widgets", datetime(2026, 12, 1, 16, 0, tzinfo=UTC), "widgets@2026-12-01T16"),
    ("api", datetime(2026, 12, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))), "api@2026-11-30T23"),
])
def test_bucket_id_names_the_utc_hour(service, at, expected):
    assert bucket_id(service, at) == expected


@pytest.mark.parametrize("service", ["", "a/b"])
def test_bucket_id_refuses_names_that_cannot_name_a_document(service):
    with pytest.raises(InvalidInput):
        bucket_id(service, HOUR0)


def test_add_probe_counts_and_does_not_touch_its_input():
    doc = empty_bucket("widgets", HOUR0 + timedelta(minutes=12))
    assert doc["hour"] == HOUR0
    before = {key: (list(value) if isinstance(value, list) else value) for key, value in doc.items()}
    after = add_probe(doc, ok(HOUR0 + timedelta(minutes=1), 120.0))
    after = add_probe(after, bad(HOUR0 + timedelta(minutes=2), error="boom"))
    after = add_probe(after, ok(HOUR0 + timedelta(minutes=3), 40.0))
    assert doc == before
    assert (after["probes"], after["ok"], after["failed"]) == (3, 2, 1)
    assert after["latency_sum_ms"] == 160.0
    assert after["latency_max_ms"] == 120.0
    assert after["latency_histogram"] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]  # failed probes have no latency
    assert after["minutes"] == [1, 2, 3]
    assert after["last"][1] == {"at": HOUR0 + timedelta(minutes=2), "ok": False, "status": 503,
                                "ms": 20.0, "error": "boom"}
    assert "error" not in after["last"][0]
    assert after["last_probe_at"] == HOUR0 + timedelta(minutes=3)


def test_a_redelivered_tick_is_counted_once():
    at = HOUR0 + timedelta(minutes=7)
    once = add_probe(empty_bucket("widgets", HOUR0), ok(at))
    assert add_probe(once, ok(at)) == once
    assert add_probe(once, bad(at + timedelta(seconds=30))) == once  # the same minute: the same tick
    assert add_probe(once, ok(at + timedelta(minutes=1)))["probes"] == 2


@pytest.mark.parametrize("at", [HOUR0 - timedelta(microseconds=1), HOUR0 + timedelta(hours=1)])
def test_a_probe_outside_the_hour_is_refused(at):
    with pytest.raises(InvalidInput):
        add_probe(empty_bucket("widgets", HOUR0), ok(at))


def test_hour_boundaries_split_probes_into_their_own_buckets():
    probes = [ok(HOUR0 + timedelta(minutes=59, seconds=59)), ok(HOUR0 + timedelta(hours=1))]
    ids = [bucket_id("widgets", probe.at) for probe in probes]
    assert ids == ["widgets@2026-12-01T15", "widgets@2026-12-01T16"]
    assert add_probe(empty_bucket("widgets", probes[0].at), probes[0])["minutes"] == [59]
    assert add_probe(empty_bucket("widgets", probes[1].at), probes[1])["minutes"] == [0]


def test_last_keeps_the_newest_probes_oldest_first_even_out_of_order():
    doc = empty_bucket("widgets", HOUR0)
    for minute in [*range(30, 60), *range(0, 30)]:
        doc = add_probe(doc, ok(HOUR0 + timedelta(minutes=minute)))
    assert len(doc["last"]) == MAX_LAST_PROBES == 60
    assert [entry["at"].minute for entry in doc["last"]] == list(range(60))
    assert doc["last_probe_at"] == HOUR0 + timedelta(minutes=59)


def test_bucket_docs_are_firestore_friendly():
    doc = hour_of(HOUR0, failed=3)
    assert all(key.islower() and "." not in key for key in doc)
    assert all(isinstance(value, (str, int, float, list, datetime)) for value in doc.values())
    assert all("." not in key for entry in doc["last"] for key in entry)


def test_a_stored_bucket_missing_fields_is_completed():
    doc = add_probe({"service": "widgets", "hour": HOUR0, "latency_histogram": [1]}, ok(HOUR0, 600))
    assert doc["latency_histogram"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    with pytest.raises(InvalidInput):
        add_probe({"service": "widgets"}, ok(HOUR0))


def test_recent_probes_come_back_from_the_buckets_oldest_first():
    docs = [hour_of(HOUR0 + timedelta(hours=1), failed=1, minutes=2), hour_of(HOUR0, minutes=3)]
    probes = recent_probes(docs, limit=4)
    assert [probe.at for probe in probes] == [HOUR0 + timedelta(minutes=m) for m in (1, 2, 60, 61)]
    assert (probes[2].ok, probes[2].error) == (False, "unavailable")


def test_combine_folds_endpoints_into_the_worst():
    probes = [ok(HOUR0, 80), bad(HOUR0, 502, "bad gateway"), ok(HOUR0, 300), bad(HOUR0, 500, "")]
    combined = combine(probes)
    assert (combined.ok, combined.status, combined.latency_ms) == (False, 502, 300)
    assert combined.error == "bad gateway"
    assert combine([ok(HOUR0, 80), ok(HOUR0, 90)]) == ok(HOUR0, 90)
    with pytest.raises(InvalidInput):
        combine([])


# ---------------------------------------------------------------------------------------------
# Histogram percentiles


def brute_force_percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def bound_of(value: float) -> float:
    return next(bound for bound in LATENCY_BOUNDS_MS if value <= bound)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.95, 0.99, 1.0])
def test_histogram_percentiles_match_a_brute_force_computation(seed, fraction):
    rng = random.Random(seed)
    values = [round(rng.lognormvariate(5, 1.2), 1) for _ in range(rng.randint(1, 500))]
    doc = empty_bucket("widgets", HOUR0)
    histogram = [0] * len(LATENCY_BOUNDS_MS)
    for value in values:
        histogram[slo.histogram_index(value)] += 1
    doc["latency_histogram"] = histogram
    exact = brute_force_percentile(values, fraction)
    estimate = histogram_percentile(histogram, max(values), fraction)
    assert estimate == min(bound_of(exact), max(values))
    assert estimate >= exact


def test_histogram_percentile_of_nothing_is_none_and_of_one_is_that_one():
    assert histogram_percentile([0] * len(LATENCY_BOUNDS_MS), 0.0, 0.95) is None
    doc = bucket("widgets", HOUR0, [ok(HOUR0, 7321.0)])
    assert histogram_percentile(doc["latency_histogram"], doc["latency_max_ms"], 0.95) == 7321.0


@pytest.mark.parametrize("value,index", [(0, 0), (50, 0), (50.1, 1), (500, 4), (5000, 8), (5000.1, 9),
                                         (1e9, 9)])
def test_histogram_bounds_are_inclusive(value, index):
    assert slo.histogram_index(value) == index


# ---------------------------------------------------------------------------------------------
# SLO evaluation


def test_targets_are_validated():
    for bad_target in ({"availability": 1.0}, {"availability": 0}, {"latency_percent": 0},
                       {"latency_ms": 0}, {"latency_ms": math.nan}, {"window": timedelta(0)}):
        with pytest.raises(ConfigError):
            SloTarget(**bad_target)


def test_no_data_is_not_a_breach():
    too_old = hour_of(slo.hour_start(NOW - timedelta(days=31)), failed=60)
    for buckets in ([], [too_old], [empty_bucket("widgets", NOW)]):
        report = evaluate(buckets, SloTarget(), NOW)
        assert report.status == "no_data"
        assert report.met
        assert report.availability is None and report.p95_ms is None and report.burn_rate_1h is None
        assert not report.error_budget_exhausted
        assert report.reasons == ("no data: no probes in the last 30 days",)


def test_a_perfect_month():
    report = evaluate(hours_back(24 * 30), SloTarget(), slo.hour_start(NOW))
    assert report.status == "met" and report.met
    assert report.availability == 1.0
    assert report.latency_good_ratio == 1.0
    assert report.p95_ms == 100.0
    assert report.probes == 60 * 24 * 30
    assert evaluate(hours_back(24 * 30), SloTarget(), NOW).probes == 60 * 24 * 30 - 30  # the edge hour's half
    assert report.error_budget_total == pytest.approx(43.2)
    assert report.error_budget_used == 0
    assert report.error_budget_remaining_ratio == 1.0
    assert report.burn_rate_1h == 0.0 and report.burn_rate_6h == 0.0
    assert report.reasons == ()


def test_one_bucket_with_one_probe():
    report = evaluate([bucket("widgets", slo.hour_start(NOW), [ok(NOW - timedelta(minutes=1), 250)])],
                      SloTarget(), NOW)
    assert (report.status, report.availability, report.probes, report.p95_ms) == ("met", 1.0, 1, 250)


def test_exactly_at_the_availability_target_is_met_with_the_budget_just_spent():
    buckets = hours_back(1000 // 60 + 1)
    # 1,000 probes with one failure: 99.9% exactly.
    probes_left = 1000
    trimmed = []
    for doc in buckets:
        take = min(60, probes_left)
        probes_left -= take
        if take:
            trimmed.append(hour_of(doc["hour"], minutes=take, failed=1 if not trimmed else 0))
    report = evaluate(trimmed, SloTarget(), NOW)
    assert report.probes == 1000 and report.failed == 1
    assert report.availability == pytest.approx(0.999)
    assert report.status == "met"
    assert report.error_budget_remaining_ratio == pytest.approx(0.0, abs=1e-9)
    assert report.error_budget_exhausted
    assert report.reasons[0].startswith("error budget exhausted: 1 failed probes of 1.0 allowed")


def test_an_exhausted_budget_is_clamped_and_said():
    report = evaluate(hours_back(24, failed_per_hour=6), SloTarget(), NOW)  # 10% failing
    assert report.status == "breached" and not report.met
    assert report.availability == pytest.approx(0.9)
    assert report.error_budget_used == 144
    assert report.error_budget_remaining_ratio == 0.0
    assert report.error_budget_exhausted
    assert any(reason.startswith("availability 90% is below the 99.9% target (144 of 1440 probes failed)")
               for reason in report.reasons)
    assert any(reason.startswith("error budget exhausted") for reason in report.reasons)


def test_all_failures():
    report = evaluate(hours_back(3, failed_per_hour=60), SloTarget(), NOW)
    assert report.status == "breached"
    assert report.availability == 0.0
    assert report.latency_good_ratio is None and report.p95_ms is None  # no served request to measure
    assert report.burn_rate_1h == pytest.approx(1000.0)
    assert any("burning 1000.0x the sustainable rate over the last 1h" in reason for reason in report.reasons)


def test_slow_successes_breach_the_latency_slo():
    report = evaluate(hours_back(2, ms=600.0), SloTarget(), NOW)
    assert report.status == "breached"
    assert report.availability == 1.0
    assert report.latency_good_ratio == 0.0
    assert report.p95_ms == 600.0
    assert report.reasons == ("only 0% of successful probes answered within 500 ms; the target is 99%",)


@pytest.mark.parametrize("threshold,good", [(500, 1.0), (300, 0.5), (400, 0.5), (100, 0.0)])
def test_latency_good_ratio_counts_buckets_under_the_threshold(threshold, good):
    probes = [ok(HOUR0 + timedelta(minutes=m), 250 if m % 2 else 450) for m in range(10)]
    report = evaluate([bucket("widgets", HOUR0, probes)], SloTarget(latency_ms=threshold),
                      HOUR0 + timedelta(minutes=30))
    assert report.latency_good_ratio == good


def test_the_window_excludes_old_buckets_and_cuts_the_edge_bucket_by_its_probes():
    now = datetime(2026, 12, 31, 12, 30, tzinfo=UTC)
    target = SloTarget(window=timedelta(hours=2))
    edge = hour_of(datetime(2026, 12, 31, 10, tzinfo=UTC), failed=30)  # 10:00-10:29 fail, 10:30 on ok
    old = hour_of(datetime(2026, 12, 31, 9, tzinfo=UTC), failed=60)
    inside = [hour_of(datetime(2026, 12, 31, 11, tzinfo=UTC)),
              hour_of(datetime(2026, 12, 31, 12, tzinfo=UTC), minutes=31)]
    future = hour_of(datetime(2026, 12, 31, 13, tzinfo=UTC), failed=60)
    report = evaluate([old, edge, *inside, future], target, now)
    assert report.probes == 30 + 60 + 31
    assert report.failed == 0
    assert report.status == "met"
    assert evaluate([old], target, now).status == "no_data"


@pytest.mark.parametrize("failed_last_hour,failed_earlier,burn_1h,burn_6h", [
    (0, 0, 0.0, 0.0),
    (6, 0, 100.0, 100.0 / 6),
    (0, 6, 0.0, 100.0 * 5 / 6),
    (60, 60, 1000.0, 1000.0),
])
def test_burn_rates_over_the_last_hour_and_six_hours(failed_last_hour, failed_earlier, burn_1h, burn_6h):
    now = datetime(2026, 12, 31, 12, 0, tzinfo=UTC)  # on the hour: buckets line up with the windows
    buckets = [hour_of(now - timedelta(hours=1), failed=failed_last_hour)]
    buckets += [hour_of(now - timedelta(hours=h), failed=failed_earlier) for h in range(2, 10)]
    report = evaluate(buckets, SloTarget(), now)
    assert report.burn_rate_1h == pytest.approx(burn_1h)
    assert report.burn_rate_6h == pytest.approx(burn_6h)


def test_a_malformed_document_is_skipped():
    report = evaluate([{"service": "widgets"}, hour_of(slo.hour_start(NOW) - timedelta(hours=1))],
                      SloTarget(), NOW)
    assert report.probes == 60


def test_report_to_doc_is_plain():
    doc = evaluate(hours_back(2), SloTarget(), NOW).to_doc()
    assert doc["met"] is True and doc["status"] == "met" and isinstance(doc["reasons"], list)
