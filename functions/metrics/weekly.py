"""The weekly report: gathered, rendered, posted as one issue per week, and stored.

`build_inputs(monday)` computes the week's and the week before's metrics (writing any daily document
of those two weeks still missing first), and collects the week's releases, incidents, the top open
findings and what each agent did. `post_weekly(monday)` renders the Markdown, finds the week's issue
in the report repository by its marker (`report_marker`), creates it or edits it in place only when
the body changed, and stores the report in `metrics/{monday}/reports/weekly`. Without a report
repository (`AGENTOPS_REPORT_REPO`) the report is stored and not posted.

The Monday 09:00 tick reports on the last full UTC week (the one that ended the night before, with
the schedule in UTC); when GitHub failed while it was read, the report is posted and the tick retried.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from functions.metrics import METRICS
from functions.metrics.dora import Window, day_window, deployment_from_release_doc, utc, week_window
from functions.metrics.job import MetricsJob, as_of
from functions.metrics.report import (
    MAX_FINDINGS,
    REPORT_LABEL,
    Example,
    WeeklyInputs,
    report_marker,
    report_title,
    week_monday,
    weekly_html,
    weekly_markdown,
)
from functions.metrics.sources import Gathered
from shared.config import DEFAULT_GITHUB_API_URL
from shared.errors import InvalidInput, RetryableError
from shared.executor import CreateIssue, Executor, UpdateIssue
from shared.github.issues import find_issue_by_marker
from shared.task_store import repo_doc_id

log = logging.getLogger("agentops.metrics")

REPORTS = "reports"
WEEKLY = "weekly"
MAX_EXAMPLES = 10  # per agent; the report shows fewer
NOT_CONFIGURED = "not posted: AGENTOPS_REPORT_REPO is not set"
NO_GITHUB = "not posted: GitHub is not configured"


def report_monday(now: datetime) -> date:
    """The Monday of the last full week before `now` (the Monday tick reports on the week before)."""
    today = utc(now).date()
    return today - timedelta(days=today.weekday() + 7)


def link_base(api_url: str) -> str:
    """Where pull requests and issues are linked: github.com, a server's web root, or the sandbox."""
    api_url = api_url.rstrip("/")
    if api_url == DEFAULT_GITHUB_API_URL.rstrip("/"):
        return "https://github.com"
    return api_url[: -len("/api/v3")] if api_url.endswith("/api/v3") else api_url


def _time(value: Any) -> datetime | None:
    return utc(value) if isinstance(value, datetime) else None


def _in(moment: datetime | None, window: Window) -> bool:
    return moment is not None and moment in window


def week_releases(releases: Sequence[Mapping[str, Any]], window: Window) -> list[dict[str, Any]]:
    """Releases that started in the week or first served production traffic in it."""
    out = []
    for doc in releases:
        try:
            deployed = deployment_from_release_doc(doc).deployed_at
        except InvalidInput:
            deployed = None
        if _in(_time(doc.get("started_at")), window) or _in(deployed, window):
            out.append({key: value for key, value in doc.items() if key != "_id"})
    return out


def week_incidents(incidents: Sequence[Mapping[str, Any]], window: Window) -> list[dict[str, Any]]:
    """Incidents opened in the week, or opened before it and not closed before it began."""
    out = []
    for doc in incidents:
        opened, closed = _time(doc.get("opened_at")), _time(doc.get("closed_at"))
        if opened is None or opened >= window.end:
            continue
        if opened >= window.start or closed is None or closed >= window.start:
            out.append({key: value for key, value in doc.items() if key != "_id"})
    return out


def agent_examples(tasks: Sequence[Mapping[str, Any]], window: Window) -> dict[str, list[Example]]:
    """Per agent, the tasks whose result came in the week, newest first, as report lines."""
    found: dict[str, list[tuple[datetime, Example]]] = {}
    for doc in tasks:
        result = doc.get("result") if isinstance(doc.get("result"), Mapping) else {}
        at = _time(result.get("at"))
        if not _in(at, window):
            continue
        assert at is not None
        summary = " ".join(str(result.get("summary") or "").split())[:120]
        text = f"{doc.get('kind')}: {result.get('status') or doc.get('status')}" + (f", {summary}" if summary
                                                                                      else "")
        example = Example(text, str(doc.get("repository") or ""), int(doc.get("number") or 0))
        found.setdefault(str(doc.get("agent") or ""), []).append((at, example))
    return {agent: [example for _, example in sorted(items, key=lambda item: item[0], reverse=True)
                    ][:MAX_EXAMPLES] for agent, items in sorted(found.items()) if agent}


@dataclass(frozen=True)
class Posted:
    """What became of a week's report."""

    week: str
    markdown: str
    outcome: str  # created | updated | unchanged | stored (not posted) | dry_run
    summary: str
    issue_number: int = 0
    issue_url: str = ""


@dataclass
class WeeklyReport:
    """The weekly report's shell: the metrics job, GitHub and where the report goes."""

    job: MetricsJob
    report_repo: str = ""
    github: Callable[[], Any] = lambda: None  # the GitHub App, or None
    audit: Callable[[], Any] | None = None
    api_url: str = DEFAULT_GITHUB_API_URL
    dry_run: bool = False
    # What a transient failure left out of the last inputs built (the gather was partial), else empty.
    gaps: list[str] = field(default_factory=list, init=False, repr=False)

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.job.clock

    def build_inputs(self, monday: date, now: datetime | None = None) -> WeeklyInputs:
        """This week's and last week's metrics and what the report lists (daily gaps filled first)."""
        monday = week_monday(monday)
        now = utc(now or self.clock())
        this, last = week_window(monday), week_window(monday - timedelta(days=7))
        if this.start >= now:
            raise InvalidInput(f"the week of {monday} has not started yet")
        gathered = self.job.gather([last, this])
        self.gaps = list(gathered.notes) if gathered.partial else []
        self._fill_days(gathered, [last, this], now)
        known = as_of(this, now)
        return WeeklyInputs(
            week_start=monday,
            this_week=self.job.compute(this, gathered, now).to_doc(),
            last_week=self.job.compute(last, gathered, now).to_doc(),
            releases=week_releases(gathered.releases, this.until(known)),
            incidents=week_incidents(gathered.incidents, this.until(known)),
            findings=self.job.sources.top_findings(MAX_FINDINGS),
            examples=agent_examples(gathered.tasks, this.until(known)),
            now=known,
        )

    def _fill_days(self, gathered: Gathered, weeks: Sequence[Window], now: datetime) -> None:
        days = [week.start.date() + timedelta(days=offset) for week in weeks for offset in range(7)]
        for day in self.job.missing([day for day in days if day_window(day).start < now], now):
            self.job.write(self.job.compute(day_window(day), gathered, now), gathered)

    def markdown(self, inputs: WeeklyInputs) -> str:
        return weekly_markdown(inputs, link_base(self.api_url))

    def html(self, inputs: WeeklyInputs) -> str:
        return weekly_html(inputs, link_base(self.api_url))

    # ---- posting -----------------------------------------------------------------------------

    def post_weekly(self, monday: date, now: datetime | None = None, post: bool = True,
                    inputs: WeeklyInputs | None = None) -> Posted:
        """Render, post (create or edit the week's issue) and store the week's report."""
        monday = week_monday(monday)
        inputs = inputs or self.build_inputs(monday, now)
        body = self.markdown(inputs)
        week = monday.isoformat()
        if not post:
            posted = Posted(week, body, "stored", "not posted: posting was not asked for")
        elif not self.report_repo:
            posted = Posted(week, body, "stored", NOT_CONFIGURED)
        elif self.github() is None:
            posted = Posted(week, body, "stored", NO_GITHUB)
        else:
            posted = self._post(monday, body)
        self._store(monday, posted)
        return posted

    def _installation(self, app: Any) -> int:
        snap = self.job.sources._call(
            f"read {self.report_repo}", self.job.client.collection("repos").document(
                repo_doc_id(self.report_repo)).get)
        doc = snap.to_dict() if snap.exists else None
        installation = int((doc or {}).get("installation_id") or 0)
        return installation or int(app.installation_for(self.report_repo))

    def _post(self, monday: date, body: str) -> Posted:
        app = self.github()
        repo, week, title = self.report_repo, monday.isoformat(), report_title(monday)
        installation = self._installation(app)

        def client_for(installation_id: int, repository: str, task_id: str = "") -> Any:
            return app.client_for("orchestrator", installation_id, [repository], task_id=task_id)

        if self.audit is None:
            raise InvalidInput("posting the weekly report needs the audit log")
        executor = Executor(self.audit, client_for, actor="orchestrator", dry_run=self.dry_run)
        client = client_for(installation, repo)
        found = find_issue_by_marker(client, repo, report_marker(monday), REPORT_LABEL)
        if found is not None:
            number, url = int(found["number"]), str(found.get("html_url") or "")
            if str(found.get("body") or "") == body and str(found.get("title") or "") == title:
                return Posted(week, body, "unchanged", f"{repo}#{number} is up to date", number, url)
            # One key per edit of one version of the issue: a retry of the same edit is made once, and
            # a later change (even back to an earlier body) is a new edit.
            seen = f"{found.get('updated_at') or ''}\n{found.get('body') or ''}"
            digest = hashlib.sha256(f"{seen}\n{body}".encode()).hexdigest()[:24]
            answer = executor.apply(UpdateIssue(repo, number, key=f"weekly-report:{repo}:{week}:{digest}",
                                                title=title, body=body), installation, raise_refused=True)
            if answer is None:
                return Posted(week, body, "dry_run" if self.dry_run else "unchanged",
                              f"{repo}#{number}: this edit was made before"
                              + (" (dry run)" if self.dry_run else ""), number, url)
            return Posted(week, body, "updated", f"updated {repo}#{number}", number,
                          str(answer.get("html_url") or url))
        answer = executor.apply(CreateIssue(repo, title, body, (REPORT_LABEL,),
                                            key=f"weekly-report:{repo}:{week}:create"),
                                installation, raise_refused=True)
        if answer is None:
            if self.dry_run:
                return Posted(week, body, "dry_run", f"dry run: would open the report issue in {repo}")
            return Posted(week, body, "stored", f"not posted: the report issue of {week} was opened before "
                          f"in {repo} and is no longer found by its marker and label")
        number = int(answer.get("number") or 0)
        return Posted(week, body, "created", f"opened {repo}#{number}", number,
                      str(answer.get("html_url") or ""))

    def _store(self, monday: date, posted: Posted) -> None:
        ref = (self.job.client.collection(METRICS).document(monday.isoformat())
               .collection(REPORTS).document(WEEKLY))
        doc = {"week": posted.week, "markdown": posted.markdown, "issue_number": posted.issue_number,
               "issue_url": posted.issue_url, "outcome": posted.outcome, "summary": posted.summary,
               "repository": self.report_repo, "generated_at": utc(self.clock())}
        if posted.outcome in ("stored", "dry_run", "unchanged"):
            # A report not posted this time keeps the issue an earlier run posted.
            snap = self.job.sources._call("read the stored report", ref.get)
            before = snap.to_dict() if snap.exists else {}
            if before and not posted.issue_number:
                doc["issue_number"] = int(before.get("issue_number") or 0)
                doc["issue_url"] = str(before.get("issue_url") or "")
        self.job.sources._call("store the weekly report", lambda: ref.set(doc))

    def stored(self, monday: date) -> dict[str, Any] | None:
        ref = (self.job.client.collection(METRICS).document(week_monday(monday).isoformat())
               .collection(REPORTS).document(WEEKLY))
        snap = self.job.sources._call("read the stored report", ref.get)
        return snap.to_dict() if snap.exists else None

    def weekly_job(self) -> str:
        """The orchestrator's `weekly_report` job: last week's report, posted and stored.

        When a transient failure left figures out, the report is posted as it is and the job then
        raises RetryableError: the tick is delivered again, and the issue edited in place once GitHub
        answers (the daily documents heal on their own; the week's issue has no other retry).
        """
        monday = report_monday(self.clock())
        posted = self.post_weekly(monday)
        summary = f"weekly report {posted.week}: {posted.summary}"
        if self.gaps:
            raise RetryableError(f"{summary}; to be built again, figures were left out: "
                                 + "; ".join(self.gaps)[:500])
        return summary


def from_services(services: Any) -> WeeklyReport:
    """The weekly report over a `shared.bootstrap.Services`."""
    from functions.metrics import job

    config = services.config
    return WeeklyReport(job.from_services(services), config.report_repo, github=services.github_or_none,
                        audit=services.audit, api_url=config.github_api_url, dry_run=config.dry_run)
