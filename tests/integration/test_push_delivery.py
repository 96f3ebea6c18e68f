"""Real push delivery by the Pub/Sub emulator to functions served on loopback."""

from __future__ import annotations

import json
import textwrap
import time
from contextlib import ExitStack

import functions_framework
import pytest

from shared import topology
from shared.messages import ScheduleTick
from tests.support import github
from tests.support.pubsub import drain
from tests.support.push import serve

pytestmark = pytest.mark.emulators


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_delivery_flows_webhook_to_orchestrator_to_agents_and_back(
    main_module, admin, services, project, webhook_secret
):
    """github_webhook -> github-events -> orchestrator -> agent-test/qa -> agent-results -> tasks."""
    with ExitStack() as stack:
        urls = {}
        for target in topology.FUNCTIONS:
            app = functions_framework.create_app(target=target, source=main_module.__file__)
            urls[target] = stack.enter_context(serve(app))
        for subscription in topology.SUBSCRIPTIONS:
            admin.create_push_subscription(subscription, urls[subscription.consumer], 1, 5)

        body = json.dumps(github.example("pull_request", "opened")).encode()
        import requests

        response = requests.post(urls["github_webhook"], data=body, timeout=10,
                                 headers=github.delivery_headers("pull_request", body, webhook_secret))
        assert response.status_code == 202

        def finished():
            docs = [d.to_dict() for d in services.firestore().collection("tasks").stream()]
            done = [d for d in docs if d["status"] == "blocked"]
            return docs if len(done) == 2 else None

        docs = wait_for(finished, what="both gate tasks to report back")
        assert sorted(d["agent"] for d in docs) == ["qa", "test"]
        for doc in docs:
            assert [h["to"] for h in doc["history"]] == ["queued", "dispatched", "blocked"]
            assert "needs the GitHub App" in doc["result"]["summary"]  # no App here: said, not done


def test_poison_message_lands_on_the_dead_letter_topic_after_max_attempts(
    admin, tmp_path, project
):
    """A consumer that fails every time: Pub/Sub retries, then parks the message, nothing lost."""
    source = tmp_path / "poison_main.py"
    source.write_text(textwrap.dedent("""
        import functions_framework
        from shared.errors import RetryableError
        from shared.messages import ScheduleTick
        from shared.runtime import Consumer

        import pathlib
        ATTEMPTS = pathlib.Path(__file__).with_name("attempts.log")

        class NoAudit:
            def record(self, **kwargs):
                raise AssertionError("a retryable failure must not be audited as a drop")

        def always_fails(envelope):
            with ATTEMPTS.open("a") as log:
                log.write(envelope.message_id + "\\n")
            raise RetryableError("downstream is down")

        consumer = Consumer("poison", {"schedule-ticks": ScheduleTick}, always_fails,
                            lambda: NoAudit(), max_age_seconds=3600)

        @functions_framework.cloud_event
        def orchestrator(cloud_event):
            consumer(cloud_event)
    """))
    app = functions_framework.create_app(target="orchestrator", source=str(source))
    subscription = next(s for s in topology.SUBSCRIPTIONS
                        if s.topic == topology.SCHEDULE_TICKS and s.consumer == "orchestrator")
    with serve(app) as url:
        admin.create_push_subscription(subscription, url, minimum_backoff=0, maximum_backoff=1)
        admin.publisher.publish(admin.topic_path(topology.SCHEDULE_TICKS),
                                ScheduleTick("monitor").encode()).result(timeout=10)
        parked = drain(admin, subscription.dead_letter_topic, expect=1, timeout=60)

    assert [ScheduleTick.decode(m.data).job for m in parked] == ["monitor"]
    assert parked[0].attributes["CloudPubSubDeadLetterSourceSubscription"] == subscription.name
    assert parked[0].attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == str(
        subscription.max_delivery_attempts
    )
    attempts = (tmp_path / "attempts.log").read_text().split()
    assert len(attempts) == subscription.max_delivery_attempts
    assert len(set(attempts)) == 1  # the same message each time
