"""The repo scout's collectors: GitHub REST reads into `health.RepoFacts`, every request counted.

`collect(client, repo, ...)` reads one repository through an installation client (`shared.github.rest`
`RestClient`: conditional requests with the ETag cache, so a 304 costs no rate limit):

- `GET /repos/{repo}`: the default branch and the repository's id (the fingerprints' key);
- `GET /repos/{repo}/actions/runs?branch=<default>&status=completed&created=>=<30 days ago>`, newest
  first, at most MAX_RUN_PAGES pages of 100;
- `GET /repos/{repo}/dependabot/alerts?state=open`; 403 "disabled" or 404: not enabled; any other 403
  (the app lacks `vulnerability_alerts`): unknown;
- `GET /repos/{repo}/code-scanning/alerts?state=open`; 404 (no analysis) or 403 naming code scanning or
  Advanced Security as off: not enabled; any other 403 (no `security_events`): unknown;
- `GET /repos/{repo}/branches/{default}/protection`: classic protection; 403 (no `administration: read`,
  or a plan without protection) is unknown. On its 404 "Branch not protected", `GET /repos/{repo}/rules/
  branches/{default}` (the active ruleset rules for the branch, metadata read): protected ("present") when
  they hold a rule of PROTECTING_RULES, else absent; its 403 is unknown;
- `GET /repos/{repo}/issues?state=open`: issues and pull requests in one listing (a pull request has
  `pull_request`), with their labels, author type, created and updated times; the health issue is found
  in it by its marker (or, after a rename, by another repository's marker on an issue a bot opened);
- `GET /repos/{repo}/pulls/{n}/reviews` for a ready pull request older than the first-review threshold
  whose first review is not known yet (the oldest first, at most MAX_REVIEW_LOOKUPS per scan; a first
  review found on an earlier scan is carried over and never asked for again; those beyond the bound
  are marked and looked up at a later scan). The author's own review is not a first review.

Missing permission for one kind of data makes that kind "unknown" (`Collected.unknown`), never a crash;
`health.assess` then leaves its kinds unchecked. A listing cut at its page bound is "partial"
(`Collected.partial`): the previously open findings of items it did not reach stay open
(`hidden_by_cut`), never ticked fixed. Rate limits and server errors propagate (retryable).
Coverage comes from Firestore, not from GitHub (`coverage_points`).

`CountingClient` wraps the client and counts the requests made for one repository (`requests`, of
which `not_modified` were 304s, free of rate limit) from the client's own `Stats`, so retries count too.
`facts_to_doc` / `facts_from_doc` keep the facts in a scan document, for re-assessing an unchanged
repository without reading it again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from functions.repo_scout.health import (
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
)
from shared.errors import PermanentError
from shared.github.rest import Forbidden, NotFound

MAX_RUN_PAGES = 3
MAX_ALERT_PAGES = 5
MAX_ISSUE_PAGES = 5
MAX_REVIEW_LOOKUPS = 20
MAX_RULE_PAGES = 3
# The ruleset rules that make a branch protected, as classic protection at its least does (no force push,
# no deletion) or more (reviews, checks). Rules on commit messages, file paths, signatures... do not.
PROTECTING_RULES = frozenset({"pull_request", "required_status_checks", "non_fast_forward", "deletion"})
MAX_CI_RUNS_STORED = 100  # the scan document's `ci_runs`
MAX_ITEMS_STORED = 500  # issues, pull requests or alerts kept in a scan document's facts
KINDS_READ = ("repository", "ci", "dependabot", "code_scanning", "branch_protection", "issues", "reviews")
PER_PAGE = 100  # `RestClient.paginate`'s page size
MARKER_PREFIX = "<!-- agent-ops:scout:"  # `issue.issue_marker` without the repository
# A listing cut at its page bound leaves items out: the findings of these kinds not seen stay open.
PARTIAL_KINDS: Mapping[str, tuple[str, ...]] = {
    "ci": ("ci_failing",), "dependabot": ("dependabot_alert",), "code_scanning": ("code_scanning_alert",),
    "issues": ("stale_issue", "stale_pr", "pr_waiting_review")}


class CountingClient:
    """The installation client, with the requests made through it counted (from its `Stats`)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        stats = getattr(client, "stats", None)
        self._start = (getattr(stats, "requests", 0), getattr(stats, "not_modified", 0))
        self._fallback = 0  # for a client without stats (a test double): one per call

    @property
    def requests(self) -> int:
        stats = getattr(self._client, "stats", None)
        if stats is None:
            return self._fallback
        return int(stats.requests) - self._start[0]

    @property
    def not_modified(self) -> int:
        stats = getattr(self._client, "stats", None)
        return 0 if stats is None else int(stats.not_modified) - self._start[1]

    @property
    def rate_limit(self) -> Any:
        return getattr(self._client, "rate_limit", None)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self._fallback += 1
        return self._client.request(method, path, **kwargs)

    def paginate(self, path: str, params: Mapping[str, Any] | None = None,
                 max_pages: int = 10) -> Iterator[Any]:
        self._fallback += 1
        yield from self._client.paginate(path, params, max_pages=max_pages)


@dataclass
class Collected:
    """What one repository's reads came to."""

    facts: RepoFacts
    repository_id: int = 0
    unknown: list[str] = field(default_factory=list)  # kinds of data the app could not read
    notes: list[str] = field(default_factory=list)  # why, for the scan document
    health_issue: dict[str, Any] | None = None  # the open health issue, found in the issue listing
    ci_rows: list[dict[str, Any]] = field(default_factory=list)  # the scan document's `ci_runs`
    partial: list[str] = field(default_factory=list)  # kinds whose listing was cut at its page bound
    unreviewed: list[int] = field(default_factory=list)  # pull requests whose reviews were not looked up


def hidden_by_cut(previous: Iterable[Finding], partial: Iterable[str], facts: RepoFacts) -> list[Finding]:
    """The previously open findings a listing cut at its page bound (`partial`) may have hidden: of its
    kinds, those whose item (alert, issue, pull request, workflow) is not in what was read. They stay
    open rather than being ticked fixed; an item that was read is judged afresh."""
    kinds = {kind for name in partial for kind in PARTIAL_KINDS.get(name, ())}
    if not kinds:
        return []
    seen: dict[str, set[str]] = {
        "ci_failing": {f"workflow:{run.workflow_id}" if run.workflow_id else f"name:{run.workflow_name}"
                       for run in facts.runs or ()},
        "dependabot_alert": {f"alert:{alert.number}" for alert in facts.dependabot.alerts},
        "code_scanning_alert": {f"alert:{alert.number}" for alert in facts.code_scanning.alerts},
        "stale_issue": {f"issue:{issue.number}" for issue in facts.issues or ()},
        "stale_pr": {f"pull:{pull.number}" for pull in facts.pulls or ()},
        "pr_waiting_review": {f"pull:{pull.number}" for pull in facts.pulls or ()},
    }
    return [item for item in previous if item.kind in kinds and item.identity not in seen.get(item.kind, ())]


def parse_time(value: Any) -> datetime | None:
    """A GitHub timestamp (or a Firestore one) as an aware UTC datetime; None when it is not one."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _when(value: Any, default: datetime) -> datetime:
    return parse_time(value) or default


def _forbidden_kind(exc: Forbidden, words: Sequence[str]) -> str:
    """not_enabled when GitHub's 403 says the feature is off, else unknown (no permission)."""
    text = str(exc).lower()
    return "not_enabled" if any(word in text for word in words) else "unknown"


def read_repository(client: Any, repo: str) -> dict[str, Any]:
    answer = client.request("GET", f"/repos/{repo}")
    if not isinstance(answer, Mapping):
        raise PermanentError(f"GET /repos/{repo}: not a repository")
    return dict(answer)


def read_runs_with_details(client: Any, repo: str, branch: str, now: datetime,
                           days: int) -> tuple[list[WorkflowRun], list[dict[str, Any]], bool]:
    """The default branch's completed runs of the last `days`, their rows for the scan document, and
    whether GitHub holds more than MAX_RUN_PAGES pages of them (the oldest were not read)."""
    since = (now - timedelta(days=days)).astimezone(UTC)
    params = {"branch": branch, "status": "completed", "created": f">={since:%Y-%m-%d}",
              "exclude_pull_requests": "true"}
    runs: list[WorkflowRun] = []
    rows: dict[int, dict[str, Any]] = {}
    total = seen = 0
    for page in client.paginate(f"/repos/{repo}/actions/runs", params, max_pages=MAX_RUN_PAGES):
        items = page.get("workflow_runs") if isinstance(page, Mapping) else None
        count = page.get("total_count") if isinstance(page, Mapping) else None
        if isinstance(count, int) and not isinstance(count, bool):
            total = max(total, count)
        seen += len(items) if isinstance(items, list) else 0
        for item in items or ():
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), int) or item["id"] in rows:
                continue
            if item.get("head_branch") not in (None, branch):
                continue
            created = _when(item.get("created_at"), now)
            updated = _when(item.get("updated_at"), created)
            run = WorkflowRun(id=int(item["id"]), workflow_id=int(item.get("workflow_id") or 0),
                              workflow_name=str(item.get("name") or ""), conclusion=item.get("conclusion"),
                              created_at=created, updated_at=updated)
            runs.append(run)
            actor = item.get("actor") if isinstance(item.get("actor"), Mapping) else {}
            rows[run.id] = {"run_id": run.id, "workflow_id": run.workflow_id,
                            "workflow": run.workflow_name[:200], "conclusion": str(run.conclusion or ""),
                            "created_at": created, "updated_at": updated,
                            "actor": str(actor.get("login") or "")[:100],
                            "event": str(item.get("event") or ""),
                            "head_sha": str(item.get("head_sha") or "")}
    runs.sort(key=lambda run: (run.created_at, run.id), reverse=True)
    return runs, [rows[run.id] for run in runs], total > seen


def read_dependabot(client: Any, repo: str) -> Dependabot:
    try:
        alerts = []
        for item in client.paginate(f"/repos/{repo}/dependabot/alerts", {"state": "open"},
                                    max_pages=MAX_ALERT_PAGES):
            if not isinstance(item, Mapping) or not isinstance(item.get("number"), int):
                continue
            advisory = _map(item.get("security_advisory"))
            vulnerability = _map(item.get("security_vulnerability"))
            package = _map(_map(item.get("dependency")).get("package"))
            severity = str(vulnerability.get("severity") or advisory.get("severity") or "medium")
            alerts.append(DependabotAlert(
                number=int(item["number"]), severity=severity, state=str(item.get("state") or "open"),
                package=str(package.get("name") or ""), summary=str(advisory.get("summary") or ""),
                ecosystem=str(package.get("ecosystem") or "")))
        return Dependabot("enabled", tuple(alerts))
    except NotFound:
        return Dependabot("not_enabled")
    except Forbidden as exc:
        status = _forbidden_kind(exc, ("disabled", "not enabled"))
        return Dependabot("not_enabled" if status == "not_enabled" else "unknown")


def read_code_scanning(client: Any, repo: str) -> CodeScanning:
    try:
        alerts = []
        for item in client.paginate(f"/repos/{repo}/code-scanning/alerts", {"state": "open"},
                                    max_pages=MAX_ALERT_PAGES):
            if not isinstance(item, Mapping) or not isinstance(item.get("number"), int):
                continue
            rule = item.get("rule") if isinstance(item.get("rule"), Mapping) else {}
            tool = item.get("tool") if isinstance(item.get("tool"), Mapping) else {}
            alerts.append(CodeScanningAlert(
                number=int(item["number"]), rule=str(rule.get("name") or rule.get("id") or ""),
                severity=str(rule.get("severity") or "warning"), state=str(item.get("state") or "open"),
                security_severity=(str(rule["security_severity_level"])
                                   if rule.get("security_severity_level") else None),
                tool=str(tool.get("name") or "")))
        return CodeScanning("enabled", tuple(alerts))
    except NotFound:
        return CodeScanning("not_enabled")  # no analysis: code scanning is not set up
    except Forbidden as exc:
        status = _forbidden_kind(exc, ("not enabled", "advanced security", "disabled"))
        return CodeScanning("not_enabled" if status == "not_enabled" else "unknown")


def read_protection(client: Any, repo: str, branch: str) -> BranchProtection:
    """Classic branch protection, else the branch's ruleset rules (`read_branch_rules`)."""
    try:
        answer = client.request("GET", f"/repos/{repo}/branches/{quote(branch, safe='')}/protection")
    except NotFound as exc:
        # "Branch not protected" (a branch GitHub does not find is not protected either): a ruleset may be.
        return read_branch_rules(client, repo, branch) if exc.status == 404 else BranchProtection("unknown")
    except Forbidden:
        return BranchProtection("unknown")
    checks: list[str] = []
    required = answer.get("required_status_checks") if isinstance(answer, Mapping) else None
    if isinstance(required, Mapping):
        for name in required.get("contexts") or ():
            checks.append(str(name))
        for check in required.get("checks") or ():
            if isinstance(check, Mapping) and check.get("context"):
                checks.append(str(check["context"]))
    return BranchProtection("present", tuple(dict.fromkeys(checks)))


def read_branch_rules(client: Any, repo: str, branch: str) -> BranchProtection:
    """The active ruleset rules GitHub applies to `branch`: present with a rule of PROTECTING_RULES (the
    contexts of a `required_status_checks` rule as its required checks), absent without; unknown when
    they cannot be read (403)."""
    types: set[str] = set()
    checks: list[str] = []
    try:
        for rule in client.paginate(f"/repos/{repo}/rules/branches/{quote(branch, safe='')}", None,
                                    max_pages=MAX_RULE_PAGES):
            if not isinstance(rule, Mapping):
                continue
            types.add(str(rule.get("type") or ""))
            if rule.get("type") == "required_status_checks":
                for check in _map(rule.get("parameters")).get("required_status_checks") or ():
                    if isinstance(check, Mapping) and check.get("context"):
                        checks.append(str(check["context"]))
    except NotFound as exc:
        return BranchProtection("absent") if exc.status == 404 else BranchProtection("unknown")
    except Forbidden:
        return BranchProtection("unknown")
    if not types & PROTECTING_RULES:
        return BranchProtection("absent")
    return BranchProtection("present", tuple(dict.fromkeys(checks)))


def _labels(item: Mapping[str, Any]) -> tuple[str, ...]:
    names = []
    for label in item.get("labels") or ():
        name = label.get("name") if isinstance(label, Mapping) else label
        if isinstance(name, str):
            names.append(name)
    return tuple(names)


@dataclass
class IssueListing:
    """The open issues and pull requests of one listing."""

    issues: list[IssueItem]
    pulls: list[PullItem]
    health: dict[str, Any] | None  # the open health issue, when it is among them (`read_issues`)
    authors: dict[int, str]  # pull request number -> its author's login (their own review is none)
    truncated: bool  # MAX_ISSUE_PAGES full pages: there may be more, the oldest


def read_issues(client: Any, repo: str, now: datetime, marker: str) -> IssueListing:
    """Open issues and pull requests (one listing), and the open health issue when it is among them.

    The health issue is an issue the App opened (a bot's: anyone may open an issue quoting the marker,
    and it would then be edited as the health issue, and linked from the dashboard) whose body holds
    `marker`; else a bot's issue whose body starts with another repository's marker: the health issue of
    this repository under its name before a rename (or transferred to it), rewritten in place."""
    issues: list[IssueItem] = []
    pulls: list[PullItem] = []
    authors: dict[int, str] = {}
    health: dict[str, Any] | None = None
    renamed: dict[str, Any] | None = None
    seen = 0
    for item in client.paginate(f"/repos/{repo}/issues", {"state": "open"}, max_pages=MAX_ISSUE_PAGES):
        seen += 1
        if not isinstance(item, Mapping) or not isinstance(item.get("number"), int):
            continue
        user = item.get("user") if isinstance(item.get("user"), Mapping) else {}
        created = _when(item.get("created_at"), now)
        updated = _when(item.get("updated_at"), created)
        title = str(item.get("title") or "")
        if "pull_request" in item:
            pulls.append(PullItem(number=int(item["number"]), title=title, created_at=created,
                                  updated_at=updated, draft=item.get("draft") is True,
                                  author_type=str(user.get("type") or "User"), labels=_labels(item)))
            authors[int(item["number"])] = str(user.get("login") or "")
            continue
        body = str(item.get("body") or "")
        by_bot = str(user.get("type") or "") == "Bot"
        if health is None and marker and by_bot and marker in body:
            health = dict(item)
        elif renamed is None and marker and by_bot and body.startswith(MARKER_PREFIX):
            renamed = dict(item)
        issues.append(IssueItem(number=int(item["number"]), title=title, created_at=created,
                                updated_at=updated, author_type=str(user.get("type") or "User"),
                                labels=_labels(item)))
    return IssueListing(issues, pulls, health or renamed, authors, seen >= MAX_ISSUE_PAGES * PER_PAGE)


def first_review(reviews: Iterable[Any], author: str = "") -> datetime | None:
    """The first submitted review by someone other than the author (a pending one is not submitted)."""
    times = []
    for review in reviews:
        if not isinstance(review, Mapping) or str(review.get("state") or "").upper() == "PENDING":
            continue
        user = review.get("user") if isinstance(review.get("user"), Mapping) else {}
        if author and user.get("login") == author:
            continue
        moment = parse_time(review.get("submitted_at"))
        if moment is not None:
            times.append(moment)
    return min(times) if times else None


def add_reviews(client: Any, repo: str, pulls: Sequence[PullItem], settings: ScoutSettings, now: datetime,
                known: Mapping[int, datetime],
                authors: Mapping[int, str] | None = None) -> tuple[list[PullItem], list[int]]:
    """The pulls with `first_review_at` where it matters; and the numbers of those not looked up.

    Only a ready pull request opened longer than `first_review_hours` ago can be waiting for its first
    review; a first review found before (`known`) is kept. The oldest are looked up first; those beyond
    MAX_REVIEW_LOOKUPS are taken as reviewed this scan (no finding rather than a false one): their
    `first_review_at` is their `created_at`, and the scan document marks them (`facts_to_doc`'s
    `unreviewed`) so that `known_reviews` does not carry that over. A review by the pull request's
    author (`authors`) is not a first review.
    """
    threshold = now - timedelta(hours=settings.first_review_hours)
    due = sorted((pull for pull in pulls if not pull.draft and (pull.ready_at or pull.created_at) <= threshold
                  and pull.number not in known), key=lambda pull: (pull.created_at, pull.number))
    looked: dict[int, datetime | None] = {}
    skipped: list[int] = []
    for pull in due:
        if len(looked) >= MAX_REVIEW_LOOKUPS:
            skipped.append(pull.number)
            continue
        reviews = client.paginate(f"/repos/{repo}/pulls/{pull.number}/reviews", None, max_pages=1)
        looked[pull.number] = first_review(list(reviews), (authors or {}).get(pull.number, ""))
    result = []
    for pull in pulls:
        if pull.number in known:
            result.append(_with_review(pull, known[pull.number]))
        elif pull.number in looked:
            result.append(_with_review(pull, looked[pull.number]))
        elif pull in due:  # beyond the bound: not judged this scan
            result.append(_with_review(pull, pull.created_at))
        else:
            result.append(pull)
    return result, skipped


def _with_review(pull: PullItem, at: datetime | None) -> PullItem:
    return dataclasses.replace(pull, first_review_at=at)


def collect(client: Any, repo: str, *, settings: ScoutSettings, now: datetime, marker: str = "",
            coverage: Sequence[CoveragePoint] | None = (),
            known_reviews: Mapping[int, datetime] | None = None,
            repository: Mapping[str, Any] | None = None) -> Collected:
    """Read one repository's facts (see the module docstring). A repository GitHub does not show raises
    PermanentError; one kind the app may not read is unknown."""
    info = dict(repository) if repository is not None else read_repository(client, repo)
    branch = str(info.get("default_branch") or "main")
    repository_id = int(info.get("id") or 0) if isinstance(info.get("id"), int) else 0
    unknown: list[str] = []
    partial: list[str] = []
    notes: list[str] = []
    unreviewed: list[int] = []

    runs: tuple[WorkflowRun, ...] | None
    rows: list[dict[str, Any]] = []
    try:
        found_runs, rows, runs_truncated = read_runs_with_details(client, repo, branch, now,
                                                                  settings.ci_window_days)
        runs = tuple(found_runs)
        if runs_truncated:
            partial.append("ci")
    except (Forbidden, NotFound) as exc:
        runs = None
        unknown.append("ci")
        notes.append(f"workflow runs: {exc}")

    dependabot = read_dependabot(client, repo)
    if dependabot.status == "unknown":
        unknown.append("dependabot")
    elif len(dependabot.alerts) >= MAX_ALERT_PAGES * PER_PAGE:
        partial.append("dependabot")
    code_scanning = read_code_scanning(client, repo)
    if code_scanning.status == "unknown":
        unknown.append("code_scanning")
    elif len(code_scanning.alerts) >= MAX_ALERT_PAGES * PER_PAGE:
        partial.append("code_scanning")
    protection = read_protection(client, repo, branch)
    if protection.status == "unknown":
        unknown.append("branch_protection")

    issues: tuple[IssueItem, ...] | None
    pulls: tuple[PullItem, ...] | None
    health_issue = None
    try:
        listing = read_issues(client, repo, now, marker)
        health_issue = listing.health
        issues = tuple(listing.issues)
        if listing.truncated:
            partial.append("issues")
            notes.append(f"issues: more than {MAX_ISSUE_PAGES * PER_PAGE} open, the oldest not read")
        try:
            reviewed, skipped = add_reviews(client, repo, listing.pulls, settings, now, known_reviews or {},
                                            listing.authors)
            pulls = tuple(reviewed)
            unreviewed = skipped
            if skipped:
                notes.append(f"reviews: {len(skipped)} pull request(s) beyond the {MAX_REVIEW_LOOKUPS} "
                             "looked up")
        except (Forbidden, NotFound) as exc:
            pulls = None
            unknown.append("reviews")
            notes.append(f"reviews: {exc}")
    except (Forbidden, NotFound) as exc:
        issues = pulls = None
        unknown.append("issues")
        notes.append(f"issues: {exc}")

    facts = RepoFacts(repo=repo, default_branch=branch, repo_key=str(repository_id) if repository_id else "",
                      runs=runs, dependabot=dependabot, code_scanning=code_scanning,
                      branch_protection=protection, issues=issues, pulls=pulls,
                      coverage=None if coverage is None else tuple(coverage))
    return Collected(facts, repository_id, unknown, notes, health_issue, rows[:MAX_CI_RUNS_STORED], partial,
                     unreviewed)


# ---- CI summary --------------------------------------------------------------------------------


def ci_summary(runs: Sequence[WorkflowRun] | None, now: datetime, days: int) -> dict[str, Any]:
    """runs_30d, success_rate (of decisive runs, None without any) and last_green_at."""
    if runs is None:
        return {"runs_30d": None, "success_rate": None, "last_green_at": None}
    since = now - timedelta(days=days)
    window = [run for run in runs if run.created_at >= since]
    decisive = [run for run in window if (run.conclusion or "") in ("success", "failure", "timed_out",
                                                                      "startup_failure")]
    greens = [run.updated_at for run in runs if run.conclusion == "success"]
    rate = (sum(1 for run in decisive if run.conclusion == "success") / len(decisive)) if decisive else None
    return {"runs_30d": len(window), "success_rate": None if rate is None else round(rate, 4),
            "last_green_at": max(greens) if greens else None}


# ---- facts in a document ------------------------------------------------------------------------


def facts_to_doc(facts: RepoFacts, ci_rows: Sequence[Mapping[str, Any]] = (),
                 unreviewed: Iterable[int] = ()) -> dict[str, Any]:
    """What `assess` needs of the facts, as Firestore fields (times as timestamps). Coverage is not kept:
    it is read afresh from Firestore at every scan. `unreviewed`: the pull requests whose reviews were
    not looked up (`add_reviews`), marked `review_looked_up: False`."""
    not_looked_up = set(unreviewed)
    def runs() -> list[dict[str, Any]] | None:
        if facts.runs is None:
            return None
        return [{"run_id": run.id, "workflow_id": run.workflow_id, "workflow": run.workflow_name,
                 "conclusion": str(run.conclusion or ""), "created_at": run.created_at,
                 "updated_at": run.updated_at} for run in facts.runs[:MAX_ITEMS_STORED]]

    return {
        "default_branch": facts.default_branch, "repo_key": facts.repo_key, "runs": runs(),
        "dependabot": {"status": facts.dependabot.status, "alerts": [
            {"number": a.number, "severity": a.severity, "state": a.state, "package": a.package,
             "summary": a.summary[:300], "ecosystem": a.ecosystem}
            for a in facts.dependabot.alerts[:MAX_ITEMS_STORED]]},
        "code_scanning": {"status": facts.code_scanning.status, "alerts": [
            {"number": a.number, "rule": a.rule[:200], "severity": a.severity, "state": a.state,
             "security_severity": a.security_severity, "tool": a.tool[:100]}
            for a in facts.code_scanning.alerts[:MAX_ITEMS_STORED]]},
        "branch_protection": {"status": facts.branch_protection.status,
                              "required_checks": list(facts.branch_protection.required_checks)},
        "issues": None if facts.issues is None else [
            {"number": i.number, "title": i.title[:300], "created_at": i.created_at,
             "updated_at": i.updated_at, "author_type": i.author_type, "labels": list(i.labels)}
            for i in facts.issues[:MAX_ITEMS_STORED]],
        "pulls": None if facts.pulls is None else [
            {"number": p.number, "title": p.title[:300], "created_at": p.created_at,
             "updated_at": p.updated_at, "draft": p.draft, "first_review_at": p.first_review_at,
             "author_type": p.author_type, "labels": list(p.labels), "ready_at": p.ready_at,
             **({"review_looked_up": False} if p.number in not_looked_up else {})}
            for p in facts.pulls[:MAX_ITEMS_STORED]],
    }


def _time(value: Any) -> datetime:
    moment = parse_time(value)
    if moment is None:
        raise ValueError(f"not a time: {value!r}")
    return moment


def facts_from_doc(doc: Mapping[str, Any], repo: str,
                   coverage: Sequence[CoveragePoint] | None = ()) -> RepoFacts | None:
    """The facts a scan document kept (`facts_to_doc`), or None when they are missing or malformed."""
    try:
        dependabot = doc.get("dependabot") or {}
        scanning = doc.get("code_scanning") or {}
        protection = doc.get("branch_protection") or {}
        runs = doc.get("runs")
        issues = doc.get("issues")
        pulls = doc.get("pulls")
        return RepoFacts(
            repo=repo, default_branch=str(doc["default_branch"]), repo_key=str(doc.get("repo_key") or ""),
            runs=None if runs is None else tuple(
                WorkflowRun(int(r["run_id"]), int(r.get("workflow_id") or 0), str(r.get("workflow") or ""),
                            r.get("conclusion") or None, _time(r["created_at"]), _time(r["updated_at"]))
                for r in runs),
            dependabot=Dependabot(dependabot.get("status", "unknown"), tuple(
                DependabotAlert(int(a["number"]), str(a["severity"]), str(a["state"]),
                                str(a.get("package") or ""), str(a.get("summary") or ""),
                                str(a.get("ecosystem") or ""))
                for a in dependabot.get("alerts") or ())),
            code_scanning=CodeScanning(scanning.get("status", "unknown"), tuple(
                CodeScanningAlert(int(a["number"]), str(a.get("rule") or ""), str(a.get("severity") or ""),
                                  str(a["state"]), a.get("security_severity"), str(a.get("tool") or ""))
                for a in scanning.get("alerts") or ())),
            branch_protection=BranchProtection(protection.get("status", "unknown"),
                                               tuple(protection.get("required_checks") or ())),
            issues=None if issues is None else tuple(
                IssueItem(int(i["number"]), str(i.get("title") or ""), _time(i["created_at"]),
                          _time(i["updated_at"]), str(i.get("author_type") or "User"),
                          tuple(i.get("labels") or ()))
                for i in issues),
            pulls=None if pulls is None else tuple(
                PullItem(int(p["number"]), str(p.get("title") or ""), _time(p["created_at"]),
                         _time(p["updated_at"]),
                         bool(p.get("draft")), parse_time(p.get("first_review_at")),
                         str(p.get("author_type") or "User"), tuple(p.get("labels") or ()),
                         parse_time(p.get("ready_at")))
                for p in pulls),
            coverage=None if coverage is None else tuple(coverage),
        )
    except (KeyError, TypeError, ValueError):
        return None


def known_reviews(doc: Mapping[str, Any] | None) -> dict[int, datetime]:
    """The first reviews a previous scan found, by pull request number; not the stand-ins of those it
    did not look up (`review_looked_up: False`), which are looked up again."""
    found: dict[int, datetime] = {}
    for pull in (doc or {}).get("pulls") or ():
        if isinstance(pull, Mapping) and isinstance(pull.get("number"), int) \
                and pull.get("review_looked_up") is not False:
            moment = parse_time(pull.get("first_review_at"))
            if moment is not None:
                found[pull["number"]] = moment
    return found


def unreviewed(doc: Mapping[str, Any] | None) -> list[int]:
    """The pull requests a scan document marks as not looked up (kept when its facts are reused)."""
    return [pull["number"] for pull in (doc or {}).get("pulls") or ()
            if isinstance(pull, Mapping) and isinstance(pull.get("number"), int)
            and pull.get("review_looked_up") is False]


def coverage_history(previous: Iterable[Mapping[str, Any]], baseline: Mapping[str, Any] | None,
                     branch: str) -> tuple[list[CoveragePoint], dict[str, Any]]:
    """The coverage trend: previous scans' points plus the current baseline, and this scan's `coverage`.

    Only the latest baseline per branch exists in Firestore, so each scan keeps its line rate (with the
    baseline's time and sha) and the trend is rebuilt from them. Points of another branch are dropped.
    """
    points: dict[tuple[datetime, str], CoveragePoint] = {}
    for doc in previous:
        cov = doc.get("coverage") if isinstance(doc, Mapping) else None
        if not isinstance(cov, Mapping) or cov.get("branch") != branch:
            continue
        rate, at = cov.get("line_rate"), parse_time(cov.get("at"))
        if isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate) and at:
            sha = str(cov.get("sha") or "")
            points[(at, sha)] = CoveragePoint(at, float(rate), sha)
    current: dict[str, Any] = {"line_rate": None, "branch": branch, "at": None, "sha": ""}
    measured = (baseline or {}).get("coverage") if isinstance(baseline, Mapping) else None
    if isinstance(measured, Mapping):
        rate = measured.get("line_rate")
        at = parse_time((baseline or {}).get("updated_at"))
        if isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate) and at:
            sha = str((baseline or {}).get("sha") or "")
            current = {"line_rate": float(rate), "branch": branch, "at": at, "sha": sha}
            points[(at, sha)] = CoveragePoint(at, float(rate), sha)
    return sorted(points.values(), key=lambda point: point.at), current
