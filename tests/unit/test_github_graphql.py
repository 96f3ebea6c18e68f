"""The GraphQL client and the scout's repository signals, against the GitHub sandbox over HTTP.

The query `repo_signals` sends is validated against the vendored subset of GitHub's official
schema; batching, per-alias errors, rate limiting and whole-query failures are GitHub's answers as
the sandbox gives them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from graphql import build_schema, parse, validate

from sandbox.github.graphql import SUBSET as SCHEMA_FILE
from shared.errors import PermanentError, RetryableError
from shared.github.graphql import (
    REPO_SIGNAL_FRAGMENT,
    QueryFailed,
    RepoSignal,
    query,
    repo_signals,
    signals_document,
)
from shared.github.rest import RateLimited, RestClient
from tests.support.sandbox_site import app_for


class RecordingSession(requests.Session):
    """A session that keeps the JSON body of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[Any] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("data"):
            self.bodies.append(json.loads(kwargs["data"]))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def github_repos() -> dict[str, dict[str, str]]:
    """The repositories the sandbox of `github` (tests/unit/conftest.py) starts with."""
    return {"octo/widgets": {"README.md": "widgets\n"}, "octo/gadgets": {"README.md": "gadgets\n"}}


@pytest.fixture
def client_for(github, key) -> Callable[..., RestClient]:
    app = app_for(github, key)

    def make(agent: str = "scout", repositories: tuple[str, ...] = (), session: Any = None) -> RestClient:
        token = app.tokens().token(github.installation_id, agent, repositories).token
        return RestClient(github.base_url, token=lambda: token, session=session, sleep=lambda _: None,
                          max_retries=0)

    return make


# ---- the document ----------------------------------------------------------------------------

def test_the_scouts_query_validates_against_githubs_schema_subset():
    schema = build_schema(SCHEMA_FILE.read_text())
    for count in (1, 2, 50):
        document = signals_document(count)
        assert validate(schema, parse(document)) == [], document
        assert document.count("...RepoSignal") == count
    # The check itself catches a field GitHub does not have.
    broken = signals_document(1).replace("isArchived", "archived")
    assert [e.message.split(". ")[0] for e in validate(schema, parse(broken))] == [
        "Cannot query field 'archived' on type 'Repository'"]


def test_the_fragment_asks_for_every_signal_field():
    for name in ("databaseId", "nameWithOwner", "pushedAt", "updatedAt", "isArchived", "defaultBranchRef",
                 "statusCheckRollup", "issues(states: [OPEN])", "pullRequests(states: [OPEN])",
                 "vulnerabilityAlerts(states: [OPEN])", "totalCount", "oid"):
        assert name in REPO_SIGNAL_FRAGMENT


# ---- batching --------------------------------------------------------------------------------

def test_120_repositories_take_three_queries_of_at_most_50(github, client_for):
    names = [f"octo/r{i:03}" for i in range(118)]
    for name in names:
        github.add_repo(name)
    wanted = ["octo/widgets", "octo/gadgets", *names]
    session = RecordingSession()
    before = github.state()["graphql_served"]

    result = repo_signals(client_for(session=session), wanted)

    assert result.requests == 3
    assert github.state()["graphql_served"] - before == 3
    assert [len(body["variables"]) // 2 for body in session.bodies] == [50, 50, 20]
    assert set(result.signals) == set(wanted) and result.missing == {}
    assert all(result.signals[name].name_with_owner == name for name in wanted)
    assert result.rate.cost == 3 and result.rate.limit == 5000 and result.rate.remaining == 4997
    assert isinstance(result.rate.reset_at, datetime)


def test_a_duplicate_name_is_asked_for_once(github, client_for):
    session = RecordingSession()
    result = repo_signals(client_for(session=session), ["octo/widgets", "octo/widgets", "not-a-name"])
    assert list(result.signals) == ["octo/widgets"]
    assert result.missing == {"not-a-name": "INVALID: not owner/name"}
    assert len(session.bodies[0]["variables"]) == 2


def test_no_repositories_make_no_query(github, client_for):
    result = repo_signals(client_for(), [])
    assert result.requests == 0 and result.signals == {} and github.state()["graphql_served"] == 0


# ---- per-alias errors ------------------------------------------------------------------------

def test_an_unknown_repository_is_missing_and_the_others_are_there(github, client_for):
    result = repo_signals(client_for(), ["octo/widgets", "octo/nope", "octo/gadgets"])
    assert set(result.signals) == {"octo/widgets", "octo/gadgets"}
    assert result.missing == {
        "octo/nope": "NOT_FOUND: Could not resolve to a Repository with the name 'octo/nope'."}


def test_a_repository_outside_the_token_is_not_found(github, client_for):
    result = repo_signals(client_for(repositories=("octo/widgets",)), ["octo/widgets", "octo/gadgets"])
    assert list(result.signals) == ["octo/widgets"]
    assert result.missing["octo/gadgets"].startswith("NOT_FOUND: ")


def test_alerts_the_token_may_not_read_are_unknown_not_missing(github, client_for):
    github.add_dependabot_alert("octo/widgets", "requests", "high")
    scout = repo_signals(client_for("scout"), ["octo/widgets"]).signals["octo/widgets"]
    monitor = repo_signals(client_for("monitor"), ["octo/widgets"])  # issues: write only
    assert scout.open_vulnerability_alerts == 1
    assert monitor.missing == {}
    signal = monitor.signals["octo/widgets"]
    assert signal.open_vulnerability_alerts is None and signal.head_oid == scout.head_oid


def test_query_returns_data_with_the_tolerated_errors(github, client_for):
    document = ('query($o: String!, $n: String!) { a: repository(owner: $o, name: $n) { nameWithOwner } '
                'b: repository(owner: $o, name: "gone") { nameWithOwner } }')
    answer = query(client_for(), document, {"o": "octo", "n": "widgets"})
    assert answer["data"] == {"a": {"nameWithOwner": "octo/widgets"}, "b": None}
    assert [(e["type"], e["path"]) for e in answer["errors"]] == [("NOT_FOUND", ["b"])]


# ---- failures --------------------------------------------------------------------------------

def test_an_exhausted_graphql_budget_is_retryable(github, client_for):
    github.set_rate_limit(0, reset_in=600, resource="graphql")
    with pytest.raises(RateLimited) as raised:
        repo_signals(client_for(), ["octo/widgets"])
    assert isinstance(raised.value, RetryableError)
    assert "API rate limit already exceeded" in str(raised.value)
    assert abs(raised.value.retry_at - github.graphql_rate_reset) < 1


def test_a_query_github_cannot_run_is_permanent_with_its_message(github, client_for):
    with pytest.raises(QueryFailed) as raised:
        query(client_for(), '{ repository(owner: "octo", name: "widgets") { stars } }', {})
    assert isinstance(raised.value, PermanentError)
    assert "Cannot query field 'stars' on type 'Repository'." in str(raised.value)
    with pytest.raises(PermanentError, match="Syntax Error"):
        query(client_for(), "{ repository(owner: ", {})
    with pytest.raises(PermanentError, match="Variable '\\$o' has invalid value"):
        query(client_for(), "query($o: String!) { repository(owner: $o, name: \"x\") { databaseId } }", {})


def test_the_graphql_budget_does_not_replace_the_rest_budget(github, client_for):
    client = client_for()
    client.request("GET", "/repos/octo/widgets")
    rest = client.rate_limit
    repo_signals(client, ["octo/widgets"])
    assert client.rate_limit == rest and rest is not None and rest.resource == "core"


# ---- the digest ------------------------------------------------------------------------------

def test_the_digest_is_stable_and_follows_the_data(github, client_for):
    client = client_for()
    first = repo_signals(client, ["octo/widgets"]).signals["octo/widgets"]
    again = repo_signals(client, ["octo/widgets"]).signals["octo/widgets"]
    assert first == again and first.digest() == again.digest() and len(first.digest()) == 16

    github.open_issue("octo/widgets", "Broken")
    opened = repo_signals(client, ["octo/widgets"]).signals["octo/widgets"]
    assert opened.open_issues == first.open_issues + 1 and opened.digest() != first.digest()

    github.push_commit("octo/widgets", "main", {"a.txt": "a\n"})
    pushed = repo_signals(client, ["octo/widgets"]).signals["octo/widgets"]
    assert pushed.head_oid != opened.head_oid and pushed.pushed_at > opened.pushed_at
    assert pushed.digest() != opened.digest()

    github.complete_ci("octo/widgets", "main", "failure")
    failed = repo_signals(client, ["octo/widgets"]).signals["octo/widgets"]
    assert (pushed.check_state, failed.check_state) == (None, "FAILURE")
    assert failed.digest() != pushed.digest()


def test_every_field_changes_the_digest():
    signal = RepoSignal(database_id=1, name_with_owner="o/r", pushed_at=datetime.fromisoformat(
        "2026-01-02T03:04:05+00:00"), updated_at=datetime.fromisoformat("2026-01-02T03:04:05+00:00"),
        is_archived=False, default_branch="main", head_oid="a" * 40, check_state="SUCCESS", open_issues=1,
        open_pull_requests=2, open_vulnerability_alerts=3)
    other: dict[str, Any] = {
        "database_id": 2, "name_with_owner": "o/s", "pushed_at": signal.pushed_at + timedelta(seconds=1),
        "updated_at": signal.updated_at + timedelta(seconds=1), "is_archived": True,
        "default_branch": "trunk", "head_oid": "b" * 40, "check_state": "FAILURE", "open_issues": 0,
        "open_pull_requests": 3, "open_vulnerability_alerts": None}
    assert set(other) == {f.name for f in dataclasses.fields(RepoSignal)}
    digests = {signal.digest()}
    for name, value in other.items():
        changed = dataclasses.replace(signal, **{name: value})
        assert changed.digest() != signal.digest(), name
        digests.add(changed.digest())
    assert len(digests) == len(other) + 1
    assert signal.digest() == dataclasses.replace(signal).digest()


def test_the_digest_is_the_same_in_every_process():
    signal = RepoSignal(database_id=7, name_with_owner="octo/widgets", pushed_at=None, updated_at=None,
                        is_archived=False, default_branch=None, head_oid=None, check_state=None,
                        open_issues=0, open_pull_requests=0, open_vulnerability_alerts=None)
    assert signal.digest() == "35bb1e272dca21cf"  # json of the fields by name, sha256, 16 hex
