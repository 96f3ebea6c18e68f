"""The orchestrator's routing table, case by case."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from functions.orchestrator import core
from shared import topology
from tests.support import github


def facts(event: str, action: str, payload: dict, repository: str = "octo/widgets") -> core.EventFacts:
    return core.EventFacts(event, action, "d-1", repository, 7, payload)


def labelled(name: str, pull_request: bool = False) -> dict:
    issue = {"number": 12, "title": "Add a widget"}
    if pull_request:
        issue["pull_request"] = {"url": "x"}
    return {"label": {"name": name}, "issue": issue}


def pull(action: str, merged: bool = False, base: str = "main", default: str = "main",
         sha: str | None = "abc123") -> dict:
    return {
        "action": action,
        "pull_request": {"number": 5, "merged": merged, "merge_commit_sha": sha,
                         "head": {"sha": "h1", "ref": "feature"}, "base": {"ref": base}},
        "repository": {"default_branch": default},
    }


ROUTING_CASES = [
    # (id, event, action, payload, expected [(agent, kind, subject)])
    ("agent-task-label", "issues", "labeled", labelled("agent-task"),
     [("code", "implement_issue", "issue/12")]),
    ("other-label", "issues", "labeled", labelled("bug"), []),
    ("label-on-pull-request-issue", "issues", "labeled", labelled("agent-task", True), []),
    ("issue-opened", "issues", "opened", labelled("agent-task"), []),
    ("pr-opened", "pull_request", "opened", pull("opened"),
     [("test", "test_pull_request", "pull/5@h1"), ("qa", "review_pull_request", "pull/5@h1")]),
    ("pr-synchronize", "pull_request", "synchronize", pull("synchronize"),
     [("test", "test_pull_request", "pull/5@h1"), ("qa", "review_pull_request", "pull/5@h1")]),
    ("pr-reopened", "pull_request", "reopened", pull("reopened"),
     [("test", "test_pull_request", "pull/5@h1"), ("qa", "review_pull_request", "pull/5@h1")]),
    ("pr-edited", "pull_request", "edited", pull("edited"), []),
    ("pr-merged-to-default", "pull_request", "closed", pull("closed", merged=True),
     [("deploy", "deploy_merge", "merge/abc123"), ("test", "update_baseline", "merge/abc123")]),
    ("pr-closed-unmerged", "pull_request", "closed", pull("closed"), []),
    ("pr-merged-elsewhere", "pull_request", "closed", pull("closed", merged=True, base="release"), []),
    ("pr-merged-without-sha", "pull_request", "closed", pull("closed", merged=True, sha=None), []),
    ("pr-missing-head", "pull_request", "opened", {"pull_request": {"number": 5}}, []),
    ("hostile-payload", "pull_request", "opened", {"pull_request": ["not", "a", "dict"]}, []),
    ("push", "push", "", {"ref": "refs/heads/main"}, []),
    ("unknown-event", "sponsorship", "created", {}, []),
]


@pytest.mark.parametrize("event,action,payload,expected", [c[1:] for c in ROUTING_CASES],
                         ids=[c[0] for c in ROUTING_CASES])
def test_route_event(event, action, payload, expected):
    specs = core.route_event(facts(event, action, payload))
    assert [(s.agent, s.kind, s.subject) for s in specs] == expected
    for spec in specs:
        assert spec.task_id == core.task_id(spec.kind, "octo/widgets", spec.subject)
        assert spec.source == "delivery/d-1"
        assert spec.installation_id == 7


def test_task_ids_are_deterministic_and_distinct_per_subject():
    first = core.route_event(facts("pull_request", "opened", pull("opened")))
    again = core.route_event(core.EventFacts("pull_request", "opened", "d-2", "octo/widgets", 7,
                                             pull("opened")))
    assert [s.task_id for s in first] == [s.task_id for s in again]
    other_repo = core.route_event(facts("pull_request", "opened", pull("opened"), "octo/gadgets"))
    assert {s.task_id for s in first}.isdisjoint(s.task_id for s in other_repo)
    assert len({s.task_id for s in first}) == 2


def test_official_examples_route_where_expected():
    opened = github.example("pull_request", "opened")
    agents = [s.agent for s in core.route_event(facts("pull_request", "opened", opened))]
    assert agents == ["test", "qa"]


def test_every_route_targets_a_declared_agent():
    for route in core.ROUTES:
        assert route.agent in topology.AGENTS_BY_NAME, route.key()
    for job, tick in core.TICK_ROUTES.items():
        assert job in topology.TICK_JOBS
        assert tick.agent in topology.AGENTS_BY_NAME or tick.agent == core.ORCHESTRATOR
    assert set(core.TICK_ROUTES) == set(topology.TICK_JOBS)


TICK_CASES = [
    ("monitor-each-minute", "monitor", datetime(2026, 1, 5, 9, 17, 59, tzinfo=timezone.utc),
     "tick/monitor/2026-01-05T09:17Z"),
    ("scout-hourly-slot", "repo_scout", datetime(2026, 1, 5, 8, 0, 3, tzinfo=timezone.utc),
     "tick/repo_scout/2026-01-05T08:00Z"),
    ("sweep-five-minute-slot", "redelivery_sweep", datetime(2026, 1, 5, 8, 14, 0, tzinfo=timezone.utc),
     "tick/redelivery_sweep/2026-01-05T08:10Z"),
]


@pytest.mark.parametrize("job,published,subject", [c[1:] for c in TICK_CASES], ids=[c[0] for c in TICK_CASES])
def test_route_tick(job, published, subject):
    (spec,) = core.route_tick(job, "m-1", published)
    assert spec.subject == subject
    assert spec.source == "tick/m-1"
    assert core.route_tick(job, "m-2", published)[0].task_id == spec.task_id


def test_unknown_tick_routes_nowhere():
    assert core.route_tick("nope", "m", datetime(2026, 1, 1, tzinfo=timezone.utc)) == []


INSTALLATION_CASES = [
    # (id, event, action, expected status, added, removed)
    ("created", "installation", "created", "active", ["Codertocat/Hello-World"], []),
    ("deleted", "installation", "deleted", "deleted", [], ["octocat/Hello-World"]),
    ("suspend", "installation", "suspend", "suspended", [], []),
    ("unsuspend", "installation", "unsuspend", "active", [], []),
    ("repos-added", "installation_repositories", "added", "", ["Codertocat/Space"], []),
]


@pytest.mark.parametrize("event,action,status,added,removed", [c[1:] for c in INSTALLATION_CASES],
                         ids=[c[0] for c in INSTALLATION_CASES])
def test_installation_events_from_the_official_examples(event, action, status, added, removed):
    payload = github.example(event, action)
    change = core.installation_change(core.EventFacts(event, action, "d", "", 1, payload))
    assert change.installation_id == payload["installation"]["id"]
    assert change.status == status
    assert [r["full_name"] for r in change.added] == added
    assert [r["full_name"] for r in change.removed] == removed


def test_non_installation_events_and_hostile_payloads_change_nothing():
    assert core.installation_change(facts("push", "", {})) is None
    assert core.installation_change(facts("installation", "created", {"installation": "x"})) is None
    change = core.installation_change(facts("installation_repositories", "added", {
        "installation": {"id": 3}, "repositories_added": [{"full_name": 5}, "junk", {"full_name": "o/r"}]}))
    assert [r["full_name"] for r in change.added] == ["o/r"]


SIGNAL_CASES = [
    # (id, event, action, expected handlers)
    ("comment-created", "issue_comment", "created", [core.CHATOPS]),
    ("comment-edited", "issue_comment", "edited", []),
    ("comment-deleted", "issue_comment", "deleted", []),
    ("review-submitted", "pull_request_review", "submitted", [core.APPROVAL]),
    ("review-dismissed", "pull_request_review", "dismissed", [core.APPROVAL]),
    ("review-edited", "pull_request_review", "edited", []),
    ("pr-synchronize", "pull_request", "synchronize", [core.HEAD_MOVED]),
    ("pr-opened", "pull_request", "opened", []),
    ("check-suite-completed", "check_suite", "completed", [core.WAKE]),
    ("check-suite-requested", "check_suite", "requested", []),
    ("check-run-completed", "check_run", "completed", [core.WAKE]),
    ("check-run-created", "check_run", "created", []),
    ("workflow-run-completed", "workflow_run", "completed", [core.WAKE]),
    ("workflow-run-requested", "workflow_run", "requested", []),
    ("deployment-status-created", "deployment_status", "created", [core.WAKE]),
    ("status-has-no-action", "status", "", [core.WAKE]),
    ("push", "push", "", []),
]


@pytest.mark.parametrize("event,action,handlers", [c[1:] for c in SIGNAL_CASES],
                         ids=[c[0] for c in SIGNAL_CASES])
def test_signals_for(event, action, handlers):
    assert core.signals_for(facts(event, action, {})) == handlers


def test_every_signal_is_declared_once():
    keys = [(s.event, action) for s in core.SIGNALS for action in s.actions]
    assert len(keys) == len(set(keys))
    assert {s.handler for s in core.SIGNALS} == {core.CHATOPS, core.APPROVAL, core.HEAD_MOVED, core.WAKE}


WAKE_CASES = [
    # (id, event, payload, expected keys)
    ("check-suite", "check_suite", {"check_suite": {"head_sha": "s1"}}, ["check_suite:octo/widgets@s1"]),
    ("check-run", "check_run", {"check_run": {"head_sha": "s1"}}, ["check_run:octo/widgets@s1"]),
    ("check-run-without-sha", "check_run", {"check_run": {"head_sha": ""}}, []),
    ("workflow-run", "workflow_run", {"workflow_run": {"id": 88, "head_sha": "s1"}},
     ["workflow_run:octo/widgets#88", "workflow:octo/widgets@s1"]),
    ("workflow-run-id-only", "workflow_run", {"workflow_run": {"id": 88}}, ["workflow_run:octo/widgets#88"]),
    ("workflow-run-string-id", "workflow_run", {"workflow_run": {"id": "88", "head_sha": "s1"}},
     ["workflow:octo/widgets@s1"]),
    ("deployment", "deployment_status", {"deployment": {"id": 5}, "deployment_status": {"state": "success"}},
     ["deployment:octo/widgets#5"]),
    ("deployment-without-id", "deployment_status", {"deployment": None}, []),
    ("status", "status", {"sha": "s1", "state": "success"}, ["status:octo/widgets@s1"]),
    ("status-hostile-sha", "status", {"sha": ["s1"]}, []),
    ("hostile-payload", "check_suite", {"check_suite": "junk"}, []),
    ("not-a-wake-event", "push", {"after": "s1"}, []),
]


@pytest.mark.parametrize("event,payload,keys", [c[1:] for c in WAKE_CASES], ids=[c[0] for c in WAKE_CASES])
def test_wake_keys(event, payload, keys):
    assert core.wake_keys(facts(event, "completed", payload)) == keys


def test_wake_keys_and_summary_from_the_official_examples():
    suite = github.example("check_suite", "completed")
    suite_facts = core.EventFacts("check_suite", "completed", "d-9", "Codertocat/Hello-World", 1, suite)
    sha = suite["check_suite"]["head_sha"]
    assert core.wake_keys(suite_facts) == [f"check_suite:Codertocat/Hello-World@{sha}"]
    summary = core.wake_summary(suite_facts)
    assert summary["delivery_id"] == "d-9"
    assert (summary["id"], summary["head_sha"]) == (suite["check_suite"]["id"], sha)
    assert summary["conclusion"] == suite["check_suite"]["conclusion"]
    status = github.example("status")
    status_summary = core.wake_summary(core.EventFacts("status", "", "d", "o/r", 1, status))
    assert (status_summary["status"], status_summary["head_sha"]) == (status["state"], status["sha"])
    deployed = github.example("deployment_status", "created")
    deployed_facts = core.EventFacts("deployment_status", "created", "d", "o/r", 1, deployed)
    deployed_summary = core.wake_summary(deployed_facts)
    assert deployed_summary["state"] == deployed["deployment_status"]["state"]


def test_a_custom_task_label_routes_and_the_default_then_does_not():
    custom = core.EventFacts("issues", "labeled", "d-1", "octo/widgets", 7, labelled("ready-for-agent"),
                             task_label="ready-for-agent")
    assert [(s.agent, s.kind, s.subject) for s in core.route_event(custom)] == [
        ("code", "implement_issue", "issue/12")]
    default = core.EventFacts("issues", "labeled", "d-1", "octo/widgets", 7, labelled(core.AGENT_TASK_LABEL),
                              task_label="ready-for-agent")
    assert core.route_event(default) == []
    assert core.route_event(facts("issues", "labeled", labelled("ready-for-agent"))) == []
