"""The release document's encoding: every field and action survives a Firestore round trip."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from functions.deploy_agent import release as rel
from functions.deploy_agent import store
from functions.deploy_agent.canary import DeployPlan
from functions.orchestrator import core
from shared.policy import SmokeCheck

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
CHECK = SmokeCheck("/health", 200, 800)

ACTIONS = [
    rel.CreateGitHubDeployment("abc", "production", "deploy v1"),
    rel.SetDeploymentStatus("in_progress", "building"),
    rel.StartBuild("v20261201-1200-abc1234"),
    rel.RunSmoke("v20261201-1200-abc1234", (CHECK, SmokeCheck("/ready"))),
    rel.SetTraffic({"v-old": 0.9, "v-new": 0.1}),
    rel.Rollback("v-old"),
    rel.OpenIncident("Rollback of widgets", "body"),
    rel.Notify("text"),
    rel.DeleteVersions(("v1", "v2")),
    rel.Wait(NOW + timedelta(minutes=5)),
]


@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: type(action).__name__)
def test_every_action_round_trips(action):
    doc = store.action_doc(action)
    assert doc["type"] == type(action).__name__
    assert all(not isinstance(value, tuple) for value in doc.values())  # Firestore stores lists
    assert store.action_from_doc(doc) == action


def test_every_action_type_of_the_state_machine_is_encodable():
    assert set(store.ACTION_TYPES.values()) == set(rel.Action.__args__)


def test_a_release_with_its_timeline_round_trips_and_says_whether_it_is_active():
    release = rel.new_release("octo/widgets", "widgets", "a" * 40, 7, "v-old", NOW)
    decision = rel.next_step(release, rel.PreflightChecked(), DeployPlan(smoke=(CHECK,)), NOW)
    doc = store.release_doc(decision.release)
    assert doc["active"] is True and doc["state"] == rel.BUILDING
    assert doc["timeline"][0]["step"] == "preflight" and isinstance(doc["timeline"][0]["metrics"], dict)
    assert store.release_from_doc(doc) == decision.release
    ended = store.release_doc(dataclasses.replace(decision.release, state=rel.SUCCEEDED))
    assert ended["active"] is False


def test_a_plan_round_trips():
    plan = DeployPlan(canary_steps=(5, 25, 100), smoke=(CHECK,), inconclusive="pass", max_p95_ms=300)
    assert store.plan_from_doc(store.plan_doc(plan)) == plan


def test_pending_actions_are_the_ones_after_done():
    doc = {"pending": [store.action_doc(action) for action in ACTIONS[:3]], "done": 1}
    assert [index for index, _ in store.pending_actions(doc)] == [1, 2]
    assert store.pending_actions({"pending": [], "done": 0}) == []


def test_a_rollback_command_reaches_the_woken_deploy_task_with_its_actor():
    facts = core.EventFacts("chatops", "rollback", "d-1", "octo/widgets", 77,
                            {"chatops": {"actor": "@alice"}})
    assert core.wake_summary(facts) == {"event": "chatops", "action": "rollback", "delivery_id": "d-1",
                                        "actor": "@alice"}
    build = core.EventFacts("cloud_build", "success", "b-1", "", 0,
                            {"build": {"id": "b-9", "status": "SUCCESS"}})
    assert core.wake_summary(build)["build_id"] == "b-9"


def test_the_deploy_and_rollback_specs_are_stable_per_merge_and_minute():
    pull = {"merged": True, "merge_commit_sha": "f" * 40, "number": 7,
            "base": {"ref": "main", "repo": {"default_branch": "main"}}}
    first = core.deploy_spec("octo/widgets", 77, pull, "delivery/1", {})
    assert first is not None
    assert first.task_id == core.task_id("deploy_merge", "octo/widgets", f"merge/{'f' * 40}")
    assert core.deploy_spec("octo/widgets", 77, {**pull, "merged": False}, "d", {}) is None
    elsewhere = {**pull, "base": {"ref": "release-x", "repo": {"default_branch": "main"}}}
    assert core.deploy_spec("octo/widgets", 77, elsewhere, "d", {}) is None  # not behind main's rules
    one = core.rollback_spec("octo/widgets", 77, "r-1", 7, "s", "@bob", NOW)
    assert one.task_id == core.rollback_spec("octo/widgets", 77, "r-1", 7, "t", "@bob", NOW).task_id
    later = core.rollback_spec("octo/widgets", 77, "r-1", 7, "s", "@bob", NOW + timedelta(minutes=1))
    assert one.task_id != later.task_id


def test_rollback_targets_what_serves_not_merely_the_newest_release():
    from functions.orchestrator.handler import _rollback_target

    live = {"id": "live", "state": "succeeded", "active": False, "pull_number": 5}
    building = {"id": "next", "state": "building", "active": True, "pull_number": 6}
    failed = {"id": "broken", "state": "failed", "active": False, "pull_number": 7}
    newest_first = [failed, building, live]
    assert _rollback_target(newest_first, 0)["id"] == "live"  # what serves, past a failed and a building one
    assert _rollback_target(newest_first, 6)["id"] == "next"  # on its own PR: that release
    assert _rollback_target(newest_first, 7)["id"] == "live"  # a PR whose release ended: what serves
    assert _rollback_target([failed, building], 0)["id"] == "next"
    assert _rollback_target([failed], 0) is None
