"""Releases in Firestore `deployments/{id}`: the state machine's state and its outbox of actions.

A decision of `release.next_step` is written in one transaction together with the actions it asks
for (`pending`) and a sequence number (`seq`). The shell then runs the actions in order and marks
each one done (`done`). A crash between two actions leaves the rest pending: the next turn (a
redelivery, the next monitor tick) runs them before it looks at anything new. Each action is
idempotent (keyed GitHub writes, App Engine calls that set a state), so running one again after a
crash that hid its success is harmless.

Fields are plain Firestore values: times are timestamps, the timeline is a list of maps, a traffic
split is a map of version to share. `active` is true while the release can still change traffic
(anything but an ended release), which is what the monitor and pre-flight query.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from functions.deploy_agent import release as rel
from functions.deploy_agent.canary import DeployPlan
from shared.policy import SmokeCheck
from shared.task_store import DocumentStore, where

COLLECTION = "deployments"
# Releases that ended; a succeeded one stays active for a while, so /rollback still finds it.
ENDED = frozenset({rel.ROLLED_BACK, rel.FAILED, rel.CANCELLED, rel.SUCCEEDED})

ACTION_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    rel.CreateGitHubDeployment, rel.SetDeploymentStatus, rel.StartBuild, rel.RunSmoke, rel.SetTraffic,
    rel.Rollback, rel.OpenIncident, rel.Notify, rel.DeleteVersions, rel.Wait)}


# ---- (de)serialising -------------------------------------------------------------------------


def _smoke_doc(check: SmokeCheck) -> dict[str, Any]:
    return {"path": check.path, "status": check.status, "max_latency_ms": check.max_latency_ms}


def _smoke(doc: Mapping[str, Any]) -> SmokeCheck:
    return SmokeCheck(str(doc["path"]), int(doc.get("status", 200)), int(doc.get("max_latency_ms", 1000)))


def action_doc(action: rel.Action) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": type(action).__name__}
    for item in dataclasses.fields(action):
        value = getattr(action, item.name)
        if item.name == "checks":
            value = [_smoke_doc(check) for check in value]
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        doc[item.name] = value
    return doc


def action_from_doc(doc: Mapping[str, Any]) -> rel.Action:
    kind = ACTION_TYPES[str(doc["type"])]
    values: dict[str, Any] = {}
    for item in dataclasses.fields(kind):
        value = doc.get(item.name)
        if item.name == "checks":
            value = tuple(_smoke(check) for check in value or ())
        elif item.name == "versions":
            value = tuple(value or ())
        elif item.name == "split":
            value = {str(key): float(share) for key, share in (value or {}).items()}
        values[item.name] = value
    return kind(**values)


def plan_doc(plan: DeployPlan) -> dict[str, Any]:
    doc = dataclasses.asdict(plan)
    doc["smoke"] = [_smoke_doc(check) for check in plan.smoke]
    doc["canary_steps"] = list(plan.canary_steps)
    return doc


def plan_from_doc(doc: Mapping[str, Any]) -> DeployPlan:
    known = {item.name for item in dataclasses.fields(DeployPlan)}
    values = {key: value for key, value in doc.items() if key in known}
    values["smoke"] = tuple(_smoke(check) for check in doc.get("smoke") or ())
    values["canary_steps"] = tuple(int(step) for step in doc.get("canary_steps") or (100,))
    return DeployPlan(**values)


def release_doc(release: rel.Release) -> dict[str, Any]:
    doc = dataclasses.asdict(release)
    doc["timeline"] = [{"at": entry.at, "step": entry.step, "what": entry.what,
                        "metrics": dict(entry.metrics), "decision": entry.decision}
                       for entry in release.timeline]
    doc["reasons"] = list(release.reasons)
    doc["active"] = release.state not in ENDED
    return doc


def release_from_doc(doc: Mapping[str, Any]) -> rel.Release:
    known = {item.name for item in dataclasses.fields(rel.Release)}
    values = {key: value for key, value in doc.items() if key in known}
    values["timeline"] = tuple(rel.TimelineEntry(entry["at"], entry["step"], entry["what"],
                                                 dict(entry.get("metrics") or {}), entry["decision"])
                               for entry in doc.get("timeline") or ())
    values["reasons"] = tuple(doc.get("reasons") or ())
    return rel.Release(**values)


# ---- the store -------------------------------------------------------------------------------


class DeployStore(DocumentStore):
    def _ref(self, release_id: str) -> Any:
        return self._client.collection(COLLECTION).document(release_id)

    def get(self, release_id: str) -> dict[str, Any] | None:
        snapshot = self._call(f"read release {release_id}", self._ref(release_id).get)
        return snapshot.to_dict() if snapshot.exists else None

    def create(self, release: rel.Release, plan: DeployPlan, **extra: Any) -> dict[str, Any]:
        """The release's document, written once: a second turn that races here gets the first one's."""
        ref = self._ref(release.id)

        def create(transaction: Any) -> dict[str, Any]:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists:
                return snapshot.to_dict()
            doc = {**release_doc(release), "plan": plan_doc(plan), "seq": 0, "pending": [], "done": 0,
                   "created_at": release.started_at, "updated_at": release.started_at, **extra}
            transaction.set(ref, doc)
            return doc

        return self._run(create)

    def commit(self, release_id: str, seq: int, release: rel.Release, actions: Sequence[rel.Action],
               now: datetime) -> dict[str, Any] | None:
        """Write a decision and its actions, if the document is still at `seq` with nothing pending.

        None means another turn got there first: the caller reads the document again.
        """
        ref = self._ref(release_id)

        def commit(transaction: Any) -> dict[str, Any] | None:
            snapshot = ref.get(transaction=transaction)
            doc = snapshot.to_dict() if snapshot.exists else None
            if doc is None or int(doc.get("seq") or 0) != seq or _pending(doc):
                return None
            changes = {**release_doc(release), "seq": seq + 1, "pending": [action_doc(a) for a in actions],
                       "done": 0, "updated_at": now}
            transaction.update(ref, changes)
            return {**doc, **changes}

        return self._run(commit)

    def mark_done(self, release_id: str, seq: int, index: int, now: datetime,
                  **facts: Any) -> None:
        """Action `index` of decision `seq` is done; `facts` (a deployment id, a build id) are kept."""
        ref = self._ref(release_id)

        def mark(transaction: Any) -> None:
            snapshot = ref.get(transaction=transaction)
            doc = snapshot.to_dict() if snapshot.exists else {}
            if int(doc.get("seq") or 0) != seq or int(doc.get("done") or 0) > index:
                return
            transaction.update(ref, {"done": index + 1, "updated_at": now, **facts})

        self._run(mark)

    def update(self, release_id: str, **fields: Any) -> None:
        self._call(f"update release {release_id}", lambda: self._ref(release_id).update(fields))

    def running_for(self, service: str, exclude: str = "") -> str:
        """Another release of the service past pre-flight and not ended, or "".

        One still in pre-flight has built nothing and moved no traffic, so it holds nothing up (and
        one whose task died there cannot block the service).
        """
        releases = where(self._client.collection(COLLECTION), "service", "==", service)
        query = where(releases, "active", "==", True)
        for snapshot in self._call("find running releases", lambda: list(query.stream())):
            if snapshot.id != exclude and (snapshot.to_dict() or {}).get("state") != rel.PREFLIGHT:
                return snapshot.id
        return ""

    def active_for_task(self, task_id: str) -> dict[str, Any] | None:
        """The release a task created and has not ended, found when its turn died before saying so."""
        mine = where(self._client.collection(COLLECTION), "task_id", "==", task_id)
        query = where(mine, "active", "==", True)
        snapshots = self._call("find the task's release", lambda: list(query.stream()))
        docs = [snapshot.to_dict() for snapshot in snapshots]
        return max(docs, key=lambda doc: doc.get("created_at"), default=None)

    def releases(self, repository: str = "", service: str = "", limit: int = 20) -> list[dict[str, Any]]:
        """The most recent releases, newest first, of a repository and/or service."""
        query = self._client.collection(COLLECTION)
        if repository:
            query = where(query, "repository", "==", repository)
        if service:
            query = where(query, "service", "==", service)
        docs = [snapshot.to_dict() for snapshot in self._call("list releases", lambda: list(query.stream()))]
        docs.sort(key=lambda doc: doc.get("started_at") or doc.get("created_at"), reverse=True)
        return docs[:limit]


def _pending(doc: Mapping[str, Any]) -> bool:
    return int(doc.get("done") or 0) < len(doc.get("pending") or [])


def pending_actions(doc: Mapping[str, Any]) -> list[tuple[int, rel.Action]]:
    """The actions of the last decision that are not done yet, with their index."""
    done = int(doc.get("done") or 0)
    return [(index, action_from_doc(item)) for index, item in enumerate(doc.get("pending") or [])
            if index >= done]
