"""The insight loop end to end: what the scout finds is what the metrics, the weekly report and the
dashboard show. The real functions on the emulators and the GitHub sandbox, a fake clock.

The sandbox's organisation is seeded as in `test_scout_loop.py` (failing and passing runs on the
default branch, a Dependabot and a code-scanning alert, a pull request nobody reviewed). The scout's
tick runs twice: one health issue per repository, the second scan of an unchanged repository almost
free. Then the night's `daily_metrics` tick and the Monday `weekly_report` tick: the report issue is
opened once, lists the scout's top findings, and its build figures are those of the stored daily
documents. Last, the dashboard's overview shows each repository's score and open findings as Firestore
holds them. No release: the deploy agent's loop is `test_weekly_report_loop.py`'s.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from functions.metrics import METRICS
from functions.metrics.report import REPORT_LABEL, report_marker
from functions.repo_scout.health import severity_rank
from tests.e2e.test_scout_loop import (
    MAX_UNCHANGED_CALLS,
    REPOS,
    WIDGETS,
    _findings,
    _health_issues,
    _repo_doc,
    _scan,
    _scan_doc,
    _seed,
)
from tests.support.world import World, world

pytestmark = pytest.mark.emulators

REPORTS = "octo/gadgets"  # where the weekly report issue goes
NOW = datetime.now(UTC).replace(microsecond=0)
# The sandbox stamps runs, alerts and pull requests with the real time: the report's week is the one they
# are in. The clock starts up to three days on (the pull request then waits past the first-review
# threshold), but no later than that week's Sunday noon, so the scans are done in the week.
WEEK = NOW.date() - timedelta(days=NOW.weekday())
START = max(NOW, min(NOW + timedelta(days=3), datetime.combine(WEEK + timedelta(days=6), time(12),
                                                               tzinfo=UTC)))


@pytest.fixture
def w(env, project):
    with world(env, project, start=START, extra_env={"AGENTOPS_REPORT_REPO": REPORTS}) as the_world:
        the_world.pump()  # the installation: the repositories recorded as installed (`repos/{owner:name}`)
        yield the_world


def _at(w: World, moment: datetime, job: str) -> None:
    """Cloud Scheduler's tick of `job` at `moment`, delivered."""
    w.advance(seconds=(moment - w.clock()).total_seconds())
    w.tick(job)
    w.pump()


def _metrics_day(w: World, day: date) -> dict[str, Any]:
    return w.services.firestore().collection(METRICS).document(day.isoformat()).get().to_dict() or {}


def _build(doc: dict[str, Any], repo: str) -> dict[str, Any]:
    rows = {row.get("repository"): row for row in (doc.get("delivery") or {}).get("repositories") or ()}
    return (rows.get(repo) or {}).get("build") or {}


def _dashboard(w: World) -> str:
    handler = w.services.dashboard()
    body, status, _headers = handler(Request(EnvironBuilder(path="/", method="GET").get_environ()))
    assert status == 200, body
    return body


def test_the_scouts_findings_flow_into_the_metrics_the_weekly_report_and_the_dashboard(w):
    _seed(w)
    _scan(w, hours=1)
    first = {repo: _scan_doc(w, repo) for repo in REPOS}
    _scan(w, hours=1)
    for repo in REPOS:
        assert len(_health_issues(w, repo)) == 1, repo  # one issue per repository, after two scans
        scan = _scan_doc(w, repo)
        assert scan["scan_id"] != first[repo]["scan_id"] and scan["reused"] is True, (repo, scan)
        assert scan["api_calls"] <= MAX_UNCHANGED_CALLS, (repo, scan)
    open_findings = {repo: [doc for doc in _findings(w, repo).values() if doc["state"] == "open"]
                     for repo in REPOS}
    assert {doc["kind"] for doc in open_findings[WIDGETS]} >= {"ci_failing", "dependabot_alert",
                                                               "code_scanning_alert"}

    # The night's tick (Monday 00:15, or a minute on when the scans ran past it), then Monday 09:00: the
    # report of the week the runs and findings are in.
    night = datetime.combine(WEEK + timedelta(days=7), time(0, 15, 1), tzinfo=UTC)
    _at(w, max(night, w.clock() + timedelta(minutes=1)), "daily_metrics")
    monday = datetime.combine(WEEK + timedelta(days=7), time(9, 0, 1), tzinfo=UTC)
    _at(w, monday, "weekly_report")
    _at(w, monday + timedelta(minutes=5), "weekly_report")  # a second tick (a retried job): no second issue
    client = w.services.github_app().client_for("orchestrator", w.github.installation_id, [REPORTS])
    issues = [issue for issue in client.request("GET", f"/repos/{REPORTS}/issues",
                                                params={"state": "all", "labels": REPORT_LABEL})
              if report_marker(WEEK) in str(issue.get("body") or "")]
    assert len(issues) == 1, issues
    body = issues[0]["body"]

    # The top findings are the scout's, most severe first, each with its repository.
    lines = body.splitlines()
    found: dict[int, int] = {}  # line -> severity rank
    for doc in (doc for docs in open_findings.values() for doc in docs):
        at = [i for i, line in enumerate(lines) if doc["title"] in line and f"{doc['repository']} · " in line]
        assert len(at) == 1, (doc["title"], body)
        found[at[0]] = severity_rank(doc["severity"])
    ranks = [found[index] for index in sorted(found)]
    assert ranks == sorted(ranks) and lines[min(found)].startswith("- **High**")  # most severe first

    # The week's figures are those of the stored days (counts add up; the rate is of the runs added up).
    days = [_metrics_day(w, WEEK + timedelta(days=offset)) for offset in range(7)]
    assert all(day.get("date") for day in days), "a day of the week has no metrics document"
    deploys = sum(day["dora"]["all"]["deployment_frequency"]["deploys"] for day in days)
    ended = sum(day["agents"]["tasks"]["all"]["ended"] for day in days)
    runs = sum(day["delivery"]["build"]["runs"] for day in days)
    green = sum(day["delivery"]["build"]["succeeded"] for day in days)
    widgets = [_build(day, WIDGETS) for day in days]
    widgets_runs = sum(build.get("runs") or 0 for build in widgets)
    widgets_green = sum(build.get("succeeded") or 0 for build in widgets)
    assert runs == widgets_runs == len(first[WIDGETS]["ci_runs"]) > 0  # the runs the scout saw
    assert f"| Successful deploys | {deploys} |" in body
    assert f"| Agent tasks ended | {ended} |" in body
    # The scout's two ticks are routine: not in the overall figures, but in the scout's own row.
    scout = sum(item["tasks"]["ended"] for day in days for item in day["agents"]["tasks"]["by_agent"]
                if item["agent"] == "scout")
    assert scout >= 2
    assert f"| Build success rate | {100 * green / runs:.1f}% |" in body
    assert f"| {WIDGETS} | {100 * widgets_green / widgets_runs:.1f}% of {widgets_runs} runs |" in body

    # The dashboard: each repository's score and open findings, as Firestore holds them.
    page = _dashboard(w)
    for repo in REPOS:
        health = _repo_doc(w, repo)["health"]
        row = re.search(rf'data-testid="repo-score" data-repo="{re.escape(repo)}">(\d+)</span></td>\s*'
                        r'<td><span data-testid="repo-findings">(\d+)<', page)
        assert row, page
        assert int(row.group(1)) == health["score"]
        assert int(row.group(2)) == health["findings_open"] == len(open_findings[repo])
