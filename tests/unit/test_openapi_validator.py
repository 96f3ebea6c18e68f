"""The spec validator itself must reject what GitHub would, or it proves nothing."""

from __future__ import annotations

import pytest

from tests.support import openapi

TOKEN_PATH = "/app/installations/7/access_tokens"
GOOD_RESPONSE = {"token": "ghs_x", "expires_at": "2027-01-01T00:00:00Z"}

REJECTED = [
    ("unknown-operation", lambda: openapi.validate_request("POST", "/app/hook/nope", {})),
    ("wrong-method", lambda: openapi.validate_request("DELETE", TOKEN_PATH, None)),
    ("permission-level-not-granted", lambda: openapi.validate_request(
        "POST", TOKEN_PATH, {"permissions": {"issues": "admin"}})),
    ("repositories-not-a-list", lambda: openapi.validate_request(
        "POST", TOKEN_PATH, {"repositories": "widgets"})),
    ("response-without-token", lambda: openapi.validate_response(
        "POST", TOKEN_PATH, 201, {"expires_at": "2027-01-01T00:00:00Z"})),
    ("status-never-answered", lambda: openapi.validate_response("POST", TOKEN_PATH, 200, GOOD_RESPONSE)),
    ("delivery-list-not-an-array", lambda: openapi.validate_response(
        "GET", "/app/hook/deliveries", 200, {"id": 1})),
]


@pytest.mark.parametrize("call", [c[1] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_validator_rejects_what_github_would(call):
    with pytest.raises(AssertionError):
        call()


def test_validator_accepts_valid_traffic():
    openapi.validate_request("POST", TOKEN_PATH, {"permissions": {"issues": "write"},
                                                  "repositories": ["widgets"]})
    openapi.validate_response("POST", TOKEN_PATH, 201, GOOD_RESPONSE)
    openapi.validate_request("POST", "/app/hook/deliveries/12345/attempts", None)
    openapi.validate_response("GET", "/app/hook/deliveries?per_page=100&cursor=abc", 200, [])
