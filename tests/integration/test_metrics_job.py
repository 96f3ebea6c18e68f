"""The daily metrics job on the Firestore emulator: records as the stores write them, `metrics/{date}` out."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone

import pytest

from functions.deploy_agent import release as rel
from functions.deploy_agent.canary import DeployPlan
from functions.metrics import METRICS, NO_DATA
from functions.metrics import job as metrics_job
from shared.ports import TaskSpec
from shared.task_store import DispatchPolicy, repo_doc_id
from tests.support.push import push

pytestmark = pytest.mark.emulators

DAY = date(2026, 11, 24)  # a Tuesday
T0 = datetime(2026, 11, 24, tzinfo=timezone.utc)
LATER = T0 + timedelta(days=2, hours=3)  # when the day is computed: well after it


def at(hours: float, day_offset: int = 0) -> datetime:
    return T0 + timedelta(days=day_offset, hours=hours)


def entry(moment: datetime, step: str, what: str = "", decision: str = "") -> rel.TimelineEntry:
    return rel.TimelineEntry(moment, step, what or step, {}, decision or "go on")


def release(repository: str, service: str, sha: str, pull: int, state: str,
            steps: list[tuple[datetime, str]]) -> rel.Release:
    base = rel.new_release(repository, service, sha, pull, "v1", steps[0][0])
    return dataclasses.replace(base, state=state,
                               timeline=tuple(entry(moment, step) for moment, step in steps))


def seed_release(services, release_: rel.Release, author: str, first_commit: datetime) -> None:
    """A release as the deploy agent writes it, with what the metrics once learned from GitHub."""
    store = services.deployments()
    store.create(release_, DeployPlan(), installation_id=77, task_id=f"deploy-{release_.sha}")
    store.commit(release_.id, 0, release_, [], release_.timeline[-1].at)
    store.update(release_.id, change={"author": author, "first_commit_at": first_commit,
                                      "first_commit_source": "commits", "pull_created_at": first_commit})


def seed_task(services, task_id: str, agent: str, kind: str, start: datetime, end: datetime,
              status: str = "succeeded", cost: float = 0.0) -> None:
    """A task through the orchestrator's own store: queued, dispatched, then its agent's result."""
    tasks = services.tasks()
    spec = TaskSpec(task_id, kind, agent, "octo/widgets", 77, f"issue/{task_id}", "delivery/d", {})
    tasks.begin_dispatch(spec, DispatchPolicy(), start)
    tasks.finish_dispatch(task_id, "m-1", start)
    tasks.record_result(task_id, agent, 1, status, f"{status} in the end", end,
                        {"cost": cost} if cost else None)


def seed_world(services) -> dict[str, str]:
    client = services.firestore()
    for name in ("octo/widgets", "octo/gadgets"):
        client.collection("repos").document(repo_doc_id(name)).set(
            {"full_name": name, "installation_id": 77, "installed": True})
    # R1: alice's change, canary at 10:05, live at 10:30; its first commit at 08:05: lead time 2 h.
    r1 = release("octo/widgets", "widgets", "a" * 40, 1, rel.SUCCEEDED, [
        (at(10), "preflight"), (at(10.02), "building"), (at(10 + 5 / 60), "smoke"),
        (at(10 + 10 / 60), "canary 10%"), (at(10.5), "watching")])
    seed_release(services, r1, "alice", at(8 + 5 / 60))
    # R2: the code agent's change, canary at 14:04, rolled back from 14:20.
    r2 = release("octo/widgets", "widgets", "b" * 40, 2, rel.ROLLED_BACK, [
        (at(14), "preflight"), (at(14.02), "building"), (at(14 + 4 / 60), "smoke"),
        (at(14 + 20 / 60), "canary 10%"), (at(14 + 22 / 60), "rolling_back")])
    seed_release(services, r2, "code", at(13))
    # R3: the day before, live at 23:00; an incident today names it.
    r3 = release("octo/gadgets", "default", "c" * 40, 3, rel.SUCCEEDED, [
        (at(22, -1), "preflight"), (at(22.1, -1), "smoke"), (at(22.5, -1), "watching")])
    seed_release(services, r3, "bob", at(20, -1))

    monitor = services.monitor_store()
    monitor.record_incident("inc-r2", "octo/widgets", "widgets", "rollback", at(14 + 20 / 60),
                            release_id=r2.id)
    monitor.close_incident("inc-r2", at(14 + 50 / 60))  # restored in 30 min
    monitor.record_incident("inc-r3", "octo/gadgets", "default", "outage", at(2), release_id=r3.id)
    monitor.close_incident("inc-r3", at(5))  # restored in 3 h
    monitor.record_incident("inc-open", "octo/gadgets", "default", "outage", at(20))  # still open

    seed_task(services, "t-code", "code", "implement_issue", at(9), at(9.5), cost=3.0)
    seed_task(services, "t-test", "test", "test_pull_request", at(11), at(11.25), status="failed")

    scans = client.collection("repos").document(repo_doc_id("octo/widgets")).collection("scans")
    # As the scout writes them: each scan repeats the baseline it found (the third one s-2's again).
    scans.document("s-1").set({"scanned_at": at(4), "coverage": {"line_rate": 80.0, "branch": "main",
                                                                "at": at(3), "sha": "0" * 40},
                               "ci_runs": []})
    scans.document("s-3").set({"scanned_at": at(20), "coverage": {"line_rate": 82.5, "branch": "main",
                                                                 "at": at(10.6), "sha": "a" * 40},
                               "ci_runs": []})
    scans.document("s-2").set({"scanned_at": at(16), "coverage": {"line_rate": 82.5, "branch": "main",
                                                                 "at": at(10.6), "sha": "a" * 40},
                               "ci_runs": [
        {"run_id": 1, "workflow": "ci", "conclusion": "success", "created_at": at(9), "updated_at": at(9.1),
         "actor": "alice", "event": "push", "head_sha": "a" * 40},
        {"run_id": 2, "workflow": "ci", "conclusion": "failure", "created_at": at(12),
         "updated_at": at(12.1), "actor": "alice", "event": "push", "head_sha": "d" * 40},
        {"run_id": 3, "workflow": "ci", "conclusion": "success", "created_at": at(13.9),
         "updated_at": at(14), "actor": "alice", "event": "push", "head_sha": "b" * 40},
        {"run_id": 4, "workflow": "ci", "conclusion": "failure", "created_at": at(10, -1),
         "updated_at": at(10.2, -1), "actor": "alice", "event": "push", "head_sha": "e" * 40},
        {"run_id": 5, "workflow": "ci", "conclusion": None, "created_at": at(15.9),
         "updated_at": at(15.9), "actor": "alice", "event": "push", "head_sha": "f" * 40},
    ]})
    return {"r1": r1.id, "r2": r2.id, "r3": r3.id}


def stored(services, day: date) -> dict | None:
    return services.firestore().collection(METRICS).document(day.isoformat()).get().to_dict()


def test_compute_day_stores_the_hand_computed_dora_figures(services):
    seed_world(services)
    job = metrics_job.from_services(services)
    job.compute_day(DAY, now=LATER)
    doc = stored(services, DAY)
    assert doc["date"] == "2026-11-24" and doc["window"]["days"] == 1
    dora = doc["dora"]["all"]
    frequency = dora["deployment_frequency"]
    # R1 succeeded; R2 reached production and was rolled back; R3 was the day before.
    assert (frequency["deploys"], frequency["production_deploys"], frequency["band"]) == (1, 2, "high")
    assert frequency["by_actor"]["human"]["deploys"] == 1 and frequency["by_actor"]["agent"]["deploys"] == 0
    lead = dora["lead_time"]
    assert (lead["changes"], lead["median_seconds"], lead["band"]) == (1, 7200.0, "elite")
    failure = dora["change_failure_rate"]
    assert (failure["deploys"], failure["failed"], failure["rate"], failure["band"]) == (2, 1, 0.5, "low")
    assert failure["by_actor"]["agent"]["failed"] == 1 and failure["by_actor"]["human"]["failed"] == 0
    restore = dora["time_to_restore"]
    assert (restore["restored"], restore["open"]) == (2, 1)
    assert restore["median_seconds"] == (1800 + 10800) / 2 and restore["band"] == "high"
    assert [item["incident_id"] for item in restore["open_incidents"]] == ["inc-open"]
    # R3's incident is attributed to bob's (human) deploy although R3 was the day before.
    assert restore["by_actor"]["human"]["restored"] == 1 and restore["by_actor"]["agent"]["restored"] == 1

    repos = {item["repository"]: item for item in doc["dora"]["repositories"]}
    assert repos["octo/widgets"]["deployment_frequency"]["deploys"] == 1
    assert repos["octo/gadgets"]["time_to_restore"]["restored"] == 1
    assert [service["service"] for service in repos["octo/widgets"]["services"]] == ["widgets"]

    build = doc["delivery"]["build"]
    assert (build["runs"], build["succeeded"], build["failed"], build["success_rate"]) == (3, 2, 1, 2 / 3)
    per_repo = {item["repository"]: item for item in doc["delivery"]["repositories"]}
    coverage = per_repo["octo/widgets"]["coverage"]
    assert (coverage["latest"], coverage["samples"], coverage["trend"]) == (82.5, 2, "up")
    # R1's merge raised it: alice's (human) change, found through the release's pull request.
    assert coverage["by_actor"]["human"]["change_points"] == 2.5

    tasks = doc["agents"]["tasks"]["all"]
    assert (tasks["ended"], tasks["succeeded"], tasks["autonomous"], tasks["failed"]) == (2, 1, 1, 1)
    assert doc["agents"]["cost"]["cost_units"] == 3.0
    usage = {item["agent"]: item for item in doc["agents"]["utilisation"]}
    assert usage["code"]["busy_seconds"] == 1800.0
    assert "GitHub is not configured: no pull-request figures, no lead times" in doc["notes"]
    assert doc["inputs"]["deployments"] == 3 and doc["inputs"]["incidents"] == 3


def test_a_redelivered_tick_writes_the_same_document(services):
    seed_world(services)
    job = metrics_job.from_services(services)
    tick = datetime(2026, 11, 25, 0, 15, 2, tzinfo=timezone.utc)
    job.run_daily(tick)
    first = stored(services, DAY)
    # Work goes on after the day: a task, a release, an incident and a scan of the next morning.
    seed_task(services, "t-next", "code", "implement_issue", tick + timedelta(minutes=1),
              tick + timedelta(minutes=5))
    seed_release(services, release("octo/widgets", "widgets", "9" * 40, 9, rel.SUCCEEDED, [
        (tick + timedelta(minutes=2), "preflight"), (tick + timedelta(minutes=4), "watching")]),
        "alice", tick)
    services.monitor_store().record_incident("inc-next", "octo/widgets", "widgets", "outage",
                                             tick + timedelta(minutes=3))
    services.firestore().collection("repos").document(repo_doc_id("octo/widgets")).collection("scans") \
        .document("s-next").set({"scanned_at": tick + timedelta(minutes=6), "ci_runs": [
            {"run_id": 9, "conclusion": "success", "updated_at": tick + timedelta(minutes=5)}],
            "coverage": {"line_rate": 90.0, "at": tick + timedelta(minutes=5), "sha": "9" * 40}})
    job.run_daily(tick + timedelta(minutes=7))  # Pub/Sub delivers the same tick again, later
    assert stored(services, DAY) == first
    assert first["computed_at"] == datetime(2026, 11, 25, 0, 15, tzinfo=timezone.utc)
    assert first["final"] is False
    job.compute_day(DAY, now=LATER)  # the CLI, two days on, reading one day's span: the final figures
    final = stored(services, DAY)
    assert final["final"] is True
    assert final["computed_at"] == datetime(2026, 11, 26, 0, 15, tzinfo=timezone.utc)
    # Nothing of the day itself changed after its first tick: the same figures.
    assert [final[key] for key in ("dora", "delivery", "agents")] == \
        [first[key] for key in ("dora", "delivery", "agents")]
    job.run_daily(datetime(2026, 11, 26, 0, 15, 3, tzinfo=timezone.utc))  # the next night: final again
    assert stored(services, DAY) == final


def test_a_release_that_goes_live_after_midnight_counts_on_its_day_once_final(services):
    job = metrics_job.from_services(services)
    late = release("octo/widgets", "widgets", "d" * 40, 4, rel.SUCCEEDED, [
        (at(23.5), "preflight"), (at(23 + 50 / 60), "canary 10%"), (at(24.5), "watching")])
    seed_release(services, late, "alice", at(20))
    job.run_daily(datetime(2026, 11, 25, 0, 15, tzinfo=timezone.utc))
    provisional = stored(services, DAY)["dora"]["all"]["change_failure_rate"]
    # The night after, the day is computed again, final: the release went live at 00:30 and counts.
    job.run_daily(datetime(2026, 11, 26, 0, 15, tzinfo=timezone.utc))
    doc = stored(services, DAY)
    assert doc["final"] is True
    final = doc["dora"]["all"]["change_failure_rate"]
    assert final != provisional
    assert final["deploys"] == 1 and final["failed"] == 0


def test_a_missed_tick_is_healed_by_the_next_one(services):
    seed_world(services)
    job = metrics_job.from_services(services)
    days = [DAY - timedelta(days=back) for back in range(7)]
    job.run_daily(datetime(2026, 11, 25, 0, 15, tzinfo=timezone.utc))
    assert all(stored(services, day) is not None for day in days)
    before = stored(services, DAY - timedelta(days=3))
    # Two ticks are missed; the next one computes yesterday and the two days without a document.
    services.firestore().collection(METRICS).document(DAY.isoformat()).delete()
    services.firestore().collection(METRICS).document("2026-11-25").delete()
    done = job.run_daily(datetime(2026, 11, 27, 0, 15, tzinfo=timezone.utc))
    assert [item.date for item in done] == ["2026-11-24", "2026-11-25", "2026-11-26"]
    assert stored(services, DAY)["dora"]["all"]["deployment_frequency"]["deploys"] == 1
    assert stored(services, DAY - timedelta(days=3)) == before  # a day that had one is left alone


def test_without_any_record_every_band_says_no_data(services):
    job = metrics_job.from_services(services)
    metrics = job.compute_day(DAY, now=LATER)
    doc = stored(services, DAY)
    dora = doc["dora"]["all"]
    assert [dora[key]["band"] for key in ("deployment_frequency", "lead_time", "change_failure_rate",
                                          "time_to_restore")] == [NO_DATA] * 4
    assert doc["delivery"]["build"]["success_rate"] is None and doc["dora"]["repositories"] == []
    assert "no scout scans: build and coverage figures have no data" in doc["notes"]
    assert "no data" in metrics_job.summary(metrics)


def test_the_daily_tick_runs_the_job_in_the_orchestrator(function_client, admin, services, project):
    from functions.orchestrator import core
    from shared import topology
    from shared.messages import ScheduleTick

    published = datetime.now(timezone.utc)
    response = push(function_client("orchestrator"), project, topology.SCHEDULE_TICKS,
                    ScheduleTick("daily_metrics").encode(), publish_time=published)
    assert response.status_code == 200
    task = services.tasks().get(core.route_tick("daily_metrics", "x", published)[0].task_id)
    assert task["status"] == "succeeded", task.get("result")
    yesterday = published.date() - timedelta(days=1)
    assert task["result"]["summary"].startswith(f"metrics {yesterday}: deploys 0 (no data)")
    assert all(stored(services, yesterday - timedelta(days=back)) is not None for back in range(7))


def test_scans_are_read_without_the_facts_the_metrics_do_not_use(services):
    # A scan keeps up to 500 issues, pull requests and alerts in `facts`; hundreds of scans a
    # repository, read whole, would not fit the orchestrator's memory and time.
    ref = services.firestore().collection("repos").document(repo_doc_id("octo/widgets")).collection("scans")
    coverage = {"line_rate": 80.0, "at": at(3), "sha": "0" * 40}
    ref.document("s-1").set({"scanned_at": at(4), "coverage": coverage,
                             "ci_runs": [{"run_id": 1, "conclusion": "success", "updated_at": at(3.5)}],
                             "facts": {"issues": [{"number": n, "title": "x" * 300} for n in range(500)]},
                             "scan_id": "s-1", "score": 90})
    [scan] = metrics_job.from_services(services).sources.scans("octo/widgets", at(0))
    assert set(scan) <= {"scanned_at", "coverage", "ci_runs", "_id"}
    assert scan["coverage"]["line_rate"] == 80.0 and scan["ci_runs"][0]["run_id"] == 1


def test_a_day_github_failed_for_is_computed_again_by_the_next_tick(github, services, monkeypatch):
    from shared.github.rest import RestClient

    monkeypatch.setattr(RestClient, "_wait", lambda self, seconds: None)  # the client's backoff
    client = services.firestore()
    for name in ("octo/widgets", "octo/gadgets"):
        github.add_repo(name)
        client.collection("repos").document(repo_doc_id(name)).set(
            {"full_name": name, "installation_id": github.installation_id, "installed": True})
    pull = github.open_pull("octo/widgets", "feature", "Add a thing", author="alice", files={"a.txt": "a\n"})
    github.review("octo/widgets", pull["number"], "bob", "APPROVED")
    github.merge("octo/widgets", pull["number"], actor="alice")
    today = datetime.now(timezone.utc).date()
    job = metrics_job.from_services(services)

    # GitHub answers 502 to every try of the pull requests' listing: the day is stored, partial.
    github.inject_fault("server_error", count=4, path_prefix="/repos/octo/widgets/pulls")
    tick = datetime.combine(today + timedelta(days=1), datetime.min.time(), timezone.utc) + metrics_job.SETTLE
    job.run_daily(tick)
    doc = stored(services, today)
    assert doc["partial"] is True and doc["agents"]["pull_requests"]["resolved"] == 0
    assert any(note.startswith("octo/widgets: GitHub is unavailable") for note in doc["notes"])

    # The next night, GitHub answers: the partial days (all those read with it) are computed again.
    week = [today - timedelta(days=back) for back in range(6)]
    assert job.missing(week) == sorted(week)
    done = job.run_daily(tick + timedelta(days=1))
    again = [*sorted(week), today + timedelta(days=1)]
    assert [item.date for item in done] == [day.isoformat() for day in again]
    doc = stored(services, today)
    assert doc["partial"] is False and doc["agents"]["pull_requests"]["resolved"] == 1
    assert job.missing(week) == []


def test_an_unknown_app_login_makes_the_day_partial(github, services, monkeypatch):
    # Without the App's login its pull requests would count as a human's: the day is computed again.
    from shared.github.rest import RestClient

    monkeypatch.setattr(RestClient, "_wait", lambda self, seconds: None)
    github.inject_fault("server_error", count=4, path_prefix="/app")  # GET /app, tried 4 times
    job = metrics_job.from_services(services)
    job.compute_day(DAY, now=LATER)
    doc = stored(services, DAY)
    assert doc["partial"] is True and job.missing([DAY]) == [DAY]
    assert any(note.startswith("the App's login is unknown") for note in doc["notes"])


def test_tasks_are_read_without_what_the_metrics_do_not_use(services):
    # A minute's monitor tick is a task: the weekly read spans two weeks of them, so only the fields
    # the metrics and the report use are read, not the tasks' inputs and checkpoints.
    seed_task(services, "t-code", "code", "implement_issue", at(9), at(9.5), cost=3.0)
    services.firestore().collection("tasks").document("t-code").update(
        {"checkpoint": {"plan": "x" * 50_000}, "inputs": {"issue_number": 5, "body": "y" * 50_000}})
    [doc] = metrics_job.from_services(services).sources.task_docs(at(0))
    assert "checkpoint" not in doc and "inputs" not in doc
    assert (doc["task_id"], doc["agent"], doc["cost_units"], doc["result"]["status"]) == (
        "t-code", "code", 3.0, "succeeded")
    assert [entry["to"] for entry in doc["history"]][-1] == "succeeded"
