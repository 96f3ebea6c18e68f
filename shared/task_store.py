"""The orchestrator's state in Firestore: tasks, the control flags, repo holds and budgets, agents.

- `tasks/{id}`: one task, its status, attempts, dependencies, what it waits on and its history.
- `control/global`: the kill switch and paused agents. It is read by every dispatch and written
  only by a pause or resume, so it is never a write hot spot.
- `control/usage-<day>`: the global budget's use that UTC day (increments, read only when a
  global budget is set); `control/slot-<slot>`: which tasks hold a concurrency slot such as
  `code:<repo>` or `deploy:<service>`, read only by tasks that take that slot.
- `repos/{owner:name}`: a repo-wide pause, holds per issue or PR number, the repo budget's use.
- `agents/{name}`: state, heartbeat, current task and counters.

Every change of a task's status is one transaction that also reads whatever decides it, so two
deliveries racing for the same task see the same facts, and only one of them dispatches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from functions.orchestrator import lifecycle
from functions.orchestrator.lifecycle import Gate, GateFacts, Usage
from shared.errors import RetryableError
from shared.ports import Dispatch, TaskSpec

TASKS = "tasks"
TURNS = "turns"  # tasks/{id}/turns/lease: the agent turn in progress
CONTROL = "control"
GLOBAL = "global"
REPOS = "repos"
AGENTS = "agents"

DISPATCH_LEASE = timedelta(seconds=60)
PAGE = 200
MAX_HISTORY = 100  # a task's history keeps its first entries and its latest ones


def repo_doc_id(full_name: str) -> str:
    return full_name.replace("/", ":")


def _google_errors() -> tuple[type[BaseException], ...]:
    from google.api_core.exceptions import GoogleAPIError

    return (GoogleAPIError,)


@dataclass(frozen=True)
class DispatchPolicy:
    """What the repo's policy and the configuration say about one task, gathered before dispatch."""

    agent_enabled: bool = True
    disabled_reason: str = ""
    slot: str = ""
    slot_limit: int | None = None
    repo_daily_tasks: int | None = None
    repo_daily_cost: float | None = None
    global_daily_tasks: int | None = None
    global_daily_cost: float | None = None
    approval_step: str = ""
    approval_rule: Mapping[str, Any] = field(default_factory=dict)
    deadline: timedelta | None = None
    exempt_from_pause: bool = False
    unavailable: str = ""  # the policy could not be read: wait, deciding nothing


@dataclass(frozen=True)
class Begun:
    outcome: Dispatch | str  # a Dispatch, or "wait" / "approval" / "block" from the gate
    attempt: int
    gate: Gate
    task: Mapping[str, Any]


@dataclass(frozen=True)
class Changed:
    """The result of one task transition: whether it applied, and the task before and after."""

    applied: bool
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    released_slot: str = ""
    left_active: bool = False
    heartbeat: bool = False


def _history(data: Mapping[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    history = list(data.get("history") or [])
    history.append(entry)
    if len(history) > MAX_HISTORY:
        history = history[:10] + history[-(MAX_HISTORY - 10):]
    return history


def run_transaction(client: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(transaction, *args)` in a Firestore transaction; Google's failures become retryable."""
    from google.cloud import firestore

    try:
        return firestore.transactional(fn)(client.transaction(max_attempts=10), *args)
    except _google_errors() as exc:
        raise RetryableError(f"firestore transaction {fn.__name__} failed: {exc}") from exc
    except ValueError as exc:
        if not isinstance(exc.__cause__, _google_errors()):
            raise
        # The client gives up on a contended transaction with a ValueError.
        raise RetryableError(f"firestore transaction {fn.__name__} contended: {exc}") from exc


def where(query: Any, field: str, op: str, value: Any) -> Any:
    """`query` filtered on one field, in the keyword form the Firestore client wants."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    return query.where(filter=FieldFilter(field, op, value))


class DocumentStore:
    """An agent's store over one Firestore client: its transactions and reads fail retryably."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return run_transaction(self._client, fn, *args)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _google_errors() as exc:
            raise RetryableError(f"{what}: {exc}") from exc


def merge_checkpoint(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """`new` over `old`, mappings merged key by key; a key is removed only by setting it to None."""
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_checkpoint(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _merged_checkpoint(task: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The task's checkpoint with `new` merged in, not replaced: a turn that knew less (an earlier
    turn whose result came in late) must not erase what another recorded."""
    return checkpoint(merge_checkpoint(task.get("checkpoint") or {}, new))


MAX_CHECKPOINT_BYTES = 16 * 1024


def checkpoint(value: Mapping[str, Any]) -> dict[str, Any]:
    """What an agent keeps between its turns on one task (a run id, a branch): small, plain data.

    It comes back to the agent in the inputs of its next dispatch or wake. One that is too big is
    replaced by a note (the agent then starts over from GitHub's state) rather than bloating the task.
    """
    encoded = json.dumps(value, default=str, separators=(",", ":"))
    if len(encoded.encode()) > MAX_CHECKPOINT_BYTES:
        return {"dropped": f"a checkpoint of {len(encoded)} bytes; the limit is {MAX_CHECKPOINT_BYTES}"}
    return json.loads(encoded)


def cost_units(details: Mapping[str, Any]) -> float:
    """The cost an agent reports in a result's details: a number, or {"units": n, ...}."""
    cost = details.get("cost")
    if isinstance(cost, Mapping):
        cost = cost.get("units")
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
        return 0.0
    return float(cost)


class FirestoreTasks:
    def __init__(self, client: Any) -> None:
        self._client = client

    # ---- references and small helpers ----------------------------------------------------

    def _task(self, task_id: str) -> Any:
        return self._client.collection(TASKS).document(task_id)

    def _control(self) -> Any:
        return self._client.collection(CONTROL).document(GLOBAL)

    def _repo(self, repository: str) -> Any:
        return self._client.collection(REPOS).document(repo_doc_id(repository))

    def _agent(self, name: str) -> Any:
        return self._client.collection(AGENTS).document(name)

    def _usage(self, day: str) -> Any:
        return self._client.collection(CONTROL).document(f"usage-{day}")

    def _slot(self, slot: str) -> Any:
        return self._client.collection(CONTROL).document("slot-" + slot.replace("/", ":"))

    def global_usage(self, day: str) -> Usage:
        doc = self._read(f"usage {day}", lambda: self._usage(day).get().to_dict() or {})
        return Usage(day, int(doc.get("tasks") or 0), float(doc.get("cost") or 0.0))

    def slot_holders(self, slot: str) -> list[str]:
        doc = self._read(f"slot {slot}", lambda: self._slot(slot).get().to_dict() or {})
        return list(doc.get("holders") or [])

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return run_transaction(self._client, fn, *args)

    def _read(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _google_errors() as exc:
            raise RetryableError(f"read {what}: {exc}") from exc

    # ---- one turn of a task at a time ------------------------------------------------------

    def _lease(self, task_id: str) -> Any:
        return self._task(task_id).collection(TURNS).document("lease")

    def claim_turn(self, task_id: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take the task's turn lease for `holder` (a message id); False while another holds it.

        Two events can wake one task at once; without this, two turns would each see no review and
        each submit one. A lease left by a crashed turn expires after `ttl`.
        """
        return self._run(self._claim_turn, task_id, holder, now, ttl)

    def _claim_turn(self, transaction: Any, task_id: str, holder: str, now: datetime,
                    ttl: timedelta) -> bool:
        ref = self._lease(task_id)
        lease = ref.get(transaction=transaction).to_dict() or {}
        until = lease.get("until")
        if lease.get("holder") not in (None, holder) and isinstance(until, datetime) and until > now:
            return False
        transaction.set(ref, {"holder": holder, "until": now + ttl, "taken_at": now})
        return True

    def release_turn(self, task_id: str, holder: str) -> None:
        self._run(self._release_turn, task_id, holder)

    def _release_turn(self, transaction: Any, task_id: str, holder: str) -> None:
        ref = self._lease(task_id)
        if (ref.get(transaction=transaction).to_dict() or {}).get("holder") == holder:
            transaction.delete(ref)

    def stop_reason(self, agent: str, repository: str, number: int = 0) -> str:
        """Why work of `agent` on `repository` (#`number`) must not go on now, or "".

        The kill switch, a paused agent, a paused repository or a hold on the issue or PR.
        """
        control = self.control()
        if control.get("paused"):
            return "all agents are paused"
        if agent in (control.get("agents_paused") or {}):
            return f"the {agent} agent is paused"
        if repository:
            state = self.repo_state(repository)
            if state.get("paused"):
                return f"agents are paused in {repository}"
            if number and str(number) in (state.get("holds") or {}):
                return f"#{number} is on hold"
        return ""

    def get(self, task_id: str) -> dict[str, Any] | None:
        return self._read(f"task {task_id}", lambda: self._task(task_id).get().to_dict())

    def control(self) -> dict[str, Any]:
        return self._read("control/global", lambda: self._control().get().to_dict() or {})

    def repo_state(self, repository: str) -> dict[str, Any]:
        return self._read(f"repo {repository}", lambda: self._repo(repository).get().to_dict() or {})

    def agent(self, name: str) -> dict[str, Any]:
        return self._read(f"agent {name}", lambda: self._agent(name).get().to_dict() or {})

    def query(self, *, repository: str | None = None, status: str | None = None,
              statuses: Sequence[str] | None = None, number: int | None = None,
              waits_for: str | None = None, agent: str | None = None,
              limit: int = 2000) -> list[dict[str, Any]]:
        """Tasks matching every given filter, in pages by document id, at most `limit`.

        Equality filters and ordering by id need only Firestore's single-field indexes.
        """
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._client.collection(TASKS)
        for name, op, value in (("repository", "==", repository), ("status", "==", status),
                                ("status", "in", list(statuses) if statuses else None),
                                ("number", "==", number), ("waits_for", "array_contains", waits_for),
                                ("agent", "==", agent)):
            if value is not None:
                query = query.where(filter=FieldFilter(name, op, value))
        query = query.order_by("__name__")

        def pages() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            last = None
            while len(found) < limit:
                page = query.start_after(last) if last is not None else query
                snapshots = list(page.limit(min(PAGE, limit - len(found))).stream())
                found.extend(snapshot.to_dict() for snapshot in snapshots)
                if len(snapshots) < PAGE:
                    break
                last = snapshots[-1]
            return found

        return self._read("tasks", pages)

    # ---- dispatch --------------------------------------------------------------------------

    def begin_dispatch(self, spec: TaskSpec, policy: DispatchPolicy, now: datetime) -> Begun:
        """Create the task if new, and decide in one transaction whether it goes now."""
        return self._run(self._begin_dispatch, spec, policy, now)

    def _begin_dispatch(self, transaction: Any, spec: TaskSpec, policy: DispatchPolicy,
                        now: datetime) -> Begun:
        ref = self._task(spec.task_id)
        snapshot = ref.get(transaction=transaction)
        control = self._control().get(transaction=transaction).to_dict() or {}
        repo = (self._repo(spec.repository).get(transaction=transaction).to_dict() or {}
                if spec.repository else {})
        data = snapshot.to_dict() if snapshot.exists else None
        depends_on = list((data or {}).get("depends_on") or spec.inputs.get("depends_on") or [])
        dependencies = {}
        for dependency in depends_on:
            dep = self._task(dependency).get(transaction=transaction).to_dict() or {}
            dependencies[dependency] = str(dep.get("status") or "")
        day = lifecycle.budget_day(now)
        holders = (list((self._slot(policy.slot).get(transaction=transaction).to_dict() or {}).get("holders")
                        or []) if policy.slot else [])
        global_limited = policy.global_daily_tasks is not None or policy.global_daily_cost is not None
        used = (self._usage(day).get(transaction=transaction).to_dict() or {}
                if global_limited and spec.repository else {})
        if data is None:
            data = _new_task(spec, depends_on, now)
            transaction.create(ref, data)
            data = dict(data)
            created = True
        else:
            created = False
        attempt = int(data.get("attempt", 1))
        if data.get("status") != lifecycle.QUEUED:
            return Begun(Dispatch.ALREADY, attempt, Gate("already"), data)
        lease = data.get("dispatch_lease_until")
        if lease and lease > now and not created:
            return Begun(Dispatch.BUSY, attempt, Gate("busy"), data)
        approval = data.get("approval") or {}
        facts = GateFacts(
            agent=spec.agent,
            repository=spec.repository,
            kind=spec.kind,
            number=int(data.get("number") or 0),
            agent_enabled=policy.agent_enabled,
            disabled_reason=policy.disabled_reason,
            global_paused=bool(control.get("paused")),
            global_pause_reason=_pause_text(control),
            agent_paused=spec.agent in (control.get("agents_paused") or {}),
            repo_paused=bool(repo.get("paused")),
            repo_pause_reason=_pause_text(repo),
            held_by=str(((repo.get("holds") or {}).get(str(data.get("number") or 0)) or {}).get("by") or "")
            if data.get("number") else "",
            dependencies=dependencies,
            slot=policy.slot,
            slot_holders=tuple(holders),
            slot_limit=policy.slot_limit,
            repo_usage=Usage.from_doc(repo.get("usage")),
            repo_daily_tasks=policy.repo_daily_tasks,
            repo_daily_cost=policy.repo_daily_cost,
            global_usage=Usage(day, int(used.get("tasks") or 0), float(used.get("cost") or 0.0)),
            global_daily_tasks=policy.global_daily_tasks,
            global_daily_cost=policy.global_daily_cost,
            approval_step=policy.approval_step,
            approved=approval.get("step") == policy.approval_step and approval.get("state") == "granted",
            exempt_from_pause=policy.exempt_from_pause,
            policy_unavailable=policy.unavailable,
        )
        decision = lifecycle.gate(facts, spec.task_id, now)
        updates: dict[str, Any] = {"updated_at": now}
        if decision.outcome == "dispatch":
            updates.update(dispatch_lease_until=now + DISPATCH_LEASE, waiting_on="", slot=policy.slot)
            if policy.slot:
                transaction.set(self._slot(policy.slot), {
                    "slot": policy.slot, "updated_at": now,
                    "holders": [h for h in holders if h != spec.task_id] + [spec.task_id]})
            if spec.repository:
                transaction.set(self._repo(spec.repository), {
                    "usage": Usage.from_doc(repo.get("usage")).on(day).plus(1).to_doc(),
                    "full_name": spec.repository,
                }, merge=True)
                _count(transaction, self._usage(day), day, tasks=1)
            transaction.update(ref, updates)
            return Begun(Dispatch.DISPATCH, attempt, decision, {**data, **updates})
        if decision.outcome == "wait":
            if data.get("waiting_on") != decision.reason:
                updates["waiting_on"] = decision.reason
                updates["history"] = _history(data, lifecycle.history_entry(
                    now, lifecycle.QUEUED, lifecycle.QUEUED, f"waiting: {decision.reason}", "orchestrator"))
            transaction.update(ref, updates)
            return Begun("wait", attempt, decision, {**data, **updates})
        target = lifecycle.WAITING_APPROVAL if decision.outcome == "approval" else lifecycle.BLOCKED
        updates.update(status=target, waiting_on=decision.reason, history=_history(
            data, lifecycle.history_entry(now, lifecycle.QUEUED, target, decision.reason, "orchestrator")))
        if decision.outcome == "approval":
            updates["approval"] = {
                "step": policy.approval_step,
                "state": "pending",
                "rule": dict(policy.approval_rule),
                "head_sha": str(spec.inputs.get("head_sha") or spec.inputs.get("merge_commit_sha") or ""),
                "pull_number": int(data.get("number") or 0),
                "requested_at": now,
                "approvers": [],
                "check_run_id": 0,
                "resume_attempt": attempt,
            }
        else:
            updates["result"] = {"status": "blocked", "summary": decision.reason, "at": now}
        transaction.update(ref, updates)
        return Begun(decision.outcome, attempt, decision, {**data, **updates})

    def finish_dispatch(self, task_id: str, message_id: str, now: datetime,
                        deadline: datetime | None = None) -> None:
        agent = self._run(self._finish_dispatch, task_id, message_id, now, deadline)
        if agent:
            from google.cloud import firestore

            # Outside the transaction and without a read: a status display must not make every
            # dispatch of one agent contend for its document.
            self._write(f"agent {agent}", lambda: self._agent(agent).set({
                "name": agent, "state": "busy", "current_task": task_id, "last_dispatch_at": now,
                "current_tasks": firestore.ArrayUnion([task_id]), "updated_at": now}, merge=True))

    def _finish_dispatch(self, transaction: Any, task_id: str, message_id: str, now: datetime,
                         deadline: datetime | None) -> str:
        ref = self._task(task_id)
        data = ref.get(transaction=transaction).to_dict() or {}
        if data.get("status") != lifecycle.QUEUED:
            return ""
        transaction.update(ref, {
            "status": lifecycle.DISPATCHED, "updated_at": now, "dispatched_at": now,
            "heartbeat_at": now, "message_id": message_id, "dispatch_lease_until": None,
            "deadline_at": deadline or lifecycle.deadline_for(str(data.get("kind")), now),
            "history": _history(data, lifecycle.history_entry(
                now, lifecycle.QUEUED, lifecycle.DISPATCHED, f"published as message {message_id}",
                "orchestrator")),
        })
        return str(data.get("agent") or "")

    def abandon_dispatch(self, task_id: str, reason: str, now: datetime) -> None:
        """A publish failed: give the lease back, free the slot and the budget it took."""
        self._run(self._abandon, task_id, reason, now)

    def _abandon(self, transaction: Any, task_id: str, reason: str, now: datetime) -> None:
        ref = self._task(task_id)
        data = ref.get(transaction=transaction).to_dict() or {}
        repository = str(data.get("repository") or "")
        repo = self._repo(repository).get(transaction=transaction).to_dict() or {} if repository else {}
        slot = self._read_slot(transaction, data)
        if data.get("status") != lifecycle.QUEUED:
            return
        transaction.update(ref, {"dispatch_lease_until": None, "last_error": reason[:500], "updated_at": now})
        self._release(transaction, data, slot, now)
        if repository:
            day = lifecycle.budget_day(now)
            transaction.set(self._repo(repository), {
                "usage": Usage.from_doc(repo.get("usage")).on(day).plus(-1).to_doc()}, merge=True)
            _count(transaction, self._usage(day), day, tasks=-1)

    # ---- results and transitions ---------------------------------------------------------

    def record_result(self, task_id: str, agent: str, attempt: int, status: str, summary: str,
                      now: datetime, details: Mapping[str, Any] | None = None) -> Changed:
        changed = self._run(self._record_result, task_id, agent, attempt, status, summary, now,
                            dict(details or {}))
        self._after(changed, now)
        return changed

    def _after(self, changed: Changed, now: datetime) -> None:
        """The agent's status document, kept after the task's transaction so it is no hot spot."""
        agent = str(changed.before.get("agent") or "")
        if not changed.applied or not agent:
            return
        if changed.heartbeat:
            self._write(f"agent {agent}", lambda: self._agent(agent).set(
                {"name": agent, "last_heartbeat": now, "updated_at": now}, merge=True))
        elif changed.left_active:
            self._run(self._agent_done, agent, changed.before, str(changed.after.get("status")), now)

    def _agent_done(self, transaction: Any, agent: str, task: Mapping[str, Any], target: str,
                    now: datetime) -> None:
        ref = self._agent(agent)
        doc = ref.get(transaction=transaction).to_dict() or {}
        transaction.set(ref, _agent_after(doc, task, target, now), merge=True)

    def _write(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except _google_errors() as exc:
            raise RetryableError(f"write {what}: {exc}") from exc

    def _read_slot(self, transaction: Any, task: Mapping[str, Any]) -> dict[str, Any]:
        slot = str(task.get("slot") or "")
        return self._slot(slot).get(transaction=transaction).to_dict() or {} if slot else {}

    def _release(self, transaction: Any, task: Mapping[str, Any], slot_doc: Mapping[str, Any],
                 now: datetime) -> bool:
        """Give the task's concurrency slot back, if it holds it. True when it did."""
        holders = list(slot_doc.get("holders") or [])
        if not task.get("slot") or task.get("task_id") not in holders:
            return False
        transaction.set(self._slot(str(task["slot"])), {
            "slot": task["slot"], "updated_at": now,
            "holders": [h for h in holders if h != task.get("task_id")]})
        return True

    def _record_result(self, transaction: Any, task_id: str, agent: str, attempt: int, status: str,
                       summary: str, now: datetime, details: dict[str, Any]) -> Changed:
        ref = self._task(task_id)
        data = ref.get(transaction=transaction).to_dict()
        if not data or data.get("agent") != agent or int(data.get("attempt", 1)) != attempt:
            return Changed(False, data or {}, data or {})
        current = str(data.get("status"))
        lease = data.get("dispatch_lease_until")
        if current == lifecycle.QUEUED and lease and lease > now:
            # The agent answered before the dispatcher marked the task dispatched: it was.
            current = lifecycle.DISPATCHED
            data = {**data, "status": current}
        target = RESULT_TO_STATE[status]
        if status == "running":
            if current not in lifecycle.ACTIVE:
                return Changed(False, data, data)
            # A heartbeat: the agent is alive; it may say what external event it now waits for.
            updates: dict[str, Any] = {"status": lifecycle.RUNNING, "heartbeat_at": now, "updated_at": now,
                                       "progress": summary[:500]}
            if isinstance(details.get("waits_for"), list):
                updates["waits_for"] = [str(key) for key in details["waits_for"]][:20]
            if isinstance(details.get("checkpoint"), Mapping):
                updates["checkpoint"] = _merged_checkpoint(data, details["checkpoint"])
            if current != lifecycle.RUNNING:
                updates["history"] = _history(data, lifecycle.history_entry(
                    now, current, lifecycle.RUNNING, summary, agent))
            transaction.update(ref, updates)
            return Changed(True, data, {**data, **updates}, heartbeat=True)
        if not lifecycle.allowed(current, target) or current == target:
            return Changed(False, data, data)
        return self._finish(transaction, data, target, summary, agent, now, details,
                            result={"status": status, "summary": summary[:2000], "at": now})

    def _finish(self, transaction: Any, data: dict[str, Any], target: str, reason: str, actor: str,
                now: datetime, details: Mapping[str, Any], result: dict[str, Any] | None = None,
                extra: Mapping[str, Any] | None = None) -> Changed:
        """Move a task to `target`, releasing what it held when it stops being active.

        Reads (control, repo, agent) happen before any write, as transactions require.
        """
        task_id = str(data["task_id"])
        current = str(data.get("status"))
        repository = str(data.get("repository") or "")
        repo = self._repo(repository).get(transaction=transaction).to_dict() or {} if repository else {}
        slot = self._read_slot(transaction, data) if target not in lifecycle.ACTIVE else {}
        cost = cost_units(details)
        updates: dict[str, Any] = {
            "status": target, "updated_at": now, "dispatch_lease_until": None,
            "history": _history(data, lifecycle.history_entry(now, current, target, reason, actor)),
            **(extra or {}),
        }
        if target != lifecycle.QUEUED:
            updates["waiting_on"] = reason[:500] if target == lifecycle.WAITING_APPROVAL else ""
        if result is not None:
            updates["result"] = result
        if cost:
            updates["cost_units"] = float(data.get("cost_units") or 0.0) + cost
        leaving_active = current in lifecycle.ACTIVE and target not in lifecycle.ACTIVE
        if cost and repository:
            day = lifecycle.budget_day(now)
            transaction.set(self._repo(repository), {
                "usage": Usage.from_doc(repo.get("usage")).on(day).plus(cost=cost).to_doc()}, merge=True)
            _count(transaction, self._usage(day), day, cost=cost)
        if target == lifecycle.WAITING_APPROVAL and isinstance(details.get("checkpoint"), Mapping):
            # What the agent asked approval for (a digest of the change), to check after the grant.
            updates["checkpoint"] = _merged_checkpoint(data, details["checkpoint"])
        if target == lifecycle.WAITING_APPROVAL:
            # Without details the step is "approval" with no head: only /approve comments count.
            request = details.get("approval") if isinstance(details.get("approval"), Mapping) else {}
            updates["approval"] = {
                "step": str(request.get("step") or "approval"), "state": "pending",
                "rule": dict(request.get("rule") or {}),
                "head_sha": str(request.get("head_sha") or ""),
                "pull_number": int(request.get("pull_number") or data.get("number") or 0),
                "requested_at": now, "approvers": [], "check_run_id": 0,
            }
        transaction.update(self._task(task_id), updates)
        # A slot is taken when the dispatch begins, so a task that is cancelled, blocked or sent
        # back to the queue gives it back whether or not it was marked dispatched yet.
        released = (str(data.get("slot")) if target not in lifecycle.ACTIVE
                    and self._release(transaction, data, slot, now) else "")
        return Changed(True, data, {**data, **updates}, released, left_active=leaving_active)

    def transition(self, task_id: str, target: str, reason: str, actor: str, now: datetime,
                   expected: Sequence[str] | None = None, extra: Mapping[str, Any] | None = None,
                   new_attempt: bool = False,
                   guard: Callable[[Mapping[str, Any]], bool] | None = None) -> Changed:
        """A human's or the sweeper's move: cancel, block, requeue (retry), approve.

        `guard` sees the task as it is inside the transaction; False leaves it unchanged.
        """
        changed = self._run(self._transition, task_id, target, reason, actor, now,
                            tuple(expected) if expected else None, dict(extra or {}), new_attempt, guard)
        self._after(changed, now)
        return changed

    def _transition(self, transaction: Any, task_id: str, target: str, reason: str, actor: str,
                    now: datetime, expected: tuple[str, ...] | None, extra: dict[str, Any],
                    new_attempt: bool, guard: Callable[[Mapping[str, Any]], bool] | None) -> Changed:
        data = self._task(task_id).get(transaction=transaction).to_dict()
        if not data:
            return Changed(False, {}, {})
        current = str(data.get("status"))
        if (expected is not None and current not in expected) or not lifecycle.allowed(current, target):
            return Changed(False, data, data)
        if guard is not None and not guard(data):
            return Changed(False, data, data)
        if new_attempt:
            extra = {**extra, "attempt": int(data.get("attempt", 1)) + 1, "waits_for": [],
                     "dispatch_lease_until": None}
        return self._finish(transaction, data, target, reason, actor, now, {}, extra=extra)

    def update_approval(self, task_id: str, fn: Callable[[dict[str, Any]], dict[str, Any] | None],
                        now: datetime) -> dict[str, Any] | None:
        """Change a waiting task's approval record with `fn` (pure: old record -> new or None)."""
        return self._run(self._update_approval, task_id, fn, now)

    def _update_approval(self, transaction: Any, task_id: str,
                         fn: Callable[[dict[str, Any]], dict[str, Any] | None], now: datetime
                         ) -> dict[str, Any] | None:
        ref = self._task(task_id)
        data = ref.get(transaction=transaction).to_dict() or {}
        if data.get("status") != lifecycle.WAITING_APPROVAL:
            return None
        new = fn(dict(data.get("approval") or {}))
        if new is None:
            return None
        transaction.update(ref, {"approval": new, "updated_at": now})
        return {**data, "approval": new}

    # ---- holds, pauses ---------------------------------------------------------------------

    def set_hold(self, repository: str, number: int, by: str, reason: str, now: datetime,
                 held: bool) -> bool:
        """Hold or release one issue or PR in a repo. False when it already was so."""
        return self._run(self._set_hold, repository, number, by, reason, now, held)

    def _set_hold(self, transaction: Any, repository: str, number: int, by: str, reason: str,
                  now: datetime, held: bool) -> bool:
        from google.cloud import firestore

        ref = self._repo(repository)
        holds = (ref.get(transaction=transaction).to_dict() or {}).get("holds") or {}
        if (str(number) in holds) == held:
            return False
        value: Any = {"by": by, "reason": reason[:500], "at": now} if held else firestore.DELETE_FIELD
        transaction.set(ref, {"full_name": repository, "holds": {str(number): value}}, merge=True)
        return True

    def set_pause(self, scope: str, paused: bool, by: str, reason: str, now: datetime) -> bool:
        """Pause or resume: scope "global", "agent:<name>" or "repo:<owner/name>"."""
        return self._run(self._set_pause, scope, paused, by, reason, now)

    def _set_pause(self, transaction: Any, scope: str, paused: bool, by: str, reason: str,
                   now: datetime) -> bool:
        from google.cloud import firestore

        kind, _, name = scope.partition(":")
        if kind == "agent":
            ref = self._control()
            current = name in ((ref.get(transaction=transaction).to_dict() or {}).get("agents_paused") or {})
            if current == paused:
                return False
            value: Any = {"by": by, "reason": reason[:500], "at": now} if paused else firestore.DELETE_FIELD
            transaction.set(ref, {"agents_paused": {name: value}}, merge=True)
            transaction.set(self._agent(name), {"name": name, "paused": paused,
                                                "state": "paused" if paused else "idle",
                                                "updated_at": now}, merge=True)
            return True
        ref = self._control() if kind == "global" else self._repo(name)
        if bool((ref.get(transaction=transaction).to_dict() or {}).get("paused")) == paused:
            return False
        fields: dict[str, Any] = {"paused": paused, "paused_by": by if paused else "",
                                  "pause_reason": reason[:500] if paused else "", "paused_at": now}
        if kind == "repo":
            fields["full_name"] = name
        transaction.set(ref, fields, merge=True)
        return True


RESULT_TO_STATE = {
    "running": lifecycle.RUNNING,
    "succeeded": lifecycle.SUCCEEDED,
    "failed": lifecycle.FAILED,
    "waiting_approval": lifecycle.WAITING_APPROVAL,
    "blocked": lifecycle.BLOCKED,
    "not_implemented": lifecycle.BLOCKED,
}


def _new_task(spec: TaskSpec, depends_on: list[str], now: datetime) -> dict[str, Any]:
    number = spec.inputs.get("issue_number") or spec.inputs.get("pull_number") or 0
    return {
        "task_id": spec.task_id,
        "kind": spec.kind,
        "agent": spec.agent,
        "repository": spec.repository,
        "installation_id": spec.installation_id,
        "subject": spec.subject,
        "number": int(number) if isinstance(number, int) else 0,
        "source": spec.source,
        "inputs": {k: v for k, v in spec.inputs.items() if k != "depends_on"},
        "status": lifecycle.QUEUED,
        "attempt": 1,
        "retries": 0,
        "depends_on": depends_on,
        "waiting_on": "",
        "waits_for": [],
        "slot": "",
        "cost_units": 0.0,
        "created_at": now,
        "updated_at": now,
        "dispatch_lease_until": None,
        "history": [lifecycle.history_entry(now, "", lifecycle.QUEUED, f"from {spec.source}",
                                            "orchestrator")],
    }


def _pause_text(doc: Mapping[str, Any]) -> str:
    parts = [f"by {doc['paused_by']}" if doc.get("paused_by") else "", str(doc.get("pause_reason") or "")]
    return ", ".join(p for p in parts if p)


def _count(transaction: Any, ref: Any, day: str, tasks: int = 0, cost: float = 0.0) -> None:
    """Add to a day's global use without reading it: increments do not contend with each other."""
    from google.cloud import firestore

    fields: dict[str, Any] = {"day": day}
    if tasks:
        fields["tasks"] = firestore.Increment(tasks)
    if cost:
        fields["cost"] = firestore.Increment(cost)
    transaction.set(ref, fields, merge=True)


def _agent_after(agent: Mapping[str, Any], task: Mapping[str, Any], target: str, now: datetime
                 ) -> dict[str, Any]:
    """The agent's status document after one of its tasks stopped being active."""
    task_id = task.get("task_id")
    current = [t for t in agent.get("current_tasks") or [] if t != task_id]
    fields: dict[str, Any] = {"name": task.get("agent"), "current_tasks": current,
                              "current_task": current[-1] if current else "", "updated_at": now,
                              "last_heartbeat": now}
    started = task.get("dispatched_at")
    if target == lifecycle.SUCCEEDED:
        done = int(agent.get("done") or 0) + 1
        total = float(agent.get("total_duration_seconds") or 0.0)
        if isinstance(started, datetime):
            total += max((now - started).total_seconds(), 0.0)
        fields.update(done=done, total_duration_seconds=total, average_duration_seconds=total / done,
                      last_error="")
    elif target in (lifecycle.FAILED, lifecycle.BLOCKED):
        fields.update(failed=int(agent.get("failed") or 0) + 1,
                      last_error=f"{task_id}: {target}")
    if agent.get("paused"):
        fields["state"] = "paused"
    elif current:
        fields["state"] = "busy"
    elif target in (lifecycle.FAILED, lifecycle.BLOCKED):
        fields["state"] = "error"
    else:
        fields["state"] = "idle"
    return fields
