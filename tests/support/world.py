"""The whole system in one process, on the emulators and both sandboxes, with a clock the test turns.

`World` runs the real webhook, orchestrator and agents (`shared.bootstrap.Services`) against the
Pub/Sub and Firestore emulators, the GitHub sandbox (seeded with the demo organisation, its
webhooks going to the real webhook handler) and the App Engine sandbox. Messages travel through
the emulator's topics; `pump()` pulls them from a subscription per consumer and hands each to its
consumer as Pub/Sub's push would, retrying what raised a retryable error, until nothing moves.

Time is the test's: every component reads `world.clock`, the App Engine sandbox counts requests on
the same clock, and `tick("monitor")` is Cloud Scheduler's minute tick at the clock's time. So a
15-minute watch window takes as long as the test needs to advance the clock, not 15 minutes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.appengine.control import AppEngineControl
from sandbox.appengine.server import AppEngineSandbox
from sandbox.github import seed
from sandbox.github.server import GitHubSandbox, generate_app_key
from shared import bootstrap, topology
from shared.config import Config
from shared.errors import PermanentError, RetryableError
from shared.local.provision import PubSubAdmin, provision
from shared.messages import ScheduleTick
from shared.runtime import Envelope
from tests.support.push import serve

REPO = "octo/widgets"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Pending:
    topic: str
    message: Any
    tries: int = 0


@dataclass
class World:
    services: bootstrap.Services
    github: GitHubSandbox
    appengine: AppEngineSandbox
    control: AppEngineControl
    admin: PubSubAdmin
    clock: Clock
    handled: list[tuple[str, str]] = field(default_factory=list)  # (consumer, message type)
    retries: list[Pending] = field(default_factory=list)
    fail_next: dict[str, Callable[[Envelope], bool]] = field(default_factory=dict)

    def consumers(self) -> Mapping[str, tuple[str, Callable[[Envelope], None], dict[str, Any]]]:
        """subscription -> (topic, handler, message types)."""
        from functions.orchestrator.handler import MESSAGE_TYPES
        from shared.messages import AgentTask

        routes: dict[str, tuple[str, Callable[[Envelope], None], dict[str, Any]]] = {}
        for topic, message_type in MESSAGE_TYPES.items():
            routes[f"world-{topic}"] = (topic, self.services.orchestrator(), {topic: message_type})
        for agent in topology.AGENTS:
            if agent.name in ("deploy", "monitor", "test", "qa", "scout"):
                routes[f"world-{agent.topic}"] = (agent.topic, self.services.agent_runner(agent.name),
                                                  {agent.topic: AgentTask})
        return routes

    def tick(self, job: str = "monitor") -> None:
        message = ScheduleTick(job)
        self.services.publisher().publish(topology.SCHEDULE_TICKS, message.encode(), {"job": job})

    def pump(self, settle: float = 0.3, timeout: float = 60.0) -> int:
        """Deliver messages until none arrives for `settle` seconds; returns how many were handled."""
        self.github.wait_for_deliveries(10)
        routes = self._routes
        count = 0
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            moved = False
            retries, self.retries = self.retries, []
            for pending in retries:
                moved = True
                self._deliver(*pending.message, tries=pending.tries)
            for subscription, (topic, handler, types) in routes.items():
                for received in self.admin.pull_and_ack(subscription, timeout=0.2):
                    moved = True
                    count += 1
                    self._deliver(subscription, topic, handler, types, received)
            self.github.wait_for_deliveries(10)
            if moved:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return count
        raise AssertionError(f"messages kept moving for {timeout}s; retries: {len(self.retries)}")

    def _deliver(self, subscription: str, topic: str, handler: Callable[[Envelope], None],
                 types: dict[str, Any], message: Any, tries: int = 0) -> None:
        envelope = Envelope(topic, str(message.message_id), self.clock(), dict(message.attributes),
                            types[topic].decode(bytes(message.data)))
        crash = self.fail_next.get(subscription)
        try:
            if crash is not None and crash(envelope):
                self.fail_next.pop(subscription)
                raise RetryableError("the test crashed this delivery")  # a crash: Pub/Sub redelivers
            handler(envelope)
            self.handled.append((subscription, type(envelope.message).__name__))
        except PermanentError:
            self.handled.append((subscription, "dropped"))
        except RetryableError:
            if tries > 20:
                raise
            self.retries.append(Pending(topic, (subscription, topic, handler, types, message), tries + 1))

    @property
    def _routes(self) -> Mapping[str, tuple[str, Callable[[Envelope], None], dict[str, Any]]]:
        if not hasattr(self, "_route_cache"):
            self._route_cache = self.consumers()
            for subscription, (topic, _handler, _types) in self._route_cache.items():
                self.admin.create_pull_subscription(subscription, topic)
        return self._route_cache

    def advance(self, **delta: float) -> datetime:
        """Move the clock on, for the functions and for the App Engine sandbox's request counts."""
        now = self.clock.advance(**delta)
        self.control.set_clock(now)
        return now

    # ---- reading what happened ---------------------------------------------------------------

    def task(self, task_id: str) -> dict[str, Any]:
        return self.services.tasks().get(task_id) or {}

    def tasks(self, agent: str = "", kind: str = "") -> list[dict[str, Any]]:
        rows = self.services.tasks().query(repository=REPO)
        return [row for row in rows if (not agent or row.get("agent") == agent)
                and (not kind or row.get("kind") == kind)]

    def releases(self) -> list[dict[str, Any]]:
        return self.services.deployments().releases(repository=REPO)

    def send_traffic(self, service: str, requests: int) -> dict[str, int]:
        """Users' requests through the service's router: split by the traffic allocation."""
        import requests as http

        url = self.control.router_url(service)
        codes: dict[str, int] = {}
        with http.Session() as session:
            for _ in range(requests):
                status = session.get(f"{url}/", timeout=5).status_code
                codes[str(status)] = codes.get(str(status), 0) + 1
        return codes


@contextlib.contextmanager
def world(env: Mapping[str, str], project: str, start: datetime | None = None,
          extra_env: Mapping[str, str] | None = None) -> Iterator[World]:
    clock = Clock(start or datetime.now(timezone.utc).replace(microsecond=0))
    key, pem = generate_app_key()
    holder: dict[str, Any] = {}
    admin = PubSubAdmin.connect(project, env["PUBSUB_EMULATOR_HOST"])
    provision(admin, endpoints={})

    def webhook(environ: dict[str, Any], start_response: Any) -> Any:
        body, status, headers = holder["services"].webhook()(Request(environ))
        return Response(body, status, headers)(environ, start_response)

    def github_app(environ: dict[str, Any], start_response: Any) -> Any:
        return holder["github"].wsgi(environ, start_response)

    with serve(github_app) as github_url, \
            serve(webhook) as webhook_url, AppEngineSandbox(app=project, operation_delay=0.0) as appengine:
        github = GitHubSandbox(key, webhook_url=webhook_url, webhook_secret=env["GITHUB_WEBHOOK_SECRET"])
        github.base_url = github_url
        holder["github"] = github
        values = {
            **env,
            "GITHUB_API_URL": github_url,
            "GITHUB_APP_ID": github.app_id,
            "GITHUB_PRIVATE_KEY": pem,
            "AGENTOPS_APPENGINE_API_URL": appengine.url,
            "AGENTOPS_MONITORING_API_URL": appengine.url,
            "AGENTOPS_DEPLOY_BACKEND": "versions",
            **dict(extra_env or {}),
        }
        config = Config.from_env(values)
        services = bootstrap.Services(config, clock=clock)
        holder["services"] = services
        control = AppEngineControl(appengine.url, app=config.project)
        control.set_clock(clock.now)
        the_world = World(services, github, appengine, control, admin, clock)
        _ = the_world._routes  # the subscriptions first: the seed's installation webhook is delivered
        seed.demo(github)
        try:
            yield the_world
        finally:
            github.close()
            admin.close()
        assert github.errors == [], github.errors
        assert appengine.errors == [], appengine.errors
