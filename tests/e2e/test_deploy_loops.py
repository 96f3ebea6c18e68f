"""The deploy and monitor agents end to end: real functions, emulators, GitHub and App Engine sandboxes.

Every scenario the issue names, played through the webhook, the orchestrator and the agents with
the test's clock (`tests/support/world.py`): a merge becomes a release that waits for its required
check, builds a version without traffic, smoke-tests it on its own URL, moves traffic step by step
while the monitor's ticks and the sandbox's request counts say how it does, and ends live or
rolled back, with GitHub's deployment statuses telling the same story.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from functions.deploy_agent.release import version_id
from shared.errors import RetryableError
from tests.support.world import REPO, World, world

pytestmark = pytest.mark.emulators

SERVICE = "widgets"
OLD = "v-old"
OUTAGE_TITLE = "Incident"  # the monitor's issue title starts so (functions/monitor_agent/incidents.py)
START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)

POLICY = """\
version: 1
agents:
  deploy: true
deploy:
  service: widgets
  smoke:
    - path: {smoke}
  canary_steps: [10, 50, 100]
  analysis_minutes: 5
  min_requests: 20
  watch_minutes: 15
tests:
  required_checks: [ci]
monitor:
  health:
    - path: /health
  incident:
    open_after: 3
    close_after: 2
    update_minutes: 15
"""


@pytest.fixture
def w(env, project):
    with world(env, project, start=START) as the_world:
        control = the_world.control
        for service, version in (("default", "v1"), (SERVICE, OLD)):
            control.create_version(service, {"id": version, "runtime": "python312"})
        the_world.pump()
        yield the_world


def _policy(w: World, smoke: str = "/health") -> None:
    w.github.set_file(REPO, ".github/agent-ops.yml", POLICY.format(smoke=smoke))


def _merge(w: World, branch: str, text: str) -> tuple[int, str]:
    w.github.push_commit(REPO, branch, {f"app/{branch}.py": text}, message=f"change {branch}")
    pull = w.github.open_pull(REPO, branch, f"Change {branch}", author="bob")
    w.pump()
    sha = w.github.merge(REPO, pull["number"], actor="alice")
    w.pump()
    return int(pull["number"]), sha


def _statuses(w: World, deployment_id: int) -> list[str]:
    """The deployment's statuses, oldest first, as GitHub lists them."""
    app = w.services.github_app()
    client = app.client_for("deploy", 77, ["widgets"])
    answer = client.request("GET", f"/repos/{REPO}/deployments/{deployment_id}/statuses")
    return [status["state"] for status in reversed(answer)]


def _issues(w: World, prefix: str) -> list[dict]:
    """Issues (not pull requests) whose title starts with `prefix`, open or closed."""
    client = w.services.github_app().client_for("deploy", 77, ["widgets"])
    answer = client.request("GET", f"/repos/{REPO}/issues", params={"state": "all", "per_page": 100})
    return [issue for issue in answer if not issue.get("pull_request") and issue["title"].startswith(prefix)]


def _minute(w: World, minutes: int = 1, traffic: int = 0) -> None:
    """Users' traffic for a while, then the clock moves on and the monitor's minute tick runs."""
    if traffic:
        w.send_traffic(SERVICE, traffic)
    w.advance(minutes=minutes)
    w.tick("monitor")
    w.pump()


def _to_canary(w: World, branch: str = "feature") -> tuple[int, str, dict]:
    _policy(w)
    number, sha = _merge(w, branch, "VALUE = 1\n")
    w.github.complete_ci(REPO, sha, "success")
    w.pump()
    _minute(w)  # the monitor's tick: the version is built; smoke tests; 10% of traffic moves
    release = w.releases()[0]
    assert release["state"] == "canary", release["timeline"]
    return number, sha, release


def test_a_healthy_release_goes_through_every_step_to_all_traffic(w):
    _policy(w)
    number, sha = _merge(w, "feature", "VALUE = 1\n")
    [release] = w.releases()
    assert release["state"] == "preflight" and release["previous_version"] == OLD
    assert "required check ci has not reported" in release["reasons"][0]
    assert _statuses(w, release["github_deployment_id"]) == ["queued"]  # GitHub shows it waiting

    w.github.complete_ci(REPO, sha, "success")
    w.pump()
    release = w.releases()[0]
    # The version is created at once; the next event (here CI's check suite) finds it built.
    assert release["state"] in ("building", "canary") and release["github_deployment_id"]
    _minute(w)
    release = w.releases()[0]
    assert release["state"] == "canary" and release["traffic"] == 10
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {OLD: 0.9, release["version"]: 0.1}

    _minute(w, 5, traffic=400)
    release = w.releases()[0]
    assert release["state"] == "canary" and release["traffic"] == 50, release["timeline"][-1]
    _minute(w, 5, traffic=200)
    release = w.releases()[0]
    assert release["state"] == "watching" and release["traffic"] == 100
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {release["version"]: 1}
    for _ in range(3):
        _minute(w, 5, traffic=50)
    release = w.releases()[0]
    assert release["state"] == "succeeded", release["timeline"][-1]
    assert _statuses(w, release["github_deployment_id"]) == ["queued", "in_progress", "success"]
    steps = [entry["step"] for entry in release["timeline"]]
    assert steps[:2] == ["preflight", "preflight"] and "canary 10%" in steps and "canary 50%" in steps \
        and "watching 100%" in steps
    task = w.task(release["task_id"])
    assert task["status"] == "succeeded"
    assert release["version"] == version_id(sha, START + (release["started_at"] - START))


def test_a_failed_required_check_stops_the_release_with_the_reason_on_the_pr_and_deployment(w):
    _policy(w)
    number, sha = _merge(w, "red", "VALUE = 5\n")
    w.github.complete_ci(REPO, sha, "failure")
    w.pump()
    release = w.releases()[0]
    assert release["state"] == "failed" and release["build_id"] == ""
    assert _statuses(w, release["github_deployment_id"]) == ["queued", "failure"]
    comments = w.services.github_app().client_for("deploy", 77, ["widgets"]).request(
        "GET", f"/repos/{REPO}/issues/{number}/comments")
    assert any("required check ci is failure" in comment["body"] for comment in comments)
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {OLD: 1}
    assert [v["id"] for v in w.control.list_versions(SERVICE)["versions"]] == [OLD]


def test_a_smoke_failure_stops_the_release_before_any_traffic_moves(w):
    _policy(w, smoke="/ready")  # the new version does not serve /ready
    number, sha = _merge(w, "broken", "VALUE = 2\n")
    w.github.complete_ci(REPO, sha, "success")
    w.pump()
    _minute(w)
    release = w.releases()[0]
    assert release["state"] == "failed" and release["traffic"] == 0
    assert any("smoke /ready answered 404" in reason for reason in release["reasons"])
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {OLD: 1}
    assert _statuses(w, release["github_deployment_id"]) == ["queued", "in_progress", "failure"]
    assert w.task(release["task_id"])["status"] == "failed"

    _policy(w)  # the fix: a smoke check the service really serves; then /retry deploys again
    w.github.comment(REPO, number, "/retry", author="alice")
    w.pump()
    _minute(w)
    retried, failed = w.releases()
    assert failed["id"] == release["id"] and failed["state"] == "failed"
    assert retried["state"] == "canary" and retried["sha"] == sha and retried["id"] != release["id"]


def test_a_canary_regression_rolls_back_opens_an_incident_and_fails_the_deployment(w):
    number, sha, release = _to_canary(w)
    new = release["version"]
    w.control.set_faults(SERVICE, new, error_rate=0.5)
    _minute(w, 5, traffic=400)
    release = w.releases()[0]
    assert release["state"] in ("rolling_back", "rolled_back"), release["timeline"][-1]
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {OLD: 1}
    assert _statuses(w, release["github_deployment_id"])[-1] == "failure"
    issues = _issues(w, "Rollback of")
    assert len(issues) == 1, issues
    body = w.github.issue(REPO, issues[0]["number"])["body"]
    assert f"root cause: {sha}" in body and "| canary 10% |" in body and "error rate" in body
    assert f"#{number}" in body
    _minute(w)  # the monitor sees all traffic back on the old version
    release = w.releases()[0]
    assert release["state"] == "rolled_back"
    assert w.task(release["task_id"])["status"] == "failed"
    incident = w.services.firestore().document(f"incidents/rollback-{release['id']}").get().to_dict()
    assert incident["kind"] == "rollback" and incident["sha"] == sha


def test_the_monitor_opens_updates_and_closes_one_incident_for_an_outage(w):
    _to_canary(w)  # the deploy registered the service with the monitor
    w.control.set_faults(SERVICE, OLD, unhealthy=True)
    for _ in range(4):
        _minute(w)
    outage = _issues(w, OUTAGE_TITLE)
    assert len(outage) == 1, outage
    number = outage[0]["number"]
    for _ in range(16):
        _minute(w)
    outage = _issues(w, OUTAGE_TITLE)
    assert [i["number"] for i in outage] == [number]
    w.control.clear_faults(SERVICE, OLD)
    for _ in range(3):
        _minute(w)
    issue = w.github.issue(REPO, number)
    assert issue["state"] == "closed"
    incidents = [doc.to_dict() for doc in w.services.firestore().collection("incidents").stream()]
    closed = [doc for doc in incidents if doc["kind"] == "outage"]
    assert len(closed) == 1 and closed[0]["closed_at"] is not None and closed[0]["duration_seconds"] > 0


def test_a_crash_between_two_steps_resumes_after_redelivery(w, monkeypatch):
    """Three crashes: after GitHub created the deployment, after the build started and after App
    Engine moved the traffic, each before the release recorded it. The redelivered turns finish the
    steps, doing none twice."""
    _policy(w)
    store, appengine = w.services.deployments(), w.services.appengine()
    real_mark, real_split, real_commit = store.mark_done, appengine.set_split, store.commit
    crashes = {"deployment": 1, "build": 1, "traffic": 1}

    def crash_before_recording_the_build(release_id, seq, release, actions, now):
        if release.build_id and crashes["build"]:
            crashes["build"] -= 1
            raise RetryableError("the instance died after starting the build")
        return real_commit(release_id, seq, release, actions, now)

    def crash_after_deployment(release_id, seq, index, now, **facts):
        if facts.get("github_deployment_id") and crashes["deployment"]:
            crashes["deployment"] -= 1
            raise RetryableError("the instance died after creating the deployment")
        return real_mark(release_id, seq, index, now, **facts)

    def crash_after_split(service, allocations, *args, **kwargs):
        answer = real_split(service, allocations, *args, **kwargs)
        if crashes["traffic"]:
            crashes["traffic"] -= 1
            raise RetryableError("the instance died after moving the traffic")
        return answer

    monkeypatch.setattr(store, "mark_done", crash_after_deployment)
    monkeypatch.setattr(store, "commit", crash_before_recording_the_build)
    monkeypatch.setattr(appengine, "set_split", crash_after_split)
    number, sha = _merge(w, "feature", "VALUE = 1\n")  # the deployment is made while CI runs
    w.github.complete_ci(REPO, sha, "success")
    w.pump()
    _minute(w)
    assert crashes == {"deployment": 0, "build": 0, "traffic": 0}
    release = w.releases()[0]
    assert release["state"] == "canary" and release["traffic"] == 10
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {OLD: 0.9, release["version"]: 0.1}
    app = w.services.github_app()
    deployments = app.client_for("deploy", 77, ["widgets"]).request("GET", f"/repos/{REPO}/deployments")
    assert len(deployments) == 1 and deployments[0]["id"] == release["github_deployment_id"]
    assert _statuses(w, release["github_deployment_id"]) == ["queued", "in_progress"]
    decisions = [entry["decision"] for entry in release["timeline"]]
    assert len(decisions) == len(set(decisions)), decisions
    assert sum("smoke tests passed" in decision for decision in decisions) == 1
    assert [v["id"] for v in w.control.list_versions(SERVICE)["versions"]].count(release["version"]) == 1


def test_a_second_merge_during_a_running_deploy_waits(w):
    _number, _sha, first = _to_canary(w, "first")
    second_number, second_sha = _merge(w, "second", "VALUE = 3\n")
    w.github.complete_ci(REPO, second_sha, "success")
    w.pump()
    waiting = [t for t in w.tasks("deploy") if t["subject"] == f"merge/{second_sha}"]
    assert [t["status"] for t in waiting] == ["queued"]
    assert len(w.releases()) == 1
    _minute(w, 5, traffic=400)
    _minute(w, 5, traffic=200)
    for _ in range(3):
        _minute(w, 5, traffic=50)
    releases = w.releases()
    assert {r["state"] for r in releases if r["id"] == first["id"]} == {"succeeded"}
    second = [r for r in releases if r["sha"] == second_sha]
    assert len(second) == 1 and second[0]["previous_version"] == first["version"]


def _live(w: World) -> dict:
    _number, _sha, release = _to_canary(w)
    _minute(w, 5, traffic=400)
    _minute(w, 5, traffic=200)
    for _ in range(3):
        _minute(w, 5, traffic=50)
    release = w.releases()[0]
    assert release["state"] == "succeeded", release["timeline"][-1]
    return release


def test_a_human_rolls_a_live_release_back_with_a_comment(w):
    release = _live(w)
    w.github.comment(REPO, release["pull_number"], "/rollback", author="alice")
    w.pump()
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {OLD: 1}
    _minute(w)
    release = w.releases()[0]
    assert release["state"] == "rolled_back" and "manual rollback by @\u200balice" in release["reasons"][0]
    assert _statuses(w, release["github_deployment_id"])[-1] == "failure"
    assert len(_issues(w, "Rollback of")) == 1
    [task] = w.tasks("deploy", "rollback")
    assert task["status"] == "succeeded"


def test_the_operator_rolls_a_service_back_from_the_cli(w, monkeypatch, capsys):
    from shared import cli

    release = _live(w)
    monkeypatch.setattr(cli, "load_services", lambda: w.services)
    assert cli.main(["deploy", "rollback", SERVICE]) == 0
    assert "Rolling back widgets" in capsys.readouterr().out
    w.pump()
    _minute(w)
    assert w.releases()[0]["state"] == "rolled_back"
    assert w.control.get_service(SERVICE)["split"]["allocations"] == {OLD: 1}
    assert cli.main(["deploy", "list", "--service", SERVICE]) == 0
    listing = capsys.readouterr().out
    assert release["id"] in listing and "rolled_back" in listing


def test_a_hold_stops_a_release_where_it_is_and_says_so_until_it_is_lifted(w):
    number, sha, release = _to_canary(w)
    w.github.comment(REPO, number, "/hold waiting for the launch", author="alice")
    w.pump()
    for _ in range(2):
        _minute(w, 5, traffic=400)
    held = w.releases()[0]
    assert (held["state"], held["traffic"]) == ("canary", 10)  # the ticks moved nothing
    # The orchestrator defers every wake of a held task (audited), and its reply to /hold is on the PR.
    comments = w.services.github_app().client_for("deploy", 77, ["widgets"]).request(
        "GET", f"/repos/{REPO}/issues/{number}/comments")
    assert any("no waiting step continues until `/unhold`" in c["body"] for c in comments)
    w.github.comment(REPO, number, "/unhold", author="alice")
    w.pump()
    _minute(w, 5, traffic=400)
    assert w.releases()[0]["traffic"] == 50
