"""The App Engine Admin and Cloud Monitoring adapters, and the token sources behind them.

The adapters speak REST with `requests`, so they are driven against the in-process App Engine sandbox
(whose every answer is validated against the discovery subsets), against a scripted loopback server
for what the sandbox never does (5xx, 429, timeouts, a dropped connection), and through a transport
adapter that serves the production host names from the sandbox. Tokens come from a real
google-auth credentials object refreshed at a loopback token endpoint.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from google.oauth2.credentials import Credentials
from werkzeug.wrappers import Request, Response

from sandbox.appengine import AppEngineControl, AppEngineSandbox
from sandbox.appengine.serving import LoopbackServer
from shared.appengine import (
    AlreadyExists,
    AppEngineAdmin,
    GoogleApiError,
    NotFound,
    normalize_allocations,
    static_token_source,
)
from shared.cloud_monitoring import RESPONSE_COUNT_METRIC, CloudMonitoring
from shared.errors import PermanentError, RetryableError
from shared.google_auth import GoogleTokenSource
from shared.google_rest import GoogleUnavailable, is_loopback
from shared.log import JsonFormatter
from tests.support.appengine import ResponseChecker, take_errors

APP = "agentops-local"
RUNTIME = "python312"
TOKEN = "ya29.sandbox-secret-token-0123456789"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def running() -> Iterator[AppEngineSandbox]:
    with AppEngineSandbox(app=APP, operation_delay=0, seed=11) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(running: AppEngineSandbox) -> Iterator[AppEngineSandbox]:
    running.reset()
    running.operation_delay = 0
    yield running
    assert running.errors == [], "unexpected refusals; a test that expects one takes it with take_errors"


@pytest.fixture
def checker() -> ResponseChecker:
    return ResponseChecker()


@pytest.fixture
def session(checker: ResponseChecker) -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.hooks["response"].append(checker)
        yield http
    assert checker.problems == []


@pytest.fixture
def admin(sandbox: AppEngineSandbox, session: requests.Session) -> AppEngineAdmin:
    return AppEngineAdmin(sandbox.url, APP, static_token_source(TOKEN), session=session)


@pytest.fixture
def control(sandbox: AppEngineSandbox) -> Iterator[AppEngineControl]:
    client = AppEngineControl(sandbox.url, app=APP)
    yield client
    client.close()


def create(admin: AppEngineAdmin, service: str, *versions: str) -> None:
    for version in versions:
        done, error = admin.operation_done(admin.create_version(service, {"id": version, "runtime": RUNTIME}))
        assert (done, error) == (True, "")


def wait(admin: AppEngineAdmin, operation: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not admin.operation_done(operation)[0]:
        assert time.monotonic() < deadline, f"{operation['name']} not done"
        time.sleep(0.05)
        operation = admin.get_operation(operation["name"])
    return operation


# --- App Engine Admin: the happy paths -------------------------------------------------------


def test_a_release_goes_through_versions_splits_and_operations(sandbox, admin, checker):
    sandbox.operation_delay = 0.2
    first = admin.create_version("default", {"id": "v1", "runtime": RUNTIME})
    assert first["name"].startswith(f"apps/{APP}/operations/")
    assert admin.operation_done(first) == (False, "")
    assert wait(admin, first)["response"]["id"] == "v1"
    assert admin.split("default") == {"v1": 1.0}
    wait(admin, admin.create_version("default", {"id": "v2", "runtime": RUNTIME, "envVariables": {"A": "b"}}))

    version = admin.get_version("default", "v2")
    assert version["envVariables"] == {"A": "b"}  # the FULL view
    url = admin.version_url("default", "v2")
    assert url == version["versionUrl"] and requests.get(f"{url}/health", timeout=5).json()["version"] == "v2"
    assert admin.split("default") == {"v1": 1.0}  # created without promotion

    canary = admin.set_split("default", {"v1": 0.9, "v2": 0.1})
    assert admin.operation_done(canary)[0] is False
    assert wait(admin, canary)["response"]["split"] == {"allocations": {"v1": 0.9, "v2": 0.1},
                                                         "shardBy": "RANDOM"}
    assert admin.get_service("default")["split"]["allocations"] == {"v1": 0.9, "v2": 0.1}
    wait(admin, admin.set_split("default", {"v2": 1.0}))
    assert admin.split("default") == {"v2": 1.0}

    router = admin.service_url("default")
    assert requests.get(router, timeout=5).text == "v2"
    deleted = wait(admin, admin.delete_version("default", "v1"))
    assert admin.operation_done(deleted) == (True, "")
    assert admin.get_version("default", "v1") is None
    assert admin.delete_version("default", "v1") is None  # already gone: nothing to do
    assert [v["id"] for v in admin.list_versions("default")] == ["v2"]
    assert admin.get_application()["defaultHostname"] == f"{APP}.appspot.com"
    assert checker.checked >= 15
    assert len(take_errors(sandbox)) == 2  # the 404s of the deleted version, read as None


def test_shares_are_rounded_to_what_app_engine_accepts_and_sum_to_one(sandbox, admin):
    assert normalize_allocations({"a": 1 / 3, "b": 2 / 3}) == {"a": 0.333, "b": 0.667}
    assert normalize_allocations({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}) == {"a": 0.334, "b": 0.333, "c": 0.333}
    assert normalize_allocations({"a": 0.995, "b": 0.005}, shard_by="IP") == {"a": 1.0}
    assert normalize_allocations({"old": 1.0, "new": 0.0}) == {"old": 1.0}
    for bad in ({}, {"a": 0.0}, {"a": 1.5}, {"a": -0.1, "b": 1.0}):
        with pytest.raises(ValueError):
            normalize_allocations(bad)
    create(admin, "default", "v1", "v2", "v3")
    operation = admin.set_split("default", {"v1": 1 / 3, "v2": 1 / 3, "v3": 1 / 3})
    assert admin.operation_done(operation) == (True, "")
    assert sum(admin.split("default").values()) == pytest.approx(1.0)


def test_list_versions_reads_every_page(sandbox, admin, session):
    create(admin, "default", "v5", "v1", "v4", "v2", "v3")
    pages: list[str] = []
    def hear(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "/versions?" in response.url:
            pages.append(response.url)

    session.hooks["response"].append(hear)
    assert [v["id"] for v in admin.list_versions("default", page_size=2)] == ["v1", "v2", "v3", "v4", "v5"]
    assert len(pages) == 3 and "pageToken=" in pages[1] and "pageToken=" in pages[2]
    assert [v["id"] for v in admin.list_versions("default")] == ["v1", "v2", "v3", "v4", "v5"]
    assert admin.list_versions("no-such-service") == []
    take_errors(sandbox)  # the 404 of the unknown service


def test_service_url_against_the_sandbox_is_the_services_router(sandbox, admin, control):
    create(admin, "default", "v1")
    create(admin, "api", "a1")
    assert admin.service_url("default") == control.router_url("default")
    assert admin.service_url("api") == control.router_url("api")
    assert requests.get(admin.service_url("api"), timeout=5).text == "a1"
    with pytest.raises(NotFound):
        admin.service_url("web")
    take_errors(sandbox)


class ForwardToSandbox(requests.adapters.HTTPAdapter):
    """Serves `https://appengine.googleapis.com` (and counts calls) from the sandbox on loopback."""

    def __init__(self, sandbox_url: str) -> None:
        super().__init__()
        self.sandbox_url = sandbox_url
        self.paths: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.paths.append(requests.utils.urlparse(request.url).path)
        request.url = request.url.replace("https://appengine.googleapis.com", self.sandbox_url, 1)
        return super().send(request, **kwargs)


def test_service_url_in_production_is_built_from_the_default_hostname(sandbox):
    forward = ForwardToSandbox(sandbox.url)
    with requests.Session() as http:
        http.mount("https://appengine.googleapis.com", forward)
        production = AppEngineAdmin("https://appengine.googleapis.com", APP, static_token_source(TOKEN),
                                    session=http)
        assert production.service_url("default") == f"https://{APP}.appspot.com"
        assert production.service_url("api") == f"https://api-dot-{APP}.appspot.com"
    assert forward.paths == [f"/v1/apps/{APP}"]  # apps.get once; no sandbox control call
    assert is_loopback("http://127.0.0.1:8090") and is_loopback("http://localhost:1")
    assert is_loopback("http://[::1]:80") and not is_loopback("https://appengine.googleapis.com")


# --- App Engine Admin: errors -------------------------------------------------------------------


def test_a_taken_version_id_is_already_exists_with_googles_message(sandbox, admin):
    create(admin, "default", "v1")
    with pytest.raises(AlreadyExists) as taken:
        admin.create_version("default", {"id": "v1", "runtime": RUNTIME})
    assert isinstance(taken.value, PermanentError)
    assert (taken.value.code, taken.value.status) == (409, "ALREADY_EXISTS")
    assert "Version already exists" in taken.value.message and "Version already exists" in str(taken.value)
    assert len(take_errors(sandbox)) == 1


def test_missing_resources_are_none_or_not_found(sandbox, admin):
    assert admin.get_version("default", "v1") is None
    assert admin.split("default") == {}
    with pytest.raises(NotFound) as missing:
        admin.get_service("default")
    assert isinstance(missing.value, PermanentError) and missing.value.status == "NOT_FOUND"
    with pytest.raises(NotFound):
        admin.version_url("default", "v1")
    with pytest.raises(NotFound):
        admin.get_operation(f"apps/{APP}/operations/nope")
    with pytest.raises(ValueError):
        admin.get_operation("apps/other/operations/1")
    assert len(take_errors(sandbox)) == 5


def test_refusals_are_permanent_and_carry_googles_message(sandbox, admin):
    create(admin, "default", "v1", "v2")
    with pytest.raises(GoogleApiError) as unknown:
        admin.set_split("default", {"v1": 0.5, "v9": 0.5})
    assert (unknown.value.code, unknown.value.status) == (400, "INVALID_ARGUMENT")
    assert "Unknown version 'v9'" in unknown.value.message
    with pytest.raises(PermanentError) as serving:
        admin.delete_version("default", "v1")
    assert "traffic allocation" in str(serving.value)
    assert len(take_errors(sandbox)) == 2


def test_operation_done_reports_a_failed_operation():
    failed = {"name": "apps/a/operations/1", "done": True, "error": {"code": 9, "message": "Version is busy"}}
    assert AppEngineAdmin.operation_done(failed) == (True, "Version is busy (code 9)")
    assert AppEngineAdmin.operation_done({"name": "x", "done": True, "error": {}}) == (True, "")
    assert AppEngineAdmin.operation_done({"name": "x", "metadata": {}}) == (False, "")


class Scripted:
    """A loopback server that answers each request with the next scripted (status, body, delay)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any, float]] = []
        self.seen: list[dict[str, Any]] = []
        self._server = LoopbackServer(self.wsgi)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        self.seen.append({"method": request.method, "path": request.path,
                          "args": list(request.args.items(multi=True)),
                          "authorization": request.headers.get("Authorization", "")})
        status, body, delay = self.answers.pop(0) if self.answers else (200, {}, 0.0)
        if delay:
            time.sleep(delay)
        data = body if isinstance(body, str) else json.dumps(body)
        return Response(data, status=status, content_type="application/json")(environ, start_response)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.stop()


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message}}


ERROR_MAPPING = [
    # (id, status, body, error class, fragment)
    ("500", 500, google_error(500, "INTERNAL", "Internal error encountered."), GoogleUnavailable,
     "Internal error encountered."),
    ("503", 503, google_error(503, "UNAVAILABLE", "The service is currently unavailable."), GoogleUnavailable,
     "currently unavailable"),
    ("429", 429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Read requests'"),
     GoogleUnavailable, "Quota exceeded"),
    ("409-aborted", 409, google_error(409, "ABORTED", "Operation already in progress"), GoogleUnavailable,
     "already in progress"),
    ("409", 409, google_error(409, "ALREADY_EXISTS", "Version already exists"), AlreadyExists,
     "already exists"),
    ("404", 404, google_error(404, "NOT_FOUND", "App does not exist."), NotFound, "App does not exist."),
    ("403", 403, google_error(403, "PERMISSION_DENIED", "The caller does not have permission"),
     GoogleApiError, "does not have permission"),
    ("401", 401, google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
     GoogleApiError, "invalid authentication credentials"),
    ("400-not-json", 400, "<html>Bad Request</html>", GoogleApiError, "Bad Request"),
    ("200-not-json", 200, "<html>hello</html>", GoogleUnavailable, "not JSON"),
]


@pytest.mark.parametrize(("status", "body", "error", "fragment"), [case[1:] for case in ERROR_MAPPING],
                         ids=[case[0] for case in ERROR_MAPPING])
def test_http_errors_map_onto_retryable_and_permanent(scripted, status, body, error, fragment):
    admin = AppEngineAdmin(scripted.url, APP, static_token_source(TOKEN))
    scripted.answers.append((status, body, 0.0))
    with pytest.raises(error) as raised:
        admin.get_service("default")
    expected_kind = RetryableError if error is GoogleUnavailable else PermanentError
    assert isinstance(raised.value, expected_kind)
    assert fragment in str(raised.value)
    assert scripted.seen[0]["authorization"] == f"Bearer {TOKEN}"


def test_timeouts_and_dropped_connections_are_retryable(scripted):
    slow = AppEngineAdmin(scripted.url, APP, static_token_source(TOKEN), timeout=0.2)
    scripted.answers.append((200, {}, 1.0))
    with pytest.raises(GoogleUnavailable, match="no answer within 0.2 s"):
        slow.get_service("default")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = AppEngineAdmin(f"http://127.0.0.1:{port}", APP, static_token_source(TOKEN), timeout=2)
    with pytest.raises(GoogleUnavailable, match="ConnectionError"):
        closed.list_versions("default")
    monitoring = CloudMonitoring(f"http://127.0.0.1:{port}", APP, static_token_source(TOKEN), timeout=2)
    with pytest.raises(RetryableError):
        monitoring.response_counts("default", "v1", NOON, NOON + timedelta(minutes=1))


def test_the_token_is_sent_but_never_logged_nor_in_an_error(sandbox, scripted, caplog):
    caplog.set_level(logging.DEBUG)
    admin = AppEngineAdmin(sandbox.url, APP, static_token_source(TOKEN))
    create(admin, "default", "v1")
    failures: list[Exception] = []
    for call in (lambda: admin.create_version("default", {"id": "v1", "runtime": RUNTIME}),
                 lambda: admin.get_service("nope"),
                 lambda: admin.set_split("default", {"v9": 1.0})):
        try:
            call()
        except PermanentError as exc:
            failures.append(exc)
    flaky = AppEngineAdmin(scripted.url, APP, static_token_source(TOKEN))
    scripted.answers += [(500, google_error(500, "INTERNAL", f"echo of Bearer {TOKEN}"), 0.0),
                         (400, f"Authorization: Bearer {TOKEN}", 0.0)]
    for _ in range(2):
        try:
            flaky.get_service("default")
        except (RetryableError, PermanentError) as exc:
            failures.append(exc)
    assert len(failures) == 5
    assert scripted.seen and all(seen["authorization"] == f"Bearer {TOKEN}" for seen in scripted.seen)
    assert any("google api call" in record.getMessage() for record in caplog.records)
    formatted = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for text in (caplog.text, formatted, *map(str, failures), *(repr(exc.__cause__) for exc in failures)):
        assert TOKEN not in text
    take_errors(sandbox)


# --- Token sources ----------------------------------------------------------------------------


class TokenEndpoint:
    """An OAuth 2.0 token endpoint on loopback that mints numbered access tokens."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.fail = False
        self.minted = 0
        self._lock = threading.Lock()
        self._server = LoopbackServer(self.wsgi)
        self.url = f"{self._server.url}/token"

    def stop(self) -> None:
        self._server.stop()

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        assert request.form["grant_type"] == "refresh_token"
        if self.fail:
            response = Response(json.dumps({"error": "invalid_grant", "error_description": "Bad Request"}),
                                status=400, content_type="application/json")
            return response(environ, start_response)
        with self._lock:
            self.minted += 1
            token = f"ya29.minted-{self.minted}-abcdefghijklmnop"
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return Response(json.dumps(body), content_type="application/json")(environ, start_response)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    server = TokenEndpoint()
    yield server
    server.stop()


def credentials(endpoint: TokenEndpoint) -> Credentials:
    return Credentials(token=None, refresh_token="refresh-me", token_uri=endpoint.url, client_id="client",
                       client_secret="secret", scopes=["https://www.googleapis.com/auth/cloud-platform"])


def test_google_token_source_refreshes_once_and_again_when_the_token_expires(endpoint):
    source = GoogleTokenSource(credentials=credentials(endpoint))
    assert source() == "ya29.minted-1-abcdefghijklmnop"
    assert source() == "ya29.minted-1-abcdefghijklmnop" and endpoint.minted == 1
    endpoint.expires_in = 30  # inside google-auth's refresh margin: expired as soon as it is minted
    short = GoogleTokenSource(credentials=credentials(endpoint))
    assert short() == "ya29.minted-2-abcdefghijklmnop"
    assert short() == "ya29.minted-3-abcdefghijklmnop"


def test_a_failed_refresh_is_retryable_and_quotes_nothing(endpoint):
    endpoint.fail = True
    source = GoogleTokenSource(credentials=credentials(endpoint))
    with pytest.raises(RetryableError) as failed:
        source()
    assert str(failed.value) == "could not refresh the Google access token: RefreshError"
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


def test_concurrent_callers_share_one_refresh(endpoint):
    source = GoogleTokenSource(credentials=credentials(endpoint))
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(source())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(set(tokens)) == 1 and endpoint.minted == 1


def test_a_static_token_needs_a_value():
    assert static_token_source("t")() == "t"
    with pytest.raises(ValueError):
        static_token_source("")


# --- Cloud Monitoring ---------------------------------------------------------------------------


@pytest.fixture
def monitoring(sandbox: AppEngineSandbox, session: requests.Session) -> CloudMonitoring:
    return CloudMonitoring(sandbox.url, APP, static_token_source(TOKEN), session=session)


def test_response_counts_are_what_a_faulty_canary_really_answered(sandbox, admin, control, monitoring):
    create(admin, "default", "v1", "v2")
    admin.set_split("default", {"v1": 0.5, "v2": 0.5})
    control.set_faults("default", "v2", error_rate=0.5)
    control.set_clock(NOON + timedelta(seconds=10))
    router = admin.service_url("default")
    with requests.Session() as http:
        answers = [http.get(router, timeout=5) for _ in range(80)]
    served = {version: sum(1 for answer in answers if answer.headers["X-Version"] == version)
              for version in ("v1", "v2")}
    failed = sum(1 for answer in answers if answer.status_code == 500)
    assert served["v2"] > 0 and failed > 0
    assert all(answer.headers["X-Version"] == "v2" for answer in answers if answer.status_code == 500)

    minute = (NOON, NOON + timedelta(minutes=1))
    assert monitoring.response_counts("default", "v2", *minute) == (served["v2"], failed)
    assert monitoring.response_counts("default", "v1", *minute) == (served["v1"], 0)
    assert monitoring.response_counts("default", "v2", NOON - timedelta(minutes=5), NOON) == (0, 0)
    wider = monitoring.response_counts("default", "v2", NOON - timedelta(minutes=4),
                                       NOON + timedelta(minutes=1))
    assert wider == (served["v2"], failed)
    state = control.state()["services"]["default"]["versions"]["v2"]
    assert (state["requests"], state["errors"]) == (served["v2"], failed)


def test_the_response_count_query_is_one_aligned_sum_per_code(monitoring):
    query = dict(monitoring.response_count_query("api", "v7", NOON, NOON + timedelta(seconds=90.5)))
    assert query["filter"] == (f'metric.type = "{RESPONSE_COUNT_METRIC}" AND resource.type = "gae_app" AND '
                               'resource.labels.module_id = "api" AND resource.labels.version_id = "v7"')
    assert query["aggregation.alignmentPeriod"] == "91s"
    assert (query["interval.startTime"], query["interval.endTime"]) == ("2026-03-02T12:00:00Z",
                                                                        "2026-03-02T12:01:30Z")
    assert dict(monitoring.response_count_query("a", "b", NOON, NOON + timedelta(seconds=5)))[
        "aggregation.alignmentPeriod"] == "60s"
    with pytest.raises(ValueError):
        monitoring.response_count_query("a", "b", NOON, NOON)
    with pytest.raises(ValueError):
        monitoring.response_count_query("a", "b", NOON.replace(tzinfo=None), NOON.replace(tzinfo=None))


def test_response_counts_are_none_when_the_metric_cannot_be_read(sandbox, session, scripted):
    elsewhere = CloudMonitoring(sandbox.url, "another-project", static_token_source(TOKEN), session=session)
    assert elsewhere.response_counts("default", "v1", NOON, NOON + timedelta(minutes=1)) is None
    assert len(take_errors(sandbox)) == 1
    partial = CloudMonitoring(scripted.url, APP, static_token_source(TOKEN))
    scripted.answers.append((200, {"timeSeries": [], "unreachable": ["us-central1"]}, 0.0))
    assert partial.response_counts("default", "v1", NOON, NOON + timedelta(minutes=1)) is None


def test_response_counts_read_every_page(scripted):
    def page(code: str, count: int, token: str = "") -> dict[str, Any]:
        series = {"metric": {"type": RESPONSE_COUNT_METRIC, "labels": {"response_code": code}},
                  "resource": {"type": "gae_app", "labels": {"project_id": APP}},
                  "metricKind": "DELTA", "valueType": "INT64",
                  "points": [{"interval": {"startTime": "2026-03-02T12:00:00Z",
                                           "endTime": "2026-03-02T12:01:00Z"},
                              "value": {"int64Value": str(count)}}]}
        return {"timeSeries": [series], **({"nextPageToken": token} if token else {})}

    scripted.answers += [(200, page("200", 40, "next"), 0.0), (200, page("503", 3), 0.0)]
    counts = CloudMonitoring(scripted.url, APP, static_token_source(TOKEN))
    assert counts.response_counts("default", "v2", NOON, NOON + timedelta(minutes=1)) == (43, 3)
    assert ("pageToken", "next") in scripted.seen[1]["args"]
    assert scripted.seen[0]["path"] == f"/v3/projects/{APP}/timeSeries"
