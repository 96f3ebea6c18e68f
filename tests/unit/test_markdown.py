"""Untrusted text made inert for GitHub Markdown: mentions, markup, links and bare URLs."""

from __future__ import annotations

import pytest

from shared.markdown import neutralise

ZW = "\u200b"
CASES = [
    ("plain", "tests/test_app.py", "tests/test_app.py"),
    ("mention", "@octo/team please", f"@{ZW}octo/team please"),
    ("markdown-link", "[click](https://evil.example)", f"［click］(https:{ZW}//evil.example)"),
    ("bare-url", "see https://evil.example/x", f"see https:{ZW}//evil.example/x"),
    ("scheme-any-case", "HTTP://evil.example", f"HTTP:{ZW}//evil.example"),
    ("www", "go to www.evil.example", f"go to www.{ZW}evil.example"),
    ("javascript", "javascript:alert(1)", f"javascript:{ZW}alert(1)"),
    ("html", "<img src=x onerror=alert(1)>", "‹img src=x onerror=alert(1)›"),
    ("code-span-and-table", "`a` | b", "'a' ¦ b"),
    ("newlines", "a\nb\r\nc", "a b c"),
    ("a-colon-is-not-a-scheme", "key: value", "key: value"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_neutralise(text, expected):
    assert neutralise(text, 200) == expected
    assert neutralise(expected, 200) == expected  # idempotent


def test_long_text_keeps_its_head_and_tail():
    text = "a" * 50 + "/" + "b" * 50 + "/file.py"
    cut = neutralise(text, 21)
    assert len(cut) == 21 and cut.startswith("aaaaaaaaaa") and cut.endswith("file.py") and "…" in cut
