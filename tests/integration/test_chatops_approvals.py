"""The orchestrator's ChatOps, approval gates and policy reports, on the emulators and a fake GitHub."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from functions.orchestrator import core
from shared import topology
from shared.messages import AgentTask, AgentTaskResult, GithubEvent, now_millis
from tests.support import github as examples
from tests.support.pubsub import drain, tap
from tests.support.push import push

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"
INSTALLATION = 77
APP_LOGIN = "agent-ops[bot]"
QUIET = 0.3  # how long an agent topic must stay silent to count as "nothing was dispatched"


# ---- building events -------------------------------------------------------------------------


def github_event(event: str, body: dict[str, Any], delivery_id: str | None = None) -> GithubEvent:
    body["installation"] = {"id": INSTALLATION}
    body["repository"].update(full_name=REPO, name="widgets", default_branch="main")
    body["repository"]["owner"]["login"] = "octo"
    return GithubEvent(
        delivery_id=delivery_id or str(uuid.uuid4()),
        event=event,
        action=body.get("action", ""),
        repository=REPO,
        installation_id=INSTALLATION,
        sender=(body.get("sender") or {}).get("login", ""),
        hook_id=0,
        received_at=now_millis(),
        payload=json.dumps(body),
    )


def labelled(number: int) -> GithubEvent:
    body = examples.example("issues", "labeled")
    body["issue"]["number"] = number
    body["label"]["name"] = core.AGENT_TASK_LABEL
    return github_event("issues", body)


def pull_event(action: str, number: int, head_sha: str) -> GithubEvent:
    body = examples.example("pull_request", action)
    body["number"] = number
    body["pull_request"].update(number=number)
    body["pull_request"]["head"]["sha"] = head_sha
    return github_event("pull_request", body)


def comment_event(fake, number: int, text: str, author: str, user_type: str = "User",
                  via_app: bool = False, pull: bool = False) -> tuple[GithubEvent, dict[str, Any]]:
    """A comment written on the fake, and the `issue_comment.created` event GitHub sends for it."""
    comment = fake.add_comment(REPO, number, text, author=author, user_type=user_type)
    body = examples.example("issue_comment", "created")
    body["issue"]["number"] = number
    if pull:
        body["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
    user = {"login": author, "id": 1, "type": user_type}
    body["comment"].update(id=comment["id"], body=text, user=user,
                           html_url=f"https://github.com/{REPO}/issues/{number}#issuecomment-{comment['id']}")
    if via_app:
        body["comment"]["performed_via_github_app"] = {"id": int(fake.app_id), "slug": fake.app_slug}
    body["sender"] = user
    return github_event("issue_comment", body), comment


def review_event(number: int, reviewer: str, commit_id: str, user_type: str = "User") -> GithubEvent:
    body = examples.example("pull_request_review", "submitted")
    body["pull_request"]["number"] = number
    body["review"].update(state="approved", commit_id=commit_id,
                          user={"login": reviewer, "id": 2, "type": user_type})
    body["sender"] = {"login": reviewer, "id": 2, "type": user_type}
    return github_event("pull_request_review", body)


# ---- reading what happened -------------------------------------------------------------------


@pytest.fixture
def taps(admin):
    return {agent.name: tap(admin, agent.topic) for agent in topology.AGENTS}


@pytest.fixture
def send(function_client, project):
    client = function_client("orchestrator")

    def send(message, topic: str = topology.GITHUB_EVENTS) -> None:
        response = push(client, project, topic, message.encode())
        assert response.status_code == 200, response.text

    return send


def tasks_on(admin, taps, agent: str, expect: int | None = None) -> list[AgentTask]:
    return [AgentTask.decode(m.data) for m in drain(admin, taps[agent], settle=QUIET, expect=expect)]


def replies(fake, number: int) -> list[str]:
    return [c["body"] for c in fake.comments if c["user"] == APP_LOGIN and c["issue_number"] == number]


def audit(services, **match: Any) -> list[dict[str, Any]]:
    records = [d.to_dict() for d in services.firestore().collection("audit").stream()]
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def the_task(services, kind: str) -> dict[str, Any]:
    found = [t for t in services.tasks().query(repository=REPO) if t["kind"] == kind]
    assert len(found) == 1, found
    return found[0]


def result(task: dict[str, Any], status: str, details: dict[str, Any] | None = None) -> AgentTaskResult:
    return AgentTaskResult(task["task_id"], task["agent"], int(task["attempt"]), status, f"agent: {status}",
                           json.dumps(details or {}), now_millis())


# ---- ChatOps ---------------------------------------------------------------------------------


def test_hold_from_a_reader_is_refused_once_however_often_it_is_delivered(github, services, send):
    github.add_repo(REPO)
    github.add_issue(REPO, 5)
    github.set_permission(REPO, "reader", "read")
    event, comment = comment_event(github, 5, "/hold", "reader")

    send(event)

    assert [(r["comment_id"], r["content"]) for r in github.reactions] == [(comment["id"], "-1")]
    [reply] = replies(github, 5)
    assert "`/hold` needs the **write** role" in reply and "you have **read**" in reply
    [refused] = audit(services, outcome="refused", action="chatops_hold")
    assert (refused["actor"], refused["subject"], refused["repository"]) == ("reader", f"{REPO}#5", REPO)
    assert refused["delivery_id"] == event.delivery_id
    assert not services.tasks().repo_state(REPO).get("holds")

    send(event)  # the same delivery again
    again = GithubEvent(**{**event.__dict__, "delivery_id": str(uuid.uuid4())})
    send(again)  # a new delivery of the same comment
    assert len(replies(github, 5)) == 1
    assert len(github.reactions) == 1
    assert len(audit(services, outcome="refused")) == 1
    assert not services.tasks().repo_state(REPO).get("holds")


def test_hold_from_a_writer_keeps_a_task_queued_until_unhold(github, services, send, admin, taps):
    github.add_repo(REPO)
    github.add_issue(REPO, 7)
    github.set_permission(REPO, "writer", "write")

    hold, _ = comment_event(github, 7, "/hold waiting for the design", "writer")
    send(hold)
    holds = services.tasks().repo_state(REPO)["holds"]
    assert holds["7"]["by"] == "@writer" and holds["7"]["reason"] == "waiting for the design"

    send(labelled(7))
    task = the_task(services, "implement_issue")
    assert task["status"] == "queued"
    assert "on hold by @writer" in task["waiting_on"]
    assert tasks_on(admin, taps, "code") == []

    send(comment_event(github, 7, "/unhold", "writer")[0])
    [dispatched] = tasks_on(admin, taps, "code", expect=1)
    assert dispatched.task_id == task["task_id"]
    assert services.tasks().get(task["task_id"])["status"] == "dispatched"
    assert not services.tasks().repo_state(REPO).get("holds")
    held, released = replies(github, 7)
    assert held.startswith("@writer Held #7")
    assert released.startswith("@writer Released #7; 1 waiting task(s) dispatched")
    assert [r["actor"] for r in audit(services, action="chatops_hold", outcome="ok")] == ["writer"]
    [unhold] = audit(services, action="chatops_unhold", outcome="ok")
    assert unhold["facts"]["role"] == "write"

    send(GithubEvent(**{**hold.__dict__, "delivery_id": str(uuid.uuid4())}))  # a late redelivery
    assert not services.tasks().repo_state(REPO).get("holds")
    assert len(replies(github, 7)) == 2


def test_the_apps_own_comment_and_a_bots_comment_are_not_obeyed(github, services, send):
    github.add_repo(REPO)
    github.add_issue(REPO, 3)
    github.set_permission(REPO, "dependabot[bot]", "write")

    send(comment_event(github, 3, "Say `/hold` to stop me.\n/hold", APP_LOGIN, "Bot", via_app=True)[0])
    send(comment_event(github, 3, "/hold", "dependabot[bot]", "Bot")[0])

    assert len(replies(github, 3)) == 1  # only the App's own comment, written above
    assert github.reactions == []
    assert not services.tasks().repo_state(REPO).get("holds")
    ignored = audit(services, action="chatops_ignored")
    assert sorted((r["actor"], r["outcome"]) for r in ignored) == [
        (APP_LOGIN, "ignored"), ("dependabot[bot]", "ignored")]
    assert sorted(r["facts"]["reason"] for r in ignored) == [
        "dependabot[bot] is a bot", "the comment is the App's own"]
    assert [r for r in audit(services) if r["action"] != "chatops_ignored"] == []


def test_agents_pause_and_resume_need_a_maintainer(github, services, send, admin, taps):
    github.add_repo(REPO)
    github.add_issue(REPO, 9)
    github.set_permission(REPO, "writer", "write")
    github.set_permission(REPO, "lead", "maintain")

    send(comment_event(github, 9, "/agents pause", "writer")[0])
    assert not services.tasks().repo_state(REPO).get("paused")
    assert "`/agents pause` needs the **maintain** role" in replies(github, 9)[-1]

    send(comment_event(github, 9, "/agents pause", "lead")[0])
    state = services.tasks().repo_state(REPO)
    assert state["paused"] is True and state["paused_by"] == "@lead"

    send(pull_event("opened", 12, "a" * 40))
    test, qa = the_task(services, "test_pull_request"), the_task(services, "review_pull_request")
    assert [(t["status"], "paused" in t["waiting_on"]) for t in (test, qa)] == [("queued", True)] * 2
    assert tasks_on(admin, taps, "test") == [] and tasks_on(admin, taps, "qa") == []

    send(comment_event(github, 9, "/agents resume", "lead")[0])
    assert [t.task_id for t in tasks_on(admin, taps, "test", expect=1)] == [test["task_id"]]
    assert [t.task_id for t in tasks_on(admin, taps, "qa", expect=1)] == [qa["task_id"]]
    assert not services.tasks().repo_state(REPO)["paused"]
    refused, paused, resumed = replies(github, 9)
    assert paused.startswith("@lead Paused every agent in octo/widgets")
    assert resumed.startswith("@lead Resumed the agents in octo/widgets; 2 waiting task(s) dispatched")
    assert [r["actor"] for r in audit(services, action="chatops_agents_pause", outcome="refused")] == [
        "writer"]
    assert [r["actor"] for r in audit(services, action="chatops_agents_pause", outcome="ok")] == ["lead"]
    assert [r["actor"] for r in audit(services, action="chatops_agents_resume", outcome="ok")] == ["lead"]


def test_agents_status_lists_the_open_tasks(github, services, send, admin, taps):
    github.add_repo(REPO)
    github.add_issue(REPO, 4)
    github.set_permission(REPO, "reader", "read")
    send(pull_event("opened", 14, "b" * 40))
    test, qa = the_task(services, "test_pull_request"), the_task(services, "review_pull_request")
    send(result(test, "succeeded"), topology.AGENT_RESULTS)

    send(comment_event(github, 4, "/agents status", "reader")[0])

    [reply] = replies(github, 4)
    assert reply.startswith("@reader Agents in octo/widgets are **running**.")
    assert "| task | agent | status | waiting on |" in reply
    assert f"| `{qa['task_id']}` | qa | dispatched | - |" in reply
    assert test["task_id"] not in reply  # finished, so not open
    assert [r["actor"] for r in audit(services, action="chatops_agents_status", outcome="ok")] == ["reader"]


def test_retry_revives_a_failed_task_and_cancel_stops_a_dispatched_one(github, services, send, admin, taps):
    github.add_repo(REPO)
    github.add_issue(REPO, 20)
    github.set_permission(REPO, "writer", "write")
    send(labelled(20))
    [first] = tasks_on(admin, taps, "code", expect=1)
    send(result(the_task(services, "implement_issue"), "failed"), topology.AGENT_RESULTS)
    assert the_task(services, "implement_issue")["status"] == "failed"

    send(comment_event(github, 20, "/retry", "writer")[0])
    [second] = tasks_on(admin, taps, "code", expect=1)
    assert (second.task_id, first.attempt, second.attempt) == (first.task_id, 1, 2)
    retried = the_task(services, "implement_issue")
    assert (retried["status"], retried["attempt"]) == ("dispatched", 2)

    send(comment_event(github, 20, "/cancel", "writer")[0])
    cancelled = the_task(services, "implement_issue")
    assert cancelled["status"] == "cancelled"
    assert "/cancel by @writer" in cancelled["history"][-1]["reason"]
    assert tasks_on(admin, taps, "code") == []
    retry_reply, cancel_reply = replies(github, 20)
    assert f"Retrying: `{first.task_id}` (dispatched)." in retry_reply
    assert f"Cancelled `{first.task_id}`." in cancel_reply
    assert audit(services, action="chatops_retry", outcome="ok")[0]["facts"]["affected"] == [
        f"`{first.task_id}` (dispatched)"]
    assert audit(services, action="chatops_cancel", outcome="ok")[0]["facts"]["affected"] == [
        f"`{first.task_id}`"]


# ---- approval gates --------------------------------------------------------------------------

DEPLOY_POLICY = """\
version: 1
agents: {deploy: true}
deploy: {service: default}
approvals:
  deploy: {count: 1, permission: write}
"""


def merged_event(number: int, merge_sha: str) -> GithubEvent:
    body = examples.example("pull_request", "closed")
    body["number"] = number
    body["pull_request"].update(number=number, merged=True, merge_commit_sha=merge_sha)
    body["pull_request"]["base"]["ref"] = "main"
    return github_event("pull_request", body)


def approval_runs(fake, head_sha: str) -> list[dict[str, Any]]:
    runs = fake.check_runs.values()
    return [r for r in runs if r["name"] == "agent-ops/approval" and r["head_sha"] == head_sha]


def test_deploy_waits_for_a_human_writers_approve(github, services, send, admin, taps):
    github.add_repo(REPO, files={".github/agent-ops.yml": DEPLOY_POLICY})
    merge_sha = "c" * 40
    github.add_pull(REPO, 30, head_sha="d" * 40, state="closed")
    github.add_commit(REPO, merge_sha)
    github.set_permission(REPO, "writer", "write")
    github.set_permission(REPO, "dependabot[bot]", "admin")

    send(merged_event(30, merge_sha))
    task = the_task(services, "deploy_merge")
    assert task["status"] == "waiting_approval"
    assert (task["approval"]["step"], task["approval"]["head_sha"]) == ("deploy", merge_sha)
    [run] = approval_runs(github, merge_sha)
    assert (run["status"], run["conclusion"]) == ("in_progress", None)
    [request] = replies(github, 30)
    assert f"**deploy** for task `{task['task_id']}`" in request and f"/approve {task['task_id']}" in request
    assert tasks_on(admin, taps, "deploy") == []

    send(comment_event(github, 30, f"/approve {task['task_id']}", APP_LOGIN, "Bot", via_app=True,
                       pull=True)[0])
    send(comment_event(github, 30, "/approve", "dependabot[bot]", "Bot", pull=True)[0])
    still = services.tasks().get(task["task_id"])
    assert still["status"] == "waiting_approval" and still["approval"]["approvers"] == []
    assert run["status"] == "in_progress"
    assert len(audit(services, action="chatops_ignored", outcome="ignored")) == 2

    send(comment_event(github, 30, f"/approve {task['task_id']}", "writer", pull=True)[0])
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    [deploy] = tasks_on(admin, taps, "deploy", expect=1)
    assert (deploy.task_id, deploy.attempt) == (task["task_id"], 2)
    assert deploy.input_values()["approval"] == {
        "step": "deploy", "approved_by": ["writer"], "head_sha": merge_sha}
    granted = services.tasks().get(task["task_id"])
    assert (granted["status"], granted["approval"]["state"]) == ("dispatched", "granted")
    assert f"`{task['task_id']}`: deploy: 1 of 1 approvals (writer), approved." in replies(github, 30)[-1]
    [grant] = audit(services, action="grant_approval")
    assert (grant["outcome"], grant["task_id"], grant["facts"]["approvers"]) == (
        "granted", task["task_id"], ["writer"])


def test_cancel_of_a_waiting_deploy_closes_its_approval_check_run(github, services, send, admin, taps):
    github.add_repo(REPO, files={".github/agent-ops.yml": DEPLOY_POLICY})
    merge_sha = "e" * 40
    github.add_pull(REPO, 31, head_sha="f" * 40, state="closed")
    github.add_commit(REPO, merge_sha)
    github.set_permission(REPO, "writer", "write")
    send(merged_event(31, merge_sha))
    [run] = approval_runs(github, merge_sha)
    assert run["status"] == "in_progress"

    send(comment_event(github, 31, "/cancel", "writer", pull=True)[0])
    task = the_task(services, "deploy_merge")
    assert task["status"] == "cancelled"
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")
    assert tasks_on(admin, taps, "deploy") == []


def test_an_agents_merge_approval_expires_when_the_head_moves(github, services, send, admin, taps):
    github.add_repo(REPO)
    github.add_issue(REPO, 40)
    head_a, head_b = "a1" * 20, "b2" * 20
    github.add_pull(REPO, 41, head_sha=head_a, author="octocat")
    github.set_permission(REPO, "octocat", "admin")
    github.set_permission(REPO, "writer", "write")
    send(labelled(40))
    [first] = tasks_on(admin, taps, "code", expect=1)
    rule = {"count": 1, "permission": "write"}
    send(result(the_task(services, "implement_issue"), "waiting_approval",
                {"approval": {"step": "merge", "pull_number": 41, "head_sha": head_a, "rule": rule}}),
         topology.AGENT_RESULTS)
    task = the_task(services, "implement_issue")
    assert task["status"] == "waiting_approval"
    assert (task["approval"]["pull_number"], task["approval"]["head_sha"]) == (41, head_a)
    [run_a] = approval_runs(github, head_a)
    assert run_a["status"] == "in_progress"

    github.add_review(REPO, 41, "octocat", commit_id=head_a)  # the author
    send(review_event(41, "octocat", head_a))
    github.add_review(REPO, 41, "dependabot[bot]", commit_id=head_a, user_type="Bot")
    send(review_event(41, "dependabot[bot]", head_a, "Bot"))
    assert services.tasks().get(task["task_id"])["status"] == "waiting_approval"
    assert "the author cannot approve" in run_a["output"]["summary"]
    assert "bots cannot approve" in run_a["output"]["summary"]
    send(comment_event(github, 40, "/approve", "octocat")[0])  # where the request was posted
    assert replies(github, 40)[-1] == (
        f"@octocat `{task['task_id']}`: not counted, the author cannot approve their own change.")
    assert services.tasks().get(task["task_id"])["status"] == "waiting_approval"

    github.set_pull_head(REPO, 41, head_b)
    send(pull_event("synchronize", 41, head_b))
    moved = services.tasks().get(task["task_id"])
    assert moved["approval"]["head_sha"] == head_b
    assert [e["head_sha"] for e in moved["approval"]["expired"]] == [head_a]
    assert (run_a["status"], run_a["conclusion"]) == ("completed", "neutral")
    [run_b] = approval_runs(github, head_b)
    assert run_b["status"] == "in_progress"

    github.add_review(REPO, 41, "writer", commit_id=head_a)  # approves the old head
    send(review_event(41, "writer", head_a))
    assert services.tasks().get(task["task_id"])["status"] == "waiting_approval"
    assert tasks_on(admin, taps, "code") == []

    github.add_review(REPO, 41, "writer", commit_id=head_b)
    send(review_event(41, "writer", head_b))
    [second] = tasks_on(admin, taps, "code", expect=1)
    assert (second.task_id, second.attempt) == (first.task_id, 2)
    assert second.input_values()["approval"] == {"step": "merge", "approved_by": ["writer"],
                                                 "head_sha": head_b}
    assert (run_b["status"], run_b["conclusion"]) == ("completed", "success")
    assert services.tasks().get(task["task_id"])["status"] == "dispatched"
    assert [r["facts"]["new_head"] for r in audit(services, action="expire_approvals")] == [head_b]
    assert [r["facts"]["approvers"] for r in audit(services, action="grant_approval")] == [["writer"]]


# ---- policy reports --------------------------------------------------------------------------

INVALID_POLICY = """\
version: 1
agnets: {code: true}
budget:
  daily_tasks: -1
"""


def test_an_invalid_policy_is_reported_once_and_blocks_the_code_agent(github, services, send, admin, taps):
    github.add_repo(REPO, files={".github/agent-ops.yml": INVALID_POLICY})
    github.add_issue(REPO, 50)
    event = labelled(50)

    send(event)

    [report] = replies(github, 50)
    assert "Agent Ops cannot use `.github/agent-ops.yml`" in report
    assert "**line 2**" in report and "agnets" in report
    assert "**line 4**" in report and "daily\\_tasks" in report
    task = the_task(services, "implement_issue")
    assert task["status"] == "blocked"
    assert ".github/agent-ops.yml is invalid" in task["result"]["summary"]
    assert tasks_on(admin, taps, "code") == []

    send(GithubEvent(**{**event.__dict__, "delivery_id": str(uuid.uuid4())}))
    assert len(replies(github, 50)) == 1
    assert services.tasks().get(task["task_id"])["status"] == "blocked"


def test_agent_implement_makes_the_labels_task_once_and_only_for_a_writer(github, services, send, admin,
                                                                          taps):
    github.add_repo(REPO)
    github.add_issue(REPO, 12, title="Add a greeting")
    github.set_permission(REPO, "writer", "write")
    github.set_permission(REPO, "reader", "read")

    refused, _ = comment_event(github, 12, "/agent implement", "reader")
    send(refused)
    assert tasks_on(admin, taps, "code", expect=0) == []
    assert "`/agent implement` needs the **write** role" in replies(github, 12)[-1]

    asked, _ = comment_event(github, 12, "/agent implement", "writer")
    send(asked)
    [task] = tasks_on(admin, taps, "code", expect=1)
    assert task.task_id == core.task_id(core.IMPLEMENT_KIND, REPO, "issue/12")
    assert task.input_values()["requested_by"] == "@writer"
    assert f"task `{task.task_id}` (dispatched)" in replies(github, 12)[-1]

    send(labelled(12))  # the label afterwards: the same task, not a second one
    again, _ = comment_event(github, 12, "/agent implement", "writer")
    send(again)
    assert tasks_on(admin, taps, "code", expect=0) == []
    assert "already has the code agent's task" in replies(github, 12)[-1]
    assert len([t for t in services.tasks().query(repository=REPO) if t["kind"] == core.IMPLEMENT_KIND]) == 1

    on_pull, _ = comment_event(github, 12, "/agent implement", "writer", pull=True)
    send(on_pull)
    assert "works on issues, not on pull requests" in replies(github, 12)[-1]


def test_an_agents_approval_request_on_an_issue_is_granted_by_approve_and_not_by_its_author(
    github, services, send, admin, taps
):
    github.add_repo(REPO)
    github.add_issue(REPO, 21, title="Change CI", author="writer")
    github.set_permission(REPO, "writer", "write")
    github.set_permission(REPO, "keeper", "maintain")
    send(labelled(21))
    [task] = tasks_on(admin, taps, "code", expect=1)
    rule = {"count": 1, "teams": [], "users": [], "permission": "maintain"}
    send(result(services.tasks().get(task.task_id), "waiting_approval", {
        "approval": {"step": "protected_paths", "rule": rule, "head_sha": "", "pull_number": 21},
        "checkpoint": {"protected_digest": "abc"}}), topology.AGENT_RESULTS)
    waiting = services.tasks().get(task.task_id)
    assert waiting["status"] == "waiting_approval" and waiting["checkpoint"] == {"protected_digest": "abc"}

    send(comment_event(github, 21, "/approve", "writer")[0])  # the issue's author, and only write
    assert services.tasks().get(task.task_id)["status"] == "waiting_approval"
    send(comment_event(github, 21, "/approve", "keeper")[0])
    [again] = tasks_on(admin, taps, "code", expect=1)
    assert again.input_values()["approval"]["step"] == "protected_paths"
    assert again.input_values()["approval"]["approved_by"] == ["keeper"]
    assert again.input_values()["checkpoint"] == {"protected_digest": "abc"}
