"""The GitHub sandbox as the integration tests' fake GitHub, served on loopback for one test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sandbox.github.server import GitHubSandbox, generate_app_key
from tests.support.push import serve

FakeGitHub = GitHubSandbox
REFUSED = "the GitHub sandbox saw requests GitHub would not accept:\n"

__all__ = ["FakeGitHub", "generate_app_key", "running_fake"]


@contextmanager
def running_fake(env: dict[str, str], monkeypatch: Any) -> Iterator[GitHubSandbox]:
    """Serve a GitHubSandbox with a fresh App key and point the configuration at it.

    Sets GITHUB_API_URL, GITHUB_APP_ID and GITHUB_PRIVATE_KEY both in the process environment and
    in `env`, so a Config built from either sees them. Fails on exit if the sandbox saw a request
    GitHub would reject or answered one it could not.
    """
    public_key, pem = generate_app_key()
    fake = GitHubSandbox(public_key)
    with serve(fake.wsgi) as url:
        fake.base_url = url
        settings = {"GITHUB_API_URL": url, "GITHUB_APP_ID": fake.app_id, "GITHUB_PRIVATE_KEY": pem}
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        env.update(settings)
        try:
            yield fake
        except BaseException as exc:
            if fake.errors:
                exc.add_note(REFUSED + "\n".join(fake.errors))
            raise
    assert fake.errors == [], REFUSED + "\n".join(fake.errors)
