"""The orchestrator's gated dispatch and the hash-chained audit log, on the official emulators.

    .venv/bin/python -m bench.orchestrator_load [--tasks 300] [--records 300] [--run-seconds 20]

It starts the Pub/Sub and Firestore emulators on free loopback ports, provisions the topology for a
unique project, taps the test agent's topic with a pull subscription and builds the services as a
function instance does (`Services(Config.from_env(env))`, no GitHub App: installation 0, so the
default policy applies and nothing calls GitHub). Then, with a fixed workload:

1. Dispatch: `--tasks` distinct `test_pull_request` tasks across 10 repositories, each dispatched
   with `Orchestrator.dispatch(spec)` (gate transaction, publish, finish transaction, audit record)
   by 1, 4 and 8 threads. Every run uses repositories of its own, so the default daily budget of
   50 tasks per repository never gates it.
2. Contention: the same number of tasks in one repository, 4 threads. That repository's policy
   raises its daily budget to 1000 (as `.github/agent-ops.yml` would), so every task may go.
3. Audit: `--records` appends with `FirestoreAuditLog.record` by 1 and 4 threads on one chain and by
   4 threads over 4 chains, then `verify_chains` over those chains and over every chain.

Each run is a closed loop: every thread takes the next task (or record) as soon as its last one is
done. A call that raises is tried again, up to 4 more times with a short backoff, as a Pub/Sub
redelivery would. A run is bounded in time (--run-seconds, 20): after that nothing new starts,
neither a task nor a retry; what never started is reported as such. Latency is per completed task
or record, from its first attempt to the end of its last; rates count completed ones over the run.
The stages of a dispatch are timed on the service instances, and Firestore transaction attempts
are counted (a retried attempt is one whose commit was aborted).

Afterwards every started task is read back and the tap drained: lost means the task is
`dispatched` but no message came, duplicates means more than one message for a task, "published,
not marked" a message for a task that is not `dispatched` (its finish transaction failed), and
"not dispatched" a started task whose status is not `dispatched` (it gave up).
Exits 1 when a started task was lost, duplicated or left undispatched, or a chain does not verify.
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.webhook_load import Stack, interruptible
from functions.orchestrator import core
from functions.orchestrator.handler import Turn
from shared import policy as policies
from shared import topology
from shared.audit import verify_chains
from shared.bootstrap import Services
from shared.config import Config
from shared.ports import TaskSpec

AGENT = "test"
KIND = "test_pull_request"
REPOS = 10
TRIES = 5  # one dispatch and up to 4 redeliveries
BUDGET_POLICY = "version: 1\nbudget:\n  daily_tasks: 1000\n"
TAP = "bench-tap-agent-test"
STAGES = ("begin_dispatch", "publish", "finish_dispatch", "audit")


# --------------------------------------------------------------------------------------------
# Instrumentation: time per stage and Firestore transaction attempts


class Stages:
    """Wall time per call of the orchestrator's four stages, wrapped on the service instances."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = collections.defaultdict(list)

    def wrap(self, target: Any, method: str, stage: str) -> None:
        inner = getattr(target, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                elapsed = (time.perf_counter() - start) * 1000
                with self.lock:
                    self.times[stage].append(elapsed)

        setattr(target, method, timed)

    def reset(self) -> dict[str, list[float]]:
        with self.lock:
            taken, self.times = self.times, collections.defaultdict(list)
        return taken


class Attempts:
    """Counts Firestore transaction begins, and those that retry an aborted one."""

    def __init__(self) -> None:
        from google.cloud.firestore_v1.transaction import Transaction

        self.lock = threading.Lock()
        self.begins = self.retries = 0
        inner = Transaction._begin
        counter = self

        def begin(transaction: Any, retry_id: bytes | None = None) -> None:
            with counter.lock:
                counter.begins += 1
                counter.retries += retry_id is not None
            return inner(transaction, retry_id=retry_id)

        Transaction._begin = begin  # bench-only instrumentation, this process only

    def reset(self) -> tuple[int, int]:
        with self.lock:
            taken = (self.begins, self.retries)
            self.begins = self.retries = 0
        return taken


# --------------------------------------------------------------------------------------------
# Workload


def specs(label: str, count: int, repos: Sequence[str]) -> list[TaskSpec]:
    result = []
    for n in range(count):
        repository = repos[n % len(repos)]
        number = n + 1
        head_sha = uuid.uuid5(uuid.NAMESPACE_URL, f"{label}/{n}").hex + "00000000"
        subject = f"pull/{number}@{head_sha}"
        result.append(TaskSpec(
            task_id=core.task_id(KIND, repository, subject),
            kind=KIND,
            agent=AGENT,
            repository=repository,
            installation_id=0,
            subject=subject,
            source=f"delivery/bench-{label}-{n}",
            inputs={"pull_number": number, "head_sha": head_sha, "head_ref": f"feature-{number}",
                    "base_ref": "main", "event": "pull_request", "action": "opened"},
        ))
    return result


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class Run:
    name: str
    threads: int
    count: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms per completed task or record
    started: list[Any] = field(default_factory=list)
    not_started: int = 0  # left when the run's time was up
    failed_calls: int = 0  # calls that raised and were tried again (or given up)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    gave_up: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    transactions: int = 0
    transaction_retries: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    orphans: int = 0  # published, but the task was not marked dispatched
    not_dispatched: int = 0

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else math.nan


def closed_loop(run: Run, items: Sequence[Any], call: Callable[[Any], str], seconds: float) -> None:
    """Every thread takes the next item as soon as its last one is done; retries on errors.

    After `seconds` nothing new starts, neither an item nor a retry: the run is bounded in time,
    and what was left is counted as not started (or, mid-retry, as given up).
    """
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def one(item: Any) -> None:
        if time.perf_counter() >= deadline:
            with lock:
                run.not_started += 1
            return
        begun = time.perf_counter()
        outcome = "gave up"
        for attempt in range(TRIES):
            try:
                outcome = call(item)
                break
            except Exception as exc:  # noqa: BLE001 - counted, then tried again as a redelivery would be
                with lock:
                    run.failed_calls += 1
                    run.errors[_error_name(exc)] += 1
                if time.perf_counter() >= deadline:
                    break
                time.sleep(0.05 * 2**attempt)
        elapsed = (time.perf_counter() - begun) * 1000
        with lock:
            run.started.append(item)
            run.outcomes[outcome] += 1
            if outcome == "gave up":
                run.gave_up += 1
            else:
                run.latencies.append(elapsed)

    with ThreadPoolExecutor(max_workers=run.threads) as pool:
        list(pool.map(one, items))
    run.seconds = time.perf_counter() - start


def _error_name(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("lock timeout", "Transaction lock", "contended", "Aborted", "ABORTED",
                   "being dispatched", "DeadlineExceeded", "Failed to commit"):
        if marker in text:
            return f"{type(exc).__name__} ({marker})"
    return type(exc).__name__


# --------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, stack: Stack, seconds: float) -> None:
        self.stack = stack
        self.seconds = seconds
        env = stack.function_env()
        env["LOG_LEVEL"] = "WARNING"
        self.services = Services(Config.from_env(env))
        self.orchestrator = self.services.orchestrator()
        self.stages = Stages()
        self.stages.wrap(self.services.tasks(), "begin_dispatch", "begin_dispatch")
        self.stages.wrap(self.services.tasks(), "finish_dispatch", "finish_dispatch")
        self.stages.wrap(self.services.publisher(), "publish", "publish")
        self.stages.wrap(self.services.audit(), "record", "audit")
        self.attempts = Attempts()
        assert stack.admin is not None
        stack.admin.create_pull_subscription(TAP, topology.AGENTS_BY_NAME[AGENT].topic)
        self.audit_chains: list[str] = []

    def dispatch_run(self, name: str, label: str, threads: int, count: int, repos: Sequence[str],
                     policy_text: str | None = None) -> Run:
        run = Run(name, threads, count)
        work = specs(label, count, repos)
        load = policies.parse_policy(policy_text) if policy_text else None

        def call(spec: TaskSpec) -> str:
            turn = Turn(policies={spec.repository: load}) if load is not None else None
            return self.orchestrator.dispatch(spec, turn)

        self.stages.reset()
        self.attempts.reset()
        closed_loop(run, work, call, self.seconds)
        run.stages = self.stages.reset()
        run.transactions, run.transaction_retries = self.attempts.reset()
        self._check(run, run.started)
        return run

    def _check(self, run: Run, work: Sequence[TaskSpec]) -> None:
        """Read every started task back, then drain the tap until each `dispatched` one was seen."""
        wanted = {spec.task_id for spec in work}
        client = self.services.firestore()
        refs = [client.collection("tasks").document(task_id) for task_id in sorted(wanted)]
        status = {doc.id: (doc.to_dict() or {}).get("status") for doc in client.get_all(refs)} if refs else {}
        dispatched = {task_id for task_id in wanted if status.get(task_id) == "dispatched"}
        seen: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + 15
        quiet_since = time.monotonic()
        assert self.stack.admin is not None
        while time.monotonic() < deadline:
            messages = self.stack.admin.pull_and_ack(TAP, max_messages=500)
            for message in messages:
                seen[message.attributes.get("task_id", "")] += 1
            if messages:
                quiet_since = time.monotonic()
            elif dispatched <= set(seen) and time.monotonic() - quiet_since >= 1.0:
                break  # every dispatched task's message came, and nothing more for 1 s
            else:
                time.sleep(0.05)
        run.received = sum(seen[task_id] for task_id in wanted)
        run.lost = len(dispatched - set(seen))
        run.duplicates = sum(seen[task_id] - 1 for task_id in wanted if seen[task_id] > 1)
        run.orphans = sum(1 for task_id in wanted - dispatched if seen[task_id])
        run.not_dispatched = len(wanted - dispatched)

    def audit_run(self, name: str, label: str, threads: int, count: int, chains: Sequence[str]) -> Run:
        run = Run(name, threads, count)
        self.audit_chains.extend(chains)
        audit = self.services.audit()

        def call(n: int) -> str:
            audit.record(key=f"bench:{label}:{n}", actor="bench", action="bench_append",
                         subject=f"bench/{label}/{n}", outcome="ok", repository=chains[n % len(chains)],
                         n=n, label=label)
            return "recorded"

        self.stages.reset()
        self.attempts.reset()
        closed_loop(run, range(count), call, self.seconds)
        self.stages.reset()
        run.transactions, run.transaction_retries = self.attempts.reset()
        return run

    def verify(self, chains: Sequence[str] | None) -> tuple[float, int, int, int]:
        """(seconds, chains, chains that verify, records) for the named chains, or every chain."""
        start = time.perf_counter()
        reports = verify_chains(self.services.firestore(), chains)
        seconds = time.perf_counter() - start
        return seconds, len(reports), sum(r.ok for r in reports), sum(r.records for r in reports)


def repos(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/service-{n:02d}" for n in range(count)]


# --------------------------------------------------------------------------------------------
# Output


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _errors(runs: Sequence[Run]) -> list[str]:
    lines = [f"- {run.name}, {run.threads} thread(s): " + ", ".join(
        f"{n} x {name}" for name, n in run.errors.most_common()) for run in runs if run.errors]
    return ["", "Errors raised to the caller (each was tried again while the run's time lasted):", "",
            *lines] if lines else []


def _latency(run: Run) -> str:
    lat = run.latencies
    return (f"{_ms(percentile(lat, 50))} | {_ms(percentile(lat, 95))} | {_ms(percentile(lat, 99))} | "
            f"{_ms(max(lat, default=math.nan))}")


def dispatch_table(title: str, runs: Sequence[Run]) -> list[str]:
    lines = [f"### {title}", "",
             "| run | threads | planned | dispatched | not started (time up) | tasks/s | p50 ms | p95 ms "
             "| p99 ms | max ms | calls that raised | gave up | txn attempts (aborted, retried) | received "
             "| lost | duplicates | published, not marked | not `dispatched` |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {run.name} | {run.threads} | {run.count} | {run.done} | {run.not_started} | {run.rate:.1f} | "
            f"{_latency(run)} | {run.failed_calls} | {run.gave_up} | "
            f"{run.transactions} ({run.transaction_retries}) | {run.received} | {run.lost} | "
            f"{run.duplicates} | {run.orphans} | {run.not_dispatched} |")
    lines += ["", "Time per call of each stage, mean / p95 ms (failed calls and retries included):", "",
              "| run | threads | " + " | ".join(f"`{stage}`" for stage in STAGES) + " |",
              "|---|---|" + "---|" * len(STAGES)]
    for run in runs:
        cells = []
        for stage in STAGES:
            values = run.stages.get(stage) or []
            mean = statistics.fmean(values) if values else math.nan
            cells.append(f"{_ms(mean)} / {_ms(percentile(values, 95))}")
        lines.append(f"| {run.name} | {run.threads} | " + " | ".join(cells) + " |")
    return lines + _errors(runs)


Verified = tuple[str, tuple[float, int, int, int]]


def audit_table(runs: Sequence[Run], verified: Sequence[Verified]) -> list[str]:
    lines = ["### Audit append", "",
             "| run | threads | planned | recorded | not started (time up) | records/s | p50 ms | p95 ms "
             "| p99 ms | max ms | calls that raised | gave up | txn attempts (aborted, retried) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {run.name} | {run.threads} | {run.count} | {run.done} | {run.not_started} | {run.rate:.1f} | "
            f"{_latency(run)} | {run.failed_calls} | {run.gave_up} | "
            f"{run.transactions} ({run.transaction_retries}) |")
    lines += _errors(runs)
    lines += ["", "| `verify_chains` over | chains | verified ok | records | seconds |",
              "|---|---|---|---|---|"]
    for what, (seconds, chains, ok, records) in verified:
        lines.append(f"| {what} | {chains} | {ok} | {records} | {seconds:.2f} |")
    return lines


# --------------------------------------------------------------------------------------------


def run(tasks: int, records: int, warmup: int, seconds: float) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    started = time.perf_counter()
    with Stack(log_level="WARNING") as stack:
        bench = Bench(stack, seconds)
        print(f"emulators up and topology provisioned in {time.perf_counter() - started:.1f} s", flush=True)
        if warmup:
            # The emulators are JVMs: warm their JIT (and the clients' channels) before measuring.
            bench.dispatch_run("warm-up", "warmup", 1, warmup, repos("bench-warmup", REPOS))
            bench.audit_run("warm-up", "warmup", 1, warmup, ["bench-warmup/audit"])
        dispatch = []
        for threads in (1, 4, 8):
            label = f"spread-{threads}t"
            dispatch.append(bench.dispatch_run(f"{REPOS} repos", label, threads, tasks,
                                               repos(f"bench-{label}", REPOS)))
            progress(dispatch[-1])
        contention = [bench.dispatch_run("1 repo", "hot-4t", 4, tasks, ["bench-hot/service-00"],
                                         policy_text=BUDGET_POLICY)]
        progress(contention[-1])
        audits = []
        for name, label, threads, chains in (
            ("one chain", "one-1t", 1, ["bench-audit-1t/chain"]),
            ("one chain", "one-4t", 4, ["bench-audit-4t/chain"]),
            ("4 chains", "four-4t", 4, [f"bench-audit-4c/chain-{n}" for n in range(4)]),
        ):
            audits.append(bench.audit_run(name, label, threads, records, chains))
            progress(audits[-1])
        measured = [c for c in bench.audit_chains if not c.startswith("bench-warmup")]
        verified = [("the audit runs' 6 chains", bench.verify(measured)),
                    ("every chain (the dispatches' records too)", bench.verify(None))]
        total = time.perf_counter() - started
    print()
    for line in (dispatch_table("Dispatch, tasks spread over 10 repositories", dispatch) + [""]
                 + dispatch_table("Contention, every task in one repository", contention) + [""]
                 + audit_table(audits, verified)):
        print(line)
    print(f"\nwhole run {total:.0f} s, emulators included")
    bad = any(r.lost or r.duplicates or r.not_dispatched for r in dispatch + contention)
    bad = bad or any(chains != ok for _, (_, chains, ok, _) in verified)
    return 1 if bad else 0


def progress(run: Run) -> None:
    print(f"{run.name}, {run.threads} thread(s): {run.done} of {run.count} in {run.seconds:.1f} s, "
          f"{run.failed_calls} calls raised", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks per dispatch run (300)")
    parser.add_argument("--records", type=int, default=300, help="records per audit run (300)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="warm-up dispatches and audit records, one thread (100); 0 for none")
    parser.add_argument("--run-seconds", type=float, default=20.0,
                        help="time after which a run starts nothing new (20)")
    args = parser.parse_args(argv)
    with interruptible():
        try:
            return run(args.tasks, args.records, args.warmup, args.run_seconds)
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
