"""A small, deterministic demo history for `agentops local up` (seed `demo`): two weeks of the system's
life in Firestore, so the dashboard has something to show from the first second.

Everything is written by the stores the functions use, as they write it: tasks through
`FirestoreTasks` (dispatch, result, so the agents' documents and budget counters follow), releases
through `DeployStore`, incidents through `MonitorStore`, repository health through the repo scout's
store, and `metrics/{date}` by the daily metrics job (or, where that job is not available, by the pure
`functions.metrics.daily_metrics` over the same records). Times are relative to the moment of seeding.

It is clearly a demo: every task id starts with `demo-`, every subject says "(demo history)", the
issue and pull request numbers are 100 and up (the GitHub sandbox's own are below), and the one open
task chain waits on an approval nobody gives. Document ids are fixed, so seeding again adds nothing:
the stores create each record once and keep it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

log = logging.getLogger("agentops.local")

DEMO = "(demo history)"
WIDGETS = "octo/widgets"
GADGETS = "octo/gadgets"
INSTALLATION = 77  # the GitHub sandbox's demo installation
DAYS = 14


@dataclass(frozen=True)
class DemoRelease:
    repository: str
    service: str
    days_ago: int
    hour: int
    sha: str
    pull_number: int
    outcome: str  # succeeded, rolled_back, failed (before any traffic) or preflight (in progress)
    lead_hours: float  # first commit to deploy


RELEASES: tuple[DemoRelease, ...] = (
    DemoRelease(WIDGETS, "widgets", 13, 10, "a1c0ffee0001", 101, "succeeded", 20),
    DemoRelease(GADGETS, "default", 12, 14, "b2c0ffee0002", 102, "succeeded", 30),
    DemoRelease(WIDGETS, "widgets", 11, 9, "a1c0ffee0003", 103, "succeeded", 6),
    DemoRelease(WIDGETS, "widgets", 9, 15, "a1c0ffee0004", 104, "succeeded", 12),
    DemoRelease(GADGETS, "default", 8, 11, "b2c0ffee0005", 105, "failed", 9),
    DemoRelease(WIDGETS, "widgets", 7, 13, "a1c0ffee0006", 106, "rolled_back", 4),
    DemoRelease(WIDGETS, "widgets", 6, 10, "a1c0ffee0007", 107, "succeeded", 18),
    DemoRelease(GADGETS, "default", 5, 16, "b2c0ffee0008", 108, "succeeded", 26),
    DemoRelease(WIDGETS, "widgets", 4, 9, "a1c0ffee0009", 109, "succeeded", 5),
    DemoRelease(GADGETS, "default", 3, 12, "b2c0ffee0010", 110, "succeeded", 8),
    DemoRelease(WIDGETS, "widgets", 2, 14, "a1c0ffee0011", 111, "succeeded", 3),
    DemoRelease(WIDGETS, "widgets", 1, 10, "a1c0ffee0012", 112, "succeeded", 7),
    DemoRelease(GADGETS, "default", 1, 15, "b2c0ffee0013", 113, "succeeded", 10),
    # In progress: started a few minutes ago, still in pre-flight (which holds no other release up).
    DemoRelease(WIDGETS, "widgets", 0, -1, "a1c0ffee0014", 118, "preflight", 2),
)


@dataclass(frozen=True)
class DemoTask:
    name: str  # the id is demo-<name>
    agent: str
    kind: str
    repository: str
    number: int
    days_ago: int
    hour: int
    outcome: str  # succeeded, failed, blocked; or "approval", "dependency", "hold" for an open one
    minutes: int = 12
    cost: float = 0.0
    summary: str = ""
    depends_on: tuple[str, ...] = ()


TASKS: tuple[DemoTask, ...] = (
    DemoTask("scan-widgets", "scout", "scan_repository", WIDGETS, 0, 1, 4, "succeeded", 2,
             summary="scanned: 1 moderate Dependabot alert, 1 stale pull request"),
    DemoTask("scan-gadgets", "scout", "scan_repository", GADGETS, 0, 1, 4, "succeeded", 2,
             summary="scanned: the default branch is not protected, CI failing"),
    DemoTask("implement-101", "code", "implement_issue", WIDGETS, 101, 13, 8, "succeeded", 35, 4.0,
             "opened a pull request for the issue"),
    DemoTask("implement-104", "code", "implement_issue", WIDGETS, 104, 9, 11, "succeeded", 28, 3.5,
             "opened a pull request for the issue"),
    DemoTask("implement-106", "code", "implement_issue", WIDGETS, 106, 7, 9, "failed", 40, 5.0,
             "the tests kept failing after three attempts"),
    DemoTask("implement-109", "code", "implement_issue", WIDGETS, 109, 4, 7, "succeeded", 22, 2.5,
             "opened a pull request for the issue"),
    DemoTask("implement-112", "code", "implement_issue", WIDGETS, 112, 1, 8, "succeeded", 30, 3.0,
             "opened a pull request for the issue"),
    DemoTask("test-111", "test", "test_pull_request", WIDGETS, 111, 2, 12, "succeeded", 9,
             summary="all required checks passed"),
    DemoTask("test-112", "test", "test_pull_request", WIDGETS, 112, 1, 9, "succeeded", 8,
             summary="all required checks passed"),
    DemoTask("test-113", "test", "test_pull_request", GADGETS, 113, 1, 13, "blocked", 3,
             summary="no required check is configured for the default branch"),
    DemoTask("review-112", "qa", "review_pull_request", WIDGETS, 112, 1, 9, "succeeded", 6, 0.5,
             "reviewed: no blocking finding"),
    DemoTask("deploy-111", "deploy", "deploy_merge", WIDGETS, 111, 2, 14, "succeeded", 25,
             summary="released to all traffic"),
    DemoTask("deploy-106", "deploy", "deploy_merge", WIDGETS, 106, 7, 13, "failed", 20,
             summary="rolled back: error rate above the canary's limit"),
    DemoTask("deploy-112", "deploy", "deploy_merge", WIDGETS, 112, 1, 10, "succeeded", 25,
             summary="released to all traffic"),
    # The open queue: an implementation waiting for approval, a review waiting on it, a held task.
    DemoTask("implement-120", "code", "implement_issue", WIDGETS, 120, 0, -3, "approval", cost=1.5),
    DemoTask("review-120", "qa", "review_pull_request", WIDGETS, 120, 0, -2, "dependency",
             depends_on=("demo-implement-120",)),
    DemoTask("test-121", "test", "test_pull_request", WIDGETS, 121, 0, -1, "hold"),
)

INCIDENT_ROLLBACK = "demo:rollback:octo:widgets:widgets"
INCIDENT_OUTAGE_CLOSED = "demo:outage:octo:gadgets:default"
INCIDENT_OUTAGE_OPEN = "demo:outage:octo:widgets:widgets"


def _at(anchor: datetime, days_ago: int, hour: int, minutes: int = 0) -> datetime:
    """`hour` o'clock UTC `days_ago` days before the anchor's day; a negative hour: hours before it."""
    if hour < 0:
        return anchor + timedelta(hours=hour, minutes=minutes)
    day = (anchor - timedelta(days=days_ago)).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(hours=hour, minutes=minutes)


# ---- releases and incidents ------------------------------------------------------------------------


def _release(item: DemoRelease, anchor: datetime) -> tuple[Any, dict[str, Any]]:
    from functions.deploy_agent import release as rel

    start = _at(anchor, item.days_ago, item.hour)
    if item.outcome == "preflight":
        start = anchor - timedelta(minutes=4)
    steps: list[tuple[int, str, str, dict[str, Any], str]] = [
        (0, rel.PREFLIGHT, "pre-flight checks passed", {}, "build"),
        (1, rel.BUILDING, "build succeeded", {}, "smoke test"),
        (9, rel.SMOKE, "smoke checks passed: /health 200", {"latency_ms": 84}, "canary 10%"),
    ]
    if item.outcome == "preflight":
        steps = []
        state, traffic, reasons = rel.PREFLIGHT, 0, ()
    elif item.outcome == "failed":
        steps = [steps[0], (1, rel.BUILDING, "build failed: dependency resolution", {}, "fail")]
        state, traffic, reasons = rel.FAILED, 0, ("the build failed",)
    elif item.outcome == "rolled_back":
        steps += [(14, "canary 10%", "error rate 6.1% over 5 min (limit 2%)",
                   {"error_rate": 0.061, "requests": 412}, "roll back"),
                  (15, rel.ROLLING_BACK, "traffic moved back to the previous version", {}, "rolled back")]
        state, traffic, reasons = rel.ROLLED_BACK, 0, ("error rate 6.1% above the limit of 2%",)
    else:
        steps += [(14, "canary 10%", "error rate 0.2% over 5 min", {"error_rate": 0.002, "requests": 388},
                   "canary 50%"),
                  (19, "canary 50%", "error rate 0.1% over 5 min", {"error_rate": 0.001, "requests": 1904},
                   "all traffic"),
                  (34, rel.WATCHING, "15 min healthy at 100%", {"error_rate": 0.001}, "succeed")]
        state, traffic, reasons = rel.SUCCEEDED, 100, ()
    timeline = tuple(rel.TimelineEntry(start + timedelta(minutes=minute), step, what, metrics, decision)
                     for minute, step, what, metrics, decision in steps)
    release = rel.Release(
        id=rel.release_id(item.repository, item.service, item.sha), repository=item.repository,
        service=item.service, sha=item.sha, pull_number=item.pull_number,
        version=rel.version_id(item.sha, start),
        previous_version="", state=state, started_at=start,
        step_started_at=timeline[-1].at if timeline else start,
        step=2 if traffic == 100 else 0, traffic=traffic, timeline=timeline, reasons=reasons)
    change = {"author": "code", "first_commit_at": start - timedelta(hours=item.lead_hours),
              "pull_number": item.pull_number}
    return release, change


def seed_releases(client: Any, anchor: datetime) -> list[dict[str, Any]]:
    from functions.deploy_agent.canary import DeployPlan
    from functions.deploy_agent.store import DeployStore

    store = DeployStore(client)
    docs = []
    for item in RELEASES:
        release, change = _release(item, anchor)
        docs.append(store.create(release, DeployPlan(), task_id=f"demo-deploy-{item.pull_number}",
                                 installation_id=INSTALLATION, change=change, demo=True))
    return docs


def seed_incidents(client: Any, anchor: datetime, releases: list[dict[str, Any]]) -> None:
    from functions.monitor_agent.store import MonitorStore

    store = MonitorStore(client)
    rolled = next((doc for doc in releases if doc.get("state") == "rolled_back"), None)
    if rolled is not None:
        opened = rolled["timeline"][-1]["at"]
        store.record_incident(INCIDENT_ROLLBACK, WIDGETS, "widgets", "rollback", opened,
                              release_id=str(rolled["id"]), sha=str(rolled["sha"]))
        store.close_incident(INCIDENT_ROLLBACK, opened + timedelta(minutes=42))
    opened = _at(anchor, 3, 18)
    store.record_incident(INCIDENT_OUTAGE_CLOSED, GADGETS, "default", "outage", opened)
    store.close_incident(INCIDENT_OUTAGE_CLOSED, opened + timedelta(minutes=25))
    store.record_incident(INCIDENT_OUTAGE_OPEN, WIDGETS, "widgets", "outage", anchor - timedelta(minutes=50))


# ---- tasks -----------------------------------------------------------------------------------------


def _spec(item: DemoTask) -> Any:
    from shared.ports import TaskSpec

    number_key = "issue_number" if item.kind == "implement_issue" else "pull_number"
    inputs: dict[str, Any] = {number_key: item.number} if item.number else {}
    if item.depends_on:
        inputs["depends_on"] = list(item.depends_on)
    what = f"#{item.number}" if item.number else item.repository
    return TaskSpec(task_id=f"demo-{item.name}", kind=item.kind, agent=item.agent, repository=item.repository,
                    installation_id=INSTALLATION, subject=f"{item.kind.replace('_', ' ')} {what} {DEMO}",
                    source="demo history", inputs=inputs)


def seed_tasks(client: Any, anchor: datetime) -> None:
    from shared.task_store import DispatchPolicy, FirestoreTasks

    tasks = FirestoreTasks(client)
    held = [item for item in TASKS if item.outcome == "hold"]
    for item in held:
        tasks.set_hold(item.repository, item.number, "alice", f"waiting for a design decision {DEMO}",
                       _at(anchor, item.days_ago, item.hour) - timedelta(minutes=5), True)
    for item in TASKS:
        spec = _spec(item)
        start = _at(anchor, item.days_ago, item.hour)
        if tasks.get(spec.task_id) is not None:
            continue  # seeded before: the stores keep what they wrote
        if item.outcome == "approval":
            rule = {"count": 2, "permission": "write"}
            policy = DispatchPolicy(approval_step="implement", approval_rule=rule)
            tasks.begin_dispatch(spec, policy, start)
            continue
        begun = tasks.begin_dispatch(spec, DispatchPolicy(), start)
        if item.outcome in ("dependency", "hold"):
            continue  # it waits, queued, as the gate said
        if str(getattr(begun.outcome, "value", begun.outcome)) != "dispatch":
            continue
        tasks.finish_dispatch(spec.task_id, f"demo-message-{item.name}", start + timedelta(seconds=2))
        details: dict[str, Any] = {"cost": item.cost} if item.cost else {}
        tasks.record_result(spec.task_id, item.agent, 1, item.outcome, item.summary or item.outcome,
                            start + timedelta(minutes=item.minutes), details)


# ---- repository health -----------------------------------------------------------------------------


HEALTH_FINDINGS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    # kind, identity, severity, title
    WIDGETS: (("dependabot_alert", "1", "medium", "requests: a vulnerable version is pinned"),
              ("stale_pr", "98", "low", "Pull request #98 has had no activity for 30 days")),
    GADGETS: (("no_branch_protection", "branch", "high", "The default branch main is not protected"),
              ("ci_failing", "4242", "high", "Workflow ci fails on main"),
              ("stale_issue", "77", "low", "Issue #77 has had no activity for 60 days")),
}


def seed_health(client: Any, anchor: datetime) -> None:
    from functions.repo_scout import health

    scanned_at = _at(anchor, 1, 4, 2)
    for repository, items in HEALTH_FINDINGS.items():
        findings = [health.finding(repository, kind, identity, severity, title)
                    for kind, identity, severity, title in items]
        scored = health.score(findings)
        scan_id = f"demo-{scanned_at:%Y%m%dT%H%M}"
        try:
            from functions.repo_scout.store import ScoutStore

            store = ScoutStore(client)
            if (store.repo(repository).get("health") or {}).get("scan_id"):
                continue  # scanned before
            scan = {"scan_id": scan_id, "repository": repository, "scanned_at": scanned_at,
                    "score": scored.score, "reasons": list(scored.reasons), "demo": True}
            store.save_scan(repository, scan, findings, now=scanned_at, quiet=False, issue_number=None,
                            scout={"last_scan_id": scan_id})
        except ImportError:
            from shared.task_store import REPOS, repo_doc_id

            counts = {severity: 0 for severity in ("critical", "high", "medium", "low")}
            for item in findings:
                if item.severity in counts:
                    counts[item.severity] += 1
            doc = {"score": scored.score, "reasons": list(scored.reasons), "findings_open": len(findings),
                   "by_severity": counts, "scanned_at": scanned_at, "scan_id": scan_id, "issue_number": None}
            client.collection(REPOS).document(repo_doc_id(repository)).set(
                {"full_name": repository, "health": doc}, merge=True)


# ---- metrics ---------------------------------------------------------------------------------------


def _days(anchor: datetime) -> list[date]:
    today = anchor.date()
    return [today - timedelta(days=back) for back in range(DAYS, 0, -1)]


def seed_metrics(client: Any, anchor: datetime) -> None:
    """`metrics/{date}` for each of the last DAYS days before today, as the daily job computes them."""
    try:
        from functions.metrics.job import MetricsJob
        from functions.metrics.sources import MetricsSources

        job = MetricsJob(client, MetricsSources(client), clock=lambda: anchor)
        job.compute_days(job.missing(_days(anchor)), anchor)
    except (ImportError, AttributeError, TypeError) as exc:  # no daily job here, or another one
        log.info("demo history: metrics computed without the daily job (%s)", exc)
        _pure_metrics(client, anchor)


def _pure_metrics(client: Any, anchor: datetime) -> None:
    from functions import metrics

    releases = [snap.to_dict() for snap in client.collection("deployments").stream()]
    incidents = [snap.to_dict() for snap in client.collection("incidents").stream()]
    tasks = [snap.to_dict() for snap in client.collection("tasks").stream()]
    first_commits = {str(doc["sha"]): doc["change"]["first_commit_at"] for doc in releases
                     if isinstance(doc.get("change"), dict) and doc["change"].get("first_commit_at")}
    inputs = metrics.MetricsInputs(
        deployments=[metrics.deployment_from_release_doc(doc, str((doc.get("change") or {}).get("author") or
                                                                  ""))
                     for doc in releases],
        incidents=[metrics.incident_from_doc(doc) for doc in incidents], first_commits=first_commits,
        tasks=[metrics.task_from_doc(doc) for doc in tasks])
    for day in _days(anchor):
        ref = client.collection(metrics.METRICS).document(day.isoformat())
        if ref.get().exists:
            continue
        window = metrics.day_window(day)
        known = min(anchor, window.end + timedelta(minutes=15))
        ref.set(metrics.daily_metrics(inputs, window, known).to_doc())


# ---- all of it -------------------------------------------------------------------------------------


def seed(client: Any, now: datetime | None = None, progress: Callable[[str], None] | None = None) -> None:
    """Write the demo history into the Firestore behind `client`. Seeding twice adds nothing."""
    anchor = (now or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    say = progress or (lambda _text: None)
    releases = seed_releases(client, anchor)
    seed_incidents(client, anchor, releases)
    seed_tasks(client, anchor)
    seed_health(client, anchor)
    seed_metrics(client, anchor)
    say(f"demo history: {len(RELEASES)} releases, {len(TASKS)} tasks, 3 incidents, "
        f"{len(HEALTH_FINDINGS)} repositories' health, {DAYS} days of metrics")


def seed_emulator(project: str, firestore_host: str, now: datetime | None = None,
                  progress: Callable[[str], None] | None = None) -> None:
    from shared.gcp import firestore_client

    client = firestore_client(project, firestore_host)
    try:
        seed(client, now, progress)
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()
