from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from shared import bootstrap, topology
from shared.config import Config
from shared.local.provision import PubSubAdmin, provision

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub


@pytest.fixture
def config(env: dict[str, str]) -> Config:
    return Config.from_env(env)


@pytest.fixture
def admin(env: dict[str, str], project: str) -> Iterator[PubSubAdmin]:
    """This test's Pub/Sub topology (every topic, with its schema) on the emulator."""
    pubsub_admin = PubSubAdmin.connect(project, env["PUBSUB_EMULATOR_HOST"])
    provision(pubsub_admin, endpoints={})
    yield pubsub_admin
    pubsub_admin.close()


@pytest.fixture
def services(config: Config) -> bootstrap.Services:
    return bootstrap.Services(config)


@pytest.fixture
def main_module(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """main.py with a fresh per-instance state, as a new function instance would have."""
    monkeypatch.setattr(bootstrap, "_services", None)
    import main

    return main


@pytest.fixture
def function_client(main_module):
    """A test client for an entry point in main.py, served by functions-framework."""
    import functions_framework

    def client(target: str):
        assert target in topology.FUNCTIONS
        app = functions_framework.create_app(target=target, source=main_module.__file__)
        return app.test_client()

    return client


@pytest.fixture
def github(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """A fake GitHub held to GitHub's description, with `env` pointing the App at it.

    Request it before `config` and `services` (`def test_x(github, services)`): pytest sets up
    fixtures in the order a test names them, and `config` reads `env` when it is set up. The test
    fails at teardown if the fake saw a request GitHub would reject.
    """
    from tests.support.fake_github import running_fake

    with running_fake(env, monkeypatch) as fake:
        yield fake
