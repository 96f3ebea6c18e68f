"""The repo scout's collectors against the GitHub sandbox, served in-process: GitHub's answers as facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.repo_scout import collect
from functions.repo_scout.health import ScoutSettings, assess
from functions.repo_scout.issue import issue_marker
from sandbox.github.server import GitHubSandbox
from tests.support.sandbox_site import app_for

REPO = "octo/widgets"
# The sandbox stamps with the real time; three days on, a pull request opened now waits for its review.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
SETTINGS = ScoutSettings()


@pytest.fixture
def github_repos() -> dict[str, dict[str, str]]:
    """The repositories the sandbox of `github` (tests/unit/conftest.py) starts with."""
    return {REPO: {"README.md": "# widgets\n"}}


def _client(github: GitHubSandbox, key: tuple[Any, str], agent: str = "scout") -> Any:
    return app_for(github, key).client_for(agent, github.installation_id)


def _seed(github: GitHubSandbox) -> dict[str, int]:
    red = github.add_workflow_run(REPO, "lint", "main", conclusion="failure")
    github.add_workflow_run(REPO, "ci", "main", conclusion="success")
    github.add_workflow_run(REPO, "ci", "main", conclusion="cancelled")
    github.push_commit(REPO, "feature", {"app.py": "x = 2\n"})
    github.add_workflow_run(REPO, "ci", "feature", conclusion="failure")  # not the default branch
    github.add_dependabot_alert(REPO, "requests", "moderate")
    github.add_dependabot_alert(REPO, "jinja2", "high", state="dismissed")
    github.add_code_scanning_alert(REPO, "py/sql-injection", "critical")
    github.add_code_scanning_alert(REPO, "py/unused-import", "note", state="fixed")
    issue = github.open_issue(REPO, "A question", author="carol")
    waiting = github.open_pull(REPO, "feature", "Change x", author="bob")
    github.push_commit(REPO, "reviewed", {"b.py": "y = 1\n"})
    reviewed = github.open_pull(REPO, "reviewed", "Add b", author="bob")
    github.review(REPO, reviewed["number"], "alice", "APPROVED")
    return {"red": red, "issue": issue["number"], "waiting": waiting["number"],
            "reviewed": reviewed["number"]}


def test_collect_maps_the_sandbox_answers_to_facts(github, key):
    seeded = _seed(github)
    github.protect_branch(REPO, "main", ["ci"])
    client = collect.CountingClient(_client(github, key))
    before = len(github.requests)

    got = collect.collect(client, REPO, settings=SETTINGS, now=NOW, marker=issue_marker(REPO))
    facts = got.facts

    assert facts.default_branch == "main" and facts.repo_key == str(got.repository_id) != ""
    assert got.unknown == []
    assert [(run.workflow_name, run.conclusion) for run in facts.runs] == [
        ("ci", "cancelled"), ("ci", "success"), ("lint", "failure")]  # newest first, main only
    assert got.ci_rows[2]["run_id"] == seeded["red"] and got.ci_rows[2]["event"] == "push"
    assert isinstance(got.ci_rows[0]["created_at"], datetime)
    assert facts.dependabot.status == "enabled"
    alerts = [(a.package, a.severity, a.state) for a in facts.dependabot.alerts]
    assert alerts == [("requests", "medium", "open")]
    assert facts.code_scanning.status == "enabled"
    [alert] = facts.code_scanning.alerts
    assert (alert.rule, alert.security_severity, alert.state) == ("py/sql-injection", "critical", "open")
    assert facts.branch_protection.status == "present" and facts.branch_protection.required_checks == ("ci",)
    issues = [(i.number, i.title, i.author_type) for i in facts.issues]
    assert issues == [(seeded["issue"], "A question", "User")]
    pulls = {pull.number: pull for pull in facts.pulls}
    assert pulls[seeded["waiting"]].first_review_at is None
    assert pulls[seeded["reviewed"]].first_review_at is not None
    # Every request was counted, and only those: what the sandbox served (and the token's creation).
    served = [path for _, path, _ in github.requests[before:] if not path.endswith("/access_tokens")]
    assert client.requests == len(served)
    assert client.requests == 8  # the repository, runs, two alert lists, protection, issues, two reviews

    kinds = {item.kind for item in assess(facts, SETTINGS, NOW).findings}
    assert kinds == {"ci_failing", "dependabot_alert", "code_scanning_alert", "pr_waiting_review"}


def test_an_unprotected_branch_is_absent_and_the_health_issue_is_found_in_the_listing(github, key):
    issue = github.open_issue(REPO, "Repo health", body=f"{issue_marker(REPO)}\nbody",
                              author="agent-ops[bot]")
    # Newer, by a person quoting the marker: not the health issue (it would be edited and linked as one).
    github.open_issue(REPO, "Look", body=f"{issue_marker(REPO)}\n[click](https://example.com)", author="eve")
    got = collect.collect(collect.CountingClient(_client(github, key)), REPO, settings=SETTINGS, now=NOW,
                          marker=issue_marker(REPO))
    assert got.facts.branch_protection.status == "absent"
    assert got.health_issue is not None and got.health_issue["number"] == issue["number"]
    assert got.facts.runs == () and got.facts.dependabot.alerts == ()


def test_what_the_app_may_not_read_is_unknown_not_an_error(github, key):
    _seed(github)
    # The monitor's token: issues only. No actions, alerts, administration or pull requests.
    client = collect.CountingClient(_client(github, key, agent="monitor"))
    got = collect.collect(client, REPO, settings=SETTINGS, now=NOW)
    assert sorted(got.unknown) == ["branch_protection", "ci", "code_scanning", "dependabot", "reviews"]
    facts = got.facts
    assert facts.runs is None and facts.pulls is None
    statuses = {facts.dependabot.status, facts.code_scanning.status, facts.branch_protection.status}
    assert statuses == {"unknown"}
    assert facts.issues  # the issues were readable
    unchecked = set(assess(facts, SETTINGS, NOW).unchecked)
    assert {"ci_failing", "dependabot_alert", "code_scanning_alert", "no_branch_protection",
            "pr_waiting_review"} <= unchecked


def test_a_first_review_found_before_is_not_asked_for_again(github, key):
    seeded = _seed(github)
    client = collect.CountingClient(_client(github, key))
    known = {seeded["waiting"]: NOW - timedelta(days=1), seeded["reviewed"]: NOW - timedelta(days=2)}
    got = collect.collect(client, REPO, settings=SETTINGS, now=NOW, known_reviews=known)
    assert not any("/reviews" in path for _, path, _ in github.requests)
    assert {pull.number: pull.first_review_at for pull in got.facts.pulls} == known


def test_facts_survive_a_scan_document():
    settings = ScoutSettings()
    facts = collect.RepoFacts(
        repo=REPO, default_branch="main", repo_key="42",
        runs=(collect.WorkflowRun(1, 7, "ci", "failure", NOW - timedelta(hours=2),
                                  NOW - timedelta(hours=1)),),
        dependabot=collect.Dependabot("enabled",
                                      (collect.DependabotAlert(3, "high", "open", "urllib3", "x"),)),
        code_scanning=collect.CodeScanning("not_enabled"),
        branch_protection=collect.BranchProtection("present", ("ci",)),
        issues=(collect.IssueItem(5, "old", NOW - timedelta(days=90), NOW - timedelta(days=80)),),
        pulls=(collect.PullItem(6, "pr", NOW - timedelta(days=5), NOW - timedelta(days=4)),), coverage=())
    again = collect.facts_from_doc(collect.facts_to_doc(facts), REPO, ())
    assert again == facts
    assert assess(again, settings, NOW) == assess(facts, settings, NOW)
    assert collect.facts_from_doc({"runs": []}, REPO) is None  # malformed: read again


def test_the_coverage_trend_is_rebuilt_from_previous_scans_and_the_baseline():
    day = timedelta(days=1)
    previous = [{"coverage": {"line_rate": 90.0, "branch": "main", "at": NOW - 20 * day, "sha": "a"}},
                {"coverage": {"line_rate": 80.0, "branch": "other", "at": NOW - 10 * day, "sha": "b"}},
                {"coverage": {"line_rate": None, "branch": "main", "at": None, "sha": ""}}]
    baseline = {"coverage": {"line_rate": 85.5}, "updated_at": NOW - day, "sha": "c"}
    points, current = collect.coverage_history(previous, baseline, "main")
    assert [(p.line_rate, p.sha) for p in points] == [(90.0, "a"), (85.5, "c")]
    assert current == {"line_rate": 85.5, "branch": "main", "at": NOW - day, "sha": "c"}
    assert collect.coverage_history(previous, None, "main")[1]["line_rate"] is None


def test_the_authors_own_review_is_not_a_first_review(github, key):
    github.push_commit(REPO, "feature", {"app.py": "x = 2\n"})
    pull = github.open_pull(REPO, "feature", "Change x", author="bob")
    github.review(REPO, pull["number"], "bob", "COMMENTED", body="a note on my own change")
    got = collect.collect(collect.CountingClient(_client(github, key)), REPO, settings=SETTINGS, now=NOW)
    [found] = got.facts.pulls
    assert found.first_review_at is None
    assert "pr_waiting_review" in {item.kind for item in assess(got.facts, SETTINGS, NOW).findings}


def test_a_pull_request_beyond_the_lookup_bound_is_looked_up_at_a_later_scan(github, key, monkeypatch):
    monkeypatch.setattr(collect, "MAX_REVIEW_LOOKUPS", 1)
    numbers = []
    for branch in ("first", "second"):
        github.push_commit(REPO, branch, {f"{branch}.py": "x = 1\n"})
        numbers.append(github.open_pull(REPO, branch, f"Change {branch}", author="bob")["number"])
    first = collect.collect(collect.CountingClient(_client(github, key)), REPO, settings=SETTINGS, now=NOW)
    assert "reviews: 1 pull request(s) beyond the 1 looked up" in first.notes
    assert first.unreviewed == [numbers[1]]
    doc = collect.facts_to_doc(first.facts, unreviewed=first.unreviewed)
    # The one not looked up stands as reviewed for this scan only; it is not a review found.
    assert collect.known_reviews(doc) == {}
    # A scan that reuses these facts keeps the mark.
    reused = collect.facts_from_doc(doc, REPO, ())
    assert reused is not None and collect.unreviewed(doc) == [numbers[1]]
    assert collect.known_reviews(collect.facts_to_doc(reused, unreviewed=collect.unreviewed(doc))) == {}
    # The oldest is reviewed; the next scans know it, and look the other one up at last.
    github.review(REPO, numbers[0], "alice", "APPROVED")
    second = collect.collect(collect.CountingClient(_client(github, key)), REPO, settings=SETTINGS,
                             now=NOW, known_reviews=collect.known_reviews(doc))
    known = collect.known_reviews(collect.facts_to_doc(second.facts, unreviewed=second.unreviewed))
    assert set(known) == {numbers[0]}
    before = len(github.requests)
    third = collect.collect(collect.CountingClient(_client(github, key)), REPO, settings=SETTINGS, now=NOW,
                            known_reviews=known)
    looked_up = [path for _, path, _ in github.requests[before:] if path.endswith("/reviews")]
    assert looked_up == [f"/repos/{REPO}/pulls/{numbers[1]}/reviews"]
    waiting = {item.identity for item in assess(third.facts, SETTINGS, NOW).findings
               if item.kind == "pr_waiting_review"}
    assert waiting == {f"pull:{numbers[1]}"}


def test_a_cut_listing_keeps_only_the_findings_of_items_it_did_not_reach():
    stale = [finding_of("stale_issue", "issue:1"), finding_of("stale_issue", "issue:2"),
             finding_of("dependabot_alert", "alert:3")]
    facts = collect.RepoFacts(repo=REPO, default_branch="main", repo_key="42", issues=(
        collect.IssueItem(2, "read and active again", NOW, NOW),))
    kept = collect.hidden_by_cut(stale, ["issues"], facts)
    assert [item.identity for item in kept] == ["issue:1"]  # 2 was read: judged afresh; 3: another kind
    assert collect.hidden_by_cut(stale, [], facts) == []


def finding_of(kind: str, identity: str) -> Any:
    from functions.repo_scout.health import finding

    return finding("42", kind, identity, "low", "a title")
