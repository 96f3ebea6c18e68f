"""Narrow ports the functions depend on. Adapters live beside them in `shared/`; fakes in tests.

The same contract tests run against the Firestore-backed adapters (on the emulator) and the
in-memory fakes, so the fakes cannot drift from the real behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol


class Publisher(Protocol):
    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish and wait for the server's ack. Returns the message id.

        Raises RetryableError when the message may not have been published.
        """


class WebhookSecrets(Protocol):
    def webhook_secrets(self) -> Sequence[bytes]:
        """The accepted webhook secrets, current first. Never empty.

        Raises SecretUnavailable when they cannot be read.
        """


class Claim(Enum):
    CLAIMED = "claimed"  # this caller owns the delivery and must publish it
    DUPLICATE = "duplicate"  # already published: answer 200, publish nothing
    IN_FLIGHT = "in_flight"  # another instance holds a live claim


@dataclass(frozen=True)
class DeliveryRecord:
    delivery_id: str
    event: str
    action: str
    repository: str
    installation_id: int
    received_at: datetime
    hook_id: int = 0


class DeliveryLedger(Protocol):
    """The `deliveries` collection: one document per inbound delivery."""

    def claim(self, record: DeliveryRecord, now: datetime) -> Claim: ...

    def mark_published(self, delivery_id: str, message_id: str, now: datetime) -> None: ...

    def mark_failed(self, delivery_id: str, reason: str, now: datetime) -> None: ...

    def record_ping(self, record: DeliveryRecord, hook: Mapping[str, Any], now: datetime) -> None: ...

    def mark_processed(
        self, key: str, consumer: str, task_ids: Sequence[str], now: datetime, **facts: Any
    ) -> bool:
        """Record that `consumer` handled the message `key`. False if it already had."""

    def get(self, key: str) -> dict[str, Any] | None: ...




@dataclass(frozen=True)
class TaskSpec:
    """What the orchestrator wants done; `task_id` is derived from the subject, so it is stable."""

    task_id: str
    kind: str
    agent: str
    repository: str
    installation_id: int
    subject: str
    source: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


class Dispatch(Enum):
    DISPATCH = "dispatch"  # the caller holds the dispatch lease and must publish
    ALREADY = "already"  # dispatched before (or finished): do nothing
    BUSY = "busy"  # another caller holds a live lease: retry later


class TaskStore(Protocol):
    """The `tasks` collection with what gates it (`shared.task_store.FirestoreTasks`)."""

    def begin_dispatch(self, spec: TaskSpec, policy: Any, now: datetime) -> Any:
        """Create the task if new and decide, in one transaction, whether it goes now."""

    def finish_dispatch(self, task_id: str, message_id: str, now: datetime) -> None: ...

    def abandon_dispatch(self, task_id: str, reason: str, now: datetime) -> None: ...

    def record_result(self, task_id: str, agent: str, attempt: int, status: str, summary: str,
                      now: datetime, details: Mapping[str, Any] | None = None) -> Any:
        """Apply an agent's result; `.applied` is False when it was already applied or is stale."""

    def get(self, task_id: str) -> dict[str, Any] | None: ...


class AuditLog(Protocol):
    def record(self, key: str, actor: str, action: str, subject: str, outcome: str, **facts: Any) -> None:
        """Write one audit entry keyed by an idempotency key; writing the same key twice is a no-op."""

    def has(self, key: str) -> bool:
        """Whether an entry with this key exists: the action it records was done."""
