"""Webhook deliveries as GitHub makes them: the official example bodies, the headers, the signature,
and a sender that posts them one at a time, in order, off the request that caused them.

GitHub waits 10 seconds for an answer, records every attempt (status code, duration, the request
and the response) and never retries on its own; a redelivery is a new attempt with the same guid.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent / "webhook-examples.json"
USER_AGENT = "GitHub-Hookshot/sandbox"
TIMEOUT_SECONDS = 10.0  # GitHub's
QUEUE_SIZE = 1000
# Events with no official example for an action borrow the example of an action of the same shape.
BORROWED = {("issues", "closed"): ("issues", "reopened"),
            ("workflow_run", "in_progress"): ("workflow_run", "requested")}


@functools.cache
def _catalogue() -> dict[str, list[dict[str, Any]]]:
    entries = json.loads(EXAMPLES.read_text())
    return {entry["name"]: entry["examples"] for entry in entries}


def example(event: str, action: str | None = None) -> dict[str, Any]:
    """A fresh copy of GitHub's official example body for `event` and `action`.

    Of several, the last one sent for an organisation's repository: the sandbox's repositories
    belong to an organisation, and the later examples carry the newer fields.
    """
    borrowed_event, borrowed_action = BORROWED.get((event, action), (event, action))
    bodies = [body for body in _catalogue().get(borrowed_event, [])
              if body.get("action") == borrowed_action]
    if not bodies:
        raise LookupError(f"GitHub publishes no example of {event}.{action}")
    with_organization = [body for body in bodies if "organization" in body]
    chosen = (with_organization or bodies)[-1]
    copy = json.loads(json.dumps(chosen))
    if action is not None:
        copy["action"] = action
    return copy


def organization_example() -> dict[str, Any]:
    """GitHub's example `organization` object, for payloads whose example has none."""
    for bodies in _catalogue().values():
        for body in bodies:
            if isinstance(body.get("organization"), dict):
                return json.loads(json.dumps(body["organization"]))
    raise LookupError("no example carries an organization")


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Outgoing:
    """One attempt to make: what to send, and what it is about."""

    guid: str
    event: str
    action: str | None
    payload: dict[str, Any]
    installation_id: int | None
    repository_id: int | None
    redelivery: bool = False
    queued_at: float = field(default_factory=time.monotonic)

    @classmethod
    def new(cls, event: str, payload: dict[str, Any], installation_id: int | None,
            repository_id: int | None) -> Outgoing:
        return cls(str(uuid.uuid4()), event, payload.get("action"), payload, installation_id, repository_id)

    def body(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()


def headers(outgoing: Outgoing, body: bytes, secret: str, hook_id: int, app_id: str) -> dict[str, str]:
    sent = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-GitHub-Delivery": outgoing.guid,
        "X-GitHub-Event": outgoing.event,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-ID": str(app_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
    }
    if secret:
        sent["X-Hub-Signature-256"] = sign(body, secret)
    return sent


def _status_text(status_code: int) -> str:
    return "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}"


class Sender:
    """Posts deliveries from a bounded queue on one background thread, oldest first.

    `record(outgoing, attempt)` is called after every attempt with the attempt's facts (status,
    status_code, duration, request headers, response); a delivery the queue has no room for is
    recorded at once as failed, so a redelivery sweep can still find it.
    """

    def __init__(self, url: str, secret: str, hook_id: int, app_id: str,
                 record: Callable[[Outgoing, dict[str, Any]], None], queue_size: int = QUEUE_SIZE,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        import requests

        self.url = url
        self._secret = secret
        self._hook_id = hook_id
        self._app_id = app_id
        self._record = record
        self._timeout = timeout
        self._session = requests.Session()
        self._queue: queue.Queue[Outgoing | None] = queue.Queue(maxsize=queue_size)
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._idle:
            return self._pending

    def submit(self, outgoing: Outgoing) -> None:
        """Queue a delivery; never waits. A full queue fails the delivery instead."""
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(outgoing)
        except queue.Full:
            body = outgoing.body()
            self._record(outgoing, {
                "status": "not sent: the sandbox's delivery queue is full", "status_code": 0,
                "duration": 0.0, "url": self.url,
                "request_headers": headers(outgoing, body, self._secret, self._hook_id, self._app_id),
                "response_headers": {}, "response_body": "",
            })
            self._done()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery has been attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.wait_idle(timeout)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(timeout=timeout)
        self._session.close()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            outgoing = self._queue.get()
            if outgoing is None:
                return
            try:
                self._record(outgoing, self._attempt(outgoing))
            finally:
                self._done()

    def _attempt(self, outgoing: Outgoing) -> dict[str, Any]:
        import requests

        body = outgoing.body()
        sent = headers(outgoing, body, self._secret, self._hook_id, self._app_id)
        started = time.monotonic()
        facts: dict[str, Any] = {"url": self.url, "request_headers": sent, "response_headers": {},
                                 "response_body": ""}
        try:
            response = self._session.post(self.url, data=body, headers=sent, timeout=self._timeout,
                                          allow_redirects=False)
        except requests.Timeout:
            facts.update(status="timed out", status_code=0)
        except requests.RequestException:
            facts.update(status="failed to connect", status_code=0)
        else:
            facts.update(status=_status_text(response.status_code), status_code=response.status_code,
                         response_headers=dict(response.headers), response_body=response.text)
        facts["duration"] = round(time.monotonic() - started, 3)
        return facts
