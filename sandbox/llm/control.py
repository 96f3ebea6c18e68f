"""A small HTTP client for the LLM sandbox's control API (`/_sandbox/`), for tests and local tools."""

from __future__ import annotations

from typing import Any

import requests


class LlmSandboxError(Exception):
    """A non-2xx answer from the sandbox's control API."""

    def __init__(self, what: str, status: int, message: str) -> None:
        super().__init__(f"{what}: {status}: {message}")
        self.status = status
        self.message = message


class LlmSandboxControl:
    """Drive a running LLM sandbox at `base_url` (for example `http://127.0.0.1:8072`)."""

    def __init__(self, base_url: str, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._session.request(method, f"{self.base_url}/_sandbox/{path}", json=json,
                                         timeout=self.timeout)
        body = response.json() if response.content else None
        if response.status_code >= 400:
            message = body.get("error", response.text) if isinstance(body, dict) else response.text
            raise LlmSandboxError(f"{method} /_sandbox/{path}", response.status_code, str(message))
        return body

    def script_reply(self, text: str, stop: str = "end_turn") -> int:
        """Queue the text the next API request is answered with (`stop`: end_turn or max_tokens).

        Returns how many replies are queued.
        """
        return self._call("POST", "replies", {"text": text, "stop": stop})["queued"]

    def replies(self) -> list[dict[str, str]]:
        return self._call("GET", "replies")["replies"]

    def clear_replies(self) -> None:
        self._call("DELETE", "replies")

    def fault(self, status: int, count: int = 1, retry_after: float | None = None) -> list[dict[str, Any]]:
        """Answer the next `count` well-formed requests with `status` (429, 500, 503 or 529)."""
        body: dict[str, Any] = {"status": status, "count": count}
        if retry_after is not None:
            body["retry_after"] = retry_after
        return self._call("POST", "faults", body)["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def requests(self) -> list[dict[str, Any]]:
        """Every API request received, oldest first: provider, method, path, headers (no key), body."""
        return self._call("GET", "requests")["requests"]

    def clear(self) -> None:
        """Forget the recorded requests (replies and faults stay queued; `reset` clears everything)."""
        self._call("DELETE", "requests")

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def reset(self) -> None:
        self._call("POST", "reset")
