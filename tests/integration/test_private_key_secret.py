"""The App's private key from Secret Manager (the real service, served in-process)."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared import topology
from shared.bootstrap import Services
from shared.config import Config
from shared.errors import ConfigError, SecretUnavailable
from tests.support.secret_manager import SecretManagerServer

pytestmark = pytest.mark.emulators


@pytest.fixture
def secret_manager(env):
    server = SecretManagerServer().start()
    server.project = env["GOOGLE_CLOUD_PROJECT"]
    yield server
    server.stop()


def services(server) -> Services:
    # The GitHub App's conditional cache lives in Firestore: the emulator, via the env fixture.
    config = Config.from_env({"GOOGLE_CLOUD_PROJECT": server.project, "GITHUB_APP_ID": "99"})
    return Services(config, secret_client_factory=server.client)


def test_jwt_is_signed_with_the_key_from_secret_manager(secret_manager):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    secret_manager.state.add_version(topology.PRIVATE_KEY_SECRET, pem)
    token = services(secret_manager).github_app().jwt().token()
    assert jwt.decode(token, key.public_key(), algorithms=["RS256"])["iss"] == "99"
    assert secret_manager.state.calls == [
        f"projects/{secret_manager.project}/secrets/{topology.PRIVATE_KEY_SECRET}/versions/latest"
    ]


def test_missing_key_secret_is_unavailable_not_a_crash(secret_manager):
    with pytest.raises(SecretUnavailable, match=topology.PRIVATE_KEY_SECRET):
        services(secret_manager).github_app().jwt()


def test_malformed_key_in_the_secret_names_the_secret_and_hides_the_value(secret_manager):
    secret_manager.state.add_version(topology.PRIVATE_KEY_SECRET, b"not-a-key-SENSITIVE")
    with pytest.raises(ConfigError) as caught:
        services(secret_manager).github_app().jwt()
    assert f"secret {topology.PRIVATE_KEY_SECRET}" in str(caught.value)
    assert "SENSITIVE" not in str(caught.value)


def test_a_pinned_version_is_read_even_when_newer_ones_exist(secret_manager):
    from shared.gcp import SecretManagerSource

    state = secret_manager.state
    state.add_version(topology.WEBHOOK_SECRET, b"pinned")
    state.add_version(topology.WEBHOOK_SECRET, b"newer")
    pinned = SecretManagerSource("p", client_factory=secret_manager.client, webhook_secret_version="1")
    assert list(pinned.webhook_secrets()) == [b"pinned"]  # version 1 has no predecessor
    latest = SecretManagerSource("p", client_factory=secret_manager.client)
    assert list(latest.webhook_secrets()) == [b"newer", b"pinned"]
    state.set_state(topology.WEBHOOK_SECRET, 1, "DESTROYED")
    fresh = SecretManagerSource("p", client_factory=secret_manager.client, webhook_secret_version="1")
    with pytest.raises(SecretUnavailable):
        fresh.webhook_secrets()
