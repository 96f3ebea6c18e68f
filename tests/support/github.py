"""GitHub webhook fixtures: the official examples, and signing as GitHub does."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "sandbox" / "github" / "webhook-examples.json"


@functools.cache
def webhook_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every (event, body) pair from GitHub's official webhook examples."""
    catalogue = json.loads(EXAMPLES.read_text())
    return [(entry["name"], body) for entry in catalogue for body in entry["examples"]]


def example(event: str, action: str | None = None) -> dict[str, Any]:
    for name, body in webhook_examples():
        if name == event and (action is None or body.get("action") == action):
            return json.loads(json.dumps(body))
    raise LookupError(f"no example for {event}.{action}")


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(event: str, body: bytes, secret: str, delivery_id: str | None = None) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "123456",
        "X-Hub-Signature-256": signature(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
    }
