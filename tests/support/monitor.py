"""Run the monitor agent's minute ticks as production does, with a clock the test turns.

`monitor_harness()` gives the GitHub sandbox harness of `tests.support.agents` plus a `Clock`; its
`tick()` hands the real `AgentRunner` one `probe_production` task (repository "", installation 0, one
task per minute, as the orchestrator's tick route makes them), and `redeliver()` hands it the same
task again, as Pub/Sub does after a lost ack. `HealthApp` is a WSGI service whose health a test
flips; `serve` (from `tests.support.push`) puts it on a loopback port. `RecordingNotifier` stands
in for Slack with the notifier's contract: once per key, a retryable failure when told to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import topology
from shared.agent_runtime import AgentRunner, Links
from shared.bootstrap import _policy_for
from shared.errors import RetryableError
from shared.messages import AgentTask, AgentTaskResult
from shared.runtime import Envelope
from tests.support.agents import Harness, harness
from tests.support.world import Clock


class HealthApp:
    """A service with health endpoints: each path answers `status` (default: `healthy` or 503)."""

    def __init__(self) -> None:
        self.healthy = True
        self.statuses: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: Mapping[str, Any], start_response: Any) -> list[bytes]:
        path = str(environ.get("PATH_INFO") or "/")
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
        status = self.statuses.get(path, 200 if self.healthy else 503)
        body = b"ok\n" if status < 400 else b"unavailable: token=do-not-show\n"
        start_response(f"{status} {'OK' if status < 400 else 'Error'}",
                       [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())


@dataclass
class RecordingNotifier:
    sent: dict[str, str] = field(default_factory=dict)
    fail_next: int = 0

    def notify(self, key: str, text: str, actor: str, repository: str) -> bool:
        if self.fail_next:
            self.fail_next -= 1
            raise RetryableError("slack answered 503")
        if key in self.sent:
            return False
        self.sent[key] = text
        return True


@dataclass
class MonitorHarness:
    base: Harness
    clock: Clock
    deliveries: int = 0
    last_task: AgentTask | None = None

    @property
    def github(self) -> Any:
        return self.base.github

    @property
    def audit(self) -> Any:
        return self.base.audit

    def runner(self, agent: Any) -> AgentRunner:
        base = self.base
        return AgentRunner(agent, publisher=lambda: base.publisher, tasks=lambda: base.stops,
                           audit=lambda: base.audit, github=lambda: base.app, policy_for=_policy_for,
                           links=Links("https://agentops.example.com"), clock=self.clock)

    def tick(self, agent: Any) -> AgentTaskResult:
        """The scheduler's tick at the clock's minute, as the orchestrator dispatches it."""
        minute = self.clock().replace(second=0, microsecond=0)
        subject = f"tick/monitor/{minute:%Y-%m-%dT%H:%M}Z"
        task = AgentTask(task_id=f"probe-{minute:%Y%m%dT%H%M}", kind="probe_production", agent=agent.name,
                         attempt=1, repository="", installation_id=0, subject=subject, source="tick/test",
                         created_at=0, inputs=json.dumps({"job": "monitor"}))
        return self._deliver(agent, task)

    def redeliver(self, agent: Any) -> AgentTaskResult:
        """The last tick's task again (a lost ack), at whatever the clock says now."""
        assert self.last_task is not None
        return self._deliver(agent, self.last_task)

    def _deliver(self, agent: Any, task: AgentTask) -> AgentTaskResult:
        self.last_task = task
        self.deliveries += 1
        before = len(self.base.publisher.results)
        self.runner(agent)(Envelope(topology.AGENTS_BY_NAME[agent.name].topic, f"tick-msg-{self.deliveries}",
                                    self.clock(), task.attributes(), task))
        finals = [r for r in self.base.publisher.results[before:] if r.task_id == task.task_id]
        assert finals, "the tick published no result"
        return finals[-1]

    def issues(self, repository: str, label: str = "incident") -> list[dict[str, Any]]:
        """Every issue (open or closed) of the repository carrying `label`, oldest first."""
        found = []
        number = 1
        while True:
            try:
                issue = self.github.issue(repository, number)
            except KeyError:  # past the last issue
                break
            if label in issue.get("labels", []) and not issue.get("pull_request"):
                found.append(issue)
            number += 1
        return found


@contextmanager
def monitor_harness(start: datetime) -> Iterator[MonitorHarness]:
    with harness() as base:
        yield MonitorHarness(base, Clock(start))
