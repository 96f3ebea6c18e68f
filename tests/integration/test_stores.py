"""The Firestore adapters' contracts: claims, dispatch leases and results, including races."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from shared.firestore_store import CLAIM_LEASE
from shared.ports import Claim, DeliveryRecord, Dispatch, TaskSpec
from shared.task_store import DISPATCH_LEASE, DispatchPolicy

pytestmark = pytest.mark.emulators

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def record(delivery_id: str = "d-1") -> DeliveryRecord:
    return DeliveryRecord(delivery_id, "push", "", "o/r", 1, NOW)


def begin(tasks, task: TaskSpec, now: datetime) -> tuple[object, int]:
    begun = tasks.begin_dispatch(task, DispatchPolicy(), now)
    return begun.outcome, begun.attempt


def spec(task_id: str = "t-1") -> TaskSpec:
    return TaskSpec(task_id, "test_pull_request", "test", "o/r", 1, "pull/1@a", "delivery/d-1",
                    {"pull_number": 1})


def test_claim_lifecycle(services):
    ledger = services.ledger()
    assert ledger.claim(record(), NOW) is Claim.CLAIMED
    assert ledger.claim(record(), NOW + timedelta(seconds=1)) is Claim.IN_FLIGHT
    # The owner died: once its lease is over, a redelivery takes the claim over.
    assert ledger.claim(record(), NOW + CLAIM_LEASE + timedelta(seconds=1)) is Claim.CLAIMED
    ledger.mark_failed("d-1", "publish timed out", NOW)
    assert ledger.claim(record(), NOW) is Claim.CLAIMED
    ledger.mark_published("d-1", "m-1", NOW)
    assert ledger.claim(record(), NOW) is Claim.DUPLICATE
    stored = ledger.get("d-1")
    assert (stored["status"], stored["attempts"], stored["message_id"]) == ("published", 3, "m-1")
    assert stored["expire_at"] > NOW + timedelta(days=29)


def test_concurrent_claims_of_one_delivery_have_one_winner(services):
    ledger = services.ledger()
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: ledger.claim(record("d-race"), NOW), range(4)))
    assert outcomes.count(Claim.CLAIMED) == 1
    assert outcomes.count(Claim.IN_FLIGHT) == 3


def test_mark_processed_is_once_per_consumer(services):
    ledger = services.ledger()
    assert ledger.mark_processed("tick-1", "orchestrator", ["t-1"], NOW, job="monitor") is True
    assert ledger.mark_processed("tick-1", "orchestrator", ["t-1"], NOW, job="monitor") is False
    stored = ledger.get("tick-1")
    assert stored["processed_by"]["orchestrator"]["job"] == "monitor"
    assert stored["task_ids"] == ["t-1"]


def test_dispatch_lease_lifecycle(services):
    tasks = services.tasks()
    assert begin(tasks, spec(), NOW) == (Dispatch.DISPATCH, 1)
    assert begin(tasks, spec(), NOW + timedelta(seconds=1)) == (Dispatch.BUSY, 1)
    tasks.abandon_dispatch("t-1", "publish failed", NOW)
    assert begin(tasks, spec(), NOW) == (Dispatch.DISPATCH, 1)
    assert begin(tasks, spec(), NOW + DISPATCH_LEASE + timedelta(seconds=1))[0] is Dispatch.DISPATCH
    tasks.finish_dispatch("t-1", "m-9", NOW)
    assert begin(tasks, spec(), NOW) == (Dispatch.ALREADY, 1)
    stored = tasks.get("t-1")
    assert stored["status"] == "dispatched"
    assert stored["message_id"] == "m-9"
    assert stored["inputs"] == {"pull_number": 1}
    assert stored["last_error"] == "publish failed"


def test_concurrent_dispatch_of_one_task_has_one_winner(services):
    tasks = services.tasks()
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = [o for o, _ in pool.map(lambda _: begin(tasks, spec("t-race"), NOW), range(3))]
    assert outcomes.count(Dispatch.DISPATCH) == 1
    assert set(outcomes) <= {Dispatch.DISPATCH, Dispatch.BUSY}


RESULT_CASES = [
    # (id, results applied in order as (agent, attempt, status), expected applied flags, final status)
    ("succeeds", [("test", 1, "succeeded")], [True], "succeeded"),
    ("running-then-fails", [("test", 1, "running"), ("test", 1, "failed")], [True, True], "failed"),
    ("duplicate-result", [("test", 1, "succeeded"), ("test", 1, "succeeded")], [True, False], "succeeded"),
    ("after-terminal", [("test", 1, "failed"), ("test", 1, "succeeded")], [True, False], "failed"),
    ("wrong-agent", [("qa", 1, "succeeded")], [False], "dispatched"),
    ("stale-attempt", [("test", 2, "succeeded")], [False], "dispatched"),
    ("not-implemented-blocks", [("test", 1, "not_implemented")], [True], "blocked"),
]


@pytest.mark.parametrize("results,applied,final", [c[1:] for c in RESULT_CASES],
                         ids=[c[0] for c in RESULT_CASES])
def test_record_result(services, results, applied, final):
    tasks = services.tasks()
    begin(tasks, spec(), NOW)
    tasks.finish_dispatch("t-1", "m-1", NOW)
    outcomes = [tasks.record_result("t-1", agent, attempt, status, f"{status} now", NOW).applied
                for agent, attempt, status in results]
    assert outcomes == applied
    assert tasks.get("t-1")["status"] == final


def test_result_for_unknown_task_is_not_applied(services):
    assert services.tasks().record_result("nope", "test", 1, "succeeded", "x", NOW).applied is False


def test_audit_entries_are_written_once_per_key(services):
    audit = services.audit()
    audit.record(key="dispatch:t-1:1", actor="orchestrator", action="dispatch_task",
                 subject="task/t-1", outcome="dispatched", agent="test")
    audit.record(key="dispatch:t-1:1", actor="orchestrator", action="dispatch_task",
                 subject="task/t-1", outcome="dispatched", agent="test")
    entries = [d.to_dict() for d in services.firestore().collection("audit").stream()]
    assert len(entries) == 1
    assert entries[0]["facts"] == {"agent": "test"}
    assert entries[0]["expire_at"] > entries[0]["at"]


def code_spec(task_id: str) -> TaskSpec:
    return TaskSpec(task_id, "implement_issue", "code", "o/r", 1, f"issue/{task_id}", "delivery/d",
                    {"issue_number": 1})


CODE_SLOT = DispatchPolicy(slot="code:o/r", slot_limit=1)


def test_a_task_cancelled_mid_dispatch_gives_its_concurrency_slot_back(services):
    tasks = services.tasks()
    assert tasks.begin_dispatch(code_spec("c-1"), CODE_SLOT, NOW).outcome is Dispatch.DISPATCH
    assert tasks.begin_dispatch(code_spec("c-2"), CODE_SLOT, NOW).outcome == "wait"
    assert tasks.transition("c-1", "cancelled", "/cancel", "@writer", NOW).applied
    tasks.finish_dispatch("c-1", "m-late", NOW)  # the publish that was in flight lands afterwards
    assert tasks.get("c-1")["status"] == "cancelled"
    assert tasks.slot_holders("code:o/r") == []
    assert tasks.begin_dispatch(code_spec("c-2"), CODE_SLOT, NOW).outcome is Dispatch.DISPATCH


def test_a_result_that_overtakes_the_dispatch_mark_is_applied(services):
    tasks = services.tasks()
    tasks.begin_dispatch(code_spec("fast"), CODE_SLOT, NOW)
    changed = tasks.record_result("fast", "code", 1, "succeeded", "done already", NOW)
    assert changed.applied and changed.released_slot == "code:o/r"
    tasks.finish_dispatch("fast", "m-1", NOW)
    stored = tasks.get("fast")
    assert stored["status"] == "succeeded"
    assert [h["to"] for h in stored["history"]] == ["queued", "succeeded"]


def test_an_approval_grant_for_an_old_head_is_refused_in_the_transaction(services):
    tasks = services.tasks()
    policy = DispatchPolicy(approval_step="deploy", approval_rule={"count": 1})
    assert tasks.begin_dispatch(spec("gate"), policy, NOW).outcome == "approval"
    tasks.update_approval("gate", lambda a: {**a, "head_sha": "new"}, NOW)  # a push expired it
    moved = tasks.transition("gate", "queued", "approved", "@writer", NOW, expected=["waiting_approval"],
                             guard=lambda stored: stored["approval"]["head_sha"] == "old")
    assert not moved.applied
    assert tasks.get("gate")["status"] == "waiting_approval"
