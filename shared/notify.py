"""Telling humans in Slack: one message per idempotency key, through an incoming webhook.

A rollback or an incident is news a person must see, so the deploy and monitor agents post it to
the deployment's Slack incoming webhook when one is configured (`NullNotifier` stands in when none
is). Like the executor's actions, each message has a key: the audit trail says whether it went out
already, so a redelivered event does not post twice.

The webhook URL is a credential (anyone holding it can post to the channel), so it never appears in
a log record, an exception message or a repr. The HTTP library's own debug lines name the request
path, which holds the secret: they are scrubbed by a filter on its logger.

Errors: a 5xx, a 429, a timeout or a connection failure raises `RetryableError` (the runtime tries
the message again later; after a timeout the message may, rarely, arrive twice). Any other answer
that is not 2xx is a refusal (a revoked webhook, an archived channel): logged, recorded in the audit
trail beside the key, and `notify` returns False; a later call with the same key tries again.
`notify` returns True only when that call posted the message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.errors import ConfigError, InvalidInput, RetryableError

log = logging.getLogger("agentops.notify")

# Slack shows at most 40,000 characters of `text` and advises keeping it under 4,000.
MAX_TEXT = 3_900
MAX_ERROR = 200
ACTION = "notify_slack"
# The loggers that may name a request's URL or path.
_HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests")


class Notifier(Protocol):
    def notify(self, key: str, text: str, actor: str, repository: str) -> bool: ...


def escape(text: str) -> str:
    """Text Slack shows as written: `&`, `<` and `>` are its control characters (links, mentions
    such as <!channel>), so they become entities, as Slack's formatting reference asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(text: str, limit: int = MAX_TEXT) -> str:
    """`text` escaped and cut to `limit` characters, never inside an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    size = 0
    for character in text:
        piece = escape(character)
        if size + len(piece) > limit - 1:
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces) + "…"


class _Scrub(logging.Filter):
    """Replaces the webhook URLs (and their paths, the secret part) in the HTTP library's records."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        with self._lock:
            self._secrets.update(secret for secret in secrets if len(secret) > 1)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)  # the whole URL before its path
        for secret in secrets:
            text = text.replace(secret, "[slack webhook]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_SCRUB = _Scrub()
for _name in _HTTP_LOGGERS:
    logging.getLogger(_name).addFilter(_SCRUB)


class SlackNotifier:
    """Posts `{"text": ...}` to a Slack incoming webhook, once per key."""

    def __init__(self, webhook_url: str, audit: Callable[[], Any], session: Any = None,
                 timeout: float = 5.0) -> None:
        parts = urlsplit(webhook_url or "")
        if parts.scheme not in ("https", "http") or not parts.hostname:
            # The value is not repeated: it may be a mangled secret.
            raise ConfigError("SLACK_WEBHOOK_URL is not an http(s) URL (the value is not shown)")
        self._url = webhook_url
        self._audit = audit
        self._session = session
        self._timeout = timeout
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        _SCRUB.add(webhook_url, path)

    def __repr__(self) -> str:
        return "SlackNotifier(webhook_url=<secret>)"

    def _http(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def notify(self, key: str, text: str, actor: str, repository: str) -> bool:
        """Post `text` unless the key was posted already. True when this call posted it; False when it
        had been posted before under the key, or Slack refused it."""
        if not key:
            raise InvalidInput("a Slack notification needs an idempotency key")
        audit = self._audit()
        if audit.has(key):
            log.info("notification already sent", extra={"outcome": "duplicate", "repository": repository})
            return False
        status, answer = self._post({"text": slack_text(text)})
        if 200 <= status < 300:
            audit.record(key=key, actor=actor, action=ACTION, subject=repository or "slack", outcome="ok",
                         repository=repository)
            return True
        error = _SCRUB.scrub(f"Slack answered {status}: {answer[:MAX_ERROR]}".rstrip(": "))
        log.error("Slack refused the notification: %s", error, extra={"outcome": "refused",
                                                                       "repository": repository})
        audit.record(key=f"{key}:refused", actor=actor, action=ACTION, subject=repository or "slack",
                     outcome="refused", repository=repository, error=error)
        return False

    def _post(self, body: dict[str, str]) -> tuple[int, str]:
        import requests

        try:
            response = self._http().post(self._url, json=body, timeout=self._timeout, allow_redirects=False)
        except requests.Timeout:
            raise RetryableError(f"Slack webhook: no answer within {self._timeout:g} s") from None
        except requests.RequestException as exc:
            # The exception's own text names the URL: only its kind is kept, and it is not chained.
            raise RetryableError(f"Slack webhook: could not be reached ({type(exc).__name__})") from None
        try:
            answer = " ".join(response.text[:MAX_ERROR].split())
        finally:
            response.close()
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(_SCRUB.scrub(f"Slack webhook answered {response.status_code}: {answer}"))
        return response.status_code, answer


class NullNotifier:
    """Stands in when no Slack webhook is configured: nothing is sent."""

    def __repr__(self) -> str:
        return "NullNotifier()"

    def notify(self, key: str, text: str, actor: str, repository: str) -> bool:
        return False


def notifier(webhook_url: str, audit: Callable[[], Any], session: Any = None,
             timeout: float = 5.0) -> SlackNotifier | NullNotifier:
    """The notifier for a deployment: Slack when it has a webhook URL, else the null one."""
    if not (webhook_url or "").strip():
        return NullNotifier()
    return SlackNotifier(webhook_url.strip(), audit, session=session, timeout=timeout)
