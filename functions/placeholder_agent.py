"""A placeholder for agents not built yet: it acknowledges the task and says so on agent-results.

The plumbing is real: the task arrives by push, is validated, and a schema-checked result is
published that the orchestrator records on the task, so nothing waits silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone

from shared import topology
from shared.errors import InvalidInput
from shared.messages import AgentTask, AgentTaskResult
from shared.ports import Publisher
from shared.runtime import Envelope


class PlaceholderAgent:
    def __init__(
        self,
        agent: str,
        publisher: Callable[[], Publisher],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.agent = agent
        self._publisher = publisher
        self._clock = clock

    def __call__(self, envelope: Envelope) -> None:
        task = envelope.message
        if not isinstance(task, AgentTask) or task.agent != self.agent:
            raise InvalidInput(f"agent {self.agent} received a task for {getattr(task, 'agent', '?')}")
        result = AgentTaskResult(
            task_id=task.task_id,
            agent=self.agent,
            attempt=task.attempt,
            status="not_implemented",
            summary=f"the {self.agent} agent cannot do {task.kind} yet",
            details=json.dumps({"kind": task.kind, "subject": task.subject}),
            finished_at=int(self._clock().timestamp() * 1000),
        )
        self._publisher().publish(topology.AGENT_RESULTS, result.encode(), result.attributes())
