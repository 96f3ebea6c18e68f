"""An LLM provider on this machine: Anthropic's Messages API and OpenAI's Chat Completions, scripted.

`LlmSandbox` is a WSGI app that answers, on one loopback port,

- `POST /v1/messages` as Anthropic documents it: `x-api-key`, `anthropic-version` (2023-06-01 or
  2023-01-01) and `content-type: application/json` headers; a body with `model`, `max_tokens`
  (a positive integer) and non-empty `messages` of `user`/`assistant` turns, an optional `system`;
  a `message` object with `text` content, `stop_reason` and `usage` back. Errors are Anthropic's
  `{"type": "error", "error": {"type", "message"}, "request_id"}` with its statuses (400
  invalid_request_error, 401 authentication_error, 404 not_found_error, 405, 413
  request_too_large, 429 rate_limit_error, 500 api_error, 529 overloaded_error).
- `POST /v1/chat/completions` as OpenAI documents it: `Authorization: Bearer`, a JSON body with
  `model` and non-empty `messages` (`system`, `developer`, `user`, `assistant`, `tool`), an optional
  `max_completion_tokens` or the deprecated `max_tokens`; a `chat.completion` object back. Errors are
  OpenAI's `{"error": {"message", "type", "param", "code"}}` (400, 401, 404, 429, 500, 503).

What the "model" answers is scripted: `POST /_sandbox/replies` queues reply texts, answered first in
first out; with an empty queue the answer is `DEFAULT_REPLY`, which holds no diff. Faults queued
with `POST /_sandbox/faults` answer the next well-formed, authenticated requests with 429, 500, 503
or 529 (and `retry-after` when asked), without taking a reply off the queue. Every API request is
recorded (headers without the key) and served by `GET /_sandbox/requests`. The control API under
`/_sandbox/` takes no key and is no part of either provider's API; see control.py and README.md.

Token usage is deterministic: ceil(characters / 4) of the system prompt and every message's text for
input, of the answer for output. An answer longer than the request's limit is cut at limit * 4
characters with stop reason `max_tokens` (Anthropic) or `length` (OpenAI).
"""

from __future__ import annotations

import json
import math
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

HOST = "127.0.0.1"
DEFAULT_REPLY = "I could not make a change from this description."
ANTHROPIC_VERSIONS = ("2023-06-01", "2023-01-01")
MAX_BODY_BYTES = 32 * 1024 * 1024  # Anthropic's documented limit for the Messages API
MAX_RECORDED = 1000  # the newest requests kept
FAULT_STATUSES = (429, 500, 503, 529)
STOPS = ("end_turn", "max_tokens")
# OpenAI's vocabulary for the same two stops, accepted by the control API too.
STOP_ALIASES = {"end_turn": "end_turn", "stop": "end_turn",
                "max_tokens": "max_tokens", "length": "max_tokens"}
ANTHROPIC = "anthropic"
OPENAI = "openai"
KEY_HEADERS = ("x-api-key", "authorization")
REDACTED = "[redacted]"

ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                         429: "rate_limit_error", 500: "api_error", 503: "api_error", 529: "overloaded_error"}
ANTHROPIC_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "metadata", "stop_sequences",
                              "stream", "temperature", "top_k", "top_p", "tools", "tool_choice", "thinking",
                              "service_tier", "container", "mcp_servers", "context_management"})
OPENAI_FIELDS = frozenset({"messages", "model", "audio", "frequency_penalty", "function_call", "functions",
                           "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
                           "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty",
                           "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier",
                           "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
                           "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
                           "web_search_options"})
OPENAI_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
OPENAI_KEYS_URL = "https://platform.openai.com/account/api-keys"
OPENAI_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    f"obtain an API key from {OPENAI_KEYS_URL}."
)
OPENAI_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you "
    "have trouble figuring out how to fix this, please contact us through our help center at "
    "help.openai.com.)"
)
STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
               403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
               429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
               529: "Site Overloaded"}


class Refusal(Exception):
    """A documented error answer: status, the provider's error type, message, and OpenAI's param/code."""

    def __init__(self, status: int, message: str, *, kind: str = "", param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ScriptedReply:
    text: str
    stop: str = "end_turn"  # end_turn | max_tokens

    def as_dict(self) -> dict[str, str]:
        return {"text": self.text, "stop": self.stop}


@dataclass
class Fault:
    status: int
    count: int = 1
    retry_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "count": self.count, "retry_after": self.retry_after}


def tokens(text: str) -> int:
    """The sandbox's token count: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


class LlmSandbox:
    """Both providers' APIs with one key, scripted replies and faults, and a record of every request."""

    def __init__(self, api_key: str) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("the LLM sandbox needs a non-empty API key")
        self._key = api_key.strip()
        self._lock = threading.Lock()
        self._replies: deque[ScriptedReply] = deque()
        self._faults: deque[Fault] = deque()
        self._requests: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED)
        self._sequence = 0
        self._answered: dict[str, int] = {}
        self._usage = {"input_tokens": 0, "output_tokens": 0}
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def __repr__(self) -> str:
        return f"LlmSandbox(base_url={self.base_url!r})"

    # ---- serving -------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1:`port` (0: a free one) from a daemon thread; return the base URL."""
        server = _ThreadingServer((HOST, port), _QuietHandler)
        server.set_app(self.wsgi)
        self._server = server
        self.base_url = f"http://{HOST}:{server.server_port}"
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="llm-sandbox",
                                        daemon=True)
        self._thread.start()
        return self.base_url

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ---- control, in process (the same as /_sandbox/ over HTTP) ----------------------------------

    def script_reply(self, text: str, stop: str = "end_turn") -> int:
        """Queue the text the next request is answered with; returns how many are queued."""
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        if stop not in STOP_ALIASES:
            raise ValueError(f"stop must be one of {', '.join(STOPS)}, got {stop!r}")
        with self._lock:
            self._replies.append(ScriptedReply(text, STOP_ALIASES[stop]))
            return len(self._replies)

    def add_fault(self, status: int, count: int = 1,
                  retry_after: float | None = None) -> list[dict[str, Any]]:
        """Answer the next `count` well-formed requests with `status`; returns every queued fault."""
        if isinstance(status, bool) or status not in FAULT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(map(str, FAULT_STATUSES))}, got {status!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        if retry_after is not None and (isinstance(retry_after, bool)
                                        or not isinstance(retry_after, (int, float))
                                        or not math.isfinite(retry_after) or retry_after < 0):
            raise ValueError(f"retry_after must be a non-negative number of seconds, got {retry_after!r}")
        with self._lock:
            self._faults.append(Fault(status, count, retry_after))
            return [fault.as_dict() for fault in self._faults]

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(entry)) for entry in self._requests]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def clear_replies(self) -> None:
        with self._lock:
            self._replies.clear()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self._faults.clear()
            self._requests.clear()
            self._answered.clear()
            self._usage = {"input_tokens": 0, "output_tokens": 0}

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "replies": [reply.as_dict() for reply in self._replies],
                "faults": [fault.as_dict() for fault in self._faults],
                "requests": len(self._requests),
                "answered": dict(self._answered),
                "usage": dict(self._usage),
                "default_reply": DEFAULT_REPLY,
            }

    # ---- WSGI ----------------------------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            status, body = self._control(method, path, environ)
            return _respond(start_response, status, body, {})
        provider = _provider_of(path, environ)
        headers = _headers(environ)
        with self._lock:
            self._sequence += 1
            number = self._sequence
        request_id = f"req_sandbox{number:014d}" if provider == ANTHROPIC else f"req_{number:032x}"
        raw = b""
        body: Any = None
        try:
            raw = _read_body(environ)
            body = self._serve(provider, method, path, headers, raw, number)
            status, extra = 200, {}
        except Refusal as refusal:
            status, body, extra = refusal.status, _error_body(provider, refusal, request_id), refusal.headers
        extra = {("request-id" if provider == ANTHROPIC else "x-request-id"): request_id, **extra}
        self._record(provider, method, path, environ.get("QUERY_STRING", ""), headers, raw, status,
                     request_id)
        return _respond(start_response, status, body, extra)

    def _serve(self, provider: str, method: str, path: str, headers: Mapping[str, str], raw: bytes,
               number: int) -> Any:
        if provider == ANTHROPIC:
            if path != "/v1/messages":
                raise Refusal(404, f"Not found: {method} {path}")
            if method != "POST":
                raise Refusal(405, f"Method Not Allowed: {method} {path}; /v1/messages takes POST",
                              headers={"allow": "POST"})
            self._anthropic_auth(headers)
            request = _anthropic_request(headers, raw)
            return self._answer(ANTHROPIC, request, number)
        if path != "/v1/chat/completions" or method != "POST":
            raise Refusal(404, f"Invalid URL ({method} {path})", kind="invalid_request_error")
        self._openai_auth(headers)
        request = _openai_request(headers, raw)
        return self._answer(OPENAI, request, number)

    def _anthropic_auth(self, headers: Mapping[str, str]) -> None:
        key = headers.get("x-api-key", "")
        if not key:
            raise Refusal(401, "x-api-key header is required")
        if key != self._key:
            raise Refusal(401, "invalid x-api-key")

    def _openai_auth(self, headers: Mapping[str, str]) -> None:
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if not authorization or scheme.lower() != "bearer" or not value.strip():
            raise Refusal(401, OPENAI_NO_KEY, kind="invalid_request_error")
        if value.strip() != self._key:
            # OpenAI echoes a masked key here; the sandbox echoes none of it.
            raise Refusal(401, f"Incorrect API key provided. You can find your API key at {OPENAI_KEYS_URL}.",
                          kind="invalid_request_error", code="invalid_api_key")

    def _answer(self, provider: str, request: dict[str, Any], number: int) -> dict[str, Any]:
        with self._lock:
            fault = self._faults[0] if self._faults else None
            if fault is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.popleft()
            reply = None if fault is not None else (self._replies.popleft() if self._replies else None)
        if fault is not None:
            raise _fault_refusal(provider, fault)
        scripted = reply or ScriptedReply(DEFAULT_REPLY)
        text, stop = scripted.text, scripted.stop
        limit = request["limit"]
        if limit is not None and tokens(text) > limit:
            text, stop = text[: limit * 4], "max_tokens"
        input_tokens, output_tokens = tokens(request["input_text"]), tokens(text)
        with self._lock:
            self._answered[provider] = self._answered.get(provider, 0) + 1
            self._usage["input_tokens"] += input_tokens
            self._usage["output_tokens"] += output_tokens
        if provider == ANTHROPIC:
            return {
                "id": f"msg_sandbox{number:014d}", "type": "message", "role": "assistant",
                "model": request["model"], "content": [{"type": "text", "text": text}],
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }
        return {
            "id": f"chatcmpl-sandbox{number:014d}", "object": "chat.completion", "created": int(time.time()),
            "model": request["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None,
                                                  "annotations": []},
                         "logprobs": None, "finish_reason": "length" if stop == "max_tokens" else "stop"}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": None,
        }

    # ---- the record ----------------------------------------------------------------------------

    def _record(self, provider: str, method: str, path: str, query: str, headers: Mapping[str, str],
                raw: bytes, status: int, request_id: str) -> None:
        shown = {name: (REDACTED if name in KEY_HEADERS or (self._key in value) else value)
                 for name, value in headers.items()}
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text[:10_000]
        entry = {"provider": provider, "method": method, "path": path, "query": query, "headers": shown,
                 "body": body, "status": status, "request_id": request_id, "time": time.time()}
        with self._lock:
            self._requests.append(entry)

    # ---- the control API -----------------------------------------------------------------------

    def _control(self, method: str, path: str, environ: dict[str, Any]) -> tuple[int, Any]:
        routes: dict[str, dict[str, Callable[[], tuple[int, Any]]]] = {
            "/_sandbox/replies": {"GET": lambda: (200, {"replies": self.state()["replies"]}),
                                  "POST": lambda: self._post_reply(environ),
                                  "DELETE": lambda: (self.clear_replies(), (204, None))[1]},
            "/_sandbox/faults": {"GET": lambda: (200, {"faults": self.state()["faults"]}),
                                 "POST": lambda: self._post_fault(environ),
                                 "DELETE": lambda: (self.clear_faults(), (204, None))[1]},
            "/_sandbox/requests": {"GET": lambda: (200, {"requests": self.requests()}),
                                   "DELETE": lambda: (self.clear_requests(), (204, None))[1]},
            "/_sandbox/state": {"GET": lambda: (200, self.state())},
            "/_sandbox/reset": {"POST": lambda: (self.reset(), (204, None))[1]},
        }
        handlers = routes.get(path.rstrip("/"))
        if handlers is None:
            return 404, {"error": f"no sandbox control at {path}; see sandbox/llm/README.md"}
        handler = handlers.get(method)
        if handler is None:
            return 405, {"error": f"{path} takes {', '.join(handlers)}, not {method}"}
        try:
            return handler()
        except (ValueError, Refusal) as exc:
            return 400, {"error": str(exc)}

    def _post_reply(self, environ: dict[str, Any]) -> tuple[int, Any]:
        body = _control_json(environ)
        unknown = sorted(set(body) - {"text", "stop"})
        if unknown:
            raise ValueError(f"unknown fields {unknown}; a reply takes text and stop")
        if not isinstance(body.get("text"), str):
            raise ValueError("text is required and must be a string")
        queued = self.script_reply(body["text"], body.get("stop", "end_turn"))
        return 201, {"queued": queued}

    def _post_fault(self, environ: dict[str, Any]) -> tuple[int, Any]:
        body = _control_json(environ)
        unknown = sorted(set(body) - {"status", "count", "retry_after"})
        if unknown:
            raise ValueError(f"unknown fields {unknown}; a fault takes status, count and retry_after")
        if "status" not in body:
            raise ValueError("status is required")
        faults = self.add_fault(body["status"], body.get("count", 1), body.get("retry_after"))
        return 201, {"faults": faults}


# ---- request validation ------------------------------------------------------------------------


def _anthropic_request(headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    version = headers.get("anthropic-version", "")
    if not version:
        raise Refusal(400, "anthropic-version: header is required")
    if version not in ANTHROPIC_VERSIONS:
        raise Refusal(400, f"anthropic-version: invalid version {version[:40]!r}; "
                           f"supported: {', '.join(ANTHROPIC_VERSIONS)}")
    if _media_type(headers) != "application/json":
        raise Refusal(400, "content-type: expected application/json")
    body = _json_object(raw, ANTHROPIC)
    extra = sorted(set(body) - ANTHROPIC_FIELDS)
    if extra:
        raise Refusal(400, f"{extra[0]}: Extra inputs are not permitted")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise Refusal(400, f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise Refusal(400, "model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise Refusal(400, "max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise Refusal(400, "max_tokens: Input should be greater than or equal to 1")
    if body.get("stream"):
        raise Refusal(400, "stream: the sandbox does not stream; send stream false or leave it out")
    texts: list[str] = []
    if "system" in body:
        texts.extend(_anthropic_system(body["system"]))
    messages = body["messages"]
    if not isinstance(messages, list):
        raise Refusal(400, "messages: Input should be a valid list")
    if not messages:
        raise Refusal(400, "messages: at least one message is required")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise Refusal(400, f"{where}: Input should be a valid dictionary")
        for name in ("role", "content"):
            if name not in message:
                raise Refusal(400, f"{where}.{name}: Field required")
        if message["role"] not in ("user", "assistant"):
            raise Refusal(400, f"{where}.role: Input should be 'user' or 'assistant'")
        texts.extend(_anthropic_content(message["content"], f"{where}.content"))
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not 0 <= temperature <= 1):
        raise Refusal(400, "temperature: Input should be a number between 0 and 1")
    return {"model": body["model"], "limit": max_tokens, "input_text": "".join(texts)}


def _anthropic_system(system: Any) -> list[str]:
    if isinstance(system, str):
        return [system]
    if not isinstance(system, list):
        raise Refusal(400, "system: Input should be a valid string or a list of text blocks")
    texts = []
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Refusal(400, f"system.{index}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise Refusal(400, f"system.{index}.text: Field required")
        texts.append(block["text"])
    return texts


def _anthropic_content(content: Any, where: str) -> list[str]:
    if isinstance(content, str):
        if not content:
            raise Refusal(400, f"{where}: messages must have non-empty content")
        return [content]
    if not isinstance(content, list):
        raise Refusal(400, f"{where}: Input should be a valid string or a list of content blocks")
    if not content:
        raise Refusal(400, f"{where}: messages must have non-empty content")
    texts = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise Refusal(400, f"{where}.{index}.type: Field required")
        if block["type"] == "text":
            if not isinstance(block.get("text"), str) or not block["text"]:
                raise Refusal(400, f"{where}.{index}.text: text content blocks must be non-empty")
            texts.append(block["text"])
    return texts


def _openai_request(headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    if _media_type(headers) != "application/json":
        raise Refusal(400, OPENAI_BAD_JSON, kind="invalid_request_error")
    body = _json_object(raw, OPENAI)
    extra = sorted(set(body) - OPENAI_FIELDS)
    if extra:
        raise Refusal(400, f"Unrecognized request argument supplied: {extra[0]}",
                      kind="invalid_request_error")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Refusal(400, "you must provide a model parameter", kind="invalid_request_error")
    if "messages" not in body:
        raise _openai_missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _openai_type("messages", "an array", messages)
    if not messages:
        raise Refusal(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but "
                           "got an empty array instead.", kind="invalid_request_error", param="messages",
                      code="empty_array")
    texts: list[str] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _openai_type(where, "an object", message)
        if "role" not in message:
            raise _openai_missing(f"{where}.role")
        if message["role"] not in OPENAI_ROLES:
            supported = ", ".join(f"'{role}'" for role in OPENAI_ROLES[:-1]) + f", and '{OPENAI_ROLES[-1]}'"
            role = str(message["role"])[:40]
            raise Refusal(400, f"Invalid value: '{role}'. Supported values are: {supported}.",
                          kind="invalid_request_error", param=f"{where}.role", code="invalid_value")
        if "content" not in message and message["role"] != "assistant":
            raise _openai_missing(f"{where}.content")
        texts.extend(_openai_content(message.get("content"), f"{where}.content"))
    limit = None
    for name in ("max_tokens", "max_completion_tokens"):  # the newer one wins when both are given
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _openai_type(name, "an integer", value)
        if value < 1:
            raise Refusal(400, f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but "
                               f"got {value} instead.", kind="invalid_request_error", param=name,
                          code="integer_below_min_value")
        limit = value
    if body.get("stream"):
        raise Refusal(400, "The sandbox does not stream; send stream false or leave it out.",
                      kind="invalid_request_error", param="stream", code="unsupported_value")
    if body.get("n") not in (None, 1):
        raise Refusal(400, "The sandbox answers one choice; send n 1 or leave it out.",
                      kind="invalid_request_error", param="n", code="unsupported_value")
    return {"model": body["model"], "limit": limit, "input_text": "".join(texts)}


def _openai_content(content: Any, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise _openai_type(where, "a string or an array of content parts", content)
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or "type" not in part:
            raise _openai_missing(f"{where}[{index}].type")
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise _openai_missing(f"{where}[{index}].text")
            texts.append(part["text"])
    return texts


def _openai_missing(param: str) -> Refusal:
    return Refusal(400, f"Missing required parameter: '{param}'.", kind="invalid_request_error", param=param,
                   code="missing_required_parameter")


def _openai_type(param: str, expected: str, value: Any) -> Refusal:
    got = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string", list: "an array",
           dict: "an object", type(None): "null"}.get(type(value), "something else")
    return Refusal(400, f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
                   kind="invalid_request_error", param=param, code="invalid_type")


def _json_object(raw: bytes, provider: str) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        if provider == OPENAI:
            raise Refusal(400, OPENAI_BAD_JSON, kind="invalid_request_error") from None
        raise Refusal(400, "There was an error parsing the body of your request: it is not valid "
                           "JSON") from None
    if not isinstance(body, dict):
        if provider == OPENAI:
            raise Refusal(400, OPENAI_BAD_JSON, kind="invalid_request_error")
        raise Refusal(400, "The request body must be a JSON object")
    return body


def _fault_refusal(provider: str, fault: Fault) -> Refusal:
    headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
    if provider == ANTHROPIC:
        message = {429: "Number of requests has exceeded your rate limit (a sandbox fault). Please try again "
                        "later.",
                   500: "Internal server error", 503: "Service unavailable", 529: "Overloaded"}[fault.status]
        return Refusal(fault.status, message, headers=headers)
    if fault.status == 429:
        return Refusal(429, "Rate limit reached for requests (a sandbox fault). Please try again later.",
                       kind="requests", code="rate_limit_exceeded", headers=headers)
    if fault.status == 500:
        return Refusal(500, "The server had an error while processing your request. Sorry about that!",
                       kind="server_error", headers=headers)
    # OpenAI answers an overloaded model with 503; it has no 529.
    return Refusal(503, "The server is overloaded or not ready yet.", kind="service_unavailable_error",
                   code="server_is_overloaded", headers=headers)


def _error_body(provider: str, refusal: Refusal, request_id: str) -> dict[str, Any]:
    if provider == ANTHROPIC:
        kind = refusal.kind or ANTHROPIC_ERROR_TYPES.get(refusal.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": refusal.message},
                "request_id": request_id}
    return {"error": {"message": refusal.message, "type": refusal.kind or "invalid_request_error",
                      "param": refusal.param, "code": refusal.code}}


# ---- HTTP plumbing -----------------------------------------------------------------------------


def _provider_of(path: str, environ: Mapping[str, Any]) -> str:
    if path.startswith("/v1/chat/"):
        return OPENAI
    if path.startswith("/v1/messages"):
        return ANTHROPIC
    # Elsewhere, answer in the format of whichever provider's key header came.
    return OPENAI if "HTTP_AUTHORIZATION" in environ and "HTTP_X_API_KEY" not in environ else ANTHROPIC


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items()
               if key.startswith("HTTP_")}
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = str(environ[key])
    return dict(sorted(headers.items()))


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _read_body(environ: Mapping[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise Refusal(413, f"Request exceeds the maximum allowed number of bytes ({MAX_BODY_BYTES})")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _control_json(environ: Mapping[str, Any]) -> dict[str, Any]:
    raw = _read_body(environ)
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _respond(start_response: Callable[..., Any], status: int, body: Any,
             headers: Mapping[str, str]) -> list[bytes]:
    data = b"" if body is None else json.dumps(body).encode("utf-8")
    sent = [("Content-Length", str(len(data))), *headers.items()]
    if body is not None:
        sent.insert(0, ("Content-Type", "application/json"))
    start_response(f"{status} {STATUS_TEXT.get(status, 'Error')}", sent)
    return [data]


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a log line per request (the sandbox records requests instead)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return None


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (getfqdn), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()
