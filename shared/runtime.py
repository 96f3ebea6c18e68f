"""The consumer runtime shared by every Pub/Sub-pushed function.

Return means ack; raise means retry. For each push it:
- finds the topic in the CloudEvent source (the push endpoint carries `/projects/P/topics/T`),
- decodes the message into its typed dataclass and validates it against the topic's Avro schema,
- drops messages older than the configured maximum age,
- binds the log context,
- runs the handler and maps its outcome: RetryableError (or any unexpected error) raises so Pub/Sub
  redelivers with backoff and finally dead-letters; a PermanentError or an invalid message is
  logged, audited and acknowledged.

Exactly-once *effects* are the handlers' job: they key every write on the delivery id, the task id
and an action key, so a redelivered message finds its work done.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.errors import InvalidInput, PermanentError
from shared.log import bind
from shared.messages import Message
from shared.ports import AuditLog

log = logging.getLogger("agentops.runtime")

_TOPIC_SOURCE = re.compile(r"projects/([^/]+)/topics/([^/?]+)")


@dataclass(frozen=True)
class Envelope:
    """One pushed Pub/Sub message, decoded."""

    topic: str
    message_id: str
    publish_time: datetime
    attributes: Mapping[str, str]
    message: Message


Handler = Callable[[Envelope], None]


def _parse_time(text: str) -> datetime:
    # RFC 3339 with up to nanoseconds; Python takes microseconds.
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text or "")
    if not match:
        raise InvalidInput(f"publish time {text!r} is not RFC 3339")
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{match.group(1)}{fraction}{zone}")


def decode(cloud_event: Any, types: Mapping[str, type[Message]]) -> Envelope:
    """Turn functions-framework's CloudEvent for a Pub/Sub push into a typed Envelope."""
    source = str(cloud_event["source"] or "")
    match = _TOPIC_SOURCE.search(source)
    if not match:
        raise InvalidInput(f"push source {source!r} names no topic; the push endpoint must end "
                           "with /projects/<project>/topics/<topic>")
    topic = match.group(2)
    message_type = types.get(topic)
    if message_type is None:
        raise InvalidInput(f"this function does not consume topic {topic!r}")
    data = cloud_event.data or {}
    pushed = data.get("message") or {}
    try:
        raw = base64.b64decode(pushed.get("data") or "", validate=True)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"message on {topic} has undecodable data: {exc}") from exc
    message_id = str(pushed.get("messageId") or cloud_event["id"] or "")
    publish_time = _parse_time(str(pushed.get("publishTime") or cloud_event["time"] or ""))
    return Envelope(
        topic=topic,
        message_id=message_id,
        publish_time=publish_time,
        attributes=dict(pushed.get("attributes") or {}),
        message=message_type.decode(raw),
    )


class Consumer:
    """Wraps a handler with decoding, age limits, logging and the ack/retry contract."""

    def __init__(
        self,
        name: str,
        types: Mapping[str, type[Message]],
        handler: Handler,
        audit: Callable[[], AuditLog],
        max_age_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.name = name
        self._types = types
        self._handler = handler
        self._audit = audit
        self._max_age_seconds = max_age_seconds
        self._clock = clock

    def __call__(self, cloud_event: Any) -> None:
        started = time.monotonic()
        event_id = str(cloud_event["id"] or "")
        with bind(consumer=self.name, message_id=event_id):
            try:
                envelope = decode(cloud_event, self._types)
            except InvalidInput as exc:
                self._drop("invalid_message", event_id, str(exc))
                return
            age = (self._clock() - envelope.publish_time).total_seconds()
            with bind(topic=envelope.topic, **_context_of(envelope)):
                if age > self._max_age_seconds:
                    self._drop("too_old", envelope.message_id, f"message is {age:.0f}s old")
                    return
                try:
                    self._handler(envelope)
                except PermanentError as exc:
                    self._drop("permanent_error", envelope.message_id, str(exc))
                    return
                except Exception:
                    # Retryable or unexpected: raise so Pub/Sub retries, then dead-letters.
                    log.exception("handler failed; message will be retried",
                                  extra={"outcome": "retry"})
                    raise
                log.info("handled", extra={"outcome": "ok",
                                           "latency_ms": round((time.monotonic() - started) * 1000, 1)})

    def _drop(self, outcome: str, message_id: str, reason: str) -> None:
        log.error("message acknowledged without effect: %s", reason, extra={"outcome": outcome})
        self._audit().record(
            key=f"{self.name}:{outcome}:{message_id}",
            actor=self.name,
            action="drop_message",
            subject=f"message/{message_id}",
            outcome=outcome,
            reason=reason[:1000],
        )


def _context_of(envelope: Envelope) -> dict[str, Any]:
    fields = ("delivery_id", "task_id", "repository", "event", "agent")
    return {key: envelope.attributes[key] for key in fields if envelope.attributes.get(key)}
