"""The orchestrator and agents behind their push subscriptions, on the real emulators."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from functions.orchestrator import core
from shared import topology
from shared.messages import AgentTask, AgentTaskResult, GithubEvent, ScheduleTick, now_millis
from tests.support import github
from tests.support.pubsub import drain, tap
from tests.support.push import push

pytestmark = pytest.mark.emulators


def github_event(event: str, body: dict, delivery_id: str | None = None) -> GithubEvent:
    return GithubEvent(
        delivery_id=delivery_id or str(uuid.uuid4()),
        event=event,
        action=body.get("action", ""),
        repository=body.get("repository", {}).get("full_name", ""),
        installation_id=(body.get("installation") or {}).get("id", 0),
        sender=(body.get("sender") or {}).get("login", ""),
        hook_id=0,
        received_at=now_millis(),
        payload=json.dumps(body),
    )


@pytest.fixture
def taps(admin):
    return {agent.name: tap(admin, agent.topic) for agent in topology.AGENTS} | {
        "results": tap(admin, topology.AGENT_RESULTS)
    }


def tasks_on(admin, taps, agent: str, **kwargs) -> list[AgentTask]:
    return [AgentTask.decode(m.data) for m in drain(admin, taps[agent], **kwargs)]


def test_pull_request_push_gives_one_task_per_gate_agent_even_when_repeated(
    function_client, admin, services, project, taps
):
    client = function_client("orchestrator")
    body = github.example("pull_request", "opened")
    event = github_event("pull_request", body)

    for _ in range(3):  # Pub/Sub may deliver the same message more than once
        response = push(client, project, topology.GITHUB_EVENTS, event.encode(),
                        attributes=event.attributes(), message_id="42")
        assert response.status_code == 200, response.text

    test_tasks = tasks_on(admin, taps, "test", expect=1)
    qa_tasks = tasks_on(admin, taps, "qa", expect=1, settle=0.2)
    assert [t.kind for t in test_tasks] == ["test_pull_request"]
    assert [t.kind for t in qa_tasks] == ["review_pull_request"]
    for other in ("code", "deploy", "scout", "monitor"):
        assert drain(admin, taps[other], settle=0.2) == []
    task = test_tasks[0]
    head = body["pull_request"]["head"]["sha"]
    assert task.subject == f"pull/{body['pull_request']['number']}@{head}"
    assert task.input_values()["head_sha"] == head
    stored = services.tasks().get(task.task_id)
    assert stored["status"] == "dispatched"
    assert [h["to"] for h in stored["history"]] == ["queued", "dispatched"]
    delivery = services.ledger().get(event.delivery_id)
    assert sorted(delivery["task_ids"]) == sorted([test_tasks[0].task_id, qa_tasks[0].task_id])


def test_the_same_event_in_two_deliveries_makes_one_task(function_client, admin, project, taps):
    client = function_client("orchestrator")
    body = github.example("issues", "labeled")
    body["label"]["name"] = core.AGENT_TASK_LABEL
    for _ in range(2):
        event = github_event("issues", body)  # a new delivery id each time
        assert push(client, project, topology.GITHUB_EVENTS, event.encode()).status_code == 200

    tasks = tasks_on(admin, taps, "code", expect=1)
    assert [(t.kind, t.subject) for t in tasks] == [
        ("implement_issue", f"issue/{body['issue']['number']}")
    ]


def test_event_without_route_is_recorded_and_dispatches_nothing(
    function_client, admin, services, project, taps
):
    event = github_event("star", github.example("star", "created"))
    response = push(function_client("orchestrator"), project, topology.GITHUB_EVENTS, event.encode())
    assert response.status_code == 200
    delivery = services.ledger().get(event.delivery_id)
    assert delivery["processed_by"]["orchestrator"]["routed"] is False
    assert all(drain(admin, taps[name], settle=0.2) == [] for name in taps)


def test_ticks_route_to_agents_and_a_repeated_tick_in_the_same_period_is_one_task(
    function_client, admin, project, taps
):
    client = function_client("orchestrator")
    # An hour ago, well inside the consumers' maximum message age, at 10 s past a minute.
    minute = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(second=10, microsecond=0)
    for offset in (0, 20):  # Cloud Scheduler can fire twice; both land in the same minute
        published = minute + timedelta(seconds=offset)
        tick = ScheduleTick("monitor")
        response = push(client, project, topology.SCHEDULE_TICKS, tick.encode(),
                        publish_time=published)
        assert response.status_code == 200
    tasks = tasks_on(admin, taps, "monitor", expect=1)
    assert [t.subject for t in tasks] == [f"tick/monitor/{minute:%Y-%m-%dT%H:%M}Z"]


def test_the_weekly_report_tick_runs_in_place_and_without_a_report_repo_only_stores_it(
    function_client, admin, services, project, taps
):
    published = datetime.now(timezone.utc)
    response = push(function_client("orchestrator"), project, topology.SCHEDULE_TICKS,
                    ScheduleTick("weekly_report").encode(), publish_time=published)
    assert response.status_code == 200
    spec = core.route_tick("weekly_report", "x", published)[0]
    stored = services.tasks().get(spec.task_id)
    assert stored["status"] == "succeeded"
    assert "not posted: AGENTOPS_REPORT_REPO is not set" in stored["result"]["summary"]
    assert all(drain(admin, taps[name], settle=0.2) == [] for name in taps)


def test_agent_result_is_recorded_once(function_client, admin, services, project, taps):
    client = function_client("orchestrator")
    event = github_event("pull_request", github.example("pull_request", "opened"))
    push(client, project, topology.GITHUB_EVENTS, event.encode())
    task = tasks_on(admin, taps, "test", expect=1)[0]

    result = AgentTaskResult(task.task_id, "test", task.attempt, "succeeded", "all green", "{}",
                             now_millis())
    for _ in range(2):
        response = push(client, project, topology.AGENT_RESULTS, result.encode(), message_id="7")
        assert response.status_code == 200

    stored = services.tasks().get(task.task_id)
    assert stored["status"] == "succeeded"
    assert [h["to"] for h in stored["history"]] == ["queued", "dispatched", "succeeded"]
    stale = AgentTaskResult(task.task_id, "test", task.attempt + 1, "failed", "late", "{}", now_millis())
    push(client, project, topology.AGENT_RESULTS, stale.encode())
    assert services.tasks().get(task.task_id)["status"] == "succeeded"


def test_the_scout_tick_reaches_the_scout_and_its_result_goes_to_agent_results(
    function_client, admin, project, taps
):
    task = AgentTask("t-1", "scan_repos", "scout", 1, "", 0, "tick/repo_scout/x", "tick/x",
                     now_millis(), "{}")
    response = push(function_client("repo_scout"), project, "agent-scout", task.encode())
    assert response.status_code == 200
    results = [AgentTaskResult.decode(m.data) for m in drain(admin, taps["results"], expect=1)]
    # Built, the scout needs the GitHub App, which this deployment does not have.
    assert [(r.task_id, r.agent, r.status) for r in results] == [("t-1", "scout", "blocked")]
    assert "GITHUB_APP_ID" in results[0].summary


def test_a_built_agent_without_the_github_app_says_so_instead_of_acting(
    function_client, admin, project, taps
):
    task = AgentTask("t-2", "implement_issue", "code", 1, "o/r", 5, "issue/1", "delivery/x",
                     now_millis(), json.dumps({"issue_number": 1}))
    response = push(function_client("code_agent"), project, "agent-code", task.encode())
    assert response.status_code == 200
    [result] = [AgentTaskResult.decode(m.data) for m in drain(admin, taps["results"], expect=1)]
    assert (result.task_id, result.status) == ("t-2", "blocked")
    assert "needs the GitHub App (GITHUB_APP_ID is not set)" in result.summary


BAD_MESSAGES = [
    ("not-json", topology.GITHUB_EVENTS, b"{nope", "invalid_message"),
    ("schema-violation", topology.GITHUB_EVENTS, b'{"delivery_id": 5}', "invalid_message"),
    ("unknown-tick-job", topology.SCHEDULE_TICKS, b'{"job": "mine_bitcoin"}', "permanent_error"),
    ("topic-not-consumed", "agent-code", b"{}", "invalid_message"),
]


@pytest.mark.parametrize("topic,data,outcome", [c[1:] for c in BAD_MESSAGES],
                         ids=[c[0] for c in BAD_MESSAGES])
def test_bad_message_is_acked_audited_and_has_no_effect(
    function_client, admin, services, project, taps, topic, data, outcome
):
    response = push(function_client("orchestrator"), project, topic, data, message_id="m-1")
    assert response.status_code == 200  # acknowledged: retrying cannot fix it
    audit = [d.to_dict() for d in services.firestore().collection("audit").stream()]
    assert [(a["action"], a["outcome"]) for a in audit] == [("drop_message", outcome)]
    assert list(services.firestore().collection("tasks").stream()) == []


def test_message_older_than_the_maximum_age_is_dropped(function_client, admin, services, project, taps):
    event = github_event("pull_request", github.example("pull_request", "opened"))
    old = datetime.now(timezone.utc) - timedelta(days=4)
    response = push(function_client("orchestrator"), project, topology.GITHUB_EVENTS, event.encode(),
                    publish_time=old)
    assert response.status_code == 200
    assert drain(admin, taps["test"], settle=0.3) == []
    audit = [d.to_dict() for d in services.firestore().collection("audit").stream()]
    assert [a["outcome"] for a in audit] == ["too_old"]


def test_publish_failure_leaves_the_task_queued_and_the_retry_dispatches_it(
    function_client, admin, services, config, project, taps
):
    from functions.orchestrator.handler import Orchestrator
    from shared.bootstrap import Services
    from shared.errors import RetryableError
    from shared.runtime import Envelope

    broken = Services(config.with_overrides(pubsub_emulator_host="127.0.0.1:9",
                                            publish_timeout_seconds=0.5))
    event = github_event("pull_request", github.example("pull_request", "opened"))
    envelope = Envelope(topology.GITHUB_EVENTS, "1", datetime.now(timezone.utc), {}, event)
    failing = Orchestrator(services.ledger, services.tasks, broken.publisher, services.audit)
    with pytest.raises(RetryableError):
        failing(envelope)
    task_id = core.route_event(core.EventFacts("pull_request", "opened", event.delivery_id,
                                               event.repository, event.installation_id,
                                               event.body()))[0].task_id
    stored = services.tasks().get(task_id)
    assert stored["status"] == "queued"
    assert stored["dispatch_lease_until"] is None

    response = push(function_client("orchestrator"), project, topology.GITHUB_EVENTS, event.encode())
    assert response.status_code == 200
    assert len(tasks_on(admin, taps, "test", expect=1)) == 1
    assert services.tasks().get(task_id)["status"] == "dispatched"


def test_retryable_failure_answers_an_error_so_pubsub_retries(function_client, project, services):
    """A task whose dispatch lease is held elsewhere is retried, not acknowledged."""
    from shared.ports import Dispatch

    body = github.example("pull_request", "opened")
    event = github_event("pull_request", body)
    spec = core.route_event(core.EventFacts("pull_request", "opened", event.delivery_id,
                                            event.repository, event.installation_id, body))[0]
    from shared.task_store import DispatchPolicy

    begun = services.tasks().begin_dispatch(spec, DispatchPolicy(), datetime.now(timezone.utc))
    assert begun.outcome is Dispatch.DISPATCH

    response = push(function_client("orchestrator"), project, topology.GITHUB_EVENTS, event.encode())

    assert response.status_code == 500
    assert "processed_by" not in (services.ledger().get(event.delivery_id) or {})


def test_installation_events_keep_a_record_of_installations_and_repos(
    function_client, services, project
):
    client = function_client("orchestrator")
    created = github.example("installation", "created")
    added = github.example("installation_repositories", "added")
    added["installation"]["id"] = created["installation"]["id"]
    for event, body in (("installation", created), ("installation_repositories", added)):
        message = github_event(event, body)
        assert push(client, project, topology.GITHUB_EVENTS, message.encode()).status_code == 200

    store = services.firestore()
    installation = store.collection("installations").document(str(created["installation"]["id"])).get()
    assert installation.to_dict()["status"] == "active"
    assert installation.to_dict()["account"] == created["installation"]["account"]["login"]
    repos = {d.id: d.to_dict() for d in store.collection("repos").stream()}
    assert sorted(repos) == ["Codertocat:Hello-World", "Codertocat:Space"]
    assert all(r["installed"] and r["installation_id"] == created["installation"]["id"]
               for r in repos.values())

    removed = github.example("installation", "deleted")
    removed["installation"]["id"] = created["installation"]["id"]
    removed["repositories"] = created["repositories"]
    push(client, project, topology.GITHUB_EVENTS, github_event("installation", removed).encode())
    assert store.collection("repos").document("Codertocat:Hello-World").get().to_dict()["installed"] is False
    status = store.collection("installations").document(str(created["installation"]["id"])).get()
    assert status.to_dict()["status"] == "deleted"
