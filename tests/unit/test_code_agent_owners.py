"""CODEOWNERS as GitHub reads it: the last matching rule wins, gitignore-style patterns."""

from __future__ import annotations

import pytest

from functions.code_agent import owners

CODEOWNERS = """\
# Everything, unless a later rule says otherwise
*                 @octo/maintainers
*.py              @bob @octo/python
/docs/            @alice
apps/             @carol
/build/logs/      @dave
docs/*            @erin
/app/config.toml  ops@example.com   # e-mail owners cannot be asked through the API
"""

CASES = [
    ("everything", "README.md", [], ["octo/maintainers"]),
    ("extension-anywhere", "src/deep/mod.py", ["bob"], ["octo/python"]),
    ("anchored-directory", "docs/guide/intro.md", ["alice"], []),
    ("star-in-a-directory-is-one-level", "docs/intro.md", ["erin"], []),
    ("a-directory-at-any-depth", "web/apps/main.js", ["carol"], []),
    ("anchored-path", "build/logs/today.txt", ["dave"], []),
    ("not-anchored-elsewhere", "x/build/logs/today.txt", [], ["octo/maintainers"]),
    ("e-mail-owners-are-skipped", "app/config.toml", [], []),
]


@pytest.mark.parametrize("path,users,teams", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reviewers_for(path, users, teams):
    assert owners.reviewers_for(CODEOWNERS, [path]) == (users, teams)


def test_several_paths_collect_each_owner_once():
    users, teams = owners.reviewers_for(CODEOWNERS, ["a.py", "b.py", "README.md"])
    assert (users, teams) == (["bob"], ["octo/python", "octo/maintainers"])


def test_hostile_lines_are_not_owners():
    text = "* @alice @@bob @org/ @x/y/z @a*b\n" + "x\n" * 5000
    assert owners.reviewers_for(text, ["f"]) == (["alice"], [])
