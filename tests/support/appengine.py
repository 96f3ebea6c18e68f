"""What the App Engine sandbox's tests share: a check of every answer against Google's documents."""

from __future__ import annotations

from typing import Any

import jsonschema
import requests

from sandbox.appengine.discovery import Discovery
from sandbox.appengine.server import ERROR_SCHEMA, AppEngineSandbox


class ResponseChecker:
    """A requests response hook: every Admin API and Monitoring answer must match its subset."""

    def __init__(self) -> None:
        self.apis = {"/v1/": Discovery.load(), "/v3/": Discovery.monitoring()}
        self.checked = 0
        self.problems: list[str] = []

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        path = requests.utils.urlparse(response.url).path
        checks = next((api for prefix, api in self.apis.items() if path.startswith(prefix)), None)
        if checks is None:
            return
        self.checked += 1
        body = response.json()
        label = f"{response.request.method} {path} -> {response.status_code}"
        if response.status_code >= 400:
            problems = [e.message for e in jsonschema.Draft202012Validator(ERROR_SCHEMA).iter_errors(body)]
        else:
            found = checks.match(response.request.method, path)
            assert found is not None, label
            method = found[0]
            problems = checks.schema_errors(method.response, body)
            if method.response == "Operation":
                problems += checks.payload_errors(body)
        self.problems += [f"{label}: {problem}" for problem in problems]


def take_errors(sandbox: AppEngineSandbox) -> list[str]:
    """The sandbox's recorded refusals, cleared: for a test that expects some."""
    found, sandbox.errors[:] = list(sandbox.errors), []
    return found
