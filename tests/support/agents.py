"""Run one agent's turns against an in-process GitHub sandbox, as the runner does in production.

The agent gets the real `AgentRunner`: a GitHub App client scoped to its permissions, the real
executor (with an in-memory audit trail), and the real policy read. Results it publishes are kept
so a test can read them, and the checkpoint of one turn is fed to the next, as the orchestrator
does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sandbox.github import seed
from sandbox.github.server import GitHubSandbox, generate_app_key
from shared import topology
from shared.agent_runtime import AgentRunner, Links
from shared.bootstrap import _policy_for
from shared.github.app import GitHubApp
from shared.messages import AgentTask, AgentTaskResult
from shared.runtime import Envelope
from tests.support.push import serve

REPO = "octo/widgets"


class MemoryAudit:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def has(self, key: str) -> bool:
        return key in self.records

    def record(self, key: str, **facts: Any) -> None:
        self.records.setdefault(key, facts)

    def actions(self, actor: str | None = None) -> list[str]:
        return [r["action"] for r in self.records.values() if actor is None or r.get("actor") == actor]


class ListPublisher:
    def __init__(self) -> None:
        self.results: list[AgentTaskResult] = []

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        assert topic == topology.AGENT_RESULTS
        self.results.append(AgentTaskResult.decode(data))
        return f"m-{len(self.results)}"


@dataclass
class NoStops:
    stops: dict[str, str] = field(default_factory=dict)

    def stop_reason(self, agent: str, repository: str, number: int = 0) -> str:
        return self.stops.get(str(number), "")

    def claim_turn(self, task_id: str, holder: str, now: Any, ttl: Any) -> bool:
        return True

    def release_turn(self, task_id: str, holder: str) -> None:
        return None


@dataclass
class Harness:
    github: GitHubSandbox
    app: GitHubApp
    audit: MemoryAudit
    publisher: ListPublisher
    stops: NoStops
    turns: int = 0

    def runner(self, agent: Any) -> AgentRunner:
        return AgentRunner(agent, publisher=lambda: self.publisher, tasks=lambda: self.stops,
                           audit=lambda: self.audit, github=lambda: self.app, policy_for=_policy_for,
                           links=Links("https://agentops.example.com"))

    def turn(self, agent: Any, kind: str, inputs: Mapping[str, Any], task_id: str = "task-1",
             attempt: int = 1, wake: Mapping[str, Any] | None = None,
             approval: Mapping[str, Any] | None = None) -> AgentTaskResult:
        """One turn of the task; the last result's checkpoint goes into this turn's inputs."""
        values = dict(inputs)
        last = self.last(task_id)
        if last is not None:
            checkpoint = last.detail_values().get("checkpoint")
            if checkpoint:
                values["checkpoint"] = checkpoint
        if wake:
            values["wake"] = dict(wake)
        if approval:
            values["approval"] = dict(approval)
        task = AgentTask(task_id=task_id, kind=kind, agent=agent.name, attempt=attempt, repository=REPO,
                         installation_id=77, subject=f"test/{task_id}", source="test", created_at=0,
                         inputs=json.dumps(values))
        self.turns += 1
        before = len(self.publisher.results)
        self.runner(agent)(Envelope(topology.AGENTS_BY_NAME[agent.name].topic, f"msg-{self.turns}",
                                    datetime.now(timezone.utc), task.attributes(), task))
        self.github.wait_for_deliveries(10)
        finals = [r for r in self.publisher.results[before:] if r.task_id == task_id]
        assert finals, "the turn published no result"
        return finals[-1]

    def last(self, task_id: str) -> AgentTaskResult | None:
        mine = [r for r in self.publisher.results if r.task_id == task_id]
        return mine[-1] if mine else None


@contextmanager
def harness() -> Iterator[Harness]:
    key, pem = generate_app_key()
    holder: dict[str, GitHubSandbox] = {}
    with serve(lambda environ, start_response: holder["sandbox"].wsgi(environ, start_response)) as url:
        sandbox = GitHubSandbox(key, webhook_url="")
        sandbox.base_url = url
        holder["sandbox"] = sandbox
        seed.demo(sandbox)
        app = GitHubApp(url, sandbox.app_id, lambda: pem)
        try:
            yield Harness(sandbox, app, MemoryAudit(), ListPublisher(), NoStops())
        finally:
            sandbox.close()
        assert sandbox.errors == [], sandbox.errors
