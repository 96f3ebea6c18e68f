"""The LLM sandbox speaks Anthropic's Messages API and OpenAI's Chat Completions as documented.

It is served in process on a free loopback port and driven over HTTP with `requests`, exactly as the
code agent's client and the tests drive it.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.llm import DEFAULT_REPLY, LlmSandbox, LlmSandboxControl, LlmSandboxError

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-sandbox-test-key-0123456789"
ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
OPENAI_HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
ANTHROPIC_BODY = {"model": "claude-test", "max_tokens": 100, "system": "be brief",
                  "messages": [{"role": "user", "content": "hello"}]}
OPENAI_BODY = {"model": "gpt-test", "max_completion_tokens": 100,
               "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}
ANTHROPIC_ERROR_TYPES = {"invalid_request_error", "authentication_error", "permission_error",
                         "not_found_error", "request_too_large", "rate_limit_error", "api_error",
                         "overloaded_error"}


@pytest.fixture
def sandbox() -> Iterator[LlmSandbox]:
    server = LlmSandbox(KEY)
    server.start(0)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def control(sandbox: LlmSandbox) -> Iterator[LlmSandboxControl]:
    client = LlmSandboxControl(sandbox.base_url)
    yield client
    client.close()


def anthropic(sandbox: LlmSandbox, body: Any = None, headers: dict[str, str | None] | None = None,
              method: str = "POST", path: str = "/v1/messages",
              data: bytes | None = None) -> requests.Response:
    sent = {k: v for k, v in {**ANTHROPIC_HEADERS, **(headers or {})}.items() if v is not None}
    payload = data if data is not None else json.dumps(ANTHROPIC_BODY if body is None else body).encode()
    return requests.request(method, sandbox.base_url + path, data=payload, headers=sent, timeout=10)


def openai(sandbox: LlmSandbox, body: Any = None, headers: dict[str, str | None] | None = None,
           method: str = "POST", path: str = "/v1/chat/completions",
           data: bytes | None = None) -> requests.Response:
    sent = {k: v for k, v in {**OPENAI_HEADERS, **(headers or {})}.items() if v is not None}
    payload = data if data is not None else json.dumps(OPENAI_BODY if body is None else body).encode()
    return requests.request(method, sandbox.base_url + path, data=payload, headers=sent, timeout=10)


def assert_anthropic_error(response: requests.Response, status: int, kind: str, message: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind and kind in ANTHROPIC_ERROR_TYPES
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert message in body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]


def assert_openai_error(response: requests.Response, status: int, kind: str, message: str = "",
                        param: str | None = None, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == kind
    assert message in body["error"]["message"]
    assert body["error"]["param"] == param
    assert body["error"]["code"] == code
    assert response.headers["x-request-id"]


def with_body(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(ANTHROPIC_BODY))
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def openai_body(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(OPENAI_BODY))
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


# ---- Anthropic: request validation ------------------------------------------------------------

ANTHROPIC_REFUSALS = [
    # (id, headers, body, status, error type, message)
    ("missing-key", {"x-api-key": None}, None, 401, "authentication_error", "x-api-key header is required"),
    ("wrong-key", {"x-api-key": "sk-wrong"}, None, 401, "authentication_error", "invalid x-api-key"),
    ("bearer-instead-of-x-api-key", {"x-api-key": None, "Authorization": f"Bearer {KEY}"}, None, 401,
     "authentication_error", "x-api-key"),
    ("missing-version", {"anthropic-version": None}, None, 400, "invalid_request_error",
     "anthropic-version: header is required"),
    ("unknown-version", {"anthropic-version": "2024-13-01"}, None, 400, "invalid_request_error",
     "anthropic-version"),
    ("not-json-content-type", {"content-type": "text/plain"}, None, 400, "invalid_request_error",
     "content-type"),
    ("missing-model", {}, with_body(model=...), 400, "invalid_request_error", "model: Field required"),
    ("missing-max-tokens", {}, with_body(max_tokens=...), 400, "invalid_request_error",
     "max_tokens: Field required"),
    ("missing-messages", {}, with_body(messages=...), 400, "invalid_request_error",
     "messages: Field required"),
    ("model-not-a-string", {}, with_body(model=7), 400, "invalid_request_error", "model"),
    ("max-tokens-zero", {}, with_body(max_tokens=0), 400, "invalid_request_error",
     "max_tokens: Input should be greater than or equal to 1"),
    ("max-tokens-negative", {}, with_body(max_tokens=-5), 400, "invalid_request_error", "max_tokens"),
    ("max-tokens-a-string", {}, with_body(max_tokens="100"), 400, "invalid_request_error",
     "max_tokens: Input should be a valid integer"),
    ("max-tokens-a-float", {}, with_body(max_tokens=10.5), 400, "invalid_request_error", "valid integer"),
    ("max-tokens-a-boolean", {}, with_body(max_tokens=True), 400, "invalid_request_error", "valid integer"),
    ("messages-empty", {}, with_body(messages=[]), 400, "invalid_request_error", "at least one message"),
    ("messages-not-a-list", {}, with_body(messages="hello"), 400, "invalid_request_error", "valid list"),
    ("message-not-an-object", {}, with_body(messages=["hello"]), 400, "invalid_request_error", "messages.0"),
    ("message-without-role", {}, with_body(messages=[{"content": "hi"}]), 400, "invalid_request_error",
     "messages.0.role: Field required"),
    ("message-without-content", {}, with_body(messages=[{"role": "user"}]), 400, "invalid_request_error",
     "messages.0.content: Field required"),
    ("system-role-in-messages", {}, with_body(messages=[{"role": "system", "content": "x"}]), 400,
     "invalid_request_error", "messages.0.role: Input should be 'user' or 'assistant'"),
    ("empty-content", {}, with_body(messages=[{"role": "user", "content": ""}]), 400, "invalid_request_error",
     "non-empty"),
    ("empty-text-block", {},
     with_body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
     400, "invalid_request_error", "non-empty"),
    ("block-without-type", {}, with_body(messages=[{"role": "user", "content": [{"text": "x"}]}]), 400,
     "invalid_request_error", "messages.0.content.0.type"),
    ("system-not-text", {}, with_body(system=42), 400, "invalid_request_error", "system"),
    ("system-block-not-text", {}, with_body(system=[{"type": "image"}]), 400, "invalid_request_error",
     "system.0.type"),
    ("openai-field-name", {}, with_body(max_completion_tokens=10), 400, "invalid_request_error",
     "max_completion_tokens: Extra inputs are not permitted"),
    ("streaming", {}, with_body(stream=True), 400, "invalid_request_error", "stream"),
    ("temperature-out-of-range", {}, with_body(temperature=3), 400, "invalid_request_error", "temperature"),
    ("body-not-an-object", {}, [1, 2], 400, "invalid_request_error", "JSON object"),
]


@pytest.mark.parametrize(("headers", "body", "status", "kind", "message"),
                         [case[1:] for case in ANTHROPIC_REFUSALS],
                         ids=[case[0] for case in ANTHROPIC_REFUSALS])
def test_anthropic_refuses_what_the_api_refuses(sandbox, headers, body, status, kind, message):
    assert_anthropic_error(anthropic(sandbox, body, headers), status, kind, message)


def test_anthropic_refuses_a_body_that_is_not_json(sandbox):
    assert_anthropic_error(anthropic(sandbox, data=b"{not json"), 400, "invalid_request_error", "parsing")


def test_anthropic_answers_other_paths_and_methods_in_its_error_shape(sandbox):
    assert_anthropic_error(anthropic(sandbox, path="/v1/complete"), 404, "not_found_error", "/v1/complete")
    response = anthropic(sandbox, method="GET")
    assert_anthropic_error(response, 405, "invalid_request_error", "POST")
    assert response.headers["allow"] == "POST"


def test_the_key_is_checked_before_the_body(sandbox):
    assert_anthropic_error(anthropic(sandbox, data=b"nonsense", headers={"x-api-key": "wrong"}), 401,
                           "authentication_error")


def test_anthropic_accepts_the_documented_shapes(sandbox):
    body = with_body(system=[{"type": "text", "text": "be brief"}], temperature=0.2,
                     metadata={"user_id": "u"},
                     messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]},
                               {"role": "assistant", "content": "Sure:"}])
    response = anthropic(sandbox, body, headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.text
    assert anthropic(sandbox, headers={"anthropic-version": "2023-01-01"}).status_code == 200


def test_anthropic_answers_a_message_object(sandbox):
    sandbox.script_reply("Here you are.")
    response = anthropic(sandbox)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "claude-test")
    assert body["content"] == [{"type": "text", "text": "Here you are."}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"]["input_tokens"] == math.ceil(len("be brief" + "hello") / 4)
    assert body["usage"]["output_tokens"] == math.ceil(len("Here you are.") / 4)


# ---- OpenAI: request validation ---------------------------------------------------------------

OPENAI_REFUSALS = [
    # (id, headers, body, status, type, message, param, code)
    ("missing-key", {"Authorization": None}, None, 401, "invalid_request_error",
     "You didn't provide an API key", None, None),
    ("not-bearer", {"Authorization": f"Basic {KEY}"}, None, 401, "invalid_request_error",
     "You didn't provide an API key", None, None),
    ("x-api-key-instead", {"Authorization": None, "x-api-key": KEY}, None, 401, "invalid_request_error",
     "Authorization header", None, None),
    ("wrong-key", {"Authorization": "Bearer sk-wrong"}, None, 401, "invalid_request_error",
     "Incorrect API key provided", None, "invalid_api_key"),
    ("not-json-content-type", {"Content-Type": "text/plain"}, None, 400, "invalid_request_error",
     "could not parse the JSON body", None, None),
    ("missing-model", {}, openai_body(model=...), 400, "invalid_request_error",
     "you must provide a model parameter", None, None),
    ("missing-messages", {}, openai_body(messages=...), 400, "invalid_request_error",
     "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"),
    ("messages-empty", {}, openai_body(messages=[]), 400, "invalid_request_error", "empty array", "messages",
     "empty_array"),
    ("messages-not-an-array", {}, openai_body(messages={"role": "user"}), 400, "invalid_request_error",
     "Invalid type for 'messages'", "messages", "invalid_type"),
    ("message-without-role", {}, openai_body(messages=[{"content": "x"}]), 400, "invalid_request_error",
     "Missing required parameter: 'messages[0].role'.", "messages[0].role", "missing_required_parameter"),
    ("unknown-role", {}, openai_body(messages=[{"role": "bot", "content": "x"}]), 400,
     "invalid_request_error", "Invalid value: 'bot'", "messages[0].role", "invalid_value"),
    ("user-without-content", {}, openai_body(messages=[{"role": "user"}]), 400, "invalid_request_error",
     "'messages[0].content'", "messages[0].content", "missing_required_parameter"),
    ("max-completion-tokens-zero", {}, openai_body(max_completion_tokens=0), 400, "invalid_request_error",
     "integer below minimum value", "max_completion_tokens", "integer_below_min_value"),
    ("max-completion-tokens-a-string", {}, openai_body(max_completion_tokens="10"), 400,
     "invalid_request_error", "expected an integer, but got a string", "max_completion_tokens",
     "invalid_type"),
    ("deprecated-max-tokens-a-float", {}, openai_body(max_tokens=1.5), 400, "invalid_request_error",
     "Invalid type for 'max_tokens'", "max_tokens", "invalid_type"),
    ("anthropic-field-name", {}, openai_body(system="x"), 400, "invalid_request_error",
     "Unrecognized request argument supplied: system", None, None),
    ("streaming", {}, openai_body(stream=True), 400, "invalid_request_error", "stream", "stream",
     "unsupported_value"),
]


@pytest.mark.parametrize(("headers", "body", "status", "kind", "message", "param", "code"),
                         [case[1:] for case in OPENAI_REFUSALS], ids=[case[0] for case in OPENAI_REFUSALS])
def test_openai_refuses_what_the_api_refuses(sandbox, headers, body, status, kind, message, param, code):
    assert_openai_error(openai(sandbox, body, headers), status, kind, message, param, code)


def test_openai_refuses_a_body_that_is_not_json(sandbox):
    assert_openai_error(openai(sandbox, data=b"{"), 400, "invalid_request_error",
                        "could not parse the JSON body")


def test_openai_answers_other_paths_and_methods_as_invalid_urls(sandbox):
    assert_openai_error(openai(sandbox, path="/v1/chat/completion"), 404, "invalid_request_error",
                        "Invalid URL (POST /v1/chat/completion)")
    assert_openai_error(openai(sandbox, method="GET"), 404, "invalid_request_error",
                        "Invalid URL (GET /v1/chat/completions)")


def test_openai_answers_a_chat_completion_object(sandbox):
    sandbox.script_reply("Here you are.")
    body = openai(sandbox).json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    assert len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == "Here you are."
    usage = body["usage"]
    assert usage["prompt_tokens"] == math.ceil(len("be brief" + "hello") / 4)
    assert usage["completion_tokens"] == math.ceil(len("Here you are.") / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_openai_accepts_the_deprecated_max_tokens_developer_role_and_content_parts(sandbox):
    body = openai_body(max_completion_tokens=..., max_tokens=50,
                       messages=[{"role": "developer", "content": "rules"},
                                 {"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    response = openai(sandbox, body)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == math.ceil(len("ruleshello") / 4)
    assert openai(sandbox, openai_body(max_completion_tokens=...)).status_code == 200  # no limit at all


# ---- replies, usage, truncation ---------------------------------------------------------------

def test_scripted_replies_are_answered_in_order_then_the_default(sandbox, control):
    assert control.script_reply("first") == 1
    assert control.script_reply("second") == 2
    assert control.script_reply("third") == 3
    assert [r["text"] for r in control.replies()] == ["first", "second", "third"]
    assert anthropic(sandbox).json()["content"][0]["text"] == "first"
    assert openai(sandbox).json()["choices"][0]["message"]["content"] == "second"
    assert anthropic(sandbox).json()["content"][0]["text"] == "third"
    assert anthropic(sandbox).json()["content"][0]["text"] == DEFAULT_REPLY
    assert openai(sandbox).json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert "```" not in DEFAULT_REPLY and "--- " not in DEFAULT_REPLY


def test_a_refused_request_does_not_take_a_reply(sandbox, control):
    control.script_reply("kept")
    assert anthropic(sandbox, headers={"x-api-key": "wrong"}).status_code == 401
    assert anthropic(sandbox, with_body(max_tokens=0)).status_code == 400
    assert anthropic(sandbox).json()["content"][0]["text"] == "kept"


USAGE_CASES = [
    # (id, system, messages, reply, input tokens, output tokens)
    ("exact-multiple", "abcd", [{"role": "user", "content": "efgh"}], "12345678", 2, 2),
    ("rounds-up", "a", [{"role": "user", "content": "bcde"}], "x", 2, 1),
    ("no-system", None, [{"role": "user", "content": "x" * 41}], "y" * 9, 11, 3),
    ("every-message-counts", "s" * 3,
     [{"role": "user", "content": "u" * 10}, {"role": "assistant", "content": "a" * 10},
      {"role": "user", "content": [{"type": "text", "text": "t" * 10}, {"type": "image", "source": {}}]}],
     "", 9, 0),
]


@pytest.mark.parametrize(("system", "messages", "reply", "input_tokens", "output_tokens"),
                         [case[1:] for case in USAGE_CASES], ids=[case[0] for case in USAGE_CASES])
def test_usage_is_characters_over_four_rounded_up(sandbox, system, messages, reply, input_tokens,
                                                   output_tokens):
    sandbox.script_reply(reply)
    body = with_body(messages=messages, system=system if system is not None else ...)
    usage = anthropic(sandbox, body).json()["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (input_tokens, output_tokens)
    sandbox.script_reply(reply)
    image = {"type": "image_url", "image_url": {"url": "x"}}
    openai_messages = ([{"role": "system", "content": system}] if system else []) + [
        {**m, "content": m["content"] if isinstance(m["content"], str) else
         [part if part["type"] == "text" else image for part in m["content"]]}
        for m in messages]
    usage = openai(sandbox, openai_body(messages=openai_messages)).json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (input_tokens, output_tokens)
    totals = sandbox.state()["usage"]
    assert totals == {"input_tokens": 2 * input_tokens, "output_tokens": 2 * output_tokens}


def test_an_answer_longer_than_the_limit_is_cut_and_says_so(sandbox, control):
    control.script_reply("x" * 100)
    body = anthropic(sandbox, with_body(max_tokens=10)).json()
    assert body["content"][0]["text"] == "x" * 40
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 10
    control.script_reply("y" * 100)
    body = openai(sandbox, openai_body(max_completion_tokens=5)).json()
    assert body["choices"][0]["message"]["content"] == "y" * 20
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


def test_a_reply_scripted_to_stop_at_max_tokens_does(sandbox, control):
    control.script_reply("cut off mid", stop="max_tokens")
    control.script_reply("cut off too", stop="length")
    assert anthropic(sandbox).json()["stop_reason"] == "max_tokens"
    assert openai(sandbox).json()["choices"][0]["finish_reason"] == "length"


# ---- faults -----------------------------------------------------------------------------------

FAULT_CASES = [
    # (id, status, anthropic type, openai status, openai type, openai code)
    ("rate-limited", 429, "rate_limit_error", 429, "requests", "rate_limit_exceeded"),
    ("server-error", 500, "api_error", 500, "server_error", None),
    ("overloaded", 529, "overloaded_error", 503, "service_unavailable_error", "server_is_overloaded"),
    ("unavailable", 503, "api_error", 503, "service_unavailable_error", "server_is_overloaded"),
]


@pytest.mark.parametrize(("status", "kind", "openai_status", "openai_kind", "code"),
                         [case[1:] for case in FAULT_CASES], ids=[case[0] for case in FAULT_CASES])
def test_faults_answer_in_each_providers_shape(sandbox, control, status, kind, openai_status, openai_kind,
                                               code):
    control.fault(status, count=2, retry_after=7)
    response = anthropic(sandbox)
    assert_anthropic_error(response, status, kind)
    assert response.headers["retry-after"] == "7"
    response = openai(sandbox)
    assert_openai_error(response, openai_status, openai_kind, code=code)
    assert response.headers["retry-after"] == "7"
    assert anthropic(sandbox).status_code == 200


def test_a_fault_is_counted_and_does_not_take_the_reply(sandbox, control):
    control.script_reply("after the faults")
    assert control.fault(429, count=2) == [{"status": 429, "count": 2, "retry_after": None}]
    control.fault(529)
    first, second, third = anthropic(sandbox), anthropic(sandbox), anthropic(sandbox)
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 529]
    assert "retry-after" not in first.headers
    assert control.state()["faults"] == []
    assert anthropic(sandbox).json()["content"][0]["text"] == "after the faults"


def test_a_fault_waits_for_a_well_formed_authenticated_request(sandbox, control):
    control.fault(500)
    assert anthropic(sandbox, headers={"x-api-key": "wrong"}).status_code == 401
    assert anthropic(sandbox, with_body(messages=[])).status_code == 400
    assert anthropic(sandbox).status_code == 500
    assert anthropic(sandbox).status_code == 200


def test_faults_can_be_dropped(sandbox, control):
    control.fault(429, count=5)
    control.clear_faults()
    assert anthropic(sandbox).status_code == 200


# ---- the record -------------------------------------------------------------------------------

def test_every_request_is_recorded_without_the_key(sandbox, control):
    anthropic(sandbox)
    openai(sandbox, headers={"X-Trace": f"carries {KEY}"})
    anthropic(sandbox, headers={"x-api-key": "sk-wrong-one"})
    recorded = control.requests()
    assert [(r["provider"], r["path"], r["status"]) for r in recorded] == [
        ("anthropic", "/v1/messages", 200), ("openai", "/v1/chat/completions", 200),
        ("anthropic", "/v1/messages", 401)]
    first = recorded[0]
    assert first["method"] == "POST"
    assert first["headers"]["x-api-key"] == "[redacted]"
    assert first["headers"]["anthropic-version"] == "2023-06-01"
    assert first["headers"]["content-type"] == "application/json"
    assert first["body"] == ANTHROPIC_BODY
    assert first["request_id"].startswith("req_")
    assert recorded[1]["headers"]["authorization"] == "[redacted]"
    assert recorded[1]["headers"]["x-trace"] == "[redacted]"
    assert recorded[2]["headers"]["x-api-key"] == "[redacted]"
    everything = json.dumps(recorded) + json.dumps(control.state())
    assert KEY not in everything and "sk-wrong-one" not in everything


def test_a_body_that_is_not_json_is_recorded_as_text(sandbox, control):
    anthropic(sandbox, data=b"plain words")
    assert control.requests()[0]["body"] == "plain words"


def test_the_record_can_be_cleared(sandbox, control):
    anthropic(sandbox)
    assert control.state()["requests"] == 1
    control.clear()
    assert control.requests() == []
    control.script_reply("x")
    control.fault(429)
    control.reset()
    state = control.state()
    assert (state["replies"], state["faults"], state["requests"]) == ([], [], 0)
    assert state["usage"] == {"input_tokens": 0, "output_tokens": 0}


# ---- the control API --------------------------------------------------------------------------

CONTROL_REFUSALS = [
    # (id, method, path, body, status, message)
    ("reply-without-text", "POST", "replies", {"stop": "end_turn"}, 400, "text is required"),
    ("reply-text-not-a-string", "POST", "replies", {"text": 5}, 400, "text"),
    ("reply-unknown-stop", "POST", "replies", {"text": "x", "stop": "tool_use"}, 400, "stop must be one of"),
    ("reply-unknown-field", "POST", "replies", {"text": "x", "delay": 1}, 400, "unknown fields"),
    ("reply-not-json", "POST", "replies", "not json", 400, "not valid JSON"),
    ("fault-without-status", "POST", "faults", {"count": 1}, 400, "status is required"),
    ("fault-undocumented-status", "POST", "faults", {"status": 418}, 400, "status must be one of"),
    ("fault-count-zero", "POST", "faults", {"status": 429, "count": 0}, 400, "count"),
    ("fault-negative-retry-after", "POST", "faults", {"status": 429, "retry_after": -1}, 400, "retry_after"),
    ("unknown-control", "GET", "nothing", None, 404, "no sandbox control"),
    ("wrong-method", "PUT", "state", None, 405, "GET"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"),
                         [case[1:] for case in CONTROL_REFUSALS], ids=[case[0] for case in CONTROL_REFUSALS])
def test_the_control_api_refuses_nonsense(sandbox, method, path, body, status, message):
    data = body.encode() if isinstance(body, str) else (None if body is None else json.dumps(body).encode())
    response = requests.request(method, f"{sandbox.base_url}/_sandbox/{path}", data=data, timeout=10)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_the_control_client_raises_on_a_refusal(control):
    with pytest.raises(LlmSandboxError, match="stop must be one of") as raised:
        control.script_reply("x", stop="sideways")
    assert raised.value.status == 400


def test_the_sandbox_needs_a_key():
    with pytest.raises(ValueError, match="non-empty API key"):
        LlmSandbox("  ")
    assert KEY not in repr(LlmSandbox(KEY))


# ---- python -m sandbox.llm --------------------------------------------------------------------

def test_the_runner_prints_its_url_serves_and_stops(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    process = subprocess.Popen([sys.executable, "-m", "sandbox.llm", "--port", "0", "--api-key-file",
                                str(key_file)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        first, second = process.stdout.readline().strip(), process.stdout.readline().strip()
        assert first.startswith("llm sandbox: http://127.0.0.1:"), first + process.stderr.read()
        assert second == "ready"
        url = first.split(": ", 1)[1]
        response = requests.post(f"{url}/v1/messages", json=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS,
                                 timeout=10)
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        output = process.stdout.read() + process.stderr.read()
        assert KEY not in first + second + output
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{url}/v1/messages", json=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS, timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        process.stderr.close()


@pytest.mark.parametrize("content", [None, "\n"], ids=["missing-file", "empty-file"])
def test_the_runner_needs_a_key_file(tmp_path, content):
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content)
    result = subprocess.run([sys.executable, "-m", "sandbox.llm", "--port", "0", "--api-key-file",
                             str(key_file)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "llm sandbox:" in result.stderr and "Traceback" not in result.stderr


# ---- make run ---------------------------------------------------------------------------------

def test_local_up_runs_the_llm_sandbox_with_the_other_sandboxes_only(tmp_path):
    from shared.local.runner import LLM_SANDBOX_PORT, LocalOptions, LocalSystem

    assert LocalOptions(state_dir=tmp_path).llm_sandbox_port == LLM_SANDBOX_PORT == 8072
    assert LocalOptions(state_dir=tmp_path, appengine_sandbox_port=0).llm_sandbox_port == 0  # --no-sandboxes
    assert LocalOptions(state_dir=tmp_path, llm_sandbox_port=9999).llm_sandbox_port == 9999
    system = LocalSystem(LocalOptions(state_dir=tmp_path, llm_sandbox_port=9999))
    assert system.sandbox_ports["llm sandbox"] == 9999
    assert system.llm_sandbox_url == "http://127.0.0.1:9999"
    assert LocalSystem(LocalOptions(state_dir=tmp_path, llm_sandbox_port=0)).llm_sandbox_url == ""


def test_local_up_writes_a_fresh_private_key(tmp_path):
    from shared.local.runner import LocalOptions, _llm_sandbox_key

    first = _llm_sandbox_key(LocalOptions(state_dir=tmp_path / "state"))
    assert first == (tmp_path / "state" / "llm-sandbox-key").resolve()
    assert oct(first.stat().st_mode)[-3:] == "600"
    key = first.read_text()
    assert len(key) >= 40
    first.chmod(0o644)
    again = _llm_sandbox_key(LocalOptions(state_dir=tmp_path / "state"))
    assert again.read_text() != key
    assert oct(again.stat().st_mode)[-3:] == "600"
