"""The whole system as `make run` starts it, driven only through its public surfaces.

Humans act through the GitHub sandbox's control API; webhooks go to the real webhook function,
through Pub/Sub push subscriptions, to the orchestrator and the agents. What is checked is what a
person would see: GitHub's state (comments, reactions, check runs) and Firestore.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_local_up import ROOT, free_run, read_until

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"


class System:
    def __init__(self, state: Path, ports: dict[str, int], project: str) -> None:
        from google.cloud import firestore

        from sandbox.github.control import SandboxControl

        self.state = state
        self.ports = ports
        self.project = project
        self.github = SandboxControl(f"http://127.0.0.1:{ports['github']}")
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{ports['firestore']}"
        self.firestore = firestore.Client(project=project)

    def tasks(self, kind: str, number: int | None = None) -> list[dict[str, Any]]:
        found = [d.to_dict() for d in self.firestore.collection("tasks").stream()]
        return [t for t in found if t.get("kind") == kind and (number is None or t.get("number") == number)]

    def comments(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.github.state()["comments"] if c["issue_number"] == number
                and c["repo"] == REPO]

    def env(self) -> dict[str, str]:
        return {**os.environ, "GOOGLE_CLOUD_PROJECT": self.project,
                "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports['firestore']}",
                "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.ports['pubsub']}"}


def eventually(what: str, condition: Callable[[], Any], timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[System]:
    state = tmp_path_factory.mktemp("local") / "state"
    base = free_run(13)
    ports = {"webhook": base, "consumers": base + 1, "pubsub": base + 9, "firestore": base + 10,
             "github": base + 11, "appengine": base + 12}
    project = f"e2e-{base}"
    command = [sys.executable, "-m", "shared.cli", "local", "up", "--project", project,
               "--port", str(ports["webhook"]), "--consumer-port", str(ports["consumers"]),
               "--pubsub-port", str(ports["pubsub"]), "--firestore-port", str(ports["firestore"]),
               "--github-port", str(ports["github"]), "--appengine-port", str(ports["appengine"]),
               "--state-dir", str(state)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, env=environment)
    try:
        lines = read_until(process, "ready", timeout=180)
        assert any(line.startswith("GitHub sandbox: ") for line in lines), lines
        system = System(state, ports, project)
        yield system
        # Every request the system sent, and every answer the sandbox gave, was GitHub's.
        assert system.github.state().get("errors") == [], system.github.state().get("errors")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_seeded_installation_reaches_firestore(system):
    installation = eventually("installation 77 recorded", lambda: system.firestore.collection(
        "installations").document("77").get().to_dict())
    assert installation["status"] == "active"
    repos = eventually("both demo repos recorded", lambda: {
        d.id for d in system.firestore.collection("repos").stream()} >= {"octo:widgets", "octo:gadgets"})
    assert repos


def test_hold_and_unhold_are_honoured(system):
    issue = system.github.open_issue(REPO, "Hold me", author="alice")
    number = int(issue["number"])
    system.github.comment(REPO, number, "/hold until the design is agreed", author="bob")
    eventually("a reply to /hold", lambda: any("Held #" in c["body"] for c in system.comments(number)))

    system.github.add_label(REPO, number, "agent-task", actor="alice")
    [task] = eventually("the code task", lambda: system.tasks("implement_issue", number))
    task = eventually("the task waiting on the hold", lambda: next(
        (t for t in system.tasks("implement_issue", number) if "on hold by @bob" in t.get("waiting_on", "")),
        None))
    assert task["status"] == "queued"

    system.github.comment(REPO, number, "/unhold", author="bob")
    done = eventually("the task dispatched after /unhold", lambda: next(
        (t for t in system.tasks("implement_issue", number) if t["status"] not in ("queued",)), None))
    assert [h["to"] for h in done["history"]][:3] == ["queued", "queued", "dispatched"]


def test_a_reader_cannot_hold_and_is_told_why(system):
    issue = system.github.open_issue(REPO, "Not yours to hold", author="alice")
    number = int(issue["number"])
    system.github.comment(REPO, number, "/hold", author="carol")
    reply = eventually("a refusal", lambda: next(
        (c for c in system.comments(number) if "needs the **write** role" in c["body"]), None))
    assert "@carol" in reply["body"]
    reactions = system.github.state()["reactions"]
    assert any(r["content"] == "-1" for r in reactions)


def test_a_deploy_waits_for_approval_and_goes_after_a_maintainers_approve(system):
    pull = system.github.open_pull(REPO, "e2e-deploy", "Ship it", author="bob",
                                   files={"app/e2e.txt": "deploy me\n"})
    number = int(pull["number"])
    merge_sha = system.github.merge(REPO, number, actor="alice")
    task = eventually("the deploy waiting for approval", lambda: next(
        (t for t in system.tasks("deploy_merge") if t.get("number") == number
         and t["status"] == "waiting_approval"), None))
    runs = eventually("the approval check run", lambda: [
        r for r in system.github.state()["check_runs"]
        if r["name"] == "agent-ops/approval" and r["head_sha"] == merge_sha])
    assert runs[0]["status"] == "in_progress"

    system.github.comment(REPO, number, f"/approve {task['task_id']}", author="bob")  # the author
    eventually("bob's approve answered", lambda: any(
        "not counted" in c["body"] for c in system.comments(number)))
    assert system.tasks("deploy_merge", number)[0]["status"] == "waiting_approval"

    system.github.comment(REPO, number, f"/approve {task['task_id']}", author="alice")
    went = eventually("the deploy dispatched", lambda: next(
        (t for t in system.tasks("deploy_merge", number)
         if t["status"] not in ("waiting_approval", "queued")), None))
    assert went["attempt"] == 2
    eventually("the check run approved", lambda: next(
        (r for r in system.github.state()["check_runs"] if r["name"] == "agent-ops/approval"
         and r["head_sha"] == merge_sha and r.get("conclusion") == "success"), None))


def test_a_delivery_that_failed_while_the_webhook_was_down_is_recovered_by_the_sweeper(system):
    system.github.set_webhook_url("http://127.0.0.1:9/")  # nothing listens there: GitHub's sends fail
    issue = system.github.open_issue(REPO, "Sent while down", author="alice")
    number = int(issue["number"])
    failed = eventually("a failed delivery", lambda: [
        d for d in system.github.deliveries() if d.get("event") == "issues" and d.get("status_code", 0) != 202
        and not d.get("redelivery")])
    system.github.set_webhook_url(f"http://127.0.0.1:{system.ports['webhook']}/")

    key = system.state / "github-sandbox-app-key.pem"
    env = {**system.env(), "GITHUB_API_URL": f"http://127.0.0.1:{system.ports['github']}",
           "GITHUB_APP_ID": "424242", "GITHUB_PRIVATE_KEY": str(key)}
    swept = subprocess.run([sys.executable, "-m", "shared.cli", "redeliver", "--since", "1h"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "redelivered" in swept.stdout
    guid = failed[0]["guid"]
    recorded = eventually("the redelivered delivery published", lambda: (
        system.firestore.collection("deliveries").document(guid).get().to_dict() or {}).get("status")
        == "published")
    assert recorded
    assert number > 0
    assert json.loads(json.dumps(failed[0]))["event"] == "issues"


def test_the_demo_plays_and_never_shows_an_unbuilt_agent_as_done(system):
    played = subprocess.run([sys.executable, "-m", "shared.cli", "local", "demo", "--state-dir",
                             str(system.state), "--step-timeout", "90"], cwd=ROOT, env=system.env(),
                            capture_output=True, text=True, timeout=600)
    assert played.returncode == 0, played.stdout + played.stderr
    rows = {line.split("  ")[0].strip(): line for line in played.stdout.splitlines()
            if line.startswith(("an issue", "the code agent", "the gates", "the PR merges", "a fault"))}
    assert " passed " in rows["an issue gets agent-task"]
    for step in ("the code agent claims it and opens a PR", "the gates run and a human approves",
                 "the PR merges and is deployed after /approve"):
        assert " SKIPPED " in rows[step] and "cannot do" in rows[step], rows[step]
    assert " SKIPPED " in rows["a fault causes a rollback and an incident issue"]
    assert "issues.labeled delivered -> 202" in played.stdout  # the live timeline
    assert "waiting_approval -> queued" in played.stdout
