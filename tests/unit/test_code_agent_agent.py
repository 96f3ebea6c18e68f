"""The code agent's turns against the GitHub sandbox: claim, branch, commit, pull request, failure."""

from __future__ import annotations

from typing import Any

import pytest

from functions.code_agent.agent import CodeAgent
from tests.support.agents import REPO, harness

PATCH = """\
Please greet people.

```diff
--- a/app/main.py
+++ b/app/main.py
@@ -4,2 +4,6 @@
 def health() -> dict:
     return {"status": "ok"}
+
+
+def hello(name: str) -> str:
+    return f"hello {name}"
```
"""


@pytest.fixture
def h():
    with harness() as running:
        yield running


def agent() -> CodeAgent:
    return CodeAgent(app_login=lambda: "agent-ops[bot]")


def issue(h, body: str = PATCH, author: str = "bob", title: str = "Add a greeting") -> int:
    number = int(h.github.open_issue(REPO, title, body, author=author)["number"])
    h.github.add_label(REPO, number, "agent-task", actor="alice")
    return number


def inputs(number: int) -> dict[str, Any]:
    return {"issue_number": number, "title": "Add a greeting"}


def pulls(h) -> list[dict[str, Any]]:
    return [p for p in h.github.state()["pulls"] if p["repo"] == REPO]


def comments(h, number: int) -> list[dict[str, Any]]:
    return [c for c in h.github.state()["comments"] if c["repo"] == REPO and c["issue_number"] == number]


def test_a_patch_issue_becomes_one_pull_request_with_its_change_and_reviewers(h):
    number = issue(h)
    result = h.turn(agent(), "implement_issue", inputs(number))
    assert result.status == "succeeded", result.summary
    branch = f"agent/{number}-add-a-greeting"
    assert 'def hello(name: str) -> str:' in h.github.files(REPO, branch)["app/main.py"]
    assert "def hello" not in h.github.files(REPO, "main")["app/main.py"]  # never the default branch
    [pull] = pulls(h)
    assert pull["head_ref"] == branch and f"Closes #{number}" in pull["body"]
    assert "- [ ] Tests added or updated" in pull["body"]
    assert "https://agentops.example.com/tasks/task-1" in pull["body"]
    assert pull["requested_teams"] == ["maintainers"]  # from CODEOWNERS: * @octo/maintainers
    assert result.detail_values()["pull_number"] == pull["number"]
    [status] = comments(h, number)
    assert f"Opened #{pull['number']}" in status["body"] and "audit" in status["body"]
    labels = h.github.labels(REPO, number)
    assert "agent:in-progress" not in labels and "agent:failed" not in labels
    assert h.github.state().get("force_pushes", []) == []


def test_a_redelivered_task_makes_no_second_claim_branch_or_pull_request(h):
    number = issue(h)
    first = h.turn(agent(), "implement_issue", inputs(number))
    second = h.turn(agent(), "implement_issue", inputs(number))
    assert first.status == second.status == "succeeded"
    assert len(pulls(h)) == 1
    assert len(comments(h, number)) == 1
    git_writes = [r for r in h.audit.records.values()
                  if r["action"] in ("create_branch", "open_pull_request")]
    assert len(git_writes) == 2


@pytest.mark.parametrize("path", [".github/workflows/deploy.yml", ".github/workflows/ci.yaml"])
def test_a_protected_path_is_refused_and_the_issue_is_told_how_to_go_on(h, path):
    body = f"```diff\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+on: push\n```\n"
    number = issue(h, body)
    result = h.turn(agent(), "implement_issue", inputs(number))
    assert result.status == "failed" and "protected" in result.summary and path in result.summary
    failure = comments(h, number)[-1]["body"]
    assert "could not finish" in failure and "`/retry`" in failure and "`/cancel`" in failure
    assert "agent:failed" in h.github.labels(REPO, number)
    assert "agent:in-progress" not in h.github.labels(REPO, number)
    assert pulls(h) == []
    assert not any(write["ref"].startswith("refs/heads/agent/") for write in h.github.state()["ref_writes"])


def test_a_patch_from_a_reader_is_refused(h):
    number = issue(h, author="carol")
    result = h.turn(agent(), "implement_issue", inputs(number))
    assert result.status == "failed" and "write access" in result.summary and "@carol" in result.summary
    assert pulls(h) == []


def test_a_patch_that_does_not_apply_says_where(h):
    number = issue(h, PATCH.replace('return {"status": "ok"}', 'return {"status": "nope"}'))
    result = h.turn(agent(), "implement_issue", inputs(number))
    assert result.status == "failed" and "does not apply" in result.summary
    assert "app/main.py" in result.summary


def test_an_issue_without_a_patch_fails_truthfully(h):
    number = issue(h, "Please make it faster.")
    result = h.turn(agent(), "implement_issue", inputs(number))
    assert result.status == "failed" and "no ```diff block" in result.summary
    assert pulls(h) == []


def test_caps_refuse_a_change_that_is_too_big(h):
    h.github.set_file(REPO, ".github/agent-ops.yml", "version: 1\ncode: {max_lines: 2}\n")
    number = issue(h)
    result = h.turn(agent(), "implement_issue", inputs(number))
    assert result.status == "failed" and "the limit is 2" in result.summary


def test_hostile_issue_title_makes_a_safe_branch_and_title(h):
    title = "`rm -rf /` @everyone ../../etc/passwd"
    number = issue(h, title=title)
    result = h.turn(agent(), "implement_issue", {"issue_number": number, "title": title})
    assert result.status == "succeeded", result.summary
    [pull] = pulls(h)
    assert pull["head_ref"] == f"agent/{number}-rm-rf-everyone-etc-passwd"
    assert "@everyone" not in pull["title"]


def test_the_workflow_implementer_follows_the_run_until_it_pushes(h):
    h.github.set_file(REPO, ".github/agent-ops.yml", "version: 1\ncode: {implementer: workflow}\n")
    number = issue(h, "Make the greeting.")
    waiting = h.turn(agent(), "implement_issue", inputs(number))
    assert waiting.status == "running"
    [dispatch] = h.github.state()["dispatches"]
    branch = f"agent/{number}-add-a-greeting"
    assert dispatch["inputs"] == {"issue": str(number), "branch": branch}
    keys = waiting.detail_values()["waits_for"]
    assert any(key.startswith(f"workflow:{REPO}@") for key in keys)
    run = next(r for r in h.github.state()["workflow_runs"] if r.get("event") == "workflow_dispatch")
    h.github.complete_workflow_run(REPO, run["id"], "success",
                                   push={"branch": branch, "files": {"app/hello.py": "print('hi')\n"},
                                         "message": "Greeting"})
    done = h.turn(agent(), "implement_issue", inputs(number), wake={"event": "workflow_run"})
    assert done.status == "succeeded", done.summary
    [pull] = pulls(h)
    assert pull["head_ref"] == branch


def test_a_workflow_that_pushes_nothing_is_a_failure_not_a_success(h):
    h.github.set_file(REPO, ".github/agent-ops.yml", "version: 1\ncode: {implementer: workflow}\n")
    number = issue(h, "Make the greeting.")
    h.turn(agent(), "implement_issue", inputs(number))
    run = next(r for r in h.github.state()["workflow_runs"] if r.get("event") == "workflow_dispatch")
    h.github.complete_workflow_run(REPO, run["id"], "success")
    done = h.turn(agent(), "implement_issue", inputs(number))
    assert done.status == "failed" and "pushed no commits" in done.summary
    assert pulls(h) == []
