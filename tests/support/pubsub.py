"""Reading what was published, from a pull subscription on the emulator."""

from __future__ import annotations

import time
from typing import Any

from shared.local.provision import PubSubAdmin


def tap(admin: PubSubAdmin, topic: str, name: str | None = None) -> str:
    """A pull subscription on `topic` that sees every message published from now on."""
    subscription = name or f"tap-{topic}"
    admin.create_pull_subscription(subscription, topic)
    return subscription


def drain(admin: PubSubAdmin, subscription: str, settle: float = 1.0, timeout: float = 15.0,
          expect: int | None = None) -> list[Any]:
    """Pull and ack until nothing new arrives for `settle` seconds (or `expect` messages came)."""
    received: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        messages = admin.pull_and_ack(subscription)
        if messages:
            received.extend(messages)
            quiet_since = time.monotonic()
        if expect is not None and len(received) >= expect:
            # Keep listening for `settle` more seconds to catch an unwanted extra message.
            if time.monotonic() - quiet_since >= settle:
                break
        elif expect is None and time.monotonic() - quiet_since >= settle:
            break
        if not messages:
            time.sleep(0.05)
    return received
