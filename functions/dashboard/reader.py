"""What the dashboard reads from Firestore: queries only, never a write.

Every query uses an equality, `in` or single-field range filter (or orders by one field), so it needs
only Firestore's automatic single-field indexes. The overview's queries run in parallel. A Google error
becomes a RetryableError, which the handler answers with 503.

- the queue: `tasks` whose status is open (queued, dispatched, running, waiting for approval);
- the agents' counts and last results: `tasks` updated in the last `RECENT` days, and `agents/*`;
- deployments: `deployments` with `active == True`, and the newest by `started_at`;
- incidents: `incidents` with `closed_at == None`, and those opened in the last `RECENT` days;
- repo health: every `repos/*` document (its `health` field, written by the repo scout);
- KPIs: the newest `metrics/{date}` documents, by their `date` field.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from functions.dashboard import views
from shared.errors import RetryableError
from shared.task_store import where

RECENT = timedelta(days=30)
MAX_TASKS = 2000
MAX_QUEUE = 500
MAX_DEPLOYMENTS = 20
MAX_REPOS = 500
MAX_AUDIT = 500


def _google_errors() -> tuple[type[BaseException], ...]:
    from google.api_core.exceptions import GoogleAPIError

    return (GoogleAPIError,)


def _docs(query: Any) -> list[dict[str, Any]]:
    return [snapshot.to_dict() or {} for snapshot in query.stream()]


def _docs_with_id(query: Any) -> list[dict[str, Any]]:
    return [{**(snapshot.to_dict() or {}), "id": snapshot.id} for snapshot in query.stream()]


class DashboardReader:
    def __init__(self, client: Any, clock: Callable[[], datetime]) -> None:
        self._client = client
        self._clock = clock

    def _collection(self, name: str) -> Any:
        return self._client.collection(name)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _google_errors() as exc:
            raise RetryableError(f"read {what}: {exc}") from exc

    def snapshot(self) -> views.Snapshot:
        from google.cloud import firestore

        now = self._clock()
        since = now - RECENT
        reads: dict[str, Callable[[], Any]] = {
            "agents": lambda: _docs(self._collection("agents")),
            "control": lambda: self._collection("control").document("global").get().to_dict() or {},
            "queue": lambda: _docs(where(self._collection("tasks"), "status", "in",
                                           list(views.OPEN_STATUSES)).limit(MAX_QUEUE)),
            # The newest first: the monitor's minute ticks alone are 1,440 tasks a day, so the cap is
            # reached within days, and what it keeps must be the latest.
            "recent_tasks": lambda: _docs(where(self._collection("tasks"), "updated_at", ">=", since)
                                          .order_by("updated_at", direction=firestore.Query.DESCENDING)
                                          .limit(MAX_TASKS)),
            "active_deployments": lambda: _docs_with_id(where(self._collection("deployments"),
                                                                "active", "==", True)),
            "recent_deployments": lambda: _docs_with_id(
                self._collection("deployments").order_by("started_at", direction=firestore.Query.DESCENDING)
                .limit(MAX_DEPLOYMENTS)),
            "open_incidents": lambda: _docs(where(self._collection("incidents"), "closed_at", "==", None)),
            "recent_incidents": lambda: _docs(where(self._collection("incidents"), "opened_at", ">=",
                                                      since)),
            "repos": lambda: _docs_with_id(self._collection("repos").limit(MAX_REPOS)),
            "metrics": lambda: _docs(self._collection("metrics").order_by(
                "date", direction=firestore.Query.DESCENDING).limit(views.TREND_DAYS)),
        }
        with ThreadPoolExecutor(max_workers=5) as pool:
            futures = {name: pool.submit(self._call, name, read) for name, read in reads.items()}
            values = {name: future.result() for name, future in futures.items()}
        return views.Snapshot(now=now, **values)

    def task(self, task_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The task, and the tasks it depends on or that depend on it."""
        tasks = self._collection("tasks")
        task = self._call(f"task {task_id}", lambda: tasks.document(task_id).get().to_dict())
        if not task:
            return None, []
        related: list[dict[str, Any]] = []
        for dependency in [str(dep) for dep in task.get("depends_on") or []][:50]:
            doc = self._call(f"task {dependency}", lambda dep=dependency: tasks.document(dep).get().to_dict())
            related.append(doc or {"task_id": dependency, "status": "unknown"})
        related += self._call("dependent tasks", lambda: _docs(
            where(tasks, "depends_on", "array_contains", task_id).limit(50)))
        return task, related

    def audit(self, task_id: str) -> list[dict[str, Any]]:
        from shared.audit import task_trail

        return self._call(f"audit trail of {task_id}", lambda: task_trail(self._client, task_id, MAX_AUDIT))

    def now(self) -> datetime:
        return self._clock()
