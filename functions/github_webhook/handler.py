"""The public ingress: verify, deduplicate, publish, answer. Everything else happens downstream.

GitHub waits 10 s and never redelivers on its own, so the answer is honest: 202 only after the
publish is acknowledged, 503 when it is not (the delivery then shows as failed in GitHub's log and
the redelivery sweeper or an operator retries it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from functions.github_webhook import core
from shared import topology
from shared.errors import RetryableError, SecretUnavailable
from shared.messages import GithubEvent
from shared.ports import Claim, DeliveryLedger, DeliveryRecord, Publisher, WebhookSecrets

log = logging.getLogger("agentops.webhook")

Response = tuple[str, int, dict[str, str]]


def _reply(status: int, reason: str, **headers: str) -> Response:
    return reason + "\n", status, {"Content-Type": "text/plain; charset=utf-8", **headers}


def _read_capped(request: Any) -> bytes | None:
    """Read at most MAX_BODY_BYTES + 1 bytes; None when the body is over the cap."""
    length = request.content_length
    if length is not None and length > core.MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    stream = request.stream
    while True:
        chunk = stream.read(min(1 << 20, core.MAX_BODY_BYTES + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > core.MAX_BODY_BYTES:
            return None


class WebhookHandler:
    def __init__(
        self,
        secrets: Callable[[], WebhookSecrets],
        ledger: Callable[[], DeliveryLedger],
        publisher: Callable[[], Publisher],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        # Factories, so a cold instance builds only the clients the request reaches.
        self._secrets = secrets
        self._ledger = ledger
        self._publisher = publisher
        self._clock = clock

    def __call__(self, request: Any) -> Response:
        started = time.monotonic()
        facts: dict[str, Any] = {
            "delivery_id": request.headers.get(core.DELIVERY_HEADER, "")[:200],
            "event": request.headers.get(core.EVENT_HEADER, "")[:100],
        }
        body, status, headers = self._handle(request, facts)
        facts.update(status=status, latency_ms=round((time.monotonic() - started) * 1000, 2))
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        log.log(level, "delivery %s", facts.get("outcome", "rejected"), extra=facts)
        return body, status, headers

    def _handle(self, request: Any, facts: dict[str, Any]) -> Response:
        if request.method != "POST":
            facts["outcome"] = "method_not_allowed"
            return _reply(405, "only POST is accepted", Allow="POST")
        body = _read_capped(request)
        if body is None:
            facts["outcome"] = "too_large"
            return _reply(413, f"body over {core.MAX_BODY_BYTES} bytes")
        signature = request.headers.get(core.SIGNATURE_HEADER, "")
        if not signature:
            facts["outcome"] = "unsigned"
            return _reply(401, f"missing {core.SIGNATURE_HEADER} header")
        try:
            secrets = self._secrets().webhook_secrets()
        except SecretUnavailable as exc:
            facts.update(outcome="secret_unavailable", error=str(exc))
            return _reply(503, "webhook secret unavailable")
        if not core.verify_signature(body, signature.strip(), secrets):
            facts["outcome"] = "bad_signature"
            return _reply(401, "signature does not match")
        rejection = core.check_headers(request.headers)
        if rejection:
            facts["outcome"] = "bad_headers"
            return _reply(rejection.status, rejection.reason)
        parsed = core.parse_body(body, request.headers.get("Content-Type", ""))
        if isinstance(parsed, core.Rejection):
            facts["outcome"] = "bad_body"
            return _reply(parsed.status, parsed.reason)
        payload, payload_text = parsed
        now = self._clock()
        event = core.envelope(request.headers, payload, payload_text, int(now.timestamp() * 1000))
        facts.update(action=event.action, repository=event.repository)
        record = DeliveryRecord(
            delivery_id=event.delivery_id,
            event=event.event,
            action=event.action,
            repository=event.repository,
            installation_id=event.installation_id,
            received_at=now,
            hook_id=event.hook_id,
        )
        try:
            if event.event == "ping":
                self._ledger().record_ping(record, _hook_facts(payload), now)
                facts["outcome"] = "ping"
                return _reply(200, "pong")
            return self._publish_once(event, record, now, facts)
        except RetryableError as exc:
            facts.update(outcome="unavailable", error=str(exc))
            return _reply(503, "temporarily unavailable; redeliver later")

    def _publish_once(
        self, event: GithubEvent, record: DeliveryRecord, now: datetime, facts: dict[str, Any]
    ) -> Response:
        ledger = self._ledger()
        claim = ledger.claim(record, now)
        if claim is Claim.DUPLICATE:
            facts["outcome"] = "duplicate"
            return _reply(200, "duplicate delivery; already accepted")
        if claim is Claim.IN_FLIGHT:
            facts["outcome"] = "in_flight"
            return _reply(409, "this delivery is being processed; redeliver later if it fails")
        try:
            message_id = self._publisher().publish(
                topology.GITHUB_EVENTS, event.encode(), event.attributes()
            )
        except RetryableError as exc:
            # Release the claim so GitHub's redelivery (or the sweeper) can publish it.
            ledger.mark_failed(event.delivery_id, str(exc), self._clock())
            facts.update(outcome="publish_failed", error=str(exc))
            return _reply(503, "could not publish; redeliver later")
        facts.update(outcome="published", message_id=message_id)
        try:
            ledger.mark_published(event.delivery_id, message_id, self._clock())
        except RetryableError as exc:
            # The event is out; only the record lags. A redelivery might publish it again,
            # which the orchestrator absorbs by its deterministic task ids.
            facts["ledger_error"] = str(exc)
        return _reply(202, "accepted")


def _hook_facts(payload: dict[str, Any]) -> dict[str, Any]:
    hook = payload.get("hook") if isinstance(payload.get("hook"), dict) else {}
    return {
        "hook_id": payload.get("hook_id") if isinstance(payload.get("hook_id"), int) else 0,
        "type": hook.get("type", ""),
        "events": [e for e in hook.get("events", []) if isinstance(e, str)],
        "app_id": hook.get("app_id") if isinstance(hook.get("app_id"), int) else 0,
        "zen": payload.get("zen", "") if isinstance(payload.get("zen"), str) else "",
    }
