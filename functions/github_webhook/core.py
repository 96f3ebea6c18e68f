"""Pure webhook logic: signature verification, header rules and the envelope. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from shared.messages import GithubEvent

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
HOOK_ID_HEADER = "X-GitHub-Hook-ID"


def sign(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str, secrets: Sequence[bytes]) -> bool:
    """True when `header` is a valid sha256 HMAC of `body` under any of `secrets`.

    Every secret is compared, in constant time, even after a match, so timing does not reveal
    which secret matched. An empty secret never verifies anything.
    """
    if not header.startswith("sha256=") or len(header) != 71:
        return False
    matched = False
    for secret in secrets:
        if secret:
            matched |= hmac.compare_digest(sign(body, secret), header)
    return matched


@dataclass(frozen=True)
class Rejection:
    status: int
    reason: str


def check_headers(headers: Mapping[str, str]) -> Rejection | None:
    for name in (EVENT_HEADER, DELIVERY_HEADER):
        if not headers.get(name, "").strip():
            return Rejection(400, f"missing {name} header")
    delivery = headers[DELIVERY_HEADER].strip()
    if len(delivery) > 200 or "/" in delivery or delivery in (".", ".."):
        return Rejection(400, f"malformed {DELIVERY_HEADER} header")
    return None


def parse_body(body: bytes, content_type: str) -> tuple[dict[str, Any], str] | Rejection:
    """Parse a verified body into the payload and its JSON text.

    GitHub sends JSON, or a form with a `payload` field when the hook is set up that way.
    """
    text: str | bytes = body
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return Rejection(400, "malformed form body")
        if len(form.get("payload", [])) != 1:
            return Rejection(400, "form body has no single payload field")
        text = form["payload"][0]
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection(400, f"malformed JSON: {exc.__class__.__name__}")
    if not isinstance(payload, dict):
        return Rejection(400, "payload is not a JSON object")
    return payload, text


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def envelope(
    headers: Mapping[str, str], payload: dict[str, Any], payload_text: str, received_at_ms: int
) -> GithubEvent:
    repository = payload.get("repository")
    installation = payload.get("installation")
    sender = payload.get("sender")
    hook_id = headers.get(HOOK_ID_HEADER, "").strip()
    return GithubEvent(
        delivery_id=headers[DELIVERY_HEADER].strip(),
        event=headers[EVENT_HEADER].strip(),
        action=_str(payload.get("action")),
        repository=_str(repository.get("full_name")) if isinstance(repository, dict) else "",
        installation_id=_int(installation.get("id")) if isinstance(installation, dict) else 0,
        sender=_str(sender.get("login")) if isinstance(sender, dict) else "",
        hook_id=int(hook_id) if hook_id.isdigit() else 0,
        received_at=received_at_ms,
        payload=payload_text,
    )

