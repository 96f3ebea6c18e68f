"""The monitor agent's minute ticks with the real runner, the Firestore emulator, the GitHub sandbox and a
loopback service whose health the test flips: one incident issue per outage, updated in place, closed
with its duration; idempotent per minute; releases measured and woken; one bad service never stops
the others."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from functions.monitor_agent.agent import MonitorAgent
from functions.monitor_agent.store import MonitorStore, RegisteredService, incident_id
from shared.errors import RetryableError
from shared.policy import parse_policy
from tests.support.monitor import HealthApp, MonitorHarness, RecordingNotifier, monitor_harness
from tests.support.push import serve

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"
SERVICE = "widgets"
START = datetime(2026, 12, 1, 15, 0, 30, tzinfo=UTC)  # mid-minute: the tick's minute is what counts
POLICY = """\
version: 1
deploy:
  service: widgets
monitor:
  health:
    - path: /health
    - path: /ready
  incident: {open_after: 3, close_after: 2, update_minutes: 15}
notify:
  mention: "@octo/oncall"
"""


@dataclass
class World:
    h: MonitorHarness
    app: HealthApp
    url: str
    store: MonitorStore
    agent: MonitorAgent
    slack: RecordingNotifier
    policy: object

    def tick(self, minutes: float = 1):
        result = self.h.tick(self.agent)
        self.h.clock.advance(minutes=minutes)
        return result

    def issues(self, repository: str = REPO) -> list[dict]:
        return self.h.issues(repository)

    def state(self, repository: str = REPO, service: str = SERVICE) -> RegisteredService:
        return RegisteredService.from_doc(self.store.service(repository, service))

    def comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.h.github.comments
                if c["issue_number"] == number and c["repo"] == REPO]


@pytest.fixture
def w(services) -> Iterator[World]:
    app = HealthApp()
    policy = parse_policy(POLICY).policy
    with serve(app) as url, monitor_harness(START) as h:
        store = MonitorStore(services.firestore())
        slack = RecordingNotifier()
        agent = MonitorAgent(store=lambda: store, notifier=lambda: slack)
        store.register_service(REPO, 77, SERVICE, url, policy, START)
        yield World(h, app, url, store, agent, slack, policy)


def _details(result) -> dict:
    assert result.status == "succeeded", result.summary
    return result.detail_values()


def test_an_outage_opens_one_issue_updates_it_and_closes_it_with_its_duration(w):
    for _ in range(2):
        _details(w.tick())
    assert w.issues() == []
    w.app.healthy = False
    for _ in range(2):
        _details(w.tick())
    assert w.issues() == []  # open_after: 3

    opened = _details(w.tick())  # 15:04, the third failure in a row
    assert opened["opened"] == 1
    [issue] = w.issues()
    number = issue["number"]
    assert issue["state"] == "open" and issue["title"].startswith("Incident: widgets")
    assert set(issue["labels"]) >= {"incident"}
    assert "cc @octo/oncall" in issue["body"] and "<!-- agent-ops:incident:widgets -->" in issue["body"]
    assert "token=do-not-show" not in issue["body"]  # the service's answer is never quoted
    assert "Failed probes | 3" in issue["body"]
    assert w.state().state.open_incident.number == number and w.state().pending == ()
    assert [key.rsplit(":", 1)[-1] for key in w.slack.sent] == ["notify-open"]

    for _ in range(16):  # 15:05 .. 15:20: one update, when 15 minutes have passed
        details = _details(w.tick())
        assert details["opened"] == 0
    [issue] = w.issues()
    assert issue["number"] == number and issue["state"] == "open"
    assert "Failed probes | 18" in issue["body"]  # edited in place at 15:19
    updates = [key for key in w.h.audit.records
               if ":update:" in key and not key.endswith(("dry_run", "refused"))]
    assert len(updates) == 1, updates

    w.app.healthy = True
    _details(w.tick())
    assert w.issues()[0]["state"] == "open"  # close_after: 2
    closing = _details(w.tick())  # 15:22
    assert closing["closed"] == 1
    [issue] = w.issues()
    assert issue["number"] == number and issue["state"] == "closed"
    assert "Resolved: widgets recovered after 18 min" in issue["body"]
    [comment] = w.comments(number)
    assert "recovered after 18 min" in comment and "cc @octo/oncall" in comment

    record = w.store.incident(incident_id(REPO, SERVICE, datetime(2026, 12, 1, 15, 4, tzinfo=UTC)))
    assert record["kind"] == "outage" and record["issue_number"] == number
    assert record["duration_seconds"] == 18 * 60
    assert record["failing_since"] == datetime(2026, 12, 1, 15, 2, tzinfo=UTC)
    assert w.store.mttr(START - timedelta(hours=1)) == timedelta(minutes=18)
    assert sorted(key.rsplit(":", 1)[-1] for key in w.slack.sent) == ["notify-close", "notify-open"]
    assert w.state().state.open_incident is None and w.state().pending == ()

    report = w.store.service(REPO, SERVICE)["slo_report"]
    assert report["probes"] == 23 and report["failed"] == 19 and report["status"] == "breached"


def test_a_redelivered_tick_counts_once_and_opens_no_second_issue(w):
    w.app.healthy = False
    for _ in range(2):
        w.tick()
    first = w.tick(minutes=0)  # the third failure: the issue opens
    assert _details(first)["opened"] == 1
    w.h.clock.advance(seconds=20)  # still the same minute
    again = w.h.redeliver(w.agent)
    assert _details(again)["opened"] == 0
    assert len(w.issues()) == 1
    bucket = w.store.bucket(REPO, SERVICE, START)
    assert bucket["probes"] == 3 and bucket["minutes"] == [0, 1, 2]
    assert w.state().state.consecutive_failures == 3


def test_a_crash_after_the_issue_is_made_resumes_without_a_second_one(w, monkeypatch):
    w.app.healthy = False
    for _ in range(2):
        w.tick()
    real = w.store.settle
    crashes = {"left": 1}

    def crash_once(*args, **kwargs):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RetryableError("the instance died after opening the issue")
        return real(*args, **kwargs)

    monkeypatch.setattr(w.store, "settle", crash_once)
    with pytest.raises(RetryableError):  # the only service failed: the tick is redelivered
        w.h.tick(w.agent)
    assert len(w.issues()) == 1
    redelivered = _details(w.h.redeliver(w.agent))
    assert redelivered["opened"] == 0
    [issue] = w.issues()
    assert w.state().state.open_incident.number == issue["number"] and w.state().pending == ()


def test_a_transient_github_error_waits_for_the_next_tick(w, monkeypatch):
    w.app.healthy = False
    for _ in range(2):
        w.tick()
    real = w.h.github.wsgi
    failures = {"left": 1}

    def bad_gateway_once(environ, start_response):
        """GitHub answers one issue creation 502: the client does not retry a POST."""
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == f"/repos/{REPO}/issues" \
                and failures["left"]:
            failures["left"] -= 1
            start_response("502 Bad Gateway", [("Content-Type", "application/json")])
            return [b'{"message": "Server Error"}']
        return real(environ, start_response)

    monkeypatch.setattr(w.h.github, "wsgi", bad_gateway_once)
    deferred = _details(w.tick())
    assert failures["left"] == 0
    assert w.issues() == [] and deferred["deferred"], deferred
    assert [entry["op"] for entry in w.state().pending] == ["open", "notify"]
    assert w.slack.sent == {}

    later = _details(w.tick())
    assert later["opened"] == 1 and len(w.issues()) == 1 and w.state().pending == ()
    assert len(w.slack.sent) == 1


def test_slack_failing_for_a_while_is_told_once_later(w):
    w.app.healthy = False
    w.slack.fail_next = 1
    for _ in range(3):
        w.tick()
    assert len(w.issues()) == 1 and w.slack.sent == {}
    assert [entry["op"] for entry in w.state().pending] == ["notify"]
    w.tick()
    assert len(w.slack.sent) == 1 and w.state().pending == ()
    assert "Incident in octo/widgets: widgets is failing" in next(iter(w.slack.sent.values()))


def test_buckets_are_one_document_per_hour(w, services):
    w.h.clock.now = datetime(2026, 12, 1, 15, 57, 10, tzinfo=UTC)
    for _ in range(5):  # 15:57 .. 16:01
        w.tick()
    health = services.firestore().collection("repos/octo:widgets/services/widgets/health")
    docs = {snapshot.id: snapshot.to_dict() for snapshot in health.stream()}
    assert sorted(docs) == ["widgets@2026-12-01T15", "widgets@2026-12-01T16"]
    assert docs["widgets@2026-12-01T15"]["minutes"] == [57, 58, 59]
    assert docs["widgets@2026-12-01T16"]["minutes"] == [0, 1]
    assert w.app.hits == {"/health": 5, "/ready": 5}


def test_a_breach_during_a_release_is_written_to_its_health_and_the_release_is_woken(w, services):
    version = HealthApp()
    db = services.firestore()
    with serve(version) as version_url:
        db.document("deployments/rel-1").set({
            "id": "rel-1", "repository": REPO, "service": SERVICE, "state": "canary", "active": True,
            "version": "v2", "version_url": version_url, "sha": "b" * 40, "step_started_at": START})
        db.document("deployments/rel-0").set({"repository": REPO, "service": SERVICE, "state": "rolled_back",
                                              "active": False})
        db.document("deployments/rel-2").set({"repository": "octo/gadgets", "service": "default",
                                              "state": "building", "active": True})
        healthy = _details(w.tick())
        assert healthy["wake"] == ["release:rel-1", "release:rel-2"] and healthy["releases"] == 1

        w.app.healthy = False  # production fails; the new version itself answers
        breached = _details(w.tick(minutes=0))
        redelivered = _details(w.h.redeliver(w.agent))
        assert breached["wake"] == redelivered["wake"] == ["release:rel-1", "release:rel-2"]
        assert redelivered["releases"] == 0  # this minute's document exists
        w.h.clock.advance(minutes=1)
        version.statuses["/ready"] = 500
        _details(w.tick())

    docs = w.store.release_health("rel-1", START - timedelta(minutes=1))
    assert [d["at"].strftime("%H:%M") for d in docs] == ["15:00", "15:01", "15:02"]
    first, second, third = docs
    assert first["breach"] == "" and first["probes"] == 2 and first["failures"] == 0
    assert len(first["latencies_ms"]) == 2 and first["version"] == "v2"
    assert "widgets failed its health probe 1 time(s) in a row" in second["breach"]
    assert second["failures"] == 0 and second["production"]["ok"] is False
    assert third["failures"] == 1 and third["errors"] == ["/ready: expected status 200, got 500"]
    assert "2 time(s) in a row" in third["breach"]
    assert db.collection("deployments/rel-2/health").get() == []
    assert version.hits == {"/health": 3, "/ready": 3}  # the redelivery probed nothing again


def test_a_refused_github_write_and_a_broken_registration_do_not_stop_the_others(w, services):
    # A service of a repository GitHub does not have: every write there is refused.
    w.store.register_service("octo/ghost", 77, "ghost", w.url, w.policy, START)
    services.firestore().document("repos/octo:broken/services/broken").set(
        {"repository": "octo/broken", "service": "broken", "url": "ftp://broken.example.com"})
    w.app.healthy = False
    for _ in range(2):
        _details(w.tick())
    details = _details(w.tick())

    assert details["services"] == 2 and details["opened"] == 1
    assert any("octo/broken" in problem for problem in details["problems"]), details["problems"]
    assert any("refused to open the incident issue of octo/ghost" in p for p in details["problems"])
    assert len(w.issues()) == 1
    ghost = w.state("octo/ghost", "ghost")
    assert ghost.state.open_incident is not None and ghost.pending == ()
    record = w.store.incident(incident_id("octo/ghost", "ghost", datetime(2026, 12, 1, 15, 2, tzinfo=UTC)))
    assert record is not None and record["issue_number"] == 0  # still counted for MTTR
    assert sorted(text.split(":")[0] for text in w.slack.sent.values()) == [
        "Incident in octo/ghost", "Incident in octo/widgets"]

    w.app.healthy = True
    for _ in range(2):
        details = _details(w.tick())
    assert w.issues()[0]["state"] == "closed"
    assert any("no issue to close" in problem for problem in details["problems"]), details["problems"]
    assert w.store.incident(record["incident_id"])["duration_seconds"] == 120


def test_a_disabled_or_paused_service_is_not_probed(w):
    w.agent = MonitorAgent(store=lambda: w.store, notifier=lambda: w.slack,
                           stop_reason=lambda repository: "paused" if repository == REPO else "")
    details = _details(w.tick())
    assert details["services"] == 0 and w.app.total_hits() == 0
    assert w.store.bucket(REPO, SERVICE, START) is None


def test_slack_hears_of_an_incident_once_through_the_real_notifier(w):
    from shared.notify import SlackNotifier

    posted: list[dict] = []
    answers = [503]

    def webhook(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        status = answers.pop(0) if answers else 200
        if status == 200:
            posted.append(json.loads(body))
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [b"ok" if status == 200 else b"try later"]

    with serve(webhook) as hook:
        slack = SlackNotifier(f"{hook}/services/T000/B000/secret", lambda: w.h.audit)
        w.agent = MonitorAgent(store=lambda: w.store, notifier=lambda: slack)
        w.app.healthy = False
        for _ in range(3):
            w.tick()
        assert posted == [] and [e["op"] for e in w.state().pending] == ["notify"]  # Slack said 503
        w.tick(minutes=0)
        w.h.redeliver(w.agent)
    [message] = posted
    [issue] = w.issues()
    assert message["text"].startswith("Incident in octo/widgets: widgets is failing its health checks")
    assert f"/issues/{issue['number']}" in message["text"]
