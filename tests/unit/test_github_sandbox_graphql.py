"""The GitHub sandbox's GraphQL endpoint, the REST reads the scout uses, and its rate-limit control.

GraphQL answers are GitHub's shapes: 200 with `errors` for a query that cannot run, a field's
`type`/`path` error beside the rest of the data. REST answers are validated by the sandbox itself
against GitHub's description (a violation is a 500 and fails the fixture); these tests assert the
content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from sandbox.github.control import SandboxControl
from sandbox.github.server import GitHubSandbox
from shared.github.app import GitHubApp
from shared.github.rest import RateLimited, RestClient
from tests.support.sandbox_site import app_for

SIGNAL = """query($o: String!, $n: String!) {
  rateLimit { cost remaining resetAt limit used nodeCount }
  r: repository(owner: $o, name: $n) {
    databaseId nameWithOwner pushedAt updatedAt isArchived
    defaultBranchRef { name target { oid ... on Commit { statusCheckRollup { state } } } }
    issues(states: [OPEN]) { totalCount }
    pullRequests(states: [OPEN]) { totalCount }
    vulnerabilityAlerts(states: [OPEN]) { totalCount }
  }
}"""


@pytest.fixture
def github_repos() -> dict[str, dict[str, str]]:
    """The repositories the sandbox of `github` (tests/unit/conftest.py) starts with."""
    return {"octo/widgets": {"README.md": "widgets\n"}, "octo/gadgets": {"README.md": "gadgets\n"}}


@pytest.fixture
def app(github, key) -> GitHubApp:
    return app_for(github, key)


@pytest.fixture
def token(github, app) -> Callable[..., str]:
    def make(agent: str = "scout", repositories: tuple[str, ...] = ()) -> str:
        return app.tokens().token(github.installation_id, agent, repositories).token

    return make


def post(github: GitHubSandbox, token: str | None, document: str,
         variables: dict[str, Any] | None = None) -> requests.Response:
    headers = {"User-Agent": "test", "Accept": "application/vnd.github+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{github.base_url}/graphql", json={"query": document, "variables": variables},
                         headers=headers, timeout=10)


def signal(github: GitHubSandbox, token: str, repo: str = "octo/widgets") -> dict[str, Any]:
    owner, name = repo.split("/")
    answer = post(github, token, SIGNAL, {"o": owner, "n": name})
    assert answer.status_code == 200
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


# ---- GraphQL: validation -------------------------------------------------------------------

def test_a_syntax_error_is_200_with_githubs_errors(github, token):
    answer = post(github, token(), "{ repository(owner: ")
    assert answer.status_code == 200
    body = answer.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"].startswith("Syntax Error") and error["locations"] == [{"line": 1, "column": 21}]


def test_an_unknown_field_or_argument_is_200_with_errors_and_nothing_runs(github, token):
    before = github.graphql_rate_used
    answer = post(github, token(), '{ repository(owner: "octo", name: "widgets") { stargazerCount } '
                                   'rateLimit(cheap: true) { cost } }')
    assert answer.status_code == 200
    messages = [e["message"] for e in answer.json()["errors"]]
    assert messages[0] == "Cannot query field 'stargazerCount' on type 'Repository'."
    assert messages[1].startswith("Unknown argument 'cheap' on field 'Query.rateLimit'.")
    assert all(e["locations"] for e in answer.json()["errors"])
    assert "data" not in answer.json() and github.graphql_rate_used == before


def test_a_field_outside_the_vendored_subset_is_refused(github, token):
    # Query.viewer is GitHub's, but not in the subset: a query the project does not make.
    answer = post(github, token(), '{ viewer { login } }')
    assert answer.json()["errors"][0]["message"] == "Cannot query field 'viewer' on type 'Query'."


def test_authentication_is_an_installation_token(github, app):
    missing = post(github, None, "{ rateLimit { cost } }")
    assert missing.status_code == 401 and missing.json()["message"] == "Requires authentication"
    bad = post(github, "ghs_nope", "{ rateLimit { cost } }")
    assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
    jwt = post(github, app.jwt().token(), "{ rateLimit { cost } }")
    assert jwt.status_code == 401


# ---- GraphQL: data -------------------------------------------------------------------------

def test_a_repositorys_signal_is_the_sandboxs_state(github, token):
    github.open_issue("octo/widgets", "one")
    github.open_issue("octo/widgets", "two")
    closed = github.open_issue("octo/widgets", "three")
    github.close_issue("octo/widgets", closed["number"])
    github.open_pull("octo/widgets", "feature", "A feature", files={"f.txt": "f\n"})
    github.add_dependabot_alert("octo/widgets", "requests", "high")
    github.add_dependabot_alert("octo/widgets", "urllib3", "low")
    github.add_dependabot_alert("octo/widgets", "jinja2", "low", state="fixed")
    repo = signal(github, token())["r"]
    record = github.state()["repos"]["octo/widgets"]
    assert repo["databaseId"] == record["id"] and repo["nameWithOwner"] == "octo/widgets"
    assert repo["isArchived"] is False
    assert repo["defaultBranchRef"] == {"name": "main", "target": {"oid": record["head_sha"],
                                                                   "statusCheckRollup": None}}
    assert (repo["issues"], repo["pullRequests"], repo["vulnerabilityAlerts"]) == (
        {"totalCount": 2}, {"totalCount": 1}, {"totalCount": 2})
    assert repo["pushedAt"].endswith("Z") and repo["updatedAt"] >= repo["pushedAt"]


def test_an_unknown_repository_is_a_not_found_error_for_its_alias(github, token):
    document = ('{ r0: repository(owner: "octo", name: "widgets") { nameWithOwner } '
                'r3: repository(owner: "octo", name: "x") { nameWithOwner } }')
    body = post(github, token(), document).json()
    assert body["data"] == {"r0": {"nameWithOwner": "octo/widgets"}, "r3": None}
    assert body["errors"] == [{"type": "NOT_FOUND", "path": ["r3"], "locations": [{"line": 1, "column": 68}],
                               "message": "Could not resolve to a Repository with the name 'octo/x'."}]


def test_a_repository_outside_the_token_is_not_found(github, token):
    body = post(github, token("scout", ("octo/widgets",)),
                '{ repository(owner: "octo", name: "gadgets") { databaseId } }').json()
    assert body["data"] == {"repository": None} and body["errors"][0]["type"] == "NOT_FOUND"


def test_vulnerability_alerts_need_the_vulnerability_alerts_permission(github, token):
    github.add_dependabot_alert("octo/widgets", "requests", "high")
    body = post(github, token("monitor"), SIGNAL, {"o": "octo", "n": "widgets"}).json()
    assert body["data"]["r"]["vulnerabilityAlerts"] is None
    assert body["data"]["r"]["nameWithOwner"] == "octo/widgets"  # the rest is there
    [error] = body["errors"]
    assert (error["type"], error["path"], error["message"]) == (
        "FORBIDDEN", ["r", "vulnerabilityAlerts"], "Resource not accessible by integration")
    assert signal(github, token("scout"))["r"]["vulnerabilityAlerts"] == {"totalCount": 1}


def test_a_push_moves_the_head_and_pushed_at(github, token):
    before = signal(github, token())["r"]
    sha = github.push_commit("octo/widgets", "main", {"new.txt": "new\n"})
    after = signal(github, token())["r"]
    assert after["defaultBranchRef"]["target"]["oid"] == sha != before["defaultBranchRef"]["target"]["oid"]
    assert after["pushedAt"] > before["pushedAt"] and after["updatedAt"] > before["updatedAt"]
    # A push to another branch is a push of the repository too; the default branch's head stays.
    github.push_commit("octo/widgets", "topic", {"t.txt": "t\n"})
    topic = signal(github, token())["r"]
    assert topic["pushedAt"] > after["pushedAt"] and topic["defaultBranchRef"]["target"]["oid"] == sha


def test_a_ref_written_over_rest_moves_pushed_at(github, token):
    client = RestClient(github.base_url, token=lambda: token("code", ("octo/widgets",)), sleep=lambda _: None)
    before = signal(github, token())["r"]["pushedAt"]
    head = github.state()["repos"]["octo/widgets"]["head_sha"]
    client.request("POST", "/repos/octo/widgets/git/refs", json_body={"ref": "refs/heads/x", "sha": head})
    assert signal(github, token())["r"]["pushedAt"] > before


def test_the_rollup_follows_checks_and_statuses_of_the_head(github, token):
    def state() -> str | None:
        rollup = signal(github, token())["r"]["defaultBranchRef"]["target"]["statusCheckRollup"]
        return None if rollup is None else rollup["state"]

    assert state() is None
    github.set_status("octo/widgets", "main", "pending", context="lint")
    assert state() == "PENDING"
    github.set_status("octo/widgets", "main", "success", context="lint")
    assert state() == "SUCCESS"
    github.complete_ci("octo/widgets", "main", "failure")
    assert state() == "FAILURE"
    github.complete_ci("octo/widgets", "main", "success")  # the latest run of a name counts
    assert state() == "SUCCESS"
    github.protect_branch("octo/widgets", "main", ["ci", "deploy-preview"])
    assert state() == "EXPECTED"
    github.set_status("octo/widgets", "main", "error", context="deploy-preview")
    assert state() == "ERROR"


def test_rate_limit_costs_one_per_query_from_its_own_budget(github, token):
    value = token()
    first = post(github, value, SIGNAL, {"o": "octo", "n": "widgets"})
    second = post(github, value, SIGNAL, {"o": "octo", "n": "widgets"})
    one, two = first.json()["data"]["rateLimit"], second.json()["data"]["rateLimit"]
    assert (one["cost"], one["limit"], one["remaining"], one["used"], one["nodeCount"]) == (
        1, 5000, 4999, 1, 1)
    assert two["remaining"] == one["remaining"] - 1 and two["resetAt"] == one["resetAt"]
    assert second.headers["X-RateLimit-Resource"] == "graphql"
    assert second.headers["X-RateLimit-Remaining"] == "4998"
    state = github.state()
    assert state["graphql_served"] == 2 and state["requests_served"] >= 3  # the token's request too
    assert state["rate_limits"]["graphql"]["remaining"] == 4998
    assert state["rate_limits"]["core"]["remaining"] == 4999  # only the token request was REST


def test_an_exhausted_graphql_budget_is_rate_limited(github, token):
    github.set_rate_limit(0, reset_in=600, resource="graphql")
    answer = post(github, token(), "{ rateLimit { cost } }")
    assert answer.status_code == 200 and answer.headers["X-RateLimit-Remaining"] == "0"
    [error] = answer.json()["errors"]
    assert error["type"] == "RATE_LIMITED" and "rate limit already exceeded" in error["message"]


# ---- REST reads ----------------------------------------------------------------------------

def test_installation_repositories_are_the_tokens_and_paginated(github, token):
    github.add_repo("octo/tools")
    everything = RestClient(github.base_url, token=lambda: token("scout"))
    answer = everything.request("GET", "/installation/repositories")
    assert answer["total_count"] == 3
    assert [r["full_name"] for r in answer["repositories"]] == ["octo/gadgets", "octo/tools", "octo/widgets"]
    one = RestClient(github.base_url, token=lambda: token("scout", ("octo/widgets",)))
    answer = one.request("GET", "/installation/repositories")
    assert answer["total_count"] == 1 and [r["full_name"] for r in answer["repositories"]] == ["octo/widgets"]
    headers = {"Authorization": f"Bearer {token('scout')}", "User-Agent": "test"}
    first = requests.get(f"{github.base_url}/installation/repositories", params={"per_page": 2},
                         headers=headers, timeout=10)
    assert first.status_code == 200 and first.json()["total_count"] == 3
    assert len(first.json()["repositories"]) == 2 and 'rel="next"' in first.headers["Link"]
    pages = [item for page in everything.paginate("/installation/repositories", {"per_page": 2})
             for item in page["repositories"]]
    assert [r["full_name"] for r in pages] == ["octo/gadgets", "octo/tools", "octo/widgets"]


def test_installation_repositories_need_an_installation_token(github, app):
    answer = requests.get(f"{github.base_url}/installation/repositories",
                          headers={"Authorization": f"Bearer {app.jwt().token()}", "User-Agent": "test"},
                          timeout=10)
    assert answer.status_code == 401


def test_app_installations_lists_the_organisations(github, app):
    [installation] = app.app_client().request("GET", "/app/installations")
    assert installation["id"] == github.installation_id and installation["account"]["login"] == "octo"
    assert installation["app_id"] == int(github.app_id)
    assert installation["repositories_url"].endswith("/installation/repositories")


def test_pull_request_commits_are_oldest_first_with_dates(github, token):
    github.push_commit("octo/widgets", "feature", {"a.txt": "a\n"}, message="First", author="alice")
    github.push_commit("octo/widgets", "feature", {"b.txt": "b\n"}, message="Second", author="alice")
    pull = github.open_pull("octo/widgets", "feature", "Two commits", author="alice")
    github.push_commit("octo/widgets", "main", {"c.txt": "c\n"}, message="Elsewhere")  # not the pull's
    client = RestClient(github.base_url, token=lambda: token("scout"))
    commits = client.request("GET", f"/repos/octo/widgets/pulls/{pull['number']}/commits")
    assert [c["commit"]["message"] for c in commits] == ["First", "Second"]
    assert commits[1]["parents"][0]["sha"] == commits[0]["sha"]
    assert all(c["commit"]["author"]["date"] and c["commit"]["committer"]["date"] for c in commits)
    assert commits[-1]["sha"] == github.state()["repos"]["octo/widgets"]["branches"]["feature"]


# ---- the rate-limit control --------------------------------------------------------------------

def test_set_rate_limit_over_the_control_api(github, token):
    control = SandboxControl(github.base_url)
    value = token("scout")  # issued first: the sandbox counts every request against one window
    client = RestClient(github.base_url, token=lambda: value, sleep=lambda _: None, max_retries=0)
    answer = control.set_rate_limit(10, reset_in=600)
    assert answer["remaining"] == 10 and answer["resource"] == "core"
    client.request("GET", "/repos/octo/widgets")
    assert client.rate_limit is not None and client.rate_limit.remaining == 9
    assert abs(client.rate_limit.reset - (time.time() + 600)) < 5
    control.set_rate_limit(0, reset_in=600)
    with pytest.raises(RateLimited):
        client.request("GET", "/repos/octo/widgets")
    control.set_rate_limit(0, reset_in=0)  # the window is over: the next request opens a new one
    client.request("GET", "/repos/octo/widgets")
    assert client.rate_limit.remaining == github.rate_limit - 1
    control.set_rate_limit(7, resource="graphql")
    assert github.state()["rate_limits"]["graphql"]["remaining"] == 7
