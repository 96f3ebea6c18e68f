"""A tamper-evident audit trail: hash-chained records in Firestore, and their verification.

Every record belongs to one chain: its repository (`owner/name`), or `system` when it has none, so
that writers contend per repository and not globally. A record carries `seq` (1, 2, 3... in its
chain), `prev_hash` (the previous record's `hash`, or 64 zeros for seq 1) and `hash`, the SHA-256 of
the canonical JSON of its content. `audit_chains/{owner:name}` holds each chain's head (its last
`seq` and `hash`). An edited record no longer matches its hash; a deleted one leaves a gap in `seq`;
a removed tail no longer reaches the head.

Limits, stated so nobody relies on more: TTL deletes the oldest records, so a chain whose first
surviving record is above seq 1 is accepted (`starts_at` says where it starts), and deleting a
chain's oldest records looks the same as their expiry. Someone who can write Firestore and
recomputes every later hash and the head is not detected; that needs the heads anchored elsewhere.

The pure part (normalise, content_hash, build_record, verify_records) does no I/O and reads no
clock. FirestoreAuditLog, verify_chains and verify_command are the shell around it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from shared.errors import RetryableError

AUDIT = "audit"
AUDIT_CHAINS = "audit_chains"
SYSTEM_CHAIN = "system"
GENESIS_HASH = "0" * 64

# Facts that are lifted out of **facts into top-level fields, so the console can filter on them.
LIFTED_FACTS = ("task_id", "delivery_id", "link", "repository")
# Every field the hash covers, in the order a reader expects them.
CONTENT_FIELDS = ("key", "chain", "seq", "prev_hash", "at", "actor", "action", "subject", "outcome",
                  "task_id", "delivery_id", "link", "repository", "facts")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# ---- the pure core -------------------------------------------------------------------------------

def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds; a naive datetime is taken as UTC, as Firestore does."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def normalise(value: Any) -> Any:
    """A JSON- and Firestore-safe form of a fact that reads back from Firestore unchanged.

    Datetimes become ISO strings, tuples and lists become lists, mappings become maps with string
    keys, sets become sorted lists, and anything else without an exact JSON and Firestore
    counterpart becomes its `str()`. Applying it twice changes nothing.
    """
    if value is None or type(value) in (str, bool, float):
        return value
    if isinstance(value, int):
        number = int(value)
        return number if INT64_MIN <= number <= INT64_MAX else str(number)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass (an enum, say) as its plain value
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((normalise(item) for item in value), key=canonical_json)
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a record's hash covers, normalised; a missing field counts as None."""
    content = {name: record.get(name) for name in CONTENT_FIELDS}
    return normalise(content)


def content_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content_of(record)).encode("utf-8")).hexdigest()


def chain_of(repository: str) -> str:
    return repository or SYSTEM_CHAIN


def chain_doc_id(chain: str) -> str:
    """A chain's `audit_chains` document id: ids cannot hold '/', GitHub names cannot hold ':'."""
    return chain.replace("/", ":")


def chain_name(text: str) -> str:
    """The chain a name means, whether written `owner/name` or as its document id `owner:name`."""
    return text.replace(":", "/")


def record_doc_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def build_record(
    key: str, actor: str, action: str, subject: str, outcome: str, facts: Mapping[str, Any], *,
    seq: int, prev_hash: str, at: datetime, retention: timedelta,
) -> dict[str, Any]:
    """The document for the record after `prev_hash` at `seq`, with its hash, ready to store.

    `at` stays a datetime (a Firestore timestamp once stored); the hash covers its ISO form.
    """
    remaining = dict(facts)
    lifted = {name: _text(remaining.pop(name, "")) for name in LIFTED_FACTS}
    at = datetime.fromisoformat(iso_utc(at))  # stored in UTC, as it is hashed
    record: dict[str, Any] = {
        "key": key,
        "chain": chain_of(lifted["repository"]),
        "seq": seq,
        "prev_hash": prev_hash,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        **lifted,
        "facts": normalise(remaining),
    }
    record["hash"] = content_hash(record)
    record["expire_at"] = at + retention
    return record


def _text(value: Any) -> str:
    return "" if value is None else str(normalise(value))


@dataclass(frozen=True)
class ChainReport:
    chain: str
    records: int
    starts_at: int  # the first surviving seq: above 1 when older records expired; 0 when none are left
    ok: bool
    problems: list[str] = field(default_factory=list)


def verify_records(
    records: Iterable[Mapping[str, Any]], head: Mapping[str, Any] | None, *, chain: str | None = None,
) -> ChainReport:
    """Check one chain's records against their hashes, each other and the chain head.

    The chain's name is `chain`, else the head's, else the first record's.
    """
    rows = list(records)
    name = chain or str((head or {}).get("chain")
                        or next((row.get("chain") for row in rows if row.get("chain")), ""))
    problems: list[str] = []
    chained: list[Mapping[str, Any]] = []
    for row in rows:
        if type(row.get("seq")) is not int or row["seq"] < 1:
            problems.append(f"record (key {row.get('key')!r}) has no valid seq ({row.get('seq')!r})")
        else:
            chained.append(row)
    chained.sort(key=lambda row: row["seq"])

    previous: Mapping[str, Any] | None = None
    for row in chained:
        seq, where = row["seq"], f"seq {row['seq']} (key {row.get('key')!r})"
        if name and row.get("chain") != name:
            problems.append(f"{where}: belongs to chain {row.get('chain')!r}, not {name!r}")
        if row.get("hash") != content_hash(row):
            problems.append(f"{where}: hash does not match its content (edited?)")
        if previous is None:
            if seq == 1 and row.get("prev_hash") != GENESIS_HASH:
                problems.append(f"{where}: prev_hash of seq 1 is not {GENESIS_HASH[:8]}... (forged?)")
        elif seq == previous["seq"]:
            problems.append(f"{where}: seq {seq} appears more than once (copied?)")
        elif seq > previous["seq"] + 1:
            problems.append(f"{_missing(previous['seq'] + 1, seq - 1)} missing between "
                            f"{previous['seq']} and {seq} (deleted?)")
        elif row.get("prev_hash") != previous.get("hash"):
            problems.append(f"{where}: prev_hash is not the hash of seq {previous['seq']} "
                            f"(reordered or forged?)")
        previous = row

    if head is None:
        if chained:
            problems.append(f"chain head {AUDIT_CHAINS}/{chain_doc_id(name)} is missing (deleted?)")
        elif not rows:
            problems.append("no records and no chain head (unknown chain?)")
    elif previous is not None:
        if head.get("seq") != previous["seq"]:
            if isinstance(head.get("seq"), int) and head["seq"] > previous["seq"]:
                problems.append(f"head is at seq {head['seq']} but the last record is seq {previous['seq']} "
                                f"(truncated?)")
            else:
                problems.append(f"head is at seq {head.get('seq')!r} but records go to seq {previous['seq']} "
                                f"(head rolled back?)")
        elif head.get("hash") != previous.get("hash"):
            problems.append(f"head hash does not match seq {previous['seq']} (edited?)")

    return ChainReport(
        chain=name,
        records=len(rows),
        starts_at=chained[0]["seq"] if chained else 0,
        ok=not problems,
        problems=problems,
    )


def _missing(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}-{last}"


def describe(report: ChainReport) -> list[str]:
    """The lines `agentops audit verify` prints for one chain."""
    count = _count(report.records, "record")
    if report.starts_at > 1:
        count += f" from seq {report.starts_at} (older ones expired)"
    verdict = "ok" if report.ok else _count(len(report.problems), "problem")
    return [f"{chain_doc_id(report.chain)}: {count}, {verdict}"] + [f"  {p}" for p in report.problems]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# ---- the Firestore shell -------------------------------------------------------------------------

def _google_errors() -> tuple[type[BaseException], ...]:
    from google.api_core.exceptions import GoogleAPIError

    return (GoogleAPIError,)


class FirestoreAuditLog:
    """Appends hash-chained records to `audit`, one transaction per record.

    The same key twice is one record (the second call is a no-op). This code never updates or
    deletes an `audit` record; only the TTL policy on `expire_at` removes them.
    """

    def __init__(
        self, client: Any, retention: timedelta = timedelta(days=400),
        clock: Callable[[], datetime] | None = None, max_attempts: int = 10,
    ) -> None:
        self._client = client
        self._retention = retention
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        # Every record of a repository touches its chain head, so allow more contention retries
        # than the client's default of 5.
        self._max_attempts = max_attempts

    def record(self, key: str, actor: str, action: str, subject: str, outcome: str, **facts: Any) -> None:
        from google.cloud import firestore

        chain = chain_of(_text(facts.get("repository", "")))
        append = firestore.transactional(self._append)
        try:
            append(self._client.transaction(max_attempts=self._max_attempts),
                   key, actor, action, subject, outcome, facts)
        except _google_errors() as exc:
            raise RetryableError(f"audit {action} on {subject} (chain {chain}): {exc}") from exc
        except ValueError as exc:
            if not isinstance(exc.__cause__, _google_errors()):
                raise
            raise RetryableError(f"audit {action} on {subject} (chain {chain}): contended: {exc}") from exc

    def has(self, key: str) -> bool:
        """Whether an action with this idempotency key was already recorded (so it was done)."""
        try:
            return bool(self._client.collection(AUDIT).document(record_doc_id(key)).get().exists)
        except _google_errors() as exc:
            raise RetryableError(f"read audit record {key!r}: {exc}") from exc

    def _append(
        self, transaction: Any, key: str, actor: str, action: str, subject: str, outcome: str,
        facts: dict[str, Any],
    ) -> None:
        record_ref = self._client.collection(AUDIT).document(record_doc_id(key))
        if record_ref.get(transaction=transaction).exists:
            return  # the same action was audited by an earlier delivery of the same message
        chain = chain_of(_text(facts.get("repository", "")))
        head_ref = self._client.collection(AUDIT_CHAINS).document(chain_doc_id(chain))
        head = head_ref.get(transaction=transaction).to_dict() or {}
        now = self._clock()
        record = build_record(key, actor, action, subject, outcome, facts,
                              seq=int(head.get("seq", 0)) + 1, prev_hash=head.get("hash", GENESIS_HASH),
                              at=now, retention=self._retention)
        transaction.create(record_ref, record)
        transaction.set(head_ref, {"chain": chain, "seq": record["seq"], "hash": record["hash"],
                                   "updated_at": record["at"]})


def verify_chains(
    client: Any, chains: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ChainReport]:
    """Verify the named chains (`owner/name`, `owner:name` or `system`), or every chain.

    Every chain means every head in `audit_chains` and every chain named by an `audit` record, so a
    chain whose head was deleted is still checked.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    try:
        if chains:
            names = sorted({chain_name(name) for name in chains})
            heads = {}
            for name in names:
                head = client.collection(AUDIT_CHAINS).document(chain_doc_id(name)).get().to_dict()
                if head is not None:
                    heads[name] = head
        else:
            heads = {head["chain"]: head for head in
                     (doc.to_dict() for doc in client.collection(AUDIT_CHAINS).stream())}
            recorded = {(doc.to_dict() or {}).get("chain")
                        for doc in client.collection(AUDIT).select(["chain"]).stream()}
            names = sorted(set(heads) | {str(name) for name in recorded if name})
    except _google_errors() as exc:
        raise RetryableError(f"list audit chains: {exc}") from exc

    reports = []
    for done, name in enumerate(names, start=1):
        query = client.collection(AUDIT).where(filter=FieldFilter("chain", "==", name))
        try:
            records = [doc.to_dict() for doc in query.stream()]
        except _google_errors() as exc:
            raise RetryableError(f"read audit chain {name}: {exc}") from exc
        reports.append(verify_records(records, heads.get(name), chain=name))
        if progress is not None:
            progress(done, len(names))
    return reports


def verify_command(
    firestore_client: Any, chains: Sequence[str] | None, out: Callable[[str], Any] = print,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """`agentops audit verify [--chain CHAIN]`: one line per chain; 0 when all are intact, else 1."""
    reports = verify_chains(firestore_client, chains or None, progress=progress)
    if not reports:
        out("no audit chains")
        return 0
    for report in reports:
        for line in describe(report):
            out(line)
    return 0 if all(report.ok for report in reports) else 1


def task_trail(client: Any, task_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every audit record that names `task_id`, oldest first (`agentops audit show --task`)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = client.collection(AUDIT).where(filter=FieldFilter("task_id", "==", task_id)).limit(limit)
    records = [doc.to_dict() for doc in query.stream()]
    return sorted(records, key=lambda r: (r["at"].timestamp() if hasattr(r.get("at"), "timestamp") else 0.0,
                                          int(r.get("seq") or 0)))
