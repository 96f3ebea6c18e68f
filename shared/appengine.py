"""The App Engine Admin API v1 calls the deploy agent makes: versions, traffic splits and operations.

Every method is one REST call (list_versions: one per page), so a release step that fails half-way
can simply run again. Long-running methods (versions.create, versions.delete, services.patch) return
the Operation as a dict; the caller stores its name and polls `get_operation` on a later event,
never by sleeping in a loop. Errors are those of shared.google_rest: RetryableError for
connection problems, timeouts, 429 and 5xx; PermanentError (with Google's message) for other 4xx,
`AlreadyExists` on a 409 and `NotFound` on a 404 where a missing resource is not an answer in itself.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import requests

from shared.google_auth import TokenSource, google_token_source, static_token_source
from shared.google_rest import (
    DEFAULT_TIMEOUT_SECONDS,
    AlreadyExists,
    GoogleApiError,
    GoogleRestClient,
    GoogleUnavailable,
    NotFound,
    is_loopback,
)

__all__ = [
    "AlreadyExists", "AppEngineAdmin", "GoogleApiError", "GoogleUnavailable", "NotFound",
    "google_token_source", "static_token_source",
]

DEFAULT_SERVICE = "default"
# Decimal places App Engine accepts in a split's allocations: 2 when sharding by IP, 3 otherwise.
SPLIT_DECIMALS = {"IP": 2}
DEFAULT_SPLIT_DECIMALS = 3


def normalize_allocations(allocations: dict[str, float], shard_by: str = "RANDOM") -> dict[str, float]:
    """Allocations App Engine accepts: shares rounded to its precision, zero shares dropped, sum 1.

    Rounding can leave the total a step off 1 (a third each, say); the difference goes to the
    largest share, so the version meant to carry most of the traffic does.
    """
    decimals = SPLIT_DECIMALS.get(shard_by, DEFAULT_SPLIT_DECIMALS)
    step = Decimal(1).scaleb(-decimals)
    shares: dict[str, Decimal] = {}
    for version, share in allocations.items():
        if share < 0 or share > 1:
            raise ValueError(f"the share of version {version} must be in [0, 1], got {share}")
        rounded = Decimal(str(share)).quantize(step, rounding=ROUND_HALF_EVEN)
        if rounded > 0:
            shares[version] = rounded
    if not shares:
        raise ValueError(f"a split must give traffic to at least one version, got {allocations}")
    largest = max(sorted(shares), key=lambda version: shares[version])
    shares[largest] += Decimal(1) - sum(shares.values())
    if shares[largest] <= 0:
        raise ValueError(f"the shares {allocations} do not add up to a split")
    return {version: float(share) for version, share in sorted(shares.items())}


class AppEngineAdmin:
    """The Admin API of one App Engine application (`app_id`, which is the project id)."""

    def __init__(self, base_url: str, app_id: str, token_source: TokenSource,
                 session: requests.Session | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not app_id:
            raise ValueError("an App Engine app id is required")
        self.app_id = app_id
        self._client = GoogleRestClient(base_url, token_source, session=session, timeout=timeout,
                                        api="App Engine Admin API")
        self._default_hostname = ""

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def _app_path(self, *parts: str) -> str:
        return "/".join(["v1", "apps", self.app_id, *parts])

    # Application and services

    def get_application(self) -> dict[str, Any]:
        """apps.get: the Application, with its `defaultHostname`."""
        return self._client.request("GET", self._app_path())

    def get_service(self, service: str) -> dict[str, Any]:
        """apps.services.get: the Service with its traffic `split`; NotFound when it does not exist."""
        return self._client.request("GET", self._app_path("services", service))

    def split(self, service: str) -> dict[str, float]:
        """Version id => share of the service's traffic; empty when the service does not exist yet."""
        try:
            service_resource = self.get_service(service)
        except NotFound:
            return {}
        allocations = service_resource.get("split", {}).get("allocations", {})
        return {version: float(share) for version, share in allocations.items()}

    def set_split(self, service: str, allocations: dict[str, float],
                  shard_by: str = "RANDOM") -> dict[str, Any]:
        """apps.services.patch with updateMask=split: the Operation that moves the traffic.

        Random sharding, so a canary's share of requests is its share of traffic whoever sends them
        (a monitor probing from one address still reaches every version). A rollback is the same
        call with `{previous: 1.0}`, one request.
        """
        body = {"split": {"allocations": normalize_allocations(allocations, shard_by), "shardBy": shard_by}}
        return self._client.request("PATCH", self._app_path("services", service),
                                    params={"updateMask": "split"}, body=body)

    # Versions

    def list_versions(self, service: str, view: str = "BASIC",
                      page_size: int | None = None) -> list[dict[str, Any]]:
        """apps.services.versions.list, every page; empty when the service does not exist yet."""
        versions: list[dict[str, Any]] = []
        token = ""
        while True:
            params: dict[str, Any] = {"view": view}
            if page_size:
                params["pageSize"] = page_size
            if token:
                params["pageToken"] = token
            try:
                page = self._client.request("GET", self._app_path("services", service, "versions"),
                                            params=params)
            except NotFound:
                if versions:
                    raise
                return []
            versions += page.get("versions", [])
            token = page.get("nextPageToken", "")
            if not token:
                return versions

    def get_version(self, service: str, version: str, view: str = "FULL") -> dict[str, Any] | None:
        """apps.services.versions.get (FULL view by default, which has `versionUrl`); None on 404."""
        try:
            return self._client.request("GET", self._app_path("services", service, "versions", version),
                                        params={"view": view})
        except NotFound:
            return None

    def create_version(self, service: str, body: dict[str, Any]) -> dict[str, Any]:
        """apps.services.versions.create: the Operation; AlreadyExists when the version id is taken.

        A version created this way gets no traffic of an existing service (no promotion); the first
        version of a new service gets all of it, as App Engine does.
        """
        return self._client.request("POST", self._app_path("services", service, "versions"), body=body)

    def delete_version(self, service: str, version: str) -> dict[str, Any] | None:
        """apps.services.versions.delete: the Operation, or None when the version is already gone.

        App Engine refuses (a PermanentError) to delete a version that still has traffic.
        """
        try:
            return self._client.request("DELETE", self._app_path("services", service, "versions", version))
        except NotFound:
            return None

    def version_url(self, service: str, version: str) -> str:
        """The version's own URL (`versionUrl`), which serves it whatever the split says."""
        found = self.get_version(service, version, view="FULL")
        url = (found or {}).get("versionUrl", "")
        if not url:
            raise NotFound(f"App Engine Admin API versions.get {service}/{version}", 404, "NOT_FOUND",
                           "the version does not exist or has no versionUrl yet")
        return url

    # Operations

    def get_operation(self, name: str) -> dict[str, Any]:
        """apps.operations.get, by the Operation's `name` (`apps/{app}/operations/{id}`)."""
        prefix = f"apps/{self.app_id}/operations/"
        if not name.startswith(prefix) or "/" in name[len(prefix):] or len(name) == len(prefix):
            raise ValueError(f"not an operation of app {self.app_id}: {name!r}")
        return self._client.request("GET", f"v1/{name}")

    @staticmethod
    def operation_done(operation: dict[str, Any]) -> tuple[bool, str]:
        """(done, error): error is "" for a success, else Google's code and message for a failure.

        `done` is absent from a running Operation (proto3 JSON leaves false out).
        """
        if not operation.get("done"):
            return False, ""
        error = operation.get("error")
        if not error:
            return True, ""
        message = str(error.get("message") or "the operation failed")
        code = error.get("code")
        return True, f"{message} (code {code})" if code is not None else message

    # URLs

    def service_url(self, service: str) -> str:
        """The URL that serves the service by its traffic split.

        In production: `https://{defaultHostname}` for the default service and
        `https://{service}-dot-{defaultHostname}` for others, with the hostname from apps.get (read
        once). The one sandbox hook: when the Admin API's base URL is a loopback address (the local
        App Engine sandbox, where a service is a router on its own port), the URL comes from the
        sandbox control API, `GET /_sandbox/services/{service}` (`router_url`).
        """
        if is_loopback(self.base_url):
            answer = self._client.request("GET", f"_sandbox/services/{service}", authorized=False)
            url = answer.get("router_url", "")
            if not url:
                raise GoogleUnavailable(f"App Engine sandbox /_sandbox/services/{service}", "no router_url")
            return url
        if not self._default_hostname:
            hostname = self.get_application().get("defaultHostname", "")
            if not hostname:
                raise GoogleApiError("App Engine Admin API apps.get", 200, "",
                                     f"app {self.app_id} has no defaultHostname")
            self._default_hostname = hostname
        if service == DEFAULT_SERVICE:
            return f"https://{self._default_hostname}"
        return f"https://{service}-dot-{self._default_hostname}"
