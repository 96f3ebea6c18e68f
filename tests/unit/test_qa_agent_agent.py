"""The QA agent's turns against the GitHub sandbox: the agent-ops/qa check run and the approval gate."""

from __future__ import annotations

from typing import Any

import pytest

from functions.qa_agent.agent import QaAgent
from tests.support.agents import REPO, harness

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # made here, so no file holds a real-looking one


@pytest.fixture
def h():
    with harness() as running:
        yield running


def open_pull(h, files: dict[str, str], body: str = "Closes #1\n\n- [x] tests") -> dict[str, Any]:
    return h.github.open_pull(REPO, "feature", "A change", body=body, author="bob", files=files)


def turn(h, pull: dict[str, Any], approval: dict[str, Any] | None = None, sha: str | None = None):
    return h.turn(QaAgent(), "review_pull_request",
                  {"pull_number": pull["number"], "head_sha": sha or pull["head"]["sha"]}, approval=approval)


def qa_run(h, sha: str) -> dict[str, Any]:
    runs = h.github.state()["check_runs"]
    [run] = [r for r in runs if r["name"] == "agent-ops/qa" and r["head_sha"] == sha]
    return run


def test_a_small_tested_change_passes_with_its_reasons(h):
    pull = open_pull(h, {"app/greet.py": "def hi():\n    return 'hi'\n",
                         "tests/test_greet.py": "def test_hi():\n    assert True\n"})
    result = turn(h, pull)
    assert result.status == "succeeded" and "risk" in result.summary
    run = qa_run(h, pull["head"]["sha"])
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert "low" in run["output"]["title"].lower()


def test_a_secret_fails_the_check_and_is_never_echoed(h):
    pull = open_pull(h, {"app/config.py": f'GITHUB_TOKEN = "{TOKEN}"\n',
                         "tests/test_config.py": "def test_x():\n    assert True\n"})
    result = turn(h, pull)
    run = qa_run(h, pull["head"]["sha"])
    assert run["conclusion"] == "failure"
    assert "app/config.py:1" in run["output"]["summary"]
    everything = repr(h.github.state()) + repr(h.publisher.results) + repr(h.audit.records)
    assert TOKEN not in everything and TOKEN[4:20] not in everything
    assert result.status == "succeeded" and "secret" in result.summary


def test_a_high_risk_change_waits_for_a_human_and_passes_once_approved(h):
    big = "".join(f"line = {n}\n" for n in range(1200))
    pull = open_pull(h, {".github/workflows/release.yml": "on: push\n", "app/big.py": big}, body="No issue.")
    sha = pull["head"]["sha"]
    waiting = turn(h, pull)
    assert waiting.status == "waiting_approval"
    approval = waiting.detail_values()["approval"]
    assert (approval["step"], approval["head_sha"]) == ("high_risk", sha)
    assert approval["pull_number"] == pull["number"]
    assert approval["rule"]["permission"] == "write"
    run = qa_run(h, sha)
    assert run["conclusion"] == "action_required"
    assert ".github/workflows/release.yml" in run["output"]["summary"]

    granted = turn(h, pull, approval={"step": "high_risk", "head_sha": sha, "approved_by": ["alice"]})
    assert granted.status == "succeeded" and "@alice" in granted.summary
    run = qa_run(h, sha)
    assert run["conclusion"] == "success" and "@alice approved" in run["output"]["summary"]


def test_an_approval_of_an_older_head_does_not_pass_the_new_one(h):
    big = "".join(f"line = {n}\n" for n in range(1200))
    pull = open_pull(h, {".github/workflows/release.yml": "on: push\n", "app/big.py": big}, body="No issue.")
    result = turn(h, pull, approval={"step": "high_risk", "head_sha": "0" * 40, "approved_by": ["alice"]})
    assert result.status == "waiting_approval"


def test_a_head_that_moved_on_gets_no_report(h):
    pull = open_pull(h, {"app/a.py": "a = 1\n"})
    old = pull["head"]["sha"]
    h.github.push_commit(REPO, "feature", {"app/a.py": "a = 2\n"}, author="bob")
    result = turn(h, pull, sha=old)
    assert result.status == "succeeded" and "moved on" in result.summary
    assert [r for r in h.github.state()["check_runs"] if r["name"] == "agent-ops/qa"] == []
