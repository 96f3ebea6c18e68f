"""GitHub App authentication: the App's JWT and installation tokens scoped down per agent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from shared.errors import ConfigError
from shared.github import permissions

JWT_BACKDATE = 60  # GitHub's advice: iat 60 s in the past against clock drift
JWT_LIFETIME = 540  # so exp - iat is 10 minutes, GitHub's maximum
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)


def load_private_key(pem: str, setting: str = "GITHUB_PRIVATE_KEY") -> Any:
    """Parse an RSA private key; a bad one fails naming the setting, never showing the key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not pem.strip():
        raise ConfigError(f"{setting} is empty: give the GitHub App's private key (PEM)")
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{setting} is not a PEM private key without a passphrase") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"{setting} is not an RSA key; GitHub Apps sign with RS256")
    return key


class AppJwt:
    """Signs the App's JWT (RS256) and reuses it until a minute before it expires."""

    def __init__(self, app_id: str, private_key: Any, clock: Callable[[], float] = time.time) -> None:
        self._app_id = app_id
        self._key = private_key
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None

    def token(self) -> str:
        import jwt

        now = self._clock()
        with self._lock:
            if self._cached and now < self._cached[1] - 60:
                return self._cached[0]
            issued = int(now) - JWT_BACKDATE
            expires = int(now) + JWT_LIFETIME
            encoded = jwt.encode({"iat": issued, "exp": expires, "iss": self._app_id}, self._key,
                                 algorithm="RS256")
            self._cached = (encoded, float(expires))
            return encoded


@dataclass(frozen=True)
class InstallationToken:
    token: str
    expires_at: datetime
    permissions: dict[str, str]
    repositories: tuple[str, ...]

    def __repr__(self) -> str:  # never show the token itself
        return (f"InstallationToken(expires_at={self.expires_at.isoformat()}, "
                f"permissions={self.permissions}, repositories={self.repositories})")


class TokenExchange(Protocol):
    def create_installation_token(
        self, installation_id: int, app_jwt: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """POST /app/installations/{installation_id}/access_tokens; returns the response body."""


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class InstallationTokens:
    """Installation tokens per (installation, agent, repositories), cached until 5 minutes
    before they expire, each scoped to its agent's permissions and the repositories it works on."""

    def __init__(
        self,
        app_jwt: AppJwt,
        exchange: TokenExchange,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._jwt = app_jwt
        self._exchange = exchange
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, str, tuple[str, ...]], InstallationToken] = {}

    def token(self, installation_id: int, agent: str, repositories: Sequence[str] = ()) -> InstallationToken:
        names = tuple(sorted({repo.split("/")[-1] for repo in repositories}))
        key = (installation_id, agent, names)
        with self._lock:
            cached = self._cache.get(key)
            if cached and self._clock() < cached.expires_at - TOKEN_REFRESH_MARGIN:
                return cached
        body: dict[str, Any] = {"permissions": permissions.for_agent(agent)}
        if names:
            body["repositories"] = list(names)
        response = self._exchange.create_installation_token(installation_id, self._jwt.token(), body)
        token = InstallationToken(
            token=response["token"],
            expires_at=_parse_time(response["expires_at"]),
            permissions=dict(response.get("permissions") or {}),
            repositories=tuple(r["name"] for r in response.get("repositories") or []),
        )
        with self._lock:
            self._cache[key] = token
        return token
