"""Signature verification, header rules, body parsing and the envelope: pure functions."""

from __future__ import annotations

import json

import pytest

from functions.github_webhook import core
from shared.errors import InvalidInput
from shared.messages import GithubEvent
from tests.support import github

BODY = b'{"action":"opened","number":1}'
SECRET = b"It's a Secret to Everybody"

SIGNATURE_CASES = [
    # (id, body, header, secrets, expected)
    ("valid", BODY, core.sign(BODY, SECRET), [SECRET], True),
    ("github-documented-example", b"Hello, World!",
     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", [SECRET], True),
    ("wrong-secret", BODY, core.sign(BODY, b"other"), [SECRET], False),
    ("previous-secret-during-rotation", BODY, core.sign(BODY, b"old"), [SECRET, b"old"], True),
    ("body-changed-by-one-byte", BODY + b" ", core.sign(BODY, SECRET), [SECRET], False),
    ("empty-secret-never-verifies", BODY, core.sign(BODY, b""), [b""], False),
    ("no-secrets", BODY, core.sign(BODY, SECRET), [], False),
    ("sha1-prefix", BODY, "sha1=" + core.sign(BODY, SECRET)[7:47], [SECRET], False),
    ("missing-prefix", BODY, core.sign(BODY, SECRET)[7:], [SECRET], False),
    ("uppercase-hex", BODY, "sha256=" + core.sign(BODY, SECRET)[7:].upper(), [SECRET], False),
    ("truncated", BODY, core.sign(BODY, SECRET)[:-1], [SECRET], False),
    ("empty-header", BODY, "", [SECRET], False),
]


@pytest.mark.parametrize("body,header,secrets,expected", [c[1:] for c in SIGNATURE_CASES],
                         ids=[c[0] for c in SIGNATURE_CASES])
def test_verify_signature(body, header, secrets, expected):
    assert core.verify_signature(body, header, secrets) is expected


HEADER_CASES = [
    ("complete", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}, None),
    ("no-event", {"X-GitHub-Delivery": "d-1"}, "missing X-GitHub-Event header"),
    ("blank-event", {"X-GitHub-Event": " ", "X-GitHub-Delivery": "d-1"}, "missing X-GitHub-Event header"),
    ("no-delivery", {"X-GitHub-Event": "push"}, "missing X-GitHub-Delivery header"),
    ("slash-in-delivery", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "a/b"},
     "malformed X-GitHub-Delivery header"),
    ("huge-delivery", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "x" * 201},
     "malformed X-GitHub-Delivery header"),
]


@pytest.mark.parametrize("headers,reason", [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES])
def test_check_headers(headers, reason):
    rejection = core.check_headers(headers)
    assert (rejection.reason if rejection else None) == reason
    if rejection:
        assert rejection.status == 400


BODY_CASES = [
    ("json-object", b'{"a": 1}', "application/json", {"a": 1}),
    ("form-payload", b"payload=%7B%22a%22%3A+1%7D", "application/x-www-form-urlencoded", {"a": 1}),
    ("form-without-payload", b"other=1", "application/x-www-form-urlencoded", "no single payload"),
    ("malformed", b'{"a":', "application/json", "malformed JSON"),
    ("array", b"[]", "application/json", "not a JSON object"),
    ("string", b'"hi"', "application/json", "not a JSON object"),
    ("invalid-utf8", b'{"a": "\xff"}', "application/json", "malformed JSON"),
    ("empty", b"", "application/json", "malformed JSON"),
]


@pytest.mark.parametrize("body,content_type,expected", [c[1:] for c in BODY_CASES],
                         ids=[c[0] for c in BODY_CASES])
def test_parse_body(body, content_type, expected):
    parsed = core.parse_body(body, content_type)
    if isinstance(expected, dict):
        payload, text = parsed
        assert payload == expected
        assert json.loads(text) == expected
    else:
        assert isinstance(parsed, core.Rejection)
        assert parsed.status == 400
        assert expected in parsed.reason


def headers(event: str, delivery: str = "d-1", hook: str = "42") -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": hook}


def test_envelope_from_a_pull_request_example():
    body = github.example("pull_request", "opened")
    body["installation"] = {"id": 987654, "node_id": "MDIz"}
    text = json.dumps(body)
    event = core.envelope(headers("pull_request"), body, text, 1_700_000_000_000)
    assert event == GithubEvent(
        delivery_id="d-1", event="pull_request", action="opened",
        repository=body["repository"]["full_name"], installation_id=body["installation"]["id"],
        sender=body["sender"]["login"], hook_id=42, received_at=1_700_000_000_000, payload=text,
    )
    assert event.attributes()["installation_id"] == str(body["installation"]["id"])
    assert GithubEvent.decode(event.encode()) == event


def test_envelope_tolerates_hostile_shapes():
    body = {"action": ["x"], "repository": "not-an-object", "installation": {"id": True},
            "sender": {"login": 5}}
    event = core.envelope(headers("push", hook="abc"), body, json.dumps(body), 0)
    assert (event.action, event.repository, event.installation_id, event.sender, event.hook_id) == (
        "", "", 0, "", 0)
    assert event.attributes() == {"event": "push", "action": "", "delivery_id": "d-1",
                                  "repository": "", "installation_id": ""}


@pytest.mark.parametrize("event,body", github.webhook_examples()[::7],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_sampled_example_makes_a_schema_valid_envelope(event, body):
    envelope = core.envelope(headers(event), body, json.dumps(body), 1)
    assert GithubEvent.decode(envelope.encode()).body() == body


def test_decode_rejects_unknown_fields_and_wrong_types():
    good = json.loads(core.envelope(headers("push"), {}, "{}", 1).encode())
    with pytest.raises(InvalidInput, match="unknown fields"):
        GithubEvent.decode(json.dumps({**good, "extra": 1}).encode())
    with pytest.raises(InvalidInput, match="does not match schema"):
        GithubEvent.decode(json.dumps({**good, "installation_id": "7"}).encode())
