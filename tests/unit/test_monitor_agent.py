"""The monitor agent's parts that need no emulator: the bucket cache between ticks, what a registration
must hold, mentions and markers, and the outbox's collapsing of updates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from functions.monitor_agent import slo
from functions.monitor_agent.agent import BucketCache, MonitorAgent, _plan_checks, id_marker, mention_of
from functions.monitor_agent.store import DEFAULT_CHECKS, MAX_PENDING, RegisteredService, _append, plain
from shared.agent_runtime import Links, TaskContext
from shared.errors import InvalidInput
from shared.messages import AgentTask
from shared.policy import SmokeCheck

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
REPO, SERVICE = "octo/widgets", "widgets"


class FakeBuckets:
    """The store's bucket reads, over a dict of hour -> bucket, counting what is read."""

    def __init__(self, docs):
        self.docs = docs
        self.ranges: list[tuple[datetime, datetime | None]] = []
        self.singles: list[datetime] = []

    def buckets(self, repository, service, since, until=None):
        self.ranges.append((since, until))
        return [dict(doc) for hour, doc in sorted(self.docs.items())
                if hour >= slo.hour_start(since) and (until is None or hour < until)]

    def bucket(self, repository, service, hour):
        self.singles.append(hour)
        doc = self.docs.get(hour)
        return dict(doc) if doc else None


def _hours(count: int, failing_hours: frozenset[int] = frozenset()) -> dict[datetime, dict]:
    """`count` hours of one probe a minute; the hours in `failing_hours` fail every third probe."""
    docs = {}
    for index in range(count):
        hour = T0 + timedelta(hours=index)
        doc = slo.empty_bucket(SERVICE, hour)
        for minute in range(60):
            ok = not (index in failing_hours and minute % 3 == 0)
            doc = slo.add_probe(doc, slo.Probe(hour + timedelta(minutes=minute), ok, 200 if ok else 503,
                                               80.0 + minute))
        docs[hour] = doc
    return docs


def test_the_cache_reads_each_complete_hour_once_and_agrees_with_a_full_read():
    docs = _hours(30, frozenset({2, 5, 27}))
    store = FakeBuckets(docs)
    cache = BucketCache()
    target = slo.SloTarget(window=timedelta(hours=24))
    seen_ranges = 0
    for hour_index in (26, 26, 27, 29):
        now = T0 + timedelta(hours=hour_index, minutes=30)
        current = docs[slo.hour_start(now)]
        window = cache.window(store, REPO, SERVICE, current, now - target.window)
        full = [doc for hour, doc in sorted(docs.items()) if hour <= slo.hour_start(now)]
        assert slo.evaluate(window, target, now) == slo.evaluate(full, target, now)
        assert window[-1] == current
        oldest = slo.hour_start(now - target.window)
        assert [doc["hour"] for doc in window] == [doc["hour"] for doc in full if doc["hour"] >= oldest]
        seen_ranges = len(store.ranges)
    first, *later = store.ranges
    assert first == (T0 + timedelta(hours=2), T0 + timedelta(hours=26))  # the whole window, once
    # The same hour again reads nothing; the next hours read only themselves.
    assert later == [(T0 + timedelta(hours=26), T0 + timedelta(hours=27)),
                     (T0 + timedelta(hours=27), T0 + timedelta(hours=29))]
    assert seen_ranges == 3
    # The hour the window starts in is read afresh each time: its kept probes say what is inside.
    assert store.singles == [T0 + timedelta(hours=2)] * 2 + [T0 + timedelta(hours=3), T0 + timedelta(hours=5)]


def test_the_cache_keeps_kept_probes_only_where_a_window_may_start():
    docs = _hours(12)
    cache = BucketCache()
    now = T0 + timedelta(hours=11, minutes=10)
    window = cache.window(FakeBuckets(docs), REPO, SERVICE, docs[T0 + timedelta(hours=11)],
                          T0 + timedelta(minutes=5))
    # The first hour (read afresh), hours 1-4 without, the 6-hour burn window's hours 5-10, the current.
    assert [len(doc["last"]) for doc in window] == [60] + [0] * 4 + [60] * 6 + [60]
    assert len(slo.recent_probes(window[-2:])) == 60
    report = slo.evaluate(window, slo.SloTarget(window=timedelta(hours=11, minutes=5)), now)
    assert report.probes == 55 + 600 + 60


def test_a_longer_window_reads_the_older_hours_again():
    docs = _hours(10)
    store = FakeBuckets(docs)
    cache = BucketCache()
    current = docs[T0 + timedelta(hours=9)]
    cache.window(store, REPO, SERVICE, current, T0 + timedelta(hours=6))
    longer = cache.window(store, REPO, SERVICE, current, T0 + timedelta(hours=2))
    assert [doc["hour"] for doc in longer][0] == T0 + timedelta(hours=2)
    assert store.ranges[-1] == (T0 + timedelta(hours=2), T0 + timedelta(hours=9))


def _doc(**changes):
    doc = {"repository": REPO, "service": SERVICE, "installation_id": 77, "url": "https://w.example.com/",
           "health": [{"path": "/health"}, {"path": "/ready", "status": 204, "max_latency_ms": 250}],
           "slo": {"availability": 0.995, "latency_ms": 300, "latency_percent": 0.9, "window_days": 7},
           "incident": {"open_after": 4, "close_after": 1, "update_minutes": 0}}
    return {**doc, **changes}


def test_a_registration_is_read_with_its_defaults_and_checked():
    svc = RegisteredService.from_doc(_doc())
    assert svc.url == "https://w.example.com" and svc.key == (REPO, SERVICE)
    assert svc.checks == (SmokeCheck("/health"), SmokeCheck("/ready", 204, 250))
    assert svc.target == slo.SloTarget(0.995, 300, 0.9, timedelta(days=7))
    assert (svc.incident.open_after, svc.incident.close_after_successes) == (4, 1)
    assert svc.incident.update_every == timedelta(0)
    assert svc.enabled and svc.slack and svc.pending == () and svc.state.open_incident is None
    bare = RegisteredService.from_doc(_doc(health=[], slo=None, incident=None))
    assert bare.checks == DEFAULT_CHECKS and bare.target == slo.SloTarget()
    for broken in (_doc(url="ftp://w.example.com"), _doc(repository="widgets"), _doc(service="a/b"),
                   _doc(slo={"availability": 2}), _doc(health=[{"status": 200}]),
                   _doc(incident={"open_after": 0}), _doc(url="https://u:p@w.example.com")):
        with pytest.raises(InvalidInput):
            RegisteredService.from_doc(broken)


def test_mentions_are_only_logins_or_teams_and_markers_are_inert():
    assert mention_of(" @octo/oncall ") == "@octo/oncall" and mention_of("@alice") == "@alice"
    for text in ("", "alice", "@alice please", "@a/b/c", "<script>", "@-x"):
        assert mention_of(text) == ""
    marker = id_marker("outage:octo:widgets:widgets:20261201T1503")
    assert marker == "<!-- agent-ops:incident-id:outage:octo:widgets:widgets:20261201T1503 -->"
    assert "-->" not in id_marker("x --> <b>")[:-4]


def test_a_release_of_an_unregistered_service_is_probed_on_its_plans_smoke_checks():
    release = {"plan": {"smoke": [{"path": "/ping", "status": 204}]}}
    assert _plan_checks(release) == (SmokeCheck("/ping", 204),)
    assert _plan_checks({}) == DEFAULT_CHECKS


def test_the_outbox_keeps_only_the_latest_update_of_an_incident():
    outbox = _append([{"op": "open", "key": "o", "incident_id": "a"}],
                     [{"op": "update", "key": "u1", "incident_id": "a"},
                      {"op": "update", "key": "x1", "incident_id": "b"}])
    outbox = _append(outbox, [{"op": "update", "key": "u2", "incident_id": "a"},
                              {"op": "close", "key": "c", "incident_id": "a"}])
    assert [entry["key"] for entry in outbox] == ["o", "x1", "u2", "c"]
    many = _append([], [{"op": "notify", "key": f"n{i}", "incident_id": str(i)} for i in range(MAX_PENDING)])
    assert len(_append(many, [{"op": "update", "key": "u", "incident_id": "z"}])) == MAX_PENDING + 1
    full = _append([{"op": "update", "key": f"u{i}", "incident_id": str(i)} for i in range(MAX_PENDING)],
                   [{"op": "close", "key": "c", "incident_id": "0"}])
    assert len(full) == MAX_PENDING and full[-1]["key"] == "c" and full[0]["key"] == "u1"


def test_times_read_back_are_written_as_plain_times():
    class Subclass(datetime):
        pass

    value = Subclass(2026, 12, 1, 15, tzinfo=UTC)
    written = plain({"a": [value], "b": {"c": value}, "d": 1})
    assert type(written["a"][0]) is datetime and type(written["b"]["c"]) is datetime
    assert written["a"][0] == value and written["d"] == 1


def test_the_monitor_does_only_its_tick():
    task = AgentTask(task_id="t", kind="open_pull_request", agent="monitor", attempt=1, repository="",
                     installation_id=0, subject="s", source="test", created_at=0, inputs=json.dumps({}))
    ctx = TaskContext(task, client=lambda: None, executor=None, policy=lambda: None, publisher=lambda: None,
                      links=Links(), delivery_id="d", clock=lambda: T0)
    with pytest.raises(InvalidInput):
        MonitorAgent(store=lambda: None).handle(ctx)
