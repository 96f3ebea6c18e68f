"""What the metrics are computed from: Firestore's first-party records, and GitHub's pull requests.

`MetricsSources.gather(span)` reads everything one or more windows inside `span` need and returns
`Gathered`: the pure core's `MetricsInputs` plus the documents the weekly report shows, and notes on
what could not be read. Nothing here computes a metric.

Firestore:

- `deployments/{id}` (the deploy agent's releases) started since `span.start - LOOKBACK`, so an
  incident in the window can be attributed to an older deploy;
- `incidents/{id}` opened since `span.start - LOOKBACK`;
- `tasks/{id}` updated since `span.start`, and every task active now (their `TASK_FIELDS`, with
  their history);
- `repos/{owner:name}/scans/{id}` (the scout's snapshots) taken since `span.start - LOOKBACK`, the
  newest `MAX_SCANS`, only their `SCAN_FIELDS` (not the scan's `facts`): CI runs of every scan, the
  newest scan's copy of a run winning, and the coverage baselines they saw;
- `repos/{owner:name}/findings/{fp}` open, for the report's top findings;
- `control/usage-{day}` (the budget counters) for the spend.

GitHub, per installed repository (`repos/{owner:name}.installation_id`), with the orchestrator's
installation token: pull requests updated since `span.start - PULL_LOOKBACK` and opened before
`span.end`, with their reviews, and for each deployed pull request its author and its first commit's
time (`/pulls/{n}/commits`; when that cannot be read, the pull request's `created_at`, marked as such).
What is learned about a release is kept on its document (`change`), so it is fetched once. Reads
are bounded (`MAX_*`); a repository GitHub cannot answer for has no pull-request figures, and a note
says why. A transient failure (GitHub unavailable, the App's login unknown) also makes the result
`partial`, so the job computes those days again on a later run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from functions.metrics import MetricsInputs
from functions.metrics.agents import PullRequest, Review, Task, task_from_doc
from functions.metrics.dora import (
    CiRun,
    CoverageSample,
    Deployment,
    Incident,
    MetricsInputError,
    Window,
    deployment_from_release_doc,
    incident_from_doc,
    utc,
)
from functions.orchestrator import lifecycle
from functions.repo_scout.health import severity_rank
from shared.errors import PermanentError, RetryableError
from shared.task_store import DocumentStore, repo_doc_id, where

log = logging.getLogger("agentops.metrics")

DEPLOYMENTS = "deployments"
INCIDENTS = "incidents"
TASKS = "tasks"
REPOS = "repos"
SCANS = "scans"
FINDINGS = "findings"
CONTROL = "control"

LOOKBACK = timedelta(days=28)  # deploys an incident may name; the coverage baseline before a window
PULL_LOOKBACK = timedelta(days=7)  # pull requests updated this long before a window still count
MAX_PULL_PAGES = 3  # of 100 pull requests each, newest update first
MAX_PULLS = 200  # per repository and read
MAX_REVIEW_PAGES = 2
MAX_COMMIT_PAGES = 3  # GitHub lists at most 250 commits of a pull request
MAX_CHANGES = 100  # deployed pull requests looked up per read; the rest wait for the next one
MAX_SCANS = 400  # per repository: a scan every 4 hours over the lookback and a week is ~200
SCAN_FIELDS = ("scanned_at", "coverage", "ci_runs")  # all a scan gives the metrics
# All a task gives the metrics and the report (not its inputs, checkpoint...): a minute's tick is a task.
TASK_FIELDS = ("task_id", "agent", "kind", "repository", "number", "status", "history", "cost_units",
               "approval", "result", "updated_at")
MAX_FINDINGS = 50  # per repository, before the report keeps the top ones
FINISHED_RUN = frozenset({"success", "failure", "timed_out", "startup_failure", "action_required",
                          "cancelled", "skipped", "neutral", "stale"})
GITHUB_ACTOR = "orchestrator"  # whose installation token reads (the App's orchestrator permissions)
COMMITS = "commits"
PULL_CREATED = "pull_created_at"  # the fallback when the pull request's commits cannot be read


@dataclass
class Gathered:
    """Everything read for a span: the pure core's inputs and the documents the report shows."""

    inputs: MetricsInputs
    releases: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    repositories: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spent_by_day: dict[str, float] = field(default_factory=dict)
    partial: bool = False  # a transient failure left figures out: the days are computed again later

    def spent(self, window: Window) -> float | None:
        """The budget counters' spend over the window's days; None when none was recorded."""
        day, total, found = window.start.date(), 0.0, False
        while datetime(day.year, day.month, day.day, tzinfo=window.start.tzinfo) < window.end:
            value = self.spent_by_day.get(day.isoformat())
            if value is not None:
                total, found = total + value, True
            day += timedelta(days=1)
        return total if found else None


def _time(value: Any) -> datetime | None:
    """A Firestore timestamp or GitHub's ISO 8601 text as a UTC datetime; None otherwise."""
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, str) and value:
        try:
            return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _login(item: Any) -> str:
    user = item.get("user") if isinstance(item, Mapping) else None
    return str(user.get("login") or "") if isinstance(user, Mapping) else ""


def pull_from_github(repository: str, pull: Mapping[str, Any], reviews: Iterable[Mapping[str, Any]]
                     ) -> PullRequest | None:
    """A pull request and its reviews as GitHub's REST API gives them; None without an opening time."""
    opened = _time(pull.get("created_at"))
    if opened is None:
        return None
    found = []
    for review in reviews:
        submitted = _time(review.get("submitted_at")) if isinstance(review, Mapping) else None
        if submitted is None:
            continue  # a pending review has no submission time
        found.append(Review(_login(review), str(review.get("state") or ""), submitted,
                            str(review.get("commit_id") or "")))
    return PullRequest(repository, int(pull.get("number") or 0), _login(pull), opened, tuple(found),
                       _time(pull.get("merged_at")), _time(pull.get("closed_at")))


def ci_runs_from_scans(repository: str, scans: Sequence[Mapping[str, Any]]) -> list[CiRun]:
    """The finished CI runs the scans saw, one per run id, the newest scan's copy winning."""
    ordered = sorted((scan for scan in scans if _time(scan.get("scanned_at")) is not None),
                     key=lambda scan: _time(scan.get("scanned_at")))  # type: ignore[arg-type,return-value]
    runs: dict[str, CiRun] = {}
    for scan in ordered:
        for run in scan.get("ci_runs") or []:
            if not isinstance(run, Mapping):
                continue
            conclusion = str(run.get("conclusion") or "").lower()
            finished = _time(run.get("updated_at")) or _time(run.get("created_at"))
            if conclusion not in FINISHED_RUN or finished is None:
                continue  # still running: it says nothing yet
            key = str(run.get("run_id") or f"{run.get('workflow')}:{run.get('head_sha')}:{finished}")
            runs[key] = CiRun(conclusion, finished, repository, str(run.get("actor") or ""))
    return sorted(runs.values(), key=lambda run: (run.finished_at, run.conclusion))


def coverage_from_scans(repository: str, scans: Sequence[Mapping[str, Any]],
                        authors: Mapping[str, str] | None = None) -> list[CoverageSample]:
    """The default branch's line coverage (percent) as the scans saw it, one sample per baseline.

    A scan repeats the baseline it found (`coverage.at`, `coverage.sha`); the same baseline seen by
    several scans is one sample, at its own time (the scan's time when it has none). `authors` maps a
    merge commit to its pull request's author, to credit the change; an unknown one is a human's.
    """
    authors = authors or {}
    samples: dict[tuple[datetime, str], CoverageSample] = {}
    for scan in scans:
        coverage = scan.get("coverage")
        if not isinstance(coverage, Mapping):
            continue
        rate = coverage.get("line_rate")
        at = _time(coverage.get("at")) or _time(scan.get("scanned_at"))
        if at is None or isinstance(rate, bool) or not isinstance(rate, int | float):
            continue
        sha = str(coverage.get("sha") or "")
        try:
            samples[(at, sha)] = CoverageSample(at, float(rate), repository, authors.get(sha, ""), sha)
        except MetricsInputError:
            continue  # a rate outside 0-100 is not a coverage figure
    return sorted(samples.values(), key=lambda sample: (sample.at, sample.sha))


class MetricsSources(DocumentStore):
    """The readers. `github`: the GitHub App or None; `app_login`: the App's bot login."""

    def __init__(self, client: Any, github: Callable[[], Any] | None = None,
                 app_login: Callable[[], str] | None = None) -> None:
        super().__init__(client)
        self._github = github or (lambda: None)
        self._app_login = app_login or (lambda: "")
        self._login: str | None = None
        self._login_error: tuple[str, bool] | None = None  # why the login is unknown, and if transient

    # ---- Firestore ---------------------------------------------------------------------------

    def app_login(self) -> str:
        if self._login is None:
            try:
                self._login = str(self._app_login() or "")
            except (PermanentError, RetryableError) as exc:
                log.warning("metrics: the App's login is unknown: %s", exc)
                self._login = ""
                self._login_error = (str(exc)[:200], isinstance(exc, RetryableError))
        return self._login

    def _stream(self, what: str, query: Any) -> list[dict[str, Any]]:
        return self._call(what, lambda: [{**(snap.to_dict() or {}), "_id": snap.id}
                                         for snap in query.stream()])

    def release_docs(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        query = where(self._client.collection(DEPLOYMENTS), "started_at", ">=", since)
        docs = [doc for doc in self._stream("read the releases", query)
                if (_time(doc.get("started_at")) or until) < until]
        return sorted(docs, key=lambda doc: (doc["started_at"], str(doc.get("id") or "")))

    def incident_docs(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        query = where(self._client.collection(INCIDENTS), "opened_at", ">=", since)
        docs = [doc for doc in self._stream("read the incidents", query)
                if (_time(doc.get("opened_at")) or until) < until]
        return sorted(docs, key=lambda doc: (doc["opened_at"], str(doc.get("incident_id") or "")))

    def task_docs(self, since: datetime) -> list[dict[str, Any]]:
        tasks = self._client.collection(TASKS)
        updated = where(tasks, "updated_at", ">=", since).select(TASK_FIELDS)
        active = where(tasks, "status", "in", sorted(lifecycle.ACTIVE)).select(TASK_FIELDS)
        found: dict[str, dict[str, Any]] = {}
        for doc in self._stream("read the tasks", updated) + self._stream("read the active tasks", active):
            found[str(doc.get("task_id") or doc["_id"])] = doc
        return [found[key] for key in sorted(found)]

    def repositories(self) -> list[dict[str, Any]]:
        """Every repository the App is installed on (`repos/{owner:name}` with `installed`)."""
        docs = self._stream("read the repositories", self._client.collection(REPOS))
        return sorted((doc for doc in docs if doc.get("full_name") and doc.get("installed", True)),
                      key=lambda doc: str(doc["full_name"]))

    def scans(self, repository: str, since: datetime) -> list[dict[str, Any]]:
        ref = self._client.collection(REPOS).document(repo_doc_id(repository)).collection(SCANS)
        query = where(ref, "scanned_at", ">=", since).order_by("scanned_at", direction="DESCENDING")
        query = query.limit(MAX_SCANS)  # the newest ones, when a repository has more
        query = query.select(SCAN_FIELDS)  # not the scan's `facts`: hundreds of items each
        return self._stream(f"read {repository}'s scans", query)

    def findings(self, repository: str) -> list[dict[str, Any]]:
        """The repository's open findings, most severe first, then the oldest first."""
        ref = self._client.collection(REPOS).document(repo_doc_id(repository)).collection(FINDINGS)
        docs = self._stream(f"read {repository}'s findings", where(ref, "state", "==", "open"))
        docs.sort(key=_finding_order)
        return [{**doc, "repository": repository} for doc in docs[:MAX_FINDINGS]]

    def top_findings(self, limit: int = 10) -> list[dict[str, Any]]:
        found = [doc for repo in self.repositories() for doc in self.findings(str(repo["full_name"]))]
        found.sort(key=lambda doc: (*_finding_order(doc), doc["repository"]))
        return found[:limit]

    def spend(self, days: Iterable[str]) -> dict[str, float]:
        out = {}
        for day in days:
            ref = self._client.collection(CONTROL).document(f"usage-{day}")
            snap = self._call(f"read usage {day}", ref.get)
            doc = snap.to_dict() if snap.exists else None
            if doc and isinstance(doc.get("cost"), int | float):
                out[day] = float(doc["cost"])
        return out

    # ---- GitHub ------------------------------------------------------------------------------

    def _client_for(self, repo_doc: Mapping[str, Any]) -> Any:
        app = self._github()
        if app is None:
            return None
        repository = str(repo_doc["full_name"])
        installation = int(repo_doc.get("installation_id") or 0) or app.installation_for(repository)
        return app.client_for(GITHUB_ACTOR, installation, [repository])

    def pull_requests(self, client: Any, repository: str, since: datetime,
                      until: datetime | None = None) -> list[PullRequest]:
        """Pull requests updated since `since` and opened before `until`, newest update first, with
        their reviews. One opened at `until` or later counts in no figure of the span: its reviews
        are not asked for and it takes no place among the MAX_PULLS kept."""
        pulls: list[PullRequest] = []
        listing = client.paginate(f"/repos/{repository}/pulls",
                                  {"state": "all", "sort": "updated", "direction": "desc"},
                                  max_pages=MAX_PULL_PAGES)
        for pull in listing:
            updated = _time(pull.get("updated_at")) if isinstance(pull, Mapping) else None
            if updated is not None and updated < since:
                break
            if len(pulls) >= MAX_PULLS:
                break
            opened = _time(pull.get("created_at")) if isinstance(pull, Mapping) else None
            if until is not None and opened is not None and opened >= until:
                continue
            number = int(pull.get("number") or 0)
            reviews = list(client.paginate(f"/repos/{repository}/pulls/{number}/reviews",
                                           max_pages=MAX_REVIEW_PAGES))
            found = pull_from_github(repository, pull, reviews)
            if found is not None:
                pulls.append(found)
        return pulls

    def change_of(self, client: Any, release: Mapping[str, Any]) -> dict[str, Any] | None:
        """The deployed pull request's author and first commit time, from GitHub."""
        repository, number = str(release.get("repository") or ""), int(release.get("pull_number") or 0)
        pull = client.request("GET", f"/repos/{repository}/pulls/{number}")
        created = _time(pull.get("created_at"))
        first, source = None, PULL_CREATED
        try:
            path = f"/repos/{repository}/pulls/{number}/commits"
            listing = client.paginate(path, max_pages=MAX_COMMIT_PAGES)
            times = [_time(_commit_date(commit)) for commit in listing]
            known = [moment for moment in times if moment is not None]
            if known:
                first, source = min(known), COMMITS
        except PermanentError as exc:
            log.info("metrics: %s#%s's commits are unreadable, its opening time stands in: %s",
                     repository, number, exc)
        if first is None:
            first = created
        if first is None:
            return None
        return {"author": _login(pull), "first_commit_at": first, "first_commit_source": source,
                "pull_created_at": created}

    def _learn_changes(self, releases: list[dict[str, Any]], clients: Mapping[str, Any],
                       notes: list[str]) -> None:
        """Fill `change` on the releases that have none, and keep it on their documents."""
        asked = 0
        for release in releases:
            if isinstance(release.get("change"), Mapping) or not int(release.get("pull_number") or 0):
                continue
            client = clients.get(str(release.get("repository") or ""))
            if client is None or asked >= MAX_CHANGES:
                continue
            asked += 1
            try:
                change = self.change_of(client, release)
            except PermanentError as exc:
                notes.append(f"{release.get('repository')}: pull request {release.get('pull_number')} "
                             f"of release {release.get('id')} is unreadable: {str(exc)[:200]}")
                continue
            if change is None:
                continue
            release["change"] = change
            release_id = str(release.get("id") or release.get("_id") or "")
            if release_id:
                self._call(f"keep release {release_id}'s change",
                           lambda rid=release_id, value=change: self._client.collection(DEPLOYMENTS)
                           .document(rid).set({"change": value}, merge=True))

    # ---- all of it ---------------------------------------------------------------------------

    def gather(self, span: Window) -> Gathered:
        since = span.start - LOOKBACK
        notes: list[str] = []
        release_docs = self.release_docs(since, span.end)
        incident_docs = self.incident_docs(since, span.end)
        task_docs = self.task_docs(span.start)
        repositories = self.repositories()

        clients: dict[str, Any] = {}
        pulls: list[PullRequest] = []
        partial = False
        if self._github() is None:
            notes.append("GitHub is not configured: no pull-request figures, no lead times")
        elif not self.app_login() and self._login_error is not None:
            # Without it the App's pull requests and reviews would count as a human's.
            partial = partial or self._login_error[1]
            notes.append("the App's login is unknown, its pull requests count as human: "
                         f"{self._login_error[0]}")
        for repo in repositories:
            name = str(repo["full_name"])
            try:
                client = self._client_for(repo)
                if client is None:
                    continue
                pulls.extend(self.pull_requests(client, name, span.start - PULL_LOOKBACK, span.end))
                clients[name] = client
            except PermanentError as exc:
                notes.append(f"{name}: pull requests not read, no pull-request figures: {str(exc)[:200]}")
            except RetryableError as exc:
                partial = True
                notes.append(f"{name}: GitHub is unavailable, no pull-request figures: {str(exc)[:200]}")
        try:
            self._learn_changes(release_docs, clients, notes)
        except RetryableError as exc:
            partial = True
            notes.append(f"GitHub is unavailable for lead times: {str(exc)[:200]}")

        deployments: list[Deployment] = []
        first_commits: dict[str, datetime] = {}
        for doc in release_docs:
            change = doc.get("change") if isinstance(doc.get("change"), Mapping) else {}
            try:
                deployments.append(deployment_from_release_doc(doc, str(change.get("author") or "")))
            except MetricsInputError as exc:
                notes.append(f"release {doc.get('id')} skipped: {exc}")
                continue
            first = _time(change.get("first_commit_at"))
            if first is not None and doc.get("sha"):
                first_commits[str(doc["sha"])] = first
        incidents: list[Incident] = []
        for doc in incident_docs:
            try:
                incidents.append(incident_from_doc(doc))
            except MetricsInputError as exc:
                notes.append(f"incident {doc.get('incident_id')} skipped: {exc}")
        tasks: list[Task] = []
        for doc in task_docs:
            try:
                tasks.append(task_from_doc(doc))
            except (MetricsInputError, KeyError, TypeError, ValueError) as exc:
                notes.append(f"task {doc.get('task_id')} skipped: {exc}")

        authors = {str(doc.get("sha")): str(doc["change"].get("author") or "") for doc in release_docs
                   if doc.get("sha") and isinstance(doc.get("change"), Mapping)}
        runs: list[CiRun] = []
        coverage: list[CoverageSample] = []
        scanned = 0
        for repo in repositories:
            name = str(repo["full_name"])
            scans = self.scans(name, since)
            scanned += bool(scans)
            runs.extend(ci_runs_from_scans(name, scans))
            coverage.extend(coverage_from_scans(name, scans, authors))
        if not scanned:
            notes.append("no scout scans: build and coverage figures have no data")

        days, day = [], span.start.date()
        while datetime(day.year, day.month, day.day, tzinfo=span.start.tzinfo) < span.end:
            days.append(day.isoformat())
            day += timedelta(days=1)
        inputs = MetricsInputs(deployments=tuple(deployments), incidents=tuple(incidents),
                               first_commits=first_commits, tasks=tuple(tasks), pull_requests=tuple(pulls),
                               ci_runs=tuple(runs), coverage=tuple(coverage))
        return Gathered(inputs, release_docs, incident_docs, task_docs, repositories, notes,
                        self.spend(days), partial)


def _finding_order(doc: Mapping[str, Any]) -> tuple[int, datetime, str]:
    """Most severe first, then the oldest, then by title."""
    return (severity_rank(str(doc.get("severity") or "")), _time(doc.get("first_seen")) or _NEVER,
            str(doc.get("title") or ""))


_NEVER = utc(datetime(9999, 12, 31))


def _commit_date(commit: Any) -> Any:
    """A listed commit's author date (when it was written), else its committer date."""
    inner = commit.get("commit") if isinstance(commit, Mapping) else None
    if not isinstance(inner, Mapping):
        return None
    for who in ("author", "committer"):
        person = inner.get(who)
        if isinstance(person, Mapping) and person.get("date"):
            return person["date"]
    return None
