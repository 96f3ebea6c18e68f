"""A tamper-evident audit trail: hash-chained records in Firestore, and their verification.

Every record belongs to one chain, `<repository>#<kind>`: its repository (`owner/name`, or `system`
when it has none) and the kind of actor that made it. The kind is the actor itself when it is one of
the system's own (an agent such as `code` or `test`, the `orchestrator`, or a function's name such
as `code_agent` or `github_webhook`), and `people` for anyone else, so that every human's commands
on a repository form one chain. Chains are sharded this way because each record rewrites its
chain's head in one transaction: a single Firestore document sustains about one write per second,
and the agents acting on one repository at the same time would all contend on one head (on the
emulator, waiting out its lock until the transaction gives up). One chain per actor kind lets them
append side by side.

A record carries `seq` (1, 2, 3... in its chain), `prev_hash` (the previous record's `hash`, or 64
zeros for seq 1) and `hash`, the SHA-256 of the canonical JSON of its content, `chain` included.
`audit_chains/{owner:name#kind}` holds each chain's head (its last `seq` and `hash`). What
tamper-evidence means is unchanged, per chain: each chain is a complete, ordered, hash-linked record
of one actor kind's actions on one repository. An edited record no longer matches its hash; a
deleted one leaves a gap in `seq`; a reordered one breaks the links; a removed tail no longer
reaches the head. Verifying a repository verifies all its chains. Records written before chains were
sharded have the bare repository (or `system`) as their chain; that is verified as one more chain
of the repository.

Limits, stated so nobody relies on more: TTL deletes the oldest records, so a chain whose first
surviving record is above seq 1 is accepted (`starts_at` says where it starts), and deleting a
chain's oldest records looks the same as their expiry. There is no order across chains: each
orders one actor kind's records, and records of different kinds are related only by their `at`.
A chain deleted whole, head and every record, leaves nothing to find (as a repository's whole chain
did before). The kind is read from the actor alone, so a person whose login is one of the system's
actor names (`test`, say) is chained with that actor. Someone who can write Firestore and
recomputes every later hash and the head is not detected; that needs the heads anchored elsewhere.

The pure part (normalise, content_hash, chain_of, build_record, verify_records) does no I/O and
reads no clock. FirestoreAuditLog, verify_chains and verify_command are the shell around it.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from shared import topology
from shared.errors import RetryableError

AUDIT = "audit"
AUDIT_CHAINS = "audit_chains"
SYSTEM_CHAIN = "system"
# Separates a chain's repository from its actor kind; neither a GitHub name nor an actor kind holds it.
KIND_SEPARATOR = "#"
# The actor kind of every actor that is not one of the system's own: the people.
PEOPLE = "people"
# The system's own actors, each with a chain of its own per repository: the agents by name, and every
# function (the webhook, the orchestrator and the agents' entry points, which drop messages as such).
SYSTEM_ACTORS: frozenset[str] = frozenset({agent.name for agent in topology.AGENTS} | set(topology.FUNCTIONS))
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


def actor_kind(actor: str) -> str:
    """The kind of actor a chain is kept for: one of the system's own actors, else `people`."""
    return actor if actor in SYSTEM_ACTORS else PEOPLE


def chain_of(repository: str, actor: str) -> str:
    """The chain of a record: `<repository or system>#<actor kind>`."""
    return f"{repository or SYSTEM_CHAIN}{KIND_SEPARATOR}{actor_kind(actor)}"


def chain_doc_id(chain: str) -> str:
    """A chain's `audit_chains` document id: ids cannot hold '/', GitHub names cannot hold ':'.

    '#' is allowed in a document id, so `octo/widgets#code` is stored as `octo:widgets#code`.
    """
    return chain.replace("/", ":")


def chain_name(text: str) -> str:
    """The name a text means, whether written `owner/name` or as its document id `owner:name`."""
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
        "chain": chain_of(lifted["repository"], actor),
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
        clock: Callable[[], datetime] | None = None, max_attempts: int = 10, rounds: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._retention = retention
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        # Every record of one actor kind on one repository touches its chain head, and one agent
        # may act on a repository from several instances at once, so allow more contention retries
        # than the client's default of 5.
        self._max_attempts = max_attempts
        self._rounds = rounds
        self._sleep = sleep

    def record(self, key: str, actor: str, action: str, subject: str, outcome: str, **facts: Any) -> None:
        """Append one record. A contended chain is tried again a few times, after a random pause,
        before giving up: the record usually follows an effect already made, and giving up means
        the whole message, effect and all, is tried again."""
        for attempt in range(1, self._rounds + 1):
            try:
                self._record_once(key, actor, action, subject, outcome, facts)
                return
            except RetryableError:
                if attempt == self._rounds:
                    raise
                self._sleep(random.uniform(0.1, 0.5) * attempt)  # noqa: S311 (jitter, not a secret)

    def _record_once(self, key: str, actor: str, action: str, subject: str, outcome: str,
                     facts: dict[str, Any]) -> None:
        from google.cloud import firestore

        chain = chain_of(_text(facts.get("repository", "")), actor)
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
        chain = chain_of(_text(facts.get("repository", "")), actor)
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
    """Verify the named chains, or every chain.

    A name (`owner/name` or `owner:name`, with or without `#kind`) is one chain when it has a kind
    (`octo/widgets#test`), and every chain of that repository when it has none (`octo/widgets`;
    `system` for the records without one): each head in `audit_chains` whose chain starts with
    `octo/widgets#`, each chain named by an `audit` record of the repository, so a chain whose head
    was deleted is still checked, and the bare `octo/widgets` of records written before chains were
    sharded. A name that finds nothing is reported as an unknown chain. Without names: every head and
    every chain named by a record.
    """
    try:
        if chains:
            heads: dict[str, Mapping[str, Any]] = {}
            names: set[str] = set()
            for name in {chain_name(text) for text in chains}:
                found = _chains_named(client, name, heads)
                names |= found or {name}
        else:
            heads = {head["chain"]: head for head in
                     (doc.to_dict() for doc in client.collection(AUDIT_CHAINS).stream())}
            recorded = {(doc.to_dict() or {}).get("chain")
                        for doc in client.collection(AUDIT).select(["chain"]).stream()}
            names = set(heads) | {str(name) for name in recorded if name}
    except _google_errors() as exc:
        raise RetryableError(f"list audit chains: {exc}") from exc

    from google.cloud.firestore_v1.base_query import FieldFilter

    ordered = sorted(names)
    reports = []
    for done, name in enumerate(ordered, start=1):
        query = client.collection(AUDIT).where(filter=FieldFilter("chain", "==", name))
        try:
            records = [doc.to_dict() for doc in query.stream()]
        except _google_errors() as exc:
            raise RetryableError(f"read audit chain {name}: {exc}") from exc
        reports.append(verify_records(records, heads.get(name), chain=name))
        if progress is not None:
            progress(done, len(ordered))
    return reports


def _chains_named(client: Any, name: str, heads: dict[str, Mapping[str, Any]]) -> set[str]:
    """The chains that exist under `name` (see verify_chains), adding their heads to `heads`."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    def head_of(chain: str) -> None:
        head = client.collection(AUDIT_CHAINS).document(chain_doc_id(chain)).get().to_dict()
        if head is not None:
            heads[chain] = head

    if KIND_SEPARATOR in name:
        head_of(name)
        return {name} if name in heads else set()
    head_of(name)  # a chain written before chains were sharded
    found = {name} if name in heads else set()
    # '$' follows '#': every chain `<name>#...`, and nothing else, sorts between them.
    prefixed = (client.collection(AUDIT_CHAINS)
                .where(filter=FieldFilter("chain", ">=", f"{name}{KIND_SEPARATOR}"))
                .where(filter=FieldFilter("chain", "<", f"{name}{chr(ord(KIND_SEPARATOR) + 1)}")))
    for doc in prefixed.stream():
        head = doc.to_dict() or {}
        if head.get("chain"):
            heads[str(head["chain"])] = head
            found.add(str(head["chain"]))
    repository = "" if name == SYSTEM_CHAIN else name
    records = client.collection(AUDIT).where(filter=FieldFilter("repository", "==", repository))
    for chain in {(doc.to_dict() or {}).get("chain") for doc in records.select(["chain"]).stream()}:
        if chain and str(chain) not in found:
            found.add(str(chain))
            head_of(str(chain))  # none when deleted; a record naming another repository's chain has one
    return found


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
