"""A task's life as pure decisions: transitions, the dispatch gate, budgets and stalls."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from functions.orchestrator import lifecycle
from functions.orchestrator.lifecycle import (
    BLOCKED,
    CANCELLED,
    DISPATCHED,
    FAILED,
    QUEUED,
    RUNNING,
    STATES,
    SUCCEEDED,
    WAITING_APPROVAL,
    GateFacts,
    InvalidTransition,
    Usage,
)
from shared.errors import PermanentError

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
TODAY = "2026-03-10"
RESET = "resets at 2026-03-11 00:00 UTC"

# ---------------------------------------------------------------------------------------------
# Transitions

ALLOWED_MOVES = [(current, target) for current in STATES for target in sorted(lifecycle.TRANSITIONS[current])]


@pytest.mark.parametrize("current,target", ALLOWED_MOVES, ids=[f"{c}-to-{t}" for c, t in ALLOWED_MOVES])
def test_every_allowed_move_passes_the_check(current, target):
    assert lifecycle.allowed(current, target)
    lifecycle.check_transition("t-1", current, target)


FORBIDDEN_MOVES = [
    ("succeeded-to-queued", SUCCEEDED, QUEUED),
    ("succeeded-to-failed", SUCCEEDED, FAILED),
    ("succeeded-to-running", SUCCEEDED, RUNNING),
    ("queued-to-running", QUEUED, RUNNING),
    ("queued-to-succeeded", QUEUED, SUCCEEDED),
    ("queued-to-failed", QUEUED, FAILED),
    ("queued-to-queued", QUEUED, QUEUED),
    ("waiting-approval-to-dispatched", WAITING_APPROVAL, DISPATCHED),
    ("waiting-approval-to-running", WAITING_APPROVAL, RUNNING),
    ("waiting-approval-to-succeeded", WAITING_APPROVAL, SUCCEEDED),
    ("running-to-dispatched", RUNNING, DISPATCHED),
    ("failed-to-running", FAILED, RUNNING),
    ("cancelled-to-succeeded", CANCELLED, SUCCEEDED),
    ("blocked-to-dispatched", BLOCKED, DISPATCHED),
    ("nothing-to-queued", "", QUEUED),
    ("unknown-state", "exploded", QUEUED),
    ("to-unknown-state", QUEUED, "exploded"),
]


@pytest.mark.parametrize("current,target", [c[1:] for c in FORBIDDEN_MOVES],
                         ids=[c[0] for c in FORBIDDEN_MOVES])
def test_forbidden_moves_raise_with_the_task_id(current, target):
    assert not lifecycle.allowed(current, target)
    message = f"task t-42 cannot go from {current or 'nothing'} to {target}"
    with pytest.raises(InvalidTransition, match=message):
        lifecycle.check_transition("t-42", current, target)


def test_the_transition_table_is_closed_and_succeeded_is_final():
    assert set(lifecycle.TRANSITIONS) == set(STATES)
    assert all(targets <= set(STATES) for targets in lifecycle.TRANSITIONS.values())
    assert lifecycle.TRANSITIONS[SUCCEEDED] == frozenset()
    assert issubclass(InvalidTransition, PermanentError)


def test_history_entry_caps_the_reason():
    entry = lifecycle.history_entry(NOW, QUEUED, DISPATCHED, "x" * 900, "orchestrator")
    assert entry == {"at": NOW, "from": QUEUED, "to": DISPATCHED, "reason": "x" * 500,
                     "actor": "orchestrator"}


# ---------------------------------------------------------------------------------------------
# The dispatch gate

BASE = GateFacts(agent="code", repository="octo/widgets", kind="implement_issue", number=12)


def given(**changes) -> GateFacts:
    return dataclasses.replace(BASE, **changes)


GATE_CASES = [
    # (id, facts, task id, expected outcome, expected reason)
    ("everything-fine", BASE, "t-1", "dispatch", ""),
    ("unreadable-policy-waits-before-anything", given(policy_unavailable="cannot be read: 403",
                                                     agent_enabled=False), "t-1", "wait",
     "cannot be read: 403"),
    ("agent-disabled", given(agent_enabled=False), "t-1", "block",
     "the code agent is off for this repository"),
    ("agent-disabled-with-reason", given(agent_enabled=False, disabled_reason="policy file is invalid"),
     "t-1", "block", "policy file is invalid"),
    ("disabled-blocks-before-global-pause", given(agent_enabled=False, global_paused=True), "t-1", "block",
     "the code agent is off for this repository"),
    ("global-pause-waits", given(global_paused=True), "t-1", "wait", "all agents are paused"),
    ("global-pause-with-reason", given(global_paused=True, global_pause_reason="incident 7"), "t-1", "wait",
     "all agents are paused: incident 7"),
    ("global-pause-before-agent-pause", given(global_paused=True, agent_paused=True), "t-1", "wait",
     "all agents are paused"),
    ("exempt-passes-global-pause", given(agent="orchestrator", repository="", kind="task_sweep",
                                         global_paused=True, exempt_from_pause=True), "t-1", "dispatch", ""),
    ("exempt-does-not-pass-disabled", given(global_paused=True, exempt_from_pause=True, agent_enabled=False),
     "t-1", "block", "the code agent is off for this repository"),
    ("agent-pause", given(agent_paused=True, repo_paused=True), "t-1", "wait", "the code agent is paused"),
    ("repo-pause", given(repo_paused=True), "t-1", "wait", "agents are paused in octo/widgets"),
    ("repo-pause-with-reason", given(repo_paused=True, repo_pause_reason="release week", held_by="alice"),
     "t-1", "wait", "agents are paused in octo/widgets: release week"),
    ("hold-names-who-held", given(held_by="alice", dependencies={"t-0": QUEUED}), "t-1", "wait",
     "on hold by alice"),
    ("dependency-running-waits", given(dependencies={"t-0": RUNNING}), "t-1", "wait",
     "waiting for dependency t-0 (running)"),
    ("dependency-missing-waits", given(dependencies={"t-0": ""}), "t-1", "wait",
     "waiting for dependency t-0 (not created yet)"),
    ("dependency-done-dispatches", given(dependencies={"t-0": SUCCEEDED}), "t-1", "dispatch", ""),
    ("dependency-failed-blocks", given(dependencies={"t-0": FAILED}), "t-1", "block",
     "dependency t-0 ended failed"),
    ("dependency-cancelled-blocks", given(dependencies={"t-0": CANCELLED}), "t-1", "block",
     "dependency t-0 ended cancelled"),
    ("dependency-blocked-blocks", given(dependencies={"t-0": BLOCKED}), "t-1", "block",
     "dependency t-0 ended blocked"),
    ("ended-dependency-blocks-even-behind-a-waiting-one", given(dependencies={"a": RUNNING, "b": FAILED}),
     "t-1", "block", "dependency b ended failed"),
    ("dependency-before-approval", given(dependencies={"t-0": QUEUED}, approval_step="deploy"), "t-1", "wait",
     "waiting for dependency t-0 (queued)"),
    ("approval-needed", given(approval_step="deploy"), "t-1", "approval", "deploy needs approval"),
    ("approval-given", given(approval_step="deploy", approved=True), "t-1", "dispatch", ""),
    ("approval-before-slot", given(approval_step="deploy", slot="deploy:api", slot_limit=1,
                                   slot_holders=("t-9",)), "t-1", "approval", "deploy needs approval"),
    ("slot-at-limit-names-the-runner", given(slot="code:octo/widgets", slot_limit=1, slot_holders=("t-9",)),
     "t-1", "wait", "code:octo/widgets is at its limit of 1: running t-9"),
    ("slot-below-limit", given(slot="code:octo/widgets", slot_limit=2, slot_holders=("t-9",)), "t-1",
     "dispatch", ""),
    ("slot-holder-is-itself", given(slot="code:octo/widgets", slot_limit=1, slot_holders=("t-1",)), "t-1",
     "dispatch", ""),
    ("slot-unlimited", given(slot="code:octo/widgets", slot_holders=("t-8", "t-9")), "t-1", "dispatch", ""),
    ("slot-before-budget", given(slot="s", slot_limit=1, slot_holders=("t-9",), repo_daily_tasks=0), "t-1",
     "wait", "s is at its limit of 1: running t-9"),
    ("repo-tasks-spent", given(repo_usage=Usage(TODAY, 5), repo_daily_tasks=5), "t-1", "wait",
     f"octo/widgets daily budget spent: 5 of 5 tasks today; {RESET}"),
    ("repo-cost-spent", given(repo_usage=Usage(TODAY, 1, 12.5), repo_daily_cost=12.5), "t-1", "wait",
     f"octo/widgets daily budget spent: 12.5 of 12.5 cost units today; {RESET}"),
    ("repo-before-global", given(repo_usage=Usage(TODAY, 5), repo_daily_tasks=5,
                                 global_usage=Usage(TODAY, 9), global_daily_tasks=9), "t-1", "wait",
     f"octo/widgets daily budget spent: 5 of 5 tasks today; {RESET}"),
    ("global-tasks-spent", given(global_usage=Usage(TODAY, 100), global_daily_tasks=100), "t-1", "wait",
     f"global daily budget spent: 100 of 100 tasks today; {RESET}"),
    ("global-cost-spent", given(global_usage=Usage(TODAY, 3, 40.0), global_daily_cost=40.0), "t-1", "wait",
     f"global daily budget spent: 40 of 40 cost units today; {RESET}"),
    ("yesterdays-usage-is-reset", given(repo_usage=Usage("2026-03-09", 5, 99.0), repo_daily_tasks=5,
                                        repo_daily_cost=10.0, global_usage=Usage("2026-03-09", 100),
                                        global_daily_tasks=100), "t-1", "dispatch", ""),
    ("installation-wide-is-not-charged", given(repository="", repo_usage=Usage(TODAY, 5), repo_daily_tasks=5,
                                               global_usage=Usage(TODAY, 100), global_daily_tasks=100),
     "t-1", "dispatch", ""),
]


@pytest.mark.parametrize("facts,task_id,outcome,reason", [c[1:] for c in GATE_CASES],
                         ids=[c[0] for c in GATE_CASES])
def test_gate(facts, task_id, outcome, reason):
    decision = lifecycle.gate(facts, task_id, NOW)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    assert decision.dispatch is (outcome == "dispatch")


SLOT_CASES = [
    ("code-per-repo", "code", "octo/widgets", None, "code:octo/widgets"),
    ("code-without-repo", "code", "", None, ""),
    ("deploy-per-service", "deploy", "octo/widgets", "api", "deploy:api"),
    ("deploy-falls-back-to-repo", "deploy", "octo/widgets", None, "deploy:octo/widgets"),
    ("unlimited-agent", "qa", "octo/widgets", "api", ""),
    ("orchestrator", "orchestrator", "", None, ""),
]


@pytest.mark.parametrize("agent,repository,service,key", [c[1:] for c in SLOT_CASES],
                         ids=[c[0] for c in SLOT_CASES])
def test_slot_key(agent, repository, service, key):
    assert lifecycle.slot_key(agent, repository, service) == key


# ---------------------------------------------------------------------------------------------
# Budgets

RESET_CASES = [
    ("afternoon", NOW, "2026-03-10", datetime(2026, 3, 11, tzinfo=UTC)),
    ("midnight", datetime(2026, 3, 10, tzinfo=UTC), "2026-03-10", datetime(2026, 3, 11, tzinfo=UTC)),
    ("last-microsecond", datetime(2026, 3, 10, 23, 59, 59, 999999, tzinfo=UTC), "2026-03-10",
     datetime(2026, 3, 11, tzinfo=UTC)),
    ("end-of-month", datetime(2026, 2, 28, 12, tzinfo=UTC), "2026-02-28", datetime(2026, 3, 1, tzinfo=UTC)),
    ("end-of-year", datetime(2026, 12, 31, 23, tzinfo=UTC), "2026-12-31", datetime(2027, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("now,day,reset", [c[1:] for c in RESET_CASES], ids=[c[0] for c in RESET_CASES])
def test_budget_day_and_next_reset(now, day, reset):
    assert lifecycle.budget_day(now) == day
    assert lifecycle.next_reset(now) == reset


FROM_DOC_CASES = [
    ("none", None, Usage()),
    ("a-list", ["day", 3], Usage()),
    ("a-string", "2026-03-10", Usage()),
    ("empty", {}, Usage()),
    ("nulls", {"day": None, "tasks": None, "cost": None}, Usage()),
    ("complete", {"day": TODAY, "tasks": 3, "cost": 1.5}, Usage(TODAY, 3, 1.5)),
    ("numeric-strings", {"day": TODAY, "tasks": "4", "cost": "2.25"}, Usage(TODAY, 4, 2.25)),
    ("extra-keys", {"day": TODAY, "tasks": 1, "owner": "x"}, Usage(TODAY, 1, 0.0)),
]


@pytest.mark.parametrize("doc,usage", [c[1:] for c in FROM_DOC_CASES], ids=[c[0] for c in FROM_DOC_CASES])
def test_usage_from_doc(doc, usage):
    assert Usage.from_doc(doc) == usage


def test_usage_round_trips_and_adds():
    usage = Usage(TODAY, 2, 1.5)
    assert Usage.from_doc(usage.to_doc()) == usage
    assert usage.plus(tasks=1) == Usage(TODAY, 3, 1.5)
    assert usage.plus(cost=0.25) == Usage(TODAY, 2, 1.75)
    assert usage == Usage(TODAY, 2, 1.5)  # frozen: plus makes a new one


ON_CASES = [
    ("same-day-keeps", Usage(TODAY, 4, 2.0), TODAY, Usage(TODAY, 4, 2.0)),
    ("new-day-resets", Usage("2026-03-09", 4, 2.0), TODAY, Usage(TODAY)),
    ("never-used", Usage(), TODAY, Usage(TODAY)),
]


@pytest.mark.parametrize("usage,day,seen", [c[1:] for c in ON_CASES], ids=[c[0] for c in ON_CASES])
def test_usage_on(usage, day, seen):
    assert usage.on(day) == seen


OVER_BUDGET_CASES = [
    ("tasks-below", Usage(TODAY, 4), 5, None, ""),
    ("tasks-at", Usage(TODAY, 5), 5, None, "repo budget spent: 5 of 5 tasks today"),
    ("tasks-above", Usage(TODAY, 7), 5, None, "repo budget spent: 7 of 5 tasks today"),
    ("zero-tasks-allowed", Usage(TODAY), 0, None, "repo budget spent: 0 of 0 tasks today"),
    ("cost-below", Usage(TODAY, 1, 9.99), None, 10.0, ""),
    ("cost-at", Usage(TODAY, 1, 10.0), None, 10.0, "repo budget spent: 10 of 10 cost units today"),
    ("cost-above", Usage(TODAY, 1, 12.5), None, 10.0, "repo budget spent: 12.5 of 10 cost units today"),
    ("tasks-reported-before-cost", Usage(TODAY, 5, 12.5), 5, 10.0, "repo budget spent: 5 of 5 tasks today"),
    ("both-unlimited", Usage(TODAY, 10_000, 1e9), None, None, ""),
]


@pytest.mark.parametrize("usage,daily_tasks,daily_cost,reason", [c[1:] for c in OVER_BUDGET_CASES],
                         ids=[c[0] for c in OVER_BUDGET_CASES])
def test_over_budget(usage, daily_tasks, daily_cost, reason):
    assert lifecycle.over_budget("repo", usage, daily_tasks, daily_cost) == reason


# ---------------------------------------------------------------------------------------------
# Stalls

HEARTBEAT = timedelta(minutes=10)


def task(status: str = RUNNING, **fields) -> dict:
    return {"status": status, "agent": "code", "dispatched_at": NOW - timedelta(minutes=30),
            "deadline_at": NOW + timedelta(hours=1), **fields}


STALL_CASES = [
    ("alive", task(heartbeat_at=NOW - timedelta(minutes=2)), ""),
    ("dispatched-and-alive", task(DISPATCHED, dispatched_at=NOW - timedelta(minutes=1)), ""),
    ("heartbeat-just-inside", task(heartbeat_at=NOW - timedelta(minutes=9, seconds=59)), ""),
    ("heartbeat-at-the-limit", task(heartbeat_at=NOW - HEARTBEAT),
     "no heartbeat from the code agent for 10 min"),
    ("heartbeat-long-gone", task(heartbeat_at=NOW - timedelta(minutes=47, seconds=30)),
     "no heartbeat from the code agent for 47 min"),
    ("no-heartbeat-falls-back-to-dispatch", task(), "no heartbeat from the code agent for 30 min"),
    ("past-deadline", task(heartbeat_at=NOW, deadline_at=NOW - timedelta(minutes=1)),
     "past its deadline of 2026-03-10 14:29 UTC"),
    ("at-deadline", task(heartbeat_at=NOW, deadline_at=NOW), "past its deadline of 2026-03-10 14:30 UTC"),
    ("deadline-before-heartbeat", task(deadline_at=NOW - timedelta(minutes=5)),
     "past its deadline of 2026-03-10 14:25 UTC"),
    ("waiting-is-alive-without-heartbeat", task(waits_for=["check_suite:octo/widgets@abc"]), ""),
    ("waiting-past-deadline-stalls", task(waits_for=["check_suite:octo/widgets@abc"], deadline_at=NOW),
     "past its deadline of 2026-03-10 14:30 UTC"),
    ("no-deadline-no-times", {"status": RUNNING, "agent": "code"}, ""),
    ("queued-never-stalls", task(QUEUED, deadline_at=NOW - timedelta(days=1)), ""),
    ("waiting-approval-never-stalls", task(WAITING_APPROVAL, deadline_at=NOW - timedelta(days=1)), ""),
    ("succeeded-never-stalls", task(SUCCEEDED, deadline_at=NOW - timedelta(days=1)), ""),
    ("failed-never-stalls", task(FAILED), ""),
]


@pytest.mark.parametrize("task,reason", [c[1:] for c in STALL_CASES], ids=[c[0] for c in STALL_CASES])
def test_stall_reason(task, reason):
    assert lifecycle.stall_reason(task, NOW, HEARTBEAT) == reason


AFTER_STALL_CASES = [
    ("first-stall-of-three", 0, 3, "retry"),
    ("second-stall-of-three", 1, 3, "retry"),
    ("last-attempt-escalates", 2, 3, "escalate"),
    ("beyond-escalates", 5, 3, "escalate"),
    ("single-attempt-escalates", 0, 1, "escalate"),
    ("two-attempts-retries-once", 0, 2, "retry"),
]


@pytest.mark.parametrize("retries,max_attempts,decision", [c[1:] for c in AFTER_STALL_CASES],
                         ids=[c[0] for c in AFTER_STALL_CASES])
def test_after_stall(retries, max_attempts, decision):
    assert lifecycle.after_stall(retries, max_attempts) == decision


DEADLINE_CASES = [
    ("implement", "implement_issue", timedelta(hours=2)),
    ("review", "review_pull_request", timedelta(hours=1)),
    ("deploy", "deploy_merge", timedelta(hours=3)),
    ("probe", "probe_production", timedelta(minutes=10)),
    ("unknown-kind-default", "weekly_report", lifecycle.DEFAULT_DEADLINE),
]


@pytest.mark.parametrize("kind,allowance", [c[1:] for c in DEADLINE_CASES],
                         ids=[c[0] for c in DEADLINE_CASES])
def test_deadline_for(kind, allowance):
    assert lifecycle.deadline_for(kind, NOW) == NOW + allowance


WAITING = ["check_suite:octo/widgets@abc"]
RECHECK_CASES = [
    ("waiting-long-since-it-spoke", task(waits_for=WAITING, heartbeat_at=NOW - HEARTBEAT), True),
    ("waiting-but-just-spoke", task(waits_for=WAITING, heartbeat_at=NOW - timedelta(minutes=3)), False),
    ("waiting-falls-back-to-dispatch", task(waits_for=WAITING), True),
    ("working-is-not-rechecked", task(heartbeat_at=NOW - timedelta(hours=1)), False),
    ("queued-is-not-rechecked", task(QUEUED, waits_for=WAITING), False),
    ("finished-is-not-rechecked", task(SUCCEEDED, waits_for=WAITING), False),
]


@pytest.mark.parametrize("task,expected", [c[1:] for c in RECHECK_CASES], ids=[c[0] for c in RECHECK_CASES])
def test_needs_recheck(task, expected):
    assert lifecycle.needs_recheck(task, NOW, HEARTBEAT) is expected
