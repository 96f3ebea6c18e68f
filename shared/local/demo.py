"""`agentops local demo`: play the whole agent loop against a running `agentops local up`.

A person acts through the GitHub sandbox's control API (open an issue, label it, open a PR,
approve, merge, `/approve`); everything else happens because the system reacts to the webhooks.
While it plays, a live timeline prints what GitHub delivered, each task's moves and each audit
record. A step whose agent is not built yet is shown as SKIPPED with the reason the agent gave,
never as a success.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

REPO = "octo/widgets"
RELEASE_WAIT_SECONDS = 200.0  # three monitor ticks and some
PASSED, SKIPPED, FAILED = "passed", "SKIPPED", "FAILED"
# The issue carries its change as a patch, so the code agent's `patch` implementer (the default)
# makes the pull request; alice, an admin, wrote it. Each run adds its own module, so the demo can
# be played again on the same organisation.
def version_issue(tag: str) -> str:
    return f"""The service should report its version at /version.

```diff
--- /dev/null
+++ b/app/version_{tag}.py
@@ -0,0 +1,5 @@
+VERSION = "1.1.0"
+
+
+def version() -> dict:
+    return {{"version": VERSION}}
--- /dev/null
+++ b/tests/test_version_{tag}.py
@@ -0,0 +1,5 @@
+from app.version_{tag} import version
+
+
+def test_version():
+    assert version() == {{"version": "1.1.0"}}
```
"""


DEMO_COVERAGE = json.dumps({"meta": {"version": "7.6.1"}, "files": {
    "app/main.py": {"summary": {"covered_lines": 2, "num_statements": 2}},
    "app/version.py": {"summary": {"covered_lines": 3, "num_statements": 3}},
}, "totals": {"covered_lines": 5, "num_statements": 5}})


@dataclass
class Step:
    name: str
    result: str = ""
    reason: str = ""


@dataclass
class Connection:
    project: str
    firestore_emulator_host: str
    github_sandbox_url: str
    appengine_sandbox_url: str

    @classmethod
    def load(cls, state_dir: Path) -> Connection:
        path = state_dir / "local.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no {path}: start the system first with `make run` "
                              "(agentops local up)") from None
        if not data.get("github_sandbox_url"):
            raise ConfigError("the running system has no GitHub sandbox (it talks to real GitHub); "
                              "the demo plays only against the sandbox")
        return cls(data["project"], data["firestore_emulator_host"], data["github_sandbox_url"],
                   data.get("appengine_sandbox_url") or "")


@dataclass
class Timeline:
    """Polls Firestore and the sandbox and prints each new fact once, in time order."""

    firestore: Any
    control: Any
    out: Callable[[str], None]
    seen: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(0.5)
        self.poll()

    def poll(self) -> None:
        for delivery in sorted(self.control.deliveries(), key=lambda d: d.get("id") or 0):
            key = f"delivery:{delivery.get('guid')}:{delivery.get('id')}"
            if key not in self.seen:
                self.seen.add(key)
                action = f".{delivery['action']}" if delivery.get("action") else ""
                status = delivery.get("status_code")
                self.say("github", f"{delivery.get('event')}{action} delivered -> {status}")
        for doc in self.firestore.collection("tasks").stream():
            task = doc.to_dict()
            for entry in task.get("history") or []:
                key = f"task:{task['task_id']}:{entry.get('at')}:{entry.get('to')}"
                if key not in self.seen:
                    self.seen.add(key)
                    moved = f"{entry.get('from') or 'new'} -> {entry.get('to')}"
                    self.say("task", f"{task.get('agent'):<7} {task['task_id']}  {moved}: "
                             f"{str(entry.get('reason') or '')[:100]}")
        records = sorted((d.to_dict() for d in self.firestore.collection("audit").stream()),
                         key=lambda r: str(r.get("at")))
        for record in records:
            key = f"audit:{record.get('key')}"
            if key not in self.seen:
                self.seen.add(key)
                self.say("audit", f"{record.get('actor'):<12} {record.get('action')} "
                         f"{record.get('subject')} -> {record.get('outcome')}")

    def say(self, source: str, text: str) -> None:
        self.out(f"{time.strftime('%H:%M:%S')}  {source:<6} {text}")


class Demo:
    def __init__(self, connection: Connection, out: Callable[[str], None] = print,
                 step_timeout: float = 60.0) -> None:
        from sandbox.github.control import SandboxControl
        from shared.gcp import firestore_client

        self.firestore = firestore_client(connection.project, connection.firestore_emulator_host)
        self.control = SandboxControl(connection.github_sandbox_url)
        self.appengine_url = connection.appengine_sandbox_url
        self.project = connection.project
        self.merge_sha = ""
        self.out = out
        self.timeout = step_timeout
        self.steps: list[Step] = []

    # ---- observing ------------------------------------------------------------------------

    def tasks(self, kind: str, number: int | None = None) -> list[dict[str, Any]]:
        found = [d.to_dict() for d in self.firestore.collection("tasks").stream()]
        return [t for t in found if t.get("kind") == kind and t.get("repository") == REPO
                and (number is None or t.get("number") == number)]

    def wait_for(self, what: str, condition: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.3)
        raise TimeoutError(f"{what} did not happen within {self.timeout:.0f}s")

    def settled(self, kind: str, number: int | None = None) -> dict[str, Any]:
        """The task of this kind once it has stopped moving on its own."""
        def done() -> dict[str, Any] | None:
            for task in self.tasks(kind, number):
                if task.get("status") in ("succeeded", "failed", "blocked", "cancelled", "waiting_approval"):
                    return task
            return None
        return self.wait_for(f"a {kind} task to finish", done)

    def outcome(self, step: Step, task: dict[str, Any], success: str) -> None:
        result = task.get("result") or {}
        if task.get("status") == "succeeded":
            step.result, step.reason = PASSED, success
        elif result.get("status") == "not_implemented":
            step.result, step.reason = SKIPPED, str(result.get("summary") or "the agent is not built yet")
        else:
            step.result = FAILED
            step.reason = f"{task.get('task_id')} is {task.get('status')}: {result.get('summary', '')}"

    # ---- the scenario ---------------------------------------------------------------------

    def play(self) -> list[Step]:
        timeline = Timeline(self.firestore, self.control, self.out)
        watcher = threading.Thread(target=timeline.run, daemon=True)
        watcher.start()
        try:
            for name, action in (
                ("an issue gets agent-task", self.label_issue),
                ("the code agent claims it and opens a PR", self.claim_and_open),
                ("the gates run and a human approves", self.gates_and_approval),
                ("the PR merges and is deployed after /approve", self.merge_and_deploy),
                ("a fault causes a rollback and an incident issue", self.fault_and_rollback),
            ):
                step = Step(name)
                self.steps.append(step)
                self.out(f"\n== {name}")
                try:
                    action(step)
                except TimeoutError as exc:
                    step.result, step.reason = FAILED, str(exc)
                if step.result == FAILED and not step.name.startswith("a fault"):
                    break
        finally:
            time.sleep(1.0)
            timeline.stop.set()
            watcher.join(timeout=10)
        return self.steps

    def label_issue(self, step: Step) -> None:
        tag = time.strftime("%Y%m%d%H%M%S")
        issue = self.control.open_issue(REPO, "Add a /version endpoint", version_issue(tag), author="alice")
        self.issue = int(issue["number"])
        self.control.add_label(REPO, self.issue, "agent-task", actor="alice")
        task = self.wait_for("the implement_issue task", lambda: self.tasks("implement_issue", self.issue))
        step.result, step.reason = PASSED, f"task {task[0]['task_id']} created for #{self.issue}"

    def agent_pull(self) -> dict[str, Any] | None:
        prefix = f"agent/{self.issue}-"
        return next((p for p in self.control.state()["pulls"] if p["repo"] == REPO
                     and str(p.get("head_ref") or "").startswith(prefix)), None)

    def claim_and_open(self, step: Step) -> None:
        task = self.settled("implement_issue", self.issue)
        self.outcome(step, task, "PR opened")
        if step.result == SKIPPED:
            # So the later steps can still be shown: a human opens the PR the agent would have.
            pull = self.control.open_pull(REPO, "add-version", f"Add /version (closes #{self.issue})",
                                          body=f"Closes #{self.issue}", author="bob",
                                          files={"app/version.py": "VERSION = '1.1.0'\n"})
            self.pull, self.head = int(pull["number"]), str(pull["head"]["sha"])
            step.reason += f"; bob opened #{self.pull} by hand to go on"
            return
        pull = self.agent_pull()
        if step.result == PASSED and pull is None:
            step.result, step.reason = FAILED, "the task succeeded but no pull request from agent/ exists"
            return
        if pull is not None:
            self.pull, self.head = int(pull["number"]), str(pull["head_sha"])
            step.reason = f"#{self.pull} opened from {pull['head_ref']}"

    def gates_and_approval(self, step: Step) -> None:
        # CI reports on the PR's head, with a coverage report the test agent reads.
        self.control.run_workflow(REPO, "ci", self.head, conclusion="success",
                                  artifacts={"coverage": {"coverage.json": DEMO_COVERAGE}})
        gates = [self.settled(kind, self.pull) for kind in ("test_pull_request", "review_pull_request")]
        self.control.review(REPO, self.pull, "alice", "APPROVED")
        if all(g.get("status") == "succeeded" for g in gates):
            runs = {r["name"]: r.get("conclusion") for r in self.control.state()["check_runs"]
                    if r["head_sha"] == self.head and r["name"].startswith("agent-ops/")}
            shown = ", ".join(f"{name} {conclusion}" for name, conclusion in sorted(runs.items()))
            step.result, step.reason = PASSED, f"{shown}; alice approved"
        else:
            self.outcome(step, next(g for g in gates if g.get("status") != "succeeded"), "")
            step.reason += "; alice approved the PR"

    def release(self) -> dict[str, Any] | None:
        """The newest release of the merge, from `deployments`."""
        from shared.task_store import where

        releases = [doc.to_dict() for doc in where(self.firestore.collection("deployments"), "sha", "==",
                                                   self.merge_sha).stream()] if self.merge_sha else []
        return max(releases, key=lambda r: r.get("started_at"), default=None)

    def wait_release(self, what: str, states: tuple[str, ...]) -> dict[str, Any]:
        """Releases move on the monitor's minute ticks: wait up to three of them, or the step timeout."""
        timeout, self.timeout = self.timeout, max(self.timeout, RELEASE_WAIT_SECONDS)
        try:
            return self.wait_for(what, lambda: (lambda r: r if r and r.get("state") in states else None)(
                self.release()))
        finally:
            self.timeout = timeout

    def merge_and_deploy(self, step: Step) -> None:
        self.merge_sha = str(self.control.merge(REPO, self.pull, actor="alice"))
        waiting = self.wait_for("the deploy task to wait for approval", lambda: [
            t for t in self.tasks("deploy_merge", self.pull) if t.get("status") == "waiting_approval"])[0]
        self.out(f"   deploy {waiting['task_id']} waits: {waiting.get('waiting_on')}")
        self.control.comment(REPO, self.pull, f"/approve {waiting['task_id']}", author="alice")
        task = self.wait_for("the deploy to be dispatched after /approve", lambda: [
            t for t in self.tasks("deploy_merge", self.pull)
            if t.get("status") not in ("waiting_approval", "queued")])[0]
        if task.get("status") not in ("dispatched", "running"):
            self.outcome(step, task, "deployed")
            return
        release = self.wait_release("the release to serve all traffic",
                                    ("watching", "succeeded", "failed", "rolled_back", "cancelled"))
        if release.get("state") in ("watching", "succeeded"):
            step.result, step.reason = PASSED, (f"{release['version']} serves all traffic of "
                                                f"{release['service']} ({release['state']})")
        else:
            step.result = FAILED
            step.reason = f"the release is {release.get('state')}: {'; '.join(release.get('reasons') or [])}"

    def fault_and_rollback(self, step: Step) -> None:
        release = self.release()
        if not release or release.get("state") != "watching":
            state = release.get("state") if release else "missing"
            step.result, step.reason = SKIPPED, f"needs a release in its watch window; it is {state}"
            return
        from sandbox.appengine.control import AppEngineControl

        appengine = AppEngineControl(self.appengine_url, app=self.project)
        try:
            appengine.set_faults(release["service"], release["version"], unhealthy=True)
        finally:
            appengine.close()
        self.out(f"   injected: {release['version']} of {release['service']} is unhealthy")
        ended = self.wait_release("the rollback", ("rolling_back", "rolled_back", "failed"))

        def incident_issues() -> list[dict[str, Any]]:
            # The state moves first; the incident issue follows in the same turn, a write or two later.
            return [i for i in self.control.state()["issues"] if i["repo"] == REPO
                    and str(i.get("title") or "").startswith(f"Rollback of {release['service']}")]

        incidents: list[dict[str, Any]] = []
        if ended.get("state") != "failed":
            try:
                incidents = self.wait_for("the incident issue", incident_issues)
            except TimeoutError:
                incidents = []
        if ended.get("state") == "failed" or not incidents:
            step.result = FAILED
            step.reason = f"the release is {ended.get('state')}; incident issues: {len(incidents)}"
            return
        step.result, step.reason = PASSED, (f"back on {ended['previous_version']}: "
                                            f"{'; '.join(ended.get('reasons') or [])[:120]}; "
                                            f"incident #{incidents[-1]['number']}")


def summary(steps: list[Step]) -> list[str]:
    width = max(len(s.name) for s in steps) if steps else 10
    lines = ["", f"{'step':<{width}}  result   why"]
    lines += [f"{s.name:<{width}}  {s.result:<7}  {s.reason}" for s in steps]
    return lines


def run(state_dir: Path, out: Callable[[str], None] = print, step_timeout: float = 60.0) -> int:
    demo = Demo(Connection.load(state_dir), out, step_timeout)
    steps = demo.play()
    for line in summary(steps):
        out(line)
    return 1 if any(s.result == FAILED for s in steps) else 0
