"""Typed configuration. `Config.from_env()` is the only reader of the process environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from shared import topology
from shared.errors import ConfigError

DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_MAX_MESSAGE_AGE_SECONDS = 3 * 24 * 3600  # GitHub keeps deliveries redeliverable for 3 days
DEFAULT_PUBLISH_TIMEOUT_SECONDS = 5.0  # GitHub waits 10 s for an answer
DEFAULT_SECRET_CACHE_SECONDS = 300.0
DEFAULT_DELIVERY_RETENTION_DAYS = 30
DEFAULT_APPENGINE_API_URL = "https://appengine.googleapis.com"
DEFAULT_CLOUDBUILD_API_URL = "https://cloudbuild.googleapis.com"
DEFAULT_MONITORING_API_URL = "https://monitoring.googleapis.com"
DEPLOY_BACKENDS = ("cloudbuild", "versions")
REPO_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")  # owner/name, as GitHub allows
# The LLM providers the code agent speaks, with their public API URLs.
LLM_PROVIDERS = {"": "", "anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com"}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _pem(env: Mapping[str, str], name: str) -> str:
    """A PEM may be given inline or as a path to a file holding it."""
    raw = env.get(name, "").strip()
    if not raw or raw.startswith("-----BEGIN"):
        return raw
    path = Path(raw)
    if not path.is_file():
        # Never echo the value: it may be a key pasted without its armour.
        raise ConfigError(f"{name} is neither PEM text nor a readable file path")
    return path.read_text()


def _secret_text(env: Mapping[str, str], name: str) -> str:
    """A local stand-in for a secret: the value itself, or a path to a file holding it."""
    raw = env.get(name, "").strip()
    path = Path(raw) if raw and len(raw) < 4096 and "\n" not in raw else None
    if path is not None and path.is_file():
        return path.read_text().strip()
    return raw


def _secret_version(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip() or "latest"
    if raw != "latest" and not raw.isdigit():
        raise ConfigError(f"{name} must be 'latest' or a version number, got {raw!r}")
    return raw


N = TypeVar("N", int, float)


def _non_negative(value: N, name: str) -> N:
    if value < 0:
        raise ConfigError(f"{name} must be zero (no limit) or positive, got {value}")
    return value


@dataclass(frozen=True)
class Config:
    project: str
    github_api_url: str = DEFAULT_GITHUB_API_URL
    github_app_id: str = ""
    pubsub_emulator_host: str = ""
    firestore_emulator_host: str = ""
    # Local stand-ins for Secret Manager. Empty means: read Secret Manager.
    webhook_secret: str = field(default="", repr=False)
    webhook_secret_previous: str = field(default="", repr=False)
    private_key: str = field(default="", repr=False)
    webhook_secret_id: str = topology.WEBHOOK_SECRET
    private_key_secret_id: str = topology.PRIVATE_KEY_SECRET
    webhook_secret_version: str = "latest"
    secret_cache_seconds: float = DEFAULT_SECRET_CACHE_SECONDS
    publish_timeout_seconds: float = DEFAULT_PUBLISH_TIMEOUT_SECONDS
    max_message_age_seconds: int = DEFAULT_MAX_MESSAGE_AGE_SECONDS
    delivery_retention_days: int = DEFAULT_DELIVERY_RETENTION_DAYS
    watched_repos: tuple[str, ...] = ()
    dry_run: bool = False
    log_level: str = "INFO"
    # Budgets across every repository per UTC day; 0 means no global limit.
    global_daily_tasks: int = 0
    global_daily_cost: float = 0.0
    # The code agent's llm implementer. The key comes from Secret Manager unless LLM_API_KEY stands in.
    llm_provider: str = ""
    llm_api_url: str = ""
    llm_model: str = ""
    llm_api_key: str = field(default="", repr=False)
    llm_api_key_secret_id: str = topology.LLM_API_KEY_SECRET
    # Where comments link tasks and audit trails; empty: they name the CLI commands instead.
    dashboard_url: str = ""
    # Google APIs the deploy and monitor agents call; the App Engine sandbox stands in for all three
    # locally. The App Engine application id is the project's.
    appengine_api_url: str = DEFAULT_APPENGINE_API_URL
    cloudbuild_api_url: str = DEFAULT_CLOUDBUILD_API_URL
    monitoring_api_url: str = DEFAULT_MONITORING_API_URL
    # How a release is built: "cloudbuild" runs `gcloud app deploy --no-promote` in Cloud Build;
    # "versions" creates the version with the App Engine versions API (the sandbox, or an image).
    deploy_backend: str = "cloudbuild"
    # A Slack incoming webhook for deploy and incident notices; from Secret Manager unless set.
    slack_webhook_url: str = field(default="", repr=False)
    slack_webhook_secret_id: str = topology.SLACK_WEBHOOK_SECRET
    # The repository (owner/name) the weekly report issue is posted in; empty: stored, not posted.
    report_repo: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        project = env.get("GOOGLE_CLOUD_PROJECT", "").strip()
        if not project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT is not set: name the Google Cloud project")
        api_url = env.get("GITHUB_API_URL", "").strip() or DEFAULT_GITHUB_API_URL
        if not api_url.startswith(("https://", "http://")):
            raise ConfigError(f"GITHUB_API_URL must be an http(s) URL, got {api_url!r}")
        app_id = env.get("GITHUB_APP_ID", "").strip()
        if app_id and not app_id.isdigit() and not app_id.startswith("Iv"):
            raise ConfigError("GITHUB_APP_ID must be the numeric App id or the App's client id")
        max_age = _int(env, "AGENTOPS_MAX_MESSAGE_AGE_SECONDS", DEFAULT_MAX_MESSAGE_AGE_SECONDS)
        if max_age <= 0:
            raise ConfigError("AGENTOPS_MAX_MESSAGE_AGE_SECONDS must be positive")
        repos = tuple(
            repo.strip() for repo in env.get("AGENTOPS_WATCHED_REPOS", "").split(",") if repo.strip()
        )
        for repo in repos:
            if repo.count("/") != 1:
                raise ConfigError(f"AGENTOPS_WATCHED_REPOS entries must be owner/name, got {repo!r}")
        log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
        provider = env.get("AGENTOPS_LLM_PROVIDER", "").strip().lower()
        if provider not in LLM_PROVIDERS:
            names = ", ".join(sorted(name for name in LLM_PROVIDERS if name))
            raise ConfigError(f"AGENTOPS_LLM_PROVIDER must be one of {names} or empty, got {provider!r}")
        llm_url = env.get("AGENTOPS_LLM_API_URL", "").strip() or LLM_PROVIDERS.get(provider, "")
        dashboard = env.get("AGENTOPS_DASHBOARD_URL", "").strip().rstrip("/")
        for name, url in (("AGENTOPS_LLM_API_URL", llm_url), ("AGENTOPS_DASHBOARD_URL", dashboard)):
            if url and not url.startswith(("https://", "http://")):
                raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
        google_urls = {}
        for name, default in (("AGENTOPS_APPENGINE_API_URL", DEFAULT_APPENGINE_API_URL),
                              ("AGENTOPS_CLOUDBUILD_API_URL", DEFAULT_CLOUDBUILD_API_URL),
                              ("AGENTOPS_MONITORING_API_URL", DEFAULT_MONITORING_API_URL)):
            url = env.get(name, "").strip().rstrip("/") or default
            if not url.startswith(("https://", "http://")):
                raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
            google_urls[name] = url
        report_repo = env.get("AGENTOPS_REPORT_REPO", "").strip()
        if report_repo and not REPO_NAME.fullmatch(report_repo):
            raise ConfigError(f"AGENTOPS_REPORT_REPO must be a repository as owner/name, got {report_repo!r}")
        backend = env.get("AGENTOPS_DEPLOY_BACKEND", "").strip().lower() or "cloudbuild"
        if backend not in DEPLOY_BACKENDS:
            raise ConfigError(f"AGENTOPS_DEPLOY_BACKEND must be one of {', '.join(DEPLOY_BACKENDS)}, "
                              f"got {backend!r}")
        return cls(
            project=project,
            github_api_url=api_url.rstrip("/"),
            github_app_id=app_id,
            pubsub_emulator_host=env.get("PUBSUB_EMULATOR_HOST", "").strip(),
            firestore_emulator_host=env.get("FIRESTORE_EMULATOR_HOST", "").strip(),
            webhook_secret=env.get("GITHUB_WEBHOOK_SECRET", ""),
            webhook_secret_previous=env.get("GITHUB_WEBHOOK_SECRET_PREVIOUS", ""),
            private_key=_pem(env, "GITHUB_PRIVATE_KEY"),
            webhook_secret_id=env.get("AGENTOPS_WEBHOOK_SECRET_ID", "").strip()
            or topology.WEBHOOK_SECRET,
            webhook_secret_version=_secret_version(env, "AGENTOPS_WEBHOOK_SECRET_VERSION"),
            private_key_secret_id=env.get("AGENTOPS_PRIVATE_KEY_SECRET_ID", "").strip()
            or topology.PRIVATE_KEY_SECRET,
            secret_cache_seconds=_float(
                env, "AGENTOPS_SECRET_CACHE_SECONDS", DEFAULT_SECRET_CACHE_SECONDS
            ),
            publish_timeout_seconds=_float(
                env, "AGENTOPS_PUBLISH_TIMEOUT_SECONDS", DEFAULT_PUBLISH_TIMEOUT_SECONDS
            ),
            max_message_age_seconds=max_age,
            delivery_retention_days=_int(
                env, "AGENTOPS_DELIVERY_RETENTION_DAYS", DEFAULT_DELIVERY_RETENTION_DAYS
            ),
            watched_repos=repos,
            dry_run=_bool(env, "AGENTOPS_DRY_RUN"),
            log_level=log_level,
            global_daily_tasks=_non_negative(_int(env, "AGENTOPS_GLOBAL_DAILY_TASKS", 0),
                                             "AGENTOPS_GLOBAL_DAILY_TASKS"),
            global_daily_cost=_non_negative(_float(env, "AGENTOPS_GLOBAL_DAILY_COST", 0.0),
                                            "AGENTOPS_GLOBAL_DAILY_COST"),
            llm_provider=provider,
            llm_api_url=llm_url.rstrip("/"),
            llm_model=env.get("AGENTOPS_LLM_MODEL", "").strip(),
            llm_api_key=_secret_text(env, "LLM_API_KEY"),
            llm_api_key_secret_id=env.get("AGENTOPS_LLM_API_KEY_SECRET_ID", "").strip()
            or topology.LLM_API_KEY_SECRET,
            dashboard_url=dashboard,
            appengine_api_url=google_urls["AGENTOPS_APPENGINE_API_URL"],
            cloudbuild_api_url=google_urls["AGENTOPS_CLOUDBUILD_API_URL"],
            monitoring_api_url=google_urls["AGENTOPS_MONITORING_API_URL"],
            deploy_backend=backend,
            slack_webhook_url=_secret_text(env, "SLACK_WEBHOOK_URL"),
            slack_webhook_secret_id=env.get("AGENTOPS_SLACK_WEBHOOK_SECRET_ID", "").strip()
            or topology.SLACK_WEBHOOK_SECRET,
            report_repo=report_repo,
        )

    def with_overrides(self, **changes: object) -> Config:
        return replace(self, **changes)

    def require_app_id(self) -> str:
        if not self.github_app_id:
            raise ConfigError("GITHUB_APP_ID is not set: name the GitHub App (id or client id)")
        return self.github_app_id


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child process (the local runner's functions): ours plus overrides."""
    return {**os.environ, **overrides}

