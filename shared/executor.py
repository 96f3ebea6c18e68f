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


Action = (PostComment | UpdateComment | AddReaction | AddLabels | RemoveLabel | AddAssignees | CreateCheckRun
          | UpdateCheckRun | CreateBranch | AdvanceBranch | OpenPullRequest | RequestReviewers | SubmitReview
          | UpdateReview | DispatchWorkflow | RerunFailedJobs)

# There is deliberately no action that merges a pull request, deletes a branch or forces a push.
REVIEW_EVENTS = frozenset({"APPROVE", "REQUEST_CHANGES", "COMMENT"})


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
    client.request("POST", f"/repos/{repo}/actions/runs/{action.run_id}/rerun-failed-jobs", json_body={})
    return {}


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
    return f"{repo}/runs/{action.run_id}"
