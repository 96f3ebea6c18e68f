"""The fake GitHub, driven over HTTP by the project's real client, answers as GitHub's description says."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest

from shared.config import Config
from shared.github import permissions
from shared.github.app import GitHubApp
from shared.github.checks import create_check_run_once
from shared.github.rest import (
    Forbidden,
    GitHubError,
    MemoryConditionalCache,
    NotFound,
    RateLimited,
    RestClient,
    ServerError,
    ValidationFailed,
)
from tests.support.fake_github import FakeGitHub, generate_app_key, running_fake
from tests.support.push import serve

REPO = "octo/widgets"
HEAD = "a" * 40


@pytest.fixture(scope="module")
def key() -> tuple[Any, str]:
    return generate_app_key()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, FakeGitHub]]]:
    """One loopback server for the module, answering as the current test's fake."""
    current: dict[str, FakeGitHub] = {}
    with serve(lambda environ, start_response: current["fake"].wsgi(environ, start_response)) as url:
        yield url, current


@pytest.fixture
def fake(key, server) -> Iterator[FakeGitHub]:
    url, current = server
    github = current["fake"] = FakeGitHub(key[0])
    github.base_url = url
    github.add_repo(REPO, files={".github/agent-ops.yml": "agents: [code]\n", "src/app.py": "print()\n"})
    yield github
    assert github.errors == []


def new_app(fake: FakeGitHub, key) -> GitHubApp:
    return GitHubApp(fake.base_url, fake.app_id, lambda: key[1], cache=MemoryConditionalCache())


@pytest.fixture
def app(fake: FakeGitHub, key) -> GitHubApp:
    return new_app(fake, key)


def client(app: GitHubApp, agent: str = "orchestrator",
           repositories: tuple[str, ...] = (REPO,)) -> RestClient:
    # A fresh client per write keeps the client's one-second spacing of writes out of the tests.
    return app.client_for(agent, 77, repositories)


def raw_client(fake: FakeGitHub, token: str) -> RestClient:
    return RestClient(fake.base_url, token=lambda: token, sleep=lambda seconds: None, max_retries=0)


def take_errors(fake: FakeGitHub) -> list[str]:
    found, fake.errors[:] = list(fake.errors), []
    return found


def test_running_fake_points_the_configuration_at_the_fake(monkeypatch):
    env = {"GOOGLE_CLOUD_PROJECT": "test-project"}
    with running_fake(env, monkeypatch) as github:
        config = Config.from_env(env)
        assert config.github_api_url == github.base_url == os.environ["GITHUB_API_URL"]
        assert config.github_app_id == "424242"
        assert config.private_key.startswith("-----BEGIN PRIVATE KEY-----")
        github.add_repo(REPO)
        app = GitHubApp(config.github_api_url, config.github_app_id, lambda: config.private_key)
        assert app.client_for("monitor", 77, [REPO]).request("GET", f"/repos/{REPO}")["full_name"] == REPO


def test_the_app_and_its_installation_answer_to_the_jwt(fake, app):
    assert app.app_client().request("GET", "/app")["slug"] == "agent-ops"
    assert app.installation_for(REPO) == 77
    with pytest.raises(NotFound):
        app.installation_for("octo/elsewhere")


def test_the_token_exchange_takes_the_jwt_and_scopes_the_token_to_the_agent(fake, app):
    client(app).request("GET", f"/repos/{REPO}")
    assert fake.tokens_issued == [permissions.for_agent("orchestrator")]
    assert fake.requests[:2] == [("POST", "/app/installations/77/access_tokens", 201),
                                 ("GET", f"/repos/{REPO}", 200)]
    token = app.tokens().token(77, "orchestrator", [REPO])
    assert token.token.startswith("ghs_") and len(token.token) == 40
    assert token.permissions == permissions.for_agent("orchestrator")
    assert token.repositories == ("widgets",)
    with pytest.raises(GitHubError) as refused:  # an installation token cannot mint tokens
        raw_client(fake, token.token).request("POST", "/app/installations/77/access_tokens", json_body={})
    assert refused.value.status == 401


def test_a_token_reaches_no_further_than_its_permissions_and_repositories(fake, key):
    fake.add_repo("octo/other", files={"README.md": "hi\n"})
    # A new App each, as the App spaces its own token requests a second apart.
    with pytest.raises(Forbidden, match="not accessible by integration"):
        client(new_app(fake, key), "monitor").request("GET", f"/repos/{REPO}/contents/src/app.py")
    with pytest.raises(NotFound):
        client(new_app(fake, key)).request("GET", "/repos/octo/other/contents/README.md")
    every_repo = client(new_app(fake, key), repositories=())
    assert every_repo.request("GET", "/repos/octo/other")["full_name"] == "octo/other"
    assert fake.tokens_issued == [permissions.for_agent(agent) for agent in ("monitor", "orchestrator",
                                                                             "orchestrator")]


def test_a_request_without_credentials_is_401(fake):
    with pytest.raises(GitHubError) as refused:
        RestClient(fake.base_url, token=lambda: "").request("GET", f"/repos/{REPO}")
    assert refused.value.status == 401


def test_a_bad_token_or_a_jwt_off_the_app_endpoints_is_401(fake, app):
    for credential in ("ghs_" + "x" * 36, app.jwt().token()):
        with pytest.raises(GitHubError) as refused:
            raw_client(fake, credential).request("GET", f"/repos/{REPO}")
        assert refused.value.status == 401
        assert "Bad credentials" in str(refused.value)


def test_a_jwt_signed_with_another_key_or_for_another_app_is_401(fake, key):
    _, other_pem = generate_app_key()
    for app in (GitHubApp(fake.base_url, fake.app_id, lambda: other_pem),
                GitHubApp(fake.base_url, "1", lambda: key[1])):
        with pytest.raises(GitHubError) as refused:
            app.app_client().request("GET", "/app")
        assert refused.value.status == 401


def test_an_expired_token_is_401(fake, app):
    client(app).request("GET", f"/repos/{REPO}")
    fake.expire_tokens()
    with pytest.raises(GitHubError) as refused:
        client(app).request("GET", f"/repos/{REPO}")
    assert refused.value.status == 401


def test_contents_come_base64_and_a_second_read_is_a_free_304(fake, app):
    reader = client(app)
    first = reader.request("GET", f"/repos/{REPO}/contents/.github/agent-ops.yml")
    again = reader.request("GET", f"/repos/{REPO}/contents/.github/agent-ops.yml")
    assert base64.b64decode(first["content"]).decode() == "agents: [code]\n"
    assert again == first
    assert reader.stats.not_modified == 1
    assert fake.requests[-1] == ("GET", f"/repos/{REPO}/contents/.github/agent-ops.yml", 304)
    remaining = reader.rate_limit.remaining
    reader.request("GET", f"/repos/{REPO}/contents/.github/agent-ops.yml")
    assert reader.rate_limit.remaining == remaining  # a 304 costs nothing

    fake.set_file(REPO, ".github/agent-ops.yml", "agents: [code, qa]\n")
    changed = reader.request("GET", f"/repos/{REPO}/contents/.github/agent-ops.yml")
    assert changed["sha"] != first["sha"]
    assert base64.b64decode(changed["content"]).decode() == "agents: [code, qa]\n"
    assert reader.stats.not_modified == 2


def test_contents_list_directories_honour_ref_and_404_when_missing(fake, app):
    reader = client(app)
    listing = reader.request("GET", f"/repos/{REPO}/contents/src", params={"ref": "main"})
    assert [(entry["name"], entry["type"]) for entry in listing] == [("app.py", "file")]
    root = reader.request("GET", f"/repos/{REPO}/contents/")
    assert [(entry["name"], entry["type"]) for entry in root] == [(".github", "dir"), ("src", "dir")]
    fake.delete_file(REPO, "src/app.py")
    with pytest.raises(NotFound):
        reader.request("GET", f"/repos/{REPO}/contents/src/app.py")
    with pytest.raises(NotFound):
        reader.request("GET", f"/repos/{REPO}/contents/.github/agent-ops.yml", params={"ref": "nope"})


def test_every_answer_carries_githubs_rate_limit_headers(fake, app):
    reader = client(app)
    reader.request("GET", f"/repos/{REPO}")
    first = reader.rate_limit
    reader.request("GET", f"/repos/{REPO}")
    assert (first.limit, first.resource) == (5000, "core")
    assert reader.rate_limit.remaining == first.remaining - 1


def test_an_exhausted_rate_limit_is_refused_until_the_reset(fake, app):
    reader = client(app)
    reader.request("GET", f"/repos/{REPO}")
    fake.rate_limit_used = fake.rate_limit
    with pytest.raises(RateLimited) as refused:
        reader.request("GET", f"/repos/{REPO}")
    assert refused.value.retry_at == fake.rate_limit_reset
    assert reader.rate_limit.remaining == 0


def test_check_runs_are_created_updated_and_listed_by_name(fake, app):
    fake.add_commit(REPO, HEAD)
    created = create_check_run_once(client(app, "test"), REPO, HEAD, "agent-ops/test", "task-1",
                                    status="in_progress")
    assert (created["status"], created["conclusion"]) == ("in_progress", None)
    updated = client(app, "test").request(
        "PATCH", f"/repos/{REPO}/check-runs/{created['id']}",
        json_body={"conclusion": "success", "output": {"title": "Tests", "summary": "12 passed"}})
    assert (updated["status"], updated["conclusion"]) == ("completed", "success")
    assert updated["completed_at"] is not None
    client(app, "test").request("POST", f"/repos/{REPO}/check-runs",
                                json_body={"name": "other", "head_sha": HEAD})
    listing = client(app, "test").request("GET", f"/repos/{REPO}/commits/{HEAD}/check-runs",
                                          params={"check_name": "agent-ops/test"})
    assert listing["total_count"] == 1
    assert [run["external_id"] for run in listing["check_runs"]] == ["task-1"]
    again = create_check_run_once(client(app, "test"), REPO, HEAD, "agent-ops/test", "task-1")
    assert again["id"] == created["id"]  # found, not created twice
    assert fake.check_runs[created["id"]]["output"] == {"title": "Tests", "summary": "12 passed"}
    assert client(app, "test").request("GET", f"/repos/{REPO}/check-runs/{created['id']}")["status"] == (
        "completed")


def test_a_check_run_needs_a_commit_the_repository_has(fake, app):
    with pytest.raises(ValidationFailed, match="No commit found"):
        client(app, "test").request("POST", f"/repos/{REPO}/check-runs",
                                    json_body={"name": "x", "head_sha": "b" * 40})


@pytest.mark.parametrize(("role", "permission"), [
    ("admin", "admin"), ("maintain", "write"), ("write", "write"), ("triage", "read"), ("read", "read"),
], ids=lambda value: value)
def test_collaborator_permission_maps_roles_as_github_does(fake, app, role, permission):
    fake.set_permission(REPO, "alice", role)
    answer = client(app).request("GET", f"/repos/{REPO}/collaborators/alice/permission")
    assert (answer["permission"], answer["role_name"], answer["user"]["login"]) == (permission, role, "alice")


def test_permission_of_an_unknown_user_is_none(fake, app):
    answer = client(app).request("GET", f"/repos/{REPO}/collaborators/stranger/permission")
    assert (answer["permission"], answer["role_name"]) == ("none", "none")


def test_reviews_carry_the_commit_they_reviewed(fake, app):
    fake.add_pull(REPO, 5, HEAD, author="bob")
    fake.add_review(REPO, 5, "alice")
    fake.set_pull_head(REPO, 5, "c" * 40)
    fake.add_review(REPO, 5, "carol", state="CHANGES_REQUESTED")
    reviews = client(app).request("GET", f"/repos/{REPO}/pulls/5/reviews")
    assert [(r["user"]["login"], r["state"], r["commit_id"]) for r in reviews] == [
        ("alice", "APPROVED", HEAD), ("carol", "CHANGES_REQUESTED", "c" * 40)]
    pull = client(app).request("GET", f"/repos/{REPO}/pulls/5")
    assert (pull["head"]["sha"], pull["user"]["login"], pull["base"]["ref"]) == ("c" * 40, "bob", "main")


def test_pulls_are_listed_by_state(fake, app):
    fake.add_pull(REPO, 1, HEAD)
    fake.add_pull(REPO, 2, "d" * 40, head_ref="old", state="closed")
    reader = client(app)
    assert [p["number"] for p in reader.request("GET", f"/repos/{REPO}/pulls")] == [1]
    every = reader.request("GET", f"/repos/{REPO}/pulls", params={"state": "all"})
    assert [p["number"] for p in every] == [2, 1]
    with pytest.raises(NotFound):
        reader.request("GET", f"/repos/{REPO}/pulls/9")


def test_comments_reactions_and_labels_change_the_issue(fake, app):
    fake.add_issue(REPO, 3, title="Crash", labels=("bug",))
    fake.add_comment(REPO, 3, "/approve", author="alice")
    posted = client(app).request("POST", f"/repos/{REPO}/issues/3/comments", json_body={"body": "On it"})
    assert posted["user"]["login"] == "agent-ops[bot]"
    client(app).request("PATCH", f"/repos/{REPO}/issues/comments/{posted['id']}", json_body={"body": "Done"})
    human = fake.comments[0]
    client(app).request("POST", f"/repos/{REPO}/issues/comments/{human['id']}/reactions",
                        json_body={"content": "+1"})
    client(app).request("POST", f"/repos/{REPO}/issues/3/reactions", json_body={"content": "eyes"})
    client(app).request("POST", f"/repos/{REPO}/issues/3/labels", json_body={"labels": ["agent-task"]})
    client(app).request("DELETE", f"/repos/{REPO}/issues/3/labels/bug")
    assert [(c["user"], c["body"]) for c in fake.comments] == [("alice", "/approve"),
                                                               ("agent-ops[bot]", "Done")]
    assert [(r.get("comment_id"), r.get("issue_number"), r["content"]) for r in fake.reactions] == [
        (human["id"], None, "+1"), (None, 3, "eyes")]
    assert fake.labels(REPO, 3) == ["agent-task"]
    issue = client(app).request("GET", f"/repos/{REPO}/issues/3")
    assert (issue["comments"], [label["name"] for label in issue["labels"]]) == (2, ["agent-task"])
    listed = client(app).request("GET", f"/repos/{REPO}/issues/3/comments")
    assert [c["body"] for c in listed] == ["/approve", "Done"]
    with pytest.raises(NotFound):
        client(app).request("DELETE", f"/repos/{REPO}/issues/3/labels/bug")


def test_lists_are_paginated_with_link_headers(fake, app):
    fake.add_issue(REPO, 4)
    for n in range(5):
        fake.add_comment(REPO, 4, f"comment {n}")
    pages = list(client(app).paginate(f"/repos/{REPO}/issues/4/comments", params={"per_page": 2}))
    assert [c["body"] for c in pages] == [f"comment {n}" for n in range(5)]
    assert sum(1 for method, _, _ in fake.requests if method == "GET") == 3


def test_team_membership_is_active_or_404(fake, app):
    fake.add_team_member("octo", "maintainers", "alice")
    reader = client(app)
    found = reader.request("GET", "/orgs/octo/teams/maintainers/memberships/alice")
    assert (found["state"], found["role"]) == ("active", "member")
    with pytest.raises(NotFound):
        reader.request("GET", "/orgs/octo/teams/maintainers/memberships/mallory")


def test_a_request_outside_the_subset_lands_in_errors(fake, app):
    with pytest.raises(ServerError):
        client(app).request("POST", f"/repos/{REPO}/forks", json_body={"default_branch_only": True})
    assert [e for e in take_errors(fake) if "not an operation this project uses" in e]


def test_a_body_github_would_reject_lands_in_errors(fake, app):
    fake.add_issue(REPO, 3)
    with pytest.raises(ServerError):
        client(app).request("POST", f"/repos/{REPO}/issues/3/comments", json_body={"text": "no body"})
    errors = take_errors(fake)
    assert len(errors) == 1 and "'body' is a required property" in errors[0]
    assert fake.comments == []


def test_an_undeclared_query_parameter_lands_in_errors(fake, app):
    fake.add_commit(REPO, HEAD)
    with pytest.raises(ServerError):
        raw_client(fake, app.tokens().token(77, "test", [REPO]).token).request(
            "GET", f"/repos/{REPO}/commits/{HEAD}/check-runs", params={"check-name": "x"})
    assert [e for e in take_errors(fake) if "no query parameter 'check-name'" in e]


def test_running_fake_fails_the_test_that_left_errors(monkeypatch):
    with pytest.raises(AssertionError, match="not an operation this project uses"):
        with running_fake({}, monkeypatch) as github, pytest.raises(ServerError):
            RestClient(github.base_url, token=lambda: "t", max_retries=0).request("GET", "/user")
