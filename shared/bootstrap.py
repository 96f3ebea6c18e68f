"""The composition root: picks the real adapters from Config, lazily, once per instance.

Cold start matters, so nothing here builds a client until a request needs it, and the Google
client libraries are imported inside the adapters' constructors.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from shared import log as logsetup
from shared import topology
from shared.config import Config
from shared.messages import AgentTask

T = TypeVar("T")


def _once(factory: Callable[[Any], T]) -> Callable[[Any], T]:
    """A thread-safe lazily built attribute, for clients shared by a gunicorn worker's threads."""
    attribute = f"_{factory.__name__}"

    @functools.wraps(factory)
    def get(self: Any) -> T:
        value = self.__dict__.get(attribute)
        if value is None:
            with self._lock:
                value = self.__dict__.get(attribute)
                if value is None:
                    value = factory(self)
                    self.__dict__[attribute] = value
        return value

    return get


class Services:
    def __init__(self, config: Config, secret_client_factory: Callable[[], Any] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.config = config
        self.clock = clock  # every time the functions read; tests pass their own
        self._lock = threading.RLock()
        # None means the real Secret Manager client; tests serve the real service in-process.
        self._secret_client_factory = secret_client_factory

    @_once
    def publisher(self) -> Any:
        from shared.gcp import PubSubPublisher

        return PubSubPublisher(
            self.config.project, self.config.pubsub_emulator_host, self.config.publish_timeout_seconds
        )

    @_once
    def firestore(self) -> Any:
        from shared.gcp import firestore_client

        return firestore_client(self.config.project, self.config.firestore_emulator_host)

    @_once
    def ledger(self) -> Any:
        from shared.firestore_store import FirestoreDeliveryLedger

        return FirestoreDeliveryLedger(
            self.firestore(), timedelta(days=self.config.delivery_retention_days)
        )

    @_once
    def tasks(self) -> Any:
        from shared.task_store import FirestoreTasks

        return FirestoreTasks(self.firestore())

    def github_configured(self) -> bool:
        return bool(self.config.github_app_id)

    def github_or_none(self) -> Any:
        """The GitHub App where it is configured; without it, agents act on Firestore only."""
        return self.github_app() if self.github_configured() else None

    @_once
    def orchestrator(self) -> Any:
        from functions.orchestrator.handler import Limits, Orchestrator

        return Orchestrator(self.ledger, self.tasks, self.publisher, self.audit, clock=self.clock,
                            internal_jobs={"redelivery_sweep": self.redelivery_sweep,
                                           "daily_metrics": self.daily_metrics,
                                           "weekly_report": self.weekly_report},
                            installations=self.installations, github=self.github_or_none,
                            limits=Limits(self.config.global_daily_tasks, self.config.global_daily_cost),
                            dry_run=self.config.dry_run, deployments=self.deployments)

    @_once
    def installations(self) -> Any:
        from shared.firestore_store import FirestoreInstallations

        return FirestoreInstallations(self.firestore())

    @_once
    def audit(self) -> Any:
        from shared.firestore_store import FirestoreAuditLog

        return FirestoreAuditLog(self.firestore())

    @_once
    def webhook_secrets(self) -> Any:
        from shared.gcp import SecretManagerSource, StaticWebhookSecrets

        if self.config.webhook_secret:
            return StaticWebhookSecrets(self.config.webhook_secret, self.config.webhook_secret_previous)
        return SecretManagerSource(
            self.config.project,
            client_factory=self._secret_client_factory,
            cache_seconds=self.config.secret_cache_seconds,
            webhook_secret_id=self.config.webhook_secret_id,
            webhook_secret_version=self.config.webhook_secret_version,
        )

    def private_key_pem(self) -> str:
        if self.config.private_key:
            return self.config.private_key
        return self.secret_source().require(self.config.private_key_secret_id).data.decode()

    @_once
    def secret_source(self) -> Any:
        from shared.gcp import SecretManagerSource

        return SecretManagerSource(self.config.project, client_factory=self._secret_client_factory,
                                   cache_seconds=self.config.secret_cache_seconds)

    @_once
    def github_app(self) -> Any:
        from shared.github.app import GitHubApp

        setting = ("GITHUB_PRIVATE_KEY" if self.config.private_key
                   else f"secret {self.config.private_key_secret_id}")
        from shared.firestore_store import FirestoreConditionalCache

        return GitHubApp(self.config.github_api_url, self.config.require_app_id(),
                         self.private_key_pem, key_setting=setting,
                         cache=FirestoreConditionalCache(self.firestore()))

    def redelivery_report(self, dry_run: bool = False, since_hours: float = 72.0,
                          progress: Any = None) -> Any:
        """Redeliver what GitHub failed to deliver; returns the sweep's Report."""
        from datetime import datetime, timezone

        from shared.github import redelivery

        return redelivery.sweep(
            self.github_app().app_client(), redelivery.guids_published(self.ledger()),
            datetime.now(timezone.utc), timedelta(hours=since_hours),
            dry_run=dry_run or self.config.dry_run, progress=progress,
        )

    def redelivery_sweep(self) -> str:
        """The orchestrator's redelivery_sweep job: sweep, and summarise in one line."""
        from shared.github.redelivery import summarize

        return summarize(self.redelivery_report())[0]

    def daily_metrics(self) -> str:
        """The orchestrator's daily_metrics job: yesterday's metrics and any missing day of the week."""
        from functions.metrics import job

        return job.from_services(self).daily_job()

    def weekly_report(self) -> str:
        """The orchestrator's weekly_report job: last week's report, posted and stored."""
        from functions.metrics import weekly

        return weekly.from_services(self).weekly_job()

    @_once
    def webhook(self) -> Any:
        from functions.github_webhook.handler import WebhookHandler

        return WebhookHandler(self.webhook_secrets, self.ledger, self.publisher)

    @_once
    def dashboard(self) -> Any:
        """The read-only dashboard's handler; it reads Firestore on the first page, not before."""
        from functions.dashboard.app import Dashboard
        from functions.dashboard.reader import DashboardReader

        return Dashboard(lambda: DashboardReader(self.firestore(), self.clock))

    def consumer(self, name: str) -> Any:
        return self._consumers()[name]

    def llm_client(self, model: str = "") -> Any:
        """The code agent's LLM client, or None when no provider is configured."""
        if not self.config.llm_provider:
            return None
        from functions.code_agent.llm import LlmClient

        return LlmClient(self.config.llm_provider, self.config.llm_api_url, model or self.config.llm_model,
                         api_key=self.llm_api_key)

    def llm_api_key(self) -> str:
        if self.config.llm_api_key:
            return self.config.llm_api_key
        return self.secret_source().require(self.config.llm_api_key_secret_id).data.decode().strip()

    def app_login(self) -> str:
        app = self.github_or_none()
        return app.identity()[1] if app is not None else ""

    def agent(self, name: str) -> Any:
        """The agent behind one topic (`topology.AGENTS`)."""
        if name == "code":
            from functions.code_agent.agent import CodeAgent

            return CodeAgent(llm=self.llm_client, app_login=self.app_login)
        if name == "test":
            from functions.test_agent.agent import TestAgent
            from functions.test_agent.store import TestStore

            return TestAgent(store=lambda: TestStore(self.firestore()), app_login=self.app_login)
        if name == "qa":
            from functions.qa_agent.agent import QaAgent

            return QaAgent()
        if name == "deploy":
            from functions.deploy_agent.agent import DeployAgent, Ports

            return DeployAgent(Ports(store=self.deployments, appengine=self.appengine, builder=self.builder,
                                     monitor_store=self.monitor_store, monitoring=self.monitoring,
                                     notifier=self.notifier))
        if name == "monitor":
            from functions.monitor_agent.agent import MonitorAgent

            # A paused or held repository is not probed either (its incidents would be acted on).
            def stop_reason(repository: str) -> str:
                return str(self.tasks().stop_reason("monitor", repository, 0))

            return MonitorAgent(store=self.monitor_store, notifier=self.notifier, stop_reason=stop_reason)
        if name == "scout":
            from functions.repo_scout.agent import ScoutAgent
            from functions.repo_scout.store import ScoutStore

            # A paused or held repository is not scanned (its health issue would be edited).
            def scout_stop(repository: str) -> str:
                return str(self.tasks().stop_reason("scout", repository, 0))

            return ScoutAgent(store=lambda: ScoutStore(self.firestore()), app=self.github_or_none,
                              stop_reason=scout_stop, policy_for=_policy_for)
        raise ValueError(f"no agent is named {name!r}")

    # ---- the deploy and monitor agents' ports ---------------------------------------------------

    @_once
    def deployments(self) -> Any:
        from functions.deploy_agent.store import DeployStore

        return DeployStore(self.firestore())

    @_once
    def monitor_store(self) -> Any:
        from functions.monitor_agent.store import MonitorStore

        return MonitorStore(self.firestore())

    def _google_token(self) -> Callable[[], str]:
        from shared.google_auth import google_token_source, static_token_source
        from shared.google_rest import is_loopback

        if is_loopback(self.config.appengine_api_url):
            return static_token_source("sandbox-token")  # the App Engine sandbox takes any token
        return google_token_source()

    @_once
    def appengine(self) -> Any:
        from shared.appengine import AppEngineAdmin

        return AppEngineAdmin(self.config.appengine_api_url, self.config.project, self._google_token())

    @_once
    def builder(self) -> Any:
        from functions.deploy_agent.builders import CloudBuildBuilder, VersionsBuilder

        if self.config.deploy_backend == "versions":
            return VersionsBuilder(self.appengine())
        from shared.cloudbuild import CloudBuild

        return CloudBuildBuilder(CloudBuild(self.config.cloudbuild_api_url, self.config.project,
                                            self._google_token()))

    @_once
    def monitoring(self) -> Any:
        from shared.cloud_monitoring import CloudMonitoring

        return CloudMonitoring(self.config.monitoring_api_url, self.config.project, self._google_token())

    @_once
    def notifier(self) -> Any:
        from shared.notify import NullNotifier, SlackNotifier

        url = self.config.slack_webhook_url
        if not url and not self.config.private_key:
            # In Google Cloud (secrets from Secret Manager) an absent secret means no Slack.
            secret = self.secret_source().access(self.config.slack_webhook_secret_id)
            url = secret.data.decode().strip() if secret is not None else ""
        return SlackNotifier(url, self.audit) if url else NullNotifier()

    def agent_runner(self, name: str) -> Any:
        from shared.agent_runtime import AgentRunner, Links

        return AgentRunner(self.agent(name), publisher=self.publisher, tasks=self.tasks, audit=self.audit,
                           github=self.github_or_none, policy_for=_policy_for,
                           links=Links(self.config.dashboard_url), dry_run=self.config.dry_run,
                           clock=self.clock)

    @_once
    def _consumers(self) -> dict[str, Any]:
        from functions.orchestrator.handler import MESSAGE_TYPES
        from shared.runtime import Consumer

        def consumer(name: str, types: dict[str, Any], handler: Any) -> Consumer:
            return Consumer(name, types, handler, self.audit, self.config.max_message_age_seconds)

        consumers = {
            topology.ORCHESTRATOR_FUNCTION: consumer(
                topology.ORCHESTRATOR_FUNCTION,
                MESSAGE_TYPES,
                self.orchestrator(),
            )
        }
        for agent in topology.AGENTS:
            consumers[agent.entry_point] = consumer(agent.entry_point, {agent.topic: AgentTask},
                                                    self.agent_runner(agent.name))
        return consumers


def _policy_for(client: Any, repository: str) -> Any:
    """The repository's policy as an agent reads it; unreadable means the safe policy."""
    from shared import policy as policies
    from shared.errors import PermanentError

    try:
        return policies.fetch_policy(client, repository)
    except PermanentError as exc:
        return policies.unreadable(exc)


_services: Services | None = None
_services_lock = threading.Lock()


def services() -> Services:
    """The instance's services, built from the environment on first use."""
    global _services
    if _services is None:
        with _services_lock:
            if _services is None:
                config = Config.from_env()
                logsetup.setup(config.log_level)
                _services = Services(config)
    return _services
