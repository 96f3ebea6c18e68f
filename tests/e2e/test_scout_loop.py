"""The repo scout end to end: the real functions on the emulators and the GitHub sandbox, a fake clock.

The sandbox's organisation is seeded with failing and passing workflow runs, Dependabot and code
scanning alerts, an unprotected branch and a pull request nobody reviewed. The `repo_scout` tick goes
through the orchestrator to the scout, twice: each repository gets one health issue listing its
findings, and the second scan of an unchanged repository is answered from the GraphQL signature, its
REST cost near zero. Then the findings are fixed: ticked in the same issue, which closes when all are.
Last, the budget: with little rate limit left, the scout stops before it runs out and the next tick
resumes where it stopped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.task_store import repo_doc_id
from tests.support.world import World, world

pytestmark = pytest.mark.emulators

WIDGETS, GADGETS = "octo/widgets", "octo/gadgets"
REPOS = (GADGETS, WIDGETS)
# The sandbox stamps what people do with the real time; the test's clock runs three days ahead, so the
# pull request opened now has waited longer than the first-review threshold (48 hours) at the first scan.
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
MAX_FIRST_SCAN_CALLS = 15  # per repository: about ten reads, the marker search and the issue's creation
MAX_UNCHANGED_CALLS = 1  # per unchanged repository: its share of the GraphQL query, no REST request at all


@pytest.fixture
def w(env, project):
    with world(env, project, start=START) as the_world:
        the_world.pump()
        yield the_world


def _seed(w: World) -> dict[str, Any]:
    gh = w.github
    lint_red = gh.run_workflow(WIDGETS, "lint", "main", conclusion="failure")
    gh.run_workflow(WIDGETS, "ci", "main", conclusion="success")
    high = gh.add_dependabot_alert(WIDGETS, "urllib3", "high")
    scanning = gh.add_code_scanning_alert(WIDGETS, "py/sql-injection", "high")
    gh.push_commit(GADGETS, "feature", {"lib.py": "VALUE = 2\n"}, message="a change")
    pull = gh.open_pull(GADGETS, "feature", "Change the value", author="bob")
    gh.open_issue(GADGETS, "A question", author="carol")
    w.pump()
    return {"lint_red": lint_red, "high": high, "scanning": scanning, "pull": pull["number"]}


def _scan(w: World, hours: float = 4) -> dict[str, int]:
    """Advance the clock, publish the scout's tick and deliver everything; the sandbox requests served."""
    w.advance(hours=hours)
    before = len(w.github.requests)
    w.tick("repo_scout")
    w.pump()
    served = w.github.requests[before:]
    return {"served": len(served), "graphql": sum(1 for method, path, _ in served if path == "/graphql")}


def _health_issues(w: World, repo: str) -> list[dict[str, Any]]:
    """Every health issue of the repository, open or closed, as the sandbox holds them."""
    found = [issue for (name, _), issue in w.github._issues.items()
             if name == repo and not issue["pull_request"] and "repo-health" in issue["labels"]]
    return sorted(found, key=lambda issue: issue["number"])


def _repo_doc(w: World, repo: str) -> dict[str, Any]:
    return w.services.firestore().collection("repos").document(repo_doc_id(repo)).get().to_dict() or {}


def _scan_doc(w: World, repo: str) -> dict[str, Any]:
    scan_id = _repo_doc(w, repo)["health"]["scan_id"]
    ref = w.services.firestore().collection("repos").document(repo_doc_id(repo)).collection("scans")
    return ref.document(scan_id).get().to_dict() or {}


def _findings(w: World, repo: str) -> dict[str, dict[str, Any]]:
    ref = w.services.firestore().collection("repos").document(repo_doc_id(repo)).collection("findings")
    return {snap.id: snap.to_dict() for snap in ref.stream()}


def _comments_on(w: World, repo: str, number: int) -> list[dict[str, Any]]:
    return [c for c in w.github.comments if c["repo"] == repo and c["issue_number"] == number]


def test_two_scans_keep_one_issue_per_repository_and_an_unchanged_repository_costs_almost_nothing(w):
    seeded = _seed(w)

    first = _scan(w)
    issues = {repo: _health_issues(w, repo) for repo in REPOS}
    assert all(len(found) == 1 for found in issues.values()), issues
    widgets_issue, gadgets_issue = issues[WIDGETS][0], issues[GADGETS][0]
    body = widgets_issue["body"]
    assert widgets_issue["state"] == "open" and "- [ ] **High**" in body
    assert "Workflow 'lint' fails on main" in body
    assert "urllib3" in body and "py/sql-injection" in body
    assert "not protected" in gadgets_issue["body"] and "Change the value" in gadgets_issue["body"]

    health = _repo_doc(w, WIDGETS)["health"]
    assert health["issue_number"] == widgets_issue["number"] and 0 <= health["score"] < 100
    assert health["findings_open"] >= 4 and health["by_severity"]["high"] >= 3
    scan1 = {repo: _scan_doc(w, repo) for repo in REPOS}
    for repo, scan in scan1.items():
        assert scan["reused"] is False and 0 < scan["api_calls"] <= MAX_FIRST_SCAN_CALLS, (repo, scan)
        assert isinstance(scan["scanned_at"], datetime)
    assert [run["conclusion"] for run in scan1[WIDGETS]["ci_runs"]][:2] == ["success", "failure"]
    assert scan1[WIDGETS]["ci"]["runs_30d"] == 3 and scan1[WIDGETS]["ci"]["last_green_at"] is not None
    findings = _findings(w, WIDGETS)
    kinds = {doc["kind"] for doc in findings.values()}
    assert kinds >= {"ci_failing", "dependabot_alert", "code_scanning_alert"}
    assert all(doc["state"] == "open" for doc in findings.values())
    # What the scan documents count is what the sandbox served (the tick's token and the installation
    # listing are the App's and no repository's).
    assert sum(scan["api_calls"] for scan in scan1.values()) <= first["served"]

    edits_before = {repo: (issues[repo][0]["updated_at"], issues[repo][0]["body"]) for repo in REPOS}
    second = _scan(w)
    for repo in REPOS:
        [issue] = _health_issues(w, repo)  # the same one: no second issue
        assert (issue["updated_at"], issue["body"]) == edits_before[repo], f"{repo}'s issue was edited"
        assert _comments_on(w, repo, issue["number"]) == []
    scan2 = {repo: _scan_doc(w, repo) for repo in REPOS}
    for repo, scan in scan2.items():
        assert scan["scan_id"] != scan1[repo]["scan_id"]
        assert scan["reused"] is True, (repo, scan)
        assert scan["api_calls"] <= MAX_UNCHANGED_CALLS, (repo, scan)
        # No REST request: not even the policy (a file of the default branch: no push, no change).
        assert scan["rest_calls"] == 0, (repo, scan)
        assert scan["score"] == scan1[repo]["score"]
    assert second["graphql"] == 1  # both repositories' signatures in one query
    assert second["served"] <= first["served"] / 3
    print(f"\nAPI calls per repository: scan 1 {({r: s['api_calls'] for r, s in scan1.items()})}, "
          f"scan 2 {({r: s['api_calls'] for r, s in scan2.items()})}; sandbox served {first['served']} then "
          f"{second['served']} requests")

    # Fixed: the high alert, and lint is green again. The same issue is edited with them ticked.
    for alert in w.github._dependabot_alerts:  # the sandbox has no control action for fixing an alert
        if alert["repo"] == WIDGETS and alert["number"] == seeded["high"]:
            alert["state"] = "fixed"
    w.github.run_workflow(WIDGETS, "lint", "main", conclusion="success")
    w.pump()
    _scan(w)
    [issue] = _health_issues(w, WIDGETS)
    assert issue["number"] == widgets_issue["number"] and issue["state"] == "open"
    assert "- [x] **High**" in issue["body"] and "urllib3" in issue["body"]
    assert _comments_on(w, WIDGETS, issue["number"]) == []
    findings = _findings(w, WIDGETS)
    fixed = {doc["kind"] for doc in findings.values() if doc["state"] == "fixed"}
    assert fixed == {"ci_failing", "dependabot_alert"}, fixed
    assert all(doc["fixed_at"] is not None for doc in findings.values() if doc["state"] == "fixed")

    # Everything fixed in gadgets: protected, reviewed, the question answered. Its issue is closed.
    w.github.protect_branch(GADGETS, "main", ["ci"])
    w.github.review(GADGETS, seeded["pull"], "alice", "APPROVED")
    w.pump()
    _scan(w, hours=25)  # past refresh_hours: branch protection is not in the signature
    [issue] = _health_issues(w, GADGETS)
    assert issue["state"] == "closed", issue["body"]
    assert "all findings fixed" in issue["body"]
    assert _repo_doc(w, GADGETS)["health"]["findings_open"] == 0
    assert _comments_on(w, GADGETS, issue["number"]) == []


def test_the_scout_stops_before_the_budget_runs_out_and_the_next_tick_resumes(w):
    _seed(w)
    _scan(w)
    scanned_first = {repo: _scan_doc(w, repo)["scan_id"] for repo in REPOS}
    # widgets changes (a new alert): it must be read again, at about 40 calls before any is measured.
    # gadgets is unchanged and costs about nothing. Little is left of the installation's REST budget
    # (the reserve is 1,000 of 5,000), reset long after the test's clock.
    w.github.add_dependabot_alert(WIDGETS, "jinja2", "critical")
    w.github.set_rate_limit(remaining=1020, reset_in=int(timedelta(days=10).total_seconds()))
    _scan(w)
    assert _scan_doc(w, GADGETS)["scan_id"] != scanned_first[GADGETS]  # scanned, from its signature
    assert _scan_doc(w, WIDGETS)["scan_id"] == scanned_first[WIDGETS]  # not scanned: no budget left
    installation = w.services.firestore().collection("installations").document("77").get().to_dict()
    assert installation["scout"]["cursor"] == WIDGETS, installation
    assert "the next tick resumes at octo/widgets" in installation["scout"]["reason"]
    assert "jinja2" not in _health_issues(w, WIDGETS)[0]["body"]

    w.github.set_rate_limit(remaining=5000)
    _scan(w)
    assert "jinja2" in _health_issues(w, WIDGETS)[0]["body"], "the next tick resumed at the cursor"
    assert len(_health_issues(w, WIDGETS)) == 1
    installation = w.services.firestore().collection("installations").document("77").get().to_dict()
    assert installation["scout"]["cursor"] is None
