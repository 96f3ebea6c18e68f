"""CODEOWNERS: who owns the files a change touches, for the pull request's review requests. Pure.

GitHub's rules: one pattern and its owners per line, `#` starts a comment, the last matching pattern
wins, and a pattern follows gitignore: a leading `/` anchors it at the root, a trailing `/` means a
directory, and a pattern without a `/` (apart from a trailing one) matches at any depth. Owners are
`@user`, `@org/team` or e-mail addresses (which cannot be asked to review through the API, so they
are skipped).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from functions.code_agent.changes import glob_match

MAX_RULES = 1000
_USER = re.compile(r"^@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))$")
_TEAM = re.compile(r"^@([A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9_.-]+)$")


def parse(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """(pattern, owners) per rule, in file order."""
    rules = []
    for line in (text or "").splitlines()[:MAX_RULES * 2]:
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        pattern, *owners = line.split()
        rules.append((pattern, tuple(owners)))
    return rules[:MAX_RULES]


def _globs(pattern: str) -> list[str]:
    anchored = pattern.startswith("/")
    body = pattern.strip("/")
    directory = pattern.endswith("/")
    if not body:
        return ["**"]
    base = body if anchored or "/" in body else f"**/{body}"
    last = base.rsplit("/", 1)[-1]
    if directory:
        globs = [f"{base}/**"]
    elif "/" in body and any(c in last for c in "*?["):
        globs = [base]  # `docs/*` owns the files in docs/, not those in its subdirectories
    else:
        globs = [base, f"{base}/**"]
    if base.startswith("**/"):
        globs += [g[3:] for g in globs]
    return globs


def owns(pattern: str, path: str) -> bool:
    return any(glob_match(glob, path) for glob in _globs(pattern))


def reviewers_for(text: str, paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """(users, teams as org/slug) owning any of `paths`, each once, in a stable order."""
    rules = parse(text)
    users: list[str] = []
    teams: list[str] = []
    for path in paths:
        owners: tuple[str, ...] = ()
        for pattern, rule_owners in rules:
            if owns(pattern, path):
                owners = rule_owners  # the last match wins
        for owner in owners:
            if (team := _TEAM.match(owner)) and team.group(1) not in teams:
                teams.append(team.group(1))
            elif (user := _USER.match(owner)) and user.group(1) not in users:
                users.append(user.group(1))
    return users, teams
