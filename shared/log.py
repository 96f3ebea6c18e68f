"""Structured JSON logs for Cloud Logging, one line per record.

Context (agent, task id, delivery id, repo, trace) is bound per message with `bind()` and added
to every record. Secrets are redacted here, in the formatter, rather than at each call site.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone

_context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "log_context", default=None
)

# Tokens GitHub issues (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_), JWTs, bearer headers, PEM keys
# and the signature header's HMAC.
_REDACTIONS = (
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
    re.compile(r"sha(1|256)=[0-9a-fA-F]{40,64}"),
)
_SENSITIVE_KEYS = re.compile(r"(?i)(secret|token|password|private_key|authorization|signature)")


def redact(text: str) -> str:
    for pattern in _REDACTIONS:
        text = pattern.sub("[REDACTED]", text)
    return text


def _redact_value(key: str, value: object) -> object:
    if _SENSITIVE_KEYS.search(key) and value not in (None, "", 0):
        return "[REDACTED]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(key, v) for v in value]
    return value


_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO", "DEBUG": "DEBUG"}
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
        }
        entry.update(_context.get() or {})
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        clean = {key: _redact_value(key, value) for key, value in entry.items()}
        return json.dumps(clean, default=str, separators=(",", ":"))


def setup(level: str = "INFO") -> None:
    """Send every record as one JSON line to stdout. Safe to call more than once."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)


@contextlib.contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add fields to every log record written inside the block."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v not in (None, "")}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)
