"""The code agent's turns against the GitHub sandbox: claim, branch, commit, pull request, failure."""

from __future__ import annotations

from typing import Any

import pytest

from functions.code_agent.agent import CodeAgent
from shared.errors import RetryableError
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


def protected_issue(h, text: str = "on: push") -> int:
    h.github.set_file(REPO, ".github/agent-ops.yml",
                      "version: 1\napprovals:\n  protected_paths: {count: 1, permission: maintain}\n")
    body = f"```diff\n--- /dev/null\n+++ b/.github/workflows/x.yml\n@@ -0,0 +1 @@\n+{text}\n```\n"
    return issue(h, body)


def test_a_protected_path_waits_for_its_approval_and_goes_only_with_the_change_approved(h):
    number = protected_issue(h)
    waiting = h.turn(agent(), "implement_issue", inputs(number))
    assert waiting.status == "waiting_approval", waiting.summary
    request = waiting.detail_values()["approval"]
    assert (request["step"], request["pull_number"], request["rule"]["permission"]) == (
        "protected_paths", number, "maintain")
    assert pulls(h) == []

    # A grant is for the change it was asked for: another change (here another issue's task,
    # standing in for an edited issue) is not approved by it.
    granted = {"step": "protected_paths", "approved_by": ["alice"], "head_sha": ""}
    other = protected_issue(h, "on: [push, pull_request]")
    again = h.turn(agent(), "implement_issue", inputs(other), task_id="task-2", approval=granted)
    assert again.status == "waiting_approval"  # nothing approved for this task's change yet

    done = h.turn(agent(), "implement_issue", inputs(number), approval=granted)
    assert done.status == "succeeded", done.summary
    [pull] = [p for p in pulls(h) if p["head_ref"].startswith(f"agent/{number}-")]
    assert ".github/workflows/x.yml" in h.github.files(REPO, pull["head_ref"])


def test_a_retry_of_a_failed_workflow_runs_it_again(h):
    h.github.set_file(REPO, ".github/agent-ops.yml", "version: 1\ncode: {implementer: workflow}\n")
    number = issue(h, "Make the greeting.")
    h.turn(agent(), "implement_issue", inputs(number))
    [run] = [r for r in h.github.state()["workflow_runs"] if r.get("event") == "workflow_dispatch"]
    h.github.complete_workflow_run(REPO, run["id"], "failure")
    failed = h.turn(agent(), "implement_issue", inputs(number))
    assert failed.status == "failed" and "ended failure" in failed.summary

    retry = h.turn(agent(), "implement_issue", inputs(number), attempt=2)
    assert retry.status == "running"
    assert len(h.github.state()["dispatches"]) == 2


def test_a_dispatch_that_gets_a_502_is_retried_and_not_taken_as_done(h):
    h.github.set_file(REPO, ".github/agent-ops.yml", "version: 1\ncode: {implementer: workflow}\n")
    number = issue(h, "Make the greeting.")
    h.github.inject_fault("server_error", count=1, path_prefix=f"/repos/{REPO}/actions/workflows/")
    with pytest.raises(RetryableError):  # the message is retried by Pub/Sub
        h.turn(agent(), "implement_issue", inputs(number))
    assert h.github.state()["dispatches"] == []
    assert h.turn(agent(), "implement_issue", inputs(number)).status == "running"
    assert len(h.github.state()["dispatches"]) == 1


@pytest.fixture
def llm():
    from sandbox.llm.server import LlmSandbox

    sandbox = LlmSandbox("test-key")
    url = sandbox.start()
    yield sandbox, url
    sandbox.close()


def llm_agent(url: str) -> CodeAgent:
    from functions.code_agent.llm import LlmClient

    return CodeAgent(llm=lambda model: LlmClient("anthropic", url, model or "m", api_key=lambda: "test-key"),
                     app_login=lambda: "agent-ops[bot]")


LLM_DIFF = ("```diff\n--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,4 @@\n # widgets\n \n"
            " A small service the agents look after.\n+It greets people.\n```\nSays what it does.")


def test_the_llm_implementer_commits_the_models_diff_and_reports_its_tokens(h, llm):
    sandbox, url = llm
    h.github.set_file(REPO, ".github/agent-ops.yml", "version: 1\ncode: {implementer: llm}\n")
    sandbox.script_reply(LLM_DIFF)
    secret = "ghp_" + "Q" * 36
    number = issue(h, f"Explain the service in README.md. Deploy key: {secret}")
    result = h.turn(llm_agent(url), "implement_issue", inputs(number))
    assert result.status == "succeeded", result.summary
    [pull] = pulls(h)
    assert "It greets people." in h.github.files(REPO, pull["head_ref"])["README.md"]
    assert "Says what it does." in pull["body"]
    cost = result.detail_values()["cost"]
    assert cost["units"] == cost["llm_input_tokens"] + cost["llm_output_tokens"] > 0
    [request] = sandbox.requests()
    sent = str(request)
    assert "# widgets" in sent and secret not in sent and "test-key" not in sent


def test_an_llm_answer_without_a_diff_fails_truthfully_and_still_costs_its_tokens(h, llm):
    sandbox, url = llm
    h.github.set_file(REPO, ".github/agent-ops.yml", "version: 1\ncode: {implementer: llm}\n")
    sandbox.script_reply("I would rather not.")
    number = issue(h, "Explain the service in README.md.")
    result = h.turn(llm_agent(url), "implement_issue", inputs(number))
    assert result.status == "failed" and "no diff" in result.summary
    assert result.detail_values()["cost"]["units"] > 0
    assert pulls(h) == [] and "agent:failed" in h.github.labels(REPO, number)
