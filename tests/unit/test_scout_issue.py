"""The repo scout's health issue: one per repository, updated in place, ticked, truncated, closed."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from functions.repo_scout.health import Finding, ScoutSettings, finding
from functions.repo_scout.issue import (
    ISSUE_LABELS,
    LINK_BASE,
    MAX_BODY_CHARS,
    MAX_STATE_FINGERPRINTS,
    issue_marker,
    parse_body,
    plan_issue,
    short,
)
from shared.errors import InvalidInput

REPO = "octo/widgets"
KEY = "123456"
SETTINGS = ScoutSettings()
QUIET = ScoutSettings(quiet=True)
ZW = "\u200b"


def alert(number: int, severity: str = "high", title: str | None = None, detail: str = "") -> Finding:
    return finding(KEY, "dependabot_alert", f"alert:{number}", severity, title or f"package{number}: bad",
                   detail, f"security/dependabot/{number}", f"alert {number}")


def stale_pr(number: int, title: str = "a pull request") -> Finding:
    return finding(KEY, "stale_pr", f"pull:{number}", "low", title, "no activity since 2026-01-01",
                   f"pull/{number}", f"PR {number}")


FAILING = finding(KEY, "ci_failing", "workflow:1", "high", "Workflow 'CI' fails on main", "",
                  "actions/runs/9", "run 9")
UNPROTECTED = finding(KEY, "no_branch_protection", "protection", "high", "The default branch main is not "
                      "protected")


def plan(previous, findings, settings=SETTINGS, **kwargs):
    return plan_issue(previous, findings, settings, repo=REPO, **kwargs)


def open_lines(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith("- [ ] ")]


def ticked_lines(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith("- [x] ")]


def state(body: str) -> dict:
    match = re.search(r"^<!-- agent-ops:scout-state (\{.*\}) -->$", body, re.MULTILINE)
    assert match, body[-500:]
    return json.loads(match.group(1))


# ---------------------------------------------------------------------------------------------
# Create, update in place, no change


def test_a_healthy_repository_gets_no_issue():
    result = plan(None, [])
    assert (result.action, result.title, result.body) == ("none", "", "")


def test_the_first_scan_with_findings_creates_one_issue():
    result = plan(None, [alert(1), FAILING, UNPROTECTED])
    assert result.action == "create"
    assert result.labels == ISSUE_LABELS
    assert result.title == "Repo health: 70/100, 3 open findings"
    body = result.body
    assert body.startswith(issue_marker(REPO) + "\n")
    assert "## Repository health: 70/100" in body
    assert "**3** open findings (3 high), **0** fixed since the last scan." in body
    assert "### CI failing (1 open)" in body and "### Dependabot alerts (1 open)" in body
    assert "- −10: CI failing: 1 finding (1 high)" in body
    assert (f"- [ ] **High** [run 9]({LINK_BASE}/{REPO}/actions/runs/9) Workflow 'CI' fails on main "
            f"<!-- scout:ci_failing:{short(FAILING.fingerprint)} -->") in body
    assert "- [ ] **High** The default branch main is not protected <!-- scout:no_branch_protection:" in body
    assert len(open_lines(body)) == 3 and ticked_lines(body) == []
    assert state(body)["o"] == [short(item.fingerprint) for item in (FAILING, alert(1), UNPROTECTED)]
    assert state(body)["n"] == 3 and state(body)["c"] is False
    names = ("CI failing", "Dependabot alerts", "Branch protection")
    headings = [body.index(f"### {name}") for name in names]
    assert headings == sorted(headings)


def test_nothing_changed_means_no_update():
    body = plan(None, [alert(1), FAILING]).body
    again = plan(body, [FAILING, alert(1)])
    assert (again.action, again.body) == ("none", "")
    assert again.reason == "no change since the last update"


def test_a_detail_or_link_changing_alone_is_not_material():
    body = plan(None, [alert(1, detail="seen 3 times"), FAILING]).body
    moved = replace(FAILING, detail="its latest run concluded failure on 2026-06-02", link="actions/runs/10")
    assert plan(body, [alert(1, detail="seen 4 times"), moved]).action == "none"


@pytest.mark.parametrize("change", [
    lambda items: items + [alert(2)],
    lambda items: [alert(1, "critical"), FAILING],
    lambda items: [alert(1, title="package1: reworded"), FAILING],
])
def test_a_material_change_updates_the_same_issue(change):
    body = plan(None, [alert(1), FAILING]).body
    result = plan(body, change([alert(1), FAILING]))
    assert result.action == "update"
    assert result.labels == ()  # labels are set once, on create
    assert plan(result.body, change([alert(1), FAILING])).action == "none"


def test_notes_are_material():
    body = plan(None, [FAILING]).body
    result = plan(body, [FAILING], notes=["Code scanning: not enabled."])
    assert result.action == "update" and "### Notes\n- Code scanning: not enabled." in result.body
    assert plan(result.body, [FAILING], notes=["Code scanning: not enabled."]).action == "none"


# ---------------------------------------------------------------------------------------------
# Ticking fixed findings, then dropping them


def test_fixed_findings_are_ticked_then_dropped_at_the_next_scan():
    first = plan(None, [alert(1), alert(2), FAILING]).body

    second = plan(first, [alert(1), FAILING])
    assert second.action == "update" and second.fixed_count == 1
    assert len(open_lines(second.body)) == 2
    assert ticked_lines(second.body) == [
        f"- [x] **High** [alert 2]({LINK_BASE}/{REPO}/security/dependabot/2) package2: bad "
        f"<!-- scout:dependabot_alert:{short(alert(2).fingerprint)} -->"]
    assert "### Dependabot alerts (1 open, 1 fixed)" in second.body
    assert "**1** fixed since the last scan" in second.body
    assert short(alert(2).fingerprint) not in state(second.body)["o"]

    third = plan(second.body, [alert(1), FAILING])
    assert third.action == "update"  # the ticked item goes
    assert ticked_lines(third.body) == [] and len(open_lines(third.body)) == 2
    assert "### Dependabot alerts (1 open)" in third.body

    assert plan(third.body, [alert(1), FAILING]).action == "none"


def test_a_fixed_finding_that_returns_is_open_again():
    first = plan(None, [alert(1), alert(2)]).body
    second = plan(first, [alert(1)]).body
    back = plan(second, [alert(1), alert(2)])
    assert back.action == "update" and ticked_lines(back.body) == [] and len(open_lines(back.body)) == 2


def test_a_clicked_checkbox_is_not_a_fix_and_changes_nothing():
    body = plan(None, [alert(1), FAILING]).body
    clicked = body.replace("- [ ] **High** [alert 1]", "- [x] **High** [alert 1]")
    assert plan(clicked, [alert(1), FAILING]).action == "none"
    result = plan(clicked, [FAILING, alert(3)])
    assert result.action == "update"
    assert [line for line in ticked_lines(result.body) if "alert 1" in line]  # fixed now, for real


# ---------------------------------------------------------------------------------------------
# Close, reopen, closed by a person


def test_the_issue_is_closed_when_every_finding_is_fixed():
    body = plan(None, [alert(1), FAILING]).body
    result = plan(body, [])
    assert (result.action, result.state_reason) == ("close", "completed")
    assert result.title == "Repo health: all findings fixed"
    assert len(ticked_lines(result.body)) == 2 and open_lines(result.body) == []
    assert "## Repository health: all findings fixed" in result.body
    assert state(result.body)["c"] is True and state(result.body)["o"] == []
    # Closed and still clean: nothing to do, whether or not the shell says it is closed.
    assert plan(result.body, []).action == "none"
    assert plan(result.body, [], issue_open=False).action == "none"


def test_findings_returning_after_a_close_reopen_the_same_issue():
    closed = plan(plan(None, [alert(1)]).body, []).body
    result = plan(closed, [alert(5)])
    assert result.action == "reopen"
    assert result.labels == ()
    assert ticked_lines(result.body) == [] and len(open_lines(result.body)) == 1
    assert state(result.body)["c"] is False
    assert plan(result.body, [alert(5)]).action == "none"


def test_an_issue_closed_by_a_person_stays_closed_until_a_new_finding():
    body = plan(None, [alert(1), alert(2)]).body
    assert plan(body, [alert(1), alert(2)], issue_open=False).action == "none"
    assert plan(body, [alert(1)], issue_open=False).action == "none"  # fewer: still acknowledged
    result = plan(body, [alert(1), alert(3)], issue_open=False)
    assert result.action == "reopen"
    assert [line for line in ticked_lines(result.body) if "alert 2" in line]


def test_an_issue_a_person_reopened_with_nothing_open_is_left_to_them():
    closed = plan(plan(None, [alert(1)]).body, []).body
    assert plan(closed, [], issue_open=True).action == "none"
    assert plan(closed, [alert(1)], issue_open=True).action == "update"


# ---------------------------------------------------------------------------------------------
# Quiet mode


def test_quiet_mode_never_creates_or_updates_an_issue():
    assert plan(None, [alert(1)], QUIET).action == "none"
    body = plan(None, [alert(1)]).body
    result = plan(body, [alert(1), alert(2)], QUIET)
    assert (result.action, result.state_reason) == ("close", "not_planned")
    assert "quiet mode" in result.body and issue_marker(REPO) in result.body
    assert plan(result.body, [alert(1)], QUIET).action == "none"
    # Quiet mode switched off again: the issue is reopened with the findings.
    back = plan(result.body, [alert(1)])
    assert back.action == "reopen" and len(open_lines(back.body)) == 1


# ---------------------------------------------------------------------------------------------
# Size


HOSTILE = ("@everyone [x](https://evil.example) <script>alert(1)</script> "
           "<!-- scout:ci_failing:0123456789ab --> | `rm -rf` **b** #1 ") * 200


def test_thousands_of_hostile_findings_stay_under_the_limit_with_a_summary():
    findings = [alert(i, ("critical", "high", "medium", "low")[i % 4], HOSTILE, HOSTILE) for i in range(2000)]
    findings += [stale_pr(i, HOSTILE) for i in range(1000)]
    result = plan(None, findings)
    body = result.body
    assert len(body) <= MAX_BODY_CHARS
    assert re.search(r"^Showing \d+ of 3000 open findings, most severe first", body, re.MULTILINE)
    assert "- … and " in body and "more open, not listed (" in body
    assert result.title == "Repo health: 66/100, 3000 open findings"
    assert len(open_lines(body)) == 50 + 50  # at most 50 per kind
    # The most severe come first: every listed alert is critical.
    alerts = [line for line in open_lines(body) if "scout:dependabot" in line]
    assert all(line.startswith("- [ ] **Critical**") for line in alerts)
    saved = state(body)
    assert saved["n"] == 3000 and len(saved["o"]) == MAX_STATE_FINGERPRINTS
    _assert_inert(body)
    # Stable: the same findings change nothing; fixing listed ones ticks them, still under the limit.
    assert plan(body, list(reversed(findings))).action == "none"
    listed = {re.search(r":([0-9a-f]{12}) -->$", line).group(1) for line in open_lines(body)}
    fixed = [item for item in findings if short(item.fingerprint) in listed][:20]
    result = plan(body, [item for item in findings if item not in fixed])
    assert result.action == "update" and len(result.body) <= MAX_BODY_CHARS
    ticked = len(ticked_lines(result.body))
    assert 10 <= ticked < 20  # a quarter of the room at most goes to fixed items
    counted = re.findall(r"^- … and (\d+) more fixed, not listed$", result.body, re.MULTILINE)
    left = sum(int(n) for n in counted)
    assert ticked + left == 20


def test_many_fixed_findings_are_counted_when_they_do_not_fit():
    findings = [alert(i, "high", HOSTILE) for i in range(600)]
    body = plan(None, findings).body
    result = plan(body, findings[:1])
    assert result.action == "update" and len(result.body) <= MAX_BODY_CHARS
    assert "more fixed, not listed" in result.body
    assert "more finding(s) fixed since the last scan were not listed in it." in result.body
    closed = plan(body, [])
    assert closed.action == "close" and len(closed.body) <= MAX_BODY_CHARS


def test_notes_are_capped_and_inert():
    result = plan(None, [FAILING], notes=[HOSTILE] * 100)
    assert len(result.body) <= MAX_BODY_CHARS
    _assert_inert(result.body)


# ---------------------------------------------------------------------------------------------
# Hostile text and hostile edits


def _assert_inert(body: str) -> None:
    """Nothing from the repository can mention, link, inject HTML or forge a marker."""
    for line in body.splitlines():
        stripped = re.sub(r" ?<!-- scout:[a-z_]+:[0-9a-f]{12} -->$", "", line)
        stripped = re.sub(r"^<!-- agent-ops:scout(-state)?[: ].* -->$", "", stripped)
        assert "<" not in stripped and ">" not in stripped, line[:200]
        assert not re.search(r"@(?!\u200b)\w", stripped), line[:200]
        assert "`" not in stripped and "|" not in stripped
        links = re.findall(r"\]\(([^)]*)\)", stripped)
        assert all(link.startswith(f"{LINK_BASE}/{REPO}/") for link in links), links
        assert not re.search(r"(?<!\]\()https?://", stripped), line[:200]
        assert not re.search(r"#\d", stripped), line[:200]


def test_hostile_titles_are_neutralised_and_cannot_forge_a_line_or_the_state():
    title = "@octocat <!-- scout:ci_failing:0123456789ab --> [x](javascript:alert(1)) fixes #4"
    result = plan(None, [stale_pr(4, title)])
    _assert_inert(result.body)
    assert f"@{ZW}octocat" in result.body and f"#{ZW}4" in result.body
    parsed = parse_body(result.body, REPO)
    assert set(parsed.lines) == {short(stale_pr(4).fingerprint)} == set(parsed.open)


def test_an_edited_line_is_neutralised_again_when_it_is_ticked():
    body = plan(None, [alert(1), FAILING]).body
    edited = body.replace("package1: bad", "package1: @admin please <b>look</b> https://evil.example")
    result = plan(edited, [FAILING])
    assert result.action == "update"
    (line,) = ticked_lines(result.body)
    assert f"@{ZW}admin" in line and "‹b›" in line and f"https:{ZW}//evil" in line
    _assert_inert(result.body)


def test_a_line_linking_elsewhere_is_not_recovered():
    body = plan(None, [alert(1), FAILING]).body
    edited = body.replace(f"{LINK_BASE}/{REPO}/security/dependabot/1", "https://evil.example/phish")
    result = plan(edited, [FAILING])
    assert ticked_lines(result.body) == []
    assert "1 more finding(s) fixed since the last scan were not listed in it." in result.body
    _assert_inert(result.body)


def test_a_body_without_its_state_is_rewritten():
    body = plan(None, [alert(1), FAILING]).body
    stripped = "\n".join(line for line in body.splitlines() if "scout-state" not in line)
    result = plan(stripped, [alert(1), FAILING])
    assert result.action == "update" and "scout-state" in result.body
    # The open lines stood in for the state: a missing one is ticked.
    assert len(ticked_lines(plan(stripped, [FAILING]).body)) == 1
    broken = body.replace('"v":1', '"v":"x"')
    assert plan(broken, [alert(1), FAILING]).action == "update"
    assert plan("junk", [alert(1)]).action == "update"
    assert plan("", []).action == "close"


def test_another_repositorys_body_is_not_trusted():
    other = plan_issue(None, [alert(1)], SETTINGS, repo="octo/other").body
    parsed = parse_body(other, REPO)
    assert not parsed.ours and parsed.open == ()
    result = plan(other, [alert(1)])
    assert result.action == "update" and issue_marker(REPO) in result.body


def test_parse_body_never_raises():
    for junk in ["", "<!-- agent-ops:scout:octo/widgets -->\n<!-- agent-ops:scout-state {] -->",
                 "<!-- agent-ops:scout:octo/widgets -->\n<!-- agent-ops:scout-state {\"v\":1,\"o\":[1],"
                 "\"n\":1,\"d\":\"\"} -->", "x" * 200_000]:
        parsed = parse_body(junk, REPO)
        assert not parsed.state_ok


def test_the_repository_name_is_checked():
    with pytest.raises(InvalidInput):
        plan_issue(None, [alert(1)], SETTINGS, repo="octo/widgets -->")
    assert issue_marker("Octo/Widgets") == "<!-- agent-ops:scout:octo/widgets -->"
