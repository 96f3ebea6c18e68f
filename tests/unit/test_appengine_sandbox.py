"""The App Engine sandbox answers as the Admin API v1 discovery document says, and its versions really serve.

Everything runs on loopback. Every Admin API response a test receives is validated again here, against
the committed subset, independently of the sandbox's own check.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient import discovery as google_discovery
from googleapiclient.errors import HttpError

from sandbox.appengine import AppEngineApiError, AppEngineControl, AppEngineSandbox
from sandbox.appengine.discovery import SUBSET_PATH, Discovery
from tests.support.appengine import ResponseChecker, take_errors

ROOT = Path(__file__).resolve().parents[2]
APP = "agentops-local"
DELAY = 0.2
RUNTIME = "python312"


@pytest.fixture(scope="module")
def running() -> Iterator[AppEngineSandbox]:
    with AppEngineSandbox(app=APP, operation_delay=DELAY, seed=20240601) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(running: AppEngineSandbox) -> Iterator[AppEngineSandbox]:
    running.reset()
    running.operation_delay = DELAY
    yield running
    assert running.errors == [], "unexpected refusals; a test that expects one takes it with take_errors"


@pytest.fixture
def checker() -> ResponseChecker:
    return ResponseChecker()


@pytest.fixture
def control(sandbox: AppEngineSandbox, checker: ResponseChecker) -> Iterator[AppEngineControl]:
    session = requests.Session()
    session.hooks["response"].append(checker)
    client = AppEngineControl(sandbox.url, app=APP, session=session)
    yield client
    client.close()
    assert checker.problems == []


def deploy(control: AppEngineControl, service: str, *version_ids: str) -> dict[str, dict[str, Any]]:
    """Create the versions and wait for each; returns their Version resources by id."""
    operations = {version_id: control.create_version(service, {"id": version_id, "runtime": RUNTIME})
                  for version_id in version_ids}
    return {version_id: control.wait(operation)["response"] for version_id, operation in operations.items()}


@pytest.fixture
def two_versions(sandbox: AppEngineSandbox, control: AppEngineControl) -> dict[str, dict[str, Any]]:
    """v1 (with all the traffic) and v2 in the default service, created at once; later operations wait."""
    sandbox.operation_delay = 0
    versions = deploy(control, "default", "v1", "v2")
    sandbox.operation_delay = DELAY
    return versions


# The subset and its translation


def _load_script():
    spec = importlib.util.spec_from_file_location("appengine_discovery_subset",
                                                  ROOT / "scripts" / "appengine_discovery_subset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_subset_is_what_the_script_makes_from_the_shipped_document():
    script = _load_script()
    shipped = resources.files("googleapiclient").joinpath("discovery_cache", "documents", "appengine.v1.json")
    from importlib import metadata

    expected = script.subset(json.loads(shipped.read_text()), script.METHODS,
                             f"google-api-python-client=={metadata.version('google-api-python-client')}")
    committed = json.loads(SUBSET_PATH.read_text())
    assert committed == json.loads(json.dumps(expected))
    assert "google-api-python-client" in committed["$comment"]
    # The subset is a discovery document the real client can build from.
    api = google_discovery.build_from_document(committed, credentials=Credentials("t"))
    assert hasattr(api.apps().services().versions(), "create")


SCHEMA_CASES = [
    ("unknown-top-level-field", "Version", {"id": "v1", "colour": "blue"},
     "Unknown name \"colour\" at 'version'"),
    ("unknown-nested-field", "Version", {"automaticScaling": {"maxInstance": 2}},
     "'version.automaticScaling'"),
    ("enum", "Version", {"servingStatus": "RUNNING"}, "'version.servingStatus'"),
    ("int32-as-string", "Version", {"automaticScaling": {"maxTotalInstances": "2"}},
     "is not of type 'integer'"),
    ("int64-not-digits", "Version", {"diskUsageBytes": "12kb"}, "'version.diskUsageBytes'"),
    ("datetime", "Version", {"createTime": "yesterday"}, "'version.createTime'"),
    ("duration", "Version", {"defaultExpiration": "10 minutes"}, "'version.defaultExpiration'"),
    ("array-items", "Version", {"inboundServices": ["INBOUND_SERVICE_WARMUP", "FAX"]},
     "'version.inboundServices[1]'"),
    ("map-values", "Service", {"split": {"allocations": {"v1": "all"}}}, "'service.split.allocations.v1'"),
    ("not-an-object", "Service", [], "is not of type 'object'"),
]


@pytest.mark.parametrize(("schema", "value", "fragment"), [case[1:] for case in SCHEMA_CASES],
                         ids=[case[0] for case in SCHEMA_CASES])
def test_translated_schemas_refuse_what_the_discovery_document_forbids(schema, value, fragment):
    errors = Discovery.load().schema_errors(schema, value)
    assert errors and fragment in errors[0]


def test_translated_schemas_accept_a_full_version_and_free_form_metadata():
    checks = Discovery.load()
    version = {
        "id": "v1", "runtime": RUNTIME, "env": "standard", "servingStatus": "SERVING",
        "automaticScaling": {"maxTotalInstances": 2, "minPendingLatency": "0.5s"},
        "envVariables": {"MODE": "x"},
        "deployment": {"zip": {"sourceUrl": "https://storage.googleapis.com/b/app.zip", "filesCount": 3}},
        "handlers": [{"urlRegex": "/.*", "script": {"scriptPath": "auto"}, "securityLevel": "SECURE_ALWAYS"}],
        "diskUsageBytes": "1024", "createTime": "2026-01-01T00:00:00Z",
    }
    assert checks.schema_errors("Version", version) == []
    assert checks.schema_errors("Operation", {"metadata": {"anything": [1, {"x": None}]}}) == []


def test_operation_payloads_are_checked_against_the_schema_their_type_names():
    checks = Discovery.load()
    good = {"name": "apps/a/operations/1", "done": True,
            "metadata": {"@type": "type.googleapis.com/google.appengine.v1.OperationMetadataV1",
                         "target": "apps/a/services/default"},
            "response": {"@type": "type.googleapis.com/google.appengine.v1.Version", "id": "v1"}}
    assert checks.payload_errors(good) == []
    bad_metadata = {**good, "metadata": {**good["metadata"], "progress": 50}}
    unknown_type = {**good, "response": {"@type": "type.googleapis.com/google.appengine.v1.Build"}}
    assert "Unknown name \"progress\"" in checks.payload_errors(bad_metadata)[0]
    assert "unknown @type" in checks.payload_errors(unknown_type)[0]


def test_a_response_that_breaks_the_document_is_a_500_and_recorded(sandbox, control, monkeypatch):
    monkeypatch.setitem(sandbox._handlers, "appengine.apps.services.list",
                        lambda params, body: {"services": [{"id": "default", "colour": "red"}]})
    response = control.request("GET", f"v1/apps/{APP}/services")
    assert response.status_code == 500 and response.json()["error"]["status"] == "INTERNAL"
    recorded = take_errors(sandbox)
    assert len(recorded) == 1 and recorded[0].startswith(f"response to GET /v1/apps/{APP}/services")


# Versions, operations and traffic


def test_created_versions_are_done_after_the_delay_and_serve_on_their_own_urls(sandbox, control, checker):
    started = time.monotonic()
    operation = control.create_version("default", {"id": "v1", "runtime": RUNTIME})
    assert operation["name"].startswith(f"apps/{APP}/operations/")
    assert "done" not in operation  # proto3 JSON leaves out a false `done`, as the real API does
    assert operation["metadata"]["@type"] == "type.googleapis.com/google.appengine.v1.OperationMetadataV1"
    assert operation["metadata"]["method"] == "google.appengine.v1.Versions.CreateVersion"
    assert control.get_operation(operation["name"]).get("done") is None
    done = control.wait(operation)
    assert time.monotonic() - started >= DELAY
    assert done["done"] is True and "endTime" in done["metadata"]
    second = control.wait(control.create_version("default", {"id": "v2", "runtime": RUNTIME}))

    versions = {"v1": done["response"], "v2": second["response"]}
    assert versions["v1"]["@type"] == "type.googleapis.com/google.appengine.v1.Version"
    assert versions["v1"]["versionUrl"] != versions["v2"]["versionUrl"]
    for version_id, version in versions.items():
        health = requests.get(f"{version['versionUrl']}/health", timeout=5)
        assert (health.status_code, health.json()) == (200, {"status": "ok", "version": version_id})
        assert health.headers["X-Version"] == version_id
        root = requests.get(version["versionUrl"], timeout=5)
        assert (root.status_code, root.text, root.headers["X-Version"]) == (200, version_id, version_id)
        fetched = control.get_version("default", version_id)
        assert fetched["name"] == f"apps/{APP}/services/default/versions/{version_id}"
        assert fetched["servingStatus"] == "SERVING" and fetched["versionUrl"] == version["versionUrl"]
    # The first version of a new service takes all of its traffic; later ones take none until a patch.
    assert control.get_service("default")["split"] == {"allocations": {"v1": 1.0}}
    assert checker.checked >= 8


def test_a_split_routes_about_its_share_of_requests_through_the_router(sandbox, control, two_versions):
    operation = control.set_split("default", {"v1": 0.9, "v2": 0.1}, shard_by="RANDOM")
    assert control.get_service("default")["split"] == {"allocations": {"v1": 1.0}}  # not applied until done
    finished = control.wait(operation)
    assert finished["response"]["split"] == {"allocations": {"v1": 0.9, "v2": 0.1}, "shardBy": "RANDOM"}
    assert finished["metadata"]["method"] == "google.appengine.v1.Services.UpdateService"

    router = control.router_url("default")
    with requests.Session() as session:
        answers = [session.get(f"{router}/", timeout=5) for _ in range(200)]
        pinned = session.get(f"{router}/health", headers={"X-Sandbox-Version": "v2"}, timeout=5)
        missing = session.get(f"{router}/", headers={"X-Sandbox-Version": "v9"}, timeout=5)
    assert all(answer.status_code == 200 and answer.headers["X-Version"] == answer.text for answer in answers)
    served = Counter(answer.text for answer in answers)
    assert 155 <= served["v1"] <= 195 and served["v1"] + served["v2"] == 200
    assert pinned.json() == {"status": "ok", "version": "v2"}
    assert missing.status_code == 404
    counters = {version_id: version["requests"]
                for version_id, version in control.state()["services"]["default"]["versions"].items()}
    assert counters == {"v1": served["v1"], "v2": served["v2"] + 1}


INVALID = [
    # (id, method, path, params, body, token, status, error status, message fragment)
    ("split-sum-not-one", "PATCH", "v1/apps/agentops-local/services/default", {"updateMask": "split"},
     {"split": {"allocations": {"v1": 0.5, "v2": 0.4}}}, "", 400, "INVALID_ARGUMENT", "must sum to 1"),
    ("split-unknown-version", "PATCH", "v1/apps/agentops-local/services/default", {"updateMask": "split"},
     {"split": {"allocations": {"v1": 0.5, "v9": 0.5}}}, "", 400, "INVALID_ARGUMENT", "Unknown version 'v9'"),
    ("split-unknown-body-field", "PATCH", "v1/apps/agentops-local/services/default", {"updateMask": "split"},
     {"split": {"allocations": {"v1": 1}}, "traffic": 1}, "", 400, "INVALID_ARGUMENT",
     "Unknown name \"traffic\" at 'service'"),
    ("split-bad-update-mask", "PATCH", "v1/apps/agentops-local/services/default", {"updateMask": "labels"},
     {"split": {"allocations": {"v1": 1}}}, "", 400, "INVALID_ARGUMENT", "updateMask path 'labels'"),
    ("split-no-update-mask", "PATCH", "v1/apps/agentops-local/services/default", None,
     {"split": {"allocations": {"v1": 1}}}, "", 400, "INVALID_ARGUMENT", "updateMask is required"),
    ("split-unknown-shard-by", "PATCH", "v1/apps/agentops-local/services/default", {"updateMask": "split"},
     {"split": {"allocations": {"v1": 1}, "shardBy": "ROUND_ROBIN"}}, "", 400, "INVALID_ARGUMENT",
     "'service.split.shardBy'"),
    ("split-ip-three-decimals", "PATCH", "v1/apps/agentops-local/services/default", {"updateMask": "split"},
     {"split": {"allocations": {"v1": 0.995, "v2": 0.005}, "shardBy": "IP"}}, "", 400, "INVALID_ARGUMENT",
     "more than 2 decimal places"),
    ("split-no-allocations", "PATCH", "v1/apps/agentops-local/services/default", {"updateMask": "split"},
     {"split": {"shardBy": "RANDOM"}}, "", 400, "INVALID_ARGUMENT", "at least one version"),
    ("create-unknown-field", "POST", "v1/apps/agentops-local/services/default/versions", None,
     {"id": "v3", "runtime": RUNTIME, "scaling": "auto"}, "", 400, "INVALID_ARGUMENT",
     "Unknown name \"scaling\" at 'version'"),
    ("create-bad-version-id", "POST", "v1/apps/agentops-local/services/default/versions", None,
     {"id": "Release_3", "runtime": RUNTIME}, "", 400, "INVALID_ARGUMENT", "Invalid version id"),
    ("create-reserved-version-id", "POST", "v1/apps/agentops-local/services/default/versions", None,
     {"id": "ah-builtin", "runtime": RUNTIME}, "", 400, "INVALID_ARGUMENT", "Invalid version id"),
    ("create-no-runtime", "POST", "v1/apps/agentops-local/services/default/versions", None,
     {"id": "v3"}, "", 400, "INVALID_ARGUMENT", "runtime is required"),
    ("create-duplicate", "POST", "v1/apps/agentops-local/services/default/versions", None,
     {"id": "v1", "runtime": RUNTIME}, "", 409, "ALREADY_EXISTS", "already exists"),
    ("create-without-auth", "POST", "v1/apps/agentops-local/services/default/versions", None,
     {"id": "v3", "runtime": RUNTIME}, None, 401, "UNAUTHENTICATED", "authentication credential"),
    ("get-without-auth", "GET", "v1/apps/agentops-local/services/default", None, None, None, 401,
     "UNAUTHENTICATED", "authentication credential"),
    ("delete-with-traffic", "DELETE", "v1/apps/agentops-local/services/default/versions/v1", None, None, "",
     400, "FAILED_PRECONDITION", "traffic allocation"),
    ("unknown-query-parameter", "GET", "v1/apps/agentops-local/services/default/versions", {"limit": "2"},
     None, "", 400, "INVALID_ARGUMENT", "Unknown name \"limit\""),
    ("page-size-not-integer", "GET", "v1/apps/agentops-local/services/default/versions", {"pageSize": "two"},
     None, "", 400, "INVALID_ARGUMENT", "TYPE_INT32"),
    ("view-not-in-enum", "GET", "v1/apps/agentops-local/services/default/versions/v1", {"view": "ALL"},
     None, "", 400, "INVALID_ARGUMENT", "'view'"),
    ("body-on-get", "GET", "v1/apps/agentops-local/services/default", None, {"id": "default"}, "", 400,
     "INVALID_ARGUMENT", "takes no request body"),
    ("unknown-app", "GET", "v1/apps/other-app/services/default", None, None, "", 404, "NOT_FOUND",
     "apps/other-app"),
    ("unknown-version", "GET", "v1/apps/agentops-local/services/default/versions/v9", None, None, "", 404,
     "NOT_FOUND", "versions/v9"),
    ("unknown-operation", "GET", "v1/apps/agentops-local/operations/nope", None, None, "", 404, "NOT_FOUND",
     "operations/nope"),
    ("unknown-method", "POST", "v1/apps/agentops-local/services/default", None, None, "", 404, "NOT_FOUND",
     "not defined"),
]


@pytest.mark.parametrize(("method", "path", "params", "body", "token", "status", "error_status", "fragment"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_requests_are_refused_in_googles_shape_and_recorded(
        sandbox, control, two_versions, method, path, params, body, token, status, error_status, fragment):
    response = control.request(method, path, params=params, json=body, token=token)
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["status"]) == (status, status, error_status)
    assert fragment in error["message"]
    recorded = take_errors(sandbox)
    assert len(recorded) == 1 and fragment in recorded[0] and path in recorded[0]
    # Nothing changed: the split is still all on v1 and no third version appeared.
    assert control.get_service("default")["split"] == {"allocations": {"v1": 1.0}}
    assert [v["id"] for v in control.list_versions("default")["versions"]] == ["v1", "v2"]


def test_malformed_json_is_refused(sandbox, control):
    response = control.request("POST", f"v1/apps/{APP}/services/default/versions", headers={
        "Content-Type": "application/json"}, json=None)
    assert response.status_code == 400  # an empty body is an empty Version: no id
    raw = requests.post(f"{sandbox.url}/v1/apps/{APP}/services/default/versions", data=b"{not json",
                        headers={"Authorization": "Bearer t", "Content-Type": "application/json"}, timeout=5)
    assert raw.status_code == 400 and raw.json()["error"]["message"].startswith("Invalid JSON payload")
    assert len(take_errors(sandbox)) == 2


def test_the_first_service_of_an_app_must_be_default(sandbox, control):
    with pytest.raises(AppEngineApiError) as refused:
        control.create_version("web", {"id": "v1", "runtime": RUNTIME})
    assert refused.value.code == 400 and "default service" in refused.value.message
    take_errors(sandbox)
    deploy(control, "default", "v1")
    deploy(control, "web", "v1")
    assert [s["id"] for s in control.list_services()["services"]] == ["default", "web"]
    assert control.router_url("web") != control.router_url("default")


def test_versions_and_services_list_in_pages(sandbox, control):
    sandbox.operation_delay = 0
    deploy(control, "default", "v5", "v1", "v4", "v2", "v3")
    deploy(control, "api", "v1")
    deploy(control, "web", "v1")
    seen, token, pages = [], None, 0
    while True:
        page = control.list_versions("default", page_size=2, page_token=token)
        pages += 1
        seen += [version["id"] for version in page["versions"]]
        assert len(page["versions"]) <= 2
        token = page.get("nextPageToken")
        if not token:
            break
    assert (seen, pages) == (["v1", "v2", "v3", "v4", "v5"], 3)
    first = control.list_services(page_size=2)
    second = control.list_services(page_token=first["nextPageToken"])
    assert [s["id"] for s in first["services"]] == ["api", "default"]
    assert [s["id"] for s in second["services"]] == ["web"] and "nextPageToken" not in second
    assert control.list_versions("api", page_size=5) == {"versions": [control.get_version("api", "v1")]}
    with pytest.raises(AppEngineApiError) as refused:
        control.list_versions("default", page_token="not-a-token")
    assert refused.value.code == 400
    assert len(take_errors(sandbox)) == 1


def test_full_view_shows_what_basic_leaves_out(sandbox, control):
    sandbox.operation_delay = 0
    body = {"id": "v1", "runtime": RUNTIME, "envVariables": {"MODE": "canary"},
            "deployment": {"zip": {"sourceUrl": "https://storage.googleapis.com/b/app.zip"}},
            "versionUrl": "https://ignored.example.com"}
    created = control.wait(control.create_version("default", body))["response"]
    assert created["versionUrl"].startswith("http://127.0.0.1:")  # output-only input is ignored
    basic = control.get_version("default", "v1")
    full = control.get_version("default", "v1", view="FULL")
    assert "envVariables" not in basic and "deployment" not in basic
    assert full["envVariables"] == {"MODE": "canary"} and full["deployment"] == body["deployment"]


def test_delete_stops_the_versions_server(sandbox, control, two_versions):
    v2_url = two_versions["v2"]["versionUrl"]
    assert requests.get(f"{v2_url}/health", timeout=5).status_code == 200
    operation = control.delete_version("default", "v2")
    assert operation["metadata"]["method"] == "google.appengine.v1.Versions.DeleteVersion"
    finished = control.wait(operation)
    assert finished["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{v2_url}/health", timeout=2)
    with pytest.raises(AppEngineApiError) as gone:
        control.get_version("default", "v2")
    assert gone.value.code == 404
    assert [version["id"] for version in control.list_versions("default")["versions"]] == ["v1"]
    assert len(take_errors(sandbox)) == 1


def test_a_deleted_version_cannot_be_given_traffic_while_its_delete_runs(sandbox, control, two_versions):
    control.delete_version("default", "v2")
    with pytest.raises(AppEngineApiError) as refused:
        control.set_split("default", {"v1": 0.5, "v2": 0.5})
    assert refused.value.code == 400 and "Unknown version 'v2'" in refused.value.message
    assert len(take_errors(sandbox)) == 1


# Faults


def test_unhealthy_fault_fails_health_only_until_cleared(sandbox, control, two_versions):
    url = two_versions["v1"]["versionUrl"]
    assert control.set_faults("default", "v1", unhealthy=True)["unhealthy"] is True
    health = requests.get(f"{url}/health", timeout=5)
    assert (health.status_code, health.json()) == (503, {"status": "unhealthy", "version": "v1"})
    assert health.headers["X-Version"] == "v1"
    assert requests.get(url, timeout=5).status_code == 200
    assert requests.get(f"{two_versions['v2']['versionUrl']}/health", timeout=5).status_code == 200
    control.clear_faults("default", "v1")
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    counters = control.state()["services"]["default"]["versions"]["v1"]
    assert (counters["requests"], counters["errors"]) == (3, 1)


def test_latency_fault_delays_every_answer(sandbox, control, two_versions):
    url = two_versions["v2"]["versionUrl"]
    control.set_faults("default", "v2", latency_ms=300)
    started = time.monotonic()
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3
    control.set_faults("default", "v2", unhealthy=True)  # faults add up
    assert control.state()["services"]["default"]["versions"]["v2"]["faults"] == {
        "unhealthy": True, "latency_ms": 300, "error_rate": 0.0}
    control.clear_faults("default", "v2")
    started = time.monotonic()
    requests.get(f"{url}/health", timeout=5)
    assert time.monotonic() - started < 0.3


def test_error_rate_fault_fails_about_that_share_of_requests(sandbox, control, two_versions):
    url = two_versions["v1"]["versionUrl"]
    control.set_faults("default", "v1", error_rate=0.5)
    with requests.Session() as session:
        statuses = Counter(session.get(url, timeout=5).status_code for _ in range(200))
    assert set(statuses) == {200, 500}
    assert 70 <= statuses[500] <= 130
    assert control.state()["services"]["default"]["versions"]["v1"]["errors"] == statuses[500]


def test_invalid_faults_are_refused(sandbox, control, two_versions):
    for path, body, status in [
        (f"_sandbox/apps/{APP}/services/default/versions/v1/faults", {"error_rate": 1.5}, 400),
        (f"_sandbox/apps/{APP}/services/default/versions/v1/faults", {"slow": True}, 400),
        (f"_sandbox/apps/{APP}/services/default/versions/v1/faults", {}, 400),
        (f"_sandbox/apps/{APP}/services/default/versions/v9/faults", {"unhealthy": True}, 404),
    ]:
        response = control.request("POST", path, json=body)
        assert response.status_code == status and response.json()["error"]["code"] == status
    assert len(take_errors(sandbox)) == 4


# Control API and reset


def test_state_reports_the_split_and_reset_stops_everything(sandbox, control, two_versions):
    router = control.router_url("default")
    assert requests.get(router, timeout=5).text == "v1"
    state = control.state()
    assert state["app"] == APP and state["operation_delay"] == DELAY
    service = state["services"]["default"]
    assert service["router_url"] == router and service["split"] == {"allocations": {"v1": 1.0}}
    assert service["versions"]["v1"]["requests"] == 1 and service["versions"]["v2"]["requests"] == 0
    assert state["operations"] == {"pending": 0, "done": 2}
    control.reset()
    assert control.state()["services"] == {}
    for url in (router, two_versions["v1"]["versionUrl"]):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
    with pytest.raises(AppEngineApiError):
        control.router_url("default")
    assert control.errors() == ["GET /_sandbox/services/default: 404 Requested entity was not found: "
                                "service default"]
    take_errors(sandbox)


# The real client


def test_the_google_api_python_client_drives_the_sandbox(sandbox):
    api = google_discovery.build("appengine", "v1", static_discovery=True, cache_discovery=False,
                                 credentials=Credentials("sandbox-token"),
                                 client_options={"api_endpoint": sandbox.url})
    versions = api.apps().services().versions()
    for version_id in ("v1", "v2"):
        operation = versions.create(appsId=APP, servicesId="default",
                                    body={"id": version_id, "runtime": RUNTIME}).execute()
        while not operation.get("done"):
            time.sleep(0.05)
            operation = api.apps().operations().get(
                appsId=APP, operationsId=operation["name"].rsplit("/", 1)[1]).execute()
    patch = api.apps().services().patch(appsId=APP, servicesId="default", updateMask="split", body={
        "split": {"allocations": {"v1": 0.5, "v2": 0.5}, "shardBy": "RANDOM"}}).execute()
    assert "done" not in patch
    listed = versions.list(appsId=APP, servicesId="default", pageSize=1).execute()
    assert [v["id"] for v in listed["versions"]] == ["v1"] and listed["nextPageToken"]
    with pytest.raises(HttpError) as refused:
        api.apps().services().patch(appsId=APP, servicesId="default", updateMask="split", body={
            "split": {"allocations": {"v1": 0.7, "v2": 0.7}}}).execute()
    assert refused.value.status_code == 400
    assert json.loads(refused.value.content)["error"]["status"] == "INVALID_ARGUMENT"
    assert "must sum to 1" in take_errors(sandbox)[0]
    time.sleep(DELAY + 0.2)
    service = api.apps().services().get(appsId=APP, servicesId="default").execute()
    assert service["split"] == {"allocations": {"v1": 0.5, "v2": 0.5}, "shardBy": "RANDOM"}


# The runner


def test_runner_prints_its_url_serves_and_stops_every_version_on_ctrl_c():
    process = subprocess.Popen([sys.executable, "-m", "sandbox.appengine", "--port", "0",
                                "--operation-delay", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first, second = process.stdout.readline().strip(), process.stdout.readline().strip()
        assert first.startswith("appengine sandbox: http://127.0.0.1:"), first + process.stderr.read()
        assert second == "ready"
        control = AppEngineControl(first.split(": ", 1)[1])
        version_url = control.wait(control.create_version("default", {"id": "v1", "runtime": RUNTIME})
                                   )["response"]["versionUrl"]
        assert requests.get(f"{version_url}/health", timeout=5).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{version_url}/health", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        process.stderr.close()
