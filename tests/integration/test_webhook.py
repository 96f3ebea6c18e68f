"""github_webhook through functions-framework, on the real Pub/Sub and Firestore emulators."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from werkzeug.test import EnvironBuilder

from functions.github_webhook.core import MAX_BODY_BYTES
from functions.github_webhook.handler import WebhookHandler
from shared import topology
from shared.gcp import SecretManagerSource
from shared.log import JsonFormatter
from shared.messages import GithubEvent
from tests.support import github
from tests.support.pubsub import drain, tap
from tests.support.secret_manager import SecretManagerServer

pytestmark = pytest.mark.emulators


def post(client, event: str, body: bytes, secret: str, delivery_id: str | None = None, **overrides):
    headers = github.delivery_headers(event, body, secret, delivery_id)
    headers.update(overrides)
    headers = {k: v for k, v in headers.items() if v is not None}
    return client.post("/", data=body, headers=headers)


def test_every_official_example_is_accepted_published_and_valid(
    function_client, admin, services, webhook_secret
):
    subscription = tap(admin, topology.GITHUB_EVENTS)
    client = function_client("github_webhook")
    sent = {}
    for event, body in github.webhook_examples():
        raw = json.dumps(body).encode()
        delivery_id = str(uuid.uuid4())
        response = post(client, event, raw, webhook_secret, delivery_id)
        expected = 200 if event == "ping" else 202
        assert response.status_code == expected, (event, body.get("action"), response.text)
        if event != "ping":
            sent[delivery_id] = (event, body)
    assert len(sent) > 300

    messages = drain(admin, subscription, expect=len(sent), timeout=60)
    assert len(messages) == len(sent)
    for message in messages:
        envelope = GithubEvent.decode(message.data)  # validates against the Avro schema
        event, body = sent[envelope.delivery_id]
        assert envelope.event == event
        assert envelope.body() == body
        # Pub/Sub adds googclient_schema* attributes when it validates against the topic schema.
        assert message.attributes["googclient_schemaencoding"] == "JSON"
        attributes = {k: v for k, v in message.attributes.items() if not k.startswith("googclient_")}
        assert attributes == {
            "event": event,
            "action": body.get("action", "") if isinstance(body.get("action"), str) else "",
            "delivery_id": envelope.delivery_id,
            "repository": (body.get("repository") or {}).get("full_name", ""),
            "installation_id": str((body.get("installation") or {}).get("id") or ""),
        }
        assert envelope.hook_id == 123456
        stored = services.ledger().get(envelope.delivery_id)
        assert stored["status"] == "published"
        assert stored["message_id"] == message.message_id


def test_same_delivery_twice_publishes_once(function_client, admin, services, webhook_secret):
    subscription = tap(admin, topology.GITHUB_EVENTS)
    client = function_client("github_webhook")
    body = json.dumps(github.example("issues", "labeled")).encode()
    delivery_id = str(uuid.uuid4())

    first = post(client, "issues", body, webhook_secret, delivery_id)
    second = post(client, "issues", body, webhook_secret, delivery_id)

    assert (first.status_code, second.status_code) == (202, 200)
    assert "duplicate" in second.text
    assert len(drain(admin, subscription, expect=1)) == 1
    assert services.ledger().get(delivery_id)["attempts"] == 1


BAD_REQUESTS = [
    # (id, how to change the request, expected status, expected reason)
    ("wrong-secret", {"secret": "not-the-secret"}, 401, "signature does not match"),
    ("no-signature", {"headers": {"X-Hub-Signature-256": None}}, 401, "missing X-Hub-Signature-256"),
    ("sha1-only", {"headers": {"X-Hub-Signature-256": None, "X-Hub-Signature": "sha1=" + "0" * 40}},
     401, "missing X-Hub-Signature-256"),
    ("signature-in-query-only", {"headers": {"X-Hub-Signature-256": None},
                                 "query": "signature=sha256%3D" + "0" * 64}, 401, "missing"),
    ("truncated-signature", {"headers": {"X-Hub-Signature-256": "sha256=abc"}}, 401, "does not match"),
    ("no-event-header", {"headers": {"X-GitHub-Event": None}}, 400, "missing X-GitHub-Event"),
    ("no-delivery-header", {"headers": {"X-GitHub-Delivery": None}}, 400, "missing X-GitHub-Delivery"),
    ("malformed-json", {"body": b'{"action": "opened",'}, 400, "malformed JSON"),
    ("json-array", {"body": b"[1, 2]"}, 400, "not a JSON object"),
    ("not-utf8", {"body": b'{"a": "\xff"}'}, 400, "malformed JSON"),
    ("get", {"method": "GET"}, 405, "only POST"),
    ("put", {"method": "PUT"}, 405, "only POST"),
]


@pytest.mark.parametrize("change,status,reason", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_a_clear_answer_and_nothing_is_published_or_stored(
    function_client, admin, services, webhook_secret, change, status, reason
):
    subscription = tap(admin, topology.GITHUB_EVENTS)
    client = function_client("github_webhook")
    body = change.get("body", json.dumps(github.example("push")).encode())
    delivery_id = str(uuid.uuid4())
    headers = github.delivery_headers("push", body, change.get("secret", webhook_secret), delivery_id)
    headers.update(change.get("headers", {}))
    headers = {k: v for k, v in headers.items() if v is not None}

    response = client.open("/", method=change.get("method", "POST"), data=body, headers=headers,
                           query_string=change.get("query"))

    assert response.status_code == status
    assert reason in response.text
    if status == 405:
        assert response.headers["Allow"] == "POST"
    assert drain(admin, subscription, settle=0.5) == []
    assert services.ledger().get(delivery_id) is None


def test_oversize_body_is_refused_without_publishing(function_client, admin, services, webhook_secret):
    subscription = tap(admin, topology.GITHUB_EVENTS)
    client = function_client("github_webhook")
    body = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    delivery_id = str(uuid.uuid4())

    response = post(client, "push", body, webhook_secret, delivery_id)

    assert response.status_code == 413
    assert drain(admin, subscription, settle=0.5) == []
    assert services.ledger().get(delivery_id) is None


def test_oversize_stream_without_length_is_cut_off(services, webhook_secret):
    """A chunked body has no Content-Length: the handler stops reading past the cap."""
    read = {"bytes": 0}

    class EndlessStream:
        def read(self, size: int = -1) -> bytes:
            read["bytes"] += size
            return b"x" * size

    handler = WebhookHandler(lambda: pytest.fail("secrets read"), services.ledger,
                             lambda: pytest.fail("publisher used"))
    request = EnvironBuilder(method="POST", headers={"X-GitHub-Event": "push"}).get_request()
    request.__dict__["content_length"] = None
    request.__dict__["stream"] = EndlessStream()

    body, status, _ = handler(request)

    assert status == 413
    assert read["bytes"] <= MAX_BODY_BYTES + 1


def test_ping_answers_200_and_records_the_hook(function_client, admin, services, webhook_secret):
    subscription = tap(admin, topology.GITHUB_EVENTS)
    body = json.dumps(github.example("ping")).encode()
    delivery_id = str(uuid.uuid4())

    response = post(function_client("github_webhook"), "ping", body, webhook_secret, delivery_id)

    assert response.status_code == 200
    stored = services.ledger().get(delivery_id)
    assert stored["status"] == "ping"
    assert stored["hook"]["hook_id"] == github.example("ping")["hook_id"]
    assert drain(admin, subscription, settle=0.5) == []


def _request(body: bytes, headers: dict[str, str]):
    return EnvironBuilder(method="POST", data=body, headers=headers).get_request()


def test_publish_failure_answers_503_and_the_redelivery_publishes_exactly_once(
    admin, services, config, webhook_secret
):
    from shared.bootstrap import Services

    subscription = tap(admin, topology.GITHUB_EVENTS)
    unreachable = Services(config.with_overrides(pubsub_emulator_host="127.0.0.1:9",
                                                 publish_timeout_seconds=1.0))
    body = json.dumps(github.example("pull_request", "opened")).encode()
    headers = github.delivery_headers("pull_request", body, webhook_secret)
    delivery_id = headers["X-GitHub-Delivery"]

    _, status, _ = unreachable.webhook()(_request(body, headers))
    assert status == 503
    assert services.ledger().get(delivery_id)["status"] == "publish_failed"
    assert drain(admin, subscription, settle=0.5) == []

    # GitHub's redelivery (same delivery id) reaches a healthy instance.
    _, status, _ = services.webhook()(_request(body, headers))
    assert status == 202
    _, status, _ = services.webhook()(_request(body, headers))
    assert status == 200
    messages = drain(admin, subscription, expect=1)
    assert [GithubEvent.decode(m.data).delivery_id for m in messages] == [delivery_id]
    stored = services.ledger().get(delivery_id)
    assert (stored["status"], stored["attempts"]) == ("published", 2)


@pytest.fixture
def secret_manager():
    server = SecretManagerServer().start()
    yield server
    server.stop()


def _secret_handler(services, server, cache_seconds=300.0):
    source = SecretManagerSource(services.config.project, client_factory=server.client,
                                 cache_seconds=cache_seconds)
    return WebhookHandler(lambda: source, services.ledger, services.publisher)


@pytest.mark.parametrize("setup", ["missing", "empty", "unreachable", "disabled"])
def test_unreadable_secret_fails_closed_with_503(admin, services, secret_manager, setup):
    import grpc

    subscription = tap(admin, topology.GITHUB_EVENTS)
    if setup == "empty":
        secret_manager.state.add_version(topology.WEBHOOK_SECRET, b"")
    elif setup == "unreachable":
        secret_manager.state.fail_with = grpc.StatusCode.UNAVAILABLE
    elif setup == "disabled":
        secret_manager.state.add_version(topology.WEBHOOK_SECRET, b"s3cret")
        secret_manager.state.set_state(topology.WEBHOOK_SECRET, 1, "DISABLED")
    handler = _secret_handler(services, secret_manager)
    # Signed with the empty secret: must not verify against an empty or missing secret.
    body = b'{"zen": "x"}'
    headers = github.delivery_headers("push", body, "")

    _, status, _ = handler(_request(body, headers))

    assert status == 503
    assert services.ledger().get(headers["X-GitHub-Delivery"]) is None
    assert drain(admin, subscription, settle=0.5) == []


def test_rotation_accepts_current_and_previous_secret_until_the_old_one_is_disabled(
    admin, services, secret_manager
):
    state = secret_manager.state
    state.add_version(topology.WEBHOOK_SECRET, b"old-secret")
    state.add_version(topology.WEBHOOK_SECRET, b"new-secret")
    handler = _secret_handler(services, secret_manager, cache_seconds=0.001)
    body = json.dumps(github.example("push")).encode()

    for secret in ("new-secret", "old-secret"):
        _, status, _ = handler(_request(body, github.delivery_headers("push", body, secret)))
        assert status == 202, secret

    state.set_state(topology.WEBHOOK_SECRET, 1, "DISABLED")
    _, status, _ = handler(_request(body, github.delivery_headers("push", body, "old-secret")))
    assert status == 401
    _, status, _ = handler(_request(body, github.delivery_headers("push", body, "new-secret")))
    assert status == 202


def test_secret_is_cached_per_instance(services, secret_manager):
    secret_manager.state.add_version(topology.WEBHOOK_SECRET, b"s3cret")
    handler = _secret_handler(services, secret_manager)
    body = b"{}"
    for _ in range(5):
        handler(_request(body, github.delivery_headers("ping", body, "s3cret")))
    # latest once, and the (absent) previous version once
    assert len(secret_manager.state.calls) == 1


def test_one_log_line_per_delivery_without_body_or_secret(
    function_client, admin, webhook_secret, caplog
):
    token = "ghs_" + "A" * 36
    payload = github.example("issue_comment", "created")
    payload["comment"]["body"] = f"please use {token} and the marker BODYMARKER"
    body = json.dumps(payload).encode()
    delivery_id = str(uuid.uuid4())

    with caplog.at_level(logging.INFO, logger="agentops.webhook"):
        response = post(function_client("github_webhook"), "issue_comment", body, webhook_secret,
                        delivery_id)

    assert response.status_code == 202
    records = [r for r in caplog.records if r.name == "agentops.webhook"]
    assert len(records) == 1
    line = JsonFormatter().format(records[0])
    entry = json.loads(line)
    assert entry["delivery_id"] == delivery_id
    assert entry["event"] == "issue_comment"
    assert entry["action"] == "created"
    assert entry["outcome"] == "published"
    assert entry["repository"] == payload["repository"]["full_name"]
    assert isinstance(entry["latency_ms"], float)
    for secret_text in (token, "BODYMARKER", webhook_secret):
        assert secret_text not in line
