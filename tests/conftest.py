"""Test harness: starts the official Pub/Sub and Firestore emulators on free loopback ports.

Every integration test gets its own project id, which isolates its topics and documents on both
emulators. The emulators never skip: when they cannot start, the tests that need them fail.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.local import emulators


@pytest.fixture(scope="session")
def emulator_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    logs = Path(tmp_path_factory.mktemp("emulator-logs"))
    pubsub = emulators.pubsub(emulators.free_port(), logs)
    firestore = emulators.firestore(emulators.free_port(), logs)
    try:
        pubsub.start()
        firestore.start()
        yield {"PUBSUB_EMULATOR_HOST": pubsub.host, "FIRESTORE_EMULATOR_HOST": firestore.host}
    finally:
        pubsub.stop()
        firestore.stop()


@pytest.fixture
def project() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def webhook_secret() -> str:
    return secrets.token_hex(20)


@pytest.fixture
def env(emulator_hosts: dict[str, str], project: str, webhook_secret: str,
        monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a function sees locally, for this test's project."""
    values = {
        "GOOGLE_CLOUD_PROJECT": project,
        "GITHUB_WEBHOOK_SECRET": webhook_secret,
        "AGENTOPS_PUBLISH_TIMEOUT_SECONDS": "3",
        **emulator_hosts,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    # The Firestore library reads its emulator host from the environment; so must every test.
    return values
