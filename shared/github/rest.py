"""A rate-limit-aware GitHub REST client.

The core is sans-I/O: reading a response into data or a typed error, the rate-limit state and
the `Link` header are pure functions. `RestClient` adds the I/O through a `requests.Session`:
retries, waiting out rate limits, conditional requests and pagination.

Retries: GET, HEAD, PUT and DELETE are retried on 5xx and connection errors. A POST or PATCH is
retried only when the caller says it is idempotent by construction (a create with a unique ref,
say); a comment is never posted twice because a response was lost.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import PermanentError, RetryableError

API_VERSION = "2022-11-28"
USER_AGENT = "agent-ops/0.1 (GitHub App backend)"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_REPOSITORY_PATH = re.compile(r"^/repos/([^/]+/[^/]+)")


class GitHubError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(GitHubError, PermanentError):
    pass


class Forbidden(GitHubError, PermanentError):
    pass


class ValidationFailed(GitHubError, PermanentError):
    """422, with GitHub's field errors in the message."""


class Refused(GitHubError, PermanentError):
    """Any other 4xx: GitHub will not do it, and asking again will not change that."""


class TooLarge(PermanentError):
    """A body larger than the caller allows; it was not read to the end."""


class RateLimited(GitHubError, RetryableError):
    def __init__(self, message: str, status: int, retry_at: float) -> None:
        super().__init__(message, status)
        self.retry_at = retry_at


class ServerError(GitHubError, RetryableError):
    pass


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset: float  # epoch seconds
    resource: str = "core"

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            reset = float(lowered["x-ratelimit-reset"])
            return cls(int(lowered["x-ratelimit-limit"]), int(lowered["x-ratelimit-remaining"]),
                       reset / 1000 if reset > 1e11 else reset,  # some recordings use milliseconds
                       lowered.get("x-ratelimit-resource", "core"))
        except (KeyError, ValueError):
            return None


_LINK = re.compile(r'<([^>]+)>;\s*rel="([^"]+)"')


def links(headers: Mapping[str, str]) -> dict[str, str]:
    header = next((v for k, v in headers.items() if k.lower() == "link"), "")
    return {rel: url for url, rel in _LINK.findall(header)}


def _message(body: Any) -> str:
    if isinstance(body, dict):
        text = str(body.get("message", ""))
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            details = []
            for error in errors:
                if isinstance(error, dict):
                    parts = [str(error[k]) for k in ("resource", "field", "code", "message") if error.get(k)]
                    details.append(" ".join(parts))
                else:
                    details.append(str(error))
            text += ": " + "; ".join(details)
        return text
    return str(body)[:200]


def read_response(
    method: str, path: str, status: int, headers: Mapping[str, str], body: Any, now: float
) -> Any:
    """Turn (status, headers, body) into data or a typed error. Pure."""
    if 200 <= status < 300 or status == 304:
        return body
    where = f"{method} {path}"
    message = _message(body)
    lowered = {k.lower(): v for k, v in headers.items()}
    limit = RateLimit.from_headers(headers)
    if status in (403, 429):
        if "retry-after" in lowered:
            delay = float(lowered["retry-after"])
            raise RateLimited(f"{where}: secondary rate limit, retry after {delay:.0f}s", status, now + delay)
        if limit is not None and limit.remaining == 0:
            raise RateLimited(f"{where}: rate limit exhausted until {limit.reset:.0f}", status, limit.reset)
        if "secondary rate limit" in message.lower() or status == 429:
            # GitHub's advice without Retry-After: wait at least a minute.
            raise RateLimited(f"{where}: secondary rate limit: {message}", status, now + 60)
        raise Forbidden(f"{where}: forbidden: {message}", status)
    if status == 404:
        raise NotFound(f"{where}: not found", status)
    if status == 422:
        raise ValidationFailed(f"{where}: validation failed: {message}", status)
    if status >= 500:
        raise ServerError(f"{where}: GitHub answered {status}", status)
    if status == 401:  # a token that expired or was revoked in flight: a new one is asked for next time
        raise ServerError(f"{where}: unauthorized: {message}", status)
    if 400 <= status < 500:  # 400, 409 (an empty repository, a conflict), 410 (gone): retrying cannot help
        raise Refused(f"{where}: refused ({status}): {message}", status)
    raise GitHubError(f"{where}: unexpected {status}: {message}", status)


class ConditionalCache(Protocol):
    """ETag / Last-Modified per URL and per installation (Firestore in production)."""

    def get(self, scope: str, url: str) -> dict[str, Any] | None: ...

    def put(self, scope: str, url: str, entry: dict[str, Any]) -> None: ...


class MemoryConditionalCache:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, scope: str, url: str) -> dict[str, Any] | None:
        return self.entries.get((scope, url))

    def put(self, scope: str, url: str, entry: dict[str, Any]) -> None:
        self.entries[(scope, url)] = entry


@dataclass
class Stats:
    requests: int = 0
    not_modified: int = 0  # 304s: served from the cache, free of rate limit
    conditional: int = 0  # GETs sent with a validator
    retries: int = 0
    waited_seconds: float = 0.0

    @property
    def hit_ratio(self) -> float:
        return self.not_modified / self.conditional if self.conditional else 0.0


class RestClient:
    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        session: Any = None,
        cache: ConditionalCache | None = None,
        cache_scope: str = "",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 3,
        max_wait_seconds: float = 60.0,
        timeout: float = 10.0,
        audit: Any = None,
        actor: str = "",
        reason: str = "",
        write_interval: float = 1.0,
    ) -> None:
        if session is None:
            import requests

            session = requests.Session()
        self._base = base_url.rstrip("/")
        self._token = token
        self._session = session
        self._cache = cache
        self._scope = cache_scope
        self._clock = clock
        self._sleep = sleep
        self._max_retries = max_retries
        self._max_wait = max_wait_seconds
        self._timeout = timeout
        self.rate_limit: RateLimit | None = None
        self.stats = Stats()
        # Who writes and why, for the audit record of every write (agent, task id).
        self._audit = audit
        self._actor = actor
        self._reason = reason
        # GitHub's advice against secondary limits: no concurrent writes, and a second between them.
        self._write_lock = threading.Lock()
        self._write_interval = write_interval
        self._last_write = float("-inf")

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": USER_AGENT, "Authorization": f"Bearer {self._token()}"}

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self._base}{path}"

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: Mapping[str, Any] | None = None, idempotent: bool | None = None) -> Any:
        method = method.upper()
        if method in ("GET", "HEAD"):
            return self._send(method, path, json_body, params, idempotent)[0]
        with self._write_lock:
            pause = self._last_write + self._write_interval - self._clock()
            if pause > 0:
                self._wait(pause)
            try:
                data = self._send(method, path, json_body, params, idempotent)[0]
            except GitHubError as exc:
                self._record_write(method, path, json_body, f"error {exc.status}", str(exc))
                raise
            finally:
                self._last_write = self._clock()
            self._record_write(method, path, json_body, "ok", "")
            return data

    def _record_write(self, method: str, path: str, body: Any, outcome: str, error: str) -> None:
        if self._audit is None:
            return
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
        repository = _REPOSITORY_PATH.match(path)
        self._audit.record(
            key=f"github:{self._actor}:{self._reason}:{method} {path}:{digest}",
            actor=self._actor or "app",
            action=f"github_{method.lower()}",
            subject=path,
            outcome=outcome,
            task_id=self._reason,
            error=error[:500],
            repository=repository.group(1) if repository else "",
        )

    def without_audit(self) -> RestClient:
        """The same client, its writes not audited here: for a caller that audits them itself."""
        quiet = copy.copy(self)
        quiet._audit = None
        return quiet

    def _send(self, method: str, path: str, json_body: Any, params: Mapping[str, Any] | None,
              idempotent: bool | None) -> tuple[Any, Mapping[str, str]]:
        import requests

        url = self._url(path)
        retryable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        attempt = 0
        self._pace()
        while True:
            headers = self._headers()
            cached = None
            if method == "GET" and self._cache is not None:
                cached = self._cache.get(self._scope, _cache_key(url, params))
                if cached:
                    self.stats.conditional += 1
                    if cached.get("etag"):
                        headers["If-None-Match"] = cached["etag"]
                    if cached.get("last_modified"):
                        headers["If-Modified-Since"] = cached["last_modified"]
            self.stats.requests += 1
            try:
                response = self._session.request(
                    method, url, headers=headers, params=params,
                    data=None if json_body is None else json.dumps(json_body),
                    timeout=self._timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if retryable and attempt < self._max_retries:
                    attempt += 1
                    self._backoff(attempt)
                    continue
                raise ServerError(f"{method} {path}: {type(exc).__name__}") from exc
            limit = RateLimit.from_headers(response.headers)
            if limit is not None:
                self.rate_limit = limit
            body = _decode(response)
            try:
                data = read_response(method, path, response.status_code, response.headers, body,
                                     self._clock())
            except RateLimited as exc:
                wait = exc.retry_at - self._clock()
                if attempt < self._max_retries and wait <= self._max_wait:
                    attempt += 1
                    self._wait(max(wait, 0.0))
                    continue
                raise
            except ServerError:
                if retryable and attempt < self._max_retries:
                    attempt += 1
                    self._backoff(attempt)
                    continue
                raise
            if response.status_code == 304 and cached is not None:
                self.stats.not_modified += 1
                return cached["body"], response.headers
            if method == "GET" and self._cache is not None:
                etag = response.headers.get("ETag")
                modified = response.headers.get("Last-Modified")
                if etag or modified:
                    self._cache.put(self._scope, _cache_key(url, params),
                                    {"etag": etag, "last_modified": modified, "body": data})
            return data, response.headers

    def paginate(self, path: str, params: Mapping[str, Any] | None = None,
                 max_pages: int = 10) -> Iterator[Any]:
        """Items of every page, following `Link: rel="next"`, at most `max_pages` pages."""
        url: str | None = path
        query: Mapping[str, Any] | None = {"per_page": 100, **(params or {})}
        for _ in range(max_pages):
            if url is None:
                return
            data, headers = self._send("GET", url, None, query, None)
            yield from data if isinstance(data, list) else [data]
            url = links(headers).get("next")
            query = None  # the next link carries its own query

    def _pace(self) -> None:
        """When the budget runs low, spread what is left over the time to the reset.

        Below 5% of the limit each request waits (reset - now) / remaining, at most `max_wait`,
        so a busy agent slows down instead of running into a wall of 403s.
        """
        limit = self.rate_limit
        if limit is None or limit.remaining >= max(limit.limit // 20, 1):
            return
        until_reset = limit.reset - self._clock()
        if until_reset > 0:
            self._wait(min(until_reset / max(limit.remaining, 1), self._max_wait))

    def _backoff(self, attempt: int) -> None:
        self.stats.retries += 1
        self._wait(min(2 ** (attempt - 1), 8))

    def _wait(self, seconds: float) -> None:
        self.stats.waited_seconds += seconds
        self._sleep(seconds)

    def download(self, path: str, max_bytes: int, timeout: float = 60.0) -> bytes:
        """GET a binary body (an artifact's zip) of at most `max_bytes`, following GitHub's redirect.

        GitHub answers an archive download with a 302 to a short-lived signed URL; `requests` drops
        the Authorization header when the redirect leaves the API's host. Errors are GitHub's
        typed errors, as for `request`; a body over the cap is TooLarge and is not read further.
        """
        import requests

        where = f"GET {path}"
        headers = self._headers()
        self._pace()
        self.stats.requests += 1
        try:
            response = self._session.request("GET", self._url(path), headers=headers, stream=True,
                                             timeout=timeout, allow_redirects=True)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServerError(f"{where}: {type(exc).__name__}") from exc
        try:
            if not 200 <= response.status_code < 300:
                try:
                    body: Any = response.json()
                except ValueError:
                    body = response.text[:200]
                read_response("GET", path, response.status_code, response.headers, body, self._clock())
                raise GitHubError(f"{where}: unexpected {response.status_code}", response.status_code)
            declared = response.headers.get("Content-Length") or ""
            if declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"{where}: {declared} bytes, over the {max_bytes}-byte limit")
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_content(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(f"{where}: more than the {max_bytes}-byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
        except requests.RequestException as exc:
            raise ServerError(f"{where}: the download broke off ({type(exc).__name__})") from exc
        finally:
            response.close()

    @property
    def budget(self) -> int | None:
        """Requests left in the current rate-limit window, for agents to plan with."""
        return None if self.rate_limit is None else self.rate_limit.remaining


def _cache_key(url: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return url
    return url + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))


def _decode(response: Any) -> Any:
    if not response.content:
        return None
    if "json" in response.headers.get("Content-Type", ""):
        try:
            return response.json()
        except ValueError:
            return response.text
    return response.text
