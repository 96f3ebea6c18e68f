"""Cloud Monitoring for the canary analysis: how many requests one App Engine version answered, and how
many of those were server errors, over an interval.

The source is App Engine's built-in metric `appengine.googleapis.com/http/server/response_count` (a
DELTA count on the `gae_app` resource, whose labels `module_id` and `version_id` name the service and
version, labelled by `response_code`), read with `projects.timeSeries.list`: aligned with ALIGN_DELTA
over the whole interval and summed per response code, so one page holds one point per code.

Monitoring publishes App Engine samples with a delay of up to a few minutes, so an interval that ends
"now" undercounts; the canary treats too few requests as inconclusive rather than as healthy.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import requests

from shared.google_auth import TokenSource
from shared.google_rest import DEFAULT_TIMEOUT_SECONDS, GoogleRestClient, NotFound

RESPONSE_COUNT_METRIC = "appengine.googleapis.com/http/server/response_count"
MIN_ALIGNMENT_SECONDS = 60  # Monitoring's smallest alignment period
MAX_PAGES = 20


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("Monitoring intervals need timezone-aware datetimes")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CloudMonitoring:
    """Cloud Monitoring v3 reads for one project (the App Engine app's)."""

    def __init__(self, base_url: str, project: str, token_source: TokenSource,
                 session: requests.Session | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not project:
            raise ValueError("a project id is required")
        self.project = project
        self._client = GoogleRestClient(base_url, token_source, session=session, timeout=timeout,
                                        api="Cloud Monitoring API")

    def response_count_query(self, service: str, version: str, start: datetime,
                             end: datetime) -> list[tuple[str, str]]:
        """The timeSeries.list query parameters (pairs, whole seconds) for one version and interval."""
        if end <= start:
            raise ValueError(f"the interval must end after it starts: {start} .. {end}")
        start_text, end_text = _timestamp(start), _timestamp(end)
        seconds = max(MIN_ALIGNMENT_SECONDS, math.ceil((end - start).total_seconds()))
        metric_filter = " AND ".join([
            f"metric.type = {_quoted(RESPONSE_COUNT_METRIC)}",
            'resource.type = "gae_app"',
            f"resource.labels.module_id = {_quoted(service)}",
            f"resource.labels.version_id = {_quoted(version)}",
        ])
        return [
            ("filter", metric_filter),
            ("interval.startTime", start_text),
            ("interval.endTime", end_text),
            ("aggregation.alignmentPeriod", f"{seconds}s"),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
            ("aggregation.groupByFields", "metric.labels.response_code"),
        ]

    def response_counts(self, service: str, version: str, start: datetime,
                        end: datetime) -> tuple[int, int] | None:
        """(requests, errors) the version answered in [start, end); errors are 5xx responses.

        (0, 0) when Monitoring has no samples (no traffic, or not published yet); None when the
        metric cannot be read for the project (404) or Monitoring says its answer is incomplete.
        """
        query = self.response_count_query(service, version, start, end)
        requests_total = errors = 0
        token = ""
        for _ in range(MAX_PAGES):
            params = query + ([("pageToken", token)] if token else [])
            try:
                answer = self._client.request("GET", f"v3/projects/{self.project}/timeSeries", params=params)
            except NotFound:
                return None
            if answer.get("unreachable") or answer.get("executionErrors"):
                return None
            for series in answer.get("timeSeries", []):
                total = sum(_count(point) for point in series.get("points", []))
                requests_total += total
                if _is_server_error(series.get("metric", {}).get("labels", {}).get("response_code", "")):
                    errors += total
            token = answer.get("nextPageToken", "")
            if not token:
                return requests_total, errors
        return None  # more pages than one version's response codes can fill: not an answer to trust


def _count(point: dict[str, Any]) -> int:
    value = point.get("value", {})
    if "int64Value" in value:
        return int(value["int64Value"])
    if "doubleValue" in value:
        return round(float(value["doubleValue"]))
    return 0


def _is_server_error(code: str) -> bool:
    try:
        return 500 <= int(code) <= 599
    except ValueError:
        return False
