"""The orchestrator's pure decisions: which events and ticks become which tasks.

Routing is one declared table. A task's id is derived from its subject (kind, repository, issue
or pull request, head SHA, tick minute), so the same event can never make two tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.ports import TaskSpec

AGENT_TASK_LABEL = "agent-task"
IMPLEMENT_KIND = "implement_issue"
ORCHESTRATOR = "orchestrator"  # jobs the orchestrator runs itself rather than dispatching
MONITOR_AGENT = "monitor"
RELEASE_WAKE_PREFIX = "release:"  # `release:<id>`: a deploy task waiting for the monitor's next look


def task_id(kind: str, repository: str, subject: str) -> str:
    digest = hashlib.sha256(f"{kind}\n{repository}\n{subject}".encode()).hexdigest()[:20]
    return f"{kind}-{digest}"


@dataclass(frozen=True)
class EventFacts:
    """What routing needs from a GitHub event: plain values, no I/O."""

    event: str
    action: str
    delivery_id: str
    repository: str
    installation_id: int
    payload: dict[str, Any]
    task_label: str = AGENT_TASK_LABEL  # the repo's policy may name another label


Selector = Callable[[EventFacts], "tuple[str, dict[str, Any]] | None"]


def _dig(payload: dict[str, Any], *path: str) -> Any:
    value: Any = payload
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _issue_inputs(number: int, title: str) -> tuple[str, dict[str, Any]]:
    return f"issue/{number}", {"issue_number": number, "title": title[:300]}


def _labelled_for_agent(facts: EventFacts) -> tuple[str, dict[str, Any]] | None:
    if _dig(facts.payload, "label", "name") != facts.task_label:
        return None
    number = _dig(facts.payload, "issue", "number")
    if not isinstance(number, int) or _dig(facts.payload, "issue", "pull_request"):
        return None
    return _issue_inputs(number, str(_dig(facts.payload, "issue", "title") or ""))


def implement_spec(repository: str, installation_id: int, number: int, title: str, source: str,
                   extra: dict[str, Any]) -> TaskSpec:
    """The code agent's task for an issue, as `/agent implement` asks for it: the label's task id."""
    subject, inputs = _issue_inputs(number, title)
    return TaskSpec(task_id=task_id(IMPLEMENT_KIND, repository, subject), kind=IMPLEMENT_KIND, agent="code",
                    repository=repository, installation_id=installation_id, subject=subject, source=source,
                    inputs={**inputs, **extra})


DEPLOY_KIND = "deploy_merge"
ROLLBACK_KIND = "rollback"


def deploy_spec(repository: str, installation_id: int, pull: Mapping[str, Any], source: str,
                extra: dict[str, Any]) -> TaskSpec | None:
    """The deploy task of a merged pull request, as `/deploy` asks for it: the merge's own task id."""
    sha = pull.get("merge_commit_sha")
    if not pull.get("merged") or not isinstance(sha, str) or not sha:
        return None
    default = _dig(pull, "base", "repo", "default_branch")
    if not default or _dig(pull, "base", "ref") != default:
        return None  # only what reached the default branch (behind its protection) is deployed
    subject = f"merge/{sha}"
    return TaskSpec(task_id=task_id(DEPLOY_KIND, repository, subject), kind=DEPLOY_KIND, agent="deploy",
                    repository=repository, installation_id=installation_id, subject=subject, source=source,
                    inputs={"pull_number": pull.get("number"), "merge_commit_sha": sha,
                            "base_ref": str(_dig(pull, "base", "ref") or ""),
                            "pull_head_sha": str(_dig(pull, "head", "sha") or ""), **extra})


def rollback_spec(repository: str, installation_id: int, release_id: str, number: int, source: str,
                  requested_by: str, at: datetime) -> TaskSpec:
    """A rollback of an ended release, by hand; one per release and minute, so a repeat is one task."""
    subject = f"rollback/{release_id}/{at:%Y%m%dT%H%M}"
    return TaskSpec(task_id=task_id(ROLLBACK_KIND, repository, subject), kind=ROLLBACK_KIND, agent="deploy",
                    repository=repository, installation_id=installation_id, subject=subject, source=source,
                    inputs={"release_id": release_id, "requested_by": requested_by,
                            **({"pull_number": number} if number else {})})


def _pull_request_head(facts: EventFacts) -> tuple[str, dict[str, Any]] | None:
    number = _dig(facts.payload, "pull_request", "number")
    head_sha = _dig(facts.payload, "pull_request", "head", "sha")
    if not isinstance(number, int) or not isinstance(head_sha, str):
        return None
    return f"pull/{number}@{head_sha}", {
        "pull_number": number,
        "head_sha": head_sha,
        "head_ref": str(_dig(facts.payload, "pull_request", "head", "ref") or ""),
        "base_ref": str(_dig(facts.payload, "pull_request", "base", "ref") or ""),
    }


def _merged_to_default(facts: EventFacts) -> tuple[str, dict[str, Any]] | None:
    pull = facts.payload.get("pull_request")
    if not isinstance(pull, dict) or not pull.get("merged"):
        return None
    default = _dig(facts.payload, "repository", "default_branch")
    if not default or _dig(pull, "base", "ref") != default:
        return None
    sha = pull.get("merge_commit_sha")
    if not isinstance(sha, str) or not sha:
        return None
    return f"merge/{sha}", {"pull_number": pull.get("number"), "merge_commit_sha": sha,
                            "base_ref": default, "pull_head_sha": str(_dig(pull, "head", "sha") or "")}


@dataclass(frozen=True)
class Route:
    event: str
    actions: frozenset[str]
    agent: str
    kind: str
    select: Selector

    def key(self) -> str:
        return f"{self.event}.{'|'.join(sorted(self.actions))} -> {self.agent}/{self.kind}"


PR_HEAD_ACTIONS = frozenset({"opened", "synchronize", "reopened"})

# The routing table: greppable subscriptions, one line per rule.
ROUTES: tuple[Route, ...] = (
    Route("issues", frozenset({"labeled"}), "code", IMPLEMENT_KIND, _labelled_for_agent),
    Route("pull_request", PR_HEAD_ACTIONS, "test", "test_pull_request", _pull_request_head),
    Route("pull_request", PR_HEAD_ACTIONS, "qa", "review_pull_request", _pull_request_head),
    Route("pull_request", frozenset({"closed"}), "deploy", DEPLOY_KIND, _merged_to_default),
    Route("pull_request", frozenset({"closed"}), "test", "update_baseline", _merged_to_default),
)


@dataclass(frozen=True)
class TickRoute:
    job: str
    agent: str
    kind: str
    period_minutes: int  # ticks of one period share a subject, so a duplicate tick is one task


TICK_ROUTES: dict[str, TickRoute] = {
    route.job: route
    for route in (
        TickRoute("repo_scout", "scout", "scan_repos", 60),
        TickRoute("monitor", "monitor", "probe_production", 1),
        TickRoute("weekly_report", ORCHESTRATOR, "weekly_report", 60),
        TickRoute("daily_metrics", ORCHESTRATOR, "daily_metrics", 60),
        TickRoute("redelivery_sweep", ORCHESTRATOR, "redelivery_sweep", 5),
        TickRoute("task_sweep", ORCHESTRATOR, "task_sweep", 5),
    )
}


def route_event(facts: EventFacts) -> list[TaskSpec]:
    specs = []
    for route in ROUTES:
        if route.event != facts.event or facts.action not in route.actions:
            continue
        selected = route.select(facts)
        if selected is None:
            continue
        subject, inputs = selected
        specs.append(TaskSpec(
            task_id=task_id(route.kind, facts.repository, subject),
            kind=route.kind,
            agent=route.agent,
            repository=facts.repository,
            installation_id=facts.installation_id,
            subject=subject,
            source=f"delivery/{facts.delivery_id}",
            inputs={**inputs, "event": facts.event, "action": facts.action},
        ))
    return specs


@dataclass(frozen=True)
class Signal:
    """An event that changes tasks that already exist rather than making new ones."""

    event: str
    actions: frozenset[str]
    handler: str


CHATOPS = "chatops"
APPROVAL = "approval"
HEAD_MOVED = "head_moved"
WAKE = "wake"

# The second half of the routing table: greppable too, one line per rule.
SIGNALS: tuple[Signal, ...] = (
    Signal("issue_comment", frozenset({"created"}), CHATOPS),
    Signal("pull_request_review", frozenset({"submitted", "dismissed"}), APPROVAL),
    Signal("pull_request", frozenset({"synchronize"}), HEAD_MOVED),
    Signal("check_suite", frozenset({"completed"}), WAKE),
    Signal("check_run", frozenset({"completed"}), WAKE),
    Signal("workflow_run", frozenset({"completed"}), WAKE),
    Signal("deployment_status", frozenset({"created"}), WAKE),
    Signal("status", frozenset({""}), WAKE),
)


def signals_for(facts: EventFacts) -> list[str]:
    return [s.handler for s in SIGNALS if s.event == facts.event and facts.action in s.actions]


def wake_keys(facts: EventFacts) -> list[str]:
    """The keys an agent names in `waits_for` to be woken by this event.

    `check_suite:<repo>@<sha>`, `check_run:<repo>@<sha>`, `workflow_run:<repo>#<run id>`,
    `workflow:<repo>@<sha>`, `deployment:<repo>#<deployment id>`, `status:<repo>@<sha>`.
    """
    repo, payload = facts.repository, facts.payload
    keys: list[str] = []
    if facts.event in ("check_suite", "check_run"):
        sha = _dig(payload, facts.event, "head_sha")
        if isinstance(sha, str) and sha:
            keys.append(f"{facts.event}:{repo}@{sha}")
    elif facts.event == "workflow_run":
        run_id, sha = _dig(payload, "workflow_run", "id"), _dig(payload, "workflow_run", "head_sha")
        if isinstance(run_id, int):
            keys.append(f"workflow_run:{repo}#{run_id}")
        if isinstance(sha, str) and sha:
            keys.append(f"workflow:{repo}@{sha}")
    elif facts.event == "deployment_status":
        deployment_id = _dig(payload, "deployment", "id")
        if isinstance(deployment_id, int):
            keys.append(f"deployment:{repo}#{deployment_id}")
    elif facts.event == "status":
        sha = payload.get("sha")
        if isinstance(sha, str) and sha:
            keys.append(f"status:{repo}@{sha}")
    return keys


def wake_summary(facts: EventFacts) -> dict[str, Any]:
    """What a woken agent is told about the event, small and without the whole payload."""
    body = facts.payload.get(facts.event) if isinstance(facts.payload.get(facts.event), dict) else {}
    if facts.event == "chatops":
        return {"event": facts.event, "action": facts.action, "delivery_id": facts.delivery_id,
                "actor": str(_dig(facts.payload, "chatops", "actor") or "")}
    if facts.event == "cloud_build":
        build = facts.payload.get("build") if isinstance(facts.payload.get("build"), dict) else {}
        return {"event": facts.event, "action": facts.action, "delivery_id": facts.delivery_id,
                "build_id": str(build.get("id") or ""), "status": str(build.get("status") or "")}
    return {
        "event": facts.event,
        "action": facts.action,
        "delivery_id": facts.delivery_id,
        "id": body.get("id", 0) if isinstance(body.get("id"), int) else 0,
        "status": str(body.get("status") or facts.payload.get("state") or ""),
        "conclusion": str(body.get("conclusion") or ""),
        "head_sha": str(body.get("head_sha") or facts.payload.get("sha") or ""),
        "state": str(_dig(facts.payload, "deployment_status", "state") or ""),
    }


def route_tick(job: str, message_id: str, published: datetime) -> list[TaskSpec]:
    route = TICK_ROUTES.get(job)
    if route is None:
        return []
    minute = published.hour * 60 + published.minute
    slot = published.replace(hour=0, minute=0, second=0, microsecond=0)
    slot_minute = minute - minute % route.period_minutes
    subject = f"tick/{job}/{slot:%Y-%m-%d}T{slot_minute // 60:02d}:{slot_minute % 60:02d}Z"
    return [TaskSpec(
        task_id=task_id(route.kind, "", subject),
        kind=route.kind,
        agent=route.agent,
        repository="",
        installation_id=0,
        subject=subject,
        source=f"tick/{message_id}",
        inputs={"job": job},
    )]


INSTALLATION_STATUS = {
    "created": "active",
    "deleted": "deleted",
    "suspend": "suspended",
    "unsuspend": "active",
    "new_permissions_accepted": "active",
}


@dataclass(frozen=True)
class InstallationChange:
    """What an installation event means for the `installations` and `repos` records."""

    installation_id: int
    account: str
    status: str  # "" when the event does not change it
    repository_selection: str
    added: tuple[dict[str, Any], ...]
    removed: tuple[dict[str, Any], ...]


def _repos(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        {"full_name": repo["full_name"], "id": repo.get("id", 0), "private": bool(repo.get("private"))}
        for repo in value
        if isinstance(repo, dict) and isinstance(repo.get("full_name"), str)
    )


def installation_change(facts: EventFacts) -> InstallationChange | None:
    """Read an `installation` or `installation_repositories` event. Pure."""
    if facts.event not in ("installation", "installation_repositories"):
        return None
    installation = facts.payload.get("installation")
    if not isinstance(installation, dict) or not isinstance(installation.get("id"), int):
        return None
    account = _dig(installation, "account", "login")
    selection = facts.payload.get("repository_selection") or installation.get("repository_selection")
    if facts.event == "installation":
        status = INSTALLATION_STATUS.get(facts.action, "")
        repositories = _repos(facts.payload.get("repositories"))
        added, removed = (repositories, ()) if status != "deleted" else ((), repositories)
    else:
        status = ""
        added = _repos(facts.payload.get("repositories_added"))
        removed = _repos(facts.payload.get("repositories_removed"))
    return InstallationChange(installation["id"], str(account or ""), status, str(selection or ""),
                              added, removed)
