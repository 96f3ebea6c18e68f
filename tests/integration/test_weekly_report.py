"""The weekly report against the GitHub sandbox and the Firestore emulator: one issue per week."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from functions.metrics import METRICS, weekly
from functions.metrics import job as metrics_job
from functions.metrics.report import REPORT_LABEL, report_marker
from shared import bootstrap
from shared.task_store import repo_doc_id
from tests.integration.test_metrics_job import seed_world

pytestmark = pytest.mark.emulators

MONDAY = date(2026, 11, 23)  # the seeded day, Tuesday 24 November, is in this week
NOW = datetime(2026, 11, 30, 9, 0, 5, tzinfo=timezone.utc)  # the Monday tick after it
REPORTS = "octo/reports"


@pytest.fixture
def report_services(github, config) -> bootstrap.Services:
    github.add_repo(REPORTS)
    github.add_repo("octo/widgets")
    github.add_repo("octo/gadgets")
    return bootstrap.Services(config.with_overrides(report_repo=REPORTS))


def report_issues(github) -> list[dict]:
    return [issue for issue in github.state()["issues"] if issue["repo"] == REPORTS
            and report_marker(MONDAY) in str(issue.get("body") or "")]


def edits(github, number: int) -> int:
    return sum(1 for method, path, _ in github.requests
               if method == "PATCH" and path.endswith(f"/repos/{REPORTS}/issues/{number}"))


def daily(services, day: date) -> dict:
    return services.firestore().collection(METRICS).document(day.isoformat()).get().to_dict()


def seed_findings(services) -> None:
    """Findings as the scout keeps them: open ones, and one fixed since."""
    repo = services.firestore().collection("repos").document(repo_doc_id("octo/widgets"))
    ref = repo.collection("findings")
    for fp, severity, kind, title, state in (
            ("1" * 64, "low", "stale_pr", "PR 4 has had no activity for 30 days", "open"),
            ("2" * 64, "critical", "ci_failing", "CI fails on main", "open"),
            ("3" * 64, "high", "dependabot_alert", "A fixed alert", "fixed")):
        ref.document(fp).set({"fingerprint": fp, "repository": "octo/widgets", "kind": kind,
                              "identity": fp[:8], "severity": severity, "title": title, "detail": "",
                              "link": "", "label": "",
                              "state": state, "first_seen": datetime(2026, 11, 20, tzinfo=timezone.utc)})


def test_the_report_is_one_issue_per_week_edited_only_when_it_changed(github, report_services):
    services = report_services
    seed_world(services)
    seed_findings(services)
    report = weekly.from_services(services)

    posted = report.post_weekly(MONDAY, NOW)
    assert posted.outcome == "created", posted.summary
    issues = report_issues(github)
    assert len(issues) == 1 and issues[0]["number"] == posted.issue_number
    body = issues[0]["body"]
    assert body.startswith(report_marker(MONDAY))
    assert REPORT_LABEL in issues[0]["labels"]
    assert body.count("```mermaid") == 2  # deploys per day, task outcomes
    # Every daily document of both weeks was computed first; the week's figures add up to them.
    days = [MONDAY + timedelta(days=offset) for offset in range(-7, 7)]
    docs = [daily(services, day) for day in days]
    assert all(doc is not None for doc in docs)
    deploys = sum(doc["dora"]["all"]["deployment_frequency"]["deploys"] for doc in docs[7:])
    restored = sum(doc["dora"]["all"]["time_to_restore"]["restored"] for doc in docs[7:])
    ended = sum(doc["agents"]["tasks"]["all"]["ended"] for doc in docs[7:])
    assert (deploys, restored, ended) == (2, 2, 2)  # R1 on Tuesday, R3 on Monday night
    assert f"| Successful deploys | {deploys} |" in body
    assert f"| Agent tasks ended | {ended} |" in body
    # R2 rolled back and R3 named by an incident: two failed of the three production deploys.
    assert "| Change failure rate | 66.7% |" in body
    assert "3 opened, 2 closed, 1 still open." in body
    findings = body[body.index("## Top findings"):body.index("## What each agent did")]
    assert findings.index("CI fails on main") < findings.index("no activity for 30 days")
    assert "A fixed alert" not in body

    stored = services.firestore().collection(METRICS).document(MONDAY.isoformat()) \
        .collection("reports").document("weekly").get().to_dict()
    assert (stored["week"], stored["issue_number"], stored["markdown"]) == (
        "2026-11-23", posted.issue_number, body)
    assert stored["issue_url"] and stored["generated_at"]

    # The same week again, nothing changed: the same issue, not edited.
    again = report.post_weekly(MONDAY, NOW + timedelta(minutes=3))
    assert (again.outcome, again.issue_number) == ("unchanged", posted.issue_number)
    assert edits(github, posted.issue_number) == 0 and len(report_issues(github)) == 1

    # A figure changed (an incident of the week recorded late): the issue is edited in place.
    monitor = services.monitor_store()
    opened = datetime(2026, 11, 26, 18, tzinfo=timezone.utc)
    monitor.record_incident("inc-late", "octo/widgets", "widgets", "outage", opened)
    monitor.close_incident("inc-late", opened + timedelta(hours=1))
    changed = report.post_weekly(MONDAY, NOW + timedelta(minutes=6))
    assert (changed.outcome, changed.issue_number) == ("updated", posted.issue_number)
    assert edits(github, posted.issue_number) == 1 and len(report_issues(github)) == 1
    assert report_issues(github)[0]["body"] == changed.markdown != body


class _LosesTheCreateAnswer:
    """A client whose first report issue POST is made on GitHub, its answer lost on the way back."""

    def __init__(self, client, lost: list) -> None:
        self._client, self._lost = client, lost

    def without_audit(self):
        return _LosesTheCreateAnswer(self._client.without_audit(), self._lost)

    def request(self, method, path, *args, **kwargs):
        from shared.github.rest import ServerError

        answer = self._client.request(method, path, *args, **kwargs)
        if method == "POST" and path == f"/repos/{REPORTS}/issues" and not self._lost:
            self._lost.append(answer)
            raise ServerError(f"POST {path}: ReadTimeout")
        return answer

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_lost_answer_to_the_create_does_not_open_a_second_issue(github, report_services):
    from shared.errors import RetryableError

    seed_world(report_services)
    report = weekly.from_services(report_services)
    app, lost = report_services.github_app(), []

    class App:
        def installation_for(self, repository):
            return app.installation_for(repository)

        def client_for(self, *args, **kwargs):
            return _LosesTheCreateAnswer(app.client_for(*args, **kwargs), lost)

    report.github = App
    with pytest.raises(RetryableError):
        report.post_weekly(MONDAY, NOW)  # the tick fails and is delivered again
    assert len(lost) == 1 and len(report_issues(github)) == 1
    again = report.post_weekly(MONDAY, NOW + timedelta(minutes=1))
    assert (again.outcome, again.issue_number) == ("unchanged", lost[0]["number"])
    creates = [path for method, path, _ in github.requests
               if method == "POST" and path == f"/repos/{REPORTS}/issues"]
    assert len(creates) == 1 and len(report_issues(github)) == 1
    assert report.stored(MONDAY)["issue_number"] == lost[0]["number"]


def test_a_dry_run_posts_nothing_and_a_live_run_then_opens_the_issue(github, report_services):
    seed_world(report_services)
    report = weekly.from_services(report_services)
    report.dry_run = True
    posted = report.post_weekly(MONDAY, NOW)
    assert (posted.outcome, posted.issue_number) == ("dry_run", 0), posted.summary
    assert not [call for call in github.requests if "/issues" in call[1] and call[0] in ("POST", "PATCH")]
    assert report.stored(MONDAY)["outcome"] == "dry_run" and report_issues(github) == []
    report.dry_run = False  # the dry run's record does not take the action's key
    live = report.post_weekly(MONDAY, NOW + timedelta(minutes=1))
    assert live.outcome == "created" and len(report_issues(github)) == 1


def test_a_report_github_failed_to_read_for_is_posted_and_the_tick_retried(github, report_services,
                                                                          monkeypatch):
    from shared.errors import RetryableError
    from shared.github.rest import RestClient

    monkeypatch.setattr(RestClient, "_wait", lambda self, seconds: None)  # the client's backoff
    seed_world(report_services)
    report = weekly.from_services(report_services)
    report.job.clock = lambda: NOW
    github.inject_fault("server_error", count=4, path_prefix="/repos/octo/widgets/pulls")
    with pytest.raises(RetryableError, match="octo/widgets: GitHub is unavailable"):
        report.weekly_job()  # posted, then retried: the report has no figures of octo/widgets' PRs
    [issue] = report_issues(github)
    assert report.stored(MONDAY)["issue_number"] == issue["number"]
    summary = report.weekly_job()  # GitHub answers again: the same issue, nothing left out
    assert summary.startswith("weekly report 2026-11-23: ") and len(report_issues(github)) == 1


def test_without_a_report_repo_the_report_is_stored_not_posted(github, services):
    github.add_repo(REPORTS)
    seed_world(services)
    posted = weekly.from_services(services).post_weekly(MONDAY, NOW)
    assert (posted.outcome, posted.summary) == ("stored", "not posted: AGENTOPS_REPORT_REPO is not set")
    assert not [call for call in github.requests if "/issues" in call[1] and call[0] in ("POST", "PATCH")]
    # Neither seeded repository exists on this GitHub: their pull-request figures are no data, noted.
    notes = daily(services, date(2026, 11, 24))["notes"]
    assert any(note.startswith("octo/widgets: pull requests not read") for note in notes)
    stored = weekly.from_services(services).stored(MONDAY)
    assert stored["markdown"].startswith(report_marker(MONDAY)) and stored["issue_number"] == 0


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_the_cli_writes_a_static_page_without_script(services, tmp_path, capsys):
    from shared import cli

    seed_world(services)
    page, markdown = tmp_path / "week.html", tmp_path / "week.md"
    assert cli.main(["report", "weekly", "--week", "2026-11-25", "--html", str(page),
                     "--markdown", str(markdown)]) == 0
    parser = _Page()
    parser.feed(page.read_text())
    parser.close()
    assert parser.tags[:1] == ["html"] and "svg" in parser.tags and "table" in parser.tags
    assert "script" not in parser.tags and "<script" not in page.read_text().lower()
    assert "Weekly report 2026-W48" in "".join(parser.text)
    assert markdown.read_text().startswith(report_marker(MONDAY))
    assert capsys.readouterr().out == ""  # files named: nothing on stdout

    assert cli.main(["report", "weekly", "--week", "2026-11-23"]) == 0
    assert capsys.readouterr().out.startswith(report_marker(MONDAY))
    assert cli.main(["metrics", "show", "--date", "2026-11-24"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-24" in out and "1 (high)" in out and "50% (low)" in out
    assert cli.main(["metrics", "show", "--date", "2026-11-24", "--repo", "octo/widgets"]) == 0
    out = capsys.readouterr().out
    assert "octo/widgets" in out and "  widgets" in out and "builds 67% of 3 runs" in out

    services.firestore().collection(METRICS).document("2026-11-24").delete()
    assert cli.main(["metrics", "show", "--date", "2026-11-24"]) == 1
    assert cli.main(["metrics", "daily", "--date", "2026-11-24", "--days", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["date", "deploys"]
    assert [line.split()[0] for line in lines[1:3]] == ["2026-11-23", "2026-11-24"]
    assert daily(services, date(2026, 11, 24))["dora"]["all"]["deployment_frequency"]["deploys"] == 1


def test_pull_requests_and_first_commits_come_from_github_and_are_kept(github, services):
    github.add_repo("octo/widgets")
    github.add_repo("octo/gadgets")
    client = services.firestore()
    for name in ("octo/widgets", "octo/gadgets"):
        client.collection("repos").document(repo_doc_id(name)).set(
            {"full_name": name, "installation_id": github.installation_id, "installed": True})
    pull = github.open_pull("octo/widgets", "feature", "Add a thing", author="alice",
                            files={"thing.txt": "thing\n"})
    github.review("octo/widgets", pull["number"], "bob", "CHANGES_REQUESTED")
    github.review("octo/widgets", pull["number"], "bob", "APPROVED")
    sha = github.merge("octo/widgets", pull["number"], actor="alice")

    from functions.deploy_agent import release as rel
    from functions.deploy_agent.canary import DeployPlan

    now = datetime.now(timezone.utc)
    started = now + timedelta(seconds=5)  # after the merge
    release_ = rel.new_release("octo/widgets", "widgets", sha, pull["number"], "v1", started)
    release_ = dataclasses.replace(release_, state=rel.SUCCEEDED, timeline=(
        rel.TimelineEntry(started, "smoke", "smoke passed", {}, "go"),
        rel.TimelineEntry(started + timedelta(minutes=10), "watching", "healthy", {}, "done")))
    services.deployments().create(release_, DeployPlan())

    job = metrics_job.from_services(services)
    assert job.compute_days([now.date()], now + timedelta(minutes=20))  # the day has begun by then
    doc = daily(services, now.date())
    pulls = doc["agents"]["pull_requests"]
    assert (pulls["resolved"], pulls["merged"], pulls["approved"], pulls["review_rounds"]) == (1, 1, 1, 1)
    assert pulls["by_actor"]["human"]["approval_rate"] == 1.0
    change = services.deployments().get(release_.id)["change"]
    assert change["author"] == "alice" and change["first_commit_source"] in ("commits", "pull_created_at")
    lead = doc["dora"]["all"]["lead_time"]
    assert (lead["changes"], lead["skewed"]) == (1, 0) and 0 < lead["median_seconds"] < 120
    asked = sum(1 for method, path, _ in github.requests if path.endswith(f"/pulls/{pull['number']}/commits"))
    job.compute_days([now.date()], now + timedelta(minutes=21))
    assert sum(1 for method, path, _ in github.requests
               if path.endswith(f"/pulls/{pull['number']}/commits")) == asked  # kept, not asked again


def test_pull_requests_opened_after_the_span_are_not_read_further(github, services):
    github.add_repo("octo/widgets")
    services.firestore().collection("repos").document(repo_doc_id("octo/widgets")).set(
        {"full_name": "octo/widgets", "installation_id": github.installation_id, "installed": True})
    pull = github.open_pull("octo/widgets", "feature", "Add a thing", author="alice", files={"a.txt": "a\n"})
    github.review("octo/widgets", pull["number"], "bob", "APPROVED")
    now = datetime.now(timezone.utc)
    # Yesterday, computed now: today's pull request counts nowhere, so its reviews are not asked
    # for, and it takes no place among the pull requests kept (MAX_PULLS).
    job = metrics_job.from_services(services)
    [metrics] = job.compute_days([now.date() - timedelta(days=1)], now)
    assert metrics.agents.pull_requests.opened == 0
    assert not [path for _, path, _ in github.requests if path.endswith(f"/pulls/{pull['number']}/reviews")]
    gathered = job.gather([metrics.window])
    assert gathered.inputs.pull_requests == ()


def test_metrics_show_says_no_coverage_rather_than_none(services, capsys):
    from shared import cli

    widgets = {"repository": "octo/widgets", "build": {"success_rate": 1.0, "runs": 2},
               "coverage": {"latest": None, "trend": None}}
    services.firestore().collection(METRICS).document("2026-11-24").set({
        "date": "2026-11-24", "dora": {"all": {}, "repositories": []}, "notes": [],
        "delivery": {"repositories": [widgets]}})
    assert cli.main(["metrics", "show", "--date", "2026-11-24", "--repo", "octo/widgets"]) == 0
    out = capsys.readouterr().out
    assert "builds 100% of 2 runs, coverage - (-)" in out and "None" not in out
