"""The metrics and the weekly report end to end: a real release, then the ticks that measure it.

A merge is deployed by the deploy agent through every canary step (as in `test_deploy_loops.py`),
the clock moves to the next Monday, and the daily and weekly ticks run in the orchestrator: the
day's document counts the deploy, and the report issue in the report repository lists it.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from functions.metrics import METRICS
from functions.metrics.report import REPORT_LABEL, report_marker
from tests.e2e.test_deploy_loops import OLD, SERVICE, START, _live
from tests.support.world import REPO, world

pytestmark = pytest.mark.emulators

REPORTS = "octo/gadgets"
WEEK = date(2026, 11, 30)  # the Monday of START's week


@pytest.fixture
def w(env, project):
    with world(env, project, start=START, extra_env={"AGENTOPS_REPORT_REPO": REPORTS}) as the_world:
        for service, version in (("default", "v1"), (SERVICE, OLD)):
            the_world.control.create_version(service, {"id": version, "runtime": "python312"})
        the_world.pump()
        yield the_world


def test_a_release_shows_in_the_days_metrics_and_in_the_monday_report_issue(w):
    release = _live(w)  # merged, through every canary step and the watch
    number = release["pull_number"]

    # The next night's tick: the day's document counts the deploy.
    night = datetime.combine(START.date() + timedelta(days=1), time(0, 15, 1), tzinfo=timezone.utc)
    w.advance(seconds=(night - w.clock()).total_seconds())
    w.tick("daily_metrics")
    w.pump()
    day = w.services.firestore().collection(METRICS).document(START.date().isoformat()).get().to_dict()
    frequency = day["dora"]["all"]["deployment_frequency"]
    assert (frequency["deploys"], frequency["production_deploys"]) == (1, 1)
    widgets = {item["repository"]: item for item in day["dora"]["repositories"]}[REPO]
    assert [service["service"] for service in widgets["services"]] == [SERVICE]

    # Monday 09:00: the report of the week the release was in.
    tick = datetime.combine(WEEK + timedelta(days=7), time(9, 0, 1), tzinfo=timezone.utc)
    w.advance(seconds=(tick - w.clock()).total_seconds())
    w.tick("weekly_report")
    w.pump()
    app = w.services.github_app()
    client = app.client_for("orchestrator", w.github.installation_id, [REPORTS])
    issues = [issue for issue in client.request("GET", f"/repos/{REPORTS}/issues",
                                                params={"state": "all", "labels": REPORT_LABEL})
              if report_marker(WEEK) in str(issue.get("body") or "")]
    assert len(issues) == 1, issues
    body = issues[0]["body"]
    assert "## Deploys and rollbacks" in body and release["version"] in body and "✅ succeeded" in body
    assert f"{REPO}/pull/{number}" in body
    assert "| Successful deploys | 1 |" in body
    stored = (w.services.firestore().collection(METRICS).document(WEEK.isoformat())
              .collection("reports").document("weekly").get().to_dict())
    assert stored["issue_number"] == issues[0]["number"] and stored["markdown"] == body
    tasks = w.services.tasks().query(repository="")
    jobs = {task["kind"]: task["status"] for task in tasks
            if task["kind"] in ("daily_metrics", "weekly_report")}
    assert jobs == {"daily_metrics": "succeeded", "weekly_report": "succeeded"}
