"""The GitHub App of an in-process GitHub sandbox, for tests that serve the sandbox on loopback.

`tests/unit/conftest.py` serves the sandbox (`key`, `site`, `github`); this builds the App that
holds its installation, signing with the module's key.
"""

from __future__ import annotations

from typing import Any

from sandbox.github.server import GitHubSandbox
from shared.github.app import GitHubApp


def app_for(sandbox: GitHubSandbox, key: tuple[Any, str], **options: Any) -> GitHubApp:
    """The sandbox's GitHub App, its JWTs signed with `key`'s private key (PEM)."""
    return GitHubApp(sandbox.base_url, sandbox.app_id, lambda: key[1], **options)
