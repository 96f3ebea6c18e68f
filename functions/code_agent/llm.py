"""One call to an LLM provider's HTTP API, with its token usage, for the code agent's `llm` implementer.

Two providers, each spoken as documented:

- `anthropic`: the Messages API, `POST {api_url}/v1/messages` with `x-api-key`,
  `anthropic-version: 2023-06-01` and a JSON body of `model`, `max_tokens`, `system` and `messages`.
  The answer's `text` content blocks are joined; `usage.input_tokens` / `usage.output_tokens` are
  the cost; `stop_reason: "max_tokens"` means the answer was cut off.
- `openai`: Chat Completions, `POST {api_url}/v1/chat/completions` with `Authorization: Bearer`
  and a body of `model`, `messages` (system then user) and `max_completion_tokens` (the documented
  successor of the deprecated `max_tokens`). The answer is `choices[0].message.content`; the cost
  is `usage.prompt_tokens` / `usage.completion_tokens`; `finish_reason: "length"` means cut off.

Errors: 408, 409, 429, 5xx (Anthropic's 529 "overloaded" among them) and connection failures are
retried up to `max_retries` times, honouring `retry-after` (capped at 30 s), then raised as
RetryableError so the runtime redelivers later. Any other 4xx is a PermanentError that carries the
provider's own error message; a body that is not the documented shape is a PermanentError too.

The API key is read from the `api_key` callable on each call and is never kept on the client,
put in an exception, logged or shown in a repr; provider messages are scrubbed of it, too.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests

from shared.errors import ConfigError, InvalidInput, PermanentError, RetryableError

log = logging.getLogger("agentops.code_agent.llm")

ANTHROPIC = "anthropic"
OPENAI = "openai"
PROVIDERS = (ANTHROPIC, OPENAI)
ANTHROPIC_VERSION = "2023-06-01"
MAX_RETRY_AFTER_SECONDS = 30.0
BASE_BACKOFF_SECONDS = 1.0
RETRYABLE_STATUSES = frozenset({408, 409, 429})  # and every 5xx, 529 included
MAX_ERROR_MESSAGE = 500
TRUNCATED_STOPS = {ANTHROPIC: "max_tokens", OPENAI: "length"}
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Completion:
    """The model's answer and what it cost."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    provider: str
    truncated: bool = False  # the provider stopped at max_tokens: the answer is cut off
    stop_reason: str = ""  # as the provider said it: end_turn, max_tokens, stop, length, ...

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class LlmClient:
    """`complete(system, prompt, max_tokens)` against one provider, model and key."""

    def __init__(self, provider: str, api_url: str, model: str, api_key: Callable[[], str],
                 session: requests.Session | None = None, timeout: float = 60.0, max_retries: int = 2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if provider not in PROVIDERS:
            raise ConfigError(f"AGENTOPS_LLM_PROVIDER: unknown LLM provider {str(provider)[:40]!r}; "
                              f"expected one of {', '.join(PROVIDERS)}")
        url = (api_url or "").strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"AGENTOPS_LLM_API_URL: {url[:100]!r} is not an http(s) URL")
        if url.endswith("/v1"):  # the usual "base URL" of OpenAI's SDKs; the path adds /v1 itself
            url = url[: -len("/v1")]
        if not isinstance(model, str) or not model.strip():
            raise ConfigError("AGENTOPS_LLM_MODEL: the model name is empty")
        if not callable(api_key):
            raise ConfigError("LLM_API_KEY: expected a function that returns the key")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        self.provider = provider
        self.api_url = url
        self.model = model.strip()
        self.timeout = timeout
        self.max_retries = max_retries
        self._api_key = api_key
        self._session = session or requests.Session()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"LlmClient(provider={self.provider!r}, api_url={self.api_url!r}, model={self.model!r})"

    @property
    def endpoint(self) -> str:
        path = "/v1/messages" if self.provider == ANTHROPIC else "/v1/chat/completions"
        return self.api_url + path

    def complete(self, system: str, prompt: str, max_tokens: int) -> Completion:
        """The model's answer to `prompt` under `system`, at most `max_tokens` long."""
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidInput(f"llm: max_tokens must be a positive integer, got {max_tokens!r}")
        if not isinstance(system, str) or not isinstance(prompt, str):
            raise InvalidInput("llm: system and prompt must be text")
        if not prompt:
            raise InvalidInput("llm: the prompt is empty")
        key = self._key()
        body = self._body(system, prompt, max_tokens)
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                response = self._session.post(self.endpoint, data=json.dumps(body).encode("utf-8"),
                                              headers=self._headers(key), timeout=self.timeout)
            except requests.RequestException as exc:
                problem = _scrub(f"{type(exc).__name__}: {exc}", key)
                if attempt >= self.max_retries:
                    raise RetryableError(f"{self._what()}: cannot reach the provider after "
                                         f"{attempt + 1} attempts: {problem}") from None
                delay = _backoff(attempt)
                log.warning("llm request failed, retrying in %.1fs: %s", delay, problem,
                            extra=self._facts(attempt=attempt + 1))
                self._sleep(delay)
                attempt += 1
                continue
            status = response.status_code
            elapsed_ms = round((time.monotonic() - started) * 1000)
            if status < 300:
                completion = self._parse(response, key)
                log.info("llm call %s", "truncated" if completion.truncated else "done",
                         extra=self._facts(attempt=attempt + 1, status=status, elapsed_ms=elapsed_ms,
                                           input_tokens=completion.input_tokens,
                                           output_tokens=completion.output_tokens,
                                           stop_reason=completion.stop_reason))
                return completion
            message = _scrub(_error_message(response), key)
            if status in RETRYABLE_STATUSES or status >= 500:
                if attempt >= self.max_retries:
                    raise RetryableError(f"{self._what()}: HTTP {status} after {attempt + 1} attempts: "
                                         f"{message}")
                delay = _retry_after(response.headers, attempt)
                log.warning("llm answered %s, retrying in %.1fs: %s", status, delay, message,
                            extra=self._facts(attempt=attempt + 1, status=status, elapsed_ms=elapsed_ms))
                self._sleep(delay)
                attempt += 1
                continue
            log.error("llm refused the request: %s %s", status, message,
                      extra=self._facts(attempt=attempt + 1, status=status, elapsed_ms=elapsed_ms))
            raise PermanentError(f"{self._what()}: HTTP {status}: {message}")

    # ---- the two wire formats ----------------------------------------------------------------

    def _body(self, system: str, prompt: str, max_tokens: int) -> dict[str, Any]:
        if self.provider == ANTHROPIC:
            body: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens,
                                    "messages": [{"role": "user", "content": prompt}]}
            if system:
                body["system"] = system
            return body
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": prompt}]
        return {"model": self.model, "messages": messages, "max_completion_tokens": max_tokens}

    def _headers(self, key: str) -> dict[str, str]:
        if self.provider == ANTHROPIC:
            return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION,
                    "content-type": "application/json", "accept": "application/json"}
        return {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                "Accept": "application/json"}

    def _parse(self, response: requests.Response, key: str) -> Completion:
        try:
            body = response.json()
        except ValueError:
            raise PermanentError(f"{self._what()}: the answer is not JSON: "
                                 f"{_scrub(response.text[:200], key)!r}") from None
        if not isinstance(body, dict):
            raise self._malformed("the answer is not a JSON object")
        if self.provider == ANTHROPIC:
            text, stop, usage = self._anthropic(body)
            input_tokens, output_tokens = usage.get("input_tokens"), usage.get("output_tokens")
            names = ("usage.input_tokens", "usage.output_tokens")
        else:
            text, stop, usage = self._openai(body)
            input_tokens, output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
            names = ("usage.prompt_tokens", "usage.completion_tokens")
        for name, value in zip(names, (input_tokens, output_tokens), strict=True):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise self._malformed(f"{name} is not a non-negative integer")
        model = body.get("model")
        return Completion(text=text, input_tokens=input_tokens, output_tokens=output_tokens,
                          model=model if isinstance(model, str) and model else self.model,
                          provider=self.provider, truncated=stop == TRUNCATED_STOPS[self.provider],
                          stop_reason=stop)

    def _anthropic(self, body: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
        content, usage, stop = body.get("content"), body.get("usage"), body.get("stop_reason")
        if not isinstance(content, list):
            raise self._malformed("content is not a list of content blocks")
        if not isinstance(usage, dict):
            raise self._malformed("usage is missing")
        if stop is not None and not isinstance(stop, str):
            raise self._malformed("stop_reason is not a string")
        texts: list[str] = []
        for block in content:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise self._malformed("a content block has no type")
            if block["type"] == "text":
                if not isinstance(block.get("text"), str):
                    raise self._malformed("a text content block has no text")
                texts.append(block["text"])
        return "".join(texts), stop or "", usage

    def _openai(self, body: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
        choices, usage = body.get("choices"), body.get("usage")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._malformed("choices is not a non-empty list")
        if not isinstance(usage, dict):
            raise self._malformed("usage is missing")
        choice = choices[0]
        message, stop = choice.get("message"), choice.get("finish_reason")
        if not isinstance(message, dict):
            raise self._malformed("choices[0].message is missing")
        if stop is not None and not isinstance(stop, str):
            raise self._malformed("choices[0].finish_reason is not a string")
        content = message.get("content")
        if content is None:
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal:
                raise PermanentError(f"{self._what()}: the model refused: {refusal[:MAX_ERROR_MESSAGE]}")
            content = ""
        if not isinstance(content, str):
            raise self._malformed("choices[0].message.content is not text")
        return content, stop or "", usage

    # ---- helpers -------------------------------------------------------------------------------

    def _key(self) -> str:
        key = self._api_key()
        if not isinstance(key, str) or not key.strip():
            raise ConfigError("LLM_API_KEY: the LLM API key is empty")
        return key.strip()

    def _what(self) -> str:
        return f"{self.provider} {self.model}"

    def _malformed(self, problem: str) -> PermanentError:
        return PermanentError(f"{self._what()}: malformed answer: {problem}")

    def _facts(self, **extra: Any) -> dict[str, Any]:
        return {"llm_provider": self.provider, "llm_model": self.model, **extra}


def _error_message(response: requests.Response) -> str:
    """The provider's own message: `error.message` in both formats, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = error.get("message")
        kind = error.get("type") or error.get("code")
        if isinstance(message, str) and message:
            text = f"{kind}: {message}" if isinstance(kind, str) and kind else message
            return text[:MAX_ERROR_MESSAGE]
    text = " ".join(response.text.split())
    return (text[:200] or response.reason or "no message")


def _scrub(text: str, key: str) -> str:
    """`text` without the key (or its Bearer header), whatever the provider or library echoed."""
    if key and len(key) >= 4:
        text = text.replace(key, REDACTED)
    return text


def _backoff(attempt: int) -> float:
    return min(BASE_BACKOFF_SECONDS * (2 ** attempt), MAX_RETRY_AFTER_SECONDS)


def _retry_after(headers: Mapping[str, str], attempt: int) -> float:
    """The wait the provider asked for (`retry-after-ms`, `retry-after` seconds or date), capped."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            value = float(milliseconds) / 1000
            if math.isfinite(value) and value >= 0:
                return min(value, MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            value = float(raw)
            if math.isfinite(value) and value >= 0:
                return min(value, MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                wait = (when - datetime.now(timezone.utc)).total_seconds()
                return min(max(wait, 0.0), MAX_RETRY_AFTER_SECONDS)
    return _backoff(attempt)
