"""Cloud Monitoring's `projects.timeSeries.list`, answered from what the sandbox's versions really served.

Each version server reports every answer it gives (status code), including the requests a service
router forwarded to it; `ResponseCounters` keeps them per version, per minute of the sandbox clock and
per status code, as App Engine's `appengine.googleapis.com/http/server/response_count` metric does
(a DELTA INT64 metric on the `gae_app` monitored resource, labelled by `response_code`).

The query language served is the part the agents need, and anything else is refused with a 400 that
says so rather than answered wrongly:
- `filter`: terms joined by `AND` (or juxtaposed), each `field op value` with op one of `= != > >= < <=`
  on `metric.type`, `resource.type`, `project`, `metric.labels.*` and `resource.labels.*` (`label`
  works too); numbers compare as numbers. It must name the response-count metric.
- `interval.endTime` (required) and `interval.startTime` (default: the end time).
- `aggregation`: `perSeriesAligner` ALIGN_NONE, ALIGN_DELTA or ALIGN_SUM with an `alignmentPeriod`
  of at least 60 s, `crossSeriesReducer` REDUCE_NONE or REDUCE_SUM, and `groupByFields`.
- `view` FULL or HEADERS. `orderBy` and `secondaryAggregation` are not served.
Aligned points end at `endTime`, `endTime - period`, ... (newest first); a minute's count falls in the
window that holds the minute's start. Windows and series without data are left out, as Monitoring does.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sandbox.appengine.discovery import InvalidRequest

RESPONSE_COUNT_METRIC = "appengine.googleapis.com/http/server/response_count"
RESOURCE_TYPE = "gae_app"
MINUTE = 60
MIN_ALIGNMENT_SECONDS = 60
ALIGNERS = ("ALIGN_NONE", "ALIGN_DELTA", "ALIGN_SUM")
REDUCERS = ("REDUCE_NONE", "REDUCE_SUM")
UNSUPPORTED_PARAMETERS = ("orderBy", "secondaryAggregation.alignmentPeriod",
                          "secondaryAggregation.perSeriesAligner", "secondaryAggregation.crossSeriesReducer",
                          "secondaryAggregation.groupByFields")
_FIELD = r"(?:metric\.type|resource\.type|project|(?:metric|resource)\.labels?\.[A-Za-z_][A-Za-z0-9_]*)"
_TERM = re.compile(
    rf"\s*(?P<field>{_FIELD})\s*(?P<op>!=|>=|<=|=|>|<)\s*"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|-?[0-9]+(?:\.[0-9]+)?|true|false)\s*"
)
_AND = re.compile(r"AND\s+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# One series while a query is computed: its metric labels, resource labels and (window) => count.
_Series = tuple[dict[str, str], dict[str, str], dict[tuple[int, int], int]]


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp as Google's JSON writes them."""
    text = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def parse_time(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid value at '{name}', \"{text}\": not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise InvalidRequest(f"Invalid value at '{name}', \"{text}\": an RFC 3339 timestamp has a zone")
    return moment.astimezone(timezone.utc)


class ResponseCounters:
    """How many answers of each status code each version gave, per minute. Safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int, int], int] = defaultdict(int)

    def add(self, service: str, version: str, at: datetime, code: int) -> None:
        minute = int(at.timestamp()) // MINUTE * MINUTE
        with self._lock:
            self._counts[(service, version, minute, code)] += 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[tuple[str, str, int, int], int]:
        """(service, version, minute start as epoch seconds, status code) => count."""
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        actual = fields.get(self.field)
        if actual is None:
            return self.op == "!="
        if _NUMBER.fullmatch(actual) and _NUMBER.fullmatch(self.value):
            left, right = float(actual), float(self.value)
        elif self.op in ("=", "!="):
            left, right = actual, self.value  # type: ignore[assignment]
        else:
            return False  # an ordering between strings is not something the sandbox guesses at
        return {"=": left == right, "!=": left != right, ">": left > right, ">=": left >= right,
                "<": left < right, "<=": left <= right}[self.op]


def parse_filter(text: str) -> list[Term]:
    """The terms of a conjunction; InvalidRequest for anything else (OR, NOT, parentheses, functions)."""
    terms: list[Term] = []
    position = 0
    while position < len(text):
        found = _TERM.match(text, position)
        if found is None:
            rest = text[position:].strip()
            raise InvalidRequest(f"The filter {text!r} is not served by the sandbox at {rest[:40]!r}: use "
                                 "terms like metric.type = \"...\" joined by AND")
        raw = found["value"]
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        field = found["field"].replace(".label.", ".labels.")
        terms.append(Term(field, found["op"], value))
        position = found.end()
        joined = _AND.match(text, position)
        if joined is not None:
            position = joined.end()
            if position >= len(text):
                raise InvalidRequest(f"The filter {text!r} ends with AND")
    if not terms:
        raise InvalidRequest("The filter is empty; it must specify a single metric type")
    return terms


@dataclass(frozen=True)
class Query:
    terms: list[Term]
    start: datetime
    end: datetime
    aligner: str
    period: int
    reducer: str
    group_by: tuple[str, ...]
    headers_only: bool


def _seconds(duration: str) -> float:
    return float(duration[:-1])


def parse_query(params: Mapping[str, Any]) -> Query:
    """The request's parameters (already checked against the discovery document) as one query."""
    for name in UNSUPPORTED_PARAMETERS:
        if name in params:
            raise InvalidRequest(f"{name} is not served by the sandbox")
    if not params.get("filter"):
        raise InvalidRequest("filter is required: it must specify a single metric type")
    terms = parse_filter(params["filter"])
    metric_types = {term.value for term in terms if term.field == "metric.type" and term.op == "="}
    if len(metric_types) != 1:
        raise InvalidRequest(f"The filter must specify a single metric type (metric.type = \"...\"), got "
                             f"{params['filter']!r}")
    if metric_types != {RESPONSE_COUNT_METRIC}:
        raise InvalidRequest(f"The sandbox serves only metric.type = \"{RESPONSE_COUNT_METRIC}\", "
                             f"not {metric_types.pop()!r}")
    if "interval.endTime" not in params:
        raise InvalidRequest("interval.endTime is required")
    end = parse_time("interval.endTime", params["interval.endTime"])
    start = parse_time("interval.startTime", params["interval.startTime"]) \
        if "interval.startTime" in params else end
    if start > end:
        raise InvalidRequest("interval.startTime must not be later than interval.endTime")
    aligner = params.get("aggregation.perSeriesAligner", "ALIGN_NONE")
    reducer = params.get("aggregation.crossSeriesReducer", "REDUCE_NONE")
    if aligner not in ALIGNERS:
        raise InvalidRequest(f"aggregation.perSeriesAligner {aligner} is not served by the sandbox; "
                             f"use one of {', '.join(ALIGNERS)}")
    if reducer not in REDUCERS:
        raise InvalidRequest(f"aggregation.crossSeriesReducer {reducer} is not served by the sandbox; "
                             f"use one of {', '.join(REDUCERS)}")
    period = 0
    if aligner != "ALIGN_NONE":
        if "aggregation.alignmentPeriod" not in params:
            raise InvalidRequest(f"aggregation.alignmentPeriod is required with perSeriesAligner {aligner}")
        seconds = _seconds(params["aggregation.alignmentPeriod"])
        if seconds < MIN_ALIGNMENT_SECONDS or seconds != int(seconds):
            raise InvalidRequest("The alignment period must be a whole number of seconds, at least 60 "
                                 f"seconds; got {params['aggregation.alignmentPeriod']}")
        period = int(seconds)
    if reducer != "REDUCE_NONE" and aligner == "ALIGN_NONE":
        raise InvalidRequest("A crossSeriesReducer needs a perSeriesAligner other than ALIGN_NONE")
    group_by = tuple(field.replace(".label.", ".labels.")
                     for field in params.get("aggregation.groupByFields", []))
    for field in group_by:
        if not re.fullmatch(_FIELD, field) or field in ("metric.type", "project"):
            raise InvalidRequest(f"aggregation.groupByFields: {field!r} is not a label field")
    return Query(terms=terms, start=start, end=end, aligner=aligner, period=period, reducer=reducer,
                 group_by=group_by if reducer != "REDUCE_NONE" else (),
                 headers_only=params.get("view", "FULL") == "HEADERS")


def _labels(project: str, service: str, version: str, code: int) -> tuple[dict[str, str], dict[str, str]]:
    metric = {"response_code": str(code), "loading": "false"}
    resource = {"project_id": project, "module_id": service, "version_id": version}
    return metric, resource


def _fields(project: str, metric: Mapping[str, str], resource: Mapping[str, str]) -> dict[str, str]:
    fields = {"metric.type": RESPONSE_COUNT_METRIC, "resource.type": RESOURCE_TYPE, "project": project}
    fields.update({f"metric.labels.{key}": value for key, value in metric.items()})
    fields.update({f"resource.labels.{key}": value for key, value in resource.items()})
    return fields


def _windows(query: Query) -> list[tuple[int, int]]:
    """(start, end) epoch seconds of each alignment window, newest first."""
    end = int(query.end.timestamp())
    start = int(query.start.timestamp())
    windows = [(end - query.period, end)]
    while windows[-1][0] > start:
        windows.append((windows[-1][0] - query.period, windows[-1][0]))
    return windows


def _points(query: Query, minutes: Mapping[int, int]) -> dict[tuple[int, int], int]:
    """(window start, window end) => count for one series' minute counts."""
    if query.aligner == "ALIGN_NONE":
        start, end = query.start.timestamp(), query.end.timestamp()
        return {(minute, minute + MINUTE): count for minute, count in minutes.items()
                if minute <= end and minute + MINUTE > start}
    points: dict[tuple[int, int], int] = {}
    for window in _windows(query):
        total = sum(count for minute, count in minutes.items() if window[0] <= minute < window[1])
        if total:
            points[window] = total
    return points


def time_series(counts: Mapping[tuple[str, str, int, int], int], project: str,
                query: Query) -> list[dict[str, Any]]:
    """Every TimeSeries the query selects, in a stable order (for paging)."""
    per_series: dict[tuple[str, str, int], dict[int, int]] = defaultdict(dict)
    for (service, version, minute, code), count in counts.items():
        per_series[(service, version, code)][minute] = count
    selected: list[_Series] = []
    for (service, version, code), minutes in sorted(per_series.items()):
        metric, resource = _labels(project, service, version, code)
        if not all(term.matches(_fields(project, metric, resource)) for term in query.terms):
            continue
        points = _points(query, minutes)
        if points:
            selected.append((metric, resource, points))
    if query.reducer == "REDUCE_SUM":
        selected = _reduce(selected, query.group_by)
    return [_series(metric, resource, points, query.headers_only) for metric, resource, points in selected]


def _reduce(selected: Iterable[_Series], group_by: tuple[str, ...]) -> list[_Series]:
    """Sum aligned series that agree on the grouped fields; the other labels are aggregated away."""
    groups: dict[tuple[tuple[str, str], ...], _Series] = {}
    for metric, resource, points in selected:
        kept_metric = {key: value for key, value in metric.items() if f"metric.labels.{key}" in group_by}
        # Monitoring keeps the project of a reduced series; other resource labels only when grouped.
        kept_resource = {key: value for key, value in resource.items()
                         if key == "project_id" or f"resource.labels.{key}" in group_by}
        key = tuple(sorted(kept_metric.items())) + tuple(sorted((f"resource.{name}", value)
                                                               for name, value in kept_resource.items()))
        _, _, summed = groups.setdefault(key, (kept_metric, kept_resource, {}))
        for window, count in points.items():
            summed[window] = summed.get(window, 0) + count
    return [groups[key] for key in sorted(groups)]


def _series(metric: dict[str, str], resource: dict[str, str], points: Mapping[tuple[int, int], int],
            headers_only: bool) -> dict[str, Any]:
    series: dict[str, Any] = {
        "metric": {"type": RESPONSE_COUNT_METRIC, "labels": dict(metric)},
        "resource": {"type": RESOURCE_TYPE, "labels": dict(resource)},
        "metricKind": "DELTA",
        "valueType": "INT64",
        "unit": "1",
    }
    if not headers_only:
        series["points"] = [
            {"interval": {"startTime": rfc3339(_at(start)), "endTime": rfc3339(_at(end))},
             "value": {"int64Value": str(count)}}
            for (start, end), count in sorted(points.items(), reverse=True)
        ]
    return series


def _at(epoch: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=epoch)
