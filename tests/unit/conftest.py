"""The GitHub sandbox served in-process on loopback, shared by the unit test modules that use it.

`key` and `site` are one per module; `github` is a fresh sandbox per test, answering on the module's
site, seeded with the repositories of the module's own `github_repos` fixture, and closed at the end
with no violation of GitHub's description seen. A module that needs a sandbox made differently
defines its own `github`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from sandbox.github.server import GitHubSandbox, generate_app_key
from tests.support.push import serve


@pytest.fixture(scope="module")
def key() -> tuple[Any, str]:
    return generate_app_key()


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[dict[str, GitHubSandbox], str]]:
    """One loopback server for the module, answering as the current test's sandbox."""
    current: dict[str, GitHubSandbox] = {}
    with serve(lambda environ, start_response: current["sandbox"].wsgi(environ, start_response)) as url:
        yield current, url


@pytest.fixture
def github(key, site, github_repos: Mapping[str, Mapping[str, str]]) -> Iterator[GitHubSandbox]:
    current, url = site
    sandbox = GitHubSandbox(key[0])
    sandbox.base_url = url
    current["sandbox"] = sandbox
    for repo, files in github_repos.items():
        sandbox.add_repo(repo, files=dict(files))
    yield sandbox
    sandbox.close()
    assert sandbox.errors == []
