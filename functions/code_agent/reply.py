"""The model's answer, read: the unified diff it proposes and the summary after it.

The prompt (`changes.build_prompt`) asks for one ```diff block followed by a short summary. Fences
are read as CommonMark reads them, exactly as `changes.extract_patch` reads an issue's patch: a
fence is three or more backticks or tildes, only a run of the same character at least as long
closes it, a fence inside another block is not a block, and an unclosed fence runs to the end.
An answer without any diff block may be a bare unified diff; it is taken from its first file header,
and the prose after it (from the first line that can be no part of a diff) is the summary.

The model's answer is untrusted (the issue it read is), so the diff is parsed strictly: a diff that
does not parse, more than one diff block, or none at all is refused with an InvalidInput
(a `changes.PatchError`), never guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from functions.code_agent.changes import (
    MAX_BODY_CHARS,
    MAX_PATCH_BYTES,
    FileChange,
    PatchError,
    parse_unified_diff,
)

MAX_SUMMARY = 2000
NO_DIFF = "the model's answer held no diff"

_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
_LINE_NUMBER = re.compile(r"^line (\d+): unexpected text between files")


class NoDiff(PatchError):
    """The model answered without any unified diff."""


@dataclass(frozen=True)
class Reply:
    patch_text: str  # the unified diff, as the model wrote it (each line ending in "\n")
    summary: str  # the text after the diff, stripped, at most MAX_SUMMARY characters
    changes: tuple[FileChange, ...] = ()  # the diff, parsed

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(change.path for change in self.changes)


@dataclass
class _Block:
    start: int  # the opening fence's line
    indent: int
    is_diff: bool
    lines: list[str]
    end: int | None = None  # the closing fence's line; None when the fence is never closed


def changes_from_reply(text: str) -> Reply:
    """The diff and summary in the model's answer. Raises NoDiff, or PatchError when it does not parse."""
    if not isinstance(text, str):
        raise NoDiff(f"{NO_DIFF}: expected text, got {type(text).__name__}")
    lines = text[:MAX_BODY_CHARS].replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    diffs = [block for block in _blocks(lines) if block.is_diff]
    if len(diffs) > 1:
        raise PatchError(f"the model's answer held {len(diffs)} diff blocks (at lines "
                         f"{', '.join(str(b.start + 1) for b in diffs)}); expected the whole change in one")
    if diffs:
        block = diffs[0]
        patch = "".join(line + "\n" for line in block.lines)
        after = [] if block.end is None else lines[block.end + 1:]
    else:
        patch, after = _bare_diff(lines)
    if len(patch.encode("utf-8", "replace")) > MAX_PATCH_BYTES:
        raise PatchError(f"the model's diff is larger than {MAX_PATCH_BYTES} bytes (256 KB)")
    if not patch.strip():
        raise NoDiff(f"{NO_DIFF}: its diff block is empty")
    try:
        changes = parse_unified_diff(patch)
    except PatchError as exc:
        raise PatchError(f"the model's diff does not parse: {exc}") from None
    return Reply(patch_text=patch, summary=_summary(after), changes=tuple(changes))


def _blocks(lines: list[str]) -> list[_Block]:
    """Every fenced block at the top level, with its content and where it ends."""
    blocks: list[_Block] = []
    current: _Block | None = None
    fence = ""
    for number, line in enumerate(lines):
        if current is None:
            match = _FENCE_OPEN.match(line)
            if not match or (match.group(2)[0] == "`" and "`" in match.group(3)):
                continue
            fence = match.group(2)
            words = match.group(3).split()
            is_diff = bool(words) and words[0].lower() in ("diff", "patch")
            current = _Block(number, len(match.group(1)), is_diff, [])
            blocks.append(current)
            continue
        closing = _FENCE_CLOSE.match(line)
        if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
            current.end = number
            current = None
            continue
        if current.is_diff:
            current.lines.append(line[min(current.indent, len(line) - len(line.lstrip(" "))):])
    return blocks


def _bare_diff(lines: list[str]) -> tuple[str, list[str]]:
    """A diff written without a fence: from its first file header to the first line of prose."""
    start = _file_header(lines)
    if start is None:
        raise NoDiff(f"{NO_DIFF} (expected a unified diff in a ```diff block, then a short summary)")
    body = lines[start:]
    try:
        parse_unified_diff("".join(line + "\n" for line in body))
    except PatchError as exc:
        # Prose after the diff reads as "unexpected text between files": the diff ends before it.
        # Anything else (a miscounted hunk, say) is the diff's own fault and is reported as such.
        match = _LINE_NUMBER.match(str(exc))
        if match and int(match.group(1)) > 1:
            cut = int(match.group(1)) - 1
            later = _file_header(body[cut:])
            if later is not None:
                raise PatchError(f"the model's diff has text between its files (line {start + cut + 1}); "
                                 "expected the whole change in one ```diff block") from None
            diff = body[:cut]
            while diff and not diff[-1].strip():  # the blank lines before the prose are not the diff's
                diff.pop()
            return "".join(line + "\n" for line in diff), body[cut:]
    return "".join(line + "\n" for line in body), []


def _file_header(lines: list[str]) -> int | None:
    """Where the first file header of a unified diff is: `diff --git`, or `---` then `+++`."""
    for index, line in enumerate(lines):
        if line.startswith("diff --git "):
            return index
        if line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            return index
    return None


def _summary(lines: list[str]) -> str:
    if lines and _FENCE_CLOSE.match(lines[0]):  # the close of an unlabelled fence around a bare diff
        lines = lines[1:]
    text = "\n".join(lines).strip()
    if len(text) > MAX_SUMMARY:
        text = text[: MAX_SUMMARY - 1].rstrip() + "…"
    return text
