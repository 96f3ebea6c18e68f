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

from shared.task_store import where
from tests.e2e.conftest import ROOT, free_run, read_until

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
    base = free_run(14)
    ports = {"webhook": base, "consumers": base + 1, "pubsub": base + 9, "firestore": base + 10,
             "github": base + 11, "appengine": base + 12, "llm": base + 13}
    project = f"e2e-{base}"
    command = [sys.executable, "-m", "shared.cli", "local", "up", "--project", project,
               "--port", str(ports["webhook"]), "--consumer-port", str(ports["consumers"]),
               "--pubsub-port", str(ports["pubsub"]), "--firestore-port", str(ports["firestore"]),
               "--github-port", str(ports["github"]), "--appengine-port", str(ports["appengine"]),
               "--llm-port", str(ports["llm"]), "--dashboard-port", str(base + 8),
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

    # alice changes her mind: /cancel ends the task and stops its release, which has moved no
    # traffic yet or goes back to the previous version; either way the service is free again.
    release = eventually("the release", lambda: next(
        (r.to_dict() for r in where(system.firestore.collection("deployments"), "sha", "==", merge_sha)
         .stream()), None))
    system.github.comment(REPO, number, "/cancel", author="alice")
    ended = eventually("the release stopped", lambda: next(
        (r.to_dict() for r in where(system.firestore.collection("deployments"), "sha", "==", merge_sha)
         .stream() if r.to_dict()["state"] in ("cancelled", "rolled_back")), None), timeout=150)
    assert ended["id"] == release["id"] and ended["active"] is False


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


GADGETS = "octo/gadgets"
TOKEN_PREFIX = "ghp_"


def greeting_patch(name: str) -> str:
    return (f"Please add a {name} greeting.\n\n```diff\n--- /dev/null\n+++ b/lib/{name}.py\n"
            f"@@ -0,0 +1,2 @@\n+def {name}():\n+    return '{name}'\n--- /dev/null\n"
            f"+++ b/tests/test_{name}.py\n@@ -0,0 +1,2 @@\n+def test_{name}():\n+    assert True\n```\n")


def coverage(covered: int, total: int = 100) -> dict[str, str]:
    return {"coverage.json": json.dumps({"meta": {"version": "7.6.1"}, "files": {
        "lib/x.py": {"summary": {"covered_lines": covered, "num_statements": total}}},
        "totals": {"covered_lines": covered, "num_statements": total}})}


def benchmarks(mean: float) -> dict[str, str]:
    """pytest-benchmark's JSON (the fixture the gates are tested on), every mean set to `mean`."""
    report = json.loads((ROOT / "tests" / "fixtures" / "test_agent" / "benchmarks.json").read_text())
    for entry in report["benchmarks"]:
        entry["stats"].update(mean=mean, stddev=mean / 100)
    return {"benchmarks.json": json.dumps(report)}


def agent_pull(system: System, repo: str, issue: int) -> dict[str, Any] | None:
    return next((p for p in system.github.state()["pulls"] if p["repo"] == repo
                 and str(p.get("head_ref") or "").startswith(f"agent/{issue}-")), None)


def check(system: System, sha: str, name: str) -> dict[str, Any] | None:
    return next((r for r in system.github.state()["check_runs"] if r["head_sha"] == sha and r["name"] == name
                 and r["status"] == "completed"), None)


def waiting_for_ci(system: System, repo: str, number: int) -> dict[str, Any] | None:
    return next((t for t in system.tasks("test_pull_request", number) if t["repository"] == repo
                 and t.get("waits_for")), None)


def labelled_issue(system: System, repo: str, title: str, body: str, author: str = "bob") -> int:
    number = int(system.github.open_issue(repo, title, body, author=author)["number"])
    system.github.add_label(repo, number, "agent-task", actor="alice")
    return number


def test_an_issue_with_a_patch_becomes_one_pull_request_that_the_gates_pass(system):
    number = labelled_issue(system, REPO, "Add a hello greeting", greeting_patch("hello"))
    eventually("the claim says where the PR is", lambda: any(
        "Opened #" in c["body"] for c in system.comments(number)), timeout=90)
    pull = agent_pull(system, REPO, number)
    assert pull is not None and any(f"Opened #{pull['number']}" in c["body"] for c in system.comments(number))
    assert f"Closes #{number}" in pull["body"] and pull["user"] == "agent-ops[bot]"
    assert pull["requested_teams"] == ["maintainers"]
    issue = next(i for i in system.github.state()["issues"] if i["repo"] == REPO and i["number"] == number)
    assert "agent:in-progress" not in issue["labels"]

    eventually("the test agent waiting for CI", lambda: waiting_for_ci(system, REPO, pull["number"]))
    system.github.run_workflow(REPO, "ci", pull["head_sha"], artifacts={"coverage": coverage(90)})
    tests = eventually("agent-ops/tests", lambda: check(system, pull["head_sha"], "agent-ops/tests"), 90)
    qa = eventually("agent-ops/qa", lambda: check(system, pull["head_sha"], "agent-ops/qa"), 90)
    assert (tests["conclusion"], qa["conclusion"]) == ("success", "success")
    review = eventually("the test agent's review", lambda: next(
        (r for r in system.github.state()["reviews"] if r["repo"] == REPO and r["number"] == pull["number"]
         and r["user"] == "agent-ops[bot]"), None))
    assert review["state"] == "COMMENTED"  # GitHub lets no App approve its own pull request

    # GitHub delivers the label event again: still one claim, one task, one pull request.
    labelled = next(d for d in system.github.deliveries() if d.get("event") == "issues"
                    and d.get("action") == "labeled" and not d.get("redelivery")
                    and system.github.delivery(d["id"])["request"]["payload"]["issue"]["number"] == number)
    system.github.redeliver(labelled["id"])
    system.github.wait_for_deliveries()
    time.sleep(3)
    claims = [c for c in system.comments(number) if "agent-ops:code:" in c["body"]]
    assert len(claims) == 1
    assert len([t for t in system.tasks("implement_issue", number) if t["repository"] == REPO]) == 1
    assert len([p for p in system.github.state()["pulls"] if p["repo"] == REPO
                and str(p["head_ref"]).startswith(f"agent/{number}-")]) == 1


def test_an_llm_issue_becomes_a_pull_request_and_no_secret_reaches_the_prompt(system):
    from sandbox.llm.control import LlmSandboxControl

    local = json.loads((system.state / "local.json").read_text())
    llm = LlmSandboxControl(local["llm_sandbox_url"])
    policy = "version: 1\ncode: {implementer: llm}\n"
    system.github.push_commit(GADGETS, "main", {".github/agent-ops.yml": policy}, author="alice")
    llm.script_reply("```diff\n--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,5 @@\n # gadgets\n \n"
                     " A library; nothing here is deployed.\n+\n+Install it with pip.\n```\n"
                     "Documents how to install the library.")
    planted = TOKEN_PREFIX + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"
    number = labelled_issue(system, GADGETS, "Document the install",
                            f"README.md should say how to install it. Our CI token is {planted}.")
    pull = eventually("the agent's pull request", lambda: agent_pull(system, GADGETS, number), timeout=90)
    assert pull["title"].startswith("Document the install")
    prompts = json.dumps(llm.requests())
    assert "README.md should say how to install it" in prompts
    assert planted not in prompts and "[redacted]" in prompts
    assert "Bearer" not in prompts and "ghs_" not in prompts
    task = eventually("the task succeeded", lambda: next(
        (t for t in system.tasks("implement_issue", number) if t["repository"] == GADGETS
         and t["status"] == "succeeded"), None))
    assert task.get("cost_units", 0) > 0  # the model's tokens are the task's cost


def test_a_protected_path_is_refused_and_a_failure_is_told_on_the_issue(system):
    body = "```diff\n--- /dev/null\n+++ b/.github/workflows/evil.yml\n@@ -0,0 +1 @@\n+on: push\n```\n"
    number = labelled_issue(system, REPO, "Add a workflow", body)
    told = eventually("the failure on the issue", lambda: next(
        (c for c in system.comments(number) if "could not finish" in c["body"]), None), timeout=90)
    assert ".github/workflows/evil.yml" in told["body"] and "`/retry`" in told["body"]
    # The labels follow the comment, a spaced write or two later.
    issue = eventually("the failed label", lambda: next(
        (i for i in system.github.state()["issues"] if i["repo"] == REPO and i["number"] == number
         and "agent:failed" in i["labels"]), None))
    assert "agent:in-progress" not in issue["labels"]
    assert agent_pull(system, REPO, number) is None
    eventually("the task failed", lambda: [t["status"] for t in system.tasks("implement_issue", number)
                                           if t["repository"] == REPO] == ["failed"])


def test_the_gates_catch_a_coverage_drop_a_regression_a_flaky_run_and_a_secret(system):
    def opened(branch: str, files: dict[str, str]) -> dict[str, Any]:
        pull = system.github.open_pull(GADGETS, branch, f"Change {branch}", body="Closes #1\n\n- [x] tests",
                                       author="bob", files={**files, f"tests/test_{branch}.py": "x = 1\n"})
        eventually("its test task waiting", lambda: waiting_for_ci(system, GADGETS, int(pull["number"])))
        return pull

    def verdict(pull: dict[str, Any], name: str = "agent-ops/tests") -> dict[str, Any]:
        return eventually(name, lambda: check(system, pull["head"]["sha"], name), timeout=90)

    base = opened("base", {"lib/a.py": "a = 1\n"})
    system.github.run_workflow(GADGETS, "ci", base["head"]["sha"],
                               artifacts={"coverage": coverage(90), "benchmarks": benchmarks(0.010)})
    assert verdict(base)["conclusion"] == "success"
    system.github.merge(GADGETS, int(base["number"]), actor="alice")
    eventually("the baseline promoted", lambda: next(
        (t for t in system.tasks("update_baseline") if t["repository"] == GADGETS
         and t["status"] == "succeeded"), None))

    drop = opened("drop", {"lib/b.py": "b = 1\n"})
    system.github.run_workflow(GADGETS, "ci", drop["head"]["sha"], artifacts={"coverage": coverage(60)})
    run = verdict(drop)
    assert run["conclusion"] == "failure" and "Coverage" in run["output"]["summary"]
    review = eventually("changes requested", lambda: next(
        (r for r in system.github.state()["reviews"] if r["repo"] == GADGETS
         and r["number"] == drop["number"] and r["user"] == "agent-ops[bot]"), None))
    assert review["state"] == "CHANGES_REQUESTED"

    slow = opened("slow", {"lib/c.py": "c = 1\n"})
    system.github.run_workflow(GADGETS, "ci", slow["head"]["sha"],
                               artifacts={"coverage": coverage(90), "benchmarks": benchmarks(0.030)})
    run = verdict(slow)
    assert run["conclusion"] == "failure" and "test_area_speed" in run["output"]["summary"]

    flaky = opened("flaky", {"lib/d.py": "d = 1\n"})
    run_id = system.github.run_workflow(GADGETS, "ci", flaky["head"]["sha"], conclusion="failure",
                                        artifacts={"coverage": coverage(90)})
    eventually("the failed run re-run once", lambda: next(
        (r for r in system.github.state()["workflow_runs"] if r["id"] == run_id and r["run_attempt"] == 2),
        None), timeout=90)
    system.github.complete_workflow_run(GADGETS, run_id, "success")  # the re-run passes
    run = verdict(flaky)
    assert run["conclusion"] == "success"
    assert "Flaky tests (failed, then passed on rerun)" in run["output"]["summary"]
    flakes = [d.to_dict() for d in system.firestore.collection("repos").document("octo:gadgets")
              .collection("flaky").stream()]
    assert [(f["name"], f["count"]) for f in flakes] == [("ci", 1)]

    token = TOKEN_PREFIX + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz"
    leak = opened("leak", {"lib/e.py": f"TOKEN = '{token}'\n"})
    qa = verdict(leak, "agent-ops/qa")
    assert qa["conclusion"] == "failure" and "lib/e.py:1" in qa["output"]["summary"]
    assert token not in json.dumps(qa)


def test_the_demo_plays_and_never_shows_an_unbuilt_agent_as_done(system):
    played = subprocess.run([sys.executable, "-m", "shared.cli", "local", "demo", "--state-dir",
                             str(system.state), "--step-timeout", "90"], cwd=ROOT, env=system.env(),
                            capture_output=True, text=True, timeout=600)
    assert played.returncode == 0, played.stdout + played.stderr
    rows = {line.split("  ")[0].strip(): line for line in played.stdout.splitlines()
            if line.startswith(("an issue", "the code agent", "the gates", "the PR merges", "a fault"))}
    assert " passed " in rows["an issue gets agent-task"]
    assert " passed " in rows["the code agent claims it and opens a PR"], rows
    gates = rows["the gates run and a human approves"]
    assert " passed " in gates and "agent-ops/tests success" in gates and "agent-ops/qa success" in gates
    deploy = rows["the PR merges and is deployed after /approve"]
    assert " passed " in deploy and "serves all traffic of widgets" in deploy, deploy
    rollback = rows["a fault causes a rollback and an incident issue"]
    assert " passed " in rollback and "back on v1" in rollback and "incident #" in rollback, rollback
    assert "issues.labeled delivered -> 202" in played.stdout  # the live timeline
    assert "waiting_approval -> queued" in played.stdout
