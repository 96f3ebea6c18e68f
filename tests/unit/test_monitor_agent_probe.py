"""One HTTP health probe against real loopback services: a failure is data, never an exception."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest

from functions.monitor_agent.probe import check_url, new_session, probe, timeout_for
from shared.policy import SmokeCheck
from tests.support.push import serve

AT = datetime(2026, 12, 1, 15, 3, tzinfo=UTC)
HEALTH = SmokeCheck("/health")


def app(routes):
    """A WSGI app answering `routes[path] = (status, headers)`; anything else is 404."""
    hits: list[str] = []

    def wsgi(environ, start_response):
        path = environ["PATH_INFO"]
        hits.append(path)
        status, headers = routes.get(path, (404, []))
        if callable(status):
            status = status()
        start_response(f"{status} Whatever", [("Content-Type", "text/plain"), *headers])
        return [b"secret-body-text\n"]

    wsgi.hits = hits
    return wsgi


def test_a_healthy_endpoint_passes_with_its_latency():
    with serve(app({"/health": (200, [])})) as url:
        result = probe(check_url(url, "/health"), HEALTH, 2.0, at=AT)
    assert (result.ok, result.status, result.error, result.at) == (True, 200, "", AT)
    assert 0 < result.latency_ms < 2000


def test_a_wrong_status_fails_without_quoting_the_body_or_the_query():
    with serve(app({"/health": (503, []), "/ready": (204, [])})) as url:
        failed = probe(f"{url}/health?token=hunter2", HEALTH, 2.0, at=AT)
        ready = probe(f"{url}/ready", SmokeCheck("/ready", 204), 2.0, at=AT)
    assert (failed.ok, failed.status) == (False, 503)
    assert failed.error == "/health: expected status 200, got 503"
    assert "hunter2" not in failed.error and "secret-body" not in failed.error
    assert ready.ok and ready.status == 204


def test_a_slow_answer_fails_on_the_checks_latency_limit():
    ticks = iter([0.0] + [2.0] * 20)  # the answer takes two seconds by this timer
    with serve(app({"/health": (200, [])})) as url:
        result = probe(f"{url}/health", SmokeCheck("/health", 200, 1000), 5.0, at=AT,
                       timer=lambda: next(ticks))
    assert (result.ok, result.status, result.latency_ms) == (False, 200, 2000.0)
    assert result.error == "/health: answered in 2000 ms, over the 1000 ms limit"


def test_a_refused_connection_is_a_failed_probe():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = probe(f"http://127.0.0.1:{port}/health", HEALTH, 1.0, at=AT)
    assert (result.ok, result.status) == (False, 0)
    assert result.error == "/health: connection refused"


def test_a_hanging_service_times_out_within_the_budget():
    def hang():
        time.sleep(1.5)
        return 200

    with serve(app({"/health": (hang, [])})) as url:
        started = time.perf_counter()
        result = probe(f"{url}/health", HEALTH, 0.5, at=AT)
        took = time.perf_counter() - started
    assert not result.ok and result.error == "/health: timed out after 0.5 s"
    assert took < 1.4


def test_redirects_are_followed_on_the_host_only():
    elsewhere = app({"/health": (200, [])})
    with serve(elsewhere) as other:
        other_port = other.rsplit(":", 1)[1]
        routes = {"/old": (302, [("Location", "/health")]), "/health": (200, []),
                  "/away": (302, [("Location", f"http://localhost:{other_port}/health")]),
                  "/loop": (301, [("Location", "/loop")])}
        target = app(routes)
        with serve(target) as url:
            moved = probe(f"{url}/old", HEALTH, 2.0, at=AT)
            away = probe(f"{url}/away", HEALTH, 2.0, at=AT)
            loop = probe(f"{url}/loop", HEALTH, 2.0, at=AT)
    assert moved.ok and moved.status == 200
    assert (away.ok, away.status) == (False, 302)
    assert away.error == "/away: redirected to another host (status 302)"
    assert loop.error == "/loop: more than 3 redirects"
    assert target.hits.count("/loop") == 4
    assert elsewhere.hits == []  # never fetched from the other host


@pytest.mark.parametrize(("url", "error"), [
    ("ftp://example.com/health", "/health: the URL is not http or https"),
    ("http:///health", "/health: the URL names no host"),
    ("http://example.com:port/health", "/health: the URL is malformed"),
])
def test_a_url_that_cannot_be_probed_is_a_failed_probe(url, error):
    result = probe(url, HEALTH, 1.0, at=AT)
    assert (result.ok, result.status, result.error) == (False, 0, error)


def test_the_probe_time_is_the_callers_and_must_be_aware():
    with pytest.raises(ValueError):
        probe("http://127.0.0.1:1/health", HEALTH, 1.0, at=datetime(2026, 12, 1, 15, 3))
    result = probe("ftp://example.com/x", HEALTH)  # the deploy agent's smoke call: no time given
    assert result.at.tzinfo is not None


def test_sessions_ignore_the_environment_and_budgets_are_bounded():
    session = new_session()
    assert session.trust_env is False and "agent-ops-monitor" in session.headers["User-Agent"]
    session.close()
    assert timeout_for(SmokeCheck("/h", 200, 1000)) == 2.0
    assert timeout_for(SmokeCheck("/h", 200, 100)) == 1.0
    assert timeout_for(SmokeCheck("/h", 200, 60_000)) == 10.0
    assert check_url("https://svc.example.com/", "health") == "https://svc.example.com/health"
