"""The JSON formatter: one line per record, context bound, secrets redacted."""

from __future__ import annotations

import json
import logging

import pytest

from shared.log import JsonFormatter, bind, redact


def record(message: str, **extra) -> logging.LogRecord:
    entry = logging.LogRecord("agentops.test", logging.WARNING, __file__, 1, message, None, None)
    entry.__dict__.update(extra)
    return entry


SECRETS = [
    ("installation-token", "token ghs_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("personal-token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("fine-grained-pat", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("jwt", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl"),
    ("bearer", "Authorization: Bearer abcdef0123456789"),
    ("pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"),
    ("signature", "sha256=" + "a" * 64),
]


@pytest.mark.parametrize("text", [s[1] for s in SECRETS], ids=[s[0] for s in SECRETS])
def test_secrets_are_redacted_in_messages_and_fields(text):
    line = JsonFormatter().format(record(f"calling with {text}", detail=text,
                                         nested={"headers": {"x": text}}))
    assert text not in line
    assert "[REDACTED]" in line
    json.loads(line)


def test_sensitive_field_names_are_redacted_whatever_their_value():
    line = JsonFormatter().format(record("x", webhook_secret="hunter2", installation_token="abc"))
    entry = json.loads(line)
    assert entry["webhook_secret"] == "[REDACTED]"
    assert entry["installation_token"] == "[REDACTED]"


def test_bound_context_is_added_and_removed():
    with bind(delivery_id="d-1", task_id=""):
        inside = json.loads(JsonFormatter().format(record("x")))
    outside = json.loads(JsonFormatter().format(record("x")))
    assert inside["delivery_id"] == "d-1"
    assert "task_id" not in inside
    assert "delivery_id" not in outside
    assert inside["severity"] == "WARNING"


def test_plain_text_is_untouched():
    assert redact("delivery d-1 published to github-events") == "delivery d-1 published to github-events"
