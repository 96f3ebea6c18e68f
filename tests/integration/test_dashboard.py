"""The dashboard over the Firestore emulator: the demo history, the figures, and no write at all."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.repo_scout import health
from shared.local import history

pytestmark = pytest.mark.emulators

NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)


def everything(client: Any) -> dict[str, Any]:
    """Every document of every collection, subcollections included, by path."""
    found: dict[str, Any] = {}

    def walk(collection: Any) -> None:
        for snapshot in collection.stream():
            found[snapshot.reference.path] = snapshot.to_dict()
            for sub in snapshot.reference.collections():
                walk(sub)

    for collection in client.collections():
        walk(collection)
    return found


@pytest.fixture
def seeded(services):
    client = services.firestore()
    history.seed(client, NOW)
    return client


def test_demo_history_is_written_by_the_stores_and_seeding_again_adds_nothing(seeded):
    before = everything(seeded)
    tasks = [doc for path, doc in before.items() if path.startswith("tasks/")]
    assert all(doc["task_id"].startswith("demo-") and history.DEMO in doc["subject"] for doc in tasks)
    assert {doc["status"] for doc in tasks} >= {"succeeded", "failed", "blocked", "queued",
                                                "waiting_approval"}
    releases = [doc for path, doc in before.items() if re.fullmatch(r"deployments/[^/]+", path)]
    assert len(releases) == len(history.RELEASES)
    assert sorted({doc["state"] for doc in releases}) == ["failed", "preflight", "rolled_back", "succeeded"]
    incidents = [doc for path, doc in before.items() if path.startswith("incidents/")]
    assert sorted(doc["closed_at"] is None for doc in incidents) == [False, False, True]
    metrics = sorted(path for path in before if re.fullmatch(r"metrics/[^/]+", path))
    assert len(metrics) == history.DAYS and metrics[-1] == "metrics/2026-11-30"
    for repository, items in history.HEALTH_FINDINGS.items():
        findings = [health.finding(repository, *item) for item in items]
        stored = before[f"repos/{repository.replace('/', ':')}"]["health"]
        assert stored["score"] == health.score(findings).score and stored["findings_open"] == len(items)
    agents = {path: doc for path, doc in before.items() if path.startswith("agents/")}
    assert agents["agents/code"]["done"] == 4 and agents["agents/code"]["failed"] == 1

    history.seed(seeded, NOW)
    after = everything(seeded)
    assert set(after) == set(before)


def test_overview_figures_match_firestore_and_nothing_is_written(seeded, function_client):
    before = everything(seeded)
    client = function_client("dashboard")
    response = client.get("/")
    assert response.status_code == 200, response.text
    page = response.get_data(as_text=True)
    open_incidents = [doc for path, doc in before.items()
                      if path.startswith("incidents/") and doc.get("closed_at") is None]
    queue = [doc for path, doc in before.items() if path.startswith("tasks/")
             and doc["status"] in ("queued", "dispatched", "running", "waiting_approval")]
    active = [doc for path, doc in before.items()
              if re.fullmatch(r"deployments/[^/]+", path) and doc["active"]]
    assert re.search(rf'data-testid="open-incidents-count">{len(open_incidents)}<', page)
    assert re.search(rf'data-testid="queue-count">{len(queue)}<', page)
    assert re.search(rf'data-testid="active-deployments-count">{len(active)}<', page)
    for repository in ("octo/widgets", "octo/gadgets"):
        score = before[f"repos/{repository.replace('/', ':')}"]["health"]["score"]
        assert re.search(rf'data-testid="repo-score" data-repo="{repository}">{score}<', page), repository
    latest = before[sorted(path for path in before if re.fullmatch(r"metrics/[^/]+", path))[-1]]
    per_day = latest["dora"]["all"]["deployment_frequency"]["per_day"]
    assert f'data-testid="kpi-deployment-frequency" data-value="{float(per_day)!r}"' in page
    for task_id in ("demo-implement-120", "demo-review-120", "demo-test-121"):
        assert f'href="/tasks/{task_id}"' in page
    assert "waiting for dependency demo-implement-120" in page

    detail = client.get("/tasks/demo-review-120").get_data(as_text=True)
    assert "demo-implement-120" in detail and 'data-testid="task-history"' in detail
    assert client.get("/audit?task=demo-review-120").status_code == 200
    assert client.post("/").status_code == 405
    assert everything(seeded) == before  # read-only: not one document changed


def test_past_the_cap_the_dashboard_keeps_the_newest_tasks_not_the_oldest(services, monkeypatch):
    from datetime import timedelta

    from functions.dashboard import reader as dashboard_reader

    client = services.firestore()
    for minute in range(6):  # the monitor's ticks, one a minute: the oldest first
        moment = NOW - timedelta(minutes=10 - minute)
        client.collection("tasks").document(f"probe-{minute}").set({
            "task_id": f"probe-{minute}", "agent": "monitor", "kind": "probe_production",
            "status": "succeeded", "updated_at": moment, "created_at": moment})
    monkeypatch.setattr(dashboard_reader, "MAX_TASKS", 3)
    snapshot = dashboard_reader.DashboardReader(client, lambda: NOW).snapshot()
    assert sorted(doc["task_id"] for doc in snapshot.recent_tasks) == ["probe-3", "probe-4", "probe-5"]
