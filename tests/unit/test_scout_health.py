"""The repo scout's findings, fingerprints and health score, from constructed facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.repo_scout.health import (
    KIND_CAPS,
    KINDS,
    SCOUT_LABEL,
    BranchProtection,
    CodeScanning,
    CodeScanningAlert,
    CoveragePoint,
    Dependabot,
    DependabotAlert,
    Finding,
    IssueItem,
    PullItem,
    RepoFacts,
    ScoutSettings,
    WorkflowRun,
    assess,
    ci_findings,
    code_scanning_findings,
    coverage_findings,
    dependabot_findings,
    finding,
    fingerprint,
    inert,
    issue_findings,
    merge_unchecked,
    protection_findings,
    pull_findings,
    safe_link,
    score,
    with_findings,
)
from shared.errors import ConfigError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY = "123456"
SETTINGS = ScoutSettings()
ZW = "\u200b"


def ago(days: float = 0, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


def run(run_id: int, conclusion: str | None, days: float, workflow_id: int = 1,
        name: str = "CI") -> WorkflowRun:
    return WorkflowRun(run_id, workflow_id, name, conclusion, ago(days), ago(days) + timedelta(minutes=5))


def kinds(findings) -> list[str]:
    return [item.kind for item in findings]


def healthy(**changes) -> RepoFacts:
    facts = dict(repo="octo/widgets", default_branch="main", repo_key=KEY,
                 runs=(run(1, "success", 1),), dependabot=Dependabot("enabled"),
                 code_scanning=CodeScanning("enabled"),
                 branch_protection=BranchProtection("present", ("ci",)),
                 issues=(), pulls=(), coverage=())
    facts.update(changes)
    return RepoFacts(**facts)


# ---------------------------------------------------------------------------------------------
# Fingerprints


def test_fingerprints_ignore_text_and_tell_kinds_repos_and_identities_apart():
    old = dependabot_findings(KEY, [DependabotAlert(7, "high", "open", "lodash", "Prototype pollution")])
    new = dependabot_findings(KEY, [DependabotAlert(7, "critical", "open", "lodash", "Reworded", "npm")])
    assert old[0].fingerprint == new[0].fingerprint
    assert old[0].title != new[0].title and old[0].severity != new[0].severity

    pulls = [PullItem(5, "First title", ago(90), ago(90), draft=True)]
    renamed = [PullItem(5, "Second title", ago(90), ago(80), draft=True)]
    assert (pull_findings(KEY, pulls, SETTINGS, NOW)[0].fingerprint
            == pull_findings(KEY, renamed, SETTINGS, NOW)[0].fingerprint)

    same_identity = {fingerprint(KEY, kind, "alert:7") for kind in KINDS}
    assert len(same_identity) == len(KINDS)
    assert fingerprint(KEY, "stale_pr", "pull:5") != fingerprint("999", "stale_pr", "pull:5")
    assert fingerprint(KEY, "stale_pr", "pull:5") != fingerprint(KEY, "stale_pr", "pull:6")
    assert len(fingerprint(KEY, "stale_pr", "pull:5")) == 64
    with pytest.raises(ValueError):
        fingerprint(KEY, "nonsense", "x")


def test_a_repository_without_an_id_is_keyed_by_its_lower_cased_name():
    assert healthy(repo_key="", repo="Octo/Widgets").key == "octo/widgets"


def test_a_stale_pull_request_turning_into_one_waiting_for_review_is_another_finding():
    stale = pull_findings(KEY, [PullItem(5, "t", ago(90), ago(90), draft=True)], SETTINGS, NOW)[0]
    waiting = pull_findings(KEY, [PullItem(5, "t", ago(90), ago(90))], SETTINGS, NOW)[0]
    assert (stale.kind, waiting.kind) == ("stale_pr", "pr_waiting_review")
    assert stale.fingerprint != waiting.fingerprint


# ---------------------------------------------------------------------------------------------
# CI


def test_ci_failing_is_per_workflow_from_its_latest_decisive_run():
    runs = [run(1, "success", 3, 1), run(2, "failure", 2, 1), run(3, "cancelled", 1, 1), run(4, None, 0, 1),
            run(5, "failure", 3, 2, "Deploy"), run(6, "success", 1, 2, "Deploy"),
            run(7, "timed_out", 1, 3, "Nightly")]
    found = [item for item in ci_findings(KEY, "main", runs, SETTINGS, NOW) if item.kind == "ci_failing"]
    assert [(item.identity, item.link, item.label) for item in found] == [
        ("workflow:1", "actions/runs/2", "run 2"), ("workflow:3", "actions/runs/7", "run 7")]
    assert found[0].title == "Workflow 'CI' fails on main"
    assert found[0].severity == "high"
    assert "concluded failure on 2026-05-30" in found[0].detail


def test_a_workflow_without_an_id_is_told_apart_by_its_name():
    runs = [run(1, "failure", 1, 0, "x:²"), run(2, "failure", 1, 0, "@team"), run(3, "success", 0, 0, "ok")]
    found = ci_findings(KEY, "main", runs, SETTINGS, NOW)
    assert sorted(item.identity for item in found) == ["name:@team", "name:x:²"]
    assert {item.title for item in found} == {"Workflow 'x:²' fails on main",
                                              f"Workflow '@{ZW}team' fails on main"}


def test_a_green_run_after_a_failure_clears_ci_failing_and_cancelled_runs_do_not_count():
    runs = [run(1, "failure", 2), run(2, "success", 1), run(3, "cancelled", 0.5), run(4, "skipped", 0.2)]
    assert ci_findings(KEY, "main", runs, SETTINGS, NOW) == []


def test_ci_unhealthy_below_the_success_rate_with_enough_runs():
    runs = [run(i, "success" if i % 2 else "failure", 20 - i) for i in range(1, 11)]
    runs.append(run(99, "success", 0))  # the latest is green: not failing
    found = {item.kind: item for item in ci_findings(KEY, "main", runs, SETTINGS, NOW)}
    assert set(found) == {"ci_unhealthy"}
    assert found["ci_unhealthy"].title == "CI on main succeeds in under 80% of runs"
    assert "55% of 11 decisive runs in the last 30 days" in found["ci_unhealthy"].detail
    # Too few runs are not judged, and old runs fall out of the window.
    assert ci_findings(KEY, "main", runs[:3] + [run(99, "success", 0)], SETTINGS, NOW) == []
    old = [run(i, "failure", 40 + i) for i in range(10)] + [run(99, "success", 0)]
    assert ci_findings(KEY, "main", old, SETTINGS, NOW) == []


def test_exactly_at_the_success_rate_is_healthy():
    runs = [run(i, "success", 5) for i in range(8)] + [run(i, "failure", 6) for i in range(8, 10)]
    assert "ci_unhealthy" not in kinds(ci_findings(KEY, "main", runs, SETTINGS, NOW))


def test_ci_stale_green():
    last_green = [run(1, "success", 10), run(2, "failure", 1)]
    found = {item.kind: item for item in ci_findings(KEY, "main", last_green, SETTINGS, NOW)}
    assert set(found) == {"ci_failing", "ci_stale_green"}
    assert found["ci_stale_green"].detail == "the last green run finished on 2026-05-22"
    assert found["ci_stale_green"].title == "No green CI run on main for more than 7 days"

    never = [run(1, "failure", 9), run(2, "failure", 1)]
    assert "none of the 2 decisive runs since 2026-05-23 was green" in {
        item.detail for item in ci_findings(KEY, "main", never, SETTINGS, NOW)}
    # CI younger than the threshold is failing, not yet stale; no runs at all is neither.
    assert kinds(ci_findings(KEY, "main", [run(1, "failure", 3)], SETTINGS, NOW)) == ["ci_failing"]
    assert ci_findings(KEY, "main", [], SETTINGS, NOW) == []
    assert ci_findings(KEY, "main", [run(1, "success", 6.9)], SETTINGS, NOW) == []


# ---------------------------------------------------------------------------------------------
# Alerts and protection


def test_only_open_dependabot_alerts_one_finding_each_with_severity():
    alerts = [DependabotAlert(1, "critical", "open", "openssl"),
              DependabotAlert(2, "moderate", "open", "yaml"),
              DependabotAlert(3, "high", "fixed", "old"), DependabotAlert(4, "low", "dismissed", "x"),
              DependabotAlert(5, "weird", "open", "y")]
    found = dependabot_findings(KEY, alerts)
    assert [(item.identity, item.severity) for item in found] == [
        ("alert:1", "critical"), ("alert:2", "medium"), ("alert:5", "medium")]
    assert found[0].link == "security/dependabot/1" and found[0].title == "openssl: vulnerable dependency"


def test_code_scanning_severity_prefers_the_security_severity():
    alerts = [CodeScanningAlert(1, "py/sql-injection", "error", "open", "high", "CodeQL"),
              CodeScanningAlert(2, "py/unused-import", "note", "open"),
              CodeScanningAlert(3, "py/empty-except", "warning", "open"),
              CodeScanningAlert(4, "js/xss", "error", "dismissed", "critical")]
    found = code_scanning_findings(KEY, alerts)
    assert [(item.identity, item.severity) for item in found] == [
        ("alert:1", "high"), ("alert:2", "info"), ("alert:3", "low")]
    assert found[0].title == "py/sql-injection (CodeQL)" and found[0].link == "security/code-scanning/1"


def test_code_scanning_not_enabled_is_not_the_same_as_no_alerts():
    enabled = assess(healthy(), SETTINGS, NOW)
    disabled = assess(healthy(code_scanning=CodeScanning("not_enabled")), SETTINGS, NOW)
    hidden = assess(healthy(code_scanning=CodeScanning("unknown")), SETTINGS, NOW)
    assert enabled.findings == disabled.findings == hidden.findings == ()
    assert enabled.notes == () and enabled.unchecked == ()
    assert disabled.notes == ("Code scanning: not enabled.",) and disabled.unchecked == ()
    assert hidden.unchecked == ("code_scanning_alert",)
    assert "not visible" in hidden.notes[0]
    # Alerts of a source that is not enabled are not reported.
    stale = CodeScanning("not_enabled", (CodeScanningAlert(1, "r", "error", "open"),))
    assert assess(healthy(code_scanning=stale), SETTINGS, NOW).findings == ()


@pytest.mark.parametrize("protection,expected", [
    (BranchProtection("absent"), [("protection", "high")]),
    (BranchProtection("present"), [("required-checks", "low")]),
    (BranchProtection("present", ("ci / test",)), []),
    (BranchProtection("unknown"), []),
])
def test_branch_protection(protection, expected):
    found = protection_findings(KEY, "main", protection)
    assert [(item.identity, item.severity) for item in found] == expected
    assert all(item.kind == "no_branch_protection" and item.link == "settings/branches" for item in found)


def test_sources_the_shell_did_not_fill_are_not_checked_rather_than_healthy():
    facts = RepoFacts("octo/widgets", "main", KEY)
    assessment = assess(facts, SETTINGS, NOW)
    assert set(assessment.unchecked) == {"dependabot_alert", "code_scanning_alert", "no_branch_protection"}
    unread = assess(RepoFacts("octo/widgets", "main", KEY, runs=None, issues=None, pulls=None, coverage=None),
                    SETTINGS, NOW)
    assert set(unread.unchecked) == set(KINDS)


# ---------------------------------------------------------------------------------------------
# Issues and pull requests


def test_stale_issues_leave_out_bots_exempt_labels_and_the_health_issue():
    issues = [IssueItem(1, "old", ago(100), ago(61)), IssueItem(2, "fresh", ago(100), ago(59)),
              IssueItem(3, "bot", ago(100), ago(90), author_type="Bot"),
              IssueItem(4, "pinned", ago(100), ago(90), labels=("Pinned",)),
              IssueItem(5, "health", ago(100), ago(90), labels=(SCOUT_LABEL,))]
    found = issue_findings(KEY, issues, SETTINGS, NOW)
    assert [(item.identity, item.link, item.label) for item in found] == [("issue:1", "issues/1", "issue 1")]
    assert found[0].detail == "no activity since 2026-04-01"


def test_pull_requests_waiting_for_a_first_review_or_stale():
    pulls = [PullItem(1, "waiting", ago(hours=49), ago(hours=49)),
             PullItem(2, "young", ago(hours=47), ago(hours=47)),
             PullItem(3, "reviewed", ago(hours=60), ago(hours=1), first_review_at=ago(hours=50)),
             PullItem(4, "draft", ago(40), ago(40), draft=True),
             PullItem(5, "bot", ago(hours=72), ago(hours=72), author_type="Bot"),
             PullItem(6, "stale bot", ago(60), ago(60), author_type="Bot", first_review_at=ago(50)),
             PullItem(7, "long ready", ago(90), ago(hours=1), ready_at=ago(hours=10)),
             PullItem(8, "old reviewed", ago(90), ago(31), first_review_at=ago(80))]
    found = pull_findings(KEY, pulls, SETTINGS, NOW)
    assert [(item.kind, item.identity) for item in found] == [
        ("pr_waiting_review", "pull:1"), ("stale_pr", "pull:4"), ("pr_waiting_review", "pull:5"),
        ("stale_pr", "pull:8")]
    assert found[0].link == "pull/1" and found[0].label == "PR 1"
    assert "opened for review on 2026-05-30" in found[0].detail


# ---------------------------------------------------------------------------------------------
# Coverage


def point(days: float, rate: float) -> CoveragePoint:
    return CoveragePoint(ago(days), rate)


def test_coverage_dropping_from_the_start_of_the_window():
    found = coverage_findings(KEY, "main", [point(40, 85.0), point(20, 84.0), point(1, 82.5)], SETTINGS, NOW)
    assert [item.kind for item in found] == ["coverage_dropping"]
    assert found[0].detail == "from 85.00% (2026-04-22) to 82.50% (2026-05-31), 2.50 points"
    # Within the window alone, the first point is the reference.
    assert coverage_findings(KEY, "main", [point(20, 90.0), point(1, 87.0)], SETTINGS, NOW)
    # A dip that recovered, a small drop, a single point, and only old points are not a trend.
    dip = [point(20, 90.0), point(10, 80.0), point(1, 89.5)]
    assert not coverage_findings(KEY, "main", dip, SETTINGS, NOW)
    assert not coverage_findings(KEY, "main", [point(20, 90.0), point(1, 88.01)], SETTINGS, NOW)
    assert not coverage_findings(KEY, "main", [point(1, 50.0)], SETTINGS, NOW)
    assert not coverage_findings(KEY, "main", [point(90, 90.0), point(60, 50.0)], SETTINGS, NOW)
    assert coverage_findings(KEY, "main", [point(20, 90.0), point(1, 88.0)], SETTINGS, NOW)  # exactly 2


# ---------------------------------------------------------------------------------------------
# Score


def test_a_healthy_repository_scores_100():
    assessment = assess(healthy(), SETTINGS, NOW)
    assert assessment.score.score == 100 and assessment.score.deductions == ()


def test_score_deductions_are_capped_per_kind_and_explained():
    alerts = [DependabotAlert(i, "critical", "open", f"pkg{i}") for i in range(1, 5)]
    facts = healthy(runs=(run(1, "failure", 1),), dependabot=Dependabot("enabled", tuple(alerts)),
                    branch_protection=BranchProtection("absent"))
    assessment = assess(facts, SETTINGS, NOW)
    assert [(d.kind, d.points) for d in assessment.score.deductions] == [
        ("ci_failing", 10), ("dependabot_alert", 30), ("no_branch_protection", 10)]
    assert assessment.score.score == 50
    assert assessment.score.reasons == (
        "−10: CI failing: 1 finding (1 high)",
        "−30: Dependabot alerts: 4 findings (4 critical), capped at 30",
        "−10: Branch protection: 1 finding (1 high)",
    )
    assert assessment.score.to_doc()["deductions"][1] == {
        "kind": "dependabot_alert", "points": 30,
        "reason": "Dependabot alerts: 4 findings (4 critical), capped at 30"}


def test_score_is_deterministic_and_never_negative():
    many = [finding(KEY, kind, f"x:{i}", "critical", "t") for kind in KINDS for i in range(10)]
    assert score(many).score == max(0, 100 - sum(KIND_CAPS.values())) == 0
    assert score(many) == score(reversed(many)) == score(many + many)
    info_only = [finding(KEY, "code_scanning_alert", "alert:1", "info", "note")]
    assert score(info_only).score == 100 and score(info_only).deductions == ()


def test_findings_are_sorted_most_severe_first_then_kind_then_number():
    facts = healthy(dependabot=Dependabot("enabled", (DependabotAlert(10, "low", "open", "a"),
                                                      DependabotAlert(9, "low", "open", "b"),
                                                      DependabotAlert(2, "high", "open", "c"))),
                    branch_protection=BranchProtection("absent"))
    order = [(item.kind, item.identity) for item in assess(facts, SETTINGS, NOW).findings]
    assert order == [("dependabot_alert", "alert:2"), ("no_branch_protection", "protection"),
                     ("dependabot_alert", "alert:9"), ("dependabot_alert", "alert:10")]


# ---------------------------------------------------------------------------------------------
# Unchecked sources and stored findings


def test_findings_of_unchecked_sources_are_carried_forward():
    before = assess(healthy(dependabot=Dependabot("enabled", (DependabotAlert(1, "high", "open", "a"),)),
                            branch_protection=BranchProtection("absent")), SETTINGS, NOW)
    now = assess(healthy(dependabot=Dependabot("unknown"),
                         branch_protection=BranchProtection("present", ("x",))), SETTINGS, NOW)
    merged = merge_unchecked(now.findings, before.findings, now.unchecked)
    assert kinds(merged) == ["dependabot_alert"]  # protection was checked: fixed; alerts were not
    rescored = with_findings(now, merged)
    assert rescored.score.score == 90 and rescored.notes == now.notes


def test_finding_documents_round_trip_and_are_checked_again():
    item = finding(KEY, "stale_pr", "pull:3", "low", "Title", "detail", "pull/3", "PR 3")
    assert Finding.from_doc(item.to_doc()) == item
    hostile = {**item.to_doc(), "title": "@admin <b>", "link": "../../evil", "severity": "apocalyptic"}
    restored = Finding.from_doc(hostile)
    assert restored is not None
    assert (restored.title, restored.link, restored.severity) == (f"@{ZW}admin ‹b›", "", "medium")
    assert Finding.from_doc({"kind": "stale_pr", "fingerprint": "nope"}) is None
    assert Finding.from_doc("junk") is None


@pytest.mark.parametrize("link,safe", [
    ("pull/3", "pull/3"), ("security/dependabot/1", "security/dependabot/1"), ("/etc", ""), ("../x", ""),
    ("a?b=c", ""), ("javascript:x", ""),
])
def test_links_are_plain_relative_paths(link, safe):
    assert safe_link(link) == safe


# ---------------------------------------------------------------------------------------------
# Hostile text


HOSTILE = ("@everyone [click](https://evil.example) <img src=x onerror=alert(1)> `code` | **bold** "
           "~~gone~~ fixes #12 and GH-7 www.evil.example")


def test_repository_text_is_made_inert():
    text = inert(HOSTILE, 500)
    assert "@everyone" not in text and f"@{ZW}everyone" in text
    assert "<" not in text and ">" not in text and "`" not in text and "|" not in text
    assert "[" not in text and "](" not in text and "https://" not in text and "www.evil" not in text
    assert "**" not in text and "~~" not in text
    assert "#12" not in text and f"#{ZW}12" in text and f"GH-{ZW}7" in text
    assert inert(text, 500) == text  # idempotent
    assert len(inert("x" * 10_000, 100)) == 100


def test_hostile_names_are_inert_in_findings():
    facts = healthy(default_branch="@main<x>",
                    runs=(WorkflowRun(1, 1, HOSTILE * 10, "failure", ago(1), ago(1)),),
                    pulls=(PullItem(1, HOSTILE, ago(5), ago(5)),))
    for item in assess(facts, SETTINGS, NOW).findings:
        for text in (item.title, item.detail, item.label):
            assert "<" not in text and "@m" not in text and "@e" not in text and "](" not in text
            assert len(text) <= 300


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="stale_pr_days"):
        ScoutSettings(stale_pr_days=0)
    with pytest.raises(ConfigError, match="ci_min_success_rate"):
        ScoutSettings(ci_min_success_rate=1.5)
    with pytest.raises(ConfigError, match="coverage_drop_points"):
        ScoutSettings(coverage_drop_points=float("nan"))
    with pytest.raises(ConfigError, match="first_review_hours"):
        ScoutSettings(first_review_hours=True)


def test_huge_text_is_cut_before_it_is_processed_and_keeps_its_head_and_tail():
    text = "head " + "@x <b> " * 500_000 + " tail.py"
    shown = inert(text, 100)
    assert len(shown) == 100 and shown.startswith("head ") and shown.endswith(" tail.py")
    assert inert(shown, 100) == shown
