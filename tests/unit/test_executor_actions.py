"""Every executor action sends what GitHub's REST description allows, once, audited, dry-run aware."""

from __future__ import annotations

from typing import Any

import pytest

from shared import executor as ex
from shared.errors import PermanentError, RetryableError
from shared.github.rest import ServerError
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
        if method == "GET" and path.endswith("/deployments"):
            return []
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
    (ex.CreateDeployment(REPO, "a" * 40, "production", "widgets v-1", {"release_id": "r-1"}, key="k"), "POST",
     f"/repos/{REPO}/deployments"),
    (ex.CreateDeployment(REPO, "main", "staging", "", {}, key="k"), "POST", f"/repos/{REPO}/deployments"),
    (ex.CreateDeploymentStatus(REPO, 41, "in_progress", "canary at 10%", "https://v-1-dot-widgets.example",
                               "https://github.com/octo/widgets/pull/9", key="k"), "POST",
     f"/repos/{REPO}/deployments/41/statuses"),
    (ex.CreateIssue(REPO, "Rollback of widgets v-1", "timeline", ("incident",), key="k"), "POST",
     f"/repos/{REPO}/issues"),
    (ex.UpdateIssue(REPO, 12, key="k", body="still down"), "PATCH", f"/repos/{REPO}/issues/12"),
    (ex.UpdateIssue(REPO, 12, key="k", state="closed", state_reason="completed"), "PATCH",
     f"/repos/{REPO}/issues/12"),
]


@pytest.mark.parametrize("action,method,path", ACTIONS, ids=[type(a[0]).__name__ for a in ACTIONS])
def test_each_action_sends_a_request_github_allows_once_and_audits_it(action, method, path):
    client, audit = RecordingClient(), MemoryAudit()
    executor = ex.Executor(lambda: audit, lambda *_: client, actor="code")
    assert executor.apply(action, 77, "task-1", "d-1") is not None
    assert executor.apply(action, 77, "task-1", "d-2") is None  # the same key: done already
    assert [(m, p) for m, p, _ in client.sent if m != "GET"] == [(method, path)]  # looks may come first
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


# ---- deployments and issues -------------------------------------------------------------------

def _applied(action: Any, client: RecordingClient | None = None) -> tuple[RecordingClient, MemoryAudit, Any]:
    client, audit = client or RecordingClient(), MemoryAudit()
    answer = ex.Executor(lambda: audit, lambda *_: client, actor="deploy").apply(action, 77, "task-1")
    return client, audit, answer


def test_a_deployment_skips_githubs_merge_and_checks_and_is_production():
    action = ex.CreateDeployment(REPO, "c" * 40, "production", "d" * 200, {"release_id": "r-1"}, key="d")
    client, audit, _ = _applied(action)
    (get, path, _), (post, _, body) = client.sent
    assert (get, path, post) == ("GET", f"/repos/{REPO}/deployments", "POST")
    assert body == {"ref": "c" * 40, "environment": "production", "description": "d" * 140,
                    "payload": {"release_id": "r-1"}, "auto_merge": False, "required_contexts": [],
                    "production_environment": True, "transient_environment": False}
    assert audit.records["d"]["subject"] == f"{REPO}/deployments/production@{'c' * 40}"


class Listing(RecordingClient):
    """Answers the deployments list with `existing`; the first `failures` POSTs fail with a 502."""

    def __init__(self, existing: list[dict[str, Any]], failures: int = 0) -> None:
        super().__init__()
        self.existing, self.failures = existing, failures
        self.params: list[Any] = []

    def request(self, method: str, path: str, *, json_body: Any = None, params: Any = None,
                idempotent: bool | None = None) -> Any:
        if method == "GET" and path.endswith("/deployments"):
            self.sent.append((method, path, None))
            self.params.append(params)
            return self.existing
        if method == "POST" and self.failures:
            self.failures -= 1
            self.sent.append((method, path, json_body))
            self.existing = [{"id": 8, "payload": json_body["payload"]}]  # made, though the answer was lost
            raise ServerError(f"POST {path}: 502", 502)
        return super().request(method, path, json_body=json_body, params=params, idempotent=idempotent)


def test_a_deployment_made_already_with_the_same_payload_is_not_made_again():
    existing = [{"id": 3, "payload": {"release_id": "r-0"}}, {"id": 5, "payload": {"release_id": "r-1"}}]
    client = Listing(existing)
    _, audit, answer = _applied(
        ex.CreateDeployment(REPO, "main", "production", "x", {"release_id": "r-1"}, key="d"), client)
    assert answer == existing[1] and [m for m, _, _ in client.sent] == ["GET"]
    assert client.params == [{"ref": "main", "environment": "production", "per_page": 100}]
    assert audit.records["d"]["outcome"] == "ok"


def test_a_deployment_whose_answer_was_lost_is_found_not_made_twice():
    client = Listing([], failures=1)
    _, _, answer = _applied(ex.CreateDeployment(REPO, "main", "production", "x", {"release_id": "r-2"},
                                                key="d"), client)
    assert answer["id"] == 8 and [m for m, _, _ in client.sent] == ["GET", "POST", "GET"]


def test_a_deployment_that_failed_and_is_not_there_raises_for_a_retry():
    class Failing(Listing):
        def request(self, method: str, path: str, **kwargs: Any) -> Any:
            if method == "POST":
                raise ServerError(f"POST {path}: 503", 503)
            return super().request(method, path, **kwargs)

    client, audit = Failing([]), MemoryAudit()
    executor = ex.Executor(lambda: audit, lambda *_: client)
    with pytest.raises(RetryableError):
        executor.apply(ex.CreateDeployment(REPO, "main", "production", "x", {"release_id": "r"}, key="d"), 1)
    assert audit.records == {}  # nothing recorded: the redelivered message tries again


@pytest.mark.parametrize("state,inactive", [("success", True), ("failure", False), ("queued", False),
                                            ("in_progress", False), ("inactive", False), ("error", False)])
def test_a_deployment_status_marks_older_ones_inactive_only_on_success(state, inactive):
    client, _, _ = _applied(ex.CreateDeploymentStatus(REPO, 41, state, "r" * 300, "", "", key="s"))
    [(_, _, body)] = client.sent
    assert body["auto_inactive"] is inactive and body["state"] == state and body["description"] == "r" * 140


def test_an_unknown_deployment_state_is_refused_without_a_request():
    client, audit, answer = _applied(ex.CreateDeploymentStatus(REPO, 41, "rolled_back", "", "", "", key="s"))
    assert answer is None and client.sent == [] and audit.records["s:refused"]["outcome"] == "refused"


def test_an_issue_is_opened_with_its_labels_and_its_limits():
    client, audit, answer = _applied(ex.CreateIssue(REPO, "T" * 300, "B" * 70_000, ("incident", "deploy"),
                                                    key="i"))
    [(_, _, body)] = client.sent
    assert body["title"] == "T" * 256 and body["labels"] == ["incident", "deploy"]
    assert len(body["body"]) < 65_536 and body["body"].endswith("(cut)")
    assert answer["number"] == 9 and audit.records["i"]["link"] == "https://github.com/x"


@pytest.mark.parametrize("changes,sent", [
    ({"title": "New title"}, {"title": "New title"}),
    ({"body": "updated"}, {"body": "updated"}),
    ({"state": "closed", "state_reason": "completed", "body": "closed after 12 min"},
     {"state": "closed", "state_reason": "completed", "body": "closed after 12 min"}),
    ({"state": "open", "state_reason": "reopened"}, {"state": "open", "state_reason": "reopened"}),
    ({"state": "closed", "state_reason": "not_planned"}, {"state": "closed", "state_reason": "not_planned"}),
], ids=["title", "body", "close", "reopen", "not-planned"])
def test_an_issue_update_sends_only_what_changes(changes, sent):
    client, audit, _ = _applied(ex.UpdateIssue(REPO, 12, key="u", **changes))
    [(method, path, body)] = client.sent
    assert (method, path, body) == ("PATCH", f"/repos/{REPO}/issues/12", sent)
    assert audit.records["u"]["subject"] == f"{REPO}#12"


@pytest.mark.parametrize("changes", [{"state": "resolved"}, {"state": "closed", "state_reason": "fixed"}],
                         ids=["state", "reason"])
def test_an_issue_update_with_an_unknown_state_is_refused_without_a_request(changes):
    client, audit, answer = _applied(ex.UpdateIssue(REPO, 12, key="u", **changes))
    assert answer is None and client.sent == [] and "u:refused" in audit.records
