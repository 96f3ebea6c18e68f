"""One turn of a task at a time, on the Firestore emulator: the lease two woken turns race for."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from shared import topology
from shared.agent_runtime import AgentRunner, Links, Outcome
from shared.errors import RetryableError
from shared.messages import AgentTask
from shared.runtime import Envelope

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=5)


def test_a_second_turn_waits_while_the_first_holds_the_lease_and_a_crashed_lease_expires(services):
    tasks = services.tasks()
    assert tasks.claim_turn("t-1", "m-1", NOW, TTL)
    assert tasks.claim_turn("t-1", "m-1", NOW, TTL)  # the same delivery again (its own retry)
    assert not tasks.claim_turn("t-1", "m-2", NOW + timedelta(seconds=30), TTL)
    assert tasks.claim_turn("t-2", "m-2", NOW, TTL)  # another task is not held up
    tasks.release_turn("t-1", "m-2")  # not the holder: nothing happens
    assert not tasks.claim_turn("t-1", "m-3", NOW + timedelta(seconds=31), TTL)
    tasks.release_turn("t-1", "m-1")
    assert tasks.claim_turn("t-1", "m-3", NOW + timedelta(seconds=32), TTL)
    # m-3 crashed without releasing: after the lease's time another turn may go.
    assert not tasks.claim_turn("t-1", "m-4", NOW + timedelta(minutes=4), TTL)
    assert tasks.claim_turn("t-1", "m-4", NOW + timedelta(minutes=6), TTL)


class CountingAgent:
    name = "test"

    def __init__(self) -> None:
        self.turns = 0

    def handle(self, ctx) -> Outcome:
        self.turns += 1
        return Outcome("succeeded", "done")

    def on_failure(self, ctx, summary: str) -> None:
        raise AssertionError("no failure expected")


class Publisher:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def publish(self, topic: str, data: bytes, attributes) -> str:
        self.sent.append(data)
        return "m"


def test_a_delivery_that_finds_a_turn_running_is_retried_and_acts_on_nothing(services):
    agent, publisher = CountingAgent(), Publisher()
    runner = AgentRunner(agent, publisher=lambda: publisher, tasks=services.tasks, audit=services.audit,
                         github=lambda: object(), policy_for=lambda client, repo: None, links=Links(),
                         clock=lambda: NOW)
    task = AgentTask("t-9", "test_pull_request", "test", 1, "octo/widgets", 77, "pull/1@abc", "test", 0,
                     json.dumps({"pull_number": 1, "head_sha": "a" * 40}))

    def envelope(message_id: str) -> Envelope:
        return Envelope(topology.AGENTS_BY_NAME["test"].topic, message_id, NOW, task.attributes(), task)

    assert services.tasks().claim_turn("t-9", "other-delivery", NOW, TTL)  # a turn in flight
    with pytest.raises(RetryableError, match="another turn of task t-9 is running"):
        runner(envelope("m-late"))
    assert (agent.turns, publisher.sent) == (0, [])

    services.tasks().release_turn("t-9", "other-delivery")
    runner(envelope("m-late"))  # Pub/Sub's retry: now it goes, and gives the lease back
    assert agent.turns == 1 and len(publisher.sent) == 1
    assert services.tasks().claim_turn("t-9", "m-next", NOW, TTL)
