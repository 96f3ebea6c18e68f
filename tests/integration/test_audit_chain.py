"""The hash-chained audit log on the Firestore emulator: appends, idempotency, tampering, races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from shared.audit import (
    AUDIT,
    AUDIT_CHAINS,
    GENESIS_HASH,
    FirestoreAuditLog,
    build_record,
    content_hash,
    record_doc_id,
    verify_chains,
    verify_command,
)

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"
CHAIN = "octo/widgets#orchestrator"


def dispatch(audit, task: str, repository: str = REPO, **facts) -> None:
    audit.record(key=f"dispatch:{task}:1", actor="orchestrator", action="dispatch_task",
                 subject=f"task/{task}", outcome="dispatched", agent="test", repository=repository,
                 **facts)


def stored(services, key: str) -> dict:
    return services.firestore().collection(AUDIT).document(record_doc_id(key)).get().to_dict()


def report_test(audit, task: str, repository: str = REPO) -> None:
    audit.record(key=f"result:{task}:1:succeeded", actor="test", action="report_result",
                 subject=f"task/{task}", outcome="succeeded", repository=repository, task_id=task)


def write_legacy_chain(client, repository: str, length: int) -> None:
    """Records and a head as they were written before chains were sharded: chained on the repository."""
    previous = GENESIS_HASH
    at = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    for seq in range(1, length + 1):
        record = build_record(f"legacy:{repository}:{seq}", "orchestrator", "dispatch_task", f"task/old{seq}",
                              "dispatched", {"repository": repository}, seq=seq, prev_hash=previous,
                              at=at + timedelta(seconds=seq), retention=timedelta(days=400))
        record["chain"] = repository
        record["hash"] = content_hash(record)
        client.collection(AUDIT).document(record_doc_id(record["key"])).create(record)
        previous = record["hash"]
    client.collection(AUDIT_CHAINS).document(repository.replace("/", ":")).set(
        {"chain": repository, "seq": length, "hash": previous, "updated_at": at})


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
        CHAIN: (3, 1, True), "system#orchestrator": (2, 1, True)}

    first, third = stored(services, "dispatch:t1:1"), stored(services, "dispatch:t3:1")
    assert (first["seq"], first["prev_hash"], third["seq"]) == (1, GENESIS_HASH, 3)
    assert (first["task_id"], first["delivery_id"], first["repository"], first["chain"]) == (
        "t1", "d-1", REPO, CHAIN)
    assert first["link"] == "https://github.com/octo/widgets/pull/7"
    assert first["facts"]["paths"] == ["a.py", "b.py"]
    assert isinstance(first["facts"]["started"], str)
    head = services.firestore().collection(AUDIT_CHAINS).document("octo:widgets#orchestrator").get().to_dict()
    assert (head["chain"], head["seq"], head["hash"]) == (CHAIN, 3, third["hash"])
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
    report_test(audit, "t2", repository="octo/other")
    services.firestore().collection(AUDIT_CHAINS).document("octo:other#orchestrator").delete()
    reports = {r.chain: r for r in verify_chains(services.firestore())}
    assert reports[CHAIN].ok
    assert reports["octo/other#test"].ok
    assert reports["octo/other#orchestrator"].problems == [
        "chain head audit_chains/octo:other#orchestrator is missing (deleted?)"]
    # Naming the repository still finds the chain whose head is gone, through its records.
    named = {r.chain: r.ok for r in verify_chains(services.firestore(), ["octo/other"])}
    assert named == {"octo/other#orchestrator": False, "octo/other#test": True}


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
    assert (report.chain, report.records, report.ok) == (CHAIN, writers, True), report.problems


def test_two_actors_on_one_repository_append_to_two_chains_without_contending(services):
    # One writer per actor, 8 records each, at the same time. Each transaction gets one attempt and
    # there is no second round, so any contention between the two would raise RetryableError.
    client = services.firestore()
    audit = FirestoreAuditLog(client, max_attempts=1, rounds=1)
    actors, records = ("orchestrator", "test"), 8
    start = threading.Barrier(len(actors))

    def write(actor: str) -> None:
        start.wait()
        for n in range(records):
            audit.record(key=f"{actor}:t{n}", actor=actor, action="act", subject=f"task/t{n}",
                         outcome="ok", repository=REPO, task_id=f"t{n}")

    with ThreadPoolExecutor(max_workers=len(actors)) as pool:
        list(pool.map(write, actors))  # re-raises a writer's RetryableError
    rows = [d.to_dict() for d in client.collection(AUDIT).stream()]
    for actor in actors:
        chain = f"{REPO}#{actor}"
        mine = [r for r in rows if r["chain"] == chain]
        assert sorted(r["seq"] for r in mine) == list(range(1, records + 1)), chain
        assert {r["repository"] for r in mine} == {REPO}
    reports = verify_chains(client, [REPO])
    assert [(r.chain, r.records, r.ok) for r in reports] == [
        ("octo/widgets#orchestrator", records, True), ("octo/widgets#test", records, True)]


def test_verifying_a_repository_verifies_each_of_its_chains(services):
    audit = services.audit()
    client = services.firestore()
    for task_id in ("t1", "t2"):
        dispatch(audit, task_id)
        report_test(audit, task_id)
    audit.record(key="chatops:1:done", actor="alice", action="chatops_pause", subject="octo/widgets#7",
                 outcome="ok", repository=REPO)
    dispatch(audit, "t9", repository="octo/widgets-2")  # a name that starts the same is another repo
    audit.record(key="k-system", actor="orchestrator", action="drop_message", subject="message/m-1",
                 outcome="too_old")

    assert stored(services, "chatops:1:done")["chain"] == "octo/widgets#people"
    lines: list[str] = []
    for name in (REPO, "octo:widgets"):
        lines.clear()
        assert verify_command(client, [name], out=lines.append) == 0
        assert lines == ["octo:widgets#orchestrator: 2 records, ok", "octo:widgets#people: 1 record, ok",
                         "octo:widgets#test: 2 records, ok"]
    lines.clear()
    assert verify_command(client, ["octo/widgets#test"], out=lines.append) == 0
    assert lines == ["octo:widgets#test: 2 records, ok"]
    lines.clear()
    assert verify_command(client, ["octo:widgets#people", "system"], out=lines.append) == 0
    assert lines == ["octo:widgets#people: 1 record, ok", "system#orchestrator: 1 record, ok"]

    # A problem in one chain fails the repository, and only that chain.
    client.collection(AUDIT).document(record_doc_id("result:t1:1:succeeded")).update({"outcome": "failed"})
    lines.clear()
    assert verify_command(client, [REPO], out=lines.append) == 1
    assert lines == ["octo:widgets#orchestrator: 2 records, ok", "octo:widgets#people: 1 record, ok",
                     "octo:widgets#test: 2 records, 1 problem",
                     "  seq 1 (key 'result:t1:1:succeeded'): hash does not match its content (edited?)"]
    lines.clear()
    assert verify_command(client, ["octo/widgets#code"], out=lines.append) == 1
    assert lines == ["octo:widgets#code: 0 records, 1 problem",
                     "  no records and no chain head (unknown chain?)"]


def test_a_chain_written_before_chains_were_sharded_is_one_more_chain_of_its_repository(services):
    client = services.firestore()
    write_legacy_chain(client, REPO, 3)
    write_legacy_chain(client, "system", 2)
    audit = services.audit()
    dispatch(audit, "t1")
    report_test(audit, "t1")
    audit.record(key="k-system", actor="orchestrator", action="drop_message", subject="message/m-1",
                 outcome="too_old")
    assert stored(services, "dispatch:t1:1")["seq"] == 1  # a new chain, not the legacy one continued

    lines: list[str] = []
    assert verify_command(client, ["octo:widgets"], out=lines.append) == 0
    assert lines == ["octo:widgets: 3 records, ok", "octo:widgets#orchestrator: 1 record, ok",
                     "octo:widgets#test: 1 record, ok"]
    lines.clear()
    assert verify_command(client, ["system"], out=lines.append) == 0
    assert lines == ["system: 2 records, ok", "system#orchestrator: 1 record, ok"]
    assert {r.chain for r in verify_chains(client)} == {
        REPO, CHAIN, "octo/widgets#test", "system", "system#orchestrator"}

    # Tampering with the legacy chain is still found, through the repository's name, head or not.
    client.collection(AUDIT).document(record_doc_id("legacy:octo/widgets:2")).delete()
    client.collection(AUDIT_CHAINS).document("octo:widgets").delete()
    lines.clear()
    assert verify_command(client, [REPO], out=lines.append) == 1
    assert lines == ["octo:widgets: 2 records, 2 problems", "  seq 2 missing between 1 and 3 (deleted?)",
                     "  chain head audit_chains/octo:widgets is missing (deleted?)",
                     "octo:widgets#orchestrator: 1 record, ok", "octo:widgets#test: 1 record, ok"]


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
    assert lines == ["octo:widgets#orchestrator: 3 records, ok", "system#orchestrator: 1 record, ok"]
    assert progress == [(1, 2), (2, 2)]

    client.collection(AUDIT).document(record_doc_id("dispatch:t1:1")).update({"actor": "someone"})
    client.collection(AUDIT).document(record_doc_id("dispatch:t3:1")).delete()
    lines.clear()
    assert verify_command(client, None, out=lines.append) == 1
    assert lines == [
        "octo:widgets#orchestrator: 2 records, 2 problems",
        "  seq 1 (key 'dispatch:t1:1'): hash does not match its content (edited?)",
        "  head is at seq 3 but the last record is seq 2 (truncated?)",
        "system#orchestrator: 1 record, ok",
    ]

    lines.clear()
    assert verify_command(client, ["system"], out=lines.append) == 0
    assert lines == ["system#orchestrator: 1 record, ok"]
    lines.clear()
    assert verify_command(client, ["octo/nothing"], out=lines.append) == 1
    assert lines == ["octo:nothing: 0 records, 1 problem", "  no records and no chain head (unknown chain?)"]
