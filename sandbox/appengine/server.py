"""A local App Engine Admin API whose versions really serve.

`AppEngineSandbox` answers the Admin API v1 methods in `appengine-v1-subset.json` on one loopback
port, with paths, parameters and bodies as Google's discovery document defines them. Every request
and every response is validated against that document; a request it forbids is a 400 in Google's
error shape, and each refusal is recorded in `errors`. The same port answers Cloud Monitoring v3's
`projects.timeSeries.list` (`monitoring-v3-subset.json`, project = the app id) for the metric
`appengine.googleapis.com/http/server/response_count`, from per-version, per-minute, per-status
counters of the answers the versions really gave (see monitoring.py).

Long-running methods (`versions.create`, `versions.delete`, `services.patch`) return an Operation
that is done only after `operation_delay` seconds; the change takes effect when it is done. A created
version serves on its own loopback port (its `versionUrl`), and each service has a router on another
port that picks a version per request by the traffic split, so canaries see real traffic.

Behaviour of the real API that the sandbox keeps, so clients learn the right habits:
- the first service of an app must be `default`; a service's first version gets all its traffic;
- a version with a traffic allocation cannot be deleted;
- `services.patch` needs `updateMask` (here only `split` or `split.allocations`), allocations to
  existing serving versions that sum to 1, with at most 2 decimals for `IP` and 3 otherwise;
- `done` is absent from an Operation until it is true (proto3 JSON omits false);
- `versions.get` and `versions.list` default to the BASIC view, which leaves out the FULL-only fields.
Sharding: `RANDOM` and unspecified pick by weighted random choice, `IP` by a fingerprint of the
client address, `COOKIE` by the `GOOGAPPUID` cookie (random without one). The header
`X-Sandbox-Version: <id>` sends a request to that version whatever the split.

The control API under `/_sandbox/` (no auth) sets faults per version, reports state and resets, and
`POST /_sandbox/clock {"now": "<RFC 3339>" | null}` stops the sandbox clock at a moment (null: real
time again). That clock buckets the response counters and stamps Operations and versions, so a test
can send traffic "at" a known minute and read it back from Monitoring.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.cookies import CookieError, SimpleCookie
from typing import Any

import jsonschema
from werkzeug.wrappers import Request, Response

from sandbox.appengine import monitoring
from sandbox.appengine.discovery import FORMATS, Discovery, InvalidRequest, Method
from sandbox.appengine.serving import LoopbackServer, ServiceRouter, VersionServer

DEFAULT_APP = "agentops-local"
DEFAULT_OPERATION_DELAY_SECONDS = 0.5
DEFAULT_PAGE_SIZE = 100
CREATED_BY = "sandbox-deployer@example.com"
OPERATION_METADATA_TYPE = "type.googleapis.com/google.appengine.v1.OperationMetadataV1"
VERSION_TYPE = "type.googleapis.com/google.appengine.v1.Version"
SERVICE_TYPE = "type.googleapis.com/google.appengine.v1.Service"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
# Version and service ids: lowercase letters, digits and hyphens, up to 63 characters.
RESOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RESERVED_VERSION_IDS = {"default", "latest"}
SPLIT_MASKS = {"split", "split.allocations"}
SHARD_BY = ("UNSPECIFIED", "COOKIE", "IP", "RANDOM")
# google.rpc.Code numbers, for an Operation's `error`.
RPC_CODES = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "FAILED_PRECONDITION": 9,
             "INTERNAL": 13, "UNAUTHENTICATED": 16}
UNAUTHENTICATED_MESSAGE = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential."
)
# The error body every Google API answers with; the discovery document does not describe it.
ERROR_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "message", "status"],
        "properties": {
            "code": {"type": "integer", "minimum": 400, "maximum": 599},
            "message": {"type": "string", "minLength": 1},
            "status": {"enum": sorted(RPC_CODES)},
        },
    }},
}
CLOCK_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["now"],
    "properties": {"now": {"type": ["string", "null"]}},
}
# What apps.get answers besides the ids: a Standard app in us-central, as `gcloud app create` makes it.
APP_LOCATION = "us-central"
FAULTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "unhealthy": {"type": "boolean"},
        "latency_ms": {"type": "integer", "minimum": 0, "maximum": 60_000},
        "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
    },
}


class ApiError(Exception):
    """An answer in Google's error shape."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Requested entity was not found: {what}")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Version:
    resource: dict[str, Any]
    server: VersionServer
    deleting: bool = False


@dataclass
class _Service:
    id: str
    router: ServiceRouter
    versions: dict[str, _Version] = field(default_factory=dict)
    allocations: dict[str, float] = field(default_factory=dict)
    shard_by: str | None = None


@dataclass
class _Operation:
    name: str
    metadata: dict[str, Any]
    done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    timer: threading.Timer | None = None

    def resource(self) -> dict[str, Any]:
        resource: dict[str, Any] = {"name": self.name, "metadata": dict(self.metadata)}
        if self.done:
            resource["done"] = True
            if self.error is not None:
                resource["error"] = dict(self.error)
            else:
                resource["response"] = dict(self.response or {"@type": EMPTY_TYPE})
        return resource


def _page(items: list[Any], key: Callable[[Any], str], page_size: int | None,
          page_token: str | None) -> tuple[list[Any], str | None]:
    """One page of `items` (sorted by `key`) after the token's position, and the next page's token."""
    if page_size is not None and page_size < 0:
        raise _invalid(f"Invalid value at 'page_size': {page_size} is negative")
    size = page_size or DEFAULT_PAGE_SIZE
    start = 0
    if page_token:
        try:
            after = base64.urlsafe_b64decode(page_token.encode()).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _invalid(f"Invalid page token {page_token!r}") from exc
        if not after.startswith("after:"):
            raise _invalid(f"Invalid page token {page_token!r}")
        start = sum(1 for item in items if key(item) <= after[len("after:"):])
    page = items[start:start + size]
    more = start + size < len(items)
    token = base64.urlsafe_b64encode(f"after:{key(page[-1])}".encode()).decode() if more and page else None
    return page, token


class AppEngineSandbox:
    """The Admin API on `url`, its versions' servers and its services' routers, all on 127.0.0.1."""

    def __init__(self, app: str = DEFAULT_APP, operation_delay: float = DEFAULT_OPERATION_DELAY_SECONDS,
                 port: int = 0, seed: int | None = None) -> None:
        if operation_delay < 0:
            raise ValueError(f"operation_delay must be >= 0, got {operation_delay}")
        self.app = app
        self.operation_delay = operation_delay
        self.discovery = Discovery.load()
        self.monitoring_discovery = Discovery.monitoring()
        self._apis = (self.discovery, self.monitoring_discovery)
        self.errors: list[str] = []
        self.responses = monitoring.ResponseCounters()
        self._frozen_now: datetime | None = None
        self._port = port
        self._rng = random.Random(seed)  # noqa: S311 - traffic and fault sampling, not security
        self._lock = threading.RLock()
        self._services: dict[str, _Service] = {}
        self._pending_versions: set[tuple[str, str]] = set()
        self._operations: dict[str, _Operation] = {}
        self._server: LoopbackServer | None = None
        self._handlers: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
            "appengine.apps.get": self._get_app,
            "monitoring.projects.timeSeries.list": self._list_time_series,
            "appengine.apps.services.versions.create": self._create_version,
            "appengine.apps.services.versions.get": self._get_version,
            "appengine.apps.services.versions.list": self._list_versions,
            "appengine.apps.services.versions.delete": self._delete_version,
            "appengine.apps.services.get": self._get_service,
            "appengine.apps.services.list": self._list_services,
            "appengine.apps.services.patch": self._patch_service,
            "appengine.apps.operations.get": self._get_operation,
        }
        missing = (set(self.discovery.methods) | set(self.monitoring_discovery.methods)) ^ set(self._handlers)
        if missing:
            raise RuntimeError(f"handlers and the discovery subset disagree on {sorted(missing)}")

    # Lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the App Engine sandbox is not started")
        return self._server.url

    def start(self) -> str:
        """Listen on 127.0.0.1 (the constructor's port, or a free one) and return the base URL."""
        if self._server is None:
            self._server = LoopbackServer(self.wsgi, self._port)
        return self._server.url

    def close(self) -> None:
        """Stop every version server, router and the Admin API itself."""
        self.reset()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> AppEngineSandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forget every service, version, operation, response count and recorded error; stop their servers.

        The clock goes back to real time.
        """
        with self._lock:
            timers = [op.timer for op in self._operations.values() if op.timer is not None]
            stoppable: list[VersionServer | ServiceRouter] = []
            for service in self._services.values():
                stoppable.append(service.router)
                stoppable += [version.server for version in service.versions.values()]
            self._services.clear()
            self._pending_versions.clear()
            self._operations.clear()
            self.errors.clear()
            self._frozen_now = None
        self.responses.clear()
        for timer in timers:
            timer.cancel()
        for server in stoppable:
            server.stop()

    # In-process control (the HTTP control API calls these too)

    def now(self) -> datetime:
        """The sandbox clock: the moment set with `set_clock`, else real time (UTC)."""
        frozen = self._frozen_now
        return frozen if frozen is not None else datetime.now(timezone.utc)

    def set_clock(self, now: datetime | None) -> dict[str, Any]:
        """Stop the clock at `now` (timezone-aware), or with None let it run with real time again."""
        if now is not None and now.tzinfo is None:
            raise _invalid("the clock needs a timezone-aware time (RFC 3339 with Z or an offset)")
        with self._lock:
            self._frozen_now = now.astimezone(timezone.utc) if now is not None else None
        return self.clock()

    def clock(self) -> dict[str, Any]:
        return {"now": monitoring.rfc3339(self.now()), "frozen": self._frozen_now is not None}

    def state(self) -> dict[str, Any]:
        with self._lock:
            services = {
                service.id: {
                    "router_url": service.router.url,
                    "split": self._split(service),
                    "versions": {
                        version_id: {
                            "url": version.server.url,
                            "serving_status": version.resource["servingStatus"],
                            "deleting": version.deleting,
                            "faults": version.server.faults(),
                            **version.server.counters(),
                        }
                        for version_id, version in sorted(service.versions.items())
                    },
                }
                for service in sorted(self._services.values(), key=lambda s: s.id)
            }
            pending = sum(1 for op in self._operations.values() if not op.done)
            return {
                "app": self.app,
                "url": self._server.url if self._server else None,
                "operation_delay": self.operation_delay,
                "clock": self.clock(),
                "services": services,
                "operations": {"pending": pending, "done": len(self._operations) - pending},
                "errors": list(self.errors),
            }

    def router_url(self, service_id: str) -> str:
        with self._lock:
            if service_id not in self._services:
                raise _not_found(f"service {service_id}")
            return self._services[service_id].router.url

    def set_faults(self, service_id: str, version_id: str, **faults: Any) -> dict[str, Any]:
        errors = list(jsonschema.Draft202012Validator(FAULTS_SCHEMA).iter_errors(faults))
        if errors:
            raise _invalid(f"invalid faults: {errors[0].message}")
        return self._version_server(service_id, version_id).set_faults(**faults)

    def clear_faults(self, service_id: str, version_id: str) -> None:
        self._version_server(service_id, version_id).clear_faults()

    def _version_server(self, service_id: str, version_id: str) -> VersionServer:
        with self._lock:
            service = self._services.get(service_id)
            if service is None or version_id not in service.versions:
                raise _not_found(f"version {service_id}/{version_id}")
            return service.versions[version_id].server

    # HTTP

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        if request.path.startswith("/_sandbox/"):
            status, body = self._control(request)
        else:
            status, body = self._api(request)
        response = Response(json.dumps(body), status=status, content_type="application/json; charset=UTF-8")
        return response(environ, start_response)

    def _record(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _api(self, request: Request) -> tuple[int, dict[str, Any]]:
        label = f"{request.method} {request.full_path.rstrip('?')}"
        method: Method | None = None
        discovery = self.discovery
        try:
            found = None
            for candidate in self._apis:
                found = candidate.match(request.method, request.path)
                if found is not None:
                    discovery = candidate
                    break
            if found is None:
                if any(candidate.path_exists(request.path) for candidate in self._apis):
                    raise ApiError(404, "NOT_FOUND",
                                   f"Method {request.method} is not defined for {request.path}")
                raise ApiError(404, "NOT_FOUND",
                               f"No App Engine Admin API or Cloud Monitoring API method at {request.path}")
            method, path_values = found
            if not re.fullmatch(r"(?i:bearer) \S+", request.headers.get("Authorization", "")):
                raise ApiError(401, "UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE)
            query = list(request.args.items(multi=True))
            params = discovery.check_parameters(method, path_values, query)
            if params.get("alt", "json") != "json":
                raise _invalid(f"alt={params['alt']} is not served by the sandbox; use alt=json")
            if "appsId" in params and params["appsId"] != self.app:
                raise _not_found(f"apps/{params['appsId']}")
            if "name" in params and params["name"] != f"projects/{self.app}":
                raise _not_found(params["name"])
            body = self._body(request, method, discovery)
            status, result = 200, self._handlers[method.id](params, body)
        except InvalidRequest as exc:
            status, result = 400, _invalid(str(exc)).body()
        except ApiError as exc:
            status, result = exc.code, exc.body()
        if status >= 400:
            self._record(f"{label}: {status} {result['error']['message']}")
        problems = self._response_errors(discovery, method, status, result)
        if problems:
            self._record(f"response to {label} breaks the discovery document: {problems[0]}")
            status, result = 500, ApiError(500, "INTERNAL", f"invalid response: {problems[0]}").body()
        return status, result

    def _body(self, request: Request, method: Method, discovery: Discovery) -> Any:
        raw = request.get_data()
        if method.request is None:
            if raw.strip():
                raise _invalid(f"{method.id} takes no request body")
            return None
        if not raw.strip():
            body: Any = {}
        else:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _invalid(f"Invalid JSON payload received. {exc}") from exc
        discovery.check_body(method.request, body)
        return body

    def _response_errors(self, discovery: Discovery, method: Method | None, status: int,
                         result: dict[str, Any]) -> list[str]:
        if status >= 400:
            validator = jsonschema.Draft202012Validator(ERROR_SCHEMA)
            return [error.message for error in validator.iter_errors(result)]
        assert method is not None and method.response is not None
        problems = discovery.schema_errors(method.response, result)
        if method.response == "Operation":
            problems += discovery.payload_errors(result)
        return problems

    def _control(self, request: Request) -> tuple[int, dict[str, Any]]:
        parts = request.path.strip("/").split("/")[1:]
        try:
            if request.method == "GET" and parts == ["state"]:
                return 200, self.state()
            if request.method == "GET" and parts == ["errors"]:
                with self._lock:
                    return 200, {"errors": list(self.errors)}
            if request.method == "POST" and parts == ["reset"]:
                self.reset()
                return 200, {}
            if parts == ["clock"] and request.method in ("GET", "POST"):
                if request.method == "GET":
                    return 200, self.clock()
                return 200, self.set_clock(self._clock_body(request))
            if request.method == "GET" and len(parts) == 2 and parts[0] == "services":
                url = self.router_url(parts[1])
                return 200, {"service": parts[1], "router_url": url}
            if len(parts) == 7 and parts[0::2] == ["apps", "services", "versions", "faults"]:
                app, service_id, version_id = parts[1], parts[3], parts[5]
                if app != self.app:
                    raise _not_found(f"apps/{app}")
                if request.method == "POST":
                    try:
                        faults = json.loads(request.get_data() or b"{}")
                    except ValueError as exc:
                        raise _invalid(f"faults body is not JSON: {exc}") from exc
                    if not isinstance(faults, dict):
                        raise _invalid("faults body must be a JSON object")
                    return 200, {"faults": self.set_faults(service_id, version_id, **faults)}
                if request.method == "DELETE":
                    self.clear_faults(service_id, version_id)
                    return 200, {"faults": self._version_server(service_id, version_id).faults()}
            raise ApiError(404, "NOT_FOUND", f"no sandbox control at {request.method} {request.path}")
        except ApiError as exc:
            self._record(f"{request.method} {request.path}: {exc.code} {exc.message}")
            return exc.code, exc.body()

    def _clock_body(self, request: Request) -> datetime | None:
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError as exc:
            raise _invalid(f"clock body is not JSON: {exc}") from exc
        errors = list(jsonschema.Draft202012Validator(CLOCK_SCHEMA).iter_errors(body))
        if errors:
            raise _invalid(f"invalid clock: {errors[0].message}; send {{\"now\": \"<RFC 3339>\" | null}}")
        if body["now"] is None:
            return None
        if not re.fullmatch(FORMATS[("string", "google-datetime")]["pattern"], body["now"]):
            raise _invalid(f"invalid clock: {body['now']!r} is not an RFC 3339 timestamp")
        try:
            return monitoring.parse_time("now", body["now"])
        except InvalidRequest as exc:
            raise _invalid(f"invalid clock: {exc}") from exc

    # Applications and Monitoring

    def _get_app(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        return {
            "name": f"apps/{self.app}", "id": self.app, "locationId": APP_LOCATION,
            "servingStatus": "SERVING",
            "defaultHostname": f"{self.app}.appspot.com", "defaultBucket": f"{self.app}.appspot.com",
            "codeBucket": f"staging.{self.app}.appspot.com", "gcrDomain": "us.gcr.io",
            "serviceAccount": f"{self.app}@appspot.gserviceaccount.com", "databaseType": "CLOUD_FIRESTORE",
        }

    def _count_response(self, service_id: str, version_id: str, code: int) -> None:
        self.responses.add(service_id, version_id, self.now(), code)

    def _list_time_series(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        query = monitoring.parse_query(params)
        series = monitoring.time_series(self.responses.snapshot(), self.app, query)
        page, token = _page(series, lambda item: json.dumps([item["resource"], item["metric"]],
                                                            sort_keys=True),
                            params.get("pageSize"), params.get("pageToken"))
        result: dict[str, Any] = {"timeSeries": page} if page else {}
        if token:
            result["nextPageToken"] = token
        return result

    # Operations

    def _start_operation(self, method_name: str, target: str,
                         complete: Callable[[], dict[str, Any]]) -> _Operation:
        name = f"apps/{self.app}/operations/{self._rng.getrandbits(128):032x}"
        operation = _Operation(name=name, metadata={
            "@type": OPERATION_METADATA_TYPE, "method": method_name, "insertTime": _timestamp(self.now()),
            "target": target, "user": CREATED_BY,
        })
        with self._lock:
            self._operations[name] = operation
        if self.operation_delay == 0:
            self._complete(operation, complete)
        else:
            operation.timer = threading.Timer(self.operation_delay, self._complete,
                                              args=(operation, complete))
            operation.timer.daemon = True
            operation.timer.start()
        return operation

    def _complete(self, operation: _Operation, complete: Callable[[], dict[str, Any]]) -> None:
        with self._lock:
            if self._operations.get(operation.name) is not operation:
                return  # reset while pending
            try:
                operation.response = complete()
            except ApiError as exc:
                operation.error = {"code": RPC_CODES[exc.status], "message": exc.message}
            except OSError as exc:
                operation.error = {"code": RPC_CODES["INTERNAL"], "message": f"could not serve: {exc}"}
            operation.metadata["endTime"] = _timestamp(self.now())
            operation.done = True

    def _get_operation(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        name = f"apps/{self.app}/operations/{params['operationsId']}"
        with self._lock:
            operation = self._operations.get(name)
            if operation is None:
                raise _not_found(name)
            return operation.resource()

    # Versions

    def _service(self, service_id: str) -> _Service:
        service = self._services.get(service_id)
        if service is None:
            raise _not_found(f"apps/{self.app}/services/{service_id}")
        return service

    def _version(self, service_id: str, version_id: str) -> _Version:
        version = self._service(service_id).versions.get(version_id)
        if version is None or version.deleting:
            raise _not_found(f"apps/{self.app}/services/{service_id}/versions/{version_id}")
        return version

    def _version_view(self, resource: dict[str, Any], view: str) -> dict[str, Any]:
        if view == "FULL":
            return dict(resource)
        hidden = self.discovery.full_view_only("Version")
        return {key: value for key, value in resource.items() if key not in hidden}

    def _create_version(self, params: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        service_id = params["servicesId"]
        version_id = body.get("id")
        if not RESOURCE_ID.match(service_id):
            raise _invalid(f"Invalid service id {service_id!r}: use lowercase letters, digits and hyphens")
        if not version_id:
            raise _invalid("Version id is required (version.id)")
        reserved = version_id in RESERVED_VERSION_IDS or version_id.startswith("ah-")
        if not RESOURCE_ID.match(version_id) or reserved:
            raise _invalid(f"Invalid version id {version_id!r}: use lowercase letters, digits and hyphens, "
                           "not 'default', 'latest' or a name starting 'ah-'")
        if not body.get("runtime"):
            raise _invalid("Version runtime is required (version.runtime)")
        serving_status = body.get("servingStatus", "SERVING")
        if serving_status == "SERVING_STATUS_UNSPECIFIED":
            raise _invalid("SERVING_STATUS_UNSPECIFIED is not a valid servingStatus")
        name = f"apps/{self.app}/services/{service_id}/versions/{version_id}"
        with self._lock:
            service = self._services.get(service_id)
            exists = service is not None and version_id in service.versions
            if exists or (service_id, version_id) in self._pending_versions:
                raise ApiError(409, "ALREADY_EXISTS", f"Version already exists: {name}")
            pending_services = {pending_service for pending_service, _ in self._pending_versions}
            has_default = "default" in self._services or "default" in pending_services
            if service_id != "default" and not has_default:
                raise _invalid("The first service created in an application must be the default service")
            output_only = self.discovery.output_only("Version")
            resource = {key: value for key, value in body.items() if key not in output_only}
            resource.update(name=name, id=version_id, env=body.get("env", "standard"),
                            servingStatus=serving_status, createTime=_timestamp(self.now()),
                            createdBy=CREATED_BY)
            self._pending_versions.add((service_id, version_id))
            operation = self._start_operation("google.appengine.v1.Versions.CreateVersion", name,
                                              lambda: self._finish_create(service_id, resource))
            return operation.resource()

    def _finish_create(self, service_id: str, resource: dict[str, Any]) -> dict[str, Any]:
        version_id = resource["id"]
        self._pending_versions.discard((service_id, version_id))
        serving = resource["servingStatus"] == "SERVING"
        server = VersionServer(service_id, version_id, self._rng, serving=serving,
                               on_response=lambda code: self._count_response(service_id, version_id, code))
        resource["versionUrl"] = server.start()
        service = self._services.get(service_id)
        if service is None:
            router = ServiceRouter(service_id, lambda environ: self._route(service_id, environ))
            service = self._services[service_id] = _Service(id=service_id, router=router)
            if serving:
                service.allocations = {version_id: 1.0}
        service.versions[version_id] = _Version(resource=resource, server=server)
        return {"@type": VERSION_TYPE, **resource}

    def _get_version(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        with self._lock:
            service_id, version_id = params["servicesId"], params["versionsId"]
            version = self._service(service_id).versions.get(version_id)
            if version is None:
                raise _not_found(f"apps/{self.app}/services/{service_id}/versions/{version_id}")
            return self._version_view(version.resource, params.get("view", "BASIC"))

    def _list_versions(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        with self._lock:
            service = self._service(params["servicesId"])
            versions = [version.resource for _, version in sorted(service.versions.items())]
            page, token = _page(versions, lambda resource: resource["id"], params.get("pageSize"),
                                params.get("pageToken"))
            view = params.get("view", "BASIC")
            result: dict[str, Any] = {}
            if page:
                result["versions"] = [self._version_view(resource, view) for resource in page]
            if token:
                result["nextPageToken"] = token
            return result

    def _delete_version(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        service_id, version_id = params["servicesId"], params["versionsId"]
        with self._lock:
            version = self._version(service_id, version_id)
            if self._services[service_id].allocations.get(version_id, 0) > 0:
                raise ApiError(400, "FAILED_PRECONDITION",
                               f"Cannot delete version {version_id}: it has a traffic allocation in service "
                               f"{service_id}; move its traffic to another version first")
            version.deleting = True
            operation = self._start_operation("google.appengine.v1.Versions.DeleteVersion",
                                              version.resource["name"],
                                              lambda: self._finish_delete(service_id, version_id))
            return operation.resource()

    def _finish_delete(self, service_id: str, version_id: str) -> dict[str, Any]:
        service = self._services[service_id]
        if service.allocations.get(version_id, 0) > 0:
            service.versions[version_id].deleting = False
            raise ApiError(400, "FAILED_PRECONDITION", f"Cannot delete version {version_id}: it has traffic")
        service.versions.pop(version_id).server.stop()
        return {"@type": EMPTY_TYPE}

    # Services

    def _split(self, service: _Service) -> dict[str, Any]:
        split: dict[str, Any] = {"allocations": dict(sorted(service.allocations.items()))}
        if service.shard_by:
            split["shardBy"] = service.shard_by
        return split

    def _service_resource(self, service: _Service) -> dict[str, Any]:
        return {"name": f"apps/{self.app}/services/{service.id}", "id": service.id,
                "split": self._split(service)}

    def _get_service(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        with self._lock:
            return self._service_resource(self._service(params["servicesId"]))

    def _list_services(self, params: dict[str, Any], body: None) -> dict[str, Any]:
        with self._lock:
            services = [self._service_resource(service) for _, service in sorted(self._services.items())]
        page, token = _page(services, lambda resource: resource["id"], params.get("pageSize"),
                            params.get("pageToken"))
        result: dict[str, Any] = {"services": page} if page else {}
        if token:
            result["nextPageToken"] = token
        return result

    def _patch_service(self, params: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        service_id = params["servicesId"]
        mask = params.get("updateMask")
        if not mask:
            raise _invalid("updateMask is required (use updateMask=split)")
        paths = mask.split(",")
        unsupported = [path for path in paths if path not in SPLIT_MASKS]
        if unsupported:
            raise _invalid(f"Unsupported updateMask path {unsupported[0]!r}: the sandbox updates only "
                           "split or split.allocations")
        if params.get("migrateTraffic"):
            raise _invalid("migrateTraffic (gradual migration) is not served by the sandbox; shift traffic "
                           "in steps with services.patch instead")
        split = body.get("split") or {}
        allocations: dict[str, float] = split.get("allocations") or {}
        with self._lock:
            service = self._service(service_id)
            shard_by = split.get("shardBy") if "split" in paths else service.shard_by
            if not allocations:
                raise _invalid("service.split.allocations must allocate traffic to at least one version")
            decimals = 2 if shard_by == "IP" else 3
            for version_id, share in allocations.items():
                version = service.versions.get(version_id)
                if version is None or version.deleting:
                    raise _invalid(f"Unknown version {version_id!r} in service.split.allocations: service "
                                   f"{service_id} has no such version")
                if version.resource["servingStatus"] != "SERVING":
                    raise ApiError(400, "FAILED_PRECONDITION", f"Version {version_id} is not serving")
                if not 0 < share <= 1:
                    raise _invalid(f"Allocation for {version_id} must be in (0, 1], got {share}")
                scaled = share * 10**decimals
                if abs(scaled - round(scaled)) > 1e-6:
                    raise _invalid(f"Allocation for {version_id} has more than {decimals} decimal places "
                                   f"(shardBy {shard_by or 'UNSPECIFIED'})")
            total = sum(allocations.values())
            if abs(total - 1) > 1e-9:
                raise _invalid(f"Traffic allocations must sum to 1, got {total:g}")
            operation = self._start_operation(
                "google.appengine.v1.Services.UpdateService", f"apps/{self.app}/services/{service_id}",
                lambda: self._finish_patch(service_id, dict(allocations), shard_by))
            return operation.resource()

    def _finish_patch(self, service_id: str, allocations: dict[str, float],
                      shard_by: str | None) -> dict[str, Any]:
        service = self._services[service_id]
        for version_id in allocations:
            version = service.versions.get(version_id)
            if version is None or version.deleting:
                raise ApiError(400, "FAILED_PRECONDITION", f"Version {version_id} was deleted meanwhile")
        service.allocations = {version_id: float(share) for version_id, share in allocations.items()}
        service.shard_by = shard_by
        return {"@type": SERVICE_TYPE, **self._service_resource(service)}

    # Routing

    def _route(self, service_id: str, environ: dict[str, Any]) -> tuple[int, str] | None:
        """The (port, version) a request to the service's router goes to, or None when there is none."""
        with self._lock:
            service = self._services.get(service_id)
            if service is None:
                return None
            wanted = environ.get("HTTP_X_SANDBOX_VERSION")
            if wanted:
                version = service.versions.get(wanted)
                return (version.server.port, wanted) if version else None
            allocations = sorted(service.allocations.items())
            if not allocations:
                return None
            point = self._shard_point(service.shard_by, environ)
            cumulative = 0.0
            for version_id, share in allocations:
                cumulative += share
                if point < cumulative:
                    return service.versions[version_id].server.port, version_id
            version_id = allocations[-1][0]
            return service.versions[version_id].server.port, version_id

    def _shard_point(self, shard_by: str | None, environ: dict[str, Any]) -> float:
        """A number in [0, 1) that picks the version: stable per client for IP and COOKIE."""
        key = None
        if shard_by == "IP":
            key = environ.get("REMOTE_ADDR", "")
        elif shard_by == "COOKIE":
            try:
                cookie = SimpleCookie(environ.get("HTTP_COOKIE", "")).get("GOOGAPPUID")
            except CookieError:
                cookie = None
            key = cookie.value if cookie else None
        if key is None:
            return self._rng.random()
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64
