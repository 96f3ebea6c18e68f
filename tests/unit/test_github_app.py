"""GitHubApp composed over HTTP: token exchange, installation lookup, scoped clients."""

from __future__ import annotations

import json

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.github.app import GitHubApp
from tests.support import openapi
from tests.support.replay import make_response

API = "https://api.github.com"


class FakeGitHubApi(requests.adapters.BaseAdapter):
    def __init__(self, public_key):
        super().__init__()
        self.public_key = public_key
        self.log = []

    def send(self, request, **kwargs):
        path = request.path_url
        body = json.loads(request.body) if request.body else None
        openapi.validate_request(request.method, path, body)
        credential = request.headers["Authorization"].removeprefix("Bearer ")
        self.log.append((request.method, path, credential[:4]))
        if path.startswith("/app/") or path.endswith("/installation"):
            jwt.decode(credential, self.public_key, algorithms=["RS256"])  # App endpoints need the JWT
        if path == "/repos/octo/widgets/installation":
            status, payload = 200, installation()
        elif path == "/app/installations/77/access_tokens":
            status, payload = 201, {"token": "ghs_" + "t" * 36, "expires_at": "2099-01-01T00:00:00Z",
                                    "permissions": body["permissions"]}
        else:
            assert credential == "ghs_" + "t" * 36, "repository endpoints take the installation token"
            status, payload = 200, []
        if status == 200 and path.endswith("/installation"):
            openapi.validate_response(request.method, path, status, payload)
        return make_response(request, status, {"Content-Type": "application/json"}, payload)

    def close(self):
        return None


def installation() -> dict:
    account = {"login": "octo", "id": 1, "node_id": "x", "avatar_url": "https://a", "gravatar_id": "",
               "url": "https://a", "html_url": "https://a", "followers_url": "https://a",
               "following_url": "https://a", "gists_url": "https://a", "starred_url": "https://a",
               "subscriptions_url": "https://a", "organizations_url": "https://a", "repos_url": "https://a",
               "events_url": "https://a", "received_events_url": "https://a", "type": "Organization",
               "site_admin": False}
    return {"id": 77, "account": account, "repository_selection": "selected",
            "access_tokens_url": "https://a", "repositories_url": "https://a", "html_url": "https://a",
            "app_id": 1, "target_id": 1, "target_type": "Organization",
            "permissions": {"issues": "write"}, "events": ["issues"], "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "single_file_name": None, "app_slug": "agent-ops",
            "suspended_by": None, "suspended_at": None}


def test_agent_client_finds_the_installation_and_uses_a_scoped_token():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    fake = FakeGitHubApi(key.public_key())

    def session():
        http = requests.Session()
        http.mount(API, fake)
        return http

    app = GitHubApp(API, "1", lambda: pem, session_factory=session)
    installation_id = app.installation_for("octo/widgets")
    assert installation_id == 77
    assert app.installation_for("octo/widgets") == 77  # looked up once
    monitor = app.client_for("monitor", installation_id, ["octo/widgets"])
    monitor.request("GET", "/repos/octo/widgets/issues")
    monitor.request("GET", "/repos/octo/widgets/issues")  # the token is cached
    assert [(method, path) for method, path, _ in fake.log] == [
        ("GET", "/repos/octo/widgets/installation"),
        ("POST", "/app/installations/77/access_tokens"),
        ("GET", "/repos/octo/widgets/issues"),
        ("GET", "/repos/octo/widgets/issues"),
    ]
