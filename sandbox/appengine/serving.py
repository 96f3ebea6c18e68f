"""What a deployed version and a service's traffic router serve, each on its own loopback port."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

HOST = "127.0.0.1"
# How long a stopping server may take to notice; small, so reset and delete are quick.
POLL_INTERVAL_SECONDS = 0.05
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
# The router's own server sets these on its answer.
NOT_PASSED_BACK = HOP_BY_HOP | {"date", "server"}


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a log line per request (the sandbox keeps counters instead)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LoopbackServer:
    """A threaded WSGI server on a loopback port, serving from a daemon thread until stopped."""

    def __init__(self, app: Callable[..., Any], port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(HOST, port, app, threaded=True,
                                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_INTERVAL_SECONDS,),
                                        name=f"sandbox-server-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting connections and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class Faults:
    unhealthy: bool = False
    latency_ms: int = 0
    error_rate: float = 0.0


def _json(start_response: Callable[..., Any], status: str, body: dict[str, Any] | str,
          headers: list[tuple[str, str]]) -> list[bytes]:
    if isinstance(body, str):
        data, content_type = body.encode(), "text/plain; charset=utf-8"
    else:
        data, content_type = json.dumps(body).encode(), "application/json"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), *headers])
    return [data]


class VersionServer:
    """One deployed version: `GET /health` and `GET /`, with injectable faults and request counters.

    `on_response(status_code)` hears of every answer it gives, for the sandbox's Monitoring metric.
    """

    def __init__(self, service: str, version: str, rng: random.Random, serving: bool = True,
                 on_response: Callable[[int], None] | None = None) -> None:
        self.service = service
        self.version = version
        self.serving = serving
        self._on_response = on_response
        self._rng = rng
        self._lock = threading.Lock()
        self._faults = Faults()
        self.requests = 0
        self.errors = 0
        self._server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"version {self.service}/{self.version} is not started")
        return self._server.url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"version {self.service}/{self.version} is not started")
        return self._server.port

    def start(self) -> str:
        self._server = LoopbackServer(self.wsgi)
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self._faults)

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            for name, value in changes.items():
                setattr(self._faults, name, value)
            return asdict(self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = Faults()

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "errors": self.errors}

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            self.requests += 1
            faults = Faults(**asdict(self._faults))
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        status, body = self._answer(environ, faults)
        code = int(status.split()[0])
        if code >= 500:
            with self._lock:
                self.errors += 1
        if self._on_response is not None:
            self._on_response(code)
        return _json(start_response, status, body, [("X-Version", self.version)])

    def _answer(self, environ: dict[str, Any], faults: Faults) -> tuple[str, dict[str, Any] | str]:
        path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
        if not self.serving:
            return "503 Service Unavailable", {"status": "stopped", "version": self.version}
        if faults.error_rate and self._rng.random() < faults.error_rate:
            return "500 Internal Server Error", {"error": "injected fault", "version": self.version}
        if path not in ("/", "/health"):
            return "404 Not Found", {"error": f"no handler for {path}", "version": self.version}
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", {"error": f"{method} is not allowed", "version": self.version}
        if path == "/":
            return "200 OK", self.version
        if faults.unhealthy:
            return "503 Service Unavailable", {"status": "unhealthy", "version": self.version}
        return "200 OK", {"status": "ok", "version": self.version}


class ServiceRouter:
    """A service's own URL: each request goes to the version `choose` picks, over HTTP."""

    def __init__(self, service: str, choose: Callable[[dict[str, Any]], tuple[int, str] | None]) -> None:
        self.service = service
        self._choose = choose
        self._server = LoopbackServer(self.wsgi)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        chosen = self._choose(environ)
        if chosen is None:
            wanted = environ.get("HTTP_X_SANDBOX_VERSION")
            message = f"no version {wanted} in service {self.service}" if wanted else \
                f"service {self.service} has no version to route to"
            return _json(start_response, "404 Not Found", {"error": message}, [])
        port, version = chosen
        query = environ.get("QUERY_STRING")
        target = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in HOP_BY_HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            connection.request(environ["REQUEST_METHOD"], target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except OSError as exc:
            return _json(start_response, "502 Bad Gateway",
                         {"error": f"version {version} is unreachable: {exc}"}, [])
        finally:
            connection.close()
        passed = [(key, value) for key, value in response.getheaders() if key.lower() not in NOT_PASSED_BACK]
        start_response(f"{response.status} {response.reason}", [*passed, ("Content-Length", str(len(data)))])
        return [data]
