"""The REST client: recorded real traffic replayed, then rate limits, retries and ETags."""

from __future__ import annotations

import io
import json

import pytest
import requests

from shared.github.rest import (
    NotFound,
    RateLimited,
    RestClient,
    ServerError,
    TooLarge,
    ValidationFailed,
    links,
    read_response,
)
from tests.support import openapi
from tests.support.replay import make_response, session

API = "https://api.github.com"
# Fakes answer with GitHub's own documented examples, so they cannot teach the client wrong habits.
LABELS = openapi.example("GET", "/repos/o/r/labels", 200)
ISSUES = openapi.example("GET", "/repos/o/r/issues", 200)
COMMENT = openapi.example("POST", "/repos/o/r/issues/1/comments", 201)
REF = openapi.example("POST", "/repos/o/r/git/refs", 201)


def client_for(scenario: str, **kwargs):
    replay, adapter = session(scenario)
    return RestClient(API, token=lambda: "ghs_" + "0" * 36, session=replay, sleep=lambda s: None,
                      **kwargs), adapter


def test_recorded_pagination_follows_link_headers_to_the_last_page():
    client, adapter = client_for("paginate-issues")
    issues = list(client.paginate("/repos/octokit-fixture-org/paginate-issues/issues",
                                  {"per_page": 3}))
    assert len(issues) == 13
    assert [i["number"] for i in issues] == list(range(13, 0, -1))
    assert adapter.interactions == []
    assert client.budget is not None


def test_pagination_stops_at_its_cap():
    client, adapter = client_for("paginate-issues")
    assert len(list(client.paginate("/repos/octokit-fixture-org/paginate-issues/issues",
                                    {"per_page": 3}, max_pages=2))) == 6
    assert len(adapter.interactions) == 3


def test_recorded_422_carries_githubs_field_errors():
    client, _ = client_for("errors")
    with pytest.raises(ValidationFailed) as caught:
        client.request("POST", "/repos/octokit-fixture-org/errors/labels",
                       json_body={"name": "foo", "color": "invalid"})
    assert "Label color invalid" in str(caught.value)
    assert caught.value.status == 422


def test_recorded_301_and_307_redirects_are_followed():
    client, adapter = client_for("rename-repository")
    renamed = client.request("PATCH", "/repos/octokit-fixture-org/rename-repository",
                             json_body={"name": "rename-repository-newname"})
    assert renamed["name"] == "rename-repository-newname"
    moved = client.request("GET", "/repos/octokit-fixture-org/rename-repository")
    assert moved["id"] == 1000
    patched = client.request("PATCH", "/repos/octokit-fixture-org/rename-repository",
                             json_body={"name": "rename-repository-newname",
                                        "description": "test description"})
    assert patched["id"] == 1000
    assert adapter.interactions == []
    # every request, redirected ones too, carries the API version and a descriptive agent
    assert all(r.headers["X-GitHub-Api-Version"] == "2022-11-28" for r in adapter.sent)
    assert all(r.headers["User-Agent"].startswith("agent-ops/") for r in adapter.sent)


def test_recorded_contents_and_git_refs_and_labels():
    client, adapter = client_for("get-content")
    listing = client.request("GET", "/repos/octokit-fixture-org/hello-world/contents/")
    assert [entry["name"] for entry in listing] == ["README.md"]
    readme = client.request("GET", "/repos/octokit-fixture-org/hello-world/contents/README.md")
    assert readme.startswith("# hello-world")

    client, adapter = client_for("git-refs")
    refs = client.request("GET", "/repos/octokit-fixture-org/git-refs/git/refs/")
    assert refs[0]["ref"] == "refs/heads/main"
    created = client.request("POST", "/repos/octokit-fixture-org/git-refs/git/refs",
                             json_body={"ref": "refs/heads/test", "sha": "0" * 39 + "2"})
    assert created["ref"] == "refs/heads/test"
    client.request("PATCH", "/repos/octokit-fixture-org/git-refs/git/refs/heads/test",
                   json_body={"sha": "0" * 39 + "1"})
    client.request("GET", "/repos/octokit-fixture-org/git-refs/git/refs/")
    assert client.request("DELETE", "/repos/octokit-fixture-org/git-refs/git/refs/heads/test") is None

    client, adapter = client_for("labels")
    assert isinstance(client.request("GET", "/repos/octokit-fixture-org/labels/labels"), list)
    client.request("POST", "/repos/octokit-fixture-org/labels/labels",
                   json_body={"name": "test-label", "color": "663399"})
    client.request("GET", "/repos/octokit-fixture-org/labels/labels/test-label")
    client.request("PATCH", "/repos/octokit-fixture-org/labels/labels/test-label",
                   json_body={"new_name": "test-label-updated", "color": "BADA55"})
    client.request("DELETE", "/repos/octokit-fixture-org/labels/labels/test-label-updated")
    assert adapter.interactions == []


class Scripted(requests.adapters.BaseAdapter):
    """Answers from a script of (status, headers, body) or exceptions, recording requests."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self.sent = []

    def send(self, request, **kwargs):
        path = request.path_url
        openapi.validate_request(request.method, path, json.loads(request.body) if request.body else None)
        self.sent.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        status, headers, body = step
        if 200 <= status < 300:  # a fake must not answer what GitHub cannot
            openapi.validate_response(request.method, path, status, body)
        return make_response(request, status, {"Content-Type": "application/json", **headers}, body)

    def close(self):
        return None


def scripted(script, now=1_000_000.0, **kwargs):
    adapter = Scripted(script)
    http = requests.Session()
    http.mount(API, adapter)
    slept = []
    client = RestClient(API, token=lambda: "t", session=http, clock=lambda: now,
                        sleep=slept.append, **kwargs)
    return client, adapter, slept


LIMIT = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000030"}


def test_primary_limit_exhausted_waits_until_reset_then_succeeds():
    client, adapter, slept = scripted([
        (403, LIMIT, {"message": "API rate limit exceeded"}),
        (200, {**LIMIT, "X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": "1003600"}, LABELS),
    ])
    assert client.request("GET", "/repos/o/r/labels") == LABELS
    assert slept == [30.0]
    assert client.budget == 4999


def test_primary_limit_far_away_defers_instead_of_sleeping():
    far = {**LIMIT, "X-RateLimit-Reset": "1003600"}
    client, adapter, slept = scripted([(429, far, {"message": "API rate limit exceeded"})])
    with pytest.raises(RateLimited) as caught:
        client.request("GET", "/repos/o/r")
    assert caught.value.retry_at == 1003600
    assert slept == []


def test_secondary_limit_honours_retry_after():
    client, adapter, slept = scripted([
        (403, {"Retry-After": "7"}, {"message": "You have exceeded a secondary rate limit"}),
        (200, {}, LABELS),
    ])
    assert client.request("GET", "/repos/o/r/labels") == LABELS
    assert slept == [7.0]


def test_secondary_limit_without_retry_after_waits_a_minute():
    client, adapter, slept = scripted([
        (403, {}, {"message": "You have exceeded a secondary rate limit. Please wait"}),
        (200, {}, LABELS),
    ])
    client.request("GET", "/repos/o/r/labels")
    assert slept == [60.0]


def test_server_error_storm_is_retried_for_a_get():
    client, adapter, slept = scripted([(502, {}, ""), (503, {}, ""), (500, {}, ""), (200, {}, ISSUES)])
    assert client.request("GET", "/repos/o/r/issues") == ISSUES
    assert len(adapter.sent) == 4
    assert slept == [1, 2, 4]


def test_server_error_storm_gives_up_with_a_retryable_error():
    client, adapter, slept = scripted([(502, {}, "")] * 4)
    with pytest.raises(ServerError):
        client.request("GET", "/repos/o/r")
    assert len(adapter.sent) == 4


def test_lost_response_to_a_comment_post_is_not_retried():
    client, adapter, _ = scripted([requests.ConnectionError("reset by peer"), (201, {}, COMMENT)])
    with pytest.raises(ServerError):
        client.request("POST", "/repos/o/r/issues/1/comments", json_body={"body": "hi"})
    assert len(adapter.sent) == 1  # one comment at most


def test_5xx_on_a_post_is_not_retried_unless_idempotent_by_construction():
    client, adapter, _ = scripted([(502, {}, "")])
    with pytest.raises(ServerError):
        client.request("POST", "/repos/o/r/issues/1/comments", json_body={"body": "hi"})
    client, adapter, _ = scripted([(502, {}, ""), (201, {}, REF)])
    created = client.request("POST", "/repos/o/r/git/refs", idempotent=True,
                             json_body={"ref": REF["ref"], "sha": "a" * 40})
    assert created == REF


def test_second_identical_get_is_conditional_and_a_304_returns_the_cached_body():
    from shared.github.rest import MemoryConditionalCache

    cache = MemoryConditionalCache()
    client, adapter, _ = scripted([
        (200, {"ETag": '"v1"', "Last-Modified": "Tue, 24 Nov 2026 08:00:00 GMT"}, LABELS),
        (304, {"ETag": '"v1"'}, ""),
    ], cache=cache, cache_scope="installation/7")
    assert client.request("GET", "/repos/o/r/labels") == LABELS
    assert client.request("GET", "/repos/o/r/labels") == LABELS
    assert "If-None-Match" not in adapter.sent[0].headers
    assert adapter.sent[1].headers["If-None-Match"] == '"v1"'
    assert adapter.sent[1].headers["If-Modified-Since"] == "Tue, 24 Nov 2026 08:00:00 GMT"
    assert (client.stats.conditional, client.stats.not_modified, client.stats.hit_ratio) == (1, 1, 1.0)
    assert list(cache.entries) == [("installation/7", f"{API}/repos/o/r/labels")]


READ_CASES = [
    ("404", 404, {}, {"message": "Not Found"}, NotFound),
    ("422", 422, {}, {"message": "Validation Failed", "errors": [{"field": "title", "code": "missing"}]},
     ValidationFailed),
    ("500", 500, {}, "", ServerError),
]


@pytest.mark.parametrize("status,headers,body,error", [c[1:] for c in READ_CASES],
                         ids=[c[0] for c in READ_CASES])
def test_read_response_types_errors(status, headers, body, error):
    with pytest.raises(error):
        read_response("GET", "/x", status, headers, body, 0.0)


def test_plain_403_is_forbidden_not_rate_limited():
    from shared.github.rest import Forbidden

    with pytest.raises(Forbidden):
        read_response("GET", "/x", 403, {"X-RateLimit-Remaining": "10", "X-RateLimit-Limit": "5000",
                                         "X-RateLimit-Reset": "1"}, {"message": "Resource not accessible"}, 0)


def test_links_parses_githubs_header():
    header = ('<https://api.github.com/repositories/1000/issues?per_page=3&page=2>; rel="next", '
              '<https://api.github.com/repositories/1000/issues?per_page=3&page=5>; rel="last"')
    assert links({"Link": header}) == {
        "next": "https://api.github.com/repositories/1000/issues?per_page=3&page=2",
        "last": "https://api.github.com/repositories/1000/issues?per_page=3&page=5",
    }


class RecordingAudit:
    def __init__(self):
        self.entries = []

    def record(self, **entry):
        self.entries.append(entry)


def test_every_write_is_audited_with_agent_task_and_result_and_reads_are_not():
    audit = RecordingAudit()
    client, adapter, _ = scripted(
        [(200, {}, []), (201, {}, COMMENT), (422, {}, {"message": "Validation Failed"})],
        audit=audit, actor="code", reason="implement_issue-abc",
    )
    client.request("GET", "/repos/o/r/labels")
    client.request("POST", "/repos/o/r/issues/3/comments", json_body={"body": "working on it"})
    with pytest.raises(ValidationFailed):
        client.request("POST", "/repos/o/r/labels", json_body={"name": "x", "color": "bad"})
    assert [(e["actor"], e["action"], e["subject"], e["outcome"], e["task_id"]) for e in audit.entries] == [
        ("code", "github_post", "/repos/o/r/issues/3/comments", "ok", "implement_issue-abc"),
        ("code", "github_post", "/repos/o/r/labels", "error 422", "implement_issue-abc"),
    ]
    assert len({e["key"] for e in audit.entries}) == 2


def test_writes_are_serialised_a_second_apart():
    now = [1000.0]
    adapter = Scripted([(201, {}, COMMENT), (201, {}, COMMENT), (201, {}, COMMENT)])
    http = requests.Session()
    http.mount(API, adapter)
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    client = RestClient(API, token=lambda: "t", session=http, clock=lambda: now[0], sleep=sleep)
    for number in range(3):
        client.request("POST", f"/repos/o/r/issues/{number}/comments", json_body={"body": "x"})
        now[0] += 0.25
    assert slept == [0.75, 0.75]


def test_low_budget_slows_requests_down_instead_of_failing():
    low = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "100", "X-RateLimit-Reset": "1000200"}
    plenty = {**low, "X-RateLimit-Remaining": "4000"}
    client, adapter, slept = scripted([(200, plenty, []), (200, low, []), (200, low, [])])
    client.request("GET", "/repos/o/r/issues")
    client.request("GET", "/repos/o/r/issues")
    assert slept == []  # 4000 left: full speed
    client.request("GET", "/repos/o/r/issues")
    assert slept == [2.0]  # 100 left, 200 s to the reset: one request every 2 s
    assert client.budget == 100


def test_writes_are_audited_in_their_repositorys_chain_and_a_quiet_view_audits_none():
    audit = RecordingAudit()
    client, _, _ = scripted([(201, {}, COMMENT), (201, {}, COMMENT)], audit=audit, actor="code", reason="t")
    client.request("POST", "/repos/o/r/issues/3/comments", json_body={"body": "one"})
    client.without_audit().request("POST", "/repos/o/r/issues/3/comments", json_body={"body": "two"})
    assert [e["repository"] for e in audit.entries] == ["o/r"]


class Binary(requests.adapters.BaseAdapter):
    """Answers a download with a redirect, then the bytes (or an error), as GitHub's archive URLs do."""

    def __init__(self, body: bytes, status: int = 200, length: str | None = None):
        super().__init__()
        self.body, self.status, self.length, self.sent = body, status, length, []

    def send(self, request, **kwargs):
        self.sent.append((request.url, request.headers.get("Authorization")))
        response = requests.Response()
        response.request, response.url = request, request.url
        if request.url.endswith("/zip"):
            response.status_code = 302
            response.headers["Location"] = "https://files.example.com/a.zip"
            response.raw = io.BytesIO(b"")
            return response
        response.status_code = self.status
        response.headers["Content-Type"] = "application/zip" if self.status == 200 else "application/json"
        if self.length is not None:
            response.headers["Content-Length"] = self.length
        response.raw = io.BytesIO(self.body)
        return response

    def close(self):
        return None


def binary_client(adapter: Binary) -> RestClient:
    http = requests.Session()
    http.mount("https://", adapter)
    return RestClient(API, token=lambda: "secret-token", session=http)


def test_a_download_follows_the_redirect_returns_the_bytes_and_drops_the_token_off_host():
    adapter = Binary(b"PK\x03\x04\x00\xff binary")
    data = binary_client(adapter).download("/repos/o/r/actions/artifacts/5/zip", max_bytes=1024)
    assert data == b"PK\x03\x04\x00\xff binary"
    assert adapter.sent[0] == (f"{API}/repos/o/r/actions/artifacts/5/zip", "Bearer secret-token")
    assert adapter.sent[1] == ("https://files.example.com/a.zip", None)  # never sent to another host


@pytest.mark.parametrize("length", [None, "4096"], ids=["streamed", "declared"])
def test_a_download_over_the_cap_is_refused_without_reading_it_all(length):
    with pytest.raises(TooLarge):
        binary_client(Binary(b"x" * 4096, length=length)).download("/repos/o/r/actions/artifacts/5/zip", 100)


def test_a_download_error_is_githubs_typed_error():
    adapter = Binary(json.dumps({"message": "Not Found"}).encode(), status=404)
    with pytest.raises(NotFound):
        binary_client(adapter).download("/repos/o/r/actions/artifacts/5/zip", 100)
