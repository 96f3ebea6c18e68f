"""The GitHub sandbox: people's actions become GitHub's webhooks, deliveries are recorded and
redelivered, faults are GitHub's, state survives a restart, and the control API, client and CLI work.

Every delivered payload is checked against GitHub's webhook schema of its event and action
(`tests/fixtures/github/webhook-schemas-subset.json`) and its signature with the webhook
function's own verification.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from functions.github_webhook.core import envelope, verify_signature
from functions.orchestrator.chatops import ignore_reason
from sandbox import cli as sandbox_cli
from sandbox.github import openapi, seed
from sandbox.github.control import SandboxControl, SandboxError
from sandbox.github.server import EMITTED, ROUTES, GitHubSandbox, generate_app_key
from shared.executor import CreateDeployment, CreateDeploymentStatus, CreateIssue, Executor, UpdateIssue
from shared.github import redelivery
from shared.github.app import GitHubApp
from shared.github.rest import RestClient, ServerError
from shared.policy import POLICY_PATH, parse_policy
from tests.support.agents import MemoryAudit
from tests.support.push import serve
from tests.support.sandbox_site import app_for

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "fixtures" / "github" / "webhook-schemas-subset.json"
SECRET = "sandbox-test-secret"
REPO = "octo/widgets"


@functools.cache
def _definitions() -> dict[str, Any]:
    return json.loads(SCHEMAS.read_text())["definitions"]


def schema_errors(event: str, payload: dict[str, Any]) -> list[str]:
    name = f"{event}${payload.get('action') or 'event'}"
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": _definitions(),
              "$ref": f"#/definitions/{name}"}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(payload), key=lambda e: list(e.path))
    return [f"{name} at {list(e.absolute_path)}: {e.message[:200]}" for e in errors[:3]]


class Receiver:
    """A webhook endpoint that records each delivery and answers `statuses` in turn (then 202)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        with self.lock:
            self.received.append((headers, body))
            status = self.statuses.pop(0) if self.statuses else 202
        start_response(f"{status} Status", [("Content-Type", "text/plain")])
        return [b"accepted" if status < 300 else b"try again later"]

    def events(self) -> list[str]:
        return [f"{headers['x-github-event']}.{json.loads(body).get('action') or ''}".rstrip(".")
                for headers, body in self.received]

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def clear(self) -> None:
        self.received.clear()


@pytest.fixture(scope="module")
def hook_site() -> Iterator[tuple[dict[str, Receiver], str]]:
    """One loopback webhook endpoint for the module, recording into the current test's receiver."""
    current: dict[str, Receiver] = {}
    with serve(lambda environ, start_response: current["hook"].wsgi(environ, start_response)) as url:
        yield current, url


@pytest.fixture
def receiver(hook_site) -> tuple[Receiver, str]:
    current, url = hook_site
    current["hook"] = Receiver()
    return current["hook"], url


@pytest.fixture
def start(key, site) -> Iterator[Callable[..., GitHubSandbox]]:
    """Make the sandbox the site serves; each is closed, and must have seen no violation, at the end."""
    current, url = site
    made: list[GitHubSandbox] = []

    def make(webhook_url: str = "", **options: Any) -> GitHubSandbox:
        sandbox = GitHubSandbox(key[0], webhook_url=webhook_url, webhook_secret=SECRET, **options)
        sandbox.base_url = url
        current["sandbox"] = sandbox
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()
        assert sandbox.errors == []


@pytest.fixture
def github(start, receiver) -> GitHubSandbox:
    """The demo organisation, webhooks to the receiver."""
    sandbox = start(receiver[1])
    seed.demo(sandbox)
    sandbox.wait_for_deliveries()
    return sandbox


def settle(sandbox: GitHubSandbox) -> None:
    assert sandbox.wait_for_deliveries(10)


def check_deliveries(hook: Receiver, sandbox: GitHubSandbox) -> None:
    """Every delivery is signed, carries GitHub's headers and matches GitHub's schema."""
    for headers, body in hook.received:
        assert verify_signature(body, headers["x-hub-signature-256"], [SECRET.encode()])
        assert headers["user-agent"] == "GitHub-Hookshot/sandbox"
        assert headers["content-type"] == "application/json"
        assert headers["x-github-hook-id"] == str(sandbox.hook_id)
        assert headers["x-github-hook-installation-target-type"] == "integration"
        assert headers["x-github-hook-installation-target-id"] == sandbox.app_id
        assert len(headers["x-github-delivery"]) == 36
        payload = json.loads(body)
        assert schema_errors(headers["x-github-event"], payload) == []
        assert payload["installation"]["id"] == 77


# ---- people's actions -----------------------------------------------------------------------

def _pull(sandbox: GitHubSandbox) -> int:
    return sandbox.open_pull(REPO, "feature", "Add a version (closes #1)", author="bob",
                             files={"app/version.py": "VERSION = '1.1'\n"})["number"]


ACTIONS: list[tuple[str, Callable[[GitHubSandbox], Any], list[str]]] = [
    ("open-issue", lambda s: s.open_issue(REPO, "Add /version", "Please.", author="alice"),
     ["issues.opened"]),
    ("label-issue", lambda s: (s.open_issue(REPO, "t"), s.add_label(REPO, 1, "agent-task", actor="alice")),
     ["issues.opened", "issues.labeled"]),
    ("label-twice-announces-once", lambda s: (s.open_issue(REPO, "t"), s.add_label(REPO, 1, "x"),
                                              s.add_label(REPO, 1, "x")),
     ["issues.opened", "issues.labeled"]),
    ("unlabel", lambda s: (s.open_issue(REPO, "t"), s.add_label(REPO, 1, "x"), s.remove_label(REPO, 1, "x")),
     ["issues.opened", "issues.labeled", "issues.unlabeled"]),
    ("assign", lambda s: (s.open_issue(REPO, "t"), s.assign(REPO, 1, "bob", actor="alice")),
     ["issues.opened", "issues.assigned"]),
    ("close-issue", lambda s: (s.open_issue(REPO, "t"), s.close_issue(REPO, 1, actor="alice")),
     ["issues.opened", "issues.closed"]),
    ("comment", lambda s: (s.open_issue(REPO, "t"), s.comment(REPO, 1, "/hold", author="bob")),
     ["issues.opened", "issue_comment.created"]),
    ("open-pull", lambda s: s.open_pull(REPO, "feature", "Add x", author="bob", files={"x.py": "x = 1\n"}),
     ["push", "pull_request.opened"]),
    ("push-to-pull", lambda s: (_pull(s), s.push_commit(REPO, "feature", {"y.py": "y = 2\n"}, author="bob")),
     ["push", "pull_request.opened", "push", "pull_request.synchronize"]),
    ("label-pull", lambda s: (_pull(s), s.add_label(REPO, 1, "needs-review", actor="alice")),
     ["push", "pull_request.opened", "pull_request.labeled"]),
    ("request-review", lambda s: (_pull(s), s.request_review(REPO, 1, "alice", actor="bob")),
     ["push", "pull_request.opened", "pull_request.review_requested"]),
    ("review", lambda s: (_pull(s), s.review(REPO, 1, "alice", "APPROVED")),
     ["push", "pull_request.opened", "pull_request_review.submitted"]),
    ("complete-ci", lambda s: (_pull(s), s.complete_ci(REPO, "feature", "failure")),
     ["push", "pull_request.opened", "check_run.completed", "check_suite.completed"]),
    ("merge-closes-the-issue", lambda s: (s.open_issue(REPO, "t"), _pull(s), s.merge(REPO, 2, actor="alice")),
     ["issues.opened", "push", "pull_request.opened", "pull_request.closed", "push", "issues.closed"]),
    ("close-pull-unmerged", lambda s: (_pull(s), s.close_pull(REPO, 1, actor="bob")),
     ["push", "pull_request.opened", "pull_request.closed"]),
]


@pytest.mark.parametrize(("action", "expected"), [(a, e) for _, a, e in ACTIONS],
                         ids=[name for name, _, _ in ACTIONS])
def test_a_persons_action_is_announced_as_github_would(github, receiver, action, expected):
    hook, _ = receiver
    assert hook.events() == ["installation.created"]
    hook.clear()
    action(github)
    settle(github)
    assert hook.events() == expected
    check_deliveries(hook, github)


def test_the_seeded_installation_names_both_repositories_and_valid_policies(github, receiver):
    hook, _ = receiver
    [(headers, body)] = hook.received
    payload = json.loads(body)
    assert headers["x-github-event"] == "installation" and payload["action"] == "created"
    assert [r["full_name"] for r in payload["repositories"]] == ["octo/gadgets", "octo/widgets"]
    assert payload["installation"]["account"]["login"] == "octo"
    assert payload["sender"]["login"] == "alice"
    check_deliveries(hook, github)
    for repo, deploys in ((REPO, True), ("octo/gadgets", False)):
        load = parse_policy(github.files(repo)[POLICY_PATH])
        assert load.source == "file" and load.problems == ()
        assert load.policy.agent_enabled("deploy") is deploys
    widgets = parse_policy(github.files(REPO)[POLICY_PATH]).policy
    assert widgets.deploy_service == "widgets" and [s.path for s in widgets.smoke] == ["/health"]
    assert widgets.approval_for("deploy").count == 1
    assert ".github/CODEOWNERS" in github.files("octo/gadgets")


def test_payloads_carry_the_sandbox_state(github, receiver):
    hook, _ = receiver
    hook.clear()
    issue = github.open_issue(REPO, "Add /version", "Please add it.", author="alice")
    number = _pull(github)
    github.review(REPO, number, "alice", "APPROVED")
    merge_sha = github.merge(REPO, number, actor="alice")
    settle(github)
    opened, _, pull_opened, review, closed, push, issue_closed = hook.payloads()
    assert opened["issue"]["number"] == issue["number"] == 1
    assert opened["issue"]["title"] == "Add /version" and opened["sender"]["login"] == "alice"
    assert opened["repository"]["full_name"] == REPO and opened["organization"]["login"] == "octo"
    head = pull_opened["pull_request"]["head"]
    assert head["ref"] == "feature" and head["sha"] == review["review"]["commit_id"]
    assert review["review"]["state"] == "approved"
    assert closed["pull_request"]["merged"] is True
    assert closed["pull_request"]["merge_commit_sha"] == merge_sha
    assert closed["pull_request"]["merged_by"]["login"] == "alice"
    assert push["ref"] == "refs/heads/main" and push["after"] == merge_sha
    assert push["head_commit"]["id"] == merge_sha
    assert issue_closed["issue"]["state"] == "closed"
    assert github.files(REPO)["app/version.py"] == "VERSION = '1.1'\n"  # the change landed on main
    headers, body = hook.received[0]
    event = envelope({"X-GitHub-Event": headers["x-github-event"],
                      "X-GitHub-Delivery": headers["x-github-delivery"],
                      "X-GitHub-Hook-ID": headers["x-github-hook-id"]}, json.loads(body), body.decode(), 0)
    assert (event.event, event.action, event.repository) == ("issues", "opened", REPO)
    assert (event.installation_id, event.sender, event.hook_id) == (77, "alice", 1)


def test_a_comment_the_app_makes_is_delivered_as_the_apps_and_is_ignored(github, receiver, key):
    hook, _ = receiver
    github.open_issue(REPO, "t", author="alice")
    settle(github)
    hook.clear()
    client = app_for(github, key).client_for("orchestrator", 77, [REPO])
    client.request("POST", f"/repos/{REPO}/issues/1/comments", json_body={"body": "/approve 12"})
    settle(github)
    [payload] = hook.payloads()
    assert payload["action"] == "created"
    assert payload["sender"] == {**payload["sender"], "login": "agent-ops[bot]", "type": "Bot"}
    assert payload["comment"]["performed_via_github_app"]["id"] == 424242
    assert ignore_reason(payload["sender"], payload["comment"], 424242, "agent-ops[bot]")
    check_deliveries(hook, github)
    hook.clear()
    comment_id = payload["comment"]["id"]
    app_for(github, key).client_for("orchestrator", 77, [REPO]).request(
        "PATCH", f"/repos/{REPO}/issues/comments/{comment_id}", json_body={"body": "Approved."})
    settle(github)
    [edited] = hook.payloads()
    assert edited["action"] == "edited" and edited["changes"] == {"body": {"from": "/approve 12"}}
    assert edited["comment"]["body"] == "Approved."
    check_deliveries(hook, github)


def test_labels_and_check_runs_the_app_writes_are_announced(github, receiver, key):
    hook, _ = receiver
    github.open_issue(REPO, "t")
    settle(github)
    hook.clear()
    app = app_for(github, key)
    sha = github.state()["repos"][REPO]["head_sha"]
    orchestrator = app.client_for("orchestrator", 77, [REPO])
    orchestrator.request("POST", f"/repos/{REPO}/issues/1/labels",
                         json_body={"labels": ["agent:in-progress"]})
    run = app.client_for("orchestrator", 77, [REPO]).request(
        "POST", f"/repos/{REPO}/check-runs", json_body={"name": "agent-ops/approval", "head_sha": sha,
                                                        "status": "in_progress"})
    app.client_for("orchestrator", 77, [REPO]).request(
        "PATCH", f"/repos/{REPO}/check-runs/{run['id']}", json_body={"conclusion": "success"})
    settle(github)
    assert hook.events() == ["issues.labeled", "check_run.created", "check_run.completed",
                             "check_suite.completed"]
    suite = hook.payloads()[-1]["check_suite"]
    assert suite["conclusion"] == "success" and suite["app"]["id"] == 424242 and suite["head_sha"] == sha
    check_deliveries(hook, github)


def test_every_emitted_event_has_its_schema_vendored():
    assert set(EMITTED) <= set(_definitions())
    assert "@octokit/webhooks-schemas@7.6.1" in json.loads(SCHEMAS.read_text())["$comment"]


def test_deliveries_are_sent_off_the_request_and_in_order(start):
    slow = threading.Event()
    order: list[str] = []

    def hook(environ, start_response):
        slow.wait(5)
        order.append(json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))["issue"]["title"])
        start_response("202 Accepted", [])
        return [b""]

    with serve(hook) as url:
        sandbox = start(url)
        sandbox.add_repo(REPO)
        began = time.monotonic()
        for title in ("one", "two", "three"):
            sandbox.open_issue(REPO, title)
        assert time.monotonic() - began < 1.0  # the receiver holds every delivery; the actions did not wait
        slow.set()
        settle(sandbox)
    assert order == ["one", "two", "three"]


# ---- deliveries and redelivery ------------------------------------------------------------

def test_a_failed_delivery_is_listed_and_redelivered_with_the_same_guid(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    hook.statuses = [503]
    github.open_issue(REPO, "while down")
    settle(github)
    client = app_for(github, key).app_client()
    newest = client.request("GET", "/app/hook/deliveries")[0]
    assert (newest["event"], newest["action"], newest["status_code"], newest["redelivery"]) == (
        "issues", "opened", 503, False)
    assert newest["repository_id"] == github.state()["repos"][REPO]["id"] and newest["installation_id"] == 77
    failed = client.request("GET", "/app/hook/deliveries", params={"status": "failure"})
    assert [d["id"] for d in failed] == [newest["id"]]
    detail = client.request("GET", f"/app/hook/deliveries/{newest['id']}")
    assert detail["request"]["headers"]["X-GitHub-Delivery"] == newest["guid"]
    assert detail["request"]["payload"]["issue"]["title"] == "while down"
    assert detail["response"]["payload"] == "try again later"

    assert client.request("POST", f"/app/hook/deliveries/{newest['id']}/attempts") == {}
    settle(github)
    first, again = hook.received
    assert first[1] == again[1] and again[0]["x-github-delivery"] == newest["guid"]
    assert verify_signature(again[1], again[0]["x-hub-signature-256"], [SECRET.encode()])
    redelivered = client.request("GET", "/app/hook/deliveries")[0]
    assert (redelivered["guid"], redelivered["redelivery"], redelivered["status_code"]) == (
        newest["guid"], True, 202)


def test_a_delivery_nobody_answers_is_recorded_as_failed(start):
    sandbox = start("http://127.0.0.1:9/")  # nothing listens there
    sandbox.add_repo(REPO)
    sandbox.open_issue(REPO, "t")
    settle(sandbox)
    [attempt] = sandbox.delivery_summaries(failed=True)
    assert (attempt["status_code"], attempt["status"]) == (0, "failed to connect")


def test_the_projects_sweep_redelivers_what_failed(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    hook.statuses = [500, 503]
    github.open_issue(REPO, "lost one")
    github.open_issue(REPO, "lost two")
    github.open_issue(REPO, "delivered")
    settle(github)
    lost = [h["x-github-delivery"] for h, _ in hook.received[:2]]
    client = app_for(github, key).app_client()
    report = redelivery.sweep(client, published=lambda guid: False, now=datetime.now(timezone.utc))
    settle(github)
    assert sorted(report.redelivered) == sorted(lost) and report.failed == {}
    assert sorted(h["x-github-delivery"] for h, _ in hook.received[3:]) == sorted(lost)
    installation = github.delivery_summaries()[-1]["guid"]
    delivered = hook.received[2][0]["x-github-delivery"]
    assert report.skipped == {installation: "delivered", delivered: "delivered"}


def test_the_delivery_list_pages_with_a_cursor(github, key):
    for number in range(5):
        github.open_issue(REPO, f"issue {number}")
    settle(github)
    client = app_for(github, key).app_client()
    every = list(client.paginate("/app/hook/deliveries", params={"per_page": 2}))
    ids = [d["id"] for d in every]
    assert len(ids) == 6 and ids == sorted(ids, reverse=True)  # the installation and five issues
    assert github.requests.count(("GET", "/app/hook/deliveries", 200)) == 3


# ---- faults ---------------------------------------------------------------------------------

def installation_client(sandbox: GitHubSandbox, key, sleep: Callable[[float], None],
                        max_retries: int = 3) -> RestClient:
    token = app_for(sandbox, key).tokens().token(77, "orchestrator", [REPO]).token
    return RestClient(sandbox.base_url, token=lambda: token, sleep=sleep, max_retries=max_retries)


def test_a_502_once_then_the_retried_request_succeeds(github, key):
    waits: list[float] = []
    client = installation_client(github, key, waits.append)
    github.inject_fault("server_error", count=1, path_prefix=f"/repos/{REPO}")
    assert client.request("GET", f"/repos/{REPO}")["full_name"] == REPO
    assert [status for _, path, status in github.requests if path == f"/repos/{REPO}"] == [502, 200]
    assert len(waits) == 1  # one backoff
    once_more = installation_client(github, key, waits.append, max_retries=1)
    github.inject_fault("server_error", count=5)
    with pytest.raises(ServerError):
        once_more.request("GET", f"/repos/{REPO}")
    assert github.state()["faults"][0]["count"] == 3
    assert github.clear_faults() == 1


def test_a_secondary_rate_limit_is_waited_out_as_its_retry_after_says(github, key):
    waits: list[float] = []
    client = installation_client(github, key, waits.append)
    github.inject_fault("secondary_rate_limit", path_prefix="/repos/")
    assert client.request("GET", f"/repos/{REPO}")["full_name"] == REPO
    assert [status for _, path, status in github.requests if path == f"/repos/{REPO}"] == [403, 200]
    assert len(waits) == 1 and 0.9 < waits[0] <= 1.0


def test_a_slow_fault_delays_the_answer(github, key):
    github.inject_fault("slow", count=1, delay_ms=300)
    client = app_for(github, key).app_client()
    began = time.monotonic()
    client.request("GET", "/app")
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    client.request("GET", "/app")
    assert time.monotonic() - began < 0.3


def test_a_fault_answer_is_githubs():
    sandbox = GitHubSandbox(generate_app_key()[0])
    sandbox.inject_fault("secondary_rate_limit")
    answers: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(sandbox.wsgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/app", "wsgi.input": None},
                                 lambda status, headers: answers.append((status, headers))))
    [(status, headers)] = answers
    assert status.startswith("403") and ("Retry-After", "1") in headers
    assert json.loads(body)["message"].startswith("You have exceeded a secondary rate limit")
    with pytest.raises(ValueError):
        sandbox.inject_fault("meteor")


# ---- persistence ----------------------------------------------------------------------------

def test_a_restarted_sandbox_keeps_its_repos_issues_and_deliveries(key, start, receiver, tmp_path):
    hook, url = receiver
    state_file = str(tmp_path / "github.json")
    first = start(url, state_file=state_file)
    seed.demo(first)
    first.open_issue(REPO, "Remember me", author="alice")
    first.comment(REPO, 1, "/hold", author="bob")
    pull = _pull(first)
    settle(first)
    token = app_for(first, key).tokens().token(77, "orchestrator", [REPO]).token
    first.close()

    second = start(url, state_file=state_file)
    assert second.state()["counts"] == first.state()["counts"]
    assert second.issue(REPO, 1)["title"] == "Remember me"
    assert second.files(REPO, "feature") == first.files(REPO, "feature")
    assert [d["guid"] for d in second.delivery_summaries()] == [d["guid"] for d in first.delivery_summaries()]
    client = RestClient(second.base_url, token=lambda: token)  # a token issued before the restart
    assert client.request("GET", f"/repos/{REPO}/issues/1")["title"] == "Remember me"
    assert second.open_issue(REPO, "Next")["number"] == pull + 1
    assert len(second.merge(REPO, pull, actor="alice")) == 40
    settle(second)
    second.close()
    with open(f"{state_file}.deliveries", "a") as log:
        log.write('{"id": 99, "gu')  # the line a crash left half written
    third = start(url, state_file=state_file)
    assert third.delivery_summaries() == second.delivery_summaries()
    assert third.issue(REPO, pull)["merged"] is True


def test_a_restarted_sandbox_keeps_its_ci_deployments_alerts_and_protection(key, start, receiver, tmp_path):
    _, url = receiver
    state_file = str(tmp_path / "github.json")
    first = start(url, state_file=state_file)
    seed.demo(first)  # a green ci run on main, a Dependabot alert, protection on main
    first.set_status(REPO, "main", "failure", context="lint")
    settle(first)
    first.close()

    second = start(url, state_file=state_file)
    app = app_for(second, key)
    scout, tester = app.client_for("scout", 77, [REPO]), app.client_for("test", 77, [REPO])
    runs = tester.request("GET", f"/repos/{REPO}/actions/runs")["workflow_runs"]
    assert [(r["name"], r["conclusion"]) for r in runs] == [("ci", "success")]
    assert [a["security_vulnerability"]["severity"] for a in
            scout.request("GET", f"/repos/{REPO}/dependabot/alerts")] == ["medium"]
    protection = scout.request("GET", f"/repos/{REPO}/branches/main/protection")
    assert protection["required_status_checks"]["contexts"] == ["ci"]
    combined = tester.request("GET", f"/repos/{REPO}/commits/main/status")
    assert [(s["context"], s["state"]) for s in combined["statuses"]] == [("lint", "failure")]
    assert second.errors == []


# ---- the control API, its client and the CLI --------------------------------------------------

def test_the_control_api_and_its_client_drive_the_sandbox(github, receiver):
    hook, _ = receiver
    control = SandboxControl(github.base_url)
    issue = control.open_issue(REPO, "From the client", author="alice")
    assert control.add_label(REPO, issue["number"], "agent-task", actor="alice") == ["agent-task"]
    control.comment(REPO, issue["number"], "/hold", author="bob")
    pull = control.open_pull(REPO, "client-branch", "Client PR", author="bob", files={"c.txt": "c\n"})
    sha = control.push_commit(REPO, "client-branch", {"d.txt": "d\n"}, author="bob")
    assert control.complete_ci(REPO, sha)["conclusion"] == "success"
    assert control.review(REPO, pull["number"], "alice")["state"] == "APPROVED"
    assert len(control.merge(REPO, pull["number"], actor="alice")) == 40
    assert control.wait_for_deliveries()
    state = control.state()
    assert state["counts"]["issues"] == 1 and state["counts"]["pulls"] == 1
    assert state["counts"]["deliveries"] == len(hook.received) == len(control.deliveries())
    assert [c["body"] for c in state["comments"]] == ["/hold"]
    assert [r["name"] for r in state["check_runs"]] == ["ci"]
    newest = control.deliveries()[0]
    assert control.delivery(newest["id"])["request"]["headers"]["X-GitHub-Event"] == newest["event"]
    assert control.redeliver(newest["id"]) == newest["guid"]
    assert control.inject_fault("slow", delay_ms=10)["kind"] == "slow"
    assert control.clear_faults() == 1
    with pytest.raises(SandboxError) as missing:
        control.open_issue("octo/nowhere", "t")
    assert missing.value.status == 404
    with pytest.raises(SandboxError) as refused:
        control.merge(REPO, pull["number"])  # merged already
    assert refused.value.status == 422
    with pytest.raises(SandboxError) as bad:
        control._call("POST", "actions/open_issue", {"repo": REPO})
    assert bad.value.status == 400 and "title" in str(bad.value)
    assert control.set_webhook_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/"
    check_deliveries(hook, github)


def run_cli(argv: list[str]) -> int:
    root = argparse.ArgumentParser(prog="agentops")
    sandbox_cli.register(root.add_subparsers(dest="verb", required=True))
    args = root.parse_args(argv)
    return args.run(args)


def test_the_cli_verbs_act_on_a_running_sandbox(github, receiver, capsys):
    hook, _ = receiver
    url = ["--url", github.base_url]
    verbs = [
        ["issue", "open", REPO, "From the CLI", "--author", "alice"],
        ["issue", "label", REPO, "1", "agent-task", "--actor", "alice"],
        ["issue", "comment", REPO, "1", "/hold", "--author", "bob"],
        ["pr", "open", REPO, "cli", "CLI PR", "--author", "bob", "--file", "cli.txt=hello\\n"],
        ["pr", "push", REPO, "cli", "--file", "more.txt=more", "--author", "bob"],
        ["ci", "complete", REPO, "cli", "--conclusion", "success"],
        ["pr", "review", REPO, "2", "alice"],
        ["pr", "merge", REPO, "2", "--actor", "alice"],
        ["fault", "inject", "slow", "--delay-ms", "5"],
        ["fault", "clear"],
        ["state"],
    ]
    for verb in verbs:
        assert run_cli(["sandbox", "github", *verb, *url]) == 0, verb
    settle(github)
    assert github.files(REPO)["cli.txt"] == "hello\n"
    hook.statuses = [503]
    github.open_issue(REPO, "lost")
    settle(github)
    capsys.readouterr()
    assert run_cli(["sandbox", "github", "deliveries", "--failed", *url]) == 0
    listing = capsys.readouterr().out
    assert "issues.opened" in listing and "503" in listing
    failed_id = github.delivery_summaries(failed=True)[0]["id"]
    assert run_cli(["sandbox", "github", "redeliver", str(failed_id), *url]) == 0
    assert run_cli(["sandbox", "github", "redeliver", "999999", *url]) == 1
    out = capsys.readouterr()
    assert "no delivery 999999" in out.err
    assert run_cli(["sandbox", "github", "state", "--json", *url]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["pulls"] == 1


def test_every_cli_verb_has_help(capsys):
    for verb in (["issue", "open"], ["issue", "label"], ["issue", "comment"], ["pr", "open"],
                 ["pr", "review"], ["pr", "merge"], ["pr", "push"], ["ci", "complete"], ["deliveries"],
                 ["redeliver"], ["fault", "inject"], ["fault", "clear"], ["state"], ["status", "set"],
                 ["workflow", "run"], ["workflow", "complete"], ["workflow", "script-rerun"],
                 ["alert", "dependabot"], ["alert", "code-scanning"], ["branch", "protect"],
                 ["branch", "rule"], ["rate-limit"]):
        with pytest.raises(SystemExit) as done:
            run_cli(["sandbox", "github", *verb, "--help"])
        assert done.value.code == 0
        assert "--url" in capsys.readouterr().out


# ---- the runner -------------------------------------------------------------------------------

def test_the_runner_writes_the_key_seeds_and_serves_on_loopback(tmp_path, receiver):
    hook, url = receiver
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    key_file = tmp_path / "key.pem"
    command = [sys.executable, "-m", "sandbox.github", "--port", "0", "--webhook-url", url,
               "--webhook-secret-file", str(secret_file), "--private-key-out", str(key_file),
               "--app-id", "424242", "--state-file", str(tmp_path / "state.json"), "--seed", "demo"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        first = process.stdout.readline().strip()
        assert first.startswith("github sandbox: http://127.0.0.1:"), first
        assert process.stdout.readline().strip() == "ready"
        base = first.removeprefix("github sandbox: ")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        pem = key_file.read_text()
        app = GitHubApp(base, "424242", lambda: pem)
        assert app.installation_for(REPO) == 77
        assert SandboxControl(base).wait_for_deliveries()
        [(headers, body)] = hook.received
        assert headers["x-github-event"] == "installation"
        assert verify_signature(body, headers["x-hub-signature-256"], [SECRET.encode()])
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


# ---- commit statuses, workflow runs, deployments, alerts, branch protection --------------------

def unpaced(client: RestClient) -> RestClient:
    """The client without its one-second spacing of writes, which these tests do not exercise."""
    client._write_interval = 0.0
    return client


def _forbidden(client: RestClient, method: str, path: str, **options: Any) -> None:
    with pytest.raises(Exception) as refused:
        client.request(method, path, **options)
    assert getattr(refused.value, "status", None) == 403, refused.value


def test_commit_statuses_are_reported_read_and_announced(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    sha = github.state()["repos"][REPO]["head_sha"]
    github.set_status(REPO, sha, "pending", context="ci")
    github.set_status(REPO, sha, "success", context="ci", description="green")
    github.set_status(REPO, "main", "failure", context="lint")
    settle(github)
    assert hook.events() == ["status", "status", "status"]
    assert [p["state"] for p in hook.payloads()] == ["pending", "success", "failure"]
    assert hook.payloads()[0]["branches"][0]["name"] == "main" and hook.payloads()[0]["sha"] == sha
    check_deliveries(hook, github)
    test = app_for(github, key).client_for("test", 77, [REPO])
    listed = test.request("GET", f"/repos/{REPO}/commits/main/statuses")
    assert [s["state"] for s in listed] == ["failure", "success", "pending"]
    combined = test.request("GET", f"/repos/{REPO}/commits/{sha}/status")
    assert (combined["state"], combined["total_count"], combined["sha"]) == ("failure", 2, sha)
    _forbidden(test, "POST", f"/repos/{REPO}/statuses/{sha}", json_body={"state": "success"})
    _forbidden(app_for(github, key).client_for("orchestrator", 77, [REPO]), "GET",
               f"/repos/{REPO}/commits/{sha}/status")


def test_a_workflow_run_is_announced_listed_paged_and_its_artifact_downloads(github, receiver, key):
    import requests

    hook, _ = receiver
    hook.clear()
    run_id = github.run_workflow(REPO, "ci", "main", "main", conclusion="failure",
                                 artifacts={"report": b"PK\x05\x06" + b"\0" * 18})
    settle(github)
    assert hook.events() == ["workflow_run.requested", "workflow_run.in_progress", "check_run.completed",
                             "check_suite.completed", "workflow_run.completed"]
    assert hook.payloads()[-1]["workflow_run"]["conclusion"] == "failure"
    assert hook.payloads()[3]["check_suite"]["conclusion"] == "failure"
    check_deliveries(hook, github)
    for _ in range(4):
        github.run_workflow(REPO, "nightly", "main", "main", event="schedule")
    test = app_for(github, key).client_for("test", 77, [REPO])
    every = [run for page in test.paginate(f"/repos/{REPO}/actions/runs", params={"per_page": 2})
             for run in page["workflow_runs"]]
    assert len(every) == 6  # the seeded run, the failed one and four nightly ones
    assert github.requests.count(("GET", f"/repos/{REPO}/actions/runs", 200)) == 3
    nightly = test.request("GET", f"/repos/{REPO}/actions/runs", params={"event": "schedule"})
    assert nightly["total_count"] == 4 and [r["run_number"] for r in nightly["workflow_runs"]] == [4, 3, 2, 1]
    failed = test.request("GET", f"/repos/{REPO}/actions/runs",
                          params={"status": "failure", "branch": "main", "created": ">=2000-01-01"})
    assert [r["id"] for r in failed["workflow_runs"]] == [run_id]
    assert test.request("GET", f"/repos/{REPO}/actions/runs", params={"created": "<2000-01-01"})[
        "total_count"] == 0
    run = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}")
    assert (run["status"], run["conclusion"], run["run_attempt"], run["name"]) == (
        "completed", "failure", 1, "ci")
    jobs = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/jobs")
    assert [j["conclusion"] for j in jobs["jobs"]] == ["failure"]
    [artifact] = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/artifacts")["artifacts"]
    assert artifact["name"] == "report" and artifact["size_in_bytes"] == 22
    token = app_for(github, key).tokens().token(77, "test", [REPO]).token
    url = f"{github.base_url}/repos/{REPO}/actions/artifacts/{artifact['id']}/zip"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "test"}
    redirect = requests.get(url, headers=headers, allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    download = requests.get(redirect.headers["Location"], timeout=10)
    assert download.content == b"PK\x05\x06" + b"\0" * 18
    assert download.headers["Content-Type"] == "application/zip"
    _forbidden(app_for(github, key).client_for("orchestrator", 77, [REPO]), "GET",
               f"/repos/{REPO}/actions/runs")


def test_a_rerun_of_a_failed_run_is_attempt_two_with_the_scripted_conclusion(github, receiver, key):
    hook, _ = receiver
    run_id = github.run_workflow(REPO, "ci", "main", "main", conclusion="failure")
    github.script_rerun(REPO, run_id, "success")
    settle(github)
    hook.clear()
    test = app_for(github, key).client_for("test", 77, [REPO])
    scout = app_for(github, key).client_for("scout", 77, [REPO])  # actions read: no re-runs
    _forbidden(scout, "POST", f"/repos/{REPO}/actions/runs/{run_id}/rerun-failed-jobs")
    code = unpaced(app_for(github, key).client_for("code", 77, [REPO]))
    assert code.request("POST", f"/repos/{REPO}/actions/runs/{run_id}/rerun-failed-jobs") == {}
    settle(github)
    assert hook.events() == ["workflow_run.requested", "workflow_run.in_progress", "check_run.completed",
                             "check_suite.completed", "workflow_run.completed"]
    final = hook.payloads()[-1]["workflow_run"]
    assert (final["id"], final["run_attempt"], final["conclusion"]) == (run_id, 2, "success")
    check_deliveries(hook, github)
    run = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}")
    assert (run["run_attempt"], run["conclusion"]) == (2, "success")
    assert run["previous_attempt_url"].endswith(f"/runs/{run_id}/attempts/1")
    every = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/jobs", params={"filter": "all"})
    assert [j["run_attempt"] for j in every["jobs"]] == [2, 1]
    assert test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/jobs")["total_count"] == 1
    first = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/attempts/1")
    assert (first["id"], first["run_attempt"], first["conclusion"]) == (run_id, 1, "failure")
    latest = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/attempts/2")
    assert (latest["run_attempt"], latest["conclusion"]) == (2, "success")
    with pytest.raises(Exception) as no_such_attempt:
        test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/attempts/3")
    assert no_such_attempt.value.status == 404
    with pytest.raises(Exception) as nothing_failed:
        code.request("POST", f"/repos/{REPO}/actions/runs/{run_id}/rerun-failed-jobs")
    assert nothing_failed.value.status == 403
    assert code.request("POST", f"/repos/{REPO}/actions/runs/{run_id}/rerun") == {}  # not scripted: queued
    assert test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}")["status"] == "queued"
    assert github.complete_workflow_run(REPO, run_id, "success")["run_attempt"] == 3


def test_a_dispatch_records_its_inputs_and_queues_a_run(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    code = unpaced(app_for(github, key).client_for("code", 77, [REPO]))
    path = f"/repos/{REPO}/actions/workflows/implement.yml/dispatches"
    assert code.request("POST", path, json_body={"ref": "main", "inputs": {"issue": "12"}}) is None
    assert github.requests[-1] == ("POST", path, 204)
    [dispatch] = github.dispatches
    assert dispatch["inputs"] == {"issue": "12"} and dispatch["ref"] == "main"
    run = github.workflow_runs[dispatch["run_id"]]
    assert (run["status"], run["event"], run["name"], run["head_branch"]) == (
        "queued", "workflow_dispatch", "implement", "main")
    github.complete_workflow_run(REPO, run["id"], "success")
    settle(github)
    assert hook.events() == ["workflow_run.requested", "workflow_run.in_progress", "check_run.completed",
                             "check_suite.completed", "workflow_run.completed"]
    check_deliveries(hook, github)
    with pytest.raises(Exception) as no_ref:
        code.request("POST", path, json_body={"ref": "nowhere"})
    assert no_ref.value.status == 422
    _forbidden(app_for(github, key).client_for("scout", 77, [REPO]), "POST", path, json_body={"ref": "main"})


def test_deployments_and_their_statuses_with_auto_inactive(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    deploy = unpaced(app_for(github, key).client_for("deploy", 77, [REPO]))
    sha = github.state()["repos"][REPO]["head_sha"]
    ids = []
    for _ in range(2):
        created = deploy.request("POST", f"/repos/{REPO}/deployments", json_body={
            "ref": "main", "environment": "staging", "payload": {"service": "widgets"}, "auto_merge": False,
            "required_contexts": []})
        assert (created["sha"], created["environment"], created["payload"]) == (
            sha, "staging", {"service": "widgets"})
        ids.append(created["id"])
        deploy.request("POST", f"/repos/{REPO}/deployments/{created['id']}/statuses",
                       json_body={"state": "in_progress"})
        deploy.request("POST", f"/repos/{REPO}/deployments/{created['id']}/statuses",
                       json_body={"state": "success", "environment_url": "https://staging.example"})
    settle(github)
    assert hook.events() == ["deployment.created", "deployment_status.created", "deployment_status.created",
                             "deployment.created", "deployment_status.created", "deployment_status.created"]
    # GitHub's webhook schema knows no inactive deployment_status: auto_inactive is not announced.
    assert [p["deployment_status"]["state"] for p in hook.payloads()[-2:]] == ["in_progress", "success"]
    check_deliveries(hook, github)
    first = deploy.request("GET", f"/repos/{REPO}/deployments/{ids[0]}/statuses")
    assert [s["state"] for s in first] == ["inactive", "success", "in_progress"]
    assert [d["id"] for d in deploy.request("GET", f"/repos/{REPO}/deployments",
                                            params={"environment": "staging", "sha": sha})] == ids[::-1]
    assert deploy.request("GET", f"/repos/{REPO}/deployments", params={"ref": "other"}) == []
    assert deploy.request("GET", f"/repos/{REPO}/deployments/{ids[1]}")["ref"] == "main"
    github.set_status(REPO, sha, "failure", context="ci")
    with pytest.raises(Exception) as conflict:
        deploy.request("POST", f"/repos/{REPO}/deployments", json_body={"ref": "main", "auto_merge": False})
    assert conflict.value.status == 409
    _forbidden(app_for(github, key).client_for("test", 77, [REPO]), "GET", f"/repos/{REPO}/deployments")


def test_the_app_opens_edits_labels_closes_and_reopens_an_issue(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    monitor = agent(github, key, "monitor")
    created = monitor.request("POST", f"/repos/{REPO}/issues", json_body={
        "title": "widgets is down", "body": "3 failed probes", "labels": ["incident", {"name": "sev2"}]})
    number = created["number"]
    assert (created["state"], created["state_reason"], created["user"]["login"]) == (
        "open", None, "agent-ops[bot]")
    assert [label["name"] for label in created["labels"]] == ["incident", "sev2"]
    edited = monitor.request("PATCH", f"/repos/{REPO}/issues/{number}",
                             json_body={"title": "widgets is down (12 min)", "body": "5 failed probes"})
    assert (edited["title"], edited["body"]) == ("widgets is down (12 min)", "5 failed probes")
    relabelled = monitor.request("PATCH", f"/repos/{REPO}/issues/{number}",
                                 json_body={"labels": ["incident"]})
    assert [label["name"] for label in relabelled["labels"]] == ["incident"]
    closed = monitor.request("PATCH", f"/repos/{REPO}/issues/{number}",
                             json_body={"state": "closed", "state_reason": "completed", "body": "recovered"})
    assert (closed["state"], closed["state_reason"], closed["body"]) == ("closed", "completed", "recovered")
    assert closed["closed_at"]
    again = monitor.request("PATCH", f"/repos/{REPO}/issues/{number}", json_body={"state": "closed"})
    assert again["state"] == "closed"  # closing a closed issue changes nothing
    reopened = monitor.request("PATCH", f"/repos/{REPO}/issues/{number}", json_body={"state": "open"})
    assert (reopened["state"], reopened["state_reason"], reopened["closed_at"]) == ("open", "reopened", None)
    not_planned = monitor.request("PATCH", f"/repos/{REPO}/issues/{number}",
                                  json_body={"state": "closed", "state_reason": "not_planned"})
    assert not_planned["state_reason"] == "not_planned"
    assert monitor.request("GET", f"/repos/{REPO}/issues/{number}")["state_reason"] == "not_planned"
    settle(github)
    assert hook.events() == ["issues.opened", "issues.labeled", "issues.labeled", "issues.edited",
                             "issues.unlabeled", "issues.edited", "issues.closed", "issues.reopened",
                             "issues.closed"]
    payloads = hook.payloads()
    assert payloads[3]["changes"] == {"title": {"from": "widgets is down"},
                                      "body": {"from": "3 failed probes"}}
    assert payloads[4]["label"]["name"] == "sev2"
    assert payloads[5]["changes"] == {"body": {"from": "5 failed probes"}}
    assert payloads[6]["issue"]["state_reason"] == "completed" and payloads[-1]["issue"]["state"] == "closed"
    assert all(p["sender"]["login"] == "agent-ops[bot]" for p in payloads)
    check_deliveries(hook, github)
    assert github.issue(REPO, number)["labels"] == ["incident"]


def test_issue_writes_github_refuses(github, key):
    monitor = agent(github, key, "monitor")
    blank = refused(lambda: monitor.request("POST", f"/repos/{REPO}/issues", json_body={"title": " "}))
    assert blank.status == 422 and "missing_field" in str(blank)
    assert refused(lambda: monitor.request("POST", f"/repos/{REPO}/issues",
                                           json_body={"title": "x" * 257})).status == 422
    assert refused(lambda: monitor.request("PATCH", f"/repos/{REPO}/issues/999",
                                           json_body={"state": "closed"})).status == 404
    _forbidden(agent(github, key, "test"), "POST", f"/repos/{REPO}/issues", json_body={"title": "t"})
    number = _pull(github)
    github.merge(REPO, number, actor="alice")
    assert refused(lambda: monitor.request("PATCH", f"/repos/{REPO}/issues/{number}",
                                           json_body={"state": "open"})).status == 422
    settle(github)


def test_the_executors_deployment_and_issue_actions_against_the_sandbox(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    client = agent(github, key, "deploy")
    audit = MemoryAudit()
    run = Executor(lambda: audit, lambda *_: client, actor="deploy").apply
    sha = github.state()["repos"][REPO]["head_sha"]
    github.set_status(REPO, sha, "failure", context="ci")  # checked by the pre-flight, not again by GitHub
    create = CreateDeployment(REPO, sha, "production", "widgets v-2", {"release_id": "r-2"}, key="dep")
    deployment = run(create, 77)
    assert (deployment["sha"], deployment["environment"], deployment["payload"]) == (
        sha, "production", {"release_id": "r-2"})
    assert (deployment["production_environment"], deployment["transient_environment"]) == (True, False)
    del audit.records["dep"]  # as if the answer had been lost: the same release's deployment is found
    assert run(create, 77)["id"] == deployment["id"] and len(github.deployments) == 1
    for state in ("queued", "in_progress", "failure"):
        status = run(CreateDeploymentStatus(REPO, deployment["id"], state, f"{state} " + "x" * 200,
                                            "https://widgets.example", "https://github.example/log",
                                            key=f"st-{state}"), 77)
        assert status["state"] == state and len(status["description"]) == 140
    issue = run(CreateIssue(REPO, "Rollback of widgets v-2", f"root cause: {sha}", ("incident",), key="is"),
                77)
    run(UpdateIssue(REPO, issue["number"], key="up", body="resolved", state="closed",
                    state_reason="completed"), 77)
    settle(github)
    assert hook.events() == ["status", "deployment.created", "deployment_status.created",
                             "deployment_status.created", "deployment_status.created", "issues.opened",
                             "issues.labeled", "issues.edited", "issues.closed"]
    check_deliveries(hook, github)
    statuses = client.request("GET", f"/repos/{REPO}/deployments/{deployment['id']}/statuses")
    assert [s["state"] for s in statuses] == ["failure", "in_progress", "queued"]
    assert all(record["outcome"] == "ok" for record in audit.records.values())


def test_alerts_and_branch_protection_are_read_by_the_scout(github, key):
    scout = app_for(github, key).client_for("scout", 77, [REPO])
    [seeded] = scout.request("GET", f"/repos/{REPO}/dependabot/alerts")
    assert (seeded["state"], seeded["security_advisory"]["severity"]) == ("open", "medium")
    assert seeded["dependency"]["package"]["name"] == "requests"
    for package in ("urllib3", "jinja2", "pyyaml"):
        github.add_dependabot_alert(REPO, package, "high")
    github.add_dependabot_alert(REPO, "flask", "low", state="fixed")
    high = list(scout.paginate(f"/repos/{REPO}/dependabot/alerts",
                               params={"severity": "high", "per_page": 2}))
    assert [a["dependency"]["package"]["name"] for a in high] == ["pyyaml", "jinja2", "urllib3"]
    assert len(scout.request("GET", f"/repos/{REPO}/dependabot/alerts", params={"state": "open"})) == 4
    github.add_code_scanning_alert(REPO, "py/sql-injection", "high")
    [scanned] = scout.request("GET", f"/repos/{REPO}/code-scanning/alerts", params={"state": "open"})
    assert scanned["rule"]["id"] == "py/sql-injection"
    assert scanned["rule"]["security_severity_level"] == "high"
    protection = scout.request("GET", f"/repos/{REPO}/branches/main/protection")
    assert protection["required_status_checks"]["contexts"] == ["ci"]
    with pytest.raises(Exception) as unprotected:
        scout.request("GET", "/repos/octo/gadgets/branches/main/protection")
    assert unprotected.value.status == 404
    seeded_run = scout.request("GET", f"/repos/{REPO}/actions/runs", params={"branch": "main"})
    assert [(r["name"], r["conclusion"]) for r in seeded_run["workflow_runs"]] == [("ci", "success")]
    test = app_for(github, key).client_for("test", 77, [REPO])
    for path in ("dependabot/alerts", "code-scanning/alerts", "branches/main/protection"):
        _forbidden(test, "GET", f"/repos/{REPO}/{path}")


def test_the_new_actions_through_the_control_api_and_the_cli(github, key, tmp_path):
    control = SandboxControl(github.base_url)
    url = ["--url", github.base_url]
    sha = github.state()["repos"][REPO]["head_sha"]
    assert control.set_status(REPO, sha, "success")["state"] == "success"
    run_id = control.run_workflow(REPO, "ci", "main", conclusion="failure", artifacts={"a": b"zip"})
    assert github.artifact_bytes(max(github._artifacts)) == b"zip"
    assert control.script_rerun(REPO, run_id, "success") == ["success"]
    assert isinstance(control.add_dependabot_alert(REPO, "six", "critical"), int)
    assert isinstance(control.add_code_scanning_alert(REPO, "py/xss", "warning"), int)
    assert control.protect_branch("octo/gadgets", "main", ["ci", "lint"]) == {"main": ["ci", "lint"]}
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"zip")
    for verb in (["status", "set", REPO, "main", "pending", "--context", "deploy"],
                 ["workflow", "run", REPO, "ci", "main", "--conclusion", "failure",
                  "--artifact", f"x={archive}"],
                 ["workflow", "script-rerun", REPO, str(run_id), "failure"],
                 ["alert", "dependabot", REPO, "idna", "moderate"],
                 ["alert", "code-scanning", REPO, "py/path-injection", "error"],
                 ["branch", "protect", REPO, "main", "--require", "ci"],
                 ["branch", "rule", "octo/gadgets", "release", "required_status_checks", "--require", "ci"],
                 ["rate-limit", "1200", "--reset-in", "600"]):
        assert run_cli(["sandbox", "github", *verb, *url]) == 0, verb
    assert [rule["type"] for rule in github.state()["branch_rules"]["octo/gadgets"]["release"]] == \
        ["required_status_checks"]
    assert github.rate_limit - github.rate_limit_used == 1200
    code = unpaced(app_for(github, key).client_for("code", 77, [REPO]))
    code.request("POST", f"/repos/{REPO}/actions/workflows/implement.yml/dispatches",
                 json_body={"ref": "main"})
    queued = github.dispatches[-1]["run_id"]
    assert run_cli(["sandbox", "github", "workflow", "complete", REPO, str(queued), *url]) == 0
    assert github.workflow_runs[queued]["conclusion"] == "success"
    assert run_cli(["sandbox", "github", "workflow", "complete", REPO, str(queued), *url]) == 1
    settle(github)


# ---- the git data API, pull requests, reviews and checks the agents drive ----------------------

def agent(sandbox: GitHubSandbox, key, name: str = "code") -> RestClient:
    return unpaced(app_for(sandbox, key).client_for(name, 77, [REPO]))


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def commit_files(client: RestClient, parent: str, files: dict[str, str | bytes | None],
                 message: str = "Change") -> str:
    """A commit of `files` (None deletes) on top of `parent`, made as an agent makes one: blobs, a
    tree on the parent's tree, then the commit."""
    tree = client.request("GET", f"/repos/{REPO}/git/commits/{parent}")["tree"]["sha"]
    entries: list[dict[str, Any]] = []
    for path, data in files.items():
        if data is None:
            entries.append({"path": path, "mode": "100644", "type": "blob", "sha": None})
            continue
        raw = data if isinstance(data, bytes) else data.encode()
        blob = client.request("POST", f"/repos/{REPO}/git/blobs",
                              json_body={"content": base64.b64encode(raw).decode(), "encoding": "base64"})
        assert blob["sha"] == git_blob_sha(raw)
        entries.append({"path": path, "mode": "100644", "type": "blob", "sha": blob["sha"]})
    made = client.request("POST", f"/repos/{REPO}/git/trees", json_body={"base_tree": tree, "tree": entries})
    return client.request("POST", f"/repos/{REPO}/git/commits",
                          json_body={"message": message, "tree": made["sha"], "parents": [parent]})["sha"]


def branch_with(client: RestClient, sandbox: GitHubSandbox, branch: str,
                files: dict[str, str | bytes | None]) -> str:
    """A branch off main holding one commit of `files`, made through the git data API."""
    sha = commit_files(client, sandbox.state()["repos"][REPO]["head_sha"], files, f"Change on {branch}")
    client.request("POST", f"/repos/{REPO}/git/refs", json_body={"ref": f"refs/heads/{branch}", "sha": sha})
    return sha


def open_api_pull(client: RestClient, branch: str, title: str = "Add a version endpoint") -> dict[str, Any]:
    return client.request("POST", f"/repos/{REPO}/pulls", json_body={
        "title": title, "head": branch, "base": "main", "body": "Closes #3", "draft": False,
        "maintainer_can_modify": True})


def refused(call: Callable[[], Any]) -> Any:
    with pytest.raises(Exception) as failure:
        call()
    return failure.value


def test_blob_tree_commit_and_a_fast_forward_ref_update_are_pushed_and_synchronize(github, receiver, key):
    hook, _ = receiver
    hook.clear()
    code = agent(github, key)
    main = code.request("GET", f"/repos/{REPO}/git/ref/heads/main")
    assert main["ref"] == "refs/heads/main"
    assert main["object"]["sha"] == github.state()["repos"][REPO]["head_sha"]
    first = branch_with(code, github, "agent/3-version", {"app/version.py": "VERSION = '1.1'\n"})
    pull = open_api_pull(code, "agent/3-version")
    second = commit_files(code, first, {"app/version.py": "VERSION = '1.2'\n", "README.md": None}, "Bump")
    moved = code.request("PATCH", f"/repos/{REPO}/git/refs/heads/agent/3-version",
                         json_body={"sha": second, "force": False})
    assert moved["object"]["sha"] == second
    settle(github)
    assert hook.events() == ["push", "pull_request.opened", "push", "pull_request.synchronize"]
    created, _, pushed, synchronized = hook.payloads()
    assert (created["ref"], created["created"], created["after"]) == (
        "refs/heads/agent/3-version", True, first)
    assert [c["id"] for c in created["commits"]] == [first]
    assert (pushed["before"], pushed["after"], pushed["forced"]) == (first, second, False)
    assert [c["id"] for c in pushed["commits"]] == [second] and pushed["head_commit"]["id"] == second
    assert pushed["commits"][0]["modified"] == ["app/version.py"] and pushed["commits"][0]["removed"] == [
        "README.md"]
    for payload in (created, pushed):
        assert payload["sender"]["login"] == "agent-ops[bot]" and payload["sender"]["type"] == "Bot"
        assert payload["pusher"]["name"] == "agent-ops[bot]"
    assert (synchronized["before"], synchronized["after"]) == (first, second)
    assert synchronized["pull_request"]["head"]["sha"] == second and synchronized["number"] == pull["number"]
    check_deliveries(hook, github)

    # the commits are the repository's: whole trees, read back through every door
    files = github.files(REPO, "agent/3-version")
    assert files["app/version.py"] == "VERSION = '1.2'\n" and "README.md" not in files
    assert files["app/main.py"] == github.files(REPO)["app/main.py"]
    content = code.request("GET", f"/repos/{REPO}/contents/app/version.py", params={"ref": "agent/3-version"})
    assert base64.b64decode(content["content"]) == b"VERSION = '1.2'\n"
    commit = code.request("GET", f"/repos/{REPO}/git/commits/{second}")
    assert [p["sha"] for p in commit["parents"]] == [first] and commit["message"] == "Bump"
    assert commit["author"]["name"] == "agent-ops[bot]" and commit["verification"]["verified"] is False
    tree = code.request("GET", f"/repos/{REPO}/git/trees/{commit['tree']['sha']}", params={"recursive": "1"})
    assert {e["path"] for e in tree["tree"] if e["type"] == "blob"} == set(files)
    assert {e["path"] for e in tree["tree"] if e["type"] == "tree"} == {".github", "app"}
    top = code.request("GET", f"/repos/{REPO}/git/trees/{commit['tree']['sha']}")["tree"]
    assert [e["path"] for e in top] == [".github", "app"]
    app_dir = next(e for e in top if e["path"] == "app")
    listed = code.request("GET", f"/repos/{REPO}/git/trees/{app_dir['sha']}")["tree"]
    assert [(e["path"], e["sha"]) for e in listed] == [
        ("main.py", git_blob_sha(files["app/main.py"].encode())),
        ("version.py", git_blob_sha(b"VERSION = '1.2'\n"))]
    blob = code.request("GET", f"/repos/{REPO}/git/blobs/{listed[1]['sha']}")
    assert base64.b64decode(blob["content"]) == b"VERSION = '1.2'\n" and blob["size"] == 16
    # the same tree is the same sha; the empty tree is git's
    again = code.request("POST", f"/repos/{REPO}/git/trees", json_body={"base_tree": commit["tree"]["sha"],
                                                                        "tree": []})
    assert again["sha"] == commit["tree"]["sha"]
    empty = code.request("POST", f"/repos/{REPO}/git/trees", json_body={"tree": []})
    assert empty["sha"] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    matching = code.request("GET", f"/repos/{REPO}/git/matching-refs/heads/agent/")
    assert [(r["ref"], r["object"]["sha"]) for r in matching] == [("refs/heads/agent/3-version", second)]
    state = github.state()
    assert [(w["ref"], w["action"], w["by"]) for w in state["ref_writes"]] == [
        ("refs/heads/agent/3-version", "created", "agent-ops[bot]"),
        ("refs/heads/agent/3-version", "updated", "agent-ops[bot]")]
    assert state["force_pushes"] == []
    [recorded] = state["pulls"]
    assert (recorded["head_ref"], recorded["head_sha"], recorded["user"], recorded["merged"]) == (
        "agent/3-version", second, "agent-ops[bot]", False)
    _forbidden(agent(github, key, "test"), "POST", f"/repos/{REPO}/git/blobs", json_body={"content": "x"})


def test_a_ref_update_that_is_not_a_fast_forward_is_refused_unless_forced(github, receiver, key):
    hook, _ = receiver
    code = agent(github, key)
    main = github.state()["repos"][REPO]["head_sha"]
    first = branch_with(code, github, "agent/4-x", {"x.py": "x = 1\n"})
    sibling = commit_files(code, main, {"y.py": "y = 1\n"}, "Elsewhere")
    settle(github)
    hook.clear()
    writes = len(github.ref_writes)
    path = f"/repos/{REPO}/git/refs/heads/agent/4-x"
    error = refused(lambda: code.request("PATCH", path, json_body={"sha": sibling, "force": False}))
    assert error.status == 422 and "Update is not a fast forward" in str(error)
    assert github.state()["repos"][REPO]["branches"]["agent/4-x"] == first
    assert len(github.ref_writes) == writes and github.force_pushes == []
    error = refused(lambda: code.request("POST", f"/repos/{REPO}/git/refs",
                                         json_body={"ref": "refs/heads/agent/4-x", "sha": sibling}))
    assert error.status == 422 and "Reference already exists" in str(error)
    error = refused(lambda: code.request("POST", f"/repos/{REPO}/git/refs",
                                         json_body={"ref": "heads/agent/5", "sha": sibling}))
    assert "Reference name must contain at least three slash-separated components." in str(error)
    error = refused(lambda: code.request("POST", f"/repos/{REPO}/git/refs",
                                         json_body={"ref": "refs/heads/agent/5", "sha": "f" * 40}))
    assert "Object does not exist" in str(error)
    assert refused(lambda: code.request("GET", f"/repos/{REPO}/git/ref/heads/nowhere")).status == 404
    tree = code.request("GET", f"/repos/{REPO}/git/commits/{first}")["tree"]["sha"]
    for body, message in (({"message": "m", "tree": "e" * 40, "parents": [first]}, "Tree SHA does not exist"),
                          ({"message": "m", "tree": tree, "parents": ["e" * 40]},
                           "Parent SHA does not exist or is not a commit object")):
        error = refused(lambda body=body: code.request("POST", f"/repos/{REPO}/git/commits", json_body=body))
        assert error.status == 422 and message in str(error)
    error = refused(lambda: code.request("POST", f"/repos/{REPO}/git/trees", json_body={
        "base_tree": tree, "tree": [{"path": "no/such.py", "mode": "100644", "type": "blob", "sha": None}]}))
    assert error.status == 422 and "GitRPC::BadObjectState" in str(error)
    error = refused(lambda: code.request("POST", f"/repos/{REPO}/git/trees", json_body={
        "tree": [{"path": "a.py", "mode": "100644", "type": "blob", "sha": "e" * 40, "content": "a"}]}))
    assert "Must supply either tree.sha or tree.content." in str(error)
    error = refused(lambda: code.request("PATCH", f"/repos/{REPO}/git/refs/heads/nowhere",
                                         json_body={"sha": sibling}))
    assert "Reference does not exist" in str(error)
    # main is protected and needs ci: a fast forward without it is refused too
    error = refused(lambda: code.request("PATCH", f"/repos/{REPO}/git/refs/heads/main",
                                         json_body={"sha": sibling}))
    assert error.status == 422 and 'Required status check "ci" is expected.' in str(error)
    assert github.state()["repos"][REPO]["head_sha"] == main
    settle(github)
    assert hook.events() == []

    forced = code.request("PATCH", path, json_body={"sha": sibling, "force": True})
    assert forced["object"]["sha"] == sibling
    settle(github)
    [push] = hook.payloads()
    assert (push["forced"], push["before"], push["after"]) == (True, first, sibling)
    [force_push] = github.state()["force_pushes"]
    assert (force_push["ref"], force_push["before"], force_push["after"], force_push["by"]) == (
        "refs/heads/agent/4-x", first, sibling, "agent-ops[bot]")
    check_deliveries(hook, github)


def test_deleting_a_branch_is_a_push_and_closes_its_pull_request(github, receiver, key):
    hook, _ = receiver
    code = agent(github, key)
    branch_with(code, github, "agent/6-gone", {"g.py": "g = 1\n"})
    number = open_api_pull(code, "agent/6-gone")["number"]
    settle(github)
    hook.clear()
    assert code.request("DELETE", f"/repos/{REPO}/git/refs/heads/agent/6-gone") is None
    settle(github)
    assert hook.events() == ["push", "pull_request.closed"]
    push, closed = hook.payloads()
    assert (push["deleted"], push["after"], push["head_commit"], push["commits"]) == (
        True, "0" * 40, None, [])
    assert closed["number"] == number and closed["pull_request"]["merged"] is False
    assert "agent/6-gone" not in github.state()["repos"][REPO]["branches"]
    check_deliveries(hook, github)
    assert "Reference does not exist" in str(refused(
        lambda: code.request("DELETE", f"/repos/{REPO}/git/refs/heads/agent/6-gone")))


def test_the_app_opens_a_pull_request_once_and_lists_and_updates_it(github, receiver, key):
    hook, _ = receiver
    code = agent(github, key)
    head = branch_with(code, github, "agent/3-version", {"app/version.py": "VERSION = '1.1'\n"})
    settle(github)
    hook.clear()
    pull = open_api_pull(code, "agent/3-version")
    assert (pull["user"]["login"], pull["user"]["type"], pull["head"]["sha"], pull["base"]["ref"]) == (
        "agent-ops[bot]", "Bot", head, "main")
    assert (pull["state"], pull["draft"], pull["body"], pull["commits"], pull["changed_files"]) == (
        "open", False, "Closes #3", 1, 1)
    error = refused(lambda: open_api_pull(code, "agent/3-version", "Again"))
    assert error.status == 422 and "A pull request already exists for octo:agent/3-version." in str(error)
    code.request("POST", f"/repos/{REPO}/git/refs",
                 json_body={"ref": "refs/heads/same", "sha": github.state()["repos"][REPO]["head_sha"]})
    assert "No commits between main and same" in str(refused(lambda: open_api_pull(code, "same")))
    assert refused(lambda: open_api_pull(code, "missing")).status == 422
    settle(github)
    assert hook.events() == ["pull_request.opened", "push"]
    opened = hook.payloads()[0]
    assert opened["sender"]["login"] == "agent-ops[bot]" and opened["pull_request"]["user"]["login"] == (
        "agent-ops[bot]")
    check_deliveries(hook, github)

    listed = code.request("GET", f"/repos/{REPO}/pulls",
                          params={"head": "octo:agent/3-version", "state": "open"})
    assert [p["number"] for p in listed] == [pull["number"]]
    assert code.request("GET", f"/repos/{REPO}/pulls", params={"head": "octo:other"}) == []
    assert code.request("GET", f"/repos/{REPO}/pulls", params={"base": "develop"}) == []
    assert code.request("GET", f"/repos/{REPO}/pulls", params={"state": "closed"}) == []
    hook.clear()
    updated = code.request("PATCH", f"/repos/{REPO}/pulls/{pull['number']}",
                           json_body={"title": "Add /version", "body": "Closes #3\n\nDone."})
    assert (updated["title"], updated["body"], updated["state"]) == (
        "Add /version", "Closes #3\n\nDone.", "open")
    closed = code.request("PATCH", f"/repos/{REPO}/pulls/{pull['number']}", json_body={"state": "closed"})
    assert closed["state"] == "closed" and closed["merged"] is False
    assert [p["number"] for p in code.request("GET", f"/repos/{REPO}/pulls", params={"state": "closed"})] == [
        pull["number"]]
    settle(github)
    assert hook.events() == ["pull_request.closed"]
    check_deliveries(hook, github)
    assert github.state()["pulls"][0]["body"] == "Closes #3\n\nDone."


def test_review_requests_go_to_collaborators_and_teams_never_the_author(github, receiver, key):
    hook, _ = receiver
    code = agent(github, key)
    branch_with(code, github, "agent/3-version", {"app/version.py": "VERSION = '1.1'\n"})
    number = open_api_pull(code, "agent/3-version")["number"]
    settle(github)
    hook.clear()
    path = f"/repos/{REPO}/pulls/{number}/requested_reviewers"
    error = refused(lambda: code.request("POST", path, json_body={"reviewers": ["alice", "agent-ops[bot]"]}))
    assert error.status == 422 and "Review cannot be requested from pull request author." in str(error)
    error = refused(lambda: code.request("POST", path, json_body={"reviewers": ["mallory"]}))
    assert "Reviews may only be requested from collaborators." in str(error)
    answer = code.request("POST", path,
                          json_body={"reviewers": ["alice", "bob"], "team_reviewers": ["maintainers"]})
    assert [u["login"] for u in answer["requested_reviewers"]] == ["alice", "bob"]
    assert [t["slug"] for t in answer["requested_teams"]] == ["maintainers"]
    code.request("POST", path, json_body={"reviewers": ["alice"]})  # a repeat changes nothing
    settle(github)
    assert hook.events() == ["pull_request.review_requested"] * 3
    alice, bob, team = hook.payloads()
    assert alice["requested_reviewer"]["login"] == "alice" and bob["requested_reviewer"]["login"] == "bob"
    assert team["requested_team"]["slug"] == "maintainers" and "requested_reviewer" not in team
    assert team["sender"]["login"] == "agent-ops[bot]"
    check_deliveries(hook, github)
    [pull] = github.state()["pulls"]
    assert (pull["requested_reviewers"], pull["requested_teams"]) == (["alice", "bob"], ["maintainers"])
    got = code.request("GET", f"/repos/{REPO}/pulls/{number}")
    assert [t["slug"] for t in got["requested_teams"]] == ["maintainers"]


def test_the_app_cannot_approve_its_own_pull_request_but_comments_and_edits_its_review(github, receiver, key):
    hook, _ = receiver
    code, qa = agent(github, key), agent(github, key, "qa")
    head = branch_with(code, github, "agent/3-version", {"app/version.py": "VERSION = '1.1'\n"})
    number = open_api_pull(code, "agent/3-version")["number"]
    settle(github)
    hook.clear()
    path = f"/repos/{REPO}/pulls/{number}/reviews"
    error = refused(lambda: qa.request("POST", path, json_body={"event": "APPROVE", "body": "LGTM"}))
    assert error.status == 422 and "Can not approve your own pull request" in str(error)
    error = refused(lambda: qa.request("POST", path, json_body={"event": "REQUEST_CHANGES", "body": "No"}))
    assert "Can not request changes on your own pull request" in str(error)
    assert refused(lambda: qa.request("POST", path, json_body={"event": "COMMENT"})).status == 422
    review = qa.request("POST", path, json_body={"commit_id": head, "body": "QA: 3 of 3 scenarios pass.",
                                                  "event": "COMMENT"})
    assert (review["state"], review["user"]["login"], review["user"]["type"], review["commit_id"]) == (
        "COMMENTED", "agent-ops[bot]", "Bot", head)
    edited = qa.request("PUT", f"{path}/{review['id']}", json_body={"body": "QA: 2 of 3 scenarios pass."})
    assert (edited["id"], edited["state"], edited["body"]) == (
        review["id"], "COMMENTED", "QA: 2 of 3 scenarios pass.")
    [listed] = qa.request("GET", path)
    assert (listed["id"], listed["body"], listed["user"]["login"]) == (
        review["id"], "QA: 2 of 3 scenarios pass.", "agent-ops[bot]")
    settle(github)
    assert hook.events() == ["pull_request_review.submitted"]
    [submitted] = hook.payloads()
    assert submitted["review"]["state"] == "commented" and submitted["sender"]["login"] == "agent-ops[bot]"
    check_deliveries(hook, github)
    [recorded] = github.state()["reviews"]
    assert (recorded["user"], recorded["state"], recorded["body"], recorded["commit_id"],
            recorded["number"]) == (
        "agent-ops[bot]", "COMMENTED", "QA: 2 of 3 scenarios pass.", head, number)
    # a person's pull request the App may approve
    human = github.open_pull(REPO, "feature", "A person's change", author="bob", files={"h.py": "h = 1\n"})
    approved = qa.request("POST", f"/repos/{REPO}/pulls/{human['number']}/reviews",
                          json_body={"event": "APPROVE"})
    assert approved["state"] == "APPROVED"
    assert refused(lambda: qa.request("PUT", f"/repos/{REPO}/pulls/{human['number']}/reviews/999",
                                      json_body={"body": "x"})).status == 404


README = "# widgets\n\nA small service the agents look after.\n"


def test_pull_request_files_and_compare_carry_githubs_patches(github, key):
    code = agent(github, key)
    main = github.state()["repos"][REPO]["head_sha"]
    app = github.files(REPO)["app/main.py"]
    head = branch_with(code, github, "agent/3-version", {
        "app/main.py": app + '\n\ndef version() -> str:\n    return "1.1"\n',
        "app/version.py": 'VERSION = "1.1"', "README.md": None,
        ".github/CODEOWNERS": None, "CODEOWNERS": github.files(REPO)[".github/CODEOWNERS"],
        "logo.png": b"\x89PNG\r\n\x1a\n\x00\xff"})
    number = open_api_pull(code, "agent/3-version")["number"]
    files = {f["filename"]: f for f in code.request("GET", f"/repos/{REPO}/pulls/{number}/files")}
    assert {name: f["status"] for name, f in files.items()} == {
        "README.md": "removed", "app/main.py": "modified", "app/version.py": "added", "CODEOWNERS": "renamed",
        "logo.png": "added"}
    assert files["app/main.py"]["patch"] == (
        '@@ -3,3 +3,7 @@\n \n def health() -> dict:\n     return {"status": "ok"}\n+\n+\n'
        '+def version() -> str:\n+    return "1.1"')
    main_py = files["app/main.py"]
    assert (main_py["additions"], main_py["deletions"], main_py["changes"]) == (4, 0, 4)
    assert files["app/version.py"]["patch"] == '@@ -0,0 +1 @@\n+VERSION = "1.1"\n\\ No newline at end of file'
    assert files["README.md"]["patch"] == (
        "@@ -1,3 +0,0 @@\n-# widgets\n-\n-A small service the agents look after.")
    assert (files["README.md"]["additions"], files["README.md"]["deletions"]) == (0, 3)
    assert files["CODEOWNERS"]["previous_filename"] == ".github/CODEOWNERS"
    assert "patch" not in files["CODEOWNERS"]
    assert "patch" not in files["logo.png"]  # binary
    assert files["app/version.py"]["sha"] == git_blob_sha(b'VERSION = "1.1"')
    assert files["app/version.py"]["contents_url"].endswith(f"/contents/app/version.py?ref={head}")
    png = code.request("GET", f"/repos/{REPO}/contents/logo.png", params={"ref": head})
    assert base64.b64decode(png["content"]) == b"\x89PNG\r\n\x1a\n\x00\xff"

    compared = code.request("GET", f"/repos/{REPO}/compare/main...agent%2F3-version")
    assert (compared["status"], compared["ahead_by"], compared["behind_by"], compared["total_commits"]) == (
        "ahead", 1, 0, 1)
    assert [c["sha"] for c in compared["commits"]] == [head]
    assert compared["commits"][0]["commit"]["author"]["name"] == "agent-ops[bot]"
    assert compared["merge_base_commit"]["sha"] == main == compared["base_commit"]["sha"]
    assert {f["filename"]: f.get("patch") for f in compared["files"]} == {
        name: f.get("patch") for name, f in files.items()}
    behind = code.request("GET", f"/repos/{REPO}/compare/agent%2F3-version...{main}")
    assert (behind["status"], behind["ahead_by"], behind["behind_by"], behind["files"]) == (
        "behind", 0, 1, [])
    assert code.request("GET", f"/repos/{REPO}/compare/main...main")["status"] == "identical"
    github.push_commit(REPO, "main", {"NEWS.md": "news\n"}, author="alice")
    diverged = code.request("GET", f"/repos/{REPO}/compare/main...agent/3-version")  # "/" may go raw too
    assert (diverged["status"], diverged["ahead_by"], diverged["behind_by"]) == ("diverged", 1, 1)
    assert "NEWS.md" not in {f["filename"] for f in diverged["files"]}  # three dots: from the merge base
    assert {f["filename"] for f in code.request("GET", f"/repos/{REPO}/pulls/{number}/files")} == set(files)
    assert refused(lambda: code.request("GET", f"/repos/{REPO}/compare/main...nowhere")).status == 404


def test_assignees_the_app_adds_skip_bots_and_strangers(github, receiver, key):
    hook, _ = receiver
    issue = github.open_issue(REPO, "Add /version", author="alice")
    settle(github)
    hook.clear()
    code = agent(github, key)
    answer = code.request("POST", f"/repos/{REPO}/issues/{issue['number']}/assignees",
                          json_body={"assignees": ["bob", "agent-ops[bot]", "mallory"]})
    assert [a["login"] for a in answer["assignees"]] == ["bob"]
    again = code.request("POST", f"/repos/{REPO}/issues/{issue['number']}/assignees",
                         json_body={"assignees": ["bob", "carol"]})
    assert [a["login"] for a in again["assignees"]] == ["bob", "carol"]
    settle(github)
    assert hook.events() == ["issues.assigned", "issues.assigned"]
    assert [p["assignee"]["login"] for p in hook.payloads()] == ["bob", "carol"]
    assert hook.payloads()[0]["sender"]["login"] == "agent-ops[bot]"
    check_deliveries(hook, github)
    assert github.state()["issues"][0]["assignees"] == ["bob", "carol"]


def test_check_suites_for_a_ref_list_ci_workflow_runs_and_the_apps_own(github, key):
    test = agent(github, key, "test")
    sha = github.state()["repos"][REPO]["head_sha"]  # the seed's ci workflow run is on it
    github.complete_ci(REPO, sha, "failure", name="lint")
    test.request("POST", f"/repos/{REPO}/check-runs", json_body={
        "name": "agent-ops/test", "head_sha": sha, "status": "completed", "conclusion": "success"})
    listed = test.request("GET", f"/repos/{REPO}/commits/main/check-suites")
    assert listed["total_count"] == 3
    suites = listed["check_suites"]
    assert [(s["app"]["slug"], s["conclusion"]) for s in suites] == [
        ("github-actions", "success"), ("github-actions", "failure"), ("agent-ops", "success")]
    assert all(s["head_sha"] == sha and s["head_branch"] == "main" for s in suites)
    mine = test.request("GET", f"/repos/{REPO}/commits/{sha}/check-suites", params={"app_id": "424242"})
    assert [s["latest_check_runs_count"] for s in mine["check_suites"]] == [1]
    named = test.request("GET", f"/repos/{REPO}/commits/{sha}/check-suites", params={"check_name": "lint"})
    assert [s["conclusion"] for s in named["check_suites"]] == ["failure"]
    _forbidden(agent(github, key, "monitor"), "GET", f"/repos/{REPO}/commits/{sha}/check-suites")


def test_a_dispatched_implementer_run_pushes_its_branch_and_uploads_zipped_artifacts(github, receiver, key):
    import requests

    hook, _ = receiver
    code = agent(github, key)
    main = github.state()["repos"][REPO]["head_sha"]
    code.request("POST", f"/repos/{REPO}/actions/workflows/implement.yml/dispatches",
                 json_body={"ref": "main", "inputs": {"issue": "3", "branch": "agent/3-impl"}})
    run_id = github.dispatches[-1]["run_id"]
    run = github.workflow_runs[run_id]
    assert (run["head_sha"], run["inputs"]) == (main, {"issue": "3", "branch": "agent/3-impl"})
    settle(github)
    hook.clear()
    control = SandboxControl(github.base_url)
    done = control.complete_workflow_run(
        REPO, run_id, "success",
        push={"branch": "agent/3-impl", "files": {"app/version.py": "VERSION = '1.1'\n"},
              "message": "Implement #3"},
        artifacts={"implementation": {"summary.md": "# Done\n", "diff/stat.txt": "1 file\n"}})
    assert done["conclusion"] == "success"
    settle(github)
    assert hook.events() == ["push", "workflow_run.in_progress", "check_run.completed",
                             "check_suite.completed", "workflow_run.completed"]
    push = hook.payloads()[0]
    assert (push["ref"], push["created"], push["sender"]["login"], push["sender"]["type"]) == (
        "refs/heads/agent/3-impl", True, "github-actions[bot]", "Bot")
    assert push["head_commit"]["message"] == "Implement #3"
    check_deliveries(hook, github)
    assert github.files(REPO, "agent/3-impl")["app/version.py"] == "VERSION = '1.1'\n"
    test = agent(github, key, "test")
    [artifact] = test.request("GET", f"/repos/{REPO}/actions/runs/{run_id}/artifacts")["artifacts"]
    token = app_for(github, key).tokens().token(77, "test", [REPO]).token
    download = requests.get(f"{github.base_url}/repos/{REPO}/actions/artifacts/{artifact['id']}/zip",
                            headers={"Authorization": f"Bearer {token}", "User-Agent": "test"}, timeout=10)
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert sorted(archive.namelist()) == ["diff/stat.txt", "summary.md"]
        assert archive.read("summary.md") == b"# Done\n"
    # artifacts as files through run_workflow too, and zip bytes as before
    other = control.run_workflow(REPO, "ci", "main", artifacts={"junit": {"junit.xml": "<testsuite/>"},
                                                                "raw": b"PK\x05\x06" + b"\0" * 18})
    listed = test.request("GET", f"/repos/{REPO}/actions/runs/{other}/artifacts")["artifacts"]
    names = {a["name"]: a for a in listed}
    assert set(names) == {"junit", "raw"}
    with zipfile.ZipFile(io.BytesIO(github.artifact_bytes(names["junit"]["id"]))) as archive:
        assert archive.read("junit.xml") == b"<testsuite/>"
    assert github.artifact_bytes(names["raw"]["id"]) == b"PK\x05\x06" + b"\0" * 18
    # a run that pushes onto the branch of an open pull request synchronizes it
    pull = github.open_pull(REPO, "agent/3-impl", "Implement #3", author="alice")
    code.request("POST", f"/repos/{REPO}/actions/workflows/implement.yml/dispatches",
                 json_body={"ref": "agent/3-impl"})
    again = github.dispatches[-1]["run_id"]
    assert github.workflow_runs[again]["head_branch"] == "agent/3-impl"
    settle(github)
    hook.clear()
    control.complete_workflow_run(REPO, again, "success",
                                  push={"branch": "agent/3-impl", "files": {"app/version.py": None}})
    settle(github)
    assert hook.events()[:2] == ["push", "pull_request.synchronize"]
    assert hook.payloads()[1]["number"] == pull["number"]
    with pytest.raises(SandboxError) as bad:
        control.complete_workflow_run(REPO, again, "success")  # completed already
    assert bad.value.status == 422


def test_labels_issues_branches_and_repository_settings(github, key):
    code = agent(github, key)
    github.open_issue(REPO, "First", author="alice")
    github.add_label(REPO, 1, "bug")
    github.open_pull(REPO, "feature", "A change", author="bob", files={"f.py": "f = 1\n"})
    created = code.request("POST", f"/repos/{REPO}/labels",
                           json_body={"name": "agent:in-progress", "color": "0E8A16",
                                      "description": "Being worked"})
    assert (created["color"], created["description"]) == ("0e8a16", "Being worked")
    error = refused(lambda: code.request("POST", f"/repos/{REPO}/labels", json_body={"name": "Bug"}))
    assert error.status == 422 and "already_exists" in str(error)
    assert "invalid" in str(refused(lambda: code.request("POST", f"/repos/{REPO}/labels",
                                                          json_body={"name": "x", "color": "green"})))
    assert [label["name"] for label in code.request("GET", f"/repos/{REPO}/labels")] == [
        "agent:in-progress", "bug"]
    assert code.request("GET", f"/repos/{REPO}/labels/BUG")["name"] == "bug"
    renamed = code.request("PATCH", f"/repos/{REPO}/labels/bug",
                           json_body={"new_name": "defect", "color": "ff0000"})
    assert (renamed["name"], renamed["color"]) == ("defect", "ff0000")
    assert github.labels(REPO, 1) == ["defect"]
    every = code.request("GET", f"/repos/{REPO}/issues", params={"state": "all"})
    assert [(i["number"], "pull_request" in i) for i in every] == [(2, True), (1, False)]
    labelled = code.request("GET", f"/repos/{REPO}/issues", params={"labels": "defect"})
    assert [i["number"] for i in labelled] == [1]
    assert code.request("GET", f"/repos/{REPO}/issues", params={"creator": "carol"}) == []
    assert code.request("DELETE", f"/repos/{REPO}/labels/defect") is None
    assert github.labels(REPO, 1) == [] and refused(
        lambda: code.request("GET", f"/repos/{REPO}/labels/defect")).status == 404
    branches = code.request("GET", f"/repos/{REPO}/branches")
    assert [(b["name"], b["protected"]) for b in branches] == [("feature", False), ("main", True)]
    protected = code.request("GET", f"/repos/{REPO}/branches", params={"protected": "true"})
    assert [b["name"] for b in protected] == ["main"]
    main = code.request("GET", f"/repos/{REPO}/branches/main")
    assert main["commit"]["sha"] == github.state()["repos"][REPO]["head_sha"] and main["protected"] is True
    assert main["protection"]["required_status_checks"]["contexts"] == ["ci"]
    assert refused(lambda: code.request("GET", f"/repos/{REPO}/branches/nowhere")).status == 404
    code.request("POST", f"/repos/{REPO}/git/refs",
                 json_body={"ref": "refs/heads/agent/7-x", "sha": main["commit"]["sha"]})
    for name in ("agent/7-x", "agent%2F7-x"):
        assert code.request("GET", f"/repos/{REPO}/branches/{name}")["name"] == "agent/7-x"
    tree = code.request("GET", f"/repos/{REPO}/git/trees/agent/7-x")  # a ref names its tree
    assert tree["sha"] == main["commit"]["commit"]["tree"]["sha"]
    _forbidden(code, "PATCH", f"/repos/{REPO}", json_body={"description": "widgets"})
    _forbidden(agent(github, key, "monitor"), "GET", f"/repos/{REPO}/branches")


def test_a_restarted_sandbox_keeps_git_objects_reviews_and_ref_writes(key, start, receiver, tmp_path):
    _, url = receiver
    state_file = str(tmp_path / "github.json")
    first = start(url, state_file=state_file)
    seed.demo(first)
    code = agent(first, key)
    head = branch_with(code, first, "agent/3-version", {"app/version.py": "VERSION = '1.1'\n"})
    sibling = commit_files(code, first.state()["repos"][REPO]["head_sha"], {"y.py": "y\n"})
    code.request("PATCH", f"/repos/{REPO}/git/refs/heads/agent/3-version",
                 json_body={"sha": sibling, "force": True})
    blob = code.request("POST", f"/repos/{REPO}/git/blobs", json_body={"content": "kept\n"})
    tree = code.request("POST", f"/repos/{REPO}/git/trees", json_body={"tree": [
        {"path": "bin/run", "mode": "100755", "type": "blob", "sha": blob["sha"]}]})
    number = open_api_pull(code, "agent/3-version")["number"]
    code.request("POST", f"/repos/{REPO}/pulls/{number}/requested_reviewers",
                 json_body={"reviewers": ["alice"], "team_reviewers": ["maintainers"]})
    review = code.request("POST", f"/repos/{REPO}/pulls/{number}/reviews",
                          json_body={"event": "COMMENT", "body": "b"})
    code.request("POST", f"/repos/{REPO}/labels", json_body={"name": "kept", "color": "123456"})
    settle(first)
    before = first.state()
    first.close()

    second = start(url, state_file=state_file)
    after = second.state()
    for kept in ("reviews", "ref_writes", "force_pushes", "pulls", "counts"):
        assert after[kept] == before[kept], kept
    code = agent(second, key)
    assert code.request("GET", f"/repos/{REPO}/git/blobs/{blob['sha']}")["content"] == base64.encodebytes(
        b"kept\n").decode()
    listing = code.request("GET", f"/repos/{REPO}/git/trees/{tree['sha']}", params={"recursive": "1"})
    [entry] = listing["tree"][1:]
    assert (entry["path"], entry["mode"]) == ("bin/run", "100755")
    assert code.request("GET", f"/repos/{REPO}/git/commits/{head}")["sha"] == head
    got = code.request("GET", f"/repos/{REPO}/pulls/{number}")
    assert [t["slug"] for t in got["requested_teams"]] == ["maintainers"]
    [listed] = code.request("GET", f"/repos/{REPO}/pulls/{number}/reviews")
    assert listed["id"] == review["id"]
    assert code.request("GET", f"/repos/{REPO}/labels/kept")["color"] == "123456"
    assert second.errors == []


def test_every_operation_of_the_described_subset_is_served():
    described = {(method.upper(), path) for path, item in openapi.spec()["paths"].items() for method in item}
    served = {(method, template) for method, template, _, _ in ROUTES}
    assert described - served == set() and served - described == set()
