"""Actions are data; one executor applies them to GitHub.

The executor gives every action an idempotency key, skips a key that the audit trail already holds
(so a redelivered message does not comment twice), honours dry-run, and records each action in
`audit` with a link to what it made. Dry-run, audit and once-only effects come from this one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
class AddReaction:
    repository: str
    comment_id: int
    content: str  # +1, -1, laugh, confused, heart, hooray, rocket, eyes
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


Action = PostComment | AddReaction | CreateCheckRun | UpdateCheckRun


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
        self, action: Action, installation_id: int, task_id: str = "", delivery_id: str = ""
    ) -> dict[str, Any] | None:
        """Apply one action once. Returns GitHub's answer, or None when skipped or refused."""
        audit = self._audit()
        if audit.has(action.key):
            log.info("action already applied", extra={"task_id": task_id, "outcome": "duplicate"})
            return None
        name = type(action).__name__

        def done(outcome: str, **facts: Any) -> None:
            audit.record(key=action.key, actor=self._actor, action=_verb(name), subject=_target(action),
                         outcome=outcome, repository=action.repository, task_id=task_id,
                         delivery_id=delivery_id, **facts)

        if self._dry_run:
            done("dry_run")
            return None
        client = self._client_for(installation_id, action.repository, task_id)
        try:
            answer = _perform(client, action)
        except PermanentError as exc:
            # Refused by GitHub (gone, forbidden, invalid): say so in the audit trail and the log;
            # retrying would not help, and the message's other effects still stand.
            log.error("GitHub refused %s: %s", name, exc, extra={"task_id": task_id, "outcome": "refused"})
            done("refused", error=str(exc)[:500])
            return None
        done("ok", link=str(answer.get("html_url") or "") if isinstance(answer, dict) else "")
        return answer if isinstance(answer, dict) else {}


def _perform(client: Any, action: Action) -> Any:
    repo = action.repository
    if isinstance(action, PostComment):
        body = action.body if len(action.body) <= MAX_COMMENT else action.body[:MAX_COMMENT] + "\n\n(cut)"
        return client.request(
            "POST", f"/repos/{repo}/issues/{action.number}/comments", json_body={"body": body}
        )
    if isinstance(action, AddReaction):
        return client.request(
            "POST",
            f"/repos/{repo}/issues/comments/{action.comment_id}/reactions",
            json_body={"content": action.content},
            idempotent=True,
        )
    if isinstance(action, CreateCheckRun):
        return checks.create_check_run_once(
            client, repo, action.head_sha, action.name, action.external_id, **_check_fields(action)
        )
    return client.request(
        "PATCH", f"/repos/{repo}/check-runs/{action.check_run_id}", json_body=_check_fields(action),
        idempotent=True,
    )


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
    return {
        "PostComment": "post_comment",
        "AddReaction": "add_reaction",
        "CreateCheckRun": "create_check_run",
        "UpdateCheckRun": "update_check_run",
    }[name]


def _target(action: Action) -> str:
    if isinstance(action, PostComment):
        return f"{action.repository}#{action.number}"
    if isinstance(action, AddReaction):
        return f"{action.repository}/comments/{action.comment_id}"
    if isinstance(action, CreateCheckRun):
        return f"{action.repository}@{action.head_sha}/{action.name}"
    return f"{action.repository}/check-runs/{action.check_run_id}"
