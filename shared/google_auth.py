"""Access tokens for Google's REST APIs, as zero-argument callables the API adapters call per request.

The adapters call Google with `requests` rather than the discovery-based client library, so they only
need a bearer token: `google_token_source()` gives the function's own identity (Application Default
Credentials: the service account on Cloud Functions, `gcloud auth application-default login` on a
laptop), refreshed when it expires; `static_token_source()` gives a fixed token for the sandbox, which
accepts any bearer token. No token is ever logged or put in an error message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from shared.errors import PermanentError, RetryableError

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

TokenSource = Callable[[], str]


def static_token_source(token: str) -> TokenSource:
    """Always the same token: for the sandbox, or a token minted elsewhere for a short job."""
    if not token:
        raise ValueError("a static token source needs a non-empty token")
    return lambda: token


class GoogleTokenSource:
    """Application Default Credentials, loaded on first use and refreshed whenever they are not valid.

    google-auth counts a token as expired a little before it really does, so a token handed out here
    does not expire in flight. Refreshes are serialised: concurrent calls share one refresh.
    """

    def __init__(self, scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,), credentials: Any = None,
                 request_factory: Callable[[], Any] | None = None) -> None:
        self._scopes = list(scopes)
        self._credentials = credentials
        self._request_factory = request_factory
        self._lock = threading.Lock()

    def __call__(self) -> str:
        import google.auth
        from google.auth import exceptions

        with self._lock:
            try:
                if self._credentials is None:
                    self._credentials, _ = google.auth.default(scopes=self._scopes)
                if not self._credentials.valid:
                    self._credentials.refresh(self._request())
            except exceptions.DefaultCredentialsError as exc:
                raise PermanentError(f"no Google credentials: {type(exc).__name__}") from None
            except (exceptions.RefreshError, exceptions.TransportError) as exc:
                # The metadata server or the token endpoint did not answer: try again later. The
                # exception text is left out, as it may quote the token endpoint's answer.
                raise RetryableError(f"could not refresh the Google access token: {type(exc).__name__}") \
                    from None
            token = self._credentials.token
        if not token:
            raise RetryableError("the Google credentials gave no access token")
        return str(token)

    def _request(self) -> Any:
        if self._request_factory is not None:
            return self._request_factory()
        from google.auth.transport.requests import Request

        return Request()


def google_token_source(scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,)) -> TokenSource:
    """The function's own identity (Application Default Credentials) with the cloud-platform scope."""
    return GoogleTokenSource(scopes)
