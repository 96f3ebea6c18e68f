"""The consumer runtime's ack/retry contract, on a recording fake audit log."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from cloudevents.http import CloudEvent

from shared.errors import PermanentError, RetryableError
from shared.messages import ScheduleTick
from shared.runtime import Consumer, decode

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


class RecordingAudit:
    def __init__(self) -> None:
        self.entries: list[dict] = []

    def record(self, **entry) -> None:
        self.entries.append(entry)


def cloud_event(data: bytes, topic: str = "schedule-ticks", published: datetime = NOW,
                source: str | None = None) -> CloudEvent:
    return CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished",
         "source": source or f"//pubsub.googleapis.com/projects/p/topics/{topic}", "id": "m-1"},
        {"message": {"data": base64.b64encode(data).decode(), "messageId": "m-1",
                     "publishTime": published.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
                     "attributes": {"task_id": "t-9"}}},
    )


def consumer(handler, audit: RecordingAudit, max_age: int = 60) -> Consumer:
    return Consumer("orchestrator", {"schedule-ticks": ScheduleTick}, handler, lambda: audit,
                    max_age, clock=lambda: NOW)


def test_a_valid_message_reaches_the_handler_typed():
    seen = []
    audit = RecordingAudit()
    consumer(seen.append, audit)(cloud_event(b'{"job": "monitor"}'))
    (envelope,) = seen
    assert envelope.message == ScheduleTick("monitor")
    assert envelope.topic == "schedule-ticks"
    assert envelope.message_id == "m-1"
    assert envelope.publish_time == NOW
    assert envelope.attributes == {"task_id": "t-9"}
    assert audit.entries == []


DROP_CASES = [
    # (id, event, expected outcome)
    ("not-json", cloud_event(b"{"), "invalid_message"),
    ("schema-violation", cloud_event(b'{"job": 1}'), "invalid_message"),
    ("unknown-field", cloud_event(b'{"job": "monitor", "x": 1}'), "invalid_message"),
    ("no-topic-in-source", cloud_event(b'{"job": "monitor"}', source="//pubsub.googleapis.com/"),
     "invalid_message"),
    ("topic-not-consumed", cloud_event(b'{"job": "monitor"}', topic="agent-code"), "invalid_message"),
    ("too-old", cloud_event(b'{"job": "monitor"}', published=NOW - timedelta(seconds=61)), "too_old"),
]


@pytest.mark.parametrize("event,outcome", [c[1:] for c in DROP_CASES], ids=[c[0] for c in DROP_CASES])
def test_bad_or_stale_messages_are_acked_and_audited_without_effect(event, outcome):
    audit = RecordingAudit()
    consumer(lambda envelope: pytest.fail("handler ran"), audit)(event)  # returns: ack
    assert [(e["action"], e["outcome"]) for e in audit.entries] == [("drop_message", outcome)]
    assert audit.entries[0]["key"] == f"orchestrator:{outcome}:m-1"


def test_permanent_error_is_acked_and_audited():
    audit = RecordingAudit()

    def handler(envelope):
        raise PermanentError("repository archived")

    consumer(handler, audit)(cloud_event(b'{"job": "monitor"}'))
    assert [e["reason"] for e in audit.entries] == ["repository archived"]


@pytest.mark.parametrize("error", [RetryableError("firestore down"), RuntimeError("bug")],
                         ids=["retryable", "unexpected"])
def test_retryable_and_unexpected_errors_raise_so_pubsub_retries(error):
    audit = RecordingAudit()

    def handler(envelope):
        raise error

    with pytest.raises(type(error)):
        consumer(handler, audit)(cloud_event(b'{"job": "monitor"}'))
    assert audit.entries == []


def test_publish_time_with_nanoseconds_and_offsets_parses():
    event = cloud_event(b'{"job": "monitor"}')
    event.data["message"]["publishTime"] = "2026-11-24T12:00:00.123456789Z"
    assert decode(event, {"schedule-ticks": ScheduleTick}).publish_time == NOW.replace(microsecond=123456)
