"""The code agent's LLM client, end to end against the LLM sandbox for both providers.

The sandbox is served in process on a free loopback port; the client's sleeps are recorded instead
of slept, so retries are instant and their waits can be checked.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests

from functions.code_agent.llm import MAX_RETRY_AFTER_SECONDS, Completion, LlmClient
from sandbox.llm import DEFAULT_REPLY, LlmSandbox, LlmSandboxControl
from shared.errors import ConfigError, InvalidInput, PermanentError, RetryableError

KEY = "sk-test-SECRET-key-5f0c1d2e3a4b"
PROVIDERS = ("anthropic", "openai")


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


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client_for(url: str, provider: str, sleeps: Sleeps, key: str = KEY, **kwargs: Any) -> LlmClient:
    return LlmClient(provider, url, "sandbox-model", lambda: key, sleep=sleeps, timeout=10, **kwargs)


def openai_client(session: Any, sleeps: Sleeps) -> LlmClient:
    return LlmClient("openai", "https://llm.example", "m", lambda: KEY, session=session, sleep=sleeps)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- both providers, end to end ---------------------------------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_completion_comes_back_with_its_usage(sandbox, control, sleeps, provider):
    control.script_reply("```diff\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n```\nChanged a to b.")
    completion = client_for(sandbox.base_url, provider, sleeps).complete("system words", "the prompt", 500)
    assert isinstance(completion, Completion)
    assert completion.text.endswith("Changed a to b.")
    assert completion.input_tokens == -(-len("system words" + "the prompt") // 4)
    assert completion.output_tokens == -(-len(completion.text) // 4)
    assert completion.total_tokens == completion.input_tokens + completion.output_tokens
    assert (completion.model, completion.provider, completion.truncated) == ("sandbox-model", provider, False)
    assert completion.stop_reason == ("end_turn" if provider == "anthropic" else "stop")
    assert sleeps == []
    with pytest.raises(AttributeError):
        completion.text = "changed"  # frozen


def test_the_anthropic_request_is_the_documented_one(sandbox, control, sleeps):
    client_for(sandbox.base_url, "anthropic", sleeps).complete("be careful", "change it", 321)
    (request,) = control.requests()
    assert (request["method"], request["path"]) == ("POST", "/v1/messages")
    headers = request["headers"]
    assert headers["x-api-key"] == "[redacted]"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert request["body"] == {"model": "sandbox-model", "max_tokens": 321, "system": "be careful",
                               "messages": [{"role": "user", "content": "change it"}]}


def test_the_openai_request_is_the_documented_one(sandbox, control, sleeps):
    client_for(sandbox.base_url, "openai", sleeps).complete("be careful", "change it", 321)
    (request,) = control.requests()
    assert (request["method"], request["path"]) == ("POST", "/v1/chat/completions")
    assert request["headers"]["authorization"] == "[redacted]"
    assert request["headers"]["content-type"] == "application/json"
    assert request["body"] == {"model": "sandbox-model", "max_completion_tokens": 321,
                               "messages": [{"role": "system", "content": "be careful"},
                                            {"role": "user", "content": "change it"}]}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_empty_system_prompt_is_left_out(sandbox, control, sleeps, provider):
    client_for(sandbox.base_url, provider, sleeps).complete("", "just this", 10)
    body = control.requests()[0]["body"]
    assert "system" not in body
    assert body["messages"] == [{"role": "user", "content": "just this"}]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_empty_queue_answers_the_default_text(sandbox, sleeps, provider):
    assert client_for(sandbox.base_url, provider, sleeps).complete("s", "p", 100).text == DEFAULT_REPLY


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_answer_cut_off_at_max_tokens_is_returned_as_truncated(sandbox, control, sleeps, provider):
    control.script_reply("z" * 400)
    completion = client_for(sandbox.base_url, provider, sleeps).complete("s", "p", 25)
    assert completion.truncated is True
    assert completion.text == "z" * 100
    assert completion.output_tokens == 25
    assert completion.stop_reason == ("max_tokens" if provider == "anthropic" else "length")


@pytest.mark.parametrize("url_suffix", ["/", "/v1", "/v1/"])
def test_a_base_url_with_v1_or_a_slash_is_the_same_api(sandbox, control, sleeps, url_suffix):
    client = client_for(sandbox.base_url + url_suffix, "openai", sleeps)
    assert client.complete("s", "p", 100).text == DEFAULT_REPLY
    assert control.requests()[0]["path"] == "/v1/chat/completions"


# ---- retries ----------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [429, 500, 503, 529])
def test_a_transient_failure_is_retried_honouring_retry_after(sandbox, control, sleeps, provider, status):
    control.script_reply("worth the wait")
    control.fault(status, count=2, retry_after=3)
    completion = client_for(sandbox.base_url, provider, sleeps).complete("s", "p", 100)
    assert completion.text == "worth the wait"
    assert sleeps == [3.0, 3.0]
    assert [r["status"] for r in control.requests()][-1] == 200
    assert len(control.requests()) == 3


def test_retry_after_is_capped(sandbox, control, sleeps):
    control.fault(429, retry_after=3600)
    client_for(sandbox.base_url, "anthropic", sleeps).complete("s", "p", 10)
    assert sleeps == [MAX_RETRY_AFTER_SECONDS]


def test_without_retry_after_the_wait_backs_off(sandbox, control, sleeps):
    control.fault(500, count=3)
    client_for(sandbox.base_url, "anthropic", sleeps, max_retries=3).complete("s", "p", 10)
    assert sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retries_run_out_into_a_retryable_error(sandbox, control, sleeps, provider):
    control.fault(529, count=5, retry_after=1)
    with pytest.raises(RetryableError, match="after 3 attempts") as raised:
        client_for(sandbox.base_url, provider, sleeps).complete("s", "p", 10)
    assert "overloaded" in str(raised.value).lower()
    assert sleeps == [1.0, 1.0]
    assert len(control.requests()) == 3


def test_no_retries_means_one_attempt(sandbox, control, sleeps):
    control.fault(429)
    with pytest.raises(RetryableError, match="HTTP 429 after 1 attempts"):
        client_for(sandbox.base_url, "openai", sleeps, max_retries=0).complete("s", "p", 10)
    assert sleeps == []


def test_a_connection_failure_is_retried_then_retryable(sleeps):
    client = client_for(f"http://127.0.0.1:{free_port()}", "anthropic", sleeps)
    with pytest.raises(RetryableError, match="cannot reach the provider after 3 attempts"):
        client.complete("s", "p", 10)
    assert sleeps == [1.0, 2.0]


# ---- permanent failures -----------------------------------------------------------------------

@pytest.mark.parametrize(("provider", "message"), [("anthropic", "authentication_error: invalid x-api-key"),
                                                   ("openai", "Incorrect API key provided")])
def test_a_wrong_key_is_permanent_with_the_providers_message(sandbox, control, sleeps, provider, message):
    with pytest.raises(PermanentError, match="HTTP 401") as raised:
        client_for(sandbox.base_url, provider, sleeps, key="sk-not-the-one-9999").complete("s", "p", 10)
    assert message in str(raised.value)
    assert not isinstance(raised.value, RetryableError)
    assert "sk-not-the-one-9999" not in str(raised.value)
    assert sleeps == [] and len(control.requests()) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_path_is_permanent(sandbox, sleeps, provider):
    with pytest.raises(PermanentError, match="HTTP 404"):
        client_for(sandbox.base_url + "/elsewhere", provider, sleeps).complete("s", "p", 10)


# ---- malformed answers, through a scripted session --------------------------------------------

class ScriptedSession:
    """A requests session that answers from a list, recording what was sent."""

    def __init__(self, *answers: requests.Response | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        self.sent.append({"url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers.update(headers or {})
    response.url = "https://llm.example/v1/x"
    return response


GOOD_ANTHROPIC = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                  "content": [{"type": "text", "text": "a"}, {"type": "tool_use", "id": "t", "name": "n",
                                                              "input": {}}, {"type": "text", "text": "b"}],
                  "stop_reason": "end_turn", "stop_sequence": None,
                  "usage": {"input_tokens": 3, "output_tokens": 4}}
GOOD_OPENAI = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-x",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}


def test_text_blocks_are_joined_and_the_answers_model_is_kept(sleeps):
    client = LlmClient("anthropic", "https://llm.example", "asked-for", lambda: KEY,
                       session=ScriptedSession(answer(200, GOOD_ANTHROPIC)), sleep=sleeps)
    completion = client.complete("s", "p", 9)
    assert (completion.text, completion.model, completion.input_tokens, completion.output_tokens) == \
        ("ab", "m", 3, 4)


def broken(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(base))
    target = body
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


MALFORMED = [
    # (id, provider, body, message)
    ("not-json", "anthropic", b"<html>oops</html>", "not JSON"),
    ("not-an-object", "openai", [1], "not a JSON object"),
    ("anthropic-no-content", "anthropic", broken(GOOD_ANTHROPIC, ("content",), ...), "content"),
    ("anthropic-content-a-string", "anthropic", broken(GOOD_ANTHROPIC, ("content",), "text"), "content"),
    ("anthropic-text-block-without-text", "anthropic", broken(GOOD_ANTHROPIC, ("content", 0, "text"), ...),
     "text content block"),
    ("anthropic-no-usage", "anthropic", broken(GOOD_ANTHROPIC, ("usage",), ...), "usage"),
    ("anthropic-negative-tokens", "anthropic", broken(GOOD_ANTHROPIC, ("usage", "output_tokens"), -1),
     "usage.output_tokens"),
    ("anthropic-string-tokens", "anthropic", broken(GOOD_ANTHROPIC, ("usage", "input_tokens"), "3"),
     "usage.input_tokens"),
    ("openai-no-choices", "openai", broken(GOOD_OPENAI, ("choices",), []), "choices"),
    ("openai-no-message", "openai", broken(GOOD_OPENAI, ("choices", 0, "message"), ...), "message"),
    ("openai-content-not-text", "openai", broken(GOOD_OPENAI, ("choices", 0, "message", "content"), 5),
     "content"),
    ("openai-no-usage", "openai", broken(GOOD_OPENAI, ("usage",), ...), "usage"),
    ("openai-missing-completion-tokens", "openai", broken(GOOD_OPENAI, ("usage", "completion_tokens"), ...),
     "usage.completion_tokens"),
    ("openai-refusal", "openai", broken(GOOD_OPENAI, ("choices", 0, "message"),
                                        {"role": "assistant", "content": None, "refusal": "I won't."}),
     "the model refused: I won't."),
]


@pytest.mark.parametrize(("provider", "body", "message"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_a_malformed_answer_is_permanent(sleeps, provider, body, message):
    session = ScriptedSession(answer(200, body))
    client = LlmClient(provider, "https://llm.example", "m", lambda: KEY, session=session, sleep=sleeps)
    with pytest.raises(PermanentError, match=message) as raised:
        client.complete("s", "p", 10)
    assert not isinstance(raised.value, RetryableError)
    assert sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_are_permanent_and_not_retried(sleeps, status):
    error = {"type": "error", "error": {"type": "x_error", "message": "nope"}}
    session = ScriptedSession(answer(status, error))
    client = LlmClient("anthropic", "https://llm.example", "m", lambda: KEY, session=session, sleep=sleeps)
    with pytest.raises(PermanentError, match=f"HTTP {status}: x_error: nope"):
        client.complete("s", "p", 10)
    assert len(session.sent) == 1


def test_an_error_without_a_json_body_still_says_something(sleeps):
    session = ScriptedSession(answer(502, b"<html>Bad Gateway</html>"), answer(200, GOOD_OPENAI))
    client = LlmClient("openai", "https://llm.example", "m", lambda: KEY, session=session, sleep=sleeps)
    assert client.complete("s", "p", 10).text == "hi"
    assert sleeps == [1.0]


@pytest.mark.parametrize(("headers", "wait"), [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after": "2.5"}, 2.5),
    ({"retry-after": "soon"}, 1.0),  # unreadable: the client's own backoff
    ({"retry-after": format_datetime(datetime.now(timezone.utc) + timedelta(hours=1), usegmt=True)}, 30.0),
    ({"retry-after": format_datetime(datetime.now(timezone.utc) - timedelta(hours=1), usegmt=True)}, 0.0),
], ids=["milliseconds", "seconds", "unreadable", "a-date-far-ahead", "a-date-past"])
def test_retry_after_forms(sleeps, headers, wait):
    session = ScriptedSession(answer(429, {"error": {"message": "slow down"}}, headers),
                              answer(200, GOOD_OPENAI))
    openai_client(session, sleeps).complete("s", "p", 1)
    assert sleeps == [pytest.approx(wait, abs=0.01)]


# ---- configuration ----------------------------------------------------------------------------

def test_an_unknown_provider_names_the_valid_ones():
    with pytest.raises(ConfigError, match="expected one of anthropic, openai"):
        LlmClient("gemini", "https://llm.example", "m", lambda: KEY)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"api_url": "llm.example"}, "AGENTOPS_LLM_API_URL"),
    ({"api_url": ""}, "AGENTOPS_LLM_API_URL"),
    ({"model": " "}, "AGENTOPS_LLM_MODEL"),
    ({"api_key": KEY}, "LLM_API_KEY"),
    ({"max_retries": -1}, "max_retries"),
], ids=["url-without-scheme", "no-url", "no-model", "key-not-callable", "negative-retries"])
def test_bad_settings_are_config_errors(kwargs, message):
    settings = {"provider": "anthropic", "api_url": "https://llm.example", "model": "m",
                "api_key": lambda: KEY, **kwargs}
    with pytest.raises(ConfigError, match=message):
        LlmClient(**settings)


@pytest.mark.parametrize("key", ["", "   ", None])
def test_an_empty_key_is_a_config_error_before_any_request(key, sleeps):
    session = ScriptedSession()
    client = LlmClient("anthropic", "https://llm.example", "m", lambda: key, session=session, sleep=sleeps)
    with pytest.raises(ConfigError, match="LLM_API_KEY"):
        client.complete("s", "p", 10)
    assert session.sent == []


@pytest.mark.parametrize("max_tokens", [0, -1, 1.5, "10", True])
def test_max_tokens_must_be_a_positive_integer(max_tokens):
    client = LlmClient("openai", "https://llm.example", "m", lambda: KEY, session=ScriptedSession())
    with pytest.raises(InvalidInput, match="max_tokens"):
        client.complete("s", "p", max_tokens)


def test_an_empty_prompt_is_invalid():
    with pytest.raises(InvalidInput, match="prompt is empty"):
        openai_client(ScriptedSession(), Sleeps()).complete("s", "", 5)


# ---- the key never leaks ----------------------------------------------------------------------

def test_the_key_is_never_in_an_error_a_log_record_or_a_repr(sandbox, control, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    client = client_for(sandbox.base_url, "anthropic", sleeps)
    seen.append(repr(client))
    control.script_reply("ok")
    seen.append(repr(client.complete("s", "p", 10)))
    control.fault(429, count=3, retry_after=0)
    with pytest.raises(RetryableError) as retryable:
        client.complete("s", "p", 10)
    seen.append(str(retryable.value))
    wrong = client_for(sandbox.base_url, "openai", sleeps, key=KEY[::-1])
    with pytest.raises(PermanentError) as permanent:
        wrong.complete("s", "p", 10)
    seen.append(str(permanent.value))
    # A provider that echoes the key back, in its message and in a connection error.
    echo = ScriptedSession(answer(401, {"error": {"message": f"Incorrect API key provided: {KEY}",
                                                  "type": "invalid_request_error"}}))
    with pytest.raises(PermanentError) as echoed:
        openai_client(echo, sleeps).complete("s", "p", 5)
    seen.append(str(echoed.value))
    assert "[redacted]" in str(echoed.value)
    failing = ScriptedSession(*[requests.ConnectionError(f"refused with Bearer {KEY}")] * 3)
    with pytest.raises(RetryableError) as unreachable:
        openai_client(failing, sleeps).complete("s", "p", 5)
    seen.append(str(unreachable.value))
    seen.append(caplog.text)
    seen.extend(json.dumps(record.__dict__, default=str) for record in caplog.records)
    assert caplog.records, "the client logs its calls"
    for text in seen:
        assert KEY not in text
        assert KEY[::-1] not in text
    assert KEY not in json.dumps(control.requests())
