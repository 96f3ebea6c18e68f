"""The repo scout's Firestore store on the emulator: scans, findings open then fixed, the repository's
health, the coverage trend, the health issue, the cursor and the installed repositories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.repo_scout import collect
from functions.repo_scout.health import finding
from functions.repo_scout.store import SCAN_RETENTION, ScoutStore
from functions.test_agent.store import TestStore
from shared.task_store import repo_doc_id

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(services) -> ScoutStore:
    return ScoutStore(services.firestore())


def _scan(scan_id: str, at: datetime, score: int, line_rate: float | None = None) -> dict:
    return {"scan_id": scan_id, "repository": REPO, "scanned_at": at, "score": score,
            "reasons": [f"−{100 - score}: something"], "api_calls": 9, "graphql_cost": 0.5, "reused": False,
            "signature": "abc",
            "coverage": {"line_rate": line_rate, "branch": "main", "at": at, "sha": scan_id},
            "ci": {"runs_30d": 3, "success_rate": 0.5, "last_green_at": at}, "ci_runs": [], "unknown": []}


ALERT = finding("42", "dependabot_alert", "alert:1", "high", "urllib3: a vulnerability",
                link="security/dependabot/1", label="alert 1")
LINT = finding("42", "ci_failing", "workflow:7", "high", "Workflow 'lint' fails on main")


def test_a_scan_writes_its_snapshot_findings_and_the_health(store, services):
    result = store.save_scan(REPO, _scan("s1", T0, 80, 91.5), [ALERT, LINT], now=T0, quiet=False,
                             issue_number=12, scout={"last_scan_id": "s1", "signature": "abc"})
    assert result == {"opened": 2, "fixed": 0}
    doc = store.repo(REPO)
    health = doc["health"]
    assert health == {"score": 80, "reasons": ["−20: something"], "findings_open": 2,
                      "by_severity": {"critical": 0, "high": 2, "medium": 0, "low": 0}, "scanned_at": T0,
                      "scan_id": "s1", "issue_number": 12, "quiet": False}
    assert doc["scout"] == {"last_scan_id": "s1", "signature": "abc"}
    scan = store.scan(REPO, "s1")
    assert scan["expire_at"] == T0 + SCAN_RETENTION and scan["findings_open"] == 2
    assert scan["coverage"]["line_rate"] == 91.5 and isinstance(scan["scanned_at"], datetime)
    found = {doc["fingerprint"]: doc for doc in store.findings(REPO)}
    assert found[ALERT.fingerprint] == {
        "fingerprint": ALERT.fingerprint, "repository": REPO, "kind": "dependabot_alert",
        "identity": "alert:1",
        "severity": "high", "title": ALERT.title, "detail": "", "link": "security/dependabot/1",
        "label": "alert 1", "state": "open", "first_seen": T0, "last_seen": T0, "fixed_at": None}
    # The documents live where the dashboard and the metrics look for them.
    raw = services.firestore().collection("repos").document(repo_doc_id(REPO))
    assert raw.collection("findings").document(LINT.fingerprint).get().exists


def test_findings_go_from_open_to_fixed_and_back(store):
    later, latest = T0 + timedelta(hours=4), T0 + timedelta(hours=8)
    store.save_scan(REPO, _scan("s1", T0, 80), [ALERT, LINT], now=T0, quiet=False, issue_number=None,
                    scout={})
    result = store.save_scan(REPO, _scan("s2", later, 90), [ALERT], now=later, quiet=False, issue_number=None,
                             scout={})
    assert result == {"opened": 0, "fixed": 1}
    found = {doc["fingerprint"]: doc for doc in store.findings(REPO)}
    assert found[LINT.fingerprint]["state"] == "fixed" and found[LINT.fingerprint]["fixed_at"] == later
    assert found[ALERT.fingerprint]["first_seen"] == T0 and found[ALERT.fingerprint]["last_seen"] == later
    assert [item.fingerprint for item in store.open_findings(REPO)] == [ALERT.fingerprint]
    # The workflow fails again: the same finding is open again, first seen anew.
    result = store.save_scan(REPO, _scan("s3", latest, 80), [ALERT, LINT], now=latest, quiet=False,
                             issue_number=None, scout={})
    assert result == {"opened": 1, "fixed": 0}
    lint = {doc["fingerprint"]: doc for doc in store.findings(REPO)}[LINT.fingerprint]
    assert (lint["state"], lint["fixed_at"], lint["first_seen"]) == ("open", None, latest)
    assert store.repo(REPO)["health"]["findings_open"] == 2


def test_the_coverage_trend_comes_from_the_scans_and_the_test_agents_baseline(store, services):
    for day, rate in ((0, 92.0), (10, 90.0), (20, None)):
        at = T0 + timedelta(days=day)
        store.save_scan(REPO, _scan(f"s{day}", at, 90, rate), [], now=at, quiet=False, issue_number=None,
                        scout={})
    baseline = {"version": 1, "coverage": {"line_rate": 88.0}}
    TestStore(services.firestore()).save_baseline(REPO, "main", baseline, sha="c3",
                                                  now=T0 + timedelta(days=25))
    since = T0 + timedelta(days=5)
    scans = store.scans(REPO, since=since)
    assert [scan["scan_id"] for scan in scans] == ["s10", "s20"]  # oldest first, from `since`
    points, current = collect.coverage_history(store.scans(REPO), store.baseline(REPO, "main"), "main")
    assert [(point.line_rate, point.sha) for point in points] == [(92.0, "s0"), (90.0, "s10"), (88.0, "c3")]
    assert current["line_rate"] == 88.0 and current["sha"] == "c3"


def test_the_issue_the_cursor_and_the_installed_repositories(store, services):
    assert store.issue(REPO) == {} and store.cursor(77) is None
    store.save_issue(REPO, number=5, open_=True, body="body", now=T0)
    assert store.issue(REPO) == {"number": 5, "open": True, "body": "body", "updated_at": T0}
    store.save_cursor(77, "octo/widgets", now=T0, reason="the budget", scan_id="s1")
    assert store.cursor(77) == "octo/widgets"
    store.save_cursor(77, None, now=T0)
    assert store.cursor(77) is None
    repos = services.firestore().collection("repos")
    repos.document("octo:gadgets").set({"full_name": "octo/gadgets", "installation_id": 77,
                                        "installed": True})
    repos.document("octo:gone").set({"full_name": "octo/gone", "installation_id": 77, "installed": False})
    assert store.installed() == {77: ["octo/gadgets"]}
    store.save_signature(REPO, "d1")
    assert store.repo(REPO)["scout"]["signature"] == "d1"


def test_one_turn_at_a_time_holds_a_repositorys_scan_lease(store):
    ttl = timedelta(minutes=15)
    assert store.claim_scan(REPO, "tick-1/a", T0, ttl) is True
    assert store.claim_scan(REPO, "tick-1/a", T0, ttl) is True  # its own lease, taken again
    assert store.claim_scan(REPO, "tick-1/b", T0 + timedelta(minutes=1), ttl) is False  # a redelivery
    assert store.claim_scan("octo/gadgets", "tick-1/b", T0, ttl) is True  # another repository
    store.release_scan(REPO, "tick-1/b")  # not its lease: left alone
    assert store.claim_scan(REPO, "cli/c", T0 + timedelta(minutes=2), ttl) is False
    store.release_scan(REPO, "tick-1/a")
    assert store.claim_scan(REPO, "cli/c", T0 + timedelta(minutes=2), ttl) is True
    # A lease its turn left behind (crashed) expires.
    assert store.claim_scan(REPO, "tick-2/d", T0 + timedelta(minutes=30), ttl) is True
