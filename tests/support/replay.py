"""Replay recorded GitHub traffic (nock format) through a real requests.Session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from tests.support import openapi

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "github" / "recorded"
# Real GitHub answers these, but its description does not document them: the targets of
# repository redirects (/repositories/{id}) and the legacy list of all refs (/git/refs/).
def undocumented(path: str) -> bool:
    return path.startswith("/repositories/") or path.endswith("/git/refs/")


def make_response(request: requests.PreparedRequest, status: int, headers: dict[str, Any],
                  body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict({k: str(v) for k, v in headers.items()})
    if body is None or body == "":
        response._content = b""
    elif isinstance(body, str | bytes):
        response._content = body.encode() if isinstance(body, str) else body
    else:
        response._content = json.dumps(body).encode()
    response.request = request
    response.url = request.url
    response.encoding = "utf-8"
    return response


class ReplayAdapter(BaseAdapter):
    """Answers each request with the next recorded interaction; fails on anything unexpected."""

    def __init__(self, scenario: str) -> None:
        super().__init__()
        self.interactions = json.loads((RECORDED / f"{scenario}.json").read_text())
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert self.interactions, f"unexpected request {request.method} {request.url}"
        expected = self.interactions.pop(0)
        url = urlsplit(request.url)
        path = url.path + (f"?{url.query}" if url.query else "")
        assert (request.method.lower(), path) == (expected["method"], expected["path"]), (
            f"sent {request.method} {path}, recorded {expected['method']} {expected['path']}")
        if expected.get("body"):
            assert json.loads(request.body) == expected["body"]
        if not undocumented(path):
            # What we send must be what GitHub documents. The recorded answers are GitHub's own,
            # from before some fields became required, so they are not held to today's schemas.
            openapi.validate_request(request.method, path, json.loads(request.body) if request.body else None)
        self.sent.append(request)
        return make_response(request, expected["status"], expected["headers"], expected["response"])

    def close(self) -> None:
        return None


def session(scenario: str) -> tuple[requests.Session, ReplayAdapter]:
    adapter = ReplayAdapter(scenario)
    replay = requests.Session()
    replay.mount("https://api.github.com", adapter)
    return replay, adapter
