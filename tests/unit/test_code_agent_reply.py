"""Reading the model's answer: the diff it proposes, in a fence or bare, and the summary after it."""

from __future__ import annotations

import pytest

from functions.code_agent.changes import ADD, MAX_PATCH_BYTES, MODIFY, PatchError, extract_patch
from functions.code_agent.reply import MAX_SUMMARY, NO_DIFF, NoDiff, Reply, changes_from_reply
from sandbox.llm.server import DEFAULT_REPLY
from shared.errors import InvalidInput

DIFF = (
    "--- a/app.py\n"
    "+++ b/app.py\n"
    "@@ -1,2 +1,2 @@\n"
    " def greet():\n"
    '-    return "hi"\n'
    '+    return "hello"\n'
)
GIT_DIFF = (
    "diff --git a/docs/new.md b/docs/new.md\n"
    "new file mode 100644\n"
    "--- /dev/null\n"
    "+++ b/docs/new.md\n"
    "@@ -0,0 +1,2 @@\n"
    "+# New\n"
    "+text\n"
)
# A Markdown file's diff whose context line is a code fence: only a longer outer fence holds it.
MARKDOWN_DIFF = (
    "--- a/README.md\n"
    "+++ b/README.md\n"
    "@@ -1,3 +1,3 @@\n"
    " ```\n"
    "-old\n"
    "+new\n"
    " ```\n"
)

READ_CASES = [
    # (id, answer, expected patch, expected summary)
    ("backtick-diff-then-summary", f"```diff\n{DIFF}```\n\nGreets with hello now.\n", DIFF,
     "Greets with hello now."),
    ("patch-label", f"```patch\n{DIFF}```\nDone.", DIFF, "Done."),
    ("label-case-and-attributes", f"```Diff title=change\n{DIFF}```\nDone.", DIFF, "Done."),
    ("tilde-fence", f"~~~diff\n{DIFF}~~~\nTilde fenced.", DIFF, "Tilde fenced."),
    ("longer-fence-holds-a-fence-line", f"````diff\n{MARKDOWN_DIFF}````\nFence inside.", MARKDOWN_DIFF,
     "Fence inside."),
    ("text-before-the-block-is-not-summary", f"Here is the change:\n\n```diff\n{DIFF}```\nThe summary.",
     DIFF, "The summary."),
    ("indented-fence-is-dedented", "  ```diff\n" + "".join(f"  {line}\n" for line in DIFF.splitlines())
     + "  ```\nIndented.", DIFF, "Indented."),
    ("other-blocks-are-skipped", f"```python\nprint('--- a/x')\n```\n```diff\n{DIFF}```\nOnly the diff.",
     DIFF, "Only the diff."),
    ("crlf-line-endings", f"```diff\r\n{DIFF.replace(chr(10), chr(13) + chr(10))}```\r\nWindows.\r\n", DIFF,
     "Windows."),
    ("unclosed-fence-runs-to-the-end", f"```diff\n{DIFF}", DIFF, ""),
    ("no-summary", f"```diff\n{DIFF}```", DIFF, ""),
    ("git-diff-new-file", f"```diff\n{GIT_DIFF}```\nAdds docs.", GIT_DIFF, "Adds docs."),
    ("bare-diff", DIFF, DIFF, ""),
    ("bare-diff-then-summary", f"{DIFF}\nGreets with hello now.\n", DIFF, "Greets with hello now."),
    ("bare-diff-after-a-preamble", f"Here is the change:\n{DIFF}", DIFF, ""),
    ("bare-git-diff", f"{GIT_DIFF}Adds docs.", GIT_DIFF, "Adds docs."),
    ("bare-diff-in-an-unlabelled-fence", f"```\n{DIFF}```\nUnlabelled.", DIFF, "Unlabelled."),
]


@pytest.mark.parametrize(("answer", "patch", "summary"), [case[1:] for case in READ_CASES],
                         ids=[case[0] for case in READ_CASES])
def test_the_diff_and_summary_are_read(answer, patch, summary):
    reply = changes_from_reply(answer)
    assert isinstance(reply, Reply)
    assert reply.patch_text == patch
    assert reply.summary == summary
    assert reply.changes and all(change.path for change in reply.changes)


def test_a_tilde_line_inside_a_backtick_block_is_content():
    # "~~~" does not close a backtick fence: it is a line of the diff, which then does not parse.
    with pytest.raises(PatchError, match="does not parse: line 7: unexpected text"):
        changes_from_reply(f"```diff\n{DIFF}~~~\n```\nAfter.")


@pytest.mark.parametrize("answer", [case[1] for case in READ_CASES if "```" in case[1] or "~~~" in case[1]],
                         ids=[case[0] for case in READ_CASES if "```" in case[1] or "~~~" in case[1]])
def test_a_labelled_block_reads_as_extract_patch_reads_it(answer):
    expected = extract_patch(answer)
    if expected is not None:
        assert changes_from_reply(answer).patch_text == expected


def test_the_parsed_changes_come_with_the_reply():
    reply = changes_from_reply(f"```diff\n{DIFF}{GIT_DIFF}```\nTwo files.")
    assert reply.paths == ("app.py", "docs/new.md")
    assert [change.kind for change in reply.changes] == [MODIFY, ADD]


def test_the_summary_is_cut_to_its_limit():
    reply = changes_from_reply(f"```diff\n{DIFF}```\n" + "word " * 1000)
    assert len(reply.summary) == MAX_SUMMARY
    assert reply.summary.endswith("…")
    short = changes_from_reply(f"```diff\n{DIFF}```\n" + "x" * MAX_SUMMARY)
    assert short.summary == "x" * MAX_SUMMARY


NO_DIFF_CASES = [
    ("prose", "I could not find the file the issue mentions."),
    ("the-sandbox-default", DEFAULT_REPLY),
    ("empty", ""),
    ("only-whitespace", "  \n\n"),
    ("code-but-no-diff", "```python\nprint('hello')\n```\n"),
    ("a-horizontal-rule-is-no-header", "Title\n---\nSome text\n"),
    ("empty-diff-block", "```diff\n```\nNothing."),
    ("not-text", None),
]


@pytest.mark.parametrize("answer", [case[1] for case in NO_DIFF_CASES],
                         ids=[case[0] for case in NO_DIFF_CASES])
def test_an_answer_without_a_diff_is_refused_clearly(answer):
    with pytest.raises(NoDiff, match=NO_DIFF) as raised:
        changes_from_reply(answer)
    assert isinstance(raised.value, PatchError)
    assert isinstance(raised.value, InvalidInput)


BAD_CASES = [
    # (id, answer, message)
    ("bad-hunk-header", "```diff\n--- a/app.py\n+++ b/app.py\n@@ -x +y @@\n-a\n+b\n```\n", "does not parse"),
    ("miscounted-hunk", "```diff\n--- a/app.py\n+++ b/app.py\n@@ -1,1 +1,1 @@\n-a\n+b\n+c\n```\n",
     "does not parse"),
    ("headers-without-hunks", "```diff\n--- a/app.py\n+++ b/app.py\n```\n", "does not parse"),
    ("two-diff-blocks", f"```diff\n{DIFF}```\nand\n```diff\n{GIT_DIFF}```\n", "2 diff blocks"),
    ("prose-between-bare-files", f"{DIFF}\nAnd the docs:\n{GIT_DIFF}", "text between its files"),
    ("bare-diff-then-a-bullet", f"{DIFF}\n- greets with hello\n", "does not parse"),
    ("binary", "```diff\ndiff --git a/x.png b/x.png\nGIT binary patch\nliteral 1\n```\n", "does not parse"),
]


@pytest.mark.parametrize(("answer", "message"), [case[1:] for case in BAD_CASES],
                         ids=[case[0] for case in BAD_CASES])
def test_a_diff_that_does_not_parse_is_refused(answer, message):
    with pytest.raises(PatchError, match=message) as raised:
        changes_from_reply(answer)
    assert not isinstance(raised.value, NoDiff)


def test_a_diff_larger_than_the_limit_is_refused():
    lines = "".join(f"+line {index} " + "x" * 60 + "\n" for index in range(5000))
    answer = f"```diff\n--- /dev/null\n+++ b/big.txt\n@@ -0,0 +1,5000 @@\n{lines}```\n"
    assert len(answer) > MAX_PATCH_BYTES
    with pytest.raises(PatchError, match="larger than"):
        changes_from_reply(answer)
