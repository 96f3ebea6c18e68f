"""ChatOps: commands read out of untrusted comment bodies, whose comments are obeyed, safe quoting."""

from __future__ import annotations

import pytest

from functions.orchestrator import chatops
from functions.orchestrator.chatops import (
    AGENTS_PAUSE,
    AGENTS_RESUME,
    AGENTS_STATUS,
    APPROVE,
    CANCEL,
    HOLD,
    MAX_ARGUMENT,
    MAX_BODY,
    MAX_COMMANDS,
    RETRY,
    UNHOLD,
    UNKNOWN,
    Command,
)
from shared.policy import ROLES

PARSE_CASES = [
    # (id, body, expected [(verb, argument, line)])
    ("hold", "/hold", [(HOLD, "", 1)]),
    ("unhold", "/unhold", [(UNHOLD, "", 1)]),
    ("retry", "/retry", [(RETRY, "", 1)]),
    ("cancel", "/cancel", [(CANCEL, "", 1)]),
    ("approve", "/approve", [(APPROVE, "", 1)]),
    ("approve-a-task", "/approve implement_issue-0123abcd", [(APPROVE, "implement_issue-0123abcd", 1)]),
    ("hold-with-reason", "/hold waiting on legal review", [(HOLD, "waiting on legal review", 1)]),
    ("reason-keeps-inner-spacing", "/hold  two   spaces ", [(HOLD, "two   spaces", 1)]),
    ("case-insensitive", "/HOLD Because", [(HOLD, "Because", 1)]),
    ("leading-spaces", "   /retry", [(RETRY, "", 1)]),
    ("agents-pause", "/agents pause", [(AGENTS_PAUSE, "", 1)]),
    ("agents-resume", "/agents resume", [(AGENTS_RESUME, "", 1)]),
    ("agents-status-any-case", "/Agents STATUS", [(AGENTS_STATUS, "", 1)]),
    ("agents-pause-ignores-trailing-words", "/agents pause for the night", [(AGENTS_PAUSE, "", 1)]),
    ("agents-unknown-subcommand", "/agents frobnicate", [(UNKNOWN, "/agents frobnicate", 1)]),
    ("agents-alone", "/agents", [(UNKNOWN, "/agents", 1)]),
    ("agent-implement", "/agent implement", [(chatops.IMPLEMENT, "", 1)]),
    ("agent-implement-any-case", "/Agent IMPLEMENT please", [(chatops.IMPLEMENT, "", 1)]),
    ("agent-unknown-subcommand", "/agent dance", [(UNKNOWN, "/agent dance", 1)]),
    ("other-bots-commands", "/label bug\n/assign @me\n/lgtm", []),
    ("prefix-of-a-verb-is-not-it", "/holdup\n/cancelled", []),
    ("slash-mid-line", "please /hold this", []),
    ("line-numbers", "Thanks!\n\n/hold\nmore text\n/unhold", [(HOLD, "", 3), (UNHOLD, "", 5)]),
    ("crlf-lines", "hi\r\n/cancel\r\n", [(CANCEL, "", 2)]),
    ("backtick-fence", "```\n/cancel\n```\n/retry", [(RETRY, "", 4)]),
    ("tilde-fence", "~~~\n/cancel\n~~~\n/retry", [(RETRY, "", 4)]),
    ("fence-with-info-string", "```bash\n/cancel\n```", []),
    ("indented-fence", "  ```\n/cancel\n  ```\n/hold", [(HOLD, "", 4)]),
    ("tilde-line-inside-backtick-fence", "```\n~~~\n/cancel\n```\n/hold", [(HOLD, "", 5)]),
    ("backtick-line-inside-tilde-fence", "~~~\n```\n/cancel\n~~~\n/hold", [(HOLD, "", 5)]),
    ("unclosed-fence-hides-the-rest", "```\n/cancel\n/hold", []),
    ("quoted-command", "> /hold\n>/cancel", []),
    ("empty", "", []),
    ("none", None, []),
]


@pytest.mark.parametrize("body,expected", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse_commands(body, expected):
    assert chatops.parse_commands(body) == [Command(*command) for command in expected]


def test_commands_are_capped():
    body = "\n".join(["/hold", "/unhold"] * 10)
    commands = chatops.parse_commands(body)
    assert len(commands) == MAX_COMMANDS
    assert [c.line for c in commands] == list(range(1, MAX_COMMANDS + 1))


def test_argument_is_capped():
    (command,) = chatops.parse_commands("/hold " + "r" * (MAX_ARGUMENT * 3))
    assert command.argument == "r" * MAX_ARGUMENT
    (unknown,) = chatops.parse_commands("/agents " + "z" * (MAX_ARGUMENT * 3))
    assert unknown.verb == UNKNOWN
    assert len(unknown.argument) == MAX_ARGUMENT


HOSTILE_CASES = [
    ("one-huge-line", "/hold " + "x" * 1_000_000, [HOLD]),
    ("command-past-the-cap", "a" * MAX_BODY + "\n/cancel", []),
    ("command-just-inside-the-cap", "a" * (MAX_BODY - 9) + "\n/cancel", [CANCEL]),
    ("many-lines", "\n" * 1_000_000 + "/cancel", []),
    ("many-fences", "```\n" * 500_000, []),
]


@pytest.mark.parametrize("body,verbs", [c[1:] for c in HOSTILE_CASES], ids=[c[0] for c in HOSTILE_CASES])
def test_hostile_bodies_read_only_the_first_max_body_characters(body, verbs):
    commands = chatops.parse_commands(body)
    assert [c.verb for c in commands] == verbs
    assert all(len(c.argument) <= MAX_ARGUMENT for c in commands)


APP_ID, APP_LOGIN = 4242, "agent-ops[bot]"

IGNORE_CASES = [
    # (id, sender, comment, expected reason)
    ("app-own-login", {"login": "agent-ops[bot]", "type": "Bot"}, {}, "the comment is the App's own"),
    ("app-login-any-case", {"login": "Agent-Ops[BOT]", "type": "User"}, {}, "the comment is the App's own"),
    ("made-through-the-app", {"login": "alice", "type": "User"}, {"performed_via_github_app": {"id": APP_ID}},
     "the comment was made through the App"),
    ("made-through-another-app", {"login": "alice", "type": "User"},
     {"performed_via_github_app": {"id": APP_ID + 1}}, ""),
    ("hostile-via-app", {"login": "alice", "type": "User"}, {"performed_via_github_app": "4242"}, ""),
    ("any-bot-type", {"login": "ci-helper", "type": "Bot"}, {}, "ci-helper is a bot"),
    ("bot-suffix", {"login": "dependabot[bot]"}, {}, "dependabot[bot] is a bot"),
    ("human", {"login": "alice", "type": "User"}, {}, ""),
    ("human-with-null-app", {"login": "alice", "type": "User"}, {"performed_via_github_app": None}, ""),
    ("empty-sender", {}, {}, ""),
]


@pytest.mark.parametrize("sender,comment,reason", [c[1:] for c in IGNORE_CASES],
                         ids=[c[0] for c in IGNORE_CASES])
def test_ignore_reason(sender, comment, reason):
    assert chatops.ignore_reason(sender, comment, APP_ID, APP_LOGIN) == reason


def test_an_unknown_app_identity_ignores_nothing_human():
    assert chatops.ignore_reason({"login": "alice"}, {"performed_via_github_app": {"id": 0}}, 0, "") == ""


NEUTRALISE_CASES = [
    ("team-mention", "ping @octo-org/security", "ping @\u200bocto-org/security"),
    ("user-mention", "@alice", "@\u200balice"),
    ("backticks", "`rm -rf` ```x```", "'rm -rf' '''x'''"),
    ("script", "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("link", "[click](https://evil.example)", "\\[click\\](https://evil.example)"),
    ("image", "![x](y)", "!\\[x\\](y)"),
    ("newlines", "one\r\ntwo\nthree", "one  two three"),
    ("plain", "waiting on legal", "waiting on legal"),
]


@pytest.mark.parametrize("text,safe", [c[1:] for c in NEUTRALISE_CASES], ids=[c[0] for c in NEUTRALISE_CASES])
def test_neutralise(text, safe):
    assert chatops.neutralise(text) == safe


def test_neutralise_caps_length_before_escaping():
    assert chatops.neutralise("a" * 1000) == "a" * MAX_ARGUMENT
    assert chatops.neutralise("abcdef", limit=3) == "abc"
    assert chatops.neutralise("\n" * 1000) == " " * MAX_ARGUMENT


def test_refusal_names_the_roles_and_cannot_be_turned_into_a_mention():
    text = chatops.refusal("alice", HOLD, "write", "read")
    assert text == ("@alice `/hold` needs the **write** role on this repository; you have **read**. "
                    "Nothing was changed.")
    assert "you have **none**" in chatops.refusal("alice", HOLD, "write", "")
    assert chatops.refusal("x@org/team", HOLD, "write", "").startswith("@x@\u200borg/team ")


def test_every_verb_names_a_permission_setting():
    verbs = {HOLD, UNHOLD, RETRY, CANCEL, APPROVE, AGENTS_PAUSE, AGENTS_RESUME, AGENTS_STATUS,
             chatops.IMPLEMENT, chatops.DEPLOY, chatops.ROLLBACK}
    assert set(chatops.VERB_PERMISSION) == verbs
    assert UNKNOWN not in chatops.VERB_PERMISSION
    for verb, setting in chatops.VERB_PERMISSION.items():
        assert setting in {"chatops", "admin", "approval"} or setting in ROLES, verb
    assert chatops.VERB_PERMISSION[APPROVE] == "approval"
    assert chatops.VERB_PERMISSION[AGENTS_PAUSE] == "admin"


def test_deploy_and_rollback_are_commands_of_their_own_line():
    body = "Ship it\n/deploy\n> /rollback quoted\n/rollback now please"
    commands = chatops.parse_commands(body)
    assert [(c.verb, c.argument) for c in commands] == [(chatops.DEPLOY, ""),
                                                        (chatops.ROLLBACK, "now please")]
    assert chatops.VERB_PERMISSION[chatops.ROLLBACK] == "chatops"
