"""The audit chain's pure core: canonical hashing, normalisation, chain names, verifying one chain."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from shared import topology
from shared.audit import (
    GENESIS_HASH,
    ChainReport,
    actor_kind,
    build_record,
    chain_doc_id,
    chain_name,
    chain_of,
    content_hash,
    describe,
    normalise,
    verify_records,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
RETENTION = timedelta(days=400)
REPO = "octo/widgets"
CHAIN = "octo/widgets#orchestrator"


def make_chain(length: int, repository: str = REPO, legacy: bool = False) -> tuple[list[dict], dict]:
    """`length` records appended the way the adapter appends them, and the resulting head.

    `legacy` chains them as records written before chains were sharded were: on the bare repository.
    """
    records: list[dict] = []
    previous = GENESIS_HASH
    for seq in range(1, length + 1):
        record = build_record(f"dispatch:t{seq}:1", "orchestrator", "dispatch_task", f"task/t{seq}",
                              "dispatched", {"repository": repository, "agent": "test", "attempt": seq},
                              seq=seq, prev_hash=previous, at=NOW + timedelta(seconds=seq),
                              retention=RETENTION)
        if legacy:
            record["chain"] = repository
            rehash(record)
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
    assert report == ChainReport(chain=CHAIN, records=5, starts_at=1, ok=True, problems=[])


def test_records_are_verified_in_seq_order_whatever_order_they_arrive_in():
    records, head = make_chain(5)
    assert verify_records(list(reversed(records)), head).ok


def test_a_record_carries_its_content_fields_and_the_hash_covers_them():
    record = build_record("k", "code", "github_post", "/repos/octo/widgets/issues/1/comments", "ok",
                          {"task_id": "t-1", "delivery_id": "d-1", "repository": REPO,
                           "link": "https://github.com/octo/widgets/issues/1", "error": ""},
                          seq=1, prev_hash=GENESIS_HASH, at=NOW, retention=RETENTION)
    assert (record["task_id"], record["delivery_id"], record["repository"], record["chain"]) == (
        "t-1", "d-1", REPO, "octo/widgets#code")
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
    assert lifted == ("system#orchestrator", "", "", "")
    assert chain_doc_id(REPO) == "octo:widgets"


SYSTEM_ACTORS = sorted({agent.name for agent in topology.AGENTS}
                       | {agent.entry_point for agent in topology.AGENTS}
                       | {topology.ORCHESTRATOR_FUNCTION, topology.WEBHOOK_FUNCTION})


@pytest.mark.parametrize("actor", SYSTEM_ACTORS)
def test_each_of_the_systems_own_actors_has_a_chain_per_repository(actor):
    assert actor_kind(actor) == actor
    assert chain_of(REPO, actor) == f"octo/widgets#{actor}"
    assert chain_of("", actor) == f"system#{actor}"


def test_the_system_actors_include_the_agents_the_orchestrator_and_the_functions():
    assert {"code", "test", "qa", "deploy", "scout", "monitor", "orchestrator", "github_webhook",
            "code_agent", "repo_scout"} <= set(SYSTEM_ACTORS)


@pytest.mark.parametrize("actor", ["alice", "octocat", "operator root", "unknown", "app", "", "Code",
                                   "people", "dependabot[bot]"])
def test_every_other_actor_is_people(actor):
    assert actor_kind(actor) == "people"
    assert chain_of(REPO, actor) == "octo/widgets#people"


def test_a_human_actor_goes_to_the_people_chain_and_keeps_the_repository():
    record = build_record("chatops:1:done", "alice", "chatops_pause", "octo/widgets#7", "ok",
                          {"repository": REPO}, seq=1, prev_hash=GENESIS_HASH, at=NOW, retention=RETENTION)
    assert (record["chain"], record["repository"], record["actor"]) == ("octo/widgets#people", REPO, "alice")


def test_chain_names_and_document_ids():
    assert chain_doc_id("octo/widgets#test") == "octo:widgets#test"
    assert chain_name("octo:widgets#test") == "octo/widgets#test"
    assert chain_name(chain_doc_id("system#orchestrator")) == "system#orchestrator"
    assert "/" not in chain_doc_id("octo/widgets#people")


def test_two_actors_on_one_repository_keep_two_chains_that_each_verify():
    chains: dict[str, list[dict]] = {}
    for n, actor in enumerate(["orchestrator", "test", "test", "orchestrator", "test"], start=1):
        chain = chains.setdefault(chain_of(REPO, actor), [])
        record = build_record(f"k{n}", actor, "act", f"task/t{n}", "ok", {"repository": REPO},
                              seq=len(chain) + 1, prev_hash=chain[-1]["hash"] if chain else GENESIS_HASH,
                              at=NOW + timedelta(seconds=n), retention=RETENTION)
        chain.append(record)
    assert {name: len(rows) for name, rows in chains.items()} == {
        "octo/widgets#orchestrator": 2, "octo/widgets#test": 3}
    for name, rows in chains.items():
        head = {"chain": name, "seq": rows[-1]["seq"], "hash": rows[-1]["hash"]}
        assert verify_records(rows, head).ok, name
    # One chain's records are not another's.
    tests = chains["octo/widgets#test"]
    mixed = verify_records(tests + chains["octo/widgets#orchestrator"][1:],
                           {"chain": "octo/widgets#test", "seq": 3, "hash": tests[-1]["hash"]})
    assert "seq 2 (key 'k4'): belongs to chain 'octo/widgets#orchestrator', not 'octo/widgets#test'" in (
        mixed.problems)


def test_a_chain_written_before_chains_were_sharded_still_verifies():
    records, head = make_chain(4, legacy=True)
    assert {r["chain"] for r in records} == {REPO} and head["chain"] == REPO
    assert verify_records(records, head) == ChainReport(REPO, 4, 1, True, [])
    records[1]["outcome"] = "failed"
    assert verify_records(records, head).problems == [
        "seq 2 (key 'dispatch:t2:1'): hash does not match its content (edited?)"]


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
    ("head-deleted", delete_head,
     ["chain head audit_chains/octo:widgets#orchestrator is missing (deleted?)"]),
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
    assert verify_records([], head) == ChainReport(CHAIN, 0, 0, True, [])


def test_an_unknown_chain_is_a_problem():
    report = verify_records([], None, chain="octo/nothing")
    assert (report.chain, report.ok) == ("octo/nothing", False)
    assert report.problems == ["no records and no chain head (unknown chain?)"]


def test_records_of_another_chain_are_flagged():
    records, head = make_chain(2)
    other, _ = make_chain(3, repository="octo/other")
    report = verify_records(records + other[2:], head)
    assert ("seq 3 (key 'dispatch:t3:1'): belongs to chain 'octo/other#orchestrator', not "
            "'octo/widgets#orchestrator'") in report.problems


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
    assert read_back["chain"] == "octo/widgets#deploy"
    assert verify_records([read_back], {"chain": "octo/widgets#deploy", "seq": 1, "hash": record["hash"]}).ok


def test_describe_prints_one_line_per_chain_and_its_problems_indented():
    assert describe(ChainReport("system#orchestrator", 42, 1, True, [])) == [
        "system#orchestrator: 42 records, ok"]
    assert describe(ChainReport("octo/widgets#test", 3, 1, True, [])) == ["octo:widgets#test: 3 records, ok"]
    assert describe(ChainReport(REPO, 17, 1, False, ["seq 9 missing", "head x"])) == [
        "octo:widgets: 17 records, 2 problems", "  seq 9 missing", "  head x"]
    assert describe(ChainReport(REPO, 1, 9, False, ["p"])) == [
        "octo:widgets: 1 record from seq 9 (older ones expired), 1 problem", "  p"]
