"""The repo scout: every four hours, every repository of every installation gets a health score, its
findings and one health issue kept up to date.

Kind `scan_repos`: the scheduler's tick (repository "", installation 0), routed to agent `scout`. Inputs
`repository` (scan only that one) and `dry_run` (nothing written, on GitHub or in Firestore) serve
`agentops scout run`; a tick under the deployment's dry-run (`TaskContext.dry_run`) is a dry run too.
A tick:

1. lists the installations (`GET /app/installations`, the App's JWT) and their repositories (`GET
   /installation/repositories`, each installation's token); when GitHub does not serve them, the
   repositories Firestore records as installed (`repos` with `installed == True`);
2. per installation, reads one GraphQL signature per repository (`shared.github.graphql.repo_signals`,
   50 repositories per query): a repository whose digest equals the one stored by its previous scan,
   read in full less than `scout.refresh_hours` ago with the same settings, is not read again over
   REST: its stored facts are re-assessed at the current time (stale items and review waits are
   time-based), so an unchanged repository costs its policy read (a conditional GET, answered 304 and
   free of rate limit) and a share of the GraphQL query;
3. walks the repositories in `budget.resume_order`, from the cursor a stopped tick left; before each,
   `budget.budget_stop` with the installation token's latest core rate limit: when the estimated cost
   no longer fits above the reserve, or the turn has run `TURN_SECONDS` (240 s: the function has 300),
   the cursor is saved in `installations/{id}.scout` and the tick ends politely; the next one resumes
   there;
4. per repository, under its scan lease (`store.claim_scan`: a turn running at the same time, such as
   a redelivery of this tick or `agentops scout run`, skips it): its policy (`.github/agent-ops.yml`;
   a paused or held repository, or one with the scout off, is skipped), the facts (`collect.collect`),
   `health.assess` (with the stored findings of kinds it could not read, or of items a cut listing did
   not reach, carried forward), the scan, findings and health in Firestore (`store`), and
   the health issue (`issue.plan_issue`) through the executor: created once (looked for by its hidden
   marker first, so a lost answer never opens two), edited in place, closed, reopened; never a comment;
5. re-reads the signature of the repositories whose health issue it changed, so that its own edit
   does not make the repository look changed at the next tick.

Every request for a repository is counted (`collect.CountingClient`) into its scan: `api_calls` is its
REST requests (conditional ones answered 304 included, `rest_not_modified` of them), its GitHub writes,
and the GraphQL requests of its batch (counted on the batch's first repository; `graphql_share` is the
exact share).

Errors: a repository failing for good (PermanentError: gone, refused) is reported and the others go
on. GitHub failing for one repository (5xx after the client's retries) writes nothing of it (no finding
is ticked fixed), the others go on, and the tick then raises RetryableError: the redelivered tick skips
the repositories it already scanned (`scout.last_task_id`) and retries that one. A rate limit or a
Firestore error raises at once. GraphQL failing (5xx, its own budget spent) only costs the signatures:
the batch is read in full.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.repo_scout import collect as collectors
from functions.repo_scout.budget import DEFAULT_LIMIT, budget_stop, cost_estimate, resume_order
from functions.repo_scout.health import (
    Assessment,
    RepoFacts,
    ScoutSettings,
    assess,
    inert,
    merge_unchecked,
    with_findings,
)
from functions.repo_scout.issue import ISSUE_LABELS, LINK_BASE, IssuePlan, issue_marker, plan_issue
from functions.repo_scout.store import ScoutStore
from shared.agent_runtime import SUCCEEDED, Outcome, TaskContext
from shared.errors import ConfigError, InvalidInput, PermanentError, RetryableError
from shared.executor import CreateIssue, UpdateIssue
from shared.github.issues import find_issue_by_marker
from shared.github.rest import NotFound, RateLimited, Refused, ServerError

log = logging.getLogger("agentops.scout")

SCAN_KIND = "scan_repos"
ACTOR = "scout"
RESERVE_FRACTION = 0.2  # of the hourly limit, kept for the webhook-driven agents
# The repo_scout function has 300 s and the turn's lease 5 minutes: no repository is started after this.
TURN_SECONDS = 240.0
DEFAULT_REFRESH_HOURS = 24
MAX_PROBLEMS = 20
MAX_INSTALLATION_PAGES = 10
MAX_REPOSITORY_PAGES = 50  # an installation's repositories, 100 a page
# One repository's scan lease: a redelivered tick's turn (or `agentops scout run`) running at the same
# time skips the repository another turn is scanning; a crashed turn's lease expires.
SCAN_LEASE = timedelta(minutes=15)
# A Firestore document holds at most 1 MiB. The facts kept for reuse (up to 500 issues, pull requests
# and alerts of each kind, their texts in UTF-8) could pass it: beyond this, none are kept and the next
# scan reads the repository in full, rather than the scan failing at every tick.
MAX_FACTS_BYTES = 600_000


@dataclass(frozen=True)
class ScoutConfig:
    """The scout's settings for one repository: the thresholds and how often it is read in full."""

    settings: ScoutSettings
    refresh_hours: int = DEFAULT_REFRESH_HOURS

    def digest(self) -> str:
        data = json.dumps(asdict(self.settings), sort_keys=True, default=list)
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def to_doc(self) -> dict[str, Any]:
        return {**asdict(self.settings), "stale_exempt_labels": list(self.settings.stale_exempt_labels),
                "refresh_hours": self.refresh_hours}

    @classmethod
    def from_doc(cls, doc: Any) -> ScoutConfig | None:
        """The settings a previous scan stored, or None when there are none or they no longer parse."""
        if not isinstance(doc, Mapping):
            return None
        fields = {name: doc[name] for name in ScoutSettings.__dataclass_fields__ if name in doc}
        try:
            fields["stale_exempt_labels"] = tuple(fields.get("stale_exempt_labels") or ())
            return cls(ScoutSettings(**fields), int(doc["refresh_hours"]))
        except (KeyError, TypeError, ValueError, ConfigError):
            return None


def scout_config(policy: Any) -> ScoutConfig:
    """The policy's `scout` section as the scout's settings (the defaults where it has none)."""
    section = getattr(policy, "scout", None)
    if section is None:
        return ScoutConfig(ScoutSettings())
    fields = {name: getattr(section, name) for name in ScoutSettings.__dataclass_fields__
              if hasattr(section, name)}
    if "stale_exempt_labels" in fields:
        fields["stale_exempt_labels"] = tuple(fields["stale_exempt_labels"])
    return ScoutConfig(ScoutSettings(**fields),
                       int(getattr(section, "refresh_hours", DEFAULT_REFRESH_HOURS)))


def _policy(client: Any, repository: str) -> Any:
    """The repository's policy; unreadable means the safe policy (which keeps the scout on)."""
    from shared import policy as policies

    try:
        return policies.fetch_policy(client, repository)
    except RetryableError:
        raise
    except PermanentError as exc:
        return policies.unreadable(exc)


@dataclass
class RepoReport:
    """What one repository's scan came to: a row of the summary and of `agentops scout run`."""

    repository: str
    installation_id: int
    status: str = "scanned"  # scanned | skipped | failed | stopped
    reason: str = ""
    score: int | None = None
    findings: int = 0
    api_calls: int = 0
    rest_calls: int = 0
    rest_not_modified: int = 0
    writes: int = 0
    reused: bool = False
    issue_number: int | None = None
    issue_action: str = "none"
    scan_id: str = ""


class ScoutAgent:
    name = ACTOR

    def __init__(self, store: Callable[[], ScoutStore], app: Callable[[], Any] = lambda: None,
                 stop_reason: Callable[[str], str] | None = None,
                 policy_for: Callable[[Any, str], Any] = _policy,
                 signals: Callable[[Any, Sequence[str]], Any] | None = None,
                 reserve_fraction: float = RESERVE_FRACTION, web_url: str = LINK_BASE,
                 turn_seconds: float = TURN_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._app = app  # () -> GitHubApp | None: lists the installations with its JWT
        self._stop_reason = stop_reason  # repository -> why it is paused or held, or ""
        self._policy_for = policy_for
        self._signals = signals  # (client, repos) -> SignalsResult; None: shared.github.graphql
        self.reserve_fraction = reserve_fraction
        self.web_url = web_url
        self.turn_seconds = turn_seconds  # a tick stops starting repositories after this long
        self._monotonic = monotonic

    def handle(self, ctx: TaskContext) -> Outcome:
        if ctx.task.kind != SCAN_KIND:
            raise InvalidInput(f"the repo scout does not do {ctx.task.kind}")
        return ScoutTick(self, ctx).run()

    def on_failure(self, ctx: TaskContext, summary: str) -> None:
        """A tick belongs to no repository: its failed result and this log line are the record; the next
        tick tries again."""
        log.error("scout tick failed: %s", summary, extra={"task_id": ctx.task.task_id, "outcome": "failed"})

    def repo_signals(self, client: Any, repos: Sequence[str]) -> Any:
        """The GraphQL signatures of `repos`, or None when GraphQL is not available."""
        if self._signals is not None:
            return self._signals(client, repos)
        try:
            from shared.github import graphql
        except ImportError:
            return None
        return graphql.repo_signals(client, list(repos))


class BudgetStop(Exception):
    """The installation's rate-limit budget is spent down to the reserve, or the turn's time is spent:
    stop here, resume next tick."""


@dataclass
class Signatures:
    digests: dict[str, str] = field(default_factory=dict)
    signals: dict[str, Any] = field(default_factory=dict)  # by lower-cased name, the signals themselves
    requests: int = 0
    cost: float = 0.0
    batches: list[tuple[list[str], int, float]] = field(default_factory=list)  # repos, requests, cost
    available: bool = False


class ScoutTick:
    def __init__(self, agent: ScoutAgent, ctx: TaskContext) -> None:
        self.agent = agent
        self.ctx = ctx
        self.now = ctx.now().astimezone(UTC)
        created = getattr(ctx.task, "created_at", 0) or 0
        started = datetime.fromtimestamp(created / 1000, UTC) if created else self.now
        self.scan_id = f"{started:%Y%m%dT%H%M%S}Z"
        self.only = str(ctx.inputs.get("repository") or "")
        # `agentops scout run --dry-run`, or the deployment's dry-run (the executor applies no effect):
        # either way nothing is written, on GitHub or in Firestore.
        self.dry_run = bool(ctx.inputs.get("dry_run")) or ctx.dry_run
        self.reports: list[RepoReport] = []
        self.problems: list[str] = []
        self.stopped: list[str] = []
        self.counts: Counter[str] = Counter()
        self.costs: list[int] = []  # measured costs of full reads, for the budget's estimate
        self.transient: list[str] = []  # repositories GitHub failed for (5xx): retried by redelivery
        self.started = agent._monotonic()

    def problem(self, text: str) -> None:
        log.warning("scout: %s", text, extra={"task_id": self.ctx.task.task_id, "outcome": "problem"})
        self.problems.append(inert(text, 300))

    @property
    def store(self) -> ScoutStore:
        return self.agent._store()

    # ---- the tick ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        installations = self._installations()
        for installation_id in sorted(installations):
            repos = installations[installation_id]
            if self.only:
                repos = [repo for repo in repos if repo.lower() == self.only.lower()]
            if repos:
                self._installation(installation_id, repos)
        if self.only and not self.reports:
            raise PermanentError(f"{self.only} is not a repository of any installation")
        if self.transient and not self.dry_run:
            # Redelivered, the tick skips what it scanned already (`scout.last_task_id`) and retries these.
            raise RetryableError(f"GitHub failed for {len(self.transient)} repositories, the tick is retried "
                                 f"for them: {self.transient[0]}")
        return self._outcome()

    def _installations(self) -> dict[int, list[str]]:
        """Installation id -> its repositories: from GitHub, else from Firestore's records."""
        app = self.agent._app()
        if app is not None:
            try:
                found: dict[int, list[str]] = {}
                for item in app.app_client().paginate("/app/installations", None,
                                                      max_pages=MAX_INSTALLATION_PAGES):
                    if isinstance(item, Mapping) and isinstance(item.get("id"), int) \
                            and not item.get("suspended_at"):
                        found[int(item["id"])] = []
                for installation_id in found:
                    client = self.ctx.client_for(installation_id, "")
                    total = seen = 0
                    for page in client.paginate("/installation/repositories", None,
                                                max_pages=MAX_REPOSITORY_PAGES):
                        listed = page.get("repositories") if isinstance(page, Mapping) else None
                        count = page.get("total_count") if isinstance(page, Mapping) else None
                        total = max(total, count) if isinstance(count, int) else total
                        seen += len(listed) if isinstance(listed, list) else 0
                        for repo in listed or ():
                            if isinstance(repo, Mapping) and repo.get("full_name") \
                                    and not repo.get("archived"):
                                found[installation_id].append(str(repo["full_name"]))
                    if total > seen:  # never silently: the others are not scanned
                        self.problem(f"installation {installation_id} has {total} repositories; only the "
                                     f"first {seen} were listed and are scanned")
                if found:
                    return found
            except RetryableError:
                raise
            except PermanentError as exc:
                log.info("scout: the installations could not be listed on GitHub (%s); using Firestore", exc)
        return self.store.installed()

    def _installation(self, installation_id: int, repos: Sequence[str]) -> None:
        store = self.store
        client = self.ctx.client_for(installation_id, "")
        cursor = None if self.only else store.cursor(installation_id)
        order = resume_order(repos, cursor)
        signatures = self._signatures(client, order)
        changed_issue: list[str] = []
        stopped_at: str | None = None
        for index, repo in enumerate(order):
            report = RepoReport(repo, installation_id, scan_id=self.scan_id)
            stopped = self.agent._stop_reason(repo) if self.agent._stop_reason is not None else ""
            if stopped:
                report.status, report.reason = "skipped", stopped
                self.reports.append(report)
                continue
            try:
                self._check_time()
                if self._repository(client, installation_id, repo, signatures, report, order[index:]):
                    changed_issue.append(repo)
            except BudgetStop as stop:
                stopped_at = repo
                self.stopped.append(str(stop))
                for rest in order[index:]:
                    self.reports.append(RepoReport(rest, installation_id, status="stopped", reason=str(stop)))
                break
            except ServerError as exc:
                # GitHub failed after the client's retries: nothing of this repository is written (no
                # finding is ticked fixed); the others go on, and the tick is retried for it at the end.
                report.status, report.reason = "failed", inert(f"GitHub failed, to be retried: {exc}", 300)
                self.transient.append(inert(f"{repo}: {exc}", 300))
                self.problem(f"{repo}: {exc}")
            except RetryableError:
                raise
            except PermanentError as exc:
                report.status, report.reason = "failed", inert(str(exc), 300)
                self.problem(f"{repo}: {exc}")
            self.reports.append(report)
        if changed_issue and signatures.available and not self.dry_run:
            self._refresh_signatures(client, changed_issue, signatures)
        if not self.dry_run and not self.only:
            reason = self.stopped[-1] if stopped_at else ""
            store.save_cursor(installation_id, stopped_at, now=self.now, reason=reason, scan_id=self.scan_id)

    @staticmethod
    def _core_limit(client: Any) -> Any:
        """The token's latest REST (core) rate limit; GraphQL's own budget never replaces it there."""
        limit = getattr(client, "rate_limit", None)
        return limit if limit is not None and getattr(limit, "resource", "core") == "core" else None

    # ---- signatures ----------------------------------------------------------------------------

    def _signatures(self, client: Any, repos: Sequence[str]) -> Signatures:
        found = Signatures()
        batch_size = 50
        for start in range(0, len(repos), batch_size):
            batch = list(repos[start:start + batch_size])
            try:
                result = self.agent.repo_signals(client, batch)
            except (ServerError, RateLimited) as exc:
                # The signatures only spare reads: without them the batch is read in full, under the
                # REST budget's stop; GitHub's GraphQL failing or its own budget spent stops no scan.
                self.problem(f"the GraphQL signatures could not be read: {exc}")
                result = None
            except RetryableError:
                raise
            except PermanentError as exc:
                self.problem(f"the GraphQL signatures could not be read: {exc}")
                result = None
            if result is None:
                continue
            found.available = True
            requests = int(getattr(result, "requests", 0) or 0)
            cost = _rate_cost(getattr(result, "rate", None))
            found.batches.append((batch, requests, cost))
            found.requests += requests
            found.cost += cost
            for name, signal in (getattr(result, "signals", None) or {}).items():
                digest = getattr(signal, "digest", None)
                if callable(digest):
                    found.digests[str(name).lower()] = str(digest())
                    found.signals[str(name).lower()] = signal
        self.counts["graphql_requests"] += found.requests
        return found

    @staticmethod
    def _share(signatures: Signatures, repo: str) -> tuple[int, float, float]:
        """(GraphQL requests counted on this repository, its exact share of them, its share of the cost):
        a batch's requests are counted on its first repository, so the counts add up to what was sent."""
        for batch, requests, cost in signatures.batches:
            if repo in batch:
                size = max(len(batch), 1)
                return (requests if batch[0] == repo else 0), requests / size, cost / size
        return 0, 0.0, 0.0

    def _refresh_signatures(self, client: Any, repos: Sequence[str], before: Signatures) -> None:
        """The digests after this tick's own edits of the health issues, so they do not count as changes.

        Only where nothing but what the edit moves (the open issue count, the update time) differs from
        the signature the scan started from: a push, a check or an alert that came in since the
        repository was read is a change the next tick must see, not one to absorb."""
        refreshed = self._signatures(client, repos)
        self.counts["api_calls"] += refreshed.requests  # the tick's, not one repository's
        for repo in repos:
            name = repo.lower()
            digest = refreshed.digests.get(name)
            if digest and _only_own_edit(before.signals.get(name), refreshed.signals.get(name)):
                self.store.save_signature(repo, digest)

    # ---- one repository ------------------------------------------------------------------------

    def _check_time(self) -> None:
        """Raise BudgetStop once the turn has run `turn_seconds`: the function's timeout and the turn's
        lease (5 minutes) must not end a tick halfway through a repository."""
        spent, allowed = self.agent._monotonic() - self.started, self.agent.turn_seconds
        if spent >= allowed:
            raise BudgetStop(f"when the turn's time was spent ({spent:.0f} s of {allowed:.0f}); "
                             "the next tick resumes here")

    def _check_budget(self, client: Any, repos_left: Sequence[str], estimate: int) -> None:
        """Raise BudgetStop when the next repository's estimated cost no longer fits above the reserve."""
        limit = self._core_limit(client)
        if limit is None:
            return
        decision = budget_stop(limit.remaining, datetime.fromtimestamp(limit.reset, UTC), repos_left,
                               estimate, self.agent.reserve_fraction, now=self.now,
                               limit=limit.limit or DEFAULT_LIMIT)
        if decision.scan_now < 1:
            raise BudgetStop(f"before the rate-limit budget ran out: {decision.reason}")

    def _repository(self, client: Any, installation_id: int, repo: str, signatures: Signatures,
                    report: RepoReport, repos_left: Sequence[str]) -> bool:
        """Scan one repository under its scan lease; True when its health issue was changed."""
        if self.dry_run:  # writes nothing, so it needs no lease
            return self._scan(client, installation_id, repo, signatures, report, repos_left)
        store = self.store
        holder = f"{self.ctx.task.task_id}/{self.ctx.delivery_id}"
        if not store.claim_scan(repo, holder, self.ctx.now(), SCAN_LEASE):
            report.status, report.reason = "skipped", "being scanned by another turn"
            return False
        try:
            return self._scan(client, installation_id, repo, signatures, report, repos_left)
        finally:
            store.release_scan(repo, holder)

    def _scan(self, client: Any, installation_id: int, repo: str, signatures: Signatures,
              report: RepoReport, repos_left: Sequence[str]) -> bool:
        store = self.store
        previous = store.repo(repo)
        scout = previous.get("scout") if isinstance(previous.get("scout"), Mapping) else {}
        if scout.get("last_task_id") == self.ctx.task.task_id and not self.dry_run:
            report.status, report.reason = "skipped", "scanned by this tick already"
            return False
        counting = collectors.CountingClient(client)
        digest = signatures.digests.get(repo.lower(), "")
        last_full = collectors.parse_time(scout.get("last_full_read_at"))
        # The policy is a file of the default branch: it cannot change without a push, which changes the
        # signature. An unchanged repository read in full lately keeps the settings it was read with, and
        # its policy is not read again (a repository without one would pay a 404 at every tick).
        config = ScoutConfig.from_doc(scout.get("config"))
        if not (config is not None and digest and scout.get("signature") == digest and last_full is not None
                and self.now - last_full < timedelta(hours=config.refresh_hours)):
            load = self.agent._policy_for(counting, repo)
            policy = getattr(load, "policy", load)
            if hasattr(policy, "agent_enabled") and not policy.agent_enabled("scout"):
                report.status, report.reason = "skipped", "the scout is off in the repository's policy"
                return False
            config = scout_config(policy)
        settings = config.settings
        previous_scan = store.scan(repo, str(scout.get("last_scan_id") or ""))
        facts: RepoFacts | None = None
        reused = bool(
            digest and previous_scan and scout.get("signature") == digest and last_full is not None
            and self.now - last_full < timedelta(hours=config.refresh_hours)
            and scout.get("settings") == config.digest())
        collected: collectors.Collected | None = None
        branch = ""
        if reused and previous_scan is not None:
            stored = previous_scan.get("facts") if isinstance(previous_scan.get("facts"), Mapping) else {}
            branch = str(stored.get("default_branch") or "")
            points, coverage = self._coverage(repo, branch, settings)
            facts = collectors.facts_from_doc(stored, repo, points)
            if facts is None:
                reused = False
        # An unchanged repository costs about nothing; one read in full about what the last ones cost.
        self._check_budget(client, repos_left, 1 if reused else cost_estimate(self.costs))
        if not reused:
            info = collectors.read_repository(counting, repo)
            branch = str(info.get("default_branch") or "main")
            points, coverage = self._coverage(repo, branch, settings)
            known = collectors.known_reviews((previous_scan or {}).get("facts"))
            collected = collectors.collect(counting, repo, settings=settings, now=self.now,
                                           marker=issue_marker(repo), coverage=points, known_reviews=known,
                                           repository=info)
            facts = collected.facts
            last_full = self.now
        assert facts is not None
        kept = previous_scan or {}
        unknown = collected.unknown if collected is not None else list(kept.get("unknown") or ())
        partial = collected.partial if collected is not None else list(kept.get("partial") or ())
        unreviewed = (collected.unreviewed if collected is not None
                      else collectors.unreviewed(kept.get("facts") if isinstance(kept.get("facts"), Mapping)
                                                 else None))
        notes = collected.notes if collected is not None else list(kept.get("notes") or ())
        ci_rows = collected.ci_rows if collected is not None else list(kept.get("ci_runs") or ())

        assessment = assess(facts, settings, self.now)
        open_before = store.open_findings(repo)
        assessment = with_findings(assessment, (
            *merge_unchecked(assessment.findings, open_before, assessment.unchecked),
            *collectors.hidden_by_cut(open_before, partial, facts)))
        number, action, writes = self._issue(counting, installation_id, repo, assessment, settings, reused,
                                             collected.health_issue if collected is not None else None)
        first, share, cost = self._share(signatures, repo)
        rest_calls, not_modified = counting.requests, counting.not_modified
        api_calls = rest_calls + writes + first
        if not reused:
            self.costs.append(rest_calls - not_modified + writes)
        report.score, report.findings = assessment.score.score, len(assessment.findings)
        report.reused = reused
        report.api_calls, report.rest_calls, report.rest_not_modified = api_calls, rest_calls, not_modified
        report.writes, report.issue_number, report.issue_action = writes, number, action
        self.counts["api_calls"] += api_calls
        self.counts["reused" if reused else "re-read"] += 1
        if action != "none":
            self.counts[f"issue_{action}"] += 1
        if self.dry_run:
            return False
        scan = {
            "scan_id": self.scan_id, "repository": repo, "installation_id": installation_id,
            "scanned_at": self.now, "task_id": self.ctx.task.task_id,
            "score": assessment.score.score, "reasons": list(assessment.score.reasons),
            "api_calls": api_calls, "rest_calls": rest_calls, "rest_not_modified": not_modified,
            "writes": writes, "graphql_share": round(share, 4), "graphql_cost": round(cost, 4),
            "reused": reused, "signature": digest or None, "coverage": coverage,
            "ci": collectors.ci_summary(facts.runs, self.now, settings.ci_window_days),
            "ci_runs": ci_rows[:collectors.MAX_CI_RUNS_STORED], "unknown": list(unknown),
            "partial": list(partial),
            "notes": list(notes),
            "unchecked": list(assessment.unchecked), "issue_action": action,
            "facts": _bounded(collectors.facts_to_doc(facts, unreviewed=unreviewed)),
        }
        scout_state = {"last_scan_id": self.scan_id, "last_full_read_at": last_full,
                       "signature": digest or None, "settings": config.digest(), "config": config.to_doc(),
                       "last_task_id": self.ctx.task.task_id,
                       "repository_id": (collected.repository_id if collected is not None
                                         else scout.get("repository_id"))}
        store.save_scan(repo, scan, assessment.findings, now=self.now, quiet=settings.quiet,
                        issue_number=number, scout=scout_state)
        return action != "none"

    def _coverage(self, repo: str, branch: str,
                  settings: ScoutSettings) -> tuple[list[Any], dict[str, Any]]:
        store = self.store
        since = self.now - timedelta(days=settings.coverage_window_days * 2)
        previous = store.scans(repo, since=since)
        return collectors.coverage_history(previous, store.baseline(repo, branch), branch)

    # ---- the health issue ----------------------------------------------------------------------

    def _issue(self, client: Any, installation_id: int, repo: str, assessment: Assessment,
               settings: ScoutSettings, reused: bool,
               listed: Mapping[str, Any] | None) -> tuple[int | None, str, int]:
        """Plan and apply the health issue: (its number, what was done, the writes made)."""
        store = self.store
        known = store.issue(repo)
        number = int(known.get("number") or 0) or None
        body: str | None
        open_: bool | None
        if listed is not None:
            number, body, open_ = int(listed["number"]), str(listed.get("body") or ""), True
        elif reused:
            body = known.get("body") if number else None
            open_ = bool(known.get("open")) if number else None
        else:
            number, body, open_ = self._read_issue(client, repo, number)
        plan = self._plan(body, assessment, settings, repo, open_)
        if plan.action != "none" and reused and number:
            number, body, open_ = self._read_issue(client, repo, number)  # confirm before writing
            plan = self._plan(body, assessment, settings, repo, open_)
        if plan.action == "create":
            found = find_issue_by_marker(client, repo, issue_marker(repo), ISSUE_LABELS[0])
            if found is not None:
                number, body = int(found["number"]), str(found.get("body") or "")
                open_ = found.get("state") == "open"
                plan = self._plan(body, assessment, settings, repo, open_)
        if plan.action == "none":
            if not self.dry_run and (body is not None or number) and (
                    known.get("body") != body or known.get("number") != number or known.get("open") != open_):
                store.save_issue(repo, number=number, open_=bool(open_), body=body or "", now=self.now)
            return number, "none", 0
        if self.dry_run:
            return number, plan.action, 0
        key = self.ctx.key(repo, "issue", plan.action, hashlib.sha256(plan.body.encode()).hexdigest()[:16])
        if plan.action == "create":
            answer = self.ctx.apply(CreateIssue(repo, plan.title, plan.body, plan.labels, key=key),
                                    raise_refused=True, installation_id=installation_id)
            if answer and answer.get("number"):
                number = int(answer["number"])
            else:  # done before (a redelivered tick): the issue is found by its marker
                found = find_issue_by_marker(client, repo, issue_marker(repo), ISSUE_LABELS[0])
                number = int(found["number"]) if found else None
            open_ = True
        else:
            state = {"reopen": "open", "close": "closed"}.get(plan.action)
            self.ctx.apply(UpdateIssue(repo, int(number or 0), key=key, title=plan.title, body=plan.body,
                                       state=state, state_reason=plan.state_reason),
                           raise_refused=True, installation_id=installation_id)
            open_ = plan.action != "close" and (open_ or plan.action == "reopen")
        store.save_issue(repo, number=number, open_=bool(open_), body=plan.body, now=self.now)
        log.info("scout: health issue of %s: %s (%s)", repo, plan.action, plan.reason)
        return number, plan.action, 1

    def _read_issue(self, client: Any, repo: str,
                    number: int | None) -> tuple[int | None, str | None, bool | None]:
        if not number:
            return None, None, None
        try:
            issue = client.request("GET", f"/repos/{repo}/issues/{number}")
        except NotFound:
            return None, None, None
        except Refused as exc:
            if exc.status == 410:  # deleted: the repository has no health issue any more
                return None, None, None
            raise
        if not isinstance(issue, Mapping) or issue_marker(repo) not in str(issue.get("body") or ""):
            return None, None, None
        return number, str(issue.get("body") or ""), issue.get("state") == "open"

    def _plan(self, body: str | None, assessment: Assessment, settings: ScoutSettings, repo: str,
              open_: bool | None) -> IssuePlan:
        return plan_issue(body, assessment.findings, settings, repo=repo, notes=assessment.notes,
                          issue_open=open_, web_url=self.agent.web_url)

    # ---- the outcome ---------------------------------------------------------------------------

    def _outcome(self) -> Outcome:
        scanned = [r for r in self.reports if r.status == "scanned"]
        reread = sum(1 for r in scanned if not r.reused)
        counts = self.counts
        words = (("create", "opened"), ("update", "updated"), ("reopen", "reopened"), ("close", "closed"))
        issues = ", ".join(f"{counts[f'issue_{a}']} issue{'s' if counts[f'issue_{a}'] != 1 else ''} {word}"
                           for a, word in words if counts[f"issue_{a}"]) or "no issue changed"
        noun = "repositories" if len(scanned) != 1 else "repository"
        summary = (f"scanned {len(scanned)} {noun} ({reread} re-read, {len(scanned) - reread} unchanged), "
                   f"{counts['api_calls']} API calls, {issues}")
        skipped = [r for r in self.reports if r.status == "skipped"]
        if skipped:
            summary += f"; {len(skipped)} skipped"
        if self.stopped:
            summary += f"; stopped {self.stopped[0]}"
        if self.problems:
            summary += f"; {len(self.problems)} problem(s): {self.problems[0]}"
        if self.dry_run:
            summary = "dry run: " + summary
        return Outcome(SUCCEEDED, summary, details={
            "scan_id": self.scan_id, "dry_run": self.dry_run, "api_calls": counts["api_calls"],
            "graphql_requests": counts["graphql_requests"], "stopped": bool(self.stopped),
            "repos": [asdict(r) for r in self.reports][:500], "problems": self.problems[:MAX_PROBLEMS]})


# What the scout's own edit of a health issue moves in a repository's signature (`graphql.RepoSignal`).
OWN_EDIT_FIELDS = frozenset({"open_issues", "updated_at"})


def _only_own_edit(before: Any, after: Any) -> bool:
    """Whether two signals differ in OWN_EDIT_FIELDS at most (a signal that is no dataclass: trusted)."""
    if not (dataclasses.is_dataclass(before) and dataclasses.is_dataclass(after)):
        return before is not None and after is not None
    names = [f.name for f in dataclasses.fields(before) if f.name not in OWN_EDIT_FIELDS]
    return all(getattr(before, name) == getattr(after, name, None) for name in names)


def _bounded(facts: dict[str, Any]) -> dict[str, Any] | None:
    """The facts for the scan document, or None when they would not fit in it (`MAX_FACTS_BYTES`)."""
    size = len(json.dumps(facts, default=str, ensure_ascii=False).encode())
    return facts if size <= MAX_FACTS_BYTES else None


def _rate_cost(rate: Any) -> float:
    if rate is None:
        return 0.0
    cost = getattr(rate, "cost", None)
    if cost is None and isinstance(rate, Sequence) and rate:
        cost = rate[0]
    try:
        value = float(cost)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0
