"""Actions are data; one executor applies them to GitHub.

The executor gives every action an idempotency key, skips a key that the audit trail already holds
(so a redelivered message does not comment twice), honours dry-run, and records each action in
`audit` with a link to what it made. Dry-run, audit and once-only effects come from this one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.errors import PermanentError
from shared.github import checks
from shared.github.rest import ServerError

log = logging.getLogger("agentops.executor")

MAX_COMMENT = 65_000  # GitHub's body limit is 65,536 characters


@dataclass(frozen=True)
class PostComment:
    repository: str
    number: int
    body: str
    key: str


@dataclass(frozen=True)
class UpdateComment:
    """Edit a comment the App made (a status comment kept up to date in place)."""

    repository: str
    comment_id: int
    body: str
    key: str


@dataclass(frozen=True)
class AddReaction:
    repository: str
    comment_id: int
    content: str  # +1, -1, laugh, confused, heart, hooray, rocket, eyes
    key: str


@dataclass(frozen=True)
class AddLabels:
    repository: str
    number: int
    labels: tuple[str, ...]
    key: str


@dataclass(frozen=True)
class RemoveLabel:
    repository: str
    number: int
    label: str
    key: str


@dataclass(frozen=True)
class AddAssignees:
    repository: str
    number: int
    assignees: tuple[str, ...]
    key: str


@dataclass(frozen=True)
class CreateCheckRun:
    repository: str
    head_sha: str
    name: str
    external_id: str
    status: str  # queued | in_progress | completed
    title: str
    summary: str
    key: str
    conclusion: str = ""


@dataclass(frozen=True)
class UpdateCheckRun:
    repository: str
    check_run_id: int
    status: str
    title: str
    summary: str
    key: str
    conclusion: str = ""


@dataclass(frozen=True)
class CreateBranch:
    """A new branch at `sha`. There is no way to write to a branch that exists with this action."""

    repository: str
    branch: str
    sha: str
    key: str


@dataclass(frozen=True)
class AdvanceBranch:
    """Move a branch forward to `sha`. Never forced: GitHub refuses a move that is not a fast-forward."""

    repository: str
    branch: str
    sha: str
    key: str


@dataclass(frozen=True)
class OpenPullRequest:
    repository: str
    head: str
    base: str
    title: str
    body: str
    key: str
    draft: bool = False


@dataclass(frozen=True)
class RequestReviewers:
    repository: str
    number: int
    reviewers: tuple[str, ...]
    team_reviewers: tuple[str, ...]
    key: str


@dataclass(frozen=True)
class SubmitReview:
    repository: str
    number: int
    commit_id: str
    event: str  # APPROVE | REQUEST_CHANGES | COMMENT
    body: str
    key: str


@dataclass(frozen=True)
class UpdateReview:
    """Change the text of a review already submitted; its verdict stays what it was."""

    repository: str
    number: int
    review_id: int
    body: str
    key: str


@dataclass(frozen=True)
class DispatchWorkflow:
    repository: str
    workflow: str  # the file name, such as agent.yml
    ref: str
    inputs: Mapping[str, str]
    key: str


@dataclass(frozen=True)
class RerunFailedJobs:
    repository: str
    run_id: int
    key: str


@dataclass(frozen=True)
class CreateDeployment:
    """A GitHub deployment of `ref` to `environment`, the record each deployment status hangs on.

    The deploy agent has checked the commit's checks in its pre-flight, so GitHub is asked to check
    none again (`required_contexts` empty) and never to merge the default branch into `ref`. When
    `payload` is not empty, a deployment of the same ref, environment and payload is taken to be
    this one: a create whose answer was lost is not made twice.
    """

    repository: str
    ref: str
    environment: str
    description: str
    payload: Mapping[str, Any]
    key: str


@dataclass(frozen=True)
class CreateDeploymentStatus:
    """One stage of a deployment as GitHub shows it. `success` marks the older ones inactive."""

    repository: str
    deployment_id: int
    state: str  # queued | in_progress | success | failure | error | inactive | pending
    description: str
    environment_url: str
    log_url: str
    key: str


@dataclass(frozen=True)
class CreateIssue:
    repository: str
    title: str
    body: str
    labels: tuple[str, ...]
    key: str


@dataclass(frozen=True)
class UpdateIssue:
    """Edit or close an issue; a field left None is left as it is."""

    repository: str
    number: int
    key: str
    title: str | None = None
    body: str | None = None
    state: str | None = None  # open | closed
    state_reason: str | None = None  # completed | not_planned | duplicate | reopened


Action = (PostComment | UpdateComment | AddReaction | AddLabels | RemoveLabel | AddAssignees | CreateCheckRun
          | UpdateCheckRun | CreateBranch | AdvanceBranch | OpenPullRequest | RequestReviewers | SubmitReview
          | UpdateReview | DispatchWorkflow | RerunFailedJobs | CreateDeployment | CreateDeploymentStatus
          | CreateIssue | UpdateIssue)

# There is deliberately no action that merges a pull request, deletes a branch or forces a push.
REVIEW_EVENTS = frozenset({"APPROVE", "REQUEST_CHANGES", "COMMENT"})
DEPLOYMENT_STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})
ISSUE_STATES = frozenset({"open", "closed"})
ISSUE_STATE_REASONS = frozenset({"completed", "not_planned", "duplicate", "reopened"})
MAX_TITLE = 256  # GitHub's limit on an issue or pull request title
MAX_DEPLOYMENT_DESCRIPTION = 140  # GitHub's limit on a deployment status description


class Executor:
    def __init__(
        self,
        audit: Callable[[], Any],
        client_for: Callable[[int, str, str], Any],
        actor: str = "orchestrator",
        dry_run: bool = False,
    ) -> None:
        self._audit = audit
        self._client_for = client_for  # (installation_id, repository, task_id) -> RestClient
        self._actor = actor
        self._dry_run = dry_run

    def apply(
        self, action: Action, installation_id: int, task_id: str = "", delivery_id: str = "",
        raise_refused: bool = False,
    ) -> dict[str, Any] | None:
        """Apply one action once. Returns GitHub's answer, or None when skipped or refused."""
        audit = self._audit()
        if audit.has(action.key) or (self._dry_run and audit.has(f"{action.key}:dry_run")):
            log.info("action already applied", extra={"task_id": task_id, "outcome": "duplicate"})
            return None
        name = type(action).__name__

        def done(outcome: str, **facts: Any) -> None:
            # Only a made effect takes the action's key: a refusal or a dry run is recorded beside
            # it, so a later attempt (or the same one, live) may still make it.
            key = action.key if outcome == "ok" else f"{action.key}:{outcome}"
            audit.record(key=key, actor=self._actor, action=_verb(name), subject=_target(action),
                         outcome=outcome, repository=action.repository, task_id=task_id,
                         delivery_id=delivery_id, **facts)

        if self._dry_run:
            done("dry_run")
            return None
        client = self._client_for(installation_id, action.repository, task_id)
        if hasattr(client, "without_audit"):
            client = client.without_audit()  # the action's own record below is its audit
        try:
            answer = _perform(client, action)
        except PermanentError as exc:
            # Refused by GitHub (gone, forbidden, invalid): say so in the audit trail and the log;
            # retrying would not help, and the message's other effects still stand.
            log.error("GitHub refused %s: %s", name, exc, extra={"task_id": task_id, "outcome": "refused"})
            done("refused", error=str(exc)[:500])
            if raise_refused:
                raise
            return None
        done("ok", link=str(answer.get("html_url") or "") if isinstance(answer, dict) else "")
        return answer if isinstance(answer, dict) else {}


def _cut(body: str) -> str:
    return body if len(body) <= MAX_COMMENT else body[:MAX_COMMENT] + "\n\n(cut)"


def _quoted(name: str) -> str:
    return quote(name, safe="")


def _perform(client: Any, action: Action) -> Any:
    repo = action.repository
    if isinstance(action, PostComment):
        return client.request(
            "POST", f"/repos/{repo}/issues/{action.number}/comments", json_body={"body": _cut(action.body)}
        )
    if isinstance(action, UpdateComment):
        return client.request("PATCH", f"/repos/{repo}/issues/comments/{action.comment_id}",
                              json_body={"body": _cut(action.body)}, idempotent=True)
    if isinstance(action, AddReaction):
        return client.request(
            "POST",
            f"/repos/{repo}/issues/comments/{action.comment_id}/reactions",
            json_body={"content": action.content},
            idempotent=True,
        )
    if isinstance(action, AddLabels):
        return {"labels": client.request("POST", f"/repos/{repo}/issues/{action.number}/labels",
                                         json_body={"labels": list(action.labels)}, idempotent=True)}
    if isinstance(action, RemoveLabel):
        path = f"/repos/{repo}/issues/{action.number}/labels/{_quoted(action.label)}"
        return {"labels": client.request("DELETE", path, idempotent=True)}
    if isinstance(action, AddAssignees):
        return client.request("POST", f"/repos/{repo}/issues/{action.number}/assignees",
                              json_body={"assignees": list(action.assignees)}, idempotent=True)
    if isinstance(action, CreateCheckRun):
        return checks.create_check_run_once(
            client, repo, action.head_sha, action.name, action.external_id, **_check_fields(action)
        )
    if isinstance(action, UpdateCheckRun):
        return client.request("PATCH", f"/repos/{repo}/check-runs/{action.check_run_id}",
                              json_body=_check_fields(action), idempotent=True)
    if isinstance(action, CreateBranch):
        return client.request("POST", f"/repos/{repo}/git/refs",
                              json_body={"ref": f"refs/heads/{action.branch}", "sha": action.sha})
    if isinstance(action, AdvanceBranch):
        # Moving a ref to the same sha twice is harmless, so a lost response may be retried.
        return client.request("PATCH", f"/repos/{repo}/git/refs/heads/{action.branch}",
                              json_body={"sha": action.sha, "force": False}, idempotent=True)
    if isinstance(action, OpenPullRequest):
        return client.request("POST", f"/repos/{repo}/pulls", json_body={
            "title": action.title[:256], "head": action.head, "base": action.base, "body": _cut(action.body),
            "draft": action.draft, "maintainer_can_modify": True})
    if isinstance(action, RequestReviewers):
        return client.request("POST", f"/repos/{repo}/pulls/{action.number}/requested_reviewers",
                              json_body={"reviewers": list(action.reviewers),
                                         "team_reviewers": list(action.team_reviewers)}, idempotent=True)
    if isinstance(action, SubmitReview):
        if action.event not in REVIEW_EVENTS:
            raise PermanentError(f"a review is one of {sorted(REVIEW_EVENTS)}, not {action.event!r}")
        return client.request("POST", f"/repos/{repo}/pulls/{action.number}/reviews", json_body={
            "commit_id": action.commit_id, "body": _cut(action.body), "event": action.event})
    if isinstance(action, UpdateReview):
        return client.request("PUT", f"/repos/{repo}/pulls/{action.number}/reviews/{action.review_id}",
                              json_body={"body": _cut(action.body)}, idempotent=True)
    if isinstance(action, DispatchWorkflow):
        client.request("POST", f"/repos/{repo}/actions/workflows/{_quoted(action.workflow)}/dispatches",
                       json_body={"ref": action.ref, "inputs": dict(action.inputs)})
        return {}
    if isinstance(action, CreateDeployment):
        return _create_deployment_once(client, action)
    if isinstance(action, CreateDeploymentStatus):
        if action.state not in DEPLOYMENT_STATES:
            raise PermanentError(f"a deployment status is one of {sorted(DEPLOYMENT_STATES)}, "
                                 f"not {action.state!r}")
        path = f"/repos/{repo}/deployments/{action.deployment_id}/statuses"
        return client.request("POST", path, json_body={
            "state": action.state, "description": action.description[:MAX_DEPLOYMENT_DESCRIPTION],
            "environment_url": action.environment_url, "log_url": action.log_url,
            "auto_inactive": action.state == "success"})
    if isinstance(action, CreateIssue):
        return client.request("POST", f"/repos/{repo}/issues", json_body={
            "title": action.title[:MAX_TITLE], "body": _cut(action.body), "labels": list(action.labels)})
    if isinstance(action, UpdateIssue):
        return client.request("PATCH", f"/repos/{repo}/issues/{action.number}",
                              json_body=_issue_fields(action), idempotent=True)
    client.request("POST", f"/repos/{repo}/actions/runs/{action.run_id}/rerun-failed-jobs", json_body={})
    return {}


def _create_deployment_once(client: Any, action: CreateDeployment) -> Any:
    repo = action.repository
    existing = _find_deployment(client, action)
    if existing is not None:
        return existing
    body = {"ref": action.ref, "environment": action.environment,
            "description": action.description[:MAX_DEPLOYMENT_DESCRIPTION], "payload": dict(action.payload),
            "auto_merge": False, "required_contexts": [], "production_environment": True,
            "transient_environment": False}
    try:
        return client.request("POST", f"/repos/{repo}/deployments", json_body=body)
    except ServerError:
        # It may have been made though the answer was lost: look before the message is retried.
        existing = _find_deployment(client, action)
        if existing is None:
            raise
        return existing


def _find_deployment(client: Any, action: CreateDeployment) -> dict[str, Any] | None:
    """The newest deployment of the action's ref and environment with its payload; None without a payload,
    which could not tell this release's deployment from an earlier one of the same commit."""
    if not action.payload:
        return None
    found = client.request("GET", f"/repos/{action.repository}/deployments",
                           params={"ref": action.ref, "environment": action.environment, "per_page": 100})
    wanted = dict(action.payload)
    for deployment in found if isinstance(found, list) else ():
        if isinstance(deployment, dict) and deployment.get("payload") == wanted:
            return deployment
    return None


def _issue_fields(action: UpdateIssue) -> dict[str, Any]:
    if action.state is not None and action.state not in ISSUE_STATES:
        raise PermanentError(f"an issue's state is one of {sorted(ISSUE_STATES)}, not {action.state!r}")
    if action.state_reason is not None and action.state_reason not in ISSUE_STATE_REASONS:
        raise PermanentError(f"an issue's state reason is one of {sorted(ISSUE_STATE_REASONS)}, "
                             f"not {action.state_reason!r}")
    fields: dict[str, Any] = {}
    if action.title is not None:
        fields["title"] = action.title[:MAX_TITLE]
    if action.body is not None:
        fields["body"] = _cut(action.body)
    if action.state is not None:
        fields["state"] = action.state
    if action.state_reason is not None:
        fields["state_reason"] = action.state_reason
    return fields


def _check_fields(action: CreateCheckRun | UpdateCheckRun) -> dict[str, Any]:
    """Status, output (within GitHub's limits) and, when completed, the conclusion."""
    fields: dict[str, Any] = {
        "status": action.status,
        "output": {"title": action.title[:255], "summary": action.summary[:65_000]},
    }
    if action.conclusion:
        fields["conclusion"] = action.conclusion
    return fields


def _verb(name: str) -> str:
    """PostComment -> post_comment."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _target(action: Action) -> str:
    repo = action.repository
    if isinstance(action, PostComment | AddLabels | RemoveLabel | AddAssignees):
        return f"{repo}#{action.number}"
    if isinstance(action, UpdateComment | AddReaction):
        return f"{repo}/comments/{action.comment_id}"
    if isinstance(action, CreateCheckRun):
        return f"{repo}@{action.head_sha}/{action.name}"
    if isinstance(action, UpdateCheckRun):
        return f"{repo}/check-runs/{action.check_run_id}"
    if isinstance(action, CreateBranch | AdvanceBranch):
        return f"{repo}:refs/heads/{action.branch}"
    if isinstance(action, OpenPullRequest):
        return f"{repo}:{action.head}->{action.base}"
    if isinstance(action, RequestReviewers | SubmitReview | UpdateReview):
        return f"{repo}#{action.number}"
    if isinstance(action, DispatchWorkflow):
        return f"{repo}/workflows/{action.workflow}@{action.ref}"
    if isinstance(action, CreateDeployment):
        return f"{repo}/deployments/{action.environment}@{action.ref}"
    if isinstance(action, CreateDeploymentStatus):
        return f"{repo}/deployments/{action.deployment_id}"
    if isinstance(action, CreateIssue):
        return f"{repo}/issues"
    if isinstance(action, UpdateIssue):
        return f"{repo}#{action.number}"
    return f"{repo}/runs/{action.run_id}"
