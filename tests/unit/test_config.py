"""Config.from_env: fails fast, naming the setting."""

from __future__ import annotations

import pytest

from shared.config import Config
from shared.errors import ConfigError

BASE = {"GOOGLE_CLOUD_PROJECT": "p"}

ERROR_CASES = [
    ("no-project", {}, "GOOGLE_CLOUD_PROJECT"),
    ("blank-project", {"GOOGLE_CLOUD_PROJECT": "  "}, "GOOGLE_CLOUD_PROJECT"),
    ("api-url-not-http", {**BASE, "GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
    ("app-id-garbage", {**BASE, "GITHUB_APP_ID": "my app"}, "GITHUB_APP_ID"),
    ("max-age-not-int", {**BASE, "AGENTOPS_MAX_MESSAGE_AGE_SECONDS": "soon"},
     "AGENTOPS_MAX_MESSAGE_AGE_SECONDS"),
    ("max-age-negative", {**BASE, "AGENTOPS_MAX_MESSAGE_AGE_SECONDS": "-1"},
     "AGENTOPS_MAX_MESSAGE_AGE_SECONDS"),
    ("timeout-zero", {**BASE, "AGENTOPS_PUBLISH_TIMEOUT_SECONDS": "0"}, "AGENTOPS_PUBLISH_TIMEOUT_SECONDS"),
    ("dry-run-maybe", {**BASE, "AGENTOPS_DRY_RUN": "maybe"}, "AGENTOPS_DRY_RUN"),
    ("repo-without-owner", {**BASE, "AGENTOPS_WATCHED_REPOS": "widgets"}, "AGENTOPS_WATCHED_REPOS"),
    ("log-level", {**BASE, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ("secret-version", {**BASE, "AGENTOPS_WEBHOOK_SECRET_VERSION": "newest"},
     "AGENTOPS_WEBHOOK_SECRET_VERSION"),
    ("private-key-neither-pem-nor-file", {**BASE, "GITHUB_PRIVATE_KEY": "/no/such/key.pem"},
     "GITHUB_PRIVATE_KEY"),
]


@pytest.mark.parametrize("env,setting", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_invalid_settings_name_the_setting(env, setting):
    with pytest.raises(ConfigError, match=setting):
        Config.from_env(env)


def test_private_key_value_is_never_echoed():
    secret_like = "MIIEowIBAAKCAQEAnotarealkey"
    with pytest.raises(ConfigError) as caught:
        Config.from_env({**BASE, "GITHUB_PRIVATE_KEY": secret_like})
    assert secret_like not in str(caught.value)


def test_defaults_and_parsing(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n")
    config = Config.from_env({
        **BASE,
        "GITHUB_API_URL": "http://127.0.0.1:9000/",
        "GITHUB_APP_ID": "12345",
        "AGENTOPS_WATCHED_REPOS": "octo/a, octo/b",
        "AGENTOPS_DRY_RUN": "true",
        "GITHUB_PRIVATE_KEY": str(key),
        "GITHUB_WEBHOOK_SECRET": "s",
    })
    assert config.github_api_url == "http://127.0.0.1:9000"
    assert config.watched_repos == ("octo/a", "octo/b")
    assert config.dry_run is True
    assert config.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert config.require_app_id() == "12345"
    assert "s" not in repr(config).split("webhook_secret")[0][-3:]
    assert "private_key=" not in repr(config)
    plain = Config.from_env(BASE)
    assert plain.github_api_url == "https://api.github.com"
    assert plain.max_message_age_seconds == 3 * 24 * 3600
    with pytest.raises(ConfigError, match="GITHUB_APP_ID"):
        plain.require_app_id()
