"""The audit chain's pure core: canonical hashing, normalisation and verification of one chain."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from shared.audit import (
    GENESIS_HASH,
    ChainReport,
    build_record,
    chain_doc_id,
    content_hash,
    describe,
    normalise,
    verify_records,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
RETENTION = timedelta(days=400)
REPO = "octo/widgets"


def make_chain(length: int, repository: str = REPO) -> tuple[list[dict], dict]:
    """`length` records appended the way the adapter appends them, and the resulting head."""
    records: list[dict] = []
    previous = GENESIS_HASH
    for seq in range(1, length + 1):
        record = build_record(f"dispatch:t{seq}:1", "orchestrator", "dispatch_task", f"task/t{seq}",
                              "dispatched", {"repository": repository, "agent": "test", "attempt": seq},
                              seq=seq, prev_hash=previous, at=NOW + timedelta(seconds=seq),
                              retention=RETENTION)
        records.append(record)
        previous = record["hash"]
    last = records[-1]
    head = {"chain": last["chain"], "seq": last["seq"], "hash": last["hash"], "updated_at": last["at"]}
    return records, head


def rehash(record: dict) -> None:
    record["hash"] = content_hash(record)


def test_an_untouched_chain_verifies():
    records, head = make_chain(5)
    report = verify_records(records, head)
    assert report == ChainReport(chain=REPO, records=5, starts_at=1, ok=True, problems=[])


def test_records_are_verified_in_seq_order_whatever_order_they_arrive_in():
    records, head = make_chain(5)
    assert verify_records(list(reversed(records)), head).ok


def test_a_record_carries_its_content_fields_and_the_hash_covers_them():
    record = build_record("k", "code", "github_post", "/repos/octo/widgets/issues/1/comments", "ok",
                          {"task_id": "t-1", "delivery_id": "d-1", "repository": REPO,
                           "link": "https://github.com/octo/widgets/issues/1", "error": ""},
                          seq=1, prev_hash=GENESIS_HASH, at=NOW, retention=RETENTION)
    assert (record["task_id"], record["delivery_id"], record["repository"], record["chain"]) == (
        "t-1", "d-1", REPO, REPO)
    assert record["link"] == "https://github.com/octo/widgets/issues/1"
    assert record["facts"] == {"error": ""}
    assert record["expire_at"] == NOW + RETENTION
    assert len(record["hash"]) == 64
    for name in ("key", "chain", "seq", "prev_hash", "at", "actor", "action", "subject", "outcome",
                 "task_id", "delivery_id", "link", "repository", "facts"):
        edited = dict(record)
        edited[name] = 2 if name != "seq" else 3
        assert content_hash(edited) != record["hash"], name
    # expire_at is not content: the TTL policy may be changed without breaking the chain.
    assert content_hash({**record, "expire_at": NOW}) == record["hash"]


def test_the_hash_is_sha256_of_canonical_json():
    import hashlib

    record = build_record("k", "a", "act", "s", "o", {"é": "ü"}, seq=1, prev_hash=GENESIS_HASH,
                          at=NOW, retention=RETENTION)
    content = {name: record[name] for name in ("key", "chain", "seq", "prev_hash", "actor", "action",
                                               "subject", "outcome", "task_id", "delivery_id", "link",
                                               "repository", "facts")}
    content["at"] = "2026-11-24T12:00:00.000000+00:00"
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert record["hash"] == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_records_without_a_repository_go_to_the_system_chain():
    record = build_record("k", "orchestrator", "drop_message", "message/m-1", "too_old", {"reason": "x"},
                          seq=1, prev_hash=GENESIS_HASH, at=NOW, retention=RETENTION)
    lifted = (record["chain"], record["repository"], record["task_id"], record["link"])
    assert lifted == ("system", "", "", "")
    assert chain_doc_id(REPO) == "octo:widgets"


def edit_field(records, head):
    records[2]["outcome"] = "failed"


def edit_facts(records, head):
    records[3]["facts"]["agent"] = "deploy"


def edit_and_rehash(records, head):
    records[1]["actor"] = "someone"
    rehash(records[1])


def delete_middle(records, head):
    del records[2]


def delete_two_in_the_middle(records, head):
    del records[1:3]


def truncate_tail(records, head):
    del records[-1]


def head_behind(records, head):
    head["seq"] = 3
    head["hash"] = records[2]["hash"]


def head_hash_forged(records, head):
    head["hash"] = "f" * 64


def delete_head(records, head):
    head.clear()


def swap_seqs(records, head):
    records[1]["seq"], records[2]["seq"] = records[2]["seq"], records[1]["seq"]
    rehash(records[1])
    rehash(records[2])


def forge_prev_hash(records, head):
    records[3]["prev_hash"] = "a" * 64
    rehash(records[3])


def forge_genesis(records, head):
    records[0]["prev_hash"] = "b" * 64
    rehash(records[0])


def duplicate_seq(records, head):
    copied = copy.deepcopy(records[2])
    copied["key"] = "dispatch:forged:1"
    rehash(copied)
    records.insert(3, copied)


def strip_seq(records, head):
    del records[2]["seq"]


TAMPERING = [
    # (id, tampering, expected problems, each a substring of one reported problem)
    ("edited-field", edit_field, ["seq 3 (key 'dispatch:t3:1'): hash does not match its content (edited?)"]),
    ("edited-facts", edit_facts, ["seq 4 (key 'dispatch:t4:1'): hash does not match its content (edited?)"]),
    ("edited-and-rehashed", edit_and_rehash,
     ["seq 3 (key 'dispatch:t3:1'): prev_hash is not the hash of seq 2 (reordered or forged?)"]),
    ("deleted-middle", delete_middle, ["seq 3 missing between 2 and 4 (deleted?)"]),
    ("deleted-two", delete_two_in_the_middle, ["seq 2-3 missing between 1 and 4 (deleted?)"]),
    ("truncated-tail", truncate_tail, ["head is at seq 5 but the last record is seq 4 (truncated?)"]),
    ("head-rolled-back", head_behind, ["head is at seq 3 but records go to seq 5 (head rolled back?)"]),
    ("head-hash-forged", head_hash_forged, ["head hash does not match seq 5 (edited?)"]),
    ("head-deleted", delete_head, ["chain head audit_chains/octo:widgets is missing (deleted?)"]),
    # A rehashed record breaks the link to the record after it as well.
    ("reordered", swap_seqs, ["seq 2 (key 'dispatch:t3:1'): prev_hash is not the hash of seq 1",
                              "seq 3 (key 'dispatch:t2:1'): prev_hash is not the hash of seq 2",
                              "seq 4 (key 'dispatch:t4:1'): prev_hash is not the hash of seq 3"]),
    ("forged-prev-hash", forge_prev_hash,
     ["seq 4 (key 'dispatch:t4:1'): prev_hash is not the hash of seq 3 (reordered or forged?)",
      "seq 5 (key 'dispatch:t5:1'): prev_hash is not the hash of seq 4"]),
    ("forged-genesis", forge_genesis, ["seq 1 (key 'dispatch:t1:1'): prev_hash of seq 1 is not 00000000",
                                       "seq 2 (key 'dispatch:t2:1'): prev_hash is not the hash of seq 1"]),
    ("duplicated-seq", duplicate_seq, ["seq 3 (key 'dispatch:forged:1'): seq 3 appears more than once",
                                       "seq 4 (key 'dispatch:t4:1'): prev_hash is not the hash of seq 3"]),
    ("seq-removed", strip_seq, ["record (key 'dispatch:t3:1') has no valid seq (None)",
                                "seq 3 missing between 2 and 4 (deleted?)"]),
]


@pytest.mark.parametrize("tamper,expected", [c[1:] for c in TAMPERING], ids=[c[0] for c in TAMPERING])
def test_tampering_is_detected(tamper, expected):
    records, head = make_chain(5)
    tamper(records, head)
    report = verify_records(records, head or None)
    assert not report.ok
    for wanted in expected:
        assert any(wanted in problem for problem in report.problems), (wanted, report.problems)
    assert len(report.problems) == len(expected), report.problems


def test_a_chain_whose_oldest_records_expired_still_verifies_from_where_it_starts():
    records, head = make_chain(6)
    report = verify_records(records[3:], head)
    assert (report.ok, report.starts_at, report.records) == (True, 4, 3)
    # Past its start the chain is checked as usual.
    records[4]["subject"] = "task/other"
    assert verify_records(records[3:], head).problems == [
        "seq 5 (key 'dispatch:t5:1'): hash does not match its content (edited?)"]


def test_a_chain_whose_records_all_expired_has_nothing_to_contradict_its_head():
    _, head = make_chain(3)
    assert verify_records([], head) == ChainReport(REPO, 0, 0, True, [])


def test_an_unknown_chain_is_a_problem():
    report = verify_records([], None, chain="octo/nothing")
    assert (report.chain, report.ok) == ("octo/nothing", False)


def test_records_of_another_chain_are_flagged():
    records, head = make_chain(2)
    other, _ = make_chain(3, repository="octo/other")
    report = verify_records(records + other[2:], head)
    assert "seq 3 (key 'dispatch:t3:1'): belongs to chain 'octo/other', not 'octo/widgets'" in report.problems


class Colour:
    def __str__(self) -> str:
        return "teal"


NORMALISE_CASES = [
    ("datetime", NOW + timedelta(microseconds=7), "2026-11-24T12:00:00.000007+00:00"),
    ("naive-datetime-is-utc", datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05.000000+00:00"),
    ("other-zone", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
     "2026-01-02T01:04:05.000000+00:00"),
    ("tuple", (1, "a", (2, 3)), [1, "a", [2, 3]]),
    ("nested", {"at": NOW, "ids": ("x",), 5: None}, {"at": "2026-11-24T12:00:00.000000+00:00",
                                                       "ids": ["x"], "5": None}),
    ("set", {"b", "a"}, ["a", "b"]),
    ("bytes", b"ab", "b'ab'"),
    ("object", Colour(), "teal"),
    ("huge-int", 2**70, str(2**70)),
    ("plain", {"n": 1, "f": 1.5, "t": True, "s": "é"}, {"n": 1, "f": 1.5, "t": True, "s": "é"}),
]


@pytest.mark.parametrize("value,expected", [c[1:] for c in NORMALISE_CASES],
                         ids=[c[0] for c in NORMALISE_CASES])
def test_normalise(value, expected):
    assert normalise(value) == expected
    assert normalise(normalise(value)) == normalise(value)
    json.dumps(normalise(value))


def test_facts_read_back_as_stored_hash_the_same():
    facts = {"repository": REPO, "started": NOW, "paths": ("a.py", "b.py"),
             "build": {"finished": NOW + timedelta(minutes=3), "steps": [("test", 1)]}}
    record = build_record("k", "deploy", "deploy", "service/web", "ok", facts,
                          seq=1, prev_hash=GENESIS_HASH, at=NOW + timedelta(microseconds=123),
                          retention=RETENTION)
    assert record["facts"] == {"started": "2026-11-24T12:00:00.000000+00:00", "paths": ["a.py", "b.py"],
                               "build": {"finished": "2026-11-24T12:03:00.000000+00:00",
                                         "steps": [["test", 1]]}}
    # What Firestore gives back: the same maps and lists, and `at` as a UTC timestamp.
    read_back = json.loads(json.dumps({k: v for k, v in record.items() if k not in ("at", "expire_at")}))
    read_back["at"] = datetime(2026, 11, 24, 12, 0, 0, 123, tzinfo=timezone.utc)
    assert content_hash(read_back) == record["hash"]
    assert verify_records([read_back], {"chain": REPO, "seq": 1, "hash": record["hash"]}).ok


def test_describe_prints_one_line_per_chain_and_its_problems_indented():
    assert describe(ChainReport("system", 42, 1, True, [])) == ["system: 42 records, ok"]
    assert describe(ChainReport(REPO, 17, 1, False, ["seq 9 missing", "head x"])) == [
        "octo:widgets: 17 records, 2 problems", "  seq 9 missing", "  head x"]
    assert describe(ChainReport(REPO, 1, 9, False, ["p"])) == [
        "octo:widgets: 1 record from seq 9 (older ones expired), 1 problem", "  p"]
