"""Check runs keyed by external_id: one run per task, even when a response is lost."""

from __future__ import annotations

import json

import requests

from shared.github.checks import create_check_run_once
from tests.support import openapi
from tests.unit.test_github_rest import scripted

SHA = "a" * 40


LISTED = openapi.example("GET", f"/repos/o/r/commits/{SHA}/check-runs", 200)["check_runs"][0]


def run(external_id: str, run_id: int = 5) -> dict:
    """GitHub's documented check run, as ours: our name, our external id."""
    return {**LISTED, "id": run_id, "name": "agent-ops/test", "external_id": external_id, "head_sha": SHA}


def test_existing_run_is_reused_not_duplicated():
    client, adapter, _ = scripted([(200, {}, {"total_count": 1, "check_runs": [run("task-1")]})])
    assert create_check_run_once(client, "o/r", SHA, "agent-ops/test", "task-1")["id"] == 5
    assert [r.method for r in adapter.sent] == ["GET"]


def test_new_run_is_created_with_its_external_id():
    client, adapter, _ = scripted([
        (200, {}, {"total_count": 1, "check_runs": [run("another-task")]}),
        (201, {}, run("task-1", 9)),
    ])
    created = create_check_run_once(client, "o/r", SHA, "agent-ops/test", "task-1", status="in_progress")
    assert created["id"] == 9
    post = adapter.sent[1]
    assert post.method == "POST" and post.path_url == "/repos/o/r/check-runs"
    assert json.loads(post.body)["external_id"] == "task-1"


def test_lost_response_is_resolved_by_looking_up_instead_of_posting_again():
    client, adapter, _ = scripted([
        (200, {}, {"total_count": 0, "check_runs": []}),
        requests.ConnectionError("connection reset after the request was sent"),
        (200, {}, {"total_count": 1, "check_runs": [run("task-1", 11)]}),
    ])
    created = create_check_run_once(client, "o/r", SHA, "agent-ops/test", "task-1")
    assert created["id"] == 11
    assert [r.method for r in adapter.sent] == ["GET", "POST", "GET"]  # one POST only
