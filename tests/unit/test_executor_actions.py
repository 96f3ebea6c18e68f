"""Every executor action sends what GitHub's REST description allows, once, audited, dry-run aware."""

from __future__ import annotations

from typing import Any

import pytest

from shared import executor as ex
from shared.errors import PermanentError
from tests.support.agents import MemoryAudit
from tests.support.openapi import validate_request

REPO = "octo/widgets"


class RecordingClient:
    """Validates each request against GitHub's description and answers with a small object."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, *, json_body: Any = None, params: Any = None,
                idempotent: bool | None = None) -> Any:
        validate_request(method, path, json_body)
        self.sent.append((method, path, json_body))
        if path.endswith("/labels") or "/labels/" in path:
            return [{"name": "x"}]
        return {"id": 7, "number": 9, "html_url": "https://github.com/x"}


ACTIONS = [
    (ex.PostComment(REPO, 3, "hi", key="k"), "POST", f"/repos/{REPO}/issues/3/comments"),
    (ex.UpdateComment(REPO, 44, "edited", key="k"), "PATCH", f"/repos/{REPO}/issues/comments/44"),
    (ex.AddReaction(REPO, 44, "+1", key="k"), "POST", f"/repos/{REPO}/issues/comments/44/reactions"),
    (ex.AddLabels(REPO, 3, ("agent:in-progress",), key="k"), "POST", f"/repos/{REPO}/issues/3/labels"),
    (ex.RemoveLabel(REPO, 3, "agent:in progress", key="k"), "DELETE",
     f"/repos/{REPO}/issues/3/labels/agent%3Ain%20progress"),
    (ex.AddAssignees(REPO, 3, ("agent-ops[bot]",), key="k"), "POST", f"/repos/{REPO}/issues/3/assignees"),
    (ex.UpdateCheckRun(REPO, 5, "completed", "t", "s", key="k", conclusion="success"), "PATCH",
     f"/repos/{REPO}/check-runs/5"),
    (ex.CreateBranch(REPO, "agent/3-x", "a" * 40, key="k"), "POST", f"/repos/{REPO}/git/refs"),
    (ex.AdvanceBranch(REPO, "agent/3-x", "b" * 40, key="k"), "PATCH",
     f"/repos/{REPO}/git/refs/heads/agent/3-x"),
    (ex.OpenPullRequest(REPO, "agent/3-x", "main", "Title", "Closes #3", key="k"), "POST",
     f"/repos/{REPO}/pulls"),
    (ex.RequestReviewers(REPO, 9, ("alice",), ("core",), key="k"), "POST",
     f"/repos/{REPO}/pulls/9/requested_reviewers"),
    (ex.SubmitReview(REPO, 9, "c" * 40, "COMMENT", "looks fine", key="k"), "POST",
     f"/repos/{REPO}/pulls/9/reviews"),
    (ex.UpdateReview(REPO, 9, 12, "still fine", key="k"), "PUT", f"/repos/{REPO}/pulls/9/reviews/12"),
    (ex.DispatchWorkflow(REPO, "agent.yml", "main", {"issue": "3", "branch": "agent/3-x"}, key="k"), "POST",
     f"/repos/{REPO}/actions/workflows/agent.yml/dispatches"),
    (ex.RerunFailedJobs(REPO, 77, key="k"), "POST", f"/repos/{REPO}/actions/runs/77/rerun-failed-jobs"),
]


@pytest.mark.parametrize("action,method,path", ACTIONS, ids=[type(a[0]).__name__ for a in ACTIONS])
def test_each_action_sends_a_request_github_allows_once_and_audits_it(action, method, path):
    client, audit = RecordingClient(), MemoryAudit()
    executor = ex.Executor(lambda: audit, lambda *_: client, actor="code")
    assert executor.apply(action, 77, "task-1", "d-1") is not None
    assert executor.apply(action, 77, "task-1", "d-2") is None  # the same key: done already
    assert [(m, p) for m, p, _ in client.sent] == [(method, path)]
    record = audit.records["k"]
    assert record["actor"] == "code" and record["outcome"] == "ok" and record["task_id"] == "task-1"
    assert record["action"] == ex._verb(type(action).__name__)


def test_an_advance_is_never_forced_and_no_action_can_merge_or_delete():
    client, audit = RecordingClient(), MemoryAudit()
    executor = ex.Executor(lambda: audit, lambda *_: client)
    executor.apply(ex.AdvanceBranch(REPO, "agent/1-a", "d" * 40, key="a"), 1)
    assert client.sent[0][2] == {"sha": "d" * 40, "force": False}
    names = {name.lower() for name in dir(ex)}
    assert not any(word in name for name in names for word in ("merge", "delete", "force"))


def test_dry_run_records_and_sends_nothing():
    client, audit = RecordingClient(), MemoryAudit()
    executor = ex.Executor(lambda: audit, lambda *_: client, dry_run=True)
    assert executor.apply(ex.OpenPullRequest(REPO, "agent/1-a", "main", "t", "b", key="p"), 1) is None
    assert client.sent == [] and audit.records["p:dry_run"]["outcome"] == "dry_run"
    assert executor.apply(ex.OpenPullRequest(REPO, "agent/1-a", "main", "t", "b", key="p"), 1) is None
    live = ex.Executor(lambda: audit, lambda *_: client)  # the same key, live: now it is made
    assert live.apply(ex.OpenPullRequest(REPO, "agent/1-a", "main", "t", "b", key="p"), 1) is not None
    assert audit.records["p"]["outcome"] == "ok"


def test_an_unknown_review_event_is_refused_and_recorded():
    client, audit = RecordingClient(), MemoryAudit()
    executor = ex.Executor(lambda: audit, lambda *_: client)
    assert executor.apply(ex.SubmitReview(REPO, 9, "c" * 40, "MERGE", "x", key="r"), 1) is None
    assert client.sent == [] and audit.records["r:refused"]["outcome"] == "refused"


def test_refusals_from_github_are_recorded_not_raised():
    class Refusing(RecordingClient):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            raise PermanentError("422 Can not approve your own pull request")

    audit = MemoryAudit()
    executor = ex.Executor(lambda: audit, lambda *_: Refusing())
    assert executor.apply(ex.SubmitReview(REPO, 9, "c" * 40, "APPROVE", "x", key="r"), 1) is None
    assert "own pull request" in audit.records["r:refused"]["error"]
    assert not audit.has("r")  # a later attempt may try again
    with pytest.raises(PermanentError):
        executor.apply(ex.SubmitReview(REPO, 9, "c" * 40, "APPROVE", "x", key="r"), 1, raise_refused=True)
