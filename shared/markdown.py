"""Untrusted text made inert before it goes into Markdown that GitHub renders (comments, check runs,
issues): no mentions, code spans, HTML, links (bare URLs too) or table breaks. Pure."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MENTION = re.compile("@(?!\u200b)")
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|file|mailto|javascript|data)(:)(?!\u200b)|\bwww(\.)(?!\u200b)")
_REPLACEMENTS = str.maketrans({
    "`": "'", "<": "‹", ">": "›", "|": "¦", "&": "＆", "[": "［", "]": "］", "\\": "/",
})


def neutralise(text: str, limit: int = 100) -> str:
    """`text` inert in Markdown, at most `limit` characters.

    Idempotent, so text neutralised once can safely be neutralised again. Long text keeps its head
    and its tail (where a path's file name is).
    """
    inert = _CONTROL.sub(" ", text).translate(_REPLACEMENTS)
    inert = _MENTION.sub("@\u200b", inert)
    # GitHub turns bare URLs (and www.) into links; a zero-width space after the scheme stops it.
    inert = _AUTOLINK.sub(lambda m: m.group(0) + "\u200b", inert)
    if len(inert) <= limit:
        return inert
    head = (limit - 1) // 2
    return inert[:head] + "…" + inert[len(inert) - (limit - 1 - head):]
