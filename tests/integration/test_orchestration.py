"""The orchestrator's task queue on the real emulators: the whole loop, races, pauses, limits,
dependencies, budgets, waking on CI events, stalls and the operator's CLI."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from functions.orchestrator import core
from functions.orchestrator.handler import Orchestrator, spec_from_task
from shared import cli, topology
from shared.audit import verify_chains
from shared.messages import AgentTask, AgentTaskResult, GithubEvent, ScheduleTick, now_millis
from shared.runtime import Envelope
from tests.support import github as examples
from tests.support.pubsub import drain, tap
from tests.support.push import push

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"
INSTALLATION = 77
POLICY = "version: 1\nagents: {deploy: true}\ndeploy: {service: default}\n"


def event(name: str, body: dict, delivery_id: str | None = None) -> GithubEvent:
    return GithubEvent(
        delivery_id=delivery_id or str(uuid.uuid4()), event=name, action=body.get("action", ""),
        repository=body.get("repository", {}).get("full_name", ""),
        installation_id=(body.get("installation") or {}).get("id", 0),
        sender=(body.get("sender") or {}).get("login", ""), hook_id=0, received_at=now_millis(),
        payload=json.dumps(body),
    )


def in_repo(body: dict) -> dict:
    body["repository"]["full_name"] = REPO
    body["repository"]["name"] = REPO.split("/")[1]
    body["repository"]["owner"]["login"] = REPO.split("/")[0]
    body["installation"] = {"id": INSTALLATION, "node_id": "x"}
    return body


def labelled(number: int) -> dict:
    body = in_repo(examples.example("issues", "labeled"))
    body["label"]["name"] = core.AGENT_TASK_LABEL
    body["issue"]["number"] = number
    body["issue"].pop("pull_request", None)
    return body


def pull_opened(number: int, head: str) -> dict:
    body = in_repo(examples.example("pull_request", "opened"))
    body["number"] = number
    body["pull_request"]["number"] = number
    body["pull_request"]["head"]["sha"] = head
    return body


@pytest.fixture
def repo(github):
    github.add_repo(REPO, files={".github/agent-ops.yml": POLICY})
    for number in range(1, 6):
        github.add_issue(REPO, number, title=f"issue {number}")
    return github


@pytest.fixture
def taps(admin):
    return {agent.name: tap(admin, agent.topic) for agent in topology.AGENTS}


def send(client, project, message: GithubEvent):
    response = push(client, project, topology.GITHUB_EVENTS, message.encode(),
                    attributes=message.attributes())
    assert response.status_code == 200, response.text
    return response


def report(client, project, task: AgentTask, status: str, summary: str = "", **details):
    result = AgentTaskResult(task.task_id, task.agent, task.attempt, status, summary or status,
                             json.dumps(details), now_millis())
    response = push(client, project, topology.AGENT_RESULTS, result.encode())
    assert response.status_code == 200, response.text


def pulled(admin, taps, agent: str, **kwargs) -> list[AgentTask]:
    return [AgentTask.decode(m.data) for m in drain(admin, taps[agent], **kwargs)]


def audit_actions(services) -> list[tuple[str, str]]:
    return sorted((d.to_dict()["action"], d.to_dict()["outcome"])
                  for d in services.firestore().collection("audit").stream())


def test_the_whole_loop_event_to_task_to_agent_to_result_to_outcome(
    repo, function_client, admin, services, project, taps
):
    client = function_client("orchestrator")
    send(client, project, event("issues", labelled(1)))
    [task] = pulled(admin, taps, "code", expect=1)
    assert (task.kind, task.subject, task.repository, task.attempt) == ("implement_issue", "issue/1", REPO, 1)
    agent = services.tasks().agent("code")
    assert agent["state"] == "busy" and agent["current_task"] == task.task_id

    report(client, project, task, "running", "reading the issue", waits_for=[])
    assert services.tasks().get(task.task_id)["status"] == "running"
    report(client, project, task, "succeeded", "opened a pull request",
           cost={"units": 1200, "kind": "llm_tokens"})

    stored = services.tasks().get(task.task_id)
    assert stored["status"] == "succeeded"
    assert [h["to"] for h in stored["history"]] == ["queued", "dispatched", "running", "succeeded"]
    assert stored["result"]["summary"] == "opened a pull request"
    assert stored["cost_units"] == 1200.0
    agent = services.tasks().agent("code")
    assert (agent["state"], agent["done"], agent["current_task"]) == ("idle", 1, "")
    assert agent["average_duration_seconds"] >= 0
    usage = services.tasks().repo_state(REPO)["usage"]
    assert (usage["tasks"], usage["cost"]) == (1, 1200.0)
    assert ("dispatch_task", "dispatched") in audit_actions(services)
    assert ("report_result", "succeeded") in audit_actions(services)
    assert all(r.ok for r in verify_chains(services.firestore()))


def test_two_concurrent_deliveries_for_one_subject_dispatch_once(
    repo, function_client, admin, services, project, taps
):
    body = pull_opened(7, "a" * 40)
    deliveries = [event("pull_request", body) for _ in range(2)]  # two delivery ids, one subject
    clients = [function_client("orchestrator") for _ in deliveries]

    def deliver(pair):
        client, message = pair
        return push(client, project, topology.GITHUB_EVENTS, message.encode()).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(deliver, zip(clients, deliveries, strict=True)))
    # The loser either saw the task dispatched (200) or a live lease and asked for a retry (500).
    for code, message in zip(codes, deliveries, strict=True):
        if code != 200:
            send(function_client("orchestrator"), project, message)
    assert len(pulled(admin, taps, "test", expect=1)) == 1
    assert len(pulled(admin, taps, "qa", expect=1, settle=0.3)) == 1


def test_kill_switch_stops_all_dispatch_from_the_next_message_and_resume_releases_it(
    repo, function_client, admin, services, project, taps, capsys
):
    assert cli.main(["pause", "--all", "--reason", "incident"]) == 0
    client = function_client("orchestrator")
    send(client, project, event("issues", labelled(2)))
    assert drain(admin, taps["code"], settle=0.5) == []
    [stored] = services.tasks().query(repository=REPO)
    assert stored["status"] == "queued" and "all agents are paused" in stored["waiting_on"]
    assert "incident" in stored["waiting_on"]

    assert cli.main(["agents"]) == 0
    assert "ALL AGENTS PAUSED" in capsys.readouterr().out
    ticks = tap(admin, topology.SCHEDULE_TICKS)
    assert cli.main(["resume", "--all"]) == 0
    assert "task sweep" in capsys.readouterr().out
    [tick] = drain(admin, ticks, expect=1)
    assert ScheduleTick.decode(tick.data).job == "task_sweep"
    push(client, project, topology.SCHEDULE_TICKS, tick.data, message_id=tick.message_id)
    assert len(pulled(admin, taps, "code", expect=1)) == 1
    assert ("pause", "changed") in audit_actions(services)


def test_a_paused_repository_dispatches_nothing(repo, function_client, admin, services, project, taps):
    now = datetime.now(timezone.utc)
    services.tasks().set_pause(f"repo:{REPO}", True, "@maintainer", "release freeze", now)
    send(function_client("orchestrator"), project, event("pull_request", pull_opened(3, "b" * 40)))
    assert all(drain(admin, taps[name], settle=0.3) == [] for name in taps)
    waiting = services.tasks().query(repository=REPO)
    assert sorted(t["agent"] for t in waiting) == ["qa", "test"]
    assert all(t["status"] == "queued" and "paused in octo/widgets" in t["waiting_on"] for t in waiting)


def test_one_code_task_per_repo_the_second_waits_and_goes_when_the_first_ends(
    repo, function_client, admin, services, project, taps
):
    client = function_client("orchestrator")
    send(client, project, event("issues", labelled(1)))
    send(client, project, event("issues", labelled(2)))
    [first] = pulled(admin, taps, "code", expect=1)
    second = next(t for t in services.tasks().query(repository=REPO) if t["task_id"] != first.task_id)
    assert second["status"] == "queued"
    assert f"code:{REPO} is at its limit of 1" in second["waiting_on"]

    report(client, project, first, "failed", "tests did not pass")
    [woken] = pulled(admin, taps, "code", expect=1)
    assert woken.task_id == second["task_id"]
    assert services.tasks().get(first.task_id)["status"] == "failed"
    assert services.tasks().agent("code")["failed"] == 1


def test_a_task_waits_for_its_dependencies_and_a_failed_one_blocks_it(
    repo, function_client, admin, services, project, taps
):
    orchestrator = services.orchestrator()
    base = core.route_event(core.EventFacts("issues", "labeled", "d", REPO, INSTALLATION, labelled(4)))[0]
    dependent = spec_from_task({"task_id": "review-after", "kind": "review_pull_request", "agent": "qa",
                                "repository": REPO, "installation_id": INSTALLATION, "subject": "pull/9@c",
                                "source": "test", "inputs": {"pull_number": 9}, "depends_on": [base.task_id]})
    assert orchestrator.dispatch(dependent) == "wait"
    assert "waiting for dependency" in services.tasks().get("review-after")["waiting_on"]
    assert orchestrator.dispatch(base) == "dispatched"
    [code] = pulled(admin, taps, "code", expect=1)
    report(function_client("orchestrator"), project, code, "succeeded")
    assert [t.task_id for t in pulled(admin, taps, "qa", expect=1)] == ["review-after"]

    blocked = spec_from_task({**dependent.__dict__, "task_id": "never", "inputs": {},
                              "depends_on": ["review-after"]})
    report(function_client("orchestrator"), project, pulled_task("review-after", services), "failed")
    assert orchestrator.dispatch(blocked) == "block"
    assert services.tasks().get("never")["status"] == "blocked"


def pulled_task(task_id: str, services) -> AgentTask:
    doc = services.tasks().get(task_id)
    return AgentTask(task_id, doc["kind"], doc["agent"], doc["attempt"], doc["repository"],
                     doc["installation_id"], doc["subject"], doc["source"], now_millis(), "{}")


def test_daily_task_budget_makes_new_tasks_wait_until_the_next_day(
    repo, function_client, admin, services, project, taps
):
    repo.set_file(REPO, ".github/agent-ops.yml", "version: 1\nbudget: {daily_tasks: 2}\nlimits: {code: 5}\n")
    client = function_client("orchestrator")
    for number in (1, 2, 3):
        send(client, project, event("issues", labelled(number)))
    dispatched = pulled(admin, taps, "code", expect=2)
    assert len(dispatched) == 2
    waiting = [t for t in services.tasks().query(repository=REPO) if t["status"] == "queued"]
    assert len(waiting) == 1
    assert "octo/widgets daily budget spent: 2 of 2 tasks today" in waiting[0]["waiting_on"]
    assert "resets at" in waiting[0]["waiting_on"]

    for task in dispatched:  # done, so the sweep tomorrow has no stalled task to retry
        report(client, project, task, "succeeded")
    assert [t.task_id for t in pulled(admin, taps, "code", settle=0.3)] == []  # still spent today
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    later = Orchestrator(services.ledger, services.tasks, services.publisher, services.audit,
                         clock=lambda: tomorrow, github=services.github_or_none)
    assert "1 waiting task(s) dispatched" in later.sweep()
    assert [t.task_id for t in pulled(admin, taps, "code", expect=1)] == [waiting[0]["task_id"]]
    assert services.tasks().repo_state(REPO)["usage"]["day"] == f"{tomorrow:%Y-%m-%d}"


def test_a_task_waiting_for_ci_is_woken_by_its_check_suite(
    repo, function_client, admin, services, project, taps
):
    client = function_client("orchestrator")
    head = "c" * 40
    send(client, project, event("pull_request", pull_opened(5, head)))
    [task] = pulled(admin, taps, "test", expect=1)
    pulled(admin, taps, "qa", expect=1)
    report(client, project, task, "running", "waiting for CI", waits_for=[f"check_suite:{REPO}@{head}"],
           checkpoint={"check_run_id": 41, "reruns": {"9": "failure"}})

    suite = in_repo(examples.example("check_suite", "completed"))
    suite["check_suite"]["head_sha"] = head
    completed = event("check_suite", suite)
    send(client, project, completed)
    send(client, project, event("check_suite", suite, completed.delivery_id))  # redelivered: one wake
    [woken] = pulled(admin, taps, "test", expect=1)
    assert (woken.task_id, woken.attempt) == (task.task_id, task.attempt)
    wake = woken.input_values()["wake"]
    assert (wake["event"], wake["head_sha"]) == ("check_suite", head)
    assert wake["delivery_id"] == completed.delivery_id
    # What the agent kept between its turns comes back with the wake.
    assert woken.input_values()["checkpoint"] == {"check_run_id": 41, "reruns": {"9": "failure"}}


def test_a_task_waiting_too_long_is_rechecked_once_per_sweep_in_case_its_event_was_missed(
    repo, function_client, admin, services, project, taps
):
    client = function_client("orchestrator")
    head = "e" * 40
    send(client, project, event("pull_request", pull_opened(8, head)))
    [task] = pulled(admin, taps, "test", expect=1)
    pulled(admin, taps, "qa", expect=1)
    report(client, project, task, "running", "waiting for CI", waits_for=[f"check_suite:{REPO}@{head}"],
           checkpoint={"check_run_id": 5})
    start = datetime.now(timezone.utc)

    def at(minutes: int) -> Orchestrator:
        return Orchestrator(services.ledger, services.tasks, services.publisher, services.audit,
                            clock=lambda: start + timedelta(minutes=minutes), github=services.github_or_none)

    assert at(3).sweep().endswith("0 rechecked")  # it spoke moments ago
    assert pulled(admin, taps, "test", expect=0) == []
    assert at(12).sweep().endswith("1 rechecked")
    [woken] = pulled(admin, taps, "test", expect=1)
    assert (woken.task_id, woken.attempt) == (task.task_id, task.attempt)
    assert woken.input_values()["wake"]["event"] == "recheck"
    assert woken.input_values()["checkpoint"] == {"check_run_id": 5}
    assert at(12).sweep().endswith("0 rechecked")  # the same sweep again: no second wake
    assert services.tasks().get(task.task_id)["status"] == "running"  # alive: not a stall


def test_a_stalled_task_is_retried_then_escalated_with_a_comment(
    repo, function_client, admin, services, project, taps
):
    send(function_client("orchestrator"), project, event("issues", labelled(3)))
    [first] = pulled(admin, taps, "code", expect=1)
    start = datetime.now(timezone.utc)

    def at(minutes: int) -> Orchestrator:
        return Orchestrator(services.ledger, services.tasks, services.publisher, services.audit,
                            clock=lambda: start + timedelta(minutes=minutes), github=services.github_or_none)

    assert at(5).sweep().startswith("0 stalled")  # inside the 10-minute heartbeat
    assert at(15).sweep().startswith("1 stalled task(s) retried")
    [retry] = pulled(admin, taps, "code", expect=1)
    assert (retry.task_id, retry.attempt) == (first.task_id, 2)
    assert at(40).sweep().startswith("0 stalled task(s) retried, 1 escalated")

    stored = services.tasks().get(first.task_id)
    assert stored["status"] == "blocked" and stored["escalated"] is True
    assert "no heartbeat from the code agent" in stored["stalled"]
    [comment] = [c for c in repo.comments if c["issue_number"] == 3]
    assert "stalled" in comment["body"] and "agent-code" in comment["body"] and "/retry" in comment["body"]
    assert at(60).sweep().startswith("0 stalled task(s) retried, 0 escalated")  # escalated once
    assert len([c for c in repo.comments if c["issue_number"] == 3]) == 1
    assert ("escalate_stalled", "escalated") in audit_actions(services)


def test_tasks_cli_filters_by_repo_and_state(repo, function_client, admin, services, project, taps, capsys):
    client = function_client("orchestrator")
    send(client, project, event("issues", labelled(1)))
    send(client, project, event("issues", labelled(2)))
    assert cli.main(["tasks", "--repo", REPO, "--state", "queued"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["task", "agent", "status"]
    assert len(out) == 2 and "queued" in out[1] and "at its limit" in out[1]
    assert cli.main(["tasks", "--repo", "octo/other"]) == 0
    assert capsys.readouterr().out.strip() == "no tasks"
    assert cli.main(["audit", "verify"]) == 0
    assert "ok" in capsys.readouterr().out


def test_a_tick_task_runs_the_task_sweep_in_place(function_client, services, project):
    published = datetime.now(timezone.utc)
    response = push(function_client("orchestrator"), project, topology.SCHEDULE_TICKS,
                    ScheduleTick("task_sweep").encode(), publish_time=published)
    assert response.status_code == 200
    spec = core.route_tick("task_sweep", "x", published)[0]
    stored = services.tasks().get(spec.task_id)
    assert stored["status"] == "succeeded"
    assert "stalled task(s) retried" in stored["result"]["summary"]


def test_internal_envelope_dispatch_uses_one_code_path(services):
    """The consumer runtime and a direct call reach the same handler."""
    now = datetime.now(timezone.utc)
    envelope = Envelope(topology.SCHEDULE_TICKS, "m-1", now, {}, ScheduleTick("task_sweep"))
    services.orchestrator()(envelope)
    assert services.ledger().get("tick-m-1")["processed_by"]["orchestrator"]["job"] == "task_sweep"


def test_the_policy_is_read_through_the_contents_api_and_then_revalidated_for_free(
    repo, function_client, admin, services, project, taps
):
    client = function_client("orchestrator")
    send(client, project, event("issues", labelled(1)))
    send(client, project, event("pull_request", pull_opened(6, "d" * 40)))
    reads = [status for method, path, status in repo.requests
             if method == "GET" and path.endswith("/contents/.github/agent-ops.yml")]
    assert reads[0] == 200 and set(reads[1:]) == {304}  # ETag: unchanged file, no rate limit spent


def test_a_result_with_malformed_details_is_acked_audited_and_changes_nothing(
    repo, function_client, admin, services, project, taps
):
    client = function_client("orchestrator")
    send(client, project, event("issues", labelled(2)))
    [task] = pulled(admin, taps, "code", expect=1)
    bad = AgentTaskResult(task.task_id, "code", task.attempt, "succeeded", "done", "{not json", now_millis())
    response = push(client, project, topology.AGENT_RESULTS, bad.encode(), message_id="bad-1")
    assert response.status_code == 200  # retrying cannot fix it
    assert services.tasks().get(task.task_id)["status"] == "dispatched"
    drops = [d.to_dict() for d in services.firestore().collection("audit").stream()
             if d.to_dict()["action"] == "drop_message"]
    assert [(d["outcome"], "details of result" in d["facts"]["reason"]) for d in drops] == [
        ("permanent_error", True)]
    report(client, project, task, "succeeded", "done")  # the agent's corrected report still lands
    assert services.tasks().get(task.task_id)["status"] == "succeeded"
