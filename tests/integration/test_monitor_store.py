"""The monitor's Firestore store on the emulator: registry, hourly buckets, state with its outbox,
incidents for MTTR, and the per-minute health of releases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.monitor_agent.incidents import ActiveIncident, MonitorState
from functions.monitor_agent.slo import Probe
from functions.monitor_agent.store import (
    MonitorStore,
    RegisteredService,
    Settled,
    incident_id,
    minute_id,
)
from shared.errors import InvalidInput
from shared.policy import SmokeCheck, parse_policy

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"
T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
POLICY = """\
version: 1
deploy:
  service: widgets
monitor:
  health:
    - path: /health
    - path: /ready
      status: 204
      max_latency_ms: 300
  slo: {availability: 0.99, latency_ms: 300, latency_percent: 0.95, window_days: 7}
  incident: {open_after: 2, close_after: 3, update_minutes: 10}
notify:
  mention: "@octo/oncall"
  slack: false
"""


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


@pytest.fixture
def store(services) -> MonitorStore:
    return MonitorStore(services.firestore())


@pytest.fixture
def policy():
    load = parse_policy(POLICY)
    assert load.source != "invalid", load
    return load.policy


def test_a_registration_carries_the_policy_and_never_resets_the_state(store, services, policy):
    written = store.register_service(REPO, 77, "widgets", "https://widgets.example.com/", policy, T0)
    assert written["url"] == "https://widgets.example.com"
    raw = services.firestore().document("repos/octo:widgets/services/widgets").get().to_dict()
    assert raw["health"] == [{"path": "/health", "status": 200, "max_latency_ms": 1000},
                             {"path": "/ready", "status": 204, "max_latency_ms": 300}]
    assert raw["slo"] == {"availability": 0.99, "latency_ms": 300, "latency_percent": 0.95, "window_days": 7}
    assert raw["incident"] == {"open_after": 2, "close_after": 3, "update_minutes": 10}
    assert (raw["mention"], raw["slack"], raw["installation_id"]) == ("@octo/oncall", False, 77)
    assert raw["updated_at"] == T0 and raw["enabled"] is True

    state = MonitorState(2, 0, ActiveIncident(12, at(1), at(1), 2, "status 503", at(0)), at(2), at(0))
    waiting = [{"op": "update", "key": "k1", "incident_id": "i", "number": 12}]
    written = store.save_state(REPO, "widgets", state, None, expect_last_probe_at=None, pending=waiting)
    assert written is not None
    store.register_service(REPO, 77, "widgets", "https://widgets.example.com", policy, at(5))

    svc = RegisteredService.from_doc(store.service(REPO, "widgets"))
    assert svc.state == state and [entry["key"] for entry in svc.pending] == ["k1"]
    assert svc.checks == (SmokeCheck("/health"), SmokeCheck("/ready", 204, 300))
    assert svc.target.window == timedelta(days=7) and svc.target.availability == 0.99
    assert (svc.incident.open_after, svc.incident.close_after_successes) == (2, 3)
    assert svc.incident.update_every == timedelta(minutes=10)


@pytest.mark.parametrize("url", ["ftp://widgets.example.com", "https://", "widgets.example.com",
                                 "https://user:secret@widgets.example.com"])
def test_a_url_the_monitor_cannot_probe_is_refused(store, policy, url):
    with pytest.raises(InvalidInput):
        store.register_service(REPO, 77, "widgets", url, policy, T0)


def test_services_are_found_across_repositories_and_nowhere_else(store, services, policy):
    store.register_service(REPO, 77, "widgets", "https://widgets.example.com", policy, T0)
    store.register_service("octo/gadgets", 77, "default", "https://gadgets.example.com", policy, T0)
    services.firestore().document("elsewhere/x/services/stray").set({"service": "stray"})

    found = sorted((doc["repository"], doc["service"]) for doc in store.services())
    assert found == [("octo/gadgets", "default"), (REPO, "widgets")]


def test_a_bucket_is_one_document_per_hour_and_counts_a_minute_once(store, services):
    first, added = store.add_probe(REPO, "widgets", Probe(at(1), True, 200, 80.0))
    assert added and first["probes"] == 1
    again, added = store.add_probe(REPO, "widgets", Probe(at(1.5), False, 503, 10.0, "late"))
    assert not added and again["probes"] == 1 and again["failed"] == 0
    store.add_probe(REPO, "widgets", Probe(at(2), False, 503, 10.0, "down"))
    store.add_probe(REPO, "widgets", Probe(at(61), True, 200, 90.0))

    health = services.firestore().collection("repos/octo:widgets/services/widgets/health")
    docs = {snapshot.id: snapshot.to_dict() for snapshot in health.stream()}
    assert sorted(docs) == ["widgets@2026-12-01T15", "widgets@2026-12-01T16"]
    hour = docs["widgets@2026-12-01T15"]
    assert (hour["probes"], hour["ok"], hour["failed"], hour["minutes"]) == (2, 1, 1, [1, 2])
    assert hour["expire_at"] == T0 + timedelta(days=32) and hour["repository"] == REPO

    assert [doc["hour"] for doc in store.buckets(REPO, "widgets", at(30))] == [T0, at(60)]
    assert [doc["hour"] for doc in store.buckets(REPO, "widgets", T0, until=at(60))] == [T0]
    assert store.bucket(REPO, "widgets", at(60))["probes"] == 1
    assert store.bucket(REPO, "widgets", at(120)) is None


def test_state_is_written_once_per_probe_with_its_outbox_and_incident(store, policy):
    store.register_service(REPO, 77, "widgets", "https://widgets.example.com", policy, T0)
    iid = incident_id(REPO, "widgets", at(2))
    assert iid == "outage:octo:widgets:widgets:20261201T1502"
    opened = MonitorState(2, 0, ActiveIncident(0, at(2), at(2), 2, "status 503", at(1)), at(2), at(1))
    outbox = store.save_state(
        REPO, "widgets", opened, None, expect_last_probe_at=None,
        pending=[{"op": "open", "key": "open", "incident_id": iid},
                 {"op": "update", "key": "u1", "incident_id": iid, "number": 0}],
        opened={"incident_id": iid, "repository": REPO, "service": "widgets", "kind": "outage",
                "opened_at": at(2), "failing_since": at(1)})
    assert [entry["key"] for entry in outbox] == ["open", "u1"]
    # Another tick's view of the state (an older last probe) writes nothing.
    assert store.save_state(REPO, "widgets", MonitorState(), None, expect_last_probe_at=at(1)) is None

    later = MonitorState(3, 0, opened.open_incident, at(3), at(1))
    outbox = store.save_state(REPO, "widgets", later, None, expect_last_probe_at=at(2),
                              pending=[{"op": "update", "key": "u2", "incident_id": iid, "number": 0}])
    assert [entry["key"] for entry in outbox] == ["open", "u2"]  # the newer update replaces the older

    store.settle(REPO, "widgets", ["open"], [Settled(iid, 31, "https://github.example/octo/widgets/issues/31")])
    svc = RegisteredService.from_doc(store.service(REPO, "widgets"))
    assert svc.state.open_incident.number == 31
    assert [(entry["key"], entry["number"]) for entry in svc.pending] == [("u2", 31)]
    record = store.incident(iid)
    assert (record["issue_number"], record["closed_at"], record["kind"]) == (31, None, "outage")
    assert record["issue_url"].endswith("/31")

    recovered = MonitorState(0, 3, None, at(9), None)
    store.save_state(REPO, "widgets", recovered, None, expect_last_probe_at=at(3), closed=(iid, at(9)))
    record = store.incident(iid)
    assert record["closed_at"] == at(9) and record["duration_seconds"] == 7 * 60
    # Closing again (a redelivered tick) keeps the first closing.
    assert store.close_incident(iid, at(30))["closed_at"] == at(9)
    assert store.mttr(T0) == timedelta(minutes=7)
    assert store.mttr(at(5)) is None  # opened before `since`


def test_the_deploy_agents_incident_record_is_kept_not_reset(store):
    store.record_incident(incident_id="rollback-r1", repository=REPO, service="widgets", kind="rollback",
                          issue_number=0, opened_at=at(0), release_id="r1", sha="a" * 40)
    store.record_incident(incident_id="rollback-r1", repository=REPO, service="widgets", kind="rollback",
                          issue_number=9, opened_at=at(4), release_id="r1", sha="a" * 40)
    store.close_incident("rollback-r1", at(10))
    store.record_incident(incident_id="rollback-r1", repository=REPO, service="widgets", kind="rollback",
                          issue_number=0, opened_at=at(12), release_id="r1", sha="a" * 40)

    record = store.incident("rollback-r1")
    assert (record["opened_at"], record["issue_number"], record["closed_at"]) == (at(0), 9, at(10))
    assert record["duration_seconds"] == 600 and record["release_id"] == "r1"
    assert store.close_incident("nothing", at(1)) is None
    assert [doc["incident_id"] for doc in store.incidents(T0, kind="rollback")] == ["rollback-r1"]
    assert store.incidents(T0, repository="octo/gadgets") == []
    assert store.mttr(T0, kind="outage") is None and store.mttr(T0) == timedelta(minutes=10)


def test_releases_are_read_and_their_health_written_once_a_minute(store, services):
    db = services.firestore()
    db.document("deployments/r-live").set({"repository": REPO, "service": "widgets", "active": True,
                                           "state": "canary"})
    db.document("deployments/r-done").set({"repository": REPO, "service": "widgets", "active": False,
                                           "state": "succeeded"})
    assert [doc["id"] for doc in store.active_releases()] == ["r-live"]

    doc = {"at": at(3), "version": "v2", "probes": 2, "failures": 1, "latencies_ms": [40.0],
           "errors": ["/health: status 503"], "breach": ""}
    assert store.record_release_health("r-live", doc)
    assert not store.record_release_health("r-live", {**doc, "failures": 0})  # the same minute
    assert store.record_release_health("r-live", {**doc, "at": at(4), "breach": "widgets is failing"})
    assert store.has_release_health("r-live", at(3)) and not store.has_release_health("r-live", at(5))

    assert minute_id(at(3)) == "20261201T1503"
    stored = db.document("deployments/r-live/health/20261201T1503").get().to_dict()
    assert stored["failures"] == 1 and stored["expire_at"] == at(3) + timedelta(days=30)
    assert [(d["at"], d["breach"]) for d in store.release_health("r-live", at(0))] == [
        (at(3), ""), (at(4), "widgets is failing")]
    assert [d["at"] for d in store.release_health("r-live", at(4))] == [at(4)]
    assert store.release_health("nothing", at(0)) == []
    with pytest.raises(InvalidInput):
        store.record_release_health("r-live", {"at": datetime(2026, 12, 1, 15, 0)})
