"""The GitHub App, composed: its key, its JWT, installation tokens and REST clients."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from shared.github.auth import AppJwt, InstallationTokens, load_private_key
from shared.github.rest import ConditionalCache, RestClient


class RestTokenExchange:
    """POST /app/installations/{id}/access_tokens through the App-authenticated client."""

    def __init__(self, app_client: RestClient) -> None:
        self._client = app_client

    def create_installation_token(
        self, installation_id: int, app_jwt: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        # Asking for a token twice is harmless, so a lost response may be retried.
        return self._client.request("POST", f"/app/installations/{installation_id}/access_tokens",
                                    json_body=body, idempotent=True)


class GitHubApp:
    def __init__(
        self,
        api_url: str,
        app_id: str,
        private_key_pem: Callable[[], str],
        session_factory: Callable[[], Any] | None = None,
        cache: ConditionalCache | None = None,
        key_setting: str = "GITHUB_PRIVATE_KEY",
    ) -> None:
        self._api_url = api_url
        self._app_id = app_id
        self._pem = private_key_pem
        self._session_factory = session_factory
        self._cache = cache
        self._key_setting = key_setting
        self._lock = threading.RLock()  # tokens() builds the JWT signer under the same lock
        self._jwt: AppJwt | None = None
        self._tokens: InstallationTokens | None = None
        self._installations: dict[str, int] = {}
        self._identity: tuple[int, str] | None = None

    def _session(self) -> Any:
        return self._session_factory() if self._session_factory else None

    def jwt(self) -> AppJwt:
        with self._lock:
            if self._jwt is None:
                self._jwt = AppJwt(self._app_id, load_private_key(self._pem(), self._key_setting))
            return self._jwt

    def app_client(self) -> RestClient:
        """A client authenticated as the App itself (JWT), for /app/* endpoints."""
        return RestClient(self._api_url, token=self.jwt().token, session=self._session())

    def tokens(self) -> InstallationTokens:
        with self._lock:
            if self._tokens is None:
                self._tokens = InstallationTokens(self.jwt(), RestTokenExchange(self.app_client()))
            return self._tokens

    def identity(self) -> tuple[int, str]:
        """The App's id and the login its comments carry (`<slug>[bot]`), from GET /app, once."""
        with self._lock:
            if self._identity is None:
                app = self.app_client().request("GET", "/app")
                self._identity = (int(app["id"]), f"{app['slug']}[bot]")
            return self._identity

    def installation_for(self, repository: str) -> int:
        """The installation id for owner/name, via GET /repos/{owner}/{repo}/installation."""
        cached = self._installations.get(repository)
        if cached is None:
            found = self.app_client().request("GET", f"/repos/{repository}/installation")
            cached = self._installations[repository] = int(found["id"])
        return cached

    def client_for(self, agent: str, installation_id: int, repositories: Sequence[str] = (),
                   task_id: str = "", audit: Any = None) -> RestClient:
        """A client for one agent, with a token scoped to its permissions and repositories.

        Every write it makes is audited as this agent, for this task.
        """
        tokens = self.tokens()
        return RestClient(
            self._api_url,
            token=lambda: tokens.token(installation_id, agent, repositories).token,
            session=self._session(),
            cache=self._cache,
            cache_scope=f"installation/{installation_id}",
            audit=audit,
            actor=agent,
            reason=task_id,
        )
