"""JSON calls to Google's REST APIs over `requests`, with Google's errors mapped onto the project's.

The deploy and monitor agents call three small surfaces (App Engine Admin, Cloud Build, Cloud
Monitoring); a thin client is easier to run against the sandbox and to reason about than the
discovery-based client library. Mapping:
- a connection error, a timeout, 429 and 5xx: `GoogleUnavailable` (a RetryableError: Pub/Sub
  redelivers and the step runs again; every step that calls Google is idempotent);
- 404: `NotFound`; 409: `AlreadyExists` (but 409 ABORTED, a lost race, is retryable); any other
  4xx: `GoogleApiError`. All are PermanentErrors
  carrying Google's own message (`error.message`) and status (`error.status`).
The bearer token comes from a token source per request and is never logged or put in a message.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from shared.errors import PermanentError, RetryableError
from shared.google_auth import TokenSource
from shared.log import redact

logger = logging.getLogger(__name__)

USER_AGENT = "agent-ops/0.1 (GitHub App backend)"
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_MESSAGE_CHARS = 500


class GoogleApiError(PermanentError):
    """A 4xx from a Google API: the request is wrong or not allowed, and asking again will not help."""

    def __init__(self, where: str, code: int, status: str, message: str) -> None:
        super().__init__(f"{where}: {code} {status or 'error'}: {message}")
        self.code = code
        self.status = status
        self.message = message


class NotFound(GoogleApiError):
    """404: the resource does not exist (or no longer does)."""


class AlreadyExists(GoogleApiError):
    """409: the resource exists already, e.g. a version id that was created before."""


class GoogleUnavailable(RetryableError):
    """The API could not be reached, was too slow, rate-limited us or failed on its side."""

    def __init__(self, where: str, message: str, code: int = 0) -> None:
        super().__init__(f"{where}: {message}")
        self.code = code


def is_loopback(url: str) -> bool:
    """Whether `url` points at this machine (the local sandboxes listen on 127.0.0.1)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_fields(response: requests.Response) -> tuple[str, str]:
    """(status, message) from Google's error body `{"error": {"code", "message", "status"}}`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("status", "")), str(error.get("message", ""))[:MAX_MESSAGE_CHARS]
    return "", response.text[:MAX_MESSAGE_CHARS].strip() or response.reason or ""


class GoogleRestClient:
    """Authorized JSON requests to one API's base URL (like `https://appengine.googleapis.com`)."""

    def __init__(self, base_url: str, token_source: TokenSource, session: requests.Session | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, api: str = "Google API") -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"{api}: the base URL must be http(s), got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api = api
        self.timeout = timeout
        self._token_source = token_source
        self._session = session or requests.Session()

    @property
    def session(self) -> requests.Session:
        return self._session

    def request(self, method: str, path: str, *,
                params: Mapping[str, Any] | list[tuple[str, Any]] | None = None, body: Any = None,
                authorized: bool = True) -> dict[str, Any]:
        """One call; the decoded JSON body (an empty dict for an empty one), or a mapped error.

        `path` is relative to the base URL; `params` may be a list of pairs to repeat a parameter.
        """
        where = f"{self.api} {method} /{path.lstrip('/')}"
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if authorized:
            headers["Authorization"] = f"Bearer {self._token_source()}"
        try:
            response = self._session.request(method, f"{self.base_url}/{path.lstrip('/')}", params=params,
                                             json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise GoogleUnavailable(where, f"no answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            # The exception text names the URL and the cause, never the headers.
            raise GoogleUnavailable(where, f"{type(exc).__name__}: {redact(str(exc))[:MAX_MESSAGE_CHARS]}") \
                from None
        logger.debug("google api call", extra={"api": self.api, "method": method, "path": path,
                                               "status_code": response.status_code})
        code = response.status_code
        if 200 <= code < 300:
            if not response.content:
                return {}
            try:
                decoded = response.json()
            except ValueError:
                raise GoogleUnavailable(where, f"answered {code} with a body that is not JSON",
                                        code) from None
            if not isinstance(decoded, dict):
                raise GoogleUnavailable(where, f"answered {code} with JSON that is not an object", code)
            return decoded
        status, message = _error_fields(response)
        message = redact(message)
        if code == 429 or code >= 500:
            raise GoogleUnavailable(where, f"{code} {status or 'error'}: {message}", code)
        if code == 404:
            raise NotFound(where, code, status, message)
        if code == 409 and status == "ABORTED":  # a concurrent change won: the next attempt may not
            raise GoogleUnavailable(where, f"{code} {status}: {message}", code)
        if code == 409:
            raise AlreadyExists(where, code, status, message)
        raise GoogleApiError(where, code, status, message)
