"""A small HTTP client for the App Engine sandbox: its control API and the Admin API methods tests need."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import requests

from sandbox.appengine.server import DEFAULT_APP


class AppEngineApiError(Exception):
    """A non-2xx answer from the sandbox, or a finished Operation that carries an error."""

    def __init__(self, what: str, code: int, status: str, message: str) -> None:
        super().__init__(f"{what}: {code} {status}: {message}")
        self.code = code
        self.status = status
        self.message = message


class AppEngineControl:
    """Drive a running sandbox at `base_url` (for example `http://127.0.0.1:8090`)."""

    def __init__(self, base_url: str, app: str = DEFAULT_APP, token: str = "sandbox-token",
                 timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        self.token = token
        self.timeout = timeout
        self._session = session or requests.Session()

    def close(self) -> None:
        self._session.close()

    # Raw access

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                token: str | None = "", headers: dict[str, str] | None = None) -> requests.Response:
        """One request to `path` (relative to the base URL), answered as is; `token=None` sends no auth."""
        sent = dict(headers or {})
        bearer = self.token if token == "" else token
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        return self._session.request(method, f"{self.base_url}/{path.lstrip('/')}", params=params, json=json,
                                     headers=sent, timeout=self.timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise AppEngineApiError(f"{method} {path}", response.status_code, error.get("status", ""),
                                    error.get("message", response.text))
        return body

    # Sandbox control

    def state(self) -> dict[str, Any]:
        return self._call("GET", "_sandbox/state")

    def errors(self) -> list[str]:
        return self._call("GET", "_sandbox/errors")["errors"]

    def reset(self) -> None:
        self._call("POST", "_sandbox/reset")

    def set_clock(self, now: datetime | str | None) -> dict[str, Any]:
        """Stop the sandbox clock at `now` (an aware datetime or RFC 3339 text), or None for real time.

        The clock buckets the Monitoring response counters and stamps Operations; returns
        `{"now": ..., "frozen": ...}`.
        """
        if isinstance(now, datetime):
            if now.tzinfo is None:
                raise ValueError("set_clock needs a timezone-aware datetime")
            now = now.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        return self._call("POST", "_sandbox/clock", json={"now": now})

    def clock(self) -> dict[str, Any]:
        return self._call("GET", "_sandbox/clock")

    def router_url(self, service: str) -> str:
        return self._call("GET", f"_sandbox/services/{service}")["router_url"]

    def set_faults(self, service: str, version: str, *, unhealthy: bool | None = None,
                   latency_ms: int | None = None, error_rate: float | None = None) -> dict[str, Any]:
        """Set the given faults on one version (others stay); returns all of its faults."""
        faults = {name: value for name, value in
                  (("unhealthy", unhealthy), ("latency_ms", latency_ms), ("error_rate", error_rate))
                  if value is not None}
        path = f"{self._version_path(service, version, '_sandbox')}/faults"
        return self._call("POST", path, json=faults)["faults"]

    def clear_faults(self, service: str, version: str) -> None:
        self._call("DELETE", f"{self._version_path(service, version, '_sandbox')}/faults")

    # Admin API v1

    def _version_path(self, service: str, version: str, prefix: str = "v1") -> str:
        return f"{prefix}/apps/{self.app}/services/{service}/versions/{version}"

    def create_version(self, service: str, version: dict[str, Any]) -> dict[str, Any]:
        """apps.services.versions.create; returns the Operation."""
        return self._call("POST", f"v1/apps/{self.app}/services/{service}/versions", json=version)

    def get_version(self, service: str, version: str, view: str | None = None) -> dict[str, Any]:
        params = {"view": view} if view else None
        return self._call("GET", self._version_path(service, version), params=params)

    def list_versions(self, service: str, page_size: int | None = None,
                      page_token: str | None = None) -> dict[str, Any]:
        params = {key: value for key, value in (("pageSize", page_size), ("pageToken", page_token)) if value}
        return self._call("GET", f"v1/apps/{self.app}/services/{service}/versions", params=params)

    def delete_version(self, service: str, version: str) -> dict[str, Any]:
        """apps.services.versions.delete; returns the Operation."""
        return self._call("DELETE", self._version_path(service, version))

    def get_service(self, service: str) -> dict[str, Any]:
        return self._call("GET", f"v1/apps/{self.app}/services/{service}")

    def list_services(self, page_size: int | None = None, page_token: str | None = None) -> dict[str, Any]:
        params = {key: value for key, value in (("pageSize", page_size), ("pageToken", page_token)) if value}
        return self._call("GET", f"v1/apps/{self.app}/services", params=params)

    def set_split(self, service: str, allocations: dict[str, float], shard_by: str | None = "RANDOM",
                  update_mask: str = "split") -> dict[str, Any]:
        """apps.services.patch of the traffic split; returns the Operation."""
        split: dict[str, Any] = {"allocations": allocations}
        if shard_by is not None:
            split["shardBy"] = shard_by
        return self._call("PATCH", f"v1/apps/{self.app}/services/{service}",
                          params={"updateMask": update_mask}, json={"split": split})

    def get_application(self) -> dict[str, Any]:
        """apps.get."""
        return self._call("GET", f"v1/apps/{self.app}")

    def list_time_series(self, params: dict[str, Any]) -> dict[str, Any]:
        """Cloud Monitoring's projects.timeSeries.list (the project is the app id), with raw parameters."""
        return self._call("GET", f"v3/projects/{self.app}/timeSeries", params=params)

    def get_operation(self, name: str) -> dict[str, Any]:
        """apps.operations.get, by the Operation's name (`apps/{app}/operations/{id}`)."""
        return self._call("GET", f"v1/{name}")

    def wait(self, operation: dict[str, Any], timeout: float = 10.0,
             interval: float = 0.05) -> dict[str, Any]:
        """Poll an Operation until it is done and return it; raise if it failed or is not done in time."""
        deadline = time.monotonic() + timeout
        current = operation
        while not current.get("done"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"operation {operation['name']} is not done after {timeout} s")
            time.sleep(interval)
            current = self.get_operation(operation["name"])
        if "error" in current:
            raise AppEngineApiError(f"operation {operation['name']}", current["error"].get("code", 0), "",
                                    current["error"].get("message", ""))
        return current
