"""`agentops redeliver` end to end: App JWT over HTTP, the deliveries ledger on Firestore."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared import cli
from shared.bootstrap import Services
from shared.config import Config
from shared.ports import DeliveryRecord
from tests.support.push import serve
from tests.unit import test_redelivery as fixtures

pytestmark = pytest.mark.emulators


def test_redeliver_command_recovers_failed_deliveries_with_progress(env, monkeypatch, capsys):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    now = datetime.now(timezone.utc)
    fake = fixtures.FakeAppHook([
        {**fixtures.item(1, "lost", 0, 503), "delivered_at": (now - timedelta(minutes=20)).isoformat()},
        {**fixtures.item(2, "fine", 0, 200), "delivered_at": (now - timedelta(minutes=10)).isoformat()},
        {**fixtures.item(3, "published-later", 0, 503),
         "delivered_at": (now - timedelta(minutes=5)).isoformat()},
    ])
    seen_tokens = []
    original = fake.handle

    def handle(method, path, query, body, authorization):
        seen_tokens.append(authorization.removeprefix("Bearer "))
        return original(method, path, query, body, authorization)

    fake.handle = handle
    with serve(fake.wsgi) as url:
        fake.base = url
        monkeypatch.setenv("GITHUB_API_URL", url)
        monkeypatch.setenv("GITHUB_APP_ID", "424242")
        monkeypatch.setenv("GITHUB_PRIVATE_KEY", pem)
        services = Services(Config.from_env())
        record = DeliveryRecord("published-later", "issues", "labeled", "o/r", 7, now)
        services.ledger().claim(record, now)
        services.ledger().mark_published("published-later", "m-1", now)

        assert cli.main(["redeliver", "--since", "2h", "--dry-run"]) == 0
        assert fake.redelivered == []
        assert cli.main(["redeliver"]) == 0

    out, err = capsys.readouterr()
    assert fake.redelivered == [1]
    assert "would redeliver 1" in out and "redelivered 1" in out
    assert "[" in err and "1/1" in err  # the progress bar
    claims = jwt.decode(seen_tokens[0], key.public_key(), algorithms=["RS256"])
    assert claims["iss"] == "424242"
    assert pem.splitlines()[1] not in out + err
