"""The test agent's CI decision for one pull request head SHA: wait, re-run failed workflows, or done. Pure.

The shell gathers the facts from the GitHub API (check runs, commit statuses and GitHub Actions
workflow runs on the SHA) and keeps a small checkpoint between invocations: the workflow runs the agent
already re-ran, with the conclusion of their first attempt. It never polls: after `Wait` or `Rerun` it
parks the task naming `wait_keys(...)` in `waits_for`, and the orchestrator wakes it on the next event.

What counts:

- Items of the agent itself never count: check runs whose app slug is `own_app`, and any item named
  `<own_app>/...` (its own check runs and statuses). A required name `<own_app>/...` is ignored too, so
  copying branch protection's required checks into the policy cannot make the agent wait for itself.
- Jobs of GitHub Actions are represented by their workflow run, which is what can be re-run: when the
  facts hold any workflow run, check runs of the app `github-actions` are dropped. A required name that
  matches only such a job check run (branch protection names jobs, not workflows) stands for that job's
  workflow run, found through the job's URL (`.../actions/runs/<run id>/job/<job id>`); when the URL
  names no known run, the job check run counts itself.
- `required` empty: every remaining item counts. Otherwise only items whose name equals, or matches as
  an fnmatch glob, one of the required names count, and a required name that matches nothing means CI
  is still waiting (`require_ci` does not change that: a named requirement is always awaited).
- A commit status context may be reported many times: the highest id (the latest) wins. Likewise the
  latest check run per (app, name), as a re-requested check creates a new check run. Workflow runs all
  count (a workflow triggered by both `push` and `pull_request` has two runs on one SHA); duplicated
  workflow names are then told apart by their run id.

Order of the decision: a re-run is requested as early as possible, so `Rerun` is returned as soon as a
workflow run failed on its first attempt, even while other items are still running; the shell re-runs,
records the checkpoint (`record_reruns`) and waits. Then `Wait` while any counted item, a missing
required name or a requested re-run is unfinished. Then, with nothing counted at all, `Wait` when CI is
required, else `Done(tests="none")`. Otherwise `Done` with failed, flaky or passed.

Workflow runs: only the conclusions in RERUNNABLE_CONCLUSIONS are re-run ("failed jobs" of the run);
`cancelled` (someone or a concurrency group cancelled deliberately), `action_required` (a first-time
contributor's run awaits approval), `startup_failure` (a broken workflow file) and `stale` fail without
a re-run. A run in the checkpoint is classified with `classify_rerun(first conclusion, current
conclusion)` once its attempt is above 1 and completed: failure then success is flaky. A run re-run by
someone else (attempt above 1, not in the checkpoint) is judged on its current attempt alone.

A conclusion GitHub adds later and this module does not know counts as a failure: an unknown result
never approves.

Names come from the pull request's repository (workflow names, job names, status contexts) and are
attacker-controlled: every name in a decision is neutralised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from functions.test_agent.gates import (
    FAILING_CONCLUSIONS,
    PASSING_CONCLUSIONS,
    PENDING_CONCLUSIONS,
    classify_rerun,
    conclusion_class,
    neutralise,
)
from shared.errors import InvalidInput

ItemKind = Literal["check_run", "status", "workflow_run"]
TestsResult = Literal["passed", "failed", "flaky", "none"]

KINDS = ("check_run", "status", "workflow_run")
GITHUB_ACTIONS = "github-actions"
RERUNNABLE_CONCLUSIONS = frozenset({"failure", "timed_out"})
STATUS_CONCLUSIONS = {"success": "success", "failure": "failure", "error": "failure", "pending": ""}
MAX_SUMMARY_LINES = 50
MAX_LISTED = 20

_KNOWN = PASSING_CONCLUSIONS | FAILING_CONCLUSIONS | PENDING_CONCLUSIONS
_RUN_URL = re.compile(r"/actions/runs/(\d+)(?:/|$)")


@dataclass(frozen=True)
class CiItem:
    """One CI signal on the SHA.

    check_run: status queued|in_progress|completed|..., conclusion once completed; app = the app slug.
    status: status = the state (pending|success|failure|error), conclusion = `status_conclusion(state)`.
    workflow_run: name = the workflow's name, attempt = run_attempt.
    """

    kind: ItemKind
    id: int
    name: str
    status: str
    conclusion: str
    attempt: int = 1
    app: str = ""
    url: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown CI item kind {neutralise(str(self.kind))!r}")


@dataclass(frozen=True)
class CiFacts:
    head_sha: str
    items: tuple[CiItem, ...]
    reruns: Mapping[str, str] = field(default_factory=dict)  # workflow run id -> first attempt's conclusion


@dataclass(frozen=True)
class CiPolicy:
    required: tuple[str, ...] = ()
    require_ci: bool = True
    rerun_failed: bool = True
    own_app: str = "agent-ops"


@dataclass(frozen=True)
class Wait:
    pending: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Rerun:
    run_ids: tuple[int, ...]
    first_conclusions: Mapping[str, str]  # run id (str) -> conclusion of attempt 1: the checkpoint entries
    reason: str


@dataclass(frozen=True)
class Done:
    tests: TestsResult
    failed: tuple[str, ...]
    flaky: tuple[str, ...]
    summary_lines: tuple[str, ...]


CiDecision = Wait | Rerun | Done


def status_conclusion(state: str) -> str:
    """A commit status state as a check conclusion: success, failure (failure or error) or "" (pending)."""
    return STATUS_CONCLUSIONS.get(state, "failure")


def status_item(status_id: int, context: str, state: str, url: str = "") -> CiItem:
    """A CiItem for a commit status (the API's `id`, `context`, `state` and `target_url`)."""
    return CiItem("status", status_id, context, state, status_conclusion(state), url=url)


def wait_keys(repository: str, head_sha: str, rerun_ids: Iterable[int | str] = ()) -> list[str]:
    """The `waits_for` keys that wake the agent on CI events for the SHA and on its re-run workflow runs.

    The formats are those of `functions.orchestrator.core.wake_keys`.
    """
    keys = [
        f"check_suite:{repository}@{head_sha}",
        f"check_run:{repository}@{head_sha}",
        f"workflow:{repository}@{head_sha}",
        f"status:{repository}@{head_sha}",
    ]
    ids = sorted({int(run_id) for run_id in rerun_ids})
    keys += [f"workflow_run:{repository}#{run_id}" for run_id in ids]
    return keys


def record_reruns(reruns: Mapping[str, str], decision: Rerun) -> dict[str, str]:
    """The checkpoint after the shell re-ran `decision.run_ids`; an existing entry is never overwritten."""
    return {**decision.first_conclusions, **reruns}


def tests_outcome(done: Done, policy: CiPolicy) -> str:
    """The `tests_conclusion` for `gates.verdict` (one of gates.TEST_OUTCOMES).

    `none` (no CI reported) approves only when the repository declared CI optional (`require_ci`
    false, the only way `decide_ci` returns it); otherwise it is "pending", a neutral verdict that never
    approves.
    """
    if done.tests == "none":
        return "pending" if policy.require_ci else "passed"
    return done.tests


tests_outcome.__test__ = False  # type: ignore[attr-defined]  # pytest would collect it where imported


# ---------------------------------------------------------------------------------------------
# The decision


@dataclass(frozen=True)
class _Counted:
    label: str  # neutralised
    outcome: str  # passed | failed | flaky | pending | rerun
    detail: str  # neutralised
    item: CiItem


def decide_ci(facts: CiFacts, policy: CiPolicy) -> CiDecision:
    """Decide what the test agent does next about CI on `facts.head_sha`; see the module docstring."""
    items = _latest(_foreign(facts.items, policy.own_app))
    counted, missing = _select(items, policy)
    labels = _labels(counted)
    judged = [_judge(item, labels[item], facts.reruns, policy) for item in counted]

    to_rerun = sorted((entry.item for entry in judged if entry.outcome == "rerun"), key=lambda item: item.id)
    if to_rerun:
        names = ", ".join(labels[item] for item in to_rerun[:MAX_LISTED])
        return Rerun(
            run_ids=tuple(item.id for item in to_rerun),
            first_conclusions={str(item.id): item.conclusion for item in to_rerun},
            reason=f"re-running failed jobs once: {names}",
        )

    pending = sorted({entry.label for entry in judged if entry.outcome == "pending"})
    pending += sorted(neutralise(name) for name in missing)
    if pending:
        shown = ", ".join(pending[:MAX_LISTED])
        more = f" and {len(pending) - MAX_LISTED} more" if len(pending) > MAX_LISTED else ""
        return Wait(tuple(pending), f"waiting for CI on {_short(facts.head_sha)}: {shown}{more}")

    if not judged:
        if policy.require_ci:
            return Wait((), f"no CI has reported on {_short(facts.head_sha)} yet")
        return Done("none", (), (), ("No CI reported on this commit; CI is optional for this repository.",))

    failed = tuple(sorted({entry.label for entry in judged if entry.outcome == "failed"}))
    flaky = tuple(sorted({entry.label for entry in judged if entry.outcome == "flaky"}))
    tests: TestsResult = "failed" if failed else "flaky" if flaky else "passed"
    return Done(tests, failed, flaky, _summary(judged))


def _short(sha: str) -> str:
    return neutralise(sha[:12])


def _foreign(items: Iterable[CiItem], own_app: str) -> list[CiItem]:
    prefix = f"{own_app}/"
    return [
        item for item in items
        if not item.name.startswith(prefix) and not (item.kind == "check_run" and item.app == own_app)
    ]


def _latest(items: list[CiItem]) -> list[CiItem]:
    """The latest status per context and check run per (app, name); every workflow run."""
    latest: dict[tuple[str, str, str], CiItem] = {}
    runs: dict[int, CiItem] = {}
    for item in items:
        if item.kind == "workflow_run":
            if item.id not in runs or item.attempt > runs[item.id].attempt:
                runs[item.id] = item
            continue
        key = (item.kind, item.app if item.kind == "check_run" else "", item.name)
        if key not in latest or item.id > latest[key].id:
            latest[key] = item
    return [*latest.values(), *runs.values()]


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or fnmatchcase(name, pattern)


def _select(items: list[CiItem], policy: CiPolicy) -> tuple[list[CiItem], list[str]]:
    """The items that count, in a stable order, and the required names nothing reported for."""
    runs = {item.id: item for item in items if item.kind == "workflow_run"}
    jobs = [item for item in items if item.kind == "check_run" and item.app == GITHUB_ACTIONS] if runs else []
    visible = [item for item in items if item not in jobs]
    required = [name for name in policy.required if not name.startswith(f"{policy.own_app}/")]
    if not required:
        chosen = visible
        missing: list[str] = []
    else:
        chosen, missing = [], []
        for pattern in required:
            hits = [item for item in visible if _matches(item.name, pattern)]
            for job in jobs:
                if _matches(job.name, pattern):
                    found = _RUN_URL.search(job.url)
                    hits.append(runs.get(int(found.group(1)), job) if found else job)
            if not hits:
                missing.append(pattern)
            chosen += [hit for hit in hits if hit not in chosen]
    order = {kind: index for index, kind in enumerate(KINDS)}
    return sorted(chosen, key=lambda item: (order[item.kind], item.name, item.id)), missing


def _labels(items: list[CiItem]) -> dict[CiItem, str]:
    names = [item.name for item in items if item.kind == "workflow_run"]
    labels = {}
    for item in items:
        duplicated = item.kind == "workflow_run" and names.count(item.name) > 1
        labels[item] = neutralise(f"{item.name} (run {item.id})" if duplicated else item.name)
    return labels


def _class(conclusion: str) -> str:
    return conclusion_class(conclusion, unknown="failed")  # unknown: never approve


def _judge(item: CiItem, label: str, reruns: Mapping[str, str], policy: CiPolicy) -> _Counted:
    shown = neutralise(item.conclusion or item.status, 40)
    if item.kind == "status":
        outcome = {"success": "passed", "pending": "pending", "": "pending"}.get(item.status, "failed")
        return _Counted(label, outcome, f"status {neutralise(item.status, 40)}", item)
    if item.status != "completed":
        return _Counted(label, "pending", neutralise(item.status or "queued", 40), item)
    if item.kind == "check_run":
        return _Counted(label, _class(item.conclusion), shown, item)

    first = reruns.get(str(item.id))
    if first is not None:
        if item.attempt <= 1:
            return _Counted(label, "pending", "re-run requested, attempt 2 not started", item)
        if item.conclusion not in _KNOWN:
            outcome = "failed"  # an unknown conclusion never approves (and classify_rerun refuses it)
        elif first in FAILING_CONCLUSIONS:
            outcome = classify_rerun(first, item.conclusion)
        else:
            outcome = _class(item.conclusion)
        detail = f"{neutralise(first, 40)}, then {shown} on attempt {item.attempt}"
        return _Counted(label, outcome, detail, item)
    outcome = _class(item.conclusion)
    if outcome == "failed" and item.attempt == 1 and policy.rerun_failed \
            and item.conclusion in RERUNNABLE_CONCLUSIONS:
        return _Counted(label, "rerun", shown, item)
    attempt = f" on attempt {item.attempt}" if item.attempt > 1 else ""
    return _Counted(label, outcome, f"{shown}{attempt}", item)


_ICONS = {"failed": "❌", "flaky": "🔁", "passed": "✅"}
_RANK = {"failed": 0, "flaky": 1, "passed": 2}


def _summary(judged: list[_Counted]) -> tuple[str, ...]:
    entries = sorted(judged, key=lambda entry: (_RANK[entry.outcome], entry.label, entry.item.id))
    lines = [f"{_ICONS[entry.outcome]} {entry.label}: {entry.detail}" for entry in entries]
    if len(lines) > MAX_SUMMARY_LINES:
        lines = [*lines[:MAX_SUMMARY_LINES], f"… and {len(lines) - MAX_SUMMARY_LINES} more"]
    return tuple(lines)
