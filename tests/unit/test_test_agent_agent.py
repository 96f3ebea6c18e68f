"""The test agent's shell, turn by turn, against the GitHub sandbox served on loopback.

Each turn is a real `TaskContext`: the agent's own installation token (scoped as
`shared.github.permissions` says), the real executor over an in-memory audit, and an in-memory store
(the Firestore store has its own tests against the emulator).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Any

import pytest

from functions.test_agent.agent import CHECK_NAME, FAILED_TITLE, MARKER, TestAgent
from functions.test_agent.artifacts import baseline_doc
from functions.test_agent.ci import wait_keys
from functions.test_agent.gates import Benchmark, Coverage
from sandbox.github.server import GitHubSandbox, zip_files
from shared.agent_runtime import FAILED, RUNNING, SUCCEEDED, AgentRunner, Links, Outcome, TaskContext
from shared.executor import Executor
from shared.github import permissions
from shared.messages import AgentTask
from shared.policy import DEFAULT_POLICY, Policy, PolicyLoad
from tests.support.sandbox_site import app_for

REPO = "octo/widgets"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
BENCH = "tests/test_bench.py::test_render"


# ---- the harness ----------------------------------------------------------------------------

class MemoryAudit:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def has(self, key: str) -> bool:
        return any(record["key"] == key for record in self.records)

    def record(self, **facts: Any) -> None:
        self.records.append(facts)


class MemoryStore:
    """TestStore's interface in memory."""

    def __init__(self) -> None:
        self.flaky: dict[str, dict[str, Any]] = {}
        self.measurements: dict[str, dict[str, Any]] = {}
        self.baselines: dict[str, dict[str, Any]] = {}

    def record_flaky(self, repository: str, names: Any, sha: str, pull_number: int, now: datetime) -> None:
        for name in names:
            doc = self.flaky.setdefault(name, {"name": name, "first_seen": now, "count": 0,
                                               "recent_shas": []})
            if sha not in doc["recent_shas"]:
                doc.update(count=doc["count"] + 1, last_seen=now, last_sha=sha, last_pull=pull_number,
                           recent_shas=[*doc["recent_shas"], sha])

    def save_measurement(self, repository: str, sha: str, pull_number: int, measurement: dict[str, Any],
                         now: datetime) -> None:
        self.measurements[sha] = {**measurement, "sha": sha, "pull_number": pull_number}

    def measurement(self, repository: str, sha: str) -> dict[str, Any] | None:
        return self.measurements.get(sha)

    def baseline(self, repository: str, ref: str) -> dict[str, Any] | None:
        return self.baselines.get(ref)

    def save_baseline(self, repository: str, ref: str, measurement: dict[str, Any], *, sha: str,
                      head_sha: str = "", pull_number: int = 0,
                      now: datetime | None = None) -> dict[str, Any]:
        doc = {**measurement, "ref": ref, "sha": sha, "head_sha": head_sha, "kept": []}
        self.baselines[ref] = doc
        return doc


@pytest.fixture
def github_repos() -> dict[str, dict[str, str]]:
    """The repositories the sandbox of `github` (tests/unit/conftest.py) starts with."""
    return {REPO: {"README.md": "# widgets\n", "app.py": "x = 1\n"}}


class Harness:
    def __init__(self, github: GitHubSandbox, key: tuple[Any, str]) -> None:
        self.github = github
        self.app = app_for(github, key)
        self.audit = MemoryAudit()
        self.store = MemoryStore()
        self.agent = TestAgent(store=lambda: self.store)
        self.policy: Policy = DEFAULT_POLICY

    def client(self) -> Any:
        client = self.app.client_for("test", self.github.installation_id, ["widgets"])
        client._write_interval = 0.0  # these tests do not exercise the spacing of writes
        return client

    def context(self, inputs: dict[str, Any], *, kind: str = "test_pull_request", task_id: str = "t-1",
                checkpoint: Any = None, attempt: int = 1) -> TaskContext:
        client = self.client()
        values = {**inputs, **({"checkpoint": dict(checkpoint)} if checkpoint else {})}
        task = AgentTask(task_id=task_id, kind=kind, agent="test", attempt=attempt, repository=REPO,
                         installation_id=77, subject=f"pull/{inputs.get('pull_number')}",
                         source="delivery/d-1", created_at=0, inputs=json.dumps(values))
        return TaskContext(task, client=lambda: client,
                           executor=Executor(lambda: self.audit, lambda *_: client, actor="test"),
                           policy=lambda: PolicyLoad(self.policy, "file"), publisher=lambda: None,
                           links=Links(), delivery_id="d-1", clock=lambda: NOW)

    def turn(self, pull: dict[str, Any], checkpoint: Any = None, task_id: str = "t-1") -> Outcome:
        inputs = {"pull_number": pull["number"], "head_sha": pull["head"]["sha"],
                  "head_ref": pull["head"]["ref"], "base_ref": pull["base"]["ref"]}
        return self.agent.handle(self.context(inputs, checkpoint=checkpoint, task_id=task_id))

    def pull(self, number: int) -> dict[str, Any]:
        return self.client().request("GET", f"/repos/{REPO}/pulls/{number}")

    def reviews(self, number: int) -> list[dict[str, Any]]:
        return self.client().request("GET", f"/repos/{REPO}/pulls/{number}/reviews")

    def check_run(self, sha: str) -> dict[str, Any]:
        [run] = [run for run in self.github.check_runs.values()
                 if run["name"] == CHECK_NAME and run["head_sha"] == sha]
        return run


@pytest.fixture
def harness(github, key) -> Harness:
    return Harness(github, key)


def open_pull(github: GitHubSandbox, author: str = "bob") -> dict[str, Any]:
    return github.open_pull(REPO, "feature", "Render faster", author=author, files={"app.py": "x = 2\n"})


def coverage_zip(covered: int, valid: int = 100) -> bytes:
    xml = (f'<?xml version="1.0" ?>\n<coverage lines-covered="{covered}" lines-valid="{valid}" '
           f'line-rate="{covered / valid:.4f}" version="7.4"><packages/></coverage>\n')
    return zip_files({"coverage.xml": xml})


def benchmark_zip(mean: float) -> bytes:
    report = {"benchmarks": [{"fullname": BENCH, "stats": {"mean": mean, "stddev": mean / 20, "rounds": 20}}]}
    return zip_files({"benchmark.json": json.dumps(report)})


def store_baseline(harness: Harness, covered: int | None = None, mean: float | None = None) -> None:
    coverage = None if covered is None else Coverage(float(covered), covered, 100, {}, "cobertura")
    benchmarks = None if mean is None else {BENCH: Benchmark(BENCH, mean, mean / 20, 20)}
    harness.store.baselines["main"] = baseline_doc(coverage, benchmarks)


def green_ci(github: GitHubSandbox, sha: str, covered: int = 85, mean: float = 0.1) -> int:
    artifacts = {"coverage": coverage_zip(covered), "benchmarks": benchmark_zip(mean)}
    return github.run_workflow(REPO, "ci", sha, conclusion="success", artifacts=artifacts)


# ---- verdicts ---------------------------------------------------------------------------------

def test_a_green_head_is_approved_measured_and_checked(harness, github):
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    green_ci(github, sha, covered=85, mean=0.101)
    store_baseline(harness, covered=84, mean=0.1)

    outcome = harness.turn(pull)

    assert outcome.status == SUCCEEDED
    assert outcome.details["conclusion"] == "success"
    assert outcome.details["coverage"] == 85.0 and outcome.details["flaky"] == []
    assert "tests passed" in outcome.summary and "Coverage passed: 85.00%" in outcome.summary
    run = harness.check_run(sha)
    assert (run["status"], run["conclusion"], run["external_id"]) == ("completed", "success", "t-1")
    assert run["output"]["title"].startswith("Approved: tests passed, coverage 85.00%")
    assert "| Coverage | Coverage passed: 85.00% (+1.00 vs base 84.00%) |" in run["output"]["summary"]
    assert "✅ ci: success" in run["output"]["summary"]
    [review] = harness.reviews(pull["number"])
    assert (review["state"], review["user"]["login"], review["commit_id"]) == (
        "APPROVED", "agent-ops[bot]", sha)
    assert review["body"].startswith(MARKER) and "http" not in review["body"]
    measured = harness.store.measurements[sha]
    assert measured["coverage"]["lines_covered"] == 85 and measured["benchmarks"]["total"] == 1
    assert measured["pull_number"] == pull["number"]


@pytest.mark.parametrize(("author", "state"), [("bob", "CHANGES_REQUESTED"), ("agent-ops[bot]", "COMMENTED")])
def test_a_coverage_drop_fails_the_check_and_requests_changes_or_comments_on_a_bots_pull(
        harness, github, author, state):
    pull = open_pull(github, author=author)
    sha = pull["head"]["sha"]
    green_ci(github, sha, covered=80)
    store_baseline(harness, covered=90)

    outcome = harness.turn(pull)

    assert outcome.status == SUCCEEDED and outcome.details["conclusion"] == "failure"
    assert "Coverage failed: 80.00% (-10.00 vs base 90.00%)" in outcome.summary
    run = harness.check_run(sha)
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert "coverage fell 10.00 points, more than the allowed 1.00" in run["output"]["summary"]
    [review] = harness.reviews(pull["number"])
    assert review["state"] == state
    assert "❌ Test agent: changes requested" in review["body"]
    if author.endswith("[bot]"):
        assert "this review is a comment" in review["body"]


def test_a_performance_regression_fails(harness, github):
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    green_ci(github, sha, covered=85, mean=0.2)
    store_baseline(harness, covered=85, mean=0.1)

    outcome = harness.turn(pull)

    assert outcome.details["conclusion"] == "failure"
    assert "Performance failed: 1 slower than 10% tolerance" in outcome.summary
    assert f"Slower: {BENCH} +100.00%" in harness.check_run(sha)["output"]["summary"]
    assert [r["state"] for r in harness.reviews(pull["number"])] == ["CHANGES_REQUESTED"]


def test_artifact_problems_are_said_and_nothing_is_measured(harness, github):
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    github.run_workflow(REPO, "ci", sha, conclusion="success", artifacts={"coverage": b"not a zip"})
    store_baseline(harness, covered=85)

    outcome = harness.turn(pull)

    assert outcome.details["conclusion"] == "success" and outcome.details["coverage"] is None
    summary = harness.check_run(sha)["output"]["summary"]
    assert "### Problems" in summary and "artifact coverage: not a readable zip file" in summary
    assert "coverage was not measured" in summary
    assert harness.store.measurements == {}


# ---- waiting and re-running -------------------------------------------------------------------

def test_pending_ci_parks_the_task_on_the_heads_events_and_says_so_once(harness, github):
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    github.set_status(REPO, sha, "pending", context="lint")

    first = harness.turn(pull)

    assert first.status == RUNNING
    assert list(first.waits_for) == wait_keys(REPO, sha)
    run = harness.check_run(sha)
    assert run["status"] == "in_progress" and "waiting for CI" in run["output"]["summary"]
    assert "lint" in run["output"]["summary"]
    patches = len([r for r in github.requests if r[0] == "PATCH" and "/check-runs/" in r[1]])

    again = harness.turn(pull, first.checkpoint)
    assert again.status == RUNNING and again.checkpoint["check_run_id"] == run["id"]
    assert len([r for r in github.requests if r[0] == "PATCH" and "/check-runs/" in r[1]]) == patches
    assert len([r for r in github.check_runs.values() if r["name"] == CHECK_NAME]) == 1

    github.set_status(REPO, sha, "success", context="lint")
    done = harness.turn(pull, again.checkpoint)
    assert done.status == SUCCEEDED and done.details["conclusion"] == "success"
    assert harness.check_run(sha)["conclusion"] == "success"


def test_a_failed_run_is_rerun_once_and_a_pass_on_the_rerun_is_flaky(harness, github):
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    run_id = github.run_workflow(REPO, "ci", sha, conclusion="failure")
    github.script_rerun(REPO, run_id, "success")

    first = harness.turn(pull)

    assert first.status == RUNNING
    assert f"workflow_run:{REPO}#{run_id}" in first.waits_for
    assert first.checkpoint["reruns"] == {str(run_id): "failure"}
    assert harness.check_run(sha)["output"]["title"] == "Re-running failed jobs"
    assert ("POST", f"/repos/{REPO}/actions/runs/{run_id}/rerun-failed-jobs", 201) in github.requests

    second = harness.turn(pull, first.checkpoint)

    assert second.status == SUCCEEDED
    assert second.details["flaky"] == ["ci"] and second.details["tests"] == "flaky"
    assert second.details["conclusion"] == "success"
    assert harness.store.flaky["ci"]["count"] == 1 and harness.store.flaky["ci"]["last_sha"] == sha
    assert "Flaky tests (failed, then passed on rerun)" in harness.check_run(sha)["output"]["summary"]
    reruns = [r for r in github.requests if r[1].endswith("/rerun-failed-jobs")]
    assert len(reruns) == 1


def test_a_rerun_is_flaky_even_when_the_turn_that_asked_for_it_left_no_checkpoint(harness, github):
    # Two events woke the task at once; the turn that sees the re-run's pass never got the
    # checkpoint of the turn that asked for it. The first attempt's failure is read from GitHub.
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    run_id = github.run_workflow(REPO, "ci", sha, conclusion="failure")
    github.script_rerun(REPO, run_id, "success")
    harness.turn(pull)  # re-runs it; its checkpoint is dropped below

    raced = harness.turn(pull, {})

    assert raced.status == SUCCEEDED and raced.details["flaky"] == ["ci"]
    assert raced.checkpoint["reruns"] == {str(run_id): "failure"}
    assert len([r for r in github.requests if r[1].endswith("/rerun-failed-jobs")]) == 1


def test_a_rerun_github_refuses_is_a_failure_not_a_wait(harness, github, monkeypatch):
    # A token without `actions: write` (an installation that did not accept the new permission).
    monkeypatch.setitem(permissions.AGENT_PERMISSIONS, "test",
                        {**permissions.AGENT_PERMISSIONS["test"], "actions": "read"})
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    github.run_workflow(REPO, "ci", sha, conclusion="failure")

    outcome = harness.turn(pull)

    assert outcome.status == SUCCEEDED and outcome.details["conclusion"] == "failure"
    assert outcome.details["failed"] == ["ci"]
    summary = harness.check_run(sha)["output"]["summary"]
    assert "could not re-run the failed jobs of workflow run" in summary
    assert [r["state"] for r in harness.reviews(pull["number"])] == ["CHANGES_REQUESTED"]


# ---- the one review ---------------------------------------------------------------------------

def test_the_review_is_updated_in_place_while_its_verdict_stays(harness, github):
    pull = open_pull(github)
    first_sha = pull["head"]["sha"]
    green_ci(github, first_sha)
    assert harness.turn(pull, task_id="t-1").details["review"] == "submitted"
    [review] = harness.reviews(pull["number"])

    second_sha = github.push_commit(REPO, "feature", {"app.py": "x = 3\n"}, author="bob")
    green_ci(github, second_sha, covered=86)
    outcome = harness.turn(harness.pull(pull["number"]), task_id="t-2")

    assert outcome.details["review"] == "updated"
    [updated] = harness.reviews(pull["number"])
    assert updated["id"] == review["id"] and updated["state"] == "APPROVED"
    assert second_sha[:12] in updated["body"] and "86.00%" in updated["body"]
    assert harness.turn(harness.pull(pull["number"]), task_id="t-2").details["review"] == "unchanged"

    third_sha = github.push_commit(REPO, "feature", {"app.py": "x = 4\n"}, author="bob")
    github.run_workflow(REPO, "ci", third_sha, conclusion="timed_out")
    harness.policy = dataclasses.replace(DEFAULT_POLICY, tests=dataclasses.replace(
        DEFAULT_POLICY.tests, rerun_failed=False))
    assert harness.turn(harness.pull(pull["number"]), task_id="t-3").details["review"] == "submitted"
    assert [r["state"] for r in harness.reviews(pull["number"])] == ["APPROVED", "CHANGES_REQUESTED"]


# ---- the edges --------------------------------------------------------------------------------

def test_a_head_that_moved_on_ends_the_task_without_a_review(harness, github):
    pull = open_pull(github)
    github.set_status(REPO, pull["head"]["sha"], "pending", context="lint")
    waiting = harness.turn(pull)
    github.push_commit(REPO, "feature", {"app.py": "x = 5\n"}, author="bob")

    outcome = harness.turn(pull, waiting.checkpoint)

    assert outcome.status == SUCCEEDED and "head moved on" in outcome.summary
    run = harness.check_run(pull["head"]["sha"])
    assert (run["status"], run["conclusion"]) == ("completed", "neutral")
    assert harness.reviews(pull["number"]) == []


def test_a_failure_of_the_agent_completes_its_check_run_neutral(harness, github, key):
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    green_ci(github, sha)

    class Broken(MemoryStore):
        def baseline(self, repository: str, ref: str) -> dict[str, Any] | None:
            raise RuntimeError("boom")

    harness.store = Broken()
    published: list[bytes] = []

    class Publisher:
        def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
            published.append(data)
            return "m-1"

    runner = AgentRunner(harness.agent, publisher=lambda: Publisher(), tasks=lambda: _NoStops(),
                         audit=lambda: harness.audit, github=lambda: harness.app,
                         policy_for=lambda client, repository: PolicyLoad(DEFAULT_POLICY, "file"),
                         links=Links())
    context = harness.context({"pull_number": pull["number"], "head_sha": sha, "base_ref": "main"})
    outcome = runner._turn(context)

    assert outcome.status == FAILED and "RuntimeError" in outcome.summary
    run = harness.check_run(sha)
    assert (run["status"], run["conclusion"]) == ("completed", "neutral")
    assert run["output"]["title"] == FAILED_TITLE
    assert "not a verdict on the pull request" in run["output"]["summary"]

    harness.store = MemoryStore()  # fixed; the orchestrator retries the task
    retried = harness.agent.handle(harness.context(
        {"pull_number": pull["number"], "head_sha": sha, "base_ref": "main"}, attempt=2))
    assert retried.status == SUCCEEDED
    run = harness.check_run(sha)
    assert run["conclusion"] == "success"
    assert run["output"]["title"] == "Approved: tests passed, coverage 85.00%"


class _NoStops:
    def stop_reason(self, agent: str, repository: str, number: int = 0) -> str:
        return ""

    def claim_turn(self, task_id: str, holder: str, now: Any, ttl: Any) -> bool:
        return True

    def release_turn(self, task_id: str, holder: str) -> None:
        return None


def test_a_merge_promotes_the_heads_measurement_to_the_baseline(harness, github):
    pull = open_pull(github)
    sha = pull["head"]["sha"]
    green_ci(github, sha, covered=88)
    harness.turn(pull)
    merge_sha = "f" * 40
    inputs = {"pull_number": pull["number"], "merge_commit_sha": merge_sha, "base_ref": "main",
              "pull_head_sha": sha}

    outcome = harness.agent.handle(harness.context(inputs, kind="update_baseline", task_id="t-merge"))

    assert outcome.status == SUCCEEDED and outcome.details["promoted"] is True
    assert "the main baseline is now the measurement of" in outcome.summary and "88.00%" in outcome.summary
    baseline = harness.store.baselines["main"]
    assert (baseline["sha"], baseline["head_sha"]) == (merge_sha, sha)
    assert baseline["coverage"]["lines_covered"] == 88

    missing = dict(inputs, pull_head_sha="e" * 40)
    nothing = harness.agent.handle(harness.context(missing, kind="update_baseline", task_id="t-merge-2"))
    assert nothing.status == SUCCEEDED and nothing.summary.startswith("no measurement to promote")
    assert harness.store.baselines["main"]["sha"] == merge_sha
