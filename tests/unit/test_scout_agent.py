"""The repo scout agent on the GitHub sandbox (in-process) with an in-memory store: the budget stop and its
cursor, the resumption, unreadable kinds, quiet mode, paused and failing repositories, and the policy."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.repo_scout import collect
from functions.repo_scout.agent import SCAN_KIND, ScoutAgent, scout_config
from functions.repo_scout.health import Finding, ScoutSettings
from functions.repo_scout.store import by_severity
from sandbox.github.server import GitHubSandbox
from shared.agent_runtime import Links, Outcome, TaskContext
from shared.errors import RetryableError
from shared.executor import Executor
from shared.github.rest import MemoryConditionalCache, Refused, ServerError
from shared.messages import AgentTask
from shared.policy import DEFAULT_POLICY, ScoutPolicy, parse_policy
from tests.support.agents import MemoryAudit
from tests.support.sandbox_site import app_for

REPOS = ("octo/alpha", "octo/beta", "octo/gamma")
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


class MemoryScoutStore:
    """The ScoutStore's methods the agent uses, in memory."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.scan_docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.finding_docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.issues: dict[str, dict[str, Any]] = {}
        self.cursors: dict[int, dict[str, Any]] = {}
        self.installations: dict[int, list[str]] = {}
        self.leases: dict[str, dict[str, Any]] = {}

    def repo(self, repository: str) -> dict[str, Any]:
        return json.loads(json.dumps(self.repos.get(repository, {}), default=str)) | {
            "scout": dict(self.repos.get(repository, {}).get("scout") or {})}

    def scan(self, repository: str, scan_id: str) -> dict[str, Any] | None:
        return self.scan_docs.get(repository, {}).get(scan_id)

    def scans(self, repository: str, since: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
        docs = sorted(self.scan_docs.get(repository, {}).values(), key=lambda doc: doc["scanned_at"])
        return [doc for doc in docs if since is None or doc["scanned_at"] >= since][-limit:]

    def findings(self, repository: str, state: str | None = None) -> list[dict[str, Any]]:
        return [doc for doc in self.finding_docs.get(repository, {}).values()
                if state is None or doc["state"] == state]

    def open_findings(self, repository: str) -> list[Finding]:
        return [f for f in (Finding.from_doc(doc) for doc in self.findings(repository, "open")) if f]

    def issue(self, repository: str) -> dict[str, Any]:
        return dict(self.issues.get(repository, {}))

    def cursor(self, installation_id: int) -> str | None:
        return (self.cursors.get(installation_id) or {}).get("cursor")

    def installed(self) -> dict[int, list[str]]:
        return {key: list(value) for key, value in self.installations.items()}

    def baseline(self, repository: str, branch: str) -> dict[str, Any] | None:
        return None

    def claim_scan(self, repository: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        lease = self.leases.get(repository)
        if lease and lease["holder"] != holder and lease["until"] > now:
            return False
        self.leases[repository] = {"holder": holder, "until": now + ttl}
        return True

    def release_scan(self, repository: str, holder: str) -> None:
        if (self.leases.get(repository) or {}).get("holder") == holder:
            del self.leases[repository]

    def save_cursor(self, installation_id: int, cursor: str | None, *, now: datetime, reason: str = "",
                    scan_id: str = "") -> None:
        self.cursors[installation_id] = {"cursor": cursor, "reason": reason, "scan_id": scan_id}

    def save_issue(self, repository: str, *, number: int | None, open_: bool, body: str,
                   now: datetime) -> None:
        self.issues[repository] = {"number": number, "open": open_, "body": body, "updated_at": now}

    def save_signature(self, repository: str, digest: str) -> None:
        self.repos.setdefault(repository, {}).setdefault("scout", {})["signature"] = digest

    def save_scan(self, repository: str, scan: Mapping[str, Any], findings: Sequence[Finding], *,
                  now: datetime, quiet: bool, issue_number: int | None,
                  scout: Mapping[str, Any]) -> dict[str, int]:
        docs = self.finding_docs.setdefault(repository, {})
        current = {item.fingerprint: item for item in findings}
        for fp, item in current.items():
            docs[fp] = {**item.to_doc(), "state": "open", "fixed_at": None}
        for fp, doc in docs.items():
            if fp not in current and doc["state"] == "open":
                doc.update(state="fixed", fixed_at=now)
        self.scan_docs.setdefault(repository, {})[scan["scan_id"]] = dict(scan)
        record = self.repos.setdefault(repository, {})
        record["health"] = {"score": scan["score"], "findings_open": len(findings), "quiet": quiet,
                            "by_severity": by_severity(findings), "issue_number": issue_number,
                            "scan_id": scan["scan_id"]}
        record["scout"] = {**(record.get("scout") or {}), **dict(scout)}
        return {}


@pytest.fixture
def github_repos() -> dict[str, dict[str, str]]:
    """The repositories the sandbox of `github` (tests/unit/conftest.py) starts with."""
    return {repo: {"README.md": "# hi\n", ".github/agent-ops.yml": "version: 1\n"} for repo in REPOS}


class Harness:
    def __init__(self, github: GitHubSandbox, key: tuple[Any, str], agent_permissions: str = "scout") -> None:
        self.github = github
        self.app = app_for(github, key, cache=MemoryConditionalCache())
        self.audit = MemoryAudit()
        self.store = MemoryScoutStore()
        self.paused: set[str] = set()
        self.agent_options: dict[str, Any] = {}
        self.permissions = agent_permissions
        self.with_app = True
        self.ticks = 0
        self.signals: Any = None  # (client, repos) -> SignalsResult; None: GitHub's GraphQL
        self.gone: set[str] = set()  # GET paths GitHub answers 410 Gone (a deleted issue)
        self.lose_answers: set[tuple[str, str]] = set()  # writes made whose answer is lost once

    def client(self, installation_id: int, repository: str = "") -> Any:
        client = self.app.client_for(self.permissions, installation_id, [repository.split("/")[-1]]
                                     if repository else [], audit=self.audit)
        client._write_interval = 0.0
        client._sleep = lambda seconds: None  # the client's retries and backoff, without the waiting
        if self.gone or self.lose_answers:
            original = client.request

            def request(method: str, path: str, **kwargs: Any) -> Any:
                if method == "GET" and path in self.gone:
                    raise Refused(f"GET {path}: refused (410): This issue was deleted", 410)
                answer = original(method, path, **kwargs)
                if (method, path) in self.lose_answers:  # done on GitHub, the answer lost on the way
                    self.lose_answers.discard((method, path))
                    raise ServerError(f"{method} {path}: ReadTimeout")
                return answer

            client.request = request
        return client

    def tick(self, now: datetime = NOW, **inputs: Any) -> Outcome:
        self.ticks += 1
        app = (lambda: self.app) if self.with_app else (lambda: None)
        agent = ScoutAgent(store=lambda: self.store, app=app,
                           stop_reason=lambda repo: "agents are paused" if repo in self.paused else "",
                           signals=self.signals, **self.agent_options)
        task = AgentTask(task_id=f"tick-{self.ticks}", kind=SCAN_KIND, agent="scout", attempt=1,
                         repository="", installation_id=0, subject="tick", source="schedule",
                         created_at=int(now.timestamp() * 1000), inputs=json.dumps(inputs))
        executor = Executor(lambda: self.audit,
                            lambda installation, repo, task_id: self.client(installation, repo),
                            actor="scout")
        ctx = TaskContext(task, client=lambda: None, executor=executor, policy=lambda: None,
                          publisher=lambda: None, links=Links(), delivery_id=f"d-{self.ticks}",
                          clock=lambda: now,
                          client_for=lambda installation, repo: self.client(installation, repo))
        return agent.handle(ctx)

    def audit_writes(self) -> list[Any]:
        """What the executor made (a dry run records `...:dry_run` keys beside them)."""
        return [key for key in getattr(self.audit, "records", {}) if not str(key).endswith(":dry_run")]

    def health_issues(self, repo: str) -> list[dict[str, Any]]:
        return [issue for (name, _), issue in self.github._issues.items()
                if name == repo and "repo-health" in issue["labels"]]


@pytest.fixture
def h(github, key) -> Harness:
    return Harness(github, key)


def _scanned(outcome: Outcome) -> list[str]:
    return [row["repository"] for row in outcome.details["repos"] if row["status"] == "scanned"]


def test_a_tick_stops_starting_repositories_when_its_time_is_spent_and_the_next_resumes(h):
    """The function's timeout must never cut a repository's scan in half: after `turn_seconds` the tick
    saves the cursor and succeeds; the next tick starts where it stopped."""
    seconds = iter([0.0, 1.0, 2.0, 500.0, 501.0, 502.0, 503.0, 504.0, 505.0, 506.0])
    h.agent_options = {"turn_seconds": 240.0, "monotonic": lambda: next(seconds)}
    outcome = h.tick()
    assert outcome.status == "succeeded" and outcome.details["stopped"] is True
    first = _scanned(outcome)
    assert first and len(first) < 3
    assert "when the turn's time was spent" in outcome.summary
    stopped = [row for row in outcome.details["repos"] if row["status"] == "stopped"]
    assert stopped and h.store.cursors[77]["cursor"] == stopped[0]["repository"]
    h.agent_options = {}
    second = h.tick(NOW + timedelta(hours=4))
    assert _scanned(second)[0] == stopped[0]["repository"] and second.details["stopped"] is False
    assert set(first) | set(_scanned(second)) == {"octo/alpha", "octo/beta", "octo/gamma"}


def test_a_scan_stops_before_the_reserve_and_saves_the_cursor(h):
    # 1,000 of 5,000 are the reserve: 30 calls are usable, less than a first scan's estimate (40).
    h.github.set_rate_limit(remaining=1030, reset_in=int(timedelta(days=10).total_seconds()))
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    outcome = h.tick()
    assert _scanned(outcome) == []
    assert outcome.details["stopped"] is True
    assert "stopped before the rate-limit budget ran out" in outcome.summary
    assert h.store.cursors[77]["cursor"] == "octo/alpha"
    assert "the next tick resumes at octo/alpha" in h.store.cursors[77]["reason"]
    assert h.store.scan_docs == {} and h.health_issues("octo/alpha") == []
    assert h.github.rate_limit - h.github.rate_limit_used >= 1000  # the reserve was not touched


def test_the_next_tick_resumes_at_the_cursor_and_clears_it(h):
    h.store.cursors[77] = {"cursor": "octo/beta"}
    outcome = h.tick()
    assert _scanned(outcome) == ["octo/beta", "octo/gamma", "octo/alpha"]
    assert h.store.cursors[77]["cursor"] is None
    assert "scanned 3 repositories (3 re-read, 0 unchanged)" in outcome.summary


def test_a_cursor_at_a_repository_gone_since_resumes_at_the_next_one(h):
    h.store.cursors[77] = {"cursor": "octo/delta"}  # uninstalled after the tick that stopped there
    outcome = h.tick()
    assert _scanned(outcome) == ["octo/gamma", "octo/alpha", "octo/beta"]
    assert h.store.cursors[77]["cursor"] is None


def test_an_installation_with_more_repositories_than_listed_says_so(h, monkeypatch):
    from functions.repo_scout import agent as scout_agent

    for index in range(98):
        h.github.add_repo(f"octo/r{index:03}")
    monkeypatch.setattr(scout_agent, "MAX_REPOSITORY_PAGES", 1)  # 100 of the 101 repositories
    outcome = h.tick(repository="octo/alpha")
    assert ("installation 77 has 101 repositories; only the first 100 were listed and are scanned"
            in outcome.details["problems"])


def test_a_redelivered_tick_does_not_scan_a_repository_twice(h):
    h.tick()
    h.ticks -= 1  # the same task again
    outcome = h.tick()
    assert _scanned(outcome) == []
    assert {row["reason"] for row in outcome.details["repos"]} == {"scanned by this tick already"}


def test_an_unchanged_repository_is_not_read_again_over_rest(h):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    first = h.tick()
    actions = {row["repository"]: row["issue_action"] for row in first.details["repos"]}
    assert actions["octo/alpha"] == "create"
    before = len(h.github.requests)
    second = h.tick(NOW + timedelta(hours=4))
    rows = {row["repository"]: row for row in second.details["repos"]}
    assert all(row["reused"] for row in rows.values()), rows
    # Not even the policy: it is a file of the default branch, which cannot change without a push.
    assert all(row["rest_calls"] == 0 for row in rows.values()), rows
    served = [path for _, path, _ in h.github.requests[before:]]
    assert served.count("/graphql") == 1 and not any("/issues" in path for path in served)
    assert not any("/contents/" in path for path in served)
    assert len(h.health_issues("octo/alpha")) == 1
    # Past refresh_hours it is read in full again, whatever its signature says.
    third = h.tick(NOW + timedelta(hours=30))
    assert not any(row["reused"] for row in third.details["repos"])


def test_a_policy_pushed_to_an_unchanged_repository_is_read_at_the_next_tick(h):
    h.tick()
    quiet = "version: 1\nscout:\n  quiet: true\n"
    h.github.push_commit("octo/alpha", "main", {".github/agent-ops.yml": quiet}, message="the scout, quietly")
    before = len(h.github.requests)
    second = h.tick(NOW + timedelta(hours=4))
    rows = {row["repository"]: row for row in second.details["repos"]}
    assert not rows["octo/alpha"]["reused"] and rows["octo/beta"]["reused"]
    served = [path for _, path, _ in h.github.requests[before:]]
    assert [path for path in served if "/contents/" in path] == [
        "/repos/octo/alpha/contents/.github/agent-ops.yml"]
    assert h.store.repos["octo/alpha"]["health"]["quiet"] is True


def test_what_cannot_be_read_keeps_its_findings_open(h, github, key):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    h.tick(repository="octo/alpha")
    [alert] = [doc for doc in h.store.findings("octo/alpha") if doc["kind"] == "dependabot_alert"]
    limited = Harness(github, key, agent_permissions="monitor")  # issues only
    limited.store = h.store
    limited.ticks = h.ticks
    outcome = limited.tick(NOW + timedelta(hours=30), repository="octo/alpha")
    [row] = outcome.details["repos"]
    assert row["status"] == "scanned"
    scan = h.store.scan_docs["octo/alpha"][h.store.repos["octo/alpha"]["health"]["scan_id"]]
    assert {"ci", "dependabot", "code_scanning", "branch_protection"} <= set(scan["unknown"])
    [still] = [doc for doc in h.store.findings("octo/alpha") if doc["kind"] == "dependabot_alert"]
    assert still["state"] == "open" and still["fingerprint"] == alert["fingerprint"]


def test_quiet_mode_records_the_health_without_an_issue(h):
    h.github.set_file("octo/alpha", ".github/agent-ops.yml", "version: 1\nscout:\n  quiet: true\n")
    outcome = h.tick(repository="octo/alpha")
    assert h.health_issues("octo/alpha") == []
    health = h.store.repos["octo/alpha"]["health"]
    assert health["quiet"] is True and health["findings_open"] >= 1  # the unprotected branch
    assert outcome.details["repos"][0]["issue_action"] == "none"


def test_a_paused_repository_is_skipped_and_a_failing_one_does_not_stop_the_others(h):
    h.with_app = False  # the installations from Firestore's records
    h.store.installations = {77: ["octo/alpha", "octo/ghost", "octo/beta"]}
    h.paused = {"octo/beta"}
    outcome = h.tick()
    rows = {row["repository"]: row for row in outcome.details["repos"]}
    assert rows["octo/alpha"]["status"] == "scanned"
    assert rows["octo/beta"]["status"] == "skipped" and rows["octo/beta"]["reason"] == "agents are paused"
    assert rows["octo/ghost"]["status"] == "failed" and "not found" in rows["octo/ghost"]["reason"]
    assert "1 problem(s): octo/ghost" in outcome.summary


def test_a_dry_run_writes_nothing(h):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    outcome = h.tick(dry_run=True)
    assert outcome.summary.startswith("dry run: scanned 3 repositories")
    assert [row["issue_action"] for row in outcome.details["repos"]] == ["create"] * 3
    assert h.health_issues("octo/alpha") == [] and h.store.scan_docs == {} and h.store.cursors == {}
    assert h.store.issues == {} and h.store.finding_docs == {} and h.store.repos == {}
    assert h.store.leases == {} and h.audit_writes() == []
    assert not [path for method, path, _ in h.github.requests if method in ("POST", "PATCH")
                and path != "/graphql" and not path.endswith("/access_tokens")]


def test_the_deployments_dry_run_makes_the_scheduled_tick_write_nothing(h):
    """AGENTOPS_DRY_RUN: the runner's executor applies no effect and its TaskContext says dry_run, so the
    scheduled tick (no `dry_run` input) records no health, scans, findings or issue state either."""
    from shared import topology
    from shared.agent_runtime import AgentRunner
    from shared.runtime import Envelope
    from tests.support.agents import ListPublisher, NoStops

    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    agent = ScoutAgent(store=lambda: h.store, app=lambda: h.app, stop_reason=lambda repo: "")
    publisher = ListPublisher()
    runner = AgentRunner(agent, publisher=lambda: publisher, tasks=lambda: NoStops(), audit=lambda: h.audit,
                         github=lambda: h.app, policy_for=lambda client, repository: None, links=Links(),
                         dry_run=True, clock=lambda: NOW)
    task = AgentTask(task_id="tick-dry", kind=SCAN_KIND, agent="scout", attempt=1, repository="",
                     installation_id=0, subject="tick", source="schedule",
                     created_at=int(NOW.timestamp() * 1000), inputs=json.dumps({}))
    runner(Envelope(topology.AGENTS_BY_NAME["scout"].topic, "m-dry", NOW, task.attributes(), task))

    [result] = publisher.results
    assert result.summary.startswith("dry run: scanned 3 repositories"), result.summary
    assert result.detail_values()["dry_run"] is True
    assert h.health_issues("octo/alpha") == [] and h.store.scan_docs == {} and h.store.cursors == {}
    assert h.store.issues == {} and h.store.finding_docs == {} and h.store.repos == {}
    assert h.store.leases == {} and h.audit_writes() == []
    assert not [path for method, path, _ in h.github.requests if method in ("POST", "PATCH", "PUT", "DELETE")
                and path != "/graphql" and not path.endswith("/access_tokens")]


def test_a_lost_answer_to_the_create_never_opens_a_second_issue(h):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    h.lose_answers.add(("POST", "/repos/octo/alpha/issues"))
    with pytest.raises(RetryableError, match="the tick is retried for them: octo/alpha"):
        h.tick(repository="octo/alpha")
    assert len(h.health_issues("octo/alpha")) == 1  # made on GitHub, the answer lost
    h.ticks -= 1  # Pub/Sub redelivers the same tick
    outcome = h.tick(repository="octo/alpha")
    [row] = outcome.details["repos"]
    assert row["status"] == "scanned" and row["issue_action"] == "none", row
    [issue] = h.health_issues("octo/alpha")
    assert row["issue_number"] == issue["number"] == h.store.issues["octo/alpha"]["number"]
    # And a later tick that must create again (the stored record lost) finds it by its marker first.
    h.store.issues.clear()
    h.tick(NOW + timedelta(hours=30), repository="octo/alpha")
    assert len(h.health_issues("octo/alpha")) == 1


def test_a_deleted_health_issue_is_opened_anew_and_the_repository_does_not_fail(h):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    h.tick(repository="octo/alpha")
    [issue] = h.health_issues("octo/alpha")
    del h.github._issues[("octo/alpha", issue["number"])]  # deleted by an admin: GitHub answers 410
    h.gone.add(f"/repos/octo/alpha/issues/{issue['number']}")
    outcome = h.tick(NOW + timedelta(hours=30), repository="octo/alpha")
    [row] = outcome.details["repos"]
    assert row["status"] == "scanned", row
    assert row["issue_action"] == "create"
    assert len(h.health_issues("octo/alpha")) == 1


def test_a_repository_another_turn_is_scanning_is_skipped_not_edited_twice(h):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    # The first delivery of this tick is still scanning octo/alpha when Pub/Sub redelivers it.
    lease = {"holder": "tick-1/d-0", "until": NOW + timedelta(minutes=10)}
    h.store.leases["octo/alpha"] = dict(lease)
    outcome = h.tick()
    rows = {row["repository"]: row for row in outcome.details["repos"]}
    assert rows["octo/alpha"]["status"] == "skipped"
    assert rows["octo/alpha"]["reason"] == "being scanned by another turn"
    assert h.health_issues("octo/alpha") == [] and "octo/alpha" not in h.store.scan_docs
    assert rows["octo/beta"]["status"] == "scanned"
    assert h.store.leases == {"octo/alpha": lease}  # the other turn's lease is left alone, the own released
    # A lease its turn left behind (crashed) expires: a later tick scans the repository.
    later = h.tick(NOW + timedelta(hours=4))
    assert {row["repository"]: row["status"] for row in later.details["repos"]}["octo/alpha"] == "scanned"
    assert len(h.health_issues("octo/alpha")) == 1 and h.store.leases == {}


def test_a_listing_cut_at_its_page_bound_does_not_tick_the_unseen_findings_fixed(h, monkeypatch):
    for index in range(101):
        h.github.add_dependabot_alert("octo/alpha", f"package-{index}", "low")
    h.tick(repository="octo/alpha")

    def open_alerts() -> set[str]:
        return {doc["identity"] for doc in h.store.findings("octo/alpha", "open")
                if doc["kind"] == "dependabot_alert"}

    assert len(open_alerts()) == 101
    monkeypatch.setattr(collect, "MAX_ALERT_PAGES", 1)  # now the oldest alert is beyond the bound
    h.tick(NOW + timedelta(hours=30), repository="octo/alpha")
    assert len(open_alerts()) == 101, "an alert the listing did not reach was ticked fixed"
    scan = h.store.scan_docs["octo/alpha"][h.store.repos["octo/alpha"]["health"]["scan_id"]]
    assert scan["partial"] == ["dependabot"]


def test_a_renamed_repositorys_health_issue_is_rewritten_in_place_not_duplicated(h):
    from functions.repo_scout.issue import issue_marker

    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    # Its health issue, opened by the App while the repository was called octo/old-alpha; and a person's
    # issue quoting that marker, which is not adopted.
    h.github.open_issue("octo/alpha", "Why this?", body=f"{issue_marker('octo/old-alpha')}\nquoted",
                        author="carol")
    old = h.github.open_issue("octo/alpha", "Repo health: 90/100, 1 open finding",
                              body=f"{issue_marker('octo/old-alpha')}\n## Repository health: 90/100\n",
                              author="agent-ops[bot]")
    outcome = h.tick(repository="octo/alpha")
    [row] = outcome.details["repos"]
    assert (row["issue_action"], row["issue_number"]) == ("update", old["number"]), row
    assert h.health_issues("octo/alpha") == []  # none created (the old one has no labels here)
    body = h.github.issue("octo/alpha", old["number"])["body"]
    assert body.startswith(issue_marker("octo/alpha")) and "requests" in body


def test_a_github_failure_for_one_repository_retries_it_without_ticking_its_findings_fixed(h):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    h.tick()
    opened = {doc["fingerprint"] for doc in h.store.findings("octo/alpha", "open")}
    scan_before = h.store.repos["octo/alpha"]["health"]["scan_id"]
    # Past refresh_hours (read in full), GitHub answers 502 for alpha's alerts, its retries included.
    h.github.inject_fault("server_error", count=4, path_prefix="/repos/octo/alpha/dependabot")
    later = NOW + timedelta(hours=30)
    with pytest.raises(RetryableError, match="octo/alpha"):
        h.tick(later)
    assert {doc["fingerprint"] for doc in h.store.findings("octo/alpha", "open")} == opened
    assert h.store.repos["octo/alpha"]["health"]["scan_id"] == scan_before  # nothing of alpha written
    # The others were scanned all the same: a repository GitHub keeps failing for starves none.
    for repo in ("octo/beta", "octo/gamma"):
        assert h.store.repos[repo]["scout"]["last_task_id"] == f"tick-{h.ticks}", repo
    h.ticks -= 1  # redelivered: only alpha is scanned again
    outcome = h.tick(later)
    statuses = {row["repository"]: (row["status"], row["reason"]) for row in outcome.details["repos"]}
    assert statuses["octo/alpha"] == ("scanned", "")
    assert statuses["octo/beta"] == ("skipped", "scanned by this tick already")
    assert {doc["fingerprint"] for doc in h.store.findings("octo/alpha", "open")} == opened


def test_graphql_failing_stops_no_scan_the_repositories_are_read_in_full(h):
    h.tick()
    h.github.inject_fault("server_error", count=4, path_prefix="/graphql")  # the retries included
    outcome = h.tick(NOW + timedelta(hours=4))
    assert _scanned(outcome) == list(REPOS)
    assert not any(row["reused"] for row in outcome.details["repos"])  # no signature: read in full
    assert "the GraphQL signatures could not be read" in outcome.summary


def test_facts_too_large_for_a_firestore_document_are_not_kept_and_the_next_scan_reads_in_full(
        h, monkeypatch):
    from functions.repo_scout import agent as scout_agent

    for index in range(20):
        h.github.open_issue("octo/alpha", "界" * 300 + f" {index}")  # 900 bytes of UTF-8 each
    monkeypatch.setattr(scout_agent, "MAX_FACTS_BYTES", 10_000)
    h.tick(repository="octo/alpha")
    scan = h.store.scan_docs["octo/alpha"][h.store.repos["octo/alpha"]["health"]["scan_id"]]
    assert scan["facts"] is None and scan["score"] is not None  # the scan itself is recorded
    outcome = h.tick(NOW + timedelta(hours=4), repository="octo/alpha")
    [row] = outcome.details["repos"]
    assert row["status"] == "scanned" and row["reused"] is False


def test_a_change_during_the_tick_is_not_absorbed_by_the_signature_refresh(h):
    from shared.github import graphql

    calls: list[list[str]] = []

    def signals(client: Any, repos: Sequence[str]) -> Any:
        calls.append(list(repos))
        if len(calls) == 2:  # the refresh after the health issue's creation: an alert came in meanwhile
            h.github.add_dependabot_alert("octo/alpha", "jinja2", "critical")
        return graphql.repo_signals(client, list(repos))

    h.signals = signals
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    h.tick(repository="octo/alpha")
    assert calls == [["octo/alpha"], ["octo/alpha"]]
    h.signals = None
    outcome = h.tick(NOW + timedelta(hours=4), repository="octo/alpha")
    [row] = outcome.details["repos"]
    assert row["reused"] is False, "the new alert's change was taken for the scout's own edit"
    assert "jinja2" in h.health_issues("octo/alpha")[0]["body"]


def test_the_scouts_own_edit_does_not_make_the_repository_look_changed(h):
    h.github.add_dependabot_alert("octo/alpha", "requests", "high")
    h.tick(repository="octo/alpha")  # creates the health issue: one more open issue
    outcome = h.tick(NOW + timedelta(hours=4), repository="octo/alpha")
    assert outcome.details["repos"][0]["reused"] is True


# ---- the policy's scout section ------------------------------------------------------------------


def test_the_policy_defaults_are_the_scout_defaults():
    policy_defaults = dataclasses.asdict(ScoutPolicy())
    settings = dataclasses.asdict(ScoutSettings())
    assert {name: policy_defaults[name] for name in settings} == settings
    assert scout_config(DEFAULT_POLICY).settings == ScoutSettings()
    assert scout_config(DEFAULT_POLICY).refresh_hours == 24


def test_the_policy_scout_section_becomes_the_settings():
    load = parse_policy("version: 1\nscout:\n  first_review_hours: 4\n  quiet: true\n  refresh_hours: 6\n"
                        "  stale_exempt_labels: [keep]\n  ci_min_success_rate: 0.5\n")
    assert load.problems == ()
    config = scout_config(load.policy)
    assert config.settings == ScoutSettings(first_review_hours=4, quiet=True, stale_exempt_labels=("keep",),
                                            ci_min_success_rate=0.5)
    assert config.refresh_hours == 6


@pytest.mark.parametrize("text,message", [
    ("scout:\n  stale_issue_days: 0\n", "scout.stale_issue_days: 0 is less than the minimum of 1"),
    ("scout:\n  ci_min_success_rate: 1.5\n",
     "scout.ci_min_success_rate: 1.5 is greater than the maximum of 1"),
    ("scout:\n  quiet: sometimes\n", "scout.quiet"),
    ("scout:\n  refresh_hours: 200\n", "scout.refresh_hours: 200 is greater than the maximum of 168"),
    ("scout:\n  stale_days: 3\n", "stale_days"),
])
def test_an_invalid_scout_value_is_refused_with_a_clear_message(text, message):
    load = parse_policy("version: 1\n" + text)
    assert load.source == "invalid"
    assert any(message in str(problem) for problem in load.problems), [str(p) for p in load.problems]


# ---- the CLI -----------------------------------------------------------------------------------------


def test_the_cli_verbs_parse_and_print_a_row_per_repository(monkeypatch, capsys):
    from functions.repo_scout import cli as scout_cli
    from functions.repo_scout import store as scout_store
    from shared import cli

    args = cli.parser().parse_args(["scout", "run", "--repo", "octo/alpha", "--dry-run"])
    assert args.run is scout_cli.scout_run and args.repo == "octo/alpha" and args.dry_run is True
    assert cli.parser().parse_args(["scout", "show"]).run is scout_cli.scout_show

    class Tasks:
        def stop_reason(self, agent: str, repository: str, number: int) -> str:
            return ""

    class Services:
        def tasks(self) -> Tasks:
            return Tasks()

        def firestore(self) -> None:
            return None

    calls = []

    def run_scan(services: Any, repository: str, dry_run: bool) -> Outcome:
        calls.append((repository, dry_run))
        return Outcome("succeeded", "dry run: scanned 1 repository", details={"repos": [
            {"repository": "octo/alpha", "status": "scanned", "reason": "", "score": 88, "findings": 2,
             "api_calls": 9, "reused": False, "issue_number": 4, "issue_action": "create"}]})

    monkeypatch.setattr(scout_cli.operator_cli, "load_services", Services)
    monkeypatch.setattr(scout_cli, "run_scan", run_scan)
    assert scout_cli.scout_run(args) == 0
    out = capsys.readouterr().out
    assert calls == [("octo/alpha", True)]
    assert "octo/alpha" in out and "88" in out and "#4" in out and "dry run: scanned 1 repository" in out

    memory = MemoryScoutStore()
    memory.repos["octo/alpha"] = {"full_name": "octo/alpha", "health": {
        "score": 71, "findings_open": 3, "reasons": ["−10: Branch protection: 1 finding (1 high)"],
        "by_severity": {"critical": 0, "high": 1, "medium": 2, "low": 0}, "issue_number": 9, "quiet": False,
        "scanned_at": NOW, "scan_id": "s1"}}
    memory.health_all = lambda: [memory.repos["octo/alpha"]]  # type: ignore[method-assign]
    monkeypatch.setattr(scout_store, "ScoutStore", lambda client: memory)
    assert scout_cli.scout_show(cli.parser().parse_args(["scout", "show", "--repo", "octo/alpha"])) == 0
    out = capsys.readouterr().out
    assert "71" in out and "0/1/2/0" in out and "#9" in out and "Branch protection" in out
    assert scout_cli.scout_show(cli.parser().parse_args(["scout", "show", "--repo", "octo/none"])) == 1


def test_the_deployments_dry_run_makes_the_cli_scan_a_dry_run():
    from types import SimpleNamespace

    from functions.repo_scout import cli as scout_cli

    seen: list[Any] = []

    class Agent:
        def handle(self, ctx: TaskContext) -> Outcome:
            seen.append(ctx.inputs)
            return Outcome("succeeded", "dry run")

    services = SimpleNamespace(agent=lambda name: Agent(), github_app=lambda: None, clock=lambda: NOW,
                               audit=lambda: MemoryAudit(), publisher=lambda: None,
                               config=SimpleNamespace(dry_run=True, dashboard_url=""))
    scout_cli.run_scan(services, "octo/alpha", dry_run=False)
    assert seen == [{"repository": "octo/alpha", "dry_run": True}]
