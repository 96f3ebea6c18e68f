"""App JWT and installation tokens, checked against GitHub's rules and its REST description."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.errors import ConfigError
from shared.github import permissions
from shared.github.auth import AppJwt, InstallationTokens, load_private_key
from tests.support import openapi

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_jwt_is_rs256_with_githubs_claims_and_verifies_with_the_public_key(rsa_key):
    token = AppJwt("Iv1.abc123", load_private_key(pem(rsa_key)), clock=lambda: NOW).token()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iat": int(NOW) - 60, "exp": int(NOW) + 540, "iss": "Iv1.abc123"}
    assert claims["exp"] - claims["iat"] <= 600  # GitHub refuses a JWT valid for over 10 minutes
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, rsa.generate_private_key(65537, 2048).public_key(), algorithms=["RS256"],
                   options={"verify_exp": False, "verify_iat": False})


def test_jwt_is_reused_then_renewed_before_it_expires(rsa_key):
    now = [NOW]
    signer = AppJwt("1", load_private_key(pem(rsa_key)), clock=lambda: now[0])
    first = signer.token()
    now[0] += 400
    assert signer.token() == first
    now[0] += 100  # within a minute of exp: a server a little ahead must still accept it
    renewed = signer.token()
    assert renewed != first
    assert jwt.decode(renewed, options={"verify_signature": False})["iat"] == int(now[0]) - 60


KEY_CASES = [
    ("empty", "", "is empty"),
    ("not-pem", "MIIEowIBAAKCAQEAsecretish", "not a PEM private key"),
    ("truncated", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", "not a PEM"),
]


@pytest.mark.parametrize("text,message", [c[1:] for c in KEY_CASES], ids=[c[0] for c in KEY_CASES])
def test_malformed_key_names_the_setting_and_never_shows_the_key(text, message):
    with pytest.raises(ConfigError) as caught:
        load_private_key(text)
    assert "GITHUB_PRIVATE_KEY" in str(caught.value)
    assert message in str(caught.value)
    assert "MIIE" not in str(caught.value)
    assert "secretish" not in str(caught.value)


def test_non_rsa_key_is_refused():
    with pytest.raises(ConfigError, match="not an RSA key"):
        load_private_key(pem(ec.generate_private_key(ec.SECP256R1())))


class RecordingExchange:
    """Answers POST /app/installations/{id}/access_tokens as GitHub does, validating both sides."""

    def __init__(self, lifetime: timedelta = timedelta(hours=1)) -> None:
        self.calls: list[tuple[int, str, dict]] = []
        self.lifetime = lifetime
        self.now = datetime(2027, 1, 15, 12, 0, tzinfo=timezone.utc)

    def create_installation_token(self, installation_id, app_jwt, body):
        path = f"/app/installations/{installation_id}/access_tokens"
        openapi.validate_request("POST", path, body)
        self.calls.append((installation_id, app_jwt, body))
        response = {
            "token": f"ghs_{len(self.calls):036d}",
            "expires_at": (self.now + self.lifetime).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": body["permissions"],
            "repository_selection": "selected" if body.get("repositories") else "all",
        }
        openapi.validate_response("POST", path, 201, response)
        return response


@pytest.fixture
def tokens(rsa_key):
    exchange = RecordingExchange()
    clock = [exchange.now]
    store = InstallationTokens(AppJwt("42", load_private_key(pem(rsa_key))), exchange,
                               clock=lambda: clock[0])
    return store, exchange, clock


def test_token_is_cached_until_five_minutes_before_expiry(tokens):
    store, exchange, clock = tokens
    first = store.token(7, "monitor", ["octo/widgets"])
    clock[0] += timedelta(minutes=54)
    assert store.token(7, "monitor", ["octo/widgets"]) is first
    clock[0] += timedelta(minutes=1, seconds=1)
    assert store.token(7, "monitor", ["octo/widgets"]).token != first.token
    assert len(exchange.calls) == 2


def test_tokens_are_scoped_to_the_agent_and_its_repositories(tokens):
    store, exchange, _ = tokens
    store.token(7, "monitor", ["octo/widgets"])
    store.token(7, "code", ["octo/widgets", "octo/gadgets"])
    store.token(8, "monitor", ["octo/widgets"])
    bodies = [(installation, body) for installation, _, body in exchange.calls]
    assert bodies == [
        (7, {"permissions": {"issues": "write"}, "repositories": ["widgets"]}),
        (7, {"permissions": dict(permissions.AGENT_PERMISSIONS["code"]),
             "repositories": ["gadgets", "widgets"]}),
        (8, {"permissions": {"issues": "write"}, "repositories": ["widgets"]}),
    ]
    assert "ghs_" not in repr(store.token(7, "monitor", ["octo/widgets"]))


def test_unknown_agent_gets_no_token(tokens):
    store, exchange, _ = tokens
    with pytest.raises(KeyError, match="no GitHub permissions declared"):
        store.token(7, "intruder")
    assert exchange.calls == []


def test_app_manifest_asks_for_exactly_what_the_agents_use():
    manifest = yaml.safe_load(open("app.yml"))
    assert manifest["default_permissions"] == permissions.app_permissions()
    assert sorted(manifest["default_events"]) == sorted(permissions.APP_EVENTS)
    assert "workflows" not in manifest["default_permissions"]


def test_every_declared_permission_is_one_github_grants_to_tokens():
    schema = openapi.spec()["components"]["schemas"]["app-permissions"]["properties"]
    for agent, granted in permissions.AGENT_PERMISSIONS.items():
        for name, level in granted.items():
            assert name in schema, (agent, name)
            assert level in schema[name]["enum"], (agent, name, level)
