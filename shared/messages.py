"""Typed Pub/Sub messages and their Avro schemas (JSON encoding).

Each topic we own has a versioned schema in `pubsub_schemas/`. Publishing encodes a dataclass to
Avro's JSON encoding (our schemas use no unions, so that is plain JSON) and validates it first,
so a bad message fails here with a clear error rather than as an opaque INVALID_ARGUMENT from
Pub/Sub. Consuming decodes and validates the same way.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from shared import topology
from shared.errors import InvalidInput

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "pubsub_schemas"


@functools.cache
def schema_text(schema_id: str) -> str:
    return (SCHEMA_DIR / topology.SCHEMA_FILES[schema_id]).read_text()


@functools.cache
def _parsed_schema(schema_id: str) -> Any:
    import fastavro  # imported on first use: the ingress path pays for it once, not at import

    return fastavro.parse_schema(json.loads(schema_text(schema_id)))


def validate(schema_id: str, record: dict[str, Any]) -> None:
    from fastavro.validation import ValidationError
    from fastavro.validation import validate as avro_validate

    try:
        avro_validate(record, _parsed_schema(schema_id), raise_errors=True, strict=True)
    except ValidationError as exc:
        raise InvalidInput(f"message does not match schema {schema_id}: {exc}") from exc


def now_millis() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def millis_to_datetime(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, timezone.utc)


M = TypeVar("M", bound="Message")


@dataclass(frozen=True)
class Message:
    SCHEMA: ClassVar[str]

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    def encode(self) -> bytes:
        record = self.to_record()
        validate(self.SCHEMA, record)
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls: type[M], data: bytes) -> M:
        try:
            record = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{cls.__name__} message is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise InvalidInput(f"{cls.__name__} message is not a JSON object")
        validate(cls.SCHEMA, record)
        names = {f.name for f in fields(cls)}
        extra = set(record) - names
        if extra:
            raise InvalidInput(f"{cls.__name__} message has unknown fields {sorted(extra)}")
        return cls(**record)


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True)
class GithubEvent(Message):
    SCHEMA: ClassVar[str] = topology.SCHEMA_GITHUB_EVENT

    delivery_id: str
    event: str
    action: str
    repository: str
    installation_id: int
    sender: str
    hook_id: int
    received_at: int
    payload: str

    def attributes(self) -> dict[str, str]:
        """The Pub/Sub attributes named in the design, for filtering and routing."""
        return {
            "event": self.event,
            "action": self.action,
            "delivery_id": self.delivery_id,
            "repository": self.repository,
            "installation_id": str(self.installation_id) if self.installation_id else "",
        }

    def body(self) -> dict[str, Any]:
        return _json_object(self.payload, f"payload of delivery {self.delivery_id}")


@dataclass(frozen=True)
class ScheduleTick(Message):
    SCHEMA: ClassVar[str] = topology.SCHEMA_TICK

    job: str


@dataclass(frozen=True)
class AgentTask(Message):
    SCHEMA: ClassVar[str] = topology.SCHEMA_TASK

    task_id: str
    kind: str
    agent: str
    attempt: int
    repository: str
    installation_id: int
    subject: str
    source: str
    created_at: int
    inputs: str

    def attributes(self) -> dict[str, str]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "agent": self.agent,
            "attempt": str(self.attempt),
            "repository": self.repository,
        }

    def input_values(self) -> dict[str, Any]:
        return _json_object(self.inputs, f"inputs of task {self.task_id}")


RESULT_STATUSES = ("running", "succeeded", "failed", "waiting_approval", "blocked", "not_implemented")


@dataclass(frozen=True)
class AgentTaskResult(Message):
    SCHEMA: ClassVar[str] = topology.SCHEMA_TASK_RESULT

    task_id: str
    agent: str
    attempt: int
    status: str
    summary: str
    details: str
    finished_at: int

    def attributes(self) -> dict[str, str]:
        return {"task_id": self.task_id, "agent": self.agent, "status": self.status}

    def detail_values(self) -> dict[str, Any]:
        return _json_object(self.details, f"details of result for {self.task_id}")


@dataclass(frozen=True)
class CloudBuildNotification(Message):
    """Cloud Build's own notification on `cloud-builds`: its Build resource as JSON.

    The format is Google's, not ours, so there is no Avro schema; we keep the fields we use.
    """

    SCHEMA: ClassVar[str] = ""

    build_id: str
    status: str
    tags: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return json.dumps({"id": self.build_id, "status": self.status, "tags": list(self.tags)}).encode()

    @classmethod
    def decode(cls, data: bytes) -> CloudBuildNotification:
        try:
            build = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"Cloud Build notification is not JSON: {exc}") from exc
        if not isinstance(build, dict) or not isinstance(build.get("id"), str):
            raise InvalidInput("Cloud Build notification has no build id")
        tags = build.get("tags") if isinstance(build.get("tags"), list) else []
        return cls(build["id"], str(build.get("status", "")), tuple(str(t) for t in tags))
