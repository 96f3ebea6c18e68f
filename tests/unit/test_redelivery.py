"""The redelivery sweep against a fake of GitHub's webhook-deliveries endpoints, held to the spec."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import requests

from shared.github import redelivery
from shared.github.rest import RestClient
from tests.support import openapi
from tests.support.replay import make_response

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
API = "https://api.github.com"


def item(id_: int, guid: str, minutes_ago: float, status_code: int, redelivered: bool = False) -> dict:
    at = NOW - timedelta(minutes=minutes_ago)
    return {
        "id": id_, "guid": guid, "delivered_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "redelivery": redelivered, "duration": 0.27, "status": "OK" if status_code < 300 else "failed",
        "status_code": status_code, "event": "issues", "action": "labeled",
        "installation_id": 7, "repository_id": 1296269, "throttled_at": None,
    }


class FakeAppHook(requests.adapters.BaseAdapter):
    """GET /app/hook/deliveries (newest first, cursor pages) and POST .../attempts, per the spec."""

    def __init__(self, deliveries: list[dict], page_size: int = 3, fail_ids: frozenset[int] = frozenset()):
        super().__init__()
        self.deliveries = sorted(deliveries, key=lambda d: d["delivered_at"], reverse=True)
        self.page_size = page_size
        self.fail_ids = fail_ids
        self.redelivered: list[int] = []
        self.pages = 0
        self.base = API

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        status, headers, payload = self.handle(request.method, url.path, url.query, request.body,
                                               request.headers.get("Authorization", ""))
        return make_response(request, status, headers, payload)

    def handle(self, method: str, path_only: str, query_string: str, raw_body, authorization: str):
        path = path_only + (f"?{query_string}" if query_string else "")
        body = json.loads(raw_body) if raw_body else None
        openapi.validate_request(method, path, body)
        assert authorization.startswith("Bearer ")
        headers = {"Content-Type": "application/json"}
        if method == "GET":
            query = parse_qs(query_string)
            start = int(query.get("cursor", ["0"])[0])
            size = min(int(query.get("per_page", ["30"])[0]), self.page_size)
            page = self.deliveries[start:start + size]
            if start + size < len(self.deliveries):
                next_page = f"{self.base}/app/hook/deliveries?per_page={size}&cursor={start + size}"
                headers["Link"] = f'<{next_page}>; rel="next"'
            self.pages += 1
            status, payload = 200, page
        else:
            delivery_id = int(path_only.split("/")[-2])
            if delivery_id in self.fail_ids:
                status, payload = 422, {"message": "Validation Failed",
                                        "documentation_url": "https://docs.github.com"}
            else:
                self.redelivered.append(delivery_id)
                status, payload = 202, {}
        openapi.validate_response(method, path, status, payload)
        return status, headers, payload

    def wsgi(self, environ, start_response):
        """The same fake over HTTP, for driving the CLI."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        status, headers, payload = self.handle(environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                               environ.get("QUERY_STRING", ""), raw,
                                               environ.get("HTTP_AUTHORIZATION", ""))
        start_response(f"{status} X", list(headers.items()))
        return [json.dumps(payload).encode()]

    def close(self):
        return None


def client_for(fake: FakeAppHook) -> RestClient:
    http = requests.Session()
    http.mount(API, fake)
    return RestClient(API, token=lambda: "app.jwt.token", session=http, sleep=lambda s: None)


DELIVERIES = [
    item(1, "ok-first-time", 30, 200),
    item(2, "failed-then-ok", 50, 503), item(3, "failed-then-ok", 40, 202, redelivered=True),
    item(4, "failed-once", 20, 503),
    item(5, "failed-twice", 120, 500), item(6, "failed-twice", 60, 504, redelivered=True),
    item(7, "just-redelivered", 30, 500), item(8, "just-redelivered", 2, 500, redelivered=True),
    item(9, "published-since", 15, 503),
    item(10, "too-old", 3 * 24 * 60 + 5, 500),
    item(11, "timed-out", 10, 0),
]


def test_sweep_redelivers_each_failed_guid_once_and_leaves_the_rest():
    fake = FakeAppHook(DELIVERIES)
    report = redelivery.sweep(client_for(fake), published=lambda guid: guid == "published-since",
                              now=NOW)
    assert sorted(report.redelivered) == ["failed-once", "failed-twice", "timed-out"]
    assert sorted(fake.redelivered) == [4, 6, 11]  # the newest attempt of each
    assert report.skipped == {
        "ok-first-time": "delivered",
        "failed-then-ok": "delivered",
        "just-redelivered": "redelivered moments ago",
        "published-since": "already published",
    }
    assert report.failed == {}
    assert fake.pages == 4  # paginated by cursor until past the 3-day window


def test_dry_run_redelivers_nothing_but_reports_what_it_would():
    fake = FakeAppHook(DELIVERIES)
    report = redelivery.sweep(client_for(fake), published=lambda guid: False, now=NOW, dry_run=True)
    assert fake.redelivered == []
    assert "failed-once" in report.redelivered
    assert redelivery.summarize(report)[0].startswith("listed 10 delivery attempts; would redeliver")


def test_since_narrows_the_window_but_never_widens_it():
    fake = FakeAppHook(DELIVERIES)
    report = redelivery.sweep(client_for(fake), published=lambda guid: False, now=NOW,
                              since=timedelta(minutes=25))
    assert sorted(report.redelivered) == ["failed-once", "published-since", "timed-out"]
    wide = redelivery.decide([redelivery.Attempt.from_api(d) for d in DELIVERIES], lambda g: False, NOW,
                             since=timedelta(days=30))
    assert "too-old" not in [a.guid for a in wide.redeliver]


def test_a_refused_redelivery_is_reported_and_the_others_go_on():
    fake = FakeAppHook(DELIVERIES, fail_ids=frozenset({4}))
    report = redelivery.sweep(client_for(fake), published=lambda guid: False, now=NOW)
    assert list(report.failed) == ["failed-once"]
    assert "Validation Failed" in report.failed["failed-once"]
    assert sorted(fake.redelivered) == [6, 9, 11]


def test_published_check_reads_the_deliveries_ledger():
    class Ledger:
        def get(self, key):
            return {"a": {"status": "published"}, "b": {"status": "publish_failed"}}.get(key)

    published = redelivery.guids_published(Ledger())
    assert (published("a"), published("b"), published("c")) == (True, False, False)


def test_a_sweep_is_capped_oldest_first_and_the_rest_deferred():
    fake = FakeAppHook(DELIVERIES)
    report = redelivery.sweep(client_for(fake), published=lambda guid: False, now=NOW, max_redeliveries=2)
    assert fake.redelivered == [6, 4]  # the two failing guids waiting longest
    assert report.deferred == 2
    assert "deferred to the next sweep 2" in redelivery.summarize(report)[0]
