"""The daily metrics job, the weekly report and the dashboard over two weeks of records, measured.

Starts the Firestore emulator alone, seeds `--days` days over `--repos` repositories through the
stores the functions write with, and then times, each several times (median):

1. `MetricsJob.compute_day` for yesterday (and, apart, its `gather`, the Firestore reads);
2. `run_daily` with all 7 earlier days missing (the heal: 8 days computed from one read);
3. the weekly report's inputs and Markdown, as `agentops report weekly` without `--post`;
4. the dashboard's overview page, `GET /` in process (`Services.dashboard()`, what `main.dashboard` serves).

Seeded per day: 1,440 monitor ticks (`probe_production`, one a minute), about 40 agent tasks
(queued, dispatched, running, then a result), and per repository about 4 releases a week (one
rolled back, with its incident), a few outages, and a scout scan every 4 hours with its CI runs and
coverage. The first monitor tick goes through `FirestoreTasks` as the orchestrator and the monitor
write it; the other ticks are that document again with its id, subject, message and times moved
(written in batches: 20,000 ticks through three transactions each would take longer than the
benchmark may). Everything else goes through the real stores, one call at a time.

Documents read are counted in process: every snapshot a query's `stream` yields and every
snapshot `Client.get_all` returns (a `DocumentReference.get` is a `get_all` of one; a missing
document counts too, as Firestore bills it). GitHub is not configured, so the pull-request figures
(review times, lead times from first commit) are "no data". Run from the repository root:

    .venv/bin/python -m bench.metrics_job --days 14 --repos 5
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.local import emulators

NOW = datetime(2026, 12, 1, 0, 15, tzinfo=UTC)  # the daily tick: 00:15 UTC
INSTALLATION = 77
AGENT_TASKS = (  # per day: agent, kind, how many, minutes it takes, cost
    ("code", "implement_issue", 8, 30, 3.0),
    ("test", "test_pull_request", 12, 9, 0.0),
    ("qa", "review_pull_request", 12, 6, 0.5),
    ("deploy", "deploy_merge", 4, 25, 0.0),
    ("scout", "scan_repository", 4, 2, 0.0),
)


# ---- counting reads -------------------------------------------------------------------------------


class ReadCounter:
    """Documents returned to this process by queries (`Query.stream`) and lookups (`Client.get_all`),
    by collection id."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._patched: list[tuple[Any, str, Any]] = []

    def add(self, collection: str, n: int = 1) -> None:
        with self._lock:
            self.counts[collection] += n

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def __enter__(self) -> ReadCounter:
        from google.cloud.firestore_v1.client import Client
        from google.cloud.firestore_v1.query import Query

        counter = self
        stream, get_all = Query.stream, Client.get_all

        def counted_stream(query: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            name = query._parent.id
            for snapshot in stream(query, *args, **kwargs):
                counter.add(name)
                yield snapshot

        def counted_get_all(client: Any, references: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            for snapshot in get_all(client, references, *args, **kwargs):
                counter.add(snapshot.reference.parent.id)
                yield snapshot

        for owner, name, value in ((Query, "stream", counted_stream), (Client, "get_all", counted_get_all)):
            self._patched.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, value in reversed(self._patched):
            setattr(owner, name, value)


# ---- seeding --------------------------------------------------------------------------------------


def _moved(value: Any, delta: timedelta, words: dict[str, str]) -> Any:
    if isinstance(value, datetime):
        return value + delta
    if isinstance(value, str):
        for old, new in words.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {key: _moved(item, delta, words) for key, item in value.items()}
    if isinstance(value, list):
        return [_moved(item, delta, words) for item in value]
    return value


def seed_monitor_ticks(client: Any, start: datetime, minutes: int) -> int:
    """One tick through the real stores, then the same document for every other minute."""
    from functions.orchestrator.core import route_tick
    from shared.task_store import DispatchPolicy, FirestoreTasks

    tasks = FirestoreTasks(client)

    def spec_at(at: datetime) -> tuple[Any, str]:
        message = f"tick-{at:%Y%m%d%H%M}"
        return route_tick("monitor", message, at)[0], message

    first, first_message = spec_at(start)
    tasks.begin_dispatch(first, DispatchPolicy(), start + timedelta(seconds=1))
    tasks.finish_dispatch(first.task_id, first_message, start + timedelta(seconds=2))
    tasks.record_result(first.task_id, "monitor", 1, "succeeded",
                        "probed 6 services: all healthy; 1 active release watched, no regression",
                        start + timedelta(seconds=5))
    template = client.collection("tasks").document(first.task_id).get().to_dict()
    batch, pending = client.batch(), 0
    for minute in range(1, minutes):
        at = start + timedelta(minutes=minute)
        spec, message = spec_at(at)
        words = {first.task_id: spec.task_id, first.subject: spec.subject, first_message: message}
        batch.set(client.collection("tasks").document(spec.task_id),
                  _moved(template, at - start, words))
        pending += 1
        if pending == 500:
            batch.commit()
            batch, pending = client.batch(), 0
    if pending:
        batch.commit()
    return minutes


def seed_agent_tasks(client: Any, start: datetime, days: int, repos: list[str], rng: random.Random) -> int:
    from shared.ports import TaskSpec
    from shared.task_store import DispatchPolicy, FirestoreTasks

    tasks = FirestoreTasks(client)
    n = 0
    for day in range(days):
        midnight = start + timedelta(days=day)
        for agent, kind, count, minutes, cost in AGENT_TASKS:
            for i in range(count):
                n += 1
                repository = repos[(n + i) % len(repos)]
                number = 1000 + n
                at = midnight + timedelta(minutes=rng.randrange(8 * 60, 20 * 60))
                key = "issue_number" if kind == "implement_issue" else "pull_number"
                spec = TaskSpec(task_id=f"bench-{kind}-{n}", kind=kind, agent=agent, repository=repository,
                                installation_id=INSTALLATION, subject=f"{kind.replace('_', ' ')} #{number}",
                                source=f"delivery/bench-{n}", inputs={key: number})
                begun = tasks.begin_dispatch(spec, DispatchPolicy(), at)
                if str(getattr(begun.outcome, "value", begun.outcome)) != "dispatch":
                    continue
                tasks.finish_dispatch(spec.task_id, f"message-{n}", at + timedelta(seconds=2))
                tasks.record_result(spec.task_id, agent, 1, "running", "working on it",
                                    at + timedelta(minutes=1))
                outcome = rng.choices(("succeeded", "failed", "blocked"), (85, 10, 5))[0]
                details = {"cost": cost} if cost else {}
                tasks.record_result(spec.task_id, agent, 1, outcome, f"{kind}: {outcome}",
                                    at + timedelta(minutes=minutes), details)
    return n


def seed_releases(client: Any, start: datetime, days: int, repos: list[str],
                  rng: random.Random) -> tuple[int, int]:
    """About 4 releases per repository and week, the second of each week rolled back (with its
    incident), and an outage per repository every 10 days."""
    from functions.deploy_agent.canary import DeployPlan
    from functions.deploy_agent.store import DeployStore
    from functions.monitor_agent.store import MonitorStore
    from shared.local import history

    deploys, monitor = DeployStore(client), MonitorStore(client)
    releases = incidents = 0
    for r, repository in enumerate(repos):
        service = repository.split("/")[1]
        for day in range(days):
            week_day = (day + r) % 7
            if week_day not in (0, 2, 4, 5):
                continue
            days_ago = (NOW.date() - (start + timedelta(days=day)).date()).days
            outcome = "rolled_back" if week_day == 2 else "succeeded"
            sha = f"{r:02x}{day:04x}{rng.getrandbits(32):08x}"
            item = history.DemoRelease(repository, service, days_ago, rng.randrange(9, 18), sha,
                                       500 + day * 10 + r, outcome, rng.uniform(2, 30))
            release, change = history._release(item, NOW)
            doc = deploys.create(release, DeployPlan(), task_id=f"bench-deploy-{sha}",
                                 installation_id=INSTALLATION, change=change)
            releases += 1
            if outcome == "rolled_back":
                opened = doc["timeline"][-1]["at"]
                incident = f"rollback:{repository.replace('/', ':')}:{service}:{sha}"
                monitor.record_incident(incident, repository, service, "rollback", opened,
                                        release_id=str(doc["id"]), sha=sha)
                monitor.close_incident(incident, opened + timedelta(minutes=rng.randrange(10, 60)))
                incidents += 1
        for day in range(r, days, 10):
            opened = start + timedelta(days=day, hours=rng.randrange(0, 24))
            incident = f"outage:{repository.replace('/', ':')}:{service}:{day}"
            monitor.record_incident(incident, repository, service, "outage", opened)
            monitor.close_incident(incident, opened + timedelta(minutes=rng.randrange(5, 90)))
            incidents += 1
    return releases, incidents


def seed_scans(client: Any, start: datetime, days: int, repos: list[str], rng: random.Random) -> int:
    """A scan every 4 hours per repository, with the CI runs of the day before it and the coverage."""
    from functions.repo_scout import health
    from functions.repo_scout.store import ScoutStore
    from shared.task_store import REPOS, repo_doc_id

    store = ScoutStore(client)
    scans = 0
    for r, repository in enumerate(repos):
        client.collection(REPOS).document(repo_doc_id(repository)).set(
            {"full_name": repository, "installed": True, "installation_id": INSTALLATION}, merge=True)
        runs: list[dict[str, Any]] = []  # a CI run about every 2 hours
        moment = start - timedelta(days=1)
        while moment < NOW:
            moment += timedelta(minutes=rng.randrange(60, 180))
            conclusion = rng.choices(("success", "failure", "cancelled"), (88, 10, 2))[0]
            runs.append({"run_id": len(runs) + 1000 * r, "workflow": "ci",
                         "head_sha": f"{rng.getrandbits(40):010x}", "conclusion": conclusion,
                         "status": "completed", "actor": rng.choice(("alice", "code")),
                         "created_at": moment - timedelta(minutes=8), "updated_at": moment})
        items = [("dependabot_alert", "1", "medium", "requests: a vulnerable version is pinned"),
                 ("stale_pr", "98", "low", "Pull request #98 has had no activity for 30 days")]
        findings = [health.finding(repository, *item) for item in items]
        scored = health.score(findings)
        rate = rng.uniform(60, 85)
        for n in range(days * 6):
            at = start + timedelta(hours=4 * n, minutes=2)
            if n % 6 == 3:
                rate = min(100.0, max(0.0, rate + rng.uniform(-1.5, 2.0)))
            scan_id = f"scan-{at:%Y%m%dT%H%M}"
            recent = [run for run in runs if at - timedelta(days=1) <= run["updated_at"] <= at]
            scan = {"scan_id": scan_id, "repository": repository, "scanned_at": at, "score": scored.score,
                    "reasons": list(scored.reasons), "api_calls": 9, "rest_calls": 7, "rest_not_modified": 5,
                    "coverage": {"line_rate": round(rate, 2), "branch": "main",
                                 "at": at - timedelta(hours=n % 6), "sha": f"cov{n // 6:04d}"},
                    "ci": {"runs_30d": len(recent), "success_rate": 0.9, "last_green_at": at},
                    "ci_runs": recent, "unknown": [], "notes": [],
                    "facts": {"files": [f"src/module_{i}.py" for i in range(150)],
                              "workflows": ["ci"], "default_branch": "main"}}
            store.save_scan(repository, scan, findings, now=at, quiet=True, issue_number=None,
                            scout={"last_scan_id": scan_id})
            scans += 1
    return scans


# ---- measuring ------------------------------------------------------------------------------------


def measure(runs: int, fn: Callable[[], Any], counter: ReadCounter,
            before: Callable[[], None] | None = None) -> dict[str, Any]:
    times, reads, result = [], [], None
    for _ in range(runs):
        if before is not None:
            before()
        counter.take()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
        reads.append(counter.take())
    last = reads[-1]
    return {"seconds": [round(t, 3) for t in times], "median_seconds": round(statistics.median(times), 3),
            "reads": sum(last.values()), "reads_by_collection": dict(sorted(last.items())), "result": result}


def _reads_note(row: dict[str, Any]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(row["reads_by_collection"].items(),
                                                                 key=lambda item: -item[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_job", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=14, help="days of records to seed")
    parser.add_argument("--repos", type=int, default=5, help="repositories")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rng = random.Random(20261201)
    repos = [f"octo/service-{i + 1}" for i in range(args.repos)]
    start = (NOW - timedelta(days=args.days)).replace(hour=0, minute=0)
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as logs:
        firestore = emulators.firestore(emulators.free_port(), Path(logs))
        firestore.start()
        try:
            env = {"GOOGLE_CLOUD_PROJECT": f"bench-{uuid.uuid4().hex[:8]}",
                   "FIRESTORE_EMULATOR_HOST": firestore.host,
                   "GITHUB_WEBHOOK_SECRET": uuid.uuid4().hex}
            rows, seeded = run(env, start, args, repos, rng)
        finally:
            firestore.stop()
    total = round(time.perf_counter() - started_all, 1)
    print()
    print(table(rows, seeded, args, total))
    if args.json:
        out = {"days": args.days, "repos": args.repos, "seeded": seeded, "total_seconds": total,
               "rows": [{key: value for key, value in row.items() if key != "result"} for row in rows]}
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


def run(env: dict[str, str], start: datetime, args: argparse.Namespace, repos: list[str],
        rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from functions.metrics import METRICS, weekly
    from functions.metrics import job as metrics_job
    from shared.bootstrap import Services
    from shared.config import Config

    services = Services(Config.from_env(env), clock=lambda: NOW)
    client = services.firestore()
    seeded: dict[str, Any] = {}
    began = time.perf_counter()
    minutes = int((NOW - start).total_seconds() // 60)
    ticks = threading.Thread(target=lambda: seeded.update(monitor_ticks=seed_monitor_ticks(client, start,
                                                                                          minutes)))
    ticks.start()  # the ticks' batches alongside the other records, one call at a time
    seeded["agent_tasks"] = seed_agent_tasks(client, start, args.days, repos, rng)
    seeded["releases"], seeded["incidents"] = seed_releases(client, start, args.days, repos, rng)
    seeded["scans"] = seed_scans(client, start, args.days, repos, rng)
    ticks.join()
    seeded["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps({"seeded": seeded}), flush=True)

    job = metrics_job.from_services(services)
    yesterday = NOW.date() - timedelta(days=1)
    report = weekly.from_services(services)
    monday = weekly.report_monday(NOW)

    def drop_metrics() -> None:
        for snap in client.collection(METRICS).stream():
            snap.reference.delete()

    def dashboard() -> Callable[[], dict[str, Any]]:
        from werkzeug.test import EnvironBuilder
        from werkzeug.wrappers import Request

        handler = services.dashboard()  # what main.dashboard serves

        def get() -> dict[str, Any]:
            body, status, _headers = handler(Request(EnvironBuilder(path="/").get_environ()))
            return {"status": status, "bytes": len(body.encode())}
        return get

    gathers: list[float] = []  # how long each of the job's `gather` (its Firestore reads) took
    gather = job.gather
    notes: list[str] = []  # the last gather's notes (what could not be read)

    def timed_gather(windows: Any) -> Any:
        began = time.perf_counter()
        try:
            found = gather(windows)
            notes[:] = found.notes
            return found
        finally:
            gathers.append(time.perf_counter() - began)
    job.gather = timed_gather  # type: ignore[method-assign]
    report.job = job  # the same job the report's `from_services` builds, with its `gather` timed

    rows = []
    with ReadCounter() as counter:
        def row(what: str, fn: Callable[[], Any], before: Callable[[], None] | None = None,
                note: Callable[[dict[str, Any]], str] = lambda _row: "") -> dict[str, Any]:
            gathers.clear()
            found = {"what": what, **measure(args.runs, fn, counter, before)}
            if gathers:
                found["gather_median_seconds"] = round(statistics.median(gathers), 3)
            found["notes"] = ((f"`gather` (the reads) {found['gather_median_seconds']:.2f} s of it; "
                               if gathers else "") + note(found))
            rows.append(found)
            print(json.dumps({key: value for key, value in found.items() if key != "result"}, default=str),
                  flush=True)
            return found

        row("1. `compute_day(yesterday)`", lambda: job.compute_day(yesterday, NOW),
            note=lambda found: (_reads_note(found) + "; " + metrics_job.summary(found["result"])
                                + "; " + "; ".join(notes)))
        row("2. `run_daily`, 7 earlier days missing (heal)", lambda: job.run_daily(NOW), before=drop_metrics,
            note=lambda found: f"{len(found['result'])} days computed; " + _reads_note(found))
        job.run_daily(NOW)  # the days of the earlier week still missing are written by the first report

        def weekly_markdown() -> int:
            return len(report.markdown(report.build_inputs(monday, NOW)))
        row(f"3. weekly report inputs + Markdown (week of {monday})", weekly_markdown,
            note=lambda found: f"{found['result']} bytes of Markdown; " + _reads_note(found))
        get = dashboard()
        get()  # the first request builds the services and imports the templates
        row("4. dashboard `GET /` (overview)", get,
            note=lambda found: f"HTTP {found['result']['status']}, {found['result']['bytes']} bytes; "
            + _reads_note(found) + "; " + dashboard_tasks(client))
    return rows, seeded


def dashboard_tasks(client: Any) -> str:
    """Which of the recent tasks the overview got: its query's cap, and the span of `updated_at`."""
    from functions.dashboard.reader import MAX_TASKS, DashboardReader

    recent = DashboardReader(client, lambda: datetime.now(UTC)).snapshot().recent_tasks
    times = sorted(doc["updated_at"] for doc in recent if isinstance(doc.get("updated_at"), datetime))
    agents = Counter(str(doc.get("agent") or "") for doc in recent)
    span = f"updated {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M}" if times else "none"
    return (f"its recent tasks ({len(recent)} read, the cap is {MAX_TASKS}): {span}, "
            + ", ".join(f"{name} {count}" for name, count in agents.most_common()))


def table(rows: list[dict[str, Any]], seeded: dict[str, Any], args: argparse.Namespace, total: float) -> str:
    lines = [f"Seeded {args.days} days over {args.repos} repositories in {seeded['seconds']} s: "
             f"{seeded['monitor_ticks']} monitor ticks, {seeded['agent_tasks']} agent tasks, "
             f"{seeded['releases']} releases, {seeded['incidents']} incidents, "
             f"{seeded['scans']} scout scans. "
             f"Whole run {total} s.", "",
             f"| what | wall time, median of {args.runs} (s) | documents read | notes |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['what']} | {row['median_seconds']:.2f} | {row['reads']} | {row['notes']} |")
    lines += ["", "Documents read: snapshots yielded by `Query.stream` and returned by `Client.get_all` "
              "(missing documents included), in the last run of each. GitHub is not configured: "
              "pull-request figures (reviews, lead times) are no data."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
