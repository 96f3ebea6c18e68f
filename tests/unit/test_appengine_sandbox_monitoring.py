"""The App Engine sandbox's apps.get, its clock, and Cloud Monitoring's timeSeries.list over real traffic.

Every answer a test receives is validated again here against the committed subsets (App Engine Admin
v1 and Monitoring v3), independently of the sandbox's own check. The counts Monitoring reports are
the answers the version servers really gave, so each test sends real requests and compares.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient import discovery as google_discovery

from sandbox.appengine import AppEngineApiError, AppEngineControl, AppEngineSandbox
from sandbox.appengine.discovery import MONITORING_SUBSET_PATH, Discovery
from sandbox.appengine.monitoring import RESPONSE_COUNT_METRIC
from tests.support.appengine import ResponseChecker, take_errors

ROOT = Path(__file__).resolve().parents[2]
APP = "agentops-local"
RUNTIME = "python312"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
METRIC_FILTER = f'metric.type = "{RESPONSE_COUNT_METRIC}"'


@pytest.fixture(scope="module")
def running() -> Iterator[AppEngineSandbox]:
    with AppEngineSandbox(app=APP, operation_delay=0, seed=7) as sandbox:
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
def control(sandbox: AppEngineSandbox, checker: ResponseChecker) -> Iterator[AppEngineControl]:
    session = requests.Session()
    session.hooks["response"].append(checker)
    client = AppEngineControl(sandbox.url, app=APP, session=session)
    yield client
    client.close()
    assert checker.problems == []


def deploy(control: AppEngineControl, service: str, *version_ids: str) -> None:
    for version_id in version_ids:
        control.wait(control.create_version(service, {"id": version_id, "runtime": RUNTIME}))


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def counts_query(start: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
    return {"filter": METRIC_FILTER, "interval.startTime": rfc3339(start), "interval.endTime": rfc3339(end),
            **extra}


def per_code(answer: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    """(version, response code, window end) => count, from a timeSeries.list answer."""
    found: dict[tuple[str, str, str], int] = {}
    for series in answer.get("timeSeries", []):
        version = series["resource"]["labels"].get("version_id", "*")
        code = series["metric"]["labels"].get("response_code", "*")
        for point in series["points"]:
            found[(version, code, point["interval"]["endTime"])] = int(point["value"]["int64Value"])
    return found


# The subset


def _load_script():
    spec = importlib.util.spec_from_file_location("appengine_discovery_subset",
                                                  ROOT / "scripts" / "appengine_discovery_subset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_monitoring_subset_is_what_the_script_makes_from_the_shipped_document():
    script = _load_script()
    documents = resources.files("googleapiclient").joinpath("discovery_cache", "documents")
    shipped = documents.joinpath("monitoring.v3.json")
    expected = script.subset(json.loads(shipped.read_text()), script.MONITORING_METHODS,
                             f"google-api-python-client=={metadata.version('google-api-python-client')}",
                             script.MONITORING)
    committed = json.loads(MONITORING_SUBSET_PATH.read_text())
    assert committed == json.loads(json.dumps(expected))
    assert "Cloud Monitoring API v3" in committed["$comment"]
    assert set(Discovery.monitoring().methods) == {"monitoring.projects.timeSeries.list"}
    api = google_discovery.build_from_document(committed, credentials=Credentials("t"))
    assert hasattr(api.projects().timeSeries(), "list")


def test_the_reserved_expansion_path_and_repeated_parameters_are_read_as_google_defines_them():
    checks = Discovery.monitoring()
    method, values = checks.match("GET", f"/v3/projects/{APP}/timeSeries")
    assert method.path == "v3/{+name}/timeSeries" and values == {"name": f"projects/{APP}"}
    params = checks.check_parameters(method, values, [
        ("aggregation.groupByFields", "metric.labels.response_code"),
        ("aggregation.groupByFields", "resource.labels.version_id"), ("pageSize", "5")])
    assert params["aggregation.groupByFields"] == ["metric.labels.response_code",
                                                   "resource.labels.version_id"]
    assert params["pageSize"] == 5
    assert checks.match("GET", f"/v3/organizations/{APP}/timeSeries") is not None  # matched, then refused:
    with pytest.raises(ValueError, match="does not match"):
        checks.check_parameters(method, {"name": f"organizations/{APP}"}, [])


# apps.get


def test_apps_get_names_the_default_hostname(sandbox, control, checker):
    application = control.get_application()
    assert application["name"] == f"apps/{APP}" and application["id"] == APP
    assert application["defaultHostname"] == f"{APP}.appspot.com"
    assert application["servingStatus"] == "SERVING"
    response = control.request("GET", f"v1/apps/{APP}",
                               params={"includeExtraData": "INCLUDE_EXTRA_DATA_NONE"})
    assert response.status_code == 200
    other = control.request("GET", "v1/apps/someone-else")
    assert other.status_code == 404
    assert checker.checked == 3
    assert len(take_errors(sandbox)) == 1


# The clock


def test_the_clock_stops_at_a_set_moment_stamps_operations_and_runs_again_on_null(sandbox, control):
    assert control.clock()["frozen"] is False
    assert control.set_clock(NOON) == {"now": "2026-03-02T12:00:00Z", "frozen": True}
    assert control.set_clock("2026-03-02T13:00:00.250+01:00")["now"] == "2026-03-02T12:00:00.25Z"
    operation = control.create_version("default", {"id": "v1", "runtime": RUNTIME})
    assert operation["metadata"]["insertTime"].startswith("2026-03-02T12:00:00.25")
    done = control.wait(operation)
    assert done["metadata"]["endTime"].startswith("2026-03-02T12:00:00.25")
    assert done["response"]["createTime"].startswith("2026-03-02T12:00:00.25")
    assert control.state()["clock"]["frozen"] is True
    real = control.set_clock(None)
    assert real["frozen"] is False
    assert abs(datetime.fromisoformat(real["now"]) - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_reset_lets_the_clock_run_again(sandbox, control):
    control.set_clock(NOON)
    control.reset()
    assert control.clock()["frozen"] is False


@pytest.mark.parametrize("body", [{"now": "noon"}, {"now": "2026-03-02T12:00:00"}, {"when": None}, {}, [1],
                                  {"now": 5}])
def test_an_invalid_clock_is_refused(sandbox, control, body):
    response = control.request("POST", "_sandbox/clock", json=body)
    assert response.status_code == 400 and response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(take_errors(sandbox)) == 1
    assert control.clock()["frozen"] is False


# timeSeries.list


def test_counts_are_per_version_minute_and_status_of_what_the_router_really_served(sandbox, control):
    deploy(control, "default", "v1", "v2")
    control.wait(control.set_split("default", {"v1": 0.5, "v2": 0.5}))
    control.set_faults("default", "v2", error_rate=0.4)
    router = control.router_url("default")
    control.set_clock(NOON + timedelta(seconds=20))
    with requests.Session() as session:
        first = [session.get(router, timeout=5) for _ in range(60)]
        control.set_clock(NOON + timedelta(minutes=1, seconds=5))
        second = [session.get(router, timeout=5) for _ in range(30)]
    served = Counter((answer.headers.get("X-Version") or answer.json()["version"], answer.status_code)
                     for answer in first)
    assert served[("v2", 500)] > 0 and served[("v1", 500)] == 0

    minute = control.list_time_series(counts_query(NOON, NOON + timedelta(minutes=1), **{
        "aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_DELTA"}))
    end = "2026-03-02T12:01:00Z"
    assert per_code(minute) == {(version, str(code), end): count for (version, code), count in served.items()}
    series = minute["timeSeries"][0]
    assert series["metric"]["type"] == RESPONSE_COUNT_METRIC and series["resource"]["type"] == "gae_app"
    assert series["metricKind"] == "DELTA" and series["valueType"] == "INT64"
    assert series["points"][0]["interval"] == {"startTime": "2026-03-02T12:00:00Z", "endTime": end}
    assert set(series["resource"]["labels"]) == {"project_id", "module_id", "version_id"}

    # Two minutes, one window each, newest first; the second minute has only the later requests.
    both = control.list_time_series(counts_query(NOON, NOON + timedelta(minutes=2), **{
        "aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_DELTA",
        "aggregation.crossSeriesReducer": "REDUCE_SUM",
        "aggregation.groupByFields": "resource.labels.version_id"}))
    later = Counter(answer.headers["X-Version"] for answer in second)
    by_version = per_code(both)
    for version in ("v1", "v2"):
        assert by_version[(version, "*", end)] == sum(n for (v, _), n in served.items() if v == version)
        assert by_version.get((version, "*", "2026-03-02T12:02:00Z"), 0) == later[version]
    for item in both["timeSeries"]:
        ends = [point["interval"]["endTime"] for point in item["points"]]
        assert ends == sorted(ends, reverse=True)
    # The state's lifetime counters agree with Monitoring.
    versions = control.state()["services"]["default"]["versions"]
    assert versions["v2"]["requests"] == sum(n for (v, _, _), n in by_version.items() if v == "v2")


def test_raw_points_reductions_and_filters(sandbox, control):
    deploy(control, "default", "v1")
    deploy(control, "api", "a1")
    control.set_clock(NOON + timedelta(seconds=1))
    url = control.get_version("default", "v1", view="FULL")["versionUrl"]
    api_router = control.router_url("api")
    with requests.Session() as session:
        codes = Counter(session.get(f"{url}{path}", timeout=5).status_code
                        for path in ["/"] * 5 + ["/nope"] * 2)
        control.set_clock(NOON + timedelta(minutes=2, seconds=1))
        session.get(f"{url}/", timeout=5)
        session.get(api_router, timeout=5)
    assert codes == {200: 5, 404: 2}
    window = (NOON - timedelta(minutes=5), NOON + timedelta(minutes=5))

    juxtaposed = f'{METRIC_FILTER} resource.labels.module_id = "default" AND metric.label.response_code=200'
    raw = control.list_time_series(counts_query(*window, filter=juxtaposed))
    assert per_code(raw) == {("v1", "200", "2026-03-02T12:03:00Z"): 1,
                             ("v1", "200", "2026-03-02T12:01:00Z"): 5}
    assert [p["interval"]["startTime"] for p in raw["timeSeries"][0]["points"]] == [
        "2026-03-02T12:02:00Z", "2026-03-02T12:00:00Z"]

    errors_only = control.list_time_series(counts_query(*window, filter=f"{METRIC_FILTER} AND "
                                                                        "metric.labels.response_code >= 400"))
    assert per_code(errors_only) == {("v1", "404", "2026-03-02T12:01:00Z"): 2}

    total = control.list_time_series(counts_query(*window, **{
        "aggregation.alignmentPeriod": "600s", "aggregation.perSeriesAligner": "ALIGN_SUM",
        "aggregation.crossSeriesReducer": "REDUCE_SUM"}))
    assert len(total["timeSeries"]) == 1
    only = total["timeSeries"][0]
    assert only["resource"]["labels"] == {"project_id": APP} and only["metric"]["labels"] == {}
    assert [p["value"]["int64Value"] for p in only["points"]] == ["9"]

    headers = control.list_time_series(counts_query(*window, view="HEADERS"))
    assert len(headers["timeSeries"]) == 3 and all("points" not in s for s in headers["timeSeries"])
    nothing = control.list_time_series(counts_query(NOON + timedelta(hours=1), NOON + timedelta(hours=2)))
    assert nothing == {}


def test_series_come_in_pages(sandbox, control):
    deploy(control, "default", "v1", "v2", "v3")
    control.set_clock(NOON)
    for version in ("v1", "v2", "v3"):
        requests.get(control.get_version("default", version, view="FULL")["versionUrl"], timeout=5)
    seen, token, pages = [], None, 0
    while True:
        params = counts_query(NOON, NOON + timedelta(minutes=1), pageSize=2)
        if token:
            params["pageToken"] = token
        page = control.list_time_series(params)
        pages += 1
        seen += [series["resource"]["labels"]["version_id"] for series in page["timeSeries"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert (sorted(seen), pages) == (["v1", "v2", "v3"], 2)


def test_counts_outlive_the_version_and_reset_forgets_them(sandbox, control):
    deploy(control, "default", "v1", "v2")
    control.set_clock(NOON)
    v2 = control.get_version("default", "v2", view="FULL")["versionUrl"]
    requests.get(v2, timeout=5)
    control.wait(control.delete_version("default", "v2"))
    query = counts_query(NOON, NOON + timedelta(minutes=1), filter=f'{METRIC_FILTER} AND '
                                                                   'resource.labels.version_id = "v2"')
    assert per_code(control.list_time_series(query)) == {("v2", "200", "2026-03-02T12:01:00Z"): 1}
    control.reset()
    deploy(control, "default", "v1")
    assert control.list_time_series(query) == {}


MONITORING_INVALID = [
    # (id, params, status, fragment)
    ("no-filter", {"interval.endTime": "2026-03-02T12:00:00Z"}, 400, "filter is required"),
    ("no-end-time", {"filter": METRIC_FILTER}, 400, "interval.endTime is required"),
    ("other-metric", {"filter": 'metric.type = "appengine.googleapis.com/system/cpu/usage"',
                      "interval.endTime": "2026-03-02T12:00:00Z"}, 400, "serves only"),
    ("no-metric", {"filter": 'resource.type = "gae_app"', "interval.endTime": "2026-03-02T12:00:00Z"}, 400,
     "single metric type"),
    ("or-filter", {"filter": f'{METRIC_FILTER} OR resource.type = "gae_app"',
                   "interval.endTime": "2026-03-02T12:00:00Z"}, 400, "not served by the sandbox"),
    ("start-after-end", {"filter": METRIC_FILTER, "interval.startTime": "2026-03-02T13:00:00Z",
                         "interval.endTime": "2026-03-02T12:00:00Z"}, 400, "must not be later"),
    ("bad-time", {"filter": METRIC_FILTER, "interval.endTime": "today"}, 400, "interval.endTime"),
    ("short-period", {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z",
                      "aggregation.alignmentPeriod": "30s", "aggregation.perSeriesAligner": "ALIGN_DELTA"},
     400, "at least 60 seconds"),
    ("aligner-without-period", {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z",
                                "aggregation.perSeriesAligner": "ALIGN_DELTA"}, 400,
     "alignmentPeriod is required"),
    ("reducer-without-aligner", {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z",
                                 "aggregation.crossSeriesReducer": "REDUCE_SUM"}, 400, "ALIGN_NONE"),
    ("unserved-aligner", {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z",
                          "aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_RATE"},
     400, "ALIGN_RATE is not served"),
    ("unknown-aligner", {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z",
                         "aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_FAST"},
     400, "aggregation.perSeriesAligner"),
    ("order-by", {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z", "orderBy": "x"}, 400,
     "orderBy is not served"),
    ("unknown-parameter", {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z", "limit": "2"},
     400, "Unknown name \"limit\""),
]


@pytest.mark.parametrize(("params", "status", "fragment"), [case[1:] for case in MONITORING_INVALID],
                         ids=[case[0] for case in MONITORING_INVALID])
def test_invalid_monitoring_queries_are_refused_and_recorded(sandbox, control, params, status, fragment):
    with pytest.raises(AppEngineApiError) as refused:
        control.list_time_series(params)
    assert refused.value.code == status and fragment in refused.value.message
    recorded = take_errors(sandbox)
    assert len(recorded) == 1 and "/v3/projects/" in recorded[0]


def test_monitoring_needs_auth_and_the_apps_project(sandbox, control):
    params = {"filter": METRIC_FILTER, "interval.endTime": "2026-03-02T12:00:00Z"}
    unauthenticated = control.request("GET", f"v3/projects/{APP}/timeSeries", params=params, token=None)
    other = control.request("GET", "v3/projects/other-project/timeSeries", params=params)
    assert (unauthenticated.status_code, other.status_code) == (401, 404)
    assert len(take_errors(sandbox)) == 2


def test_the_google_api_python_client_reads_the_sandboxs_monitoring(sandbox, control):
    deploy(control, "default", "v1")
    control.set_clock(NOON)
    requests.get(control.router_url("default"), timeout=5)
    api = google_discovery.build("monitoring", "v3", static_discovery=True, cache_discovery=False,
                                 credentials=Credentials("sandbox-token"),
                                 client_options={"api_endpoint": sandbox.url})
    answer = api.projects().timeSeries().list(
        name=f"projects/{APP}", filter=METRIC_FILTER, interval_startTime="2026-03-02T12:00:00Z",
        interval_endTime="2026-03-02T12:01:00Z", aggregation_alignmentPeriod="60s",
        aggregation_perSeriesAligner="ALIGN_DELTA", aggregation_crossSeriesReducer="REDUCE_SUM",
        aggregation_groupByFields=["metric.labels.response_code", "resource.labels.version_id"]).execute()
    assert per_code(answer) == {("v1", "200", "2026-03-02T12:01:00Z"): 1}
