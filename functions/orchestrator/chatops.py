"""ChatOps: reading commands out of issue and pull request comments, and who may give them. Pure.

A command is a line of its own that starts with `/`, outside code blocks and quotes, so quoting
someone's `/hold` in a reply does not hold anything. Only our verbs count; other bots' slash
commands are left alone. Comment text is untrusted: it is capped, and whatever of it goes back
into a reply is neutralised so it cannot mention people or inject markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_BODY = 65_536
MAX_COMMANDS = 5
MAX_ARGUMENT = 200

HOLD = "hold"
UNHOLD = "unhold"
RETRY = "retry"
CANCEL = "cancel"
APPROVE = "approve"
AGENTS_PAUSE = "agents pause"
AGENTS_RESUME = "agents resume"
AGENTS_STATUS = "agents status"
IMPLEMENT = "agent implement"
DEPLOY = "deploy"
ROLLBACK = "rollback"
UNKNOWN = "unknown"

# Which permission setting of the repo's policy each verb needs: "chatops" is the policy's
# chatops.permission, "admin" its chatops.admin_permission, "approval" the approval rule's own.
VERB_PERMISSION: Mapping[str, str] = {
    HOLD: "chatops",
    UNHOLD: "chatops",
    RETRY: "chatops",
    CANCEL: "chatops",
    APPROVE: "approval",
    AGENTS_PAUSE: "admin",
    AGENTS_RESUME: "admin",
    AGENTS_STATUS: "read",
    IMPLEMENT: "chatops",
    DEPLOY: "chatops",
    ROLLBACK: "chatops",
}

_SIMPLE = {"/hold": HOLD, "/unhold": UNHOLD, "/retry": RETRY, "/cancel": CANCEL, "/approve": APPROVE,
           "/deploy": DEPLOY, "/rollback": ROLLBACK}
_AGENTS = {"pause": AGENTS_PAUSE, "resume": AGENTS_RESUME, "status": AGENTS_STATUS}
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Command:
    verb: str
    argument: str  # the task for /approve, the reason for /hold, the unknown word for UNKNOWN
    line: int  # 1-based line in the comment


def parse_commands(body: str) -> list[Command]:
    """Our commands in a comment body, in order, at most MAX_COMMANDS."""
    commands: list[Command] = []
    fence = ""  # the open fence's character; only that character closes it, as in Markdown
    for number, line in enumerate((body or "")[:MAX_BODY].splitlines(), start=1):
        match = _FENCE.match(line)
        if match and (not fence or match.group(1)[0] == fence):
            fence = "" if fence else match.group(1)[0]
            continue
        stripped = line.strip()
        if fence or not stripped.startswith("/"):
            continue
        words = stripped.split(maxsplit=2)
        head = words[0].lower()
        rest = stripped[len(words[0]):].strip()
        if head in _SIMPLE:
            commands.append(Command(_SIMPLE[head], rest[:MAX_ARGUMENT], number))
        elif head == "/agents":
            sub = words[1].lower() if len(words) > 1 else ""
            commands.append(Command(_AGENTS[sub], "", number) if sub in _AGENTS
                            else Command(UNKNOWN, f"/agents {sub}".strip()[:MAX_ARGUMENT], number))
        elif head == "/agent":
            sub = words[1].lower() if len(words) > 1 else ""
            commands.append(Command(IMPLEMENT, "", number) if sub == "implement"
                            else Command(UNKNOWN, f"/agent {sub}".strip()[:MAX_ARGUMENT], number))
        if len(commands) >= MAX_COMMANDS:
            break
    return commands


def ignore_reason(sender: Mapping[str, Any], comment: Mapping[str, Any], app_id: int,
                  app_login: str) -> str:
    """Why a comment's commands are not obeyed at all, or "" for a human's comment.

    The App never obeys its own comments (that would loop), nor any bot's.
    """
    login = str(sender.get("login") or "")
    via_app = comment.get("performed_via_github_app")
    if app_login and login.lower() == app_login.lower():
        return "the comment is the App's own"
    if isinstance(via_app, Mapping) and app_id and via_app.get("id") == app_id:
        return "the comment was made through the App"
    if sender.get("type") == "Bot" or login.endswith("[bot]"):
        return f"{login} is a bot"
    return ""


def neutralise(text: str, limit: int = MAX_ARGUMENT) -> str:
    """Untrusted text made safe to quote in a comment: no mentions, markup or code spans."""
    text = text[:limit].replace("\r", " ").replace("\n", " ")
    text = text.replace("@", "@\u200b").replace("`", "'").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("[", "\\[").replace("]", "\\]")


def refusal(login: str, verb: str, needed: str, has: str) -> str:
    return (f"@{neutralise(login, 60)} `/{verb}` needs the **{needed}** role on this repository; "
            f"you have **{has or 'none'}**. Nothing was changed.")
