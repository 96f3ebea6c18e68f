"""One HTTP health probe: a GET of a URL, judged by a `SmokeCheck`, as a `slo.Probe`.

A probe never raises for what the probed service does: a refused connection, a timeout, a TLS
failure, a wrong status or a slow answer is a failed probe with a short reason, because an outage is
exactly what the monitor is there to record. Only a bug in the caller (a naive `at`) raises.

What the probe is careful about:
- bounded time: `timeout` (clamped to MIN_TIMEOUT..MAX_TIMEOUT seconds) bounds the whole probe,
  connecting, waiting and reading together, not each socket operation alone;
- redirects are followed (at most MAX_REDIRECTS) only while they stay on the probed host, with an
  http -> https upgrade allowed: a health URL that sends the probe to another host is a failure, not
  a reason to fetch someone else's page;
- nothing secret or untrusted goes into the error text: never the URL's query or credentials, never
  the response body; only the path, the status and the kind of failure;
- the session does not read the environment (`trust_env=False`): no proxy variables and, above all,
  no `.netrc` credentials attached to a request to a service.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from functions.monitor_agent.slo import Probe
from shared.policy import SmokeCheck

MIN_TIMEOUT = 0.5
MAX_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 5.0
MAX_CONNECT_TIMEOUT = 5.0
MAX_REDIRECTS = 3
MAX_BODY_BYTES = 64 * 1024  # read and dropped, so a keep-alive connection can be reused
USER_AGENT = "agent-ops-monitor/0.1 (health probe)"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# What a request to a misbehaving service can raise; each becomes a failed probe.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (requests.RequestException, urllib3.exceptions.HTTPError,
                                                     http.client.HTTPException, OSError, ValueError)


def new_session() -> requests.Session:
    """A session for probes: no environment (proxies, .netrc), a plain user agent."""
    session = requests.Session()
    session.trust_env = False
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "*/*", "Cache-Control": "no-cache"})
    return session


def timeout_for(check: SmokeCheck, cap: float = 10.0) -> float:
    """A probe's time budget: twice the check's latency limit, at least a second, at most `cap`."""
    return min(max(check.max_latency_ms / 1000 * 2, 1.0), cap)


def check_url(base: str, path: str) -> str:
    """The URL of a check's path on a service: `https://svc.example.com` + `/health`."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def _shown_path(url: str) -> str:
    """The part of a URL an error may name: the path, without query, fragment or credentials."""
    try:
        return urlsplit(url).path[:100] or "/"
    except ValueError:
        return "/"


def _valid(url: str) -> str:
    """Why a URL cannot be probed, or ""."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "the URL is malformed"
    if parts.scheme not in ("http", "https"):
        return "the URL is not http or https"
    if not parts.hostname:
        return "the URL names no host"
    return ""


def _same_host(origin: str, target: str) -> bool:
    here, there = urlsplit(origin), urlsplit(target)
    if (here.hostname or "").lower() != (there.hostname or "").lower():
        return False
    if here.scheme == there.scheme:
        return here.port == there.port
    return here.scheme == "http" and there.scheme == "https"  # an upgrade to TLS, never a downgrade


def _failure(exc: BaseException, budget: float) -> str:
    if isinstance(exc, requests.Timeout | TimeoutError):
        return f"timed out after {budget:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename nor servname" in text or "resolve" in text:
            return "the host name does not resolve"
        if "reset" in text:
            return "connection reset"
        return "connection failed"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return "the URL is malformed"
    return f"request failed ({type(exc).__name__})"


def probe(url: str, check: SmokeCheck, timeout: float = DEFAULT_TIMEOUT, *, at: datetime | None = None,
          session: Any = None, timer: Callable[[], float] = time.perf_counter) -> Probe:
    """GET `url` (the check's full URL) and judge it: the expected status within the latency limit.

    `at` is the probe's time as the caller's clock says (a tick passes its minute); the latency is
    measured with `timer`. The latency of a failed probe is how long it took to fail.
    """
    moment = at if at is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("a probe's time needs a time zone")
    path = _shown_path(url)
    problem = _valid(url)
    if problem:
        return Probe(moment, False, 0, 0.0, f"{path}: {problem}")
    budget = min(max(float(timeout), MIN_TIMEOUT), MAX_TIMEOUT)
    own = session is None
    http = new_session() if own else session
    start = timer()
    try:
        status, error = _fetch(http, url, budget, start, timer)
    finally:
        if own:
            http.close()
    latency = max((timer() - start) * 1000, 0.0)
    if error:
        return Probe(moment, False, status, latency, f"{path}: {error}")
    if status != check.status:
        return Probe(moment, False, status, latency, f"{path}: expected status {check.status}, got {status}")
    if latency > check.max_latency_ms:
        return Probe(moment, False, status, latency,
                     f"{path}: answered in {latency:.0f} ms, over the {check.max_latency_ms} ms limit")
    return Probe(moment, True, status, latency)


def _fetch(http: Any, url: str, budget: float, start: float, timer: Callable[[], float]) -> tuple[int, str]:
    """(status, error): the final status after same-host redirects, or why there is none."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        left = budget - (timer() - start)
        if left <= 0:
            return 0, f"timed out after {budget:g} s"
        try:
            response = http.get(current, timeout=(min(left, MAX_CONNECT_TIMEOUT), left),
                                allow_redirects=False, stream=True)
        except TRANSPORT_ERRORS as exc:  # a probe reports what failed; it never raises for the service
            return 0, _failure(exc, budget)
        try:
            status = int(response.status_code)
            location = response.headers.get("Location") if status in REDIRECTS else None
            error = _drain(response, budget, start, timer)
        finally:
            response.close()
        if error:
            return status, error
        if not location:
            return status, ""
        target = urljoin(current, location)
        if _valid(target) or not _same_host(current, target):
            return status, f"redirected to another host (status {status})"
        current = target
    return status, f"more than {MAX_REDIRECTS} redirects"


def _drain(response: Any, budget: float, start: float, timer: Callable[[], float]) -> str:
    """Read (and drop) a bounded part of the body within the budget; why not, or ""."""
    read = 0
    try:
        for chunk in response.iter_content(chunk_size=8192):
            read += len(chunk)
            if timer() - start > budget:
                return f"timed out after {budget:g} s"
            if read >= MAX_BODY_BYTES:
                break
    except TRANSPORT_ERRORS as exc:
        return _failure(exc, budget)
    return ""
