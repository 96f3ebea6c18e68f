"""`TaskContext.dry_run`: what the runner knows of the deployment's dry-run, read-only, False by default."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import topology
from shared.agent_runtime import SUCCEEDED, AgentRunner, Links, Outcome, TaskContext
from shared.messages import AgentTask
from shared.runtime import Envelope
from tests.support.agents import ListPublisher, MemoryAudit, NoStops

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TASK = AgentTask(task_id="t-1", kind="scan_repos", agent="scout", attempt=1, repository="", installation_id=0,
                 subject="tick", source="schedule", created_at=0, inputs=json.dumps({}))


def _context(**options: Any) -> TaskContext:
    return TaskContext(TASK, client=lambda: None, executor=None, policy=lambda: None,  # type: ignore[arg-type]
                       publisher=lambda: None, links=Links(), delivery_id="d-1", clock=lambda: NOW, **options)


def test_a_context_built_without_it_is_not_a_dry_run():
    assert _context().dry_run is False
    assert _context(dry_run=True).dry_run is True
    with pytest.raises(AttributeError):
        _context().dry_run = True  # type: ignore[misc]


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_runner_tells_the_turn_whether_it_runs_dry(dry_run):
    seen: list[bool] = []

    class Probe:
        name = "scout"

        def handle(self, ctx: TaskContext) -> Outcome:
            seen.append(ctx.dry_run)
            return Outcome(SUCCEEDED, "looked")

        def on_failure(self, ctx: TaskContext, summary: str) -> None:
            return None

    publisher = ListPublisher()
    runner = AgentRunner(Probe(), publisher=lambda: publisher, tasks=lambda: NoStops(),
                         audit=lambda: MemoryAudit(), github=lambda: object(),
                         policy_for=lambda client, repository: None, links=Links(), dry_run=dry_run,
                         clock=lambda: NOW)
    runner(Envelope(topology.AGENTS_BY_NAME["scout"].topic, "m-1", NOW, TASK.attributes(), TASK))
    assert seen == [dry_run] and [r.status for r in publisher.results] == [SUCCEEDED]
