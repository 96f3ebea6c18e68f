"""The hash-chained audit log on the Firestore emulator: appends, idempotency, tampering, races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from shared.audit import AUDIT, AUDIT_CHAINS, GENESIS_HASH, record_doc_id, verify_chains, verify_command

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"


def dispatch(audit, task: str, repository: str = REPO, **facts) -> None:
    audit.record(key=f"dispatch:{task}:1", actor="orchestrator", action="dispatch_task",
                 subject=f"task/{task}", outcome="dispatched", agent="test", repository=repository,
                 **facts)


def stored(services, key: str) -> dict:
    return services.firestore().collection(AUDIT).document(record_doc_id(key)).get().to_dict()


def test_records_on_two_chains_verify(services):
    audit = services.audit()
    for task_id in ("t1", "t2", "t3"):
        dispatch(audit, task_id, task_id=task_id, delivery_id="d-1",
                 link="https://github.com/octo/widgets/pull/7", started=datetime.now(timezone.utc),
                 paths=("a.py", "b.py"))
    audit.record(key="orchestrator:too_old:m-1", actor="orchestrator", action="drop_message",
                 subject="message/m-1", outcome="too_old", reason="published 2 h ago")
    audit.record(key="orchestrator:too_old:m-2", actor="orchestrator", action="drop_message",
                 subject="message/m-2", outcome="too_old", reason="published 3 h ago")

    reports = {r.chain: r for r in verify_chains(services.firestore())}
    assert {name: (r.records, r.starts_at, r.ok) for name, r in reports.items()} == {
        REPO: (3, 1, True), "system": (2, 1, True)}

    first, third = stored(services, "dispatch:t1:1"), stored(services, "dispatch:t3:1")
    assert (first["seq"], first["prev_hash"], third["seq"]) == (1, GENESIS_HASH, 3)
    assert (first["task_id"], first["delivery_id"], first["repository"], first["chain"]) == (
        "t1", "d-1", REPO, REPO)
    assert first["link"] == "https://github.com/octo/widgets/pull/7"
    assert first["facts"]["paths"] == ["a.py", "b.py"]
    assert isinstance(first["facts"]["started"], str)
    head = services.firestore().collection(AUDIT_CHAINS).document("octo:widgets").get().to_dict()
    assert (head["chain"], head["seq"], head["hash"]) == (REPO, 3, third["hash"])
    assert stored(services, "orchestrator:too_old:m-2")["prev_hash"] == stored(
        services, "orchestrator:too_old:m-1")["hash"]


def test_the_same_key_twice_is_one_record(services):
    audit = services.audit()
    dispatch(audit, "t1")
    dispatch(audit, "t1")
    dispatch(audit, "t2")
    records = [d.to_dict() for d in services.firestore().collection(AUDIT).stream()]
    assert sorted(r["seq"] for r in records) == [1, 2]
    assert [r.ok for r in verify_chains(services.firestore())] == [True]


def test_a_record_edited_in_firestore_is_detected(services):
    audit = services.audit()
    for task_id in ("t1", "t2", "t3"):
        dispatch(audit, task_id)
    services.firestore().collection(AUDIT).document(record_doc_id("dispatch:t2:1")).update(
        {"outcome": "failed"})
    [report] = verify_chains(services.firestore(), [REPO])
    assert report.problems == ["seq 2 (key 'dispatch:t2:1'): hash does not match its content (edited?)"]


def test_a_deleted_record_is_detected(services):
    audit = services.audit()
    for task_id in ("t1", "t2", "t3", "t4"):
        dispatch(audit, task_id)
    client = services.firestore()
    client.collection(AUDIT).document(record_doc_id("dispatch:t2:1")).delete()
    client.collection(AUDIT).document(record_doc_id("dispatch:t4:1")).delete()
    [report] = verify_chains(client, ["octo:widgets"])
    assert report.problems == ["seq 2 missing between 1 and 3 (deleted?)",
                               "head is at seq 4 but the last record is seq 3 (truncated?)"]


def test_a_chain_whose_head_was_deleted_is_still_found_and_flagged(services):
    audit = services.audit()
    dispatch(audit, "t1")
    dispatch(audit, "t2", repository="octo/other")
    services.firestore().collection(AUDIT_CHAINS).document("octo:other").delete()
    reports = {r.chain: r for r in verify_chains(services.firestore())}
    assert reports[REPO].ok
    assert reports["octo/other"].problems == [
        "chain head audit_chains/octo:other is missing (deleted?)"]


def test_concurrent_appends_to_one_chain_have_no_gaps(services):
    # Small on purpose: the emulator's contended transactions wait out a 2 s lock timeout.
    audit = services.audit()
    writers = 4
    start = threading.Barrier(writers)

    def write(writer: int) -> None:
        start.wait()
        dispatch(audit, f"t{writer}")

    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(write, range(writers)))
    records = [d.to_dict() for d in services.firestore().collection(AUDIT).stream()]
    assert sorted(r["seq"] for r in records) == list(range(1, writers + 1))
    assert sorted(r["key"] for r in records) == [f"dispatch:t{writer}:1" for writer in range(writers)]
    [report] = verify_chains(services.firestore())
    assert (report.chain, report.records, report.ok) == (REPO, writers, True), report.problems


def test_verify_command_exit_codes_and_output(services):
    audit = services.audit()
    client = services.firestore()
    lines: list[str] = []
    assert verify_command(client, None, out=lines.append) == 0
    assert lines == ["no audit chains"]

    for task_id in ("t1", "t2", "t3"):
        dispatch(audit, task_id)
    audit.record(key="k-system", actor="orchestrator", action="drop_message", subject="message/m-1",
                 outcome="too_old")
    progress: list[tuple[int, int]] = []
    lines.clear()
    assert verify_command(client, [], out=lines.append, progress=lambda *p: progress.append(p)) == 0
    assert lines == ["octo:widgets: 3 records, ok", "system: 1 record, ok"]
    assert progress == [(1, 2), (2, 2)]

    client.collection(AUDIT).document(record_doc_id("dispatch:t1:1")).update({"actor": "someone"})
    client.collection(AUDIT).document(record_doc_id("dispatch:t3:1")).delete()
    lines.clear()
    assert verify_command(client, None, out=lines.append) == 1
    assert lines == [
        "octo:widgets: 2 records, 2 problems",
        "  seq 1 (key 'dispatch:t1:1'): hash does not match its content (edited?)",
        "  head is at seq 3 but the last record is seq 2 (truncated?)",
        "system: 1 record, ok",
    ]

    lines.clear()
    assert verify_command(client, ["system"], out=lines.append) == 0
    assert lines == ["system: 1 record, ok"]
    lines.clear()
    assert verify_command(client, ["octo/nothing"], out=lines.append) == 1
    assert lines == ["octo:nothing: 0 records, 1 problem", "  no records and no chain head (unknown chain?)"]
