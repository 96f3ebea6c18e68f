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
     [("deploy", "deploy_merge", "merge/abc123")]),
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
