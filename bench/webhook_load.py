"""Load test of the webhook ingress: a constant arrival rate of signed deliveries, then a loss check.

    python -m bench.webhook_load [--rate 200] [--duration 60] [--concurrency 32] [--json PATH]
        [--warmup-seconds 10] [--log-level INFO] [--server-threads N] [--keep-logs]

It starts the official Pub/Sub and Firestore emulators on free ports, provisions the topology for a
unique project (no push subscriptions: only the ingress is measured), taps `github-events` with a
pull subscription, and serves `github_webhook` exactly as `make run` does: one
`python -m functions_framework` process (gunicorn, gthread worker).

After the first 202 it warms up with closed-loop traffic (--warmup-seconds, 10 by default): the
emulators are JVMs, and they are markedly slower until their JIT has compiled the hot paths. The
warm-up's deliveries are in the loss check but not in the latency figures.

The load is open-loop: delivery i is due at t0 + i / rate whatever happened to the others, and its
latency is measured from that due time, so a stalled server shows up as latency instead of as a
slower sender (no coordinated omission). Each worker thread has its own keep-alive connection
(http.client); the bodies are signed once, so the generator's own CPU stays small (it is reported,
with the server's, each emulator's and the rest of the machine's, from /proc).

Afterwards the subscription is drained until every accepted (202) delivery has been seen, or 60 s
pass. The exit status is 1 when any delivery was not answered 202 or was accepted but never
published.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import itertools
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import topology
from shared.config import child_environment
from shared.local import emulators, runner
from shared.local.provision import PubSubAdmin, provision
from shared.local.runner import WEBHOOK_SERVER_ENV

ROOT = Path(__file__).resolve().parents[1]
# Real payloads from GitHub's examples: a large, a medium and a small one.
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("pull_request", "opened"),
    ("issues", "labeled"),
    ("push", None),
)
TARGET_RATE = 200.0
TARGET_DURATION = 60.0
TARGET_P99_MS = 100.0
REQUEST_TIMEOUT = 10.0  # GitHub gives up on a delivery after 10 s
TAP = "bench-tap-github-events"


# --------------------------------------------------------------------------------------------
# Deliveries, signed as GitHub signs them


@dataclass(frozen=True)
class Payload:
    event: str
    action: str
    body: bytes
    signature: str


def payloads(secret: str) -> list[Payload]:
    """The example bodies, serialised and signed once: the generator only adds a delivery id."""
    from tests.support.github import example, signature

    result = []
    for event, action in EXAMPLES:
        body = json.dumps(example(event, action)).encode()
        result.append(Payload(event, action or "", body, signature(body, secret)))
    return result


def headers(payload: Payload, delivery_id: str) -> dict[str, str]:
    return {
        "X-GitHub-Event": payload.event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "123456",
        "X-Hub-Signature-256": payload.signature,
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
    }


class Client:
    """One keep-alive HTTP/1.1 connection. Not thread-safe: one per worker thread."""

    def __init__(self, port: int, timeout: float = REQUEST_TIMEOUT) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._served = 0  # requests answered on the current connection

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._served = 0
        if conn is not None:
            conn.close()

    def post(self, payload: Payload, delivery_id: str) -> tuple[int, int, str]:
        """(status, retries, error). Status 0 means no response."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            reused = self._served > 0
            try:
                self._conn.request("POST", "/", body=payload.body, headers=headers(payload, delivery_id))
                response = self._conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection before reading it
                return 0, attempt, f"{type(exc).__name__}: {exc}"
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                return 0, attempt, f"{type(exc).__name__}: {exc}"
            self._served += 1
            if response.will_close:
                self.close()
            return response.status, attempt, ""
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# The system under test: emulators, topology and one github_webhook process


class Stack:
    """Both emulators on free ports and the topology of a fresh project, stopped on exit."""

    def __init__(self, log_level: str = "INFO", server_threads: int | None = None,
                 keep_logs: bool = False) -> None:
        self.project = f"bench-{uuid.uuid4().hex[:12]}"
        self.secret = secrets.token_hex(32)
        self.log_level = log_level
        self.server_threads = server_threads
        self.keep_logs = keep_logs
        self.logs = Path(tempfile.mkdtemp(prefix="agentops-bench-"))
        self.pubsub: emulators.Emulator | None = None
        self.firestore: emulators.Emulator | None = None
        self.admin: PubSubAdmin | None = None
        self.failed = False

    def __enter__(self) -> Stack:
        try:
            ports = _free_ports(2)
            self.pubsub = emulators.pubsub(ports[0], self.logs)
            self.firestore = emulators.firestore(ports[1], self.logs)
            self.pubsub.start()
            self.firestore.start()
            self.admin = PubSubAdmin.connect(self.project, self.pubsub.host)
            provision(self.admin, endpoints={})
        except BaseException:
            self.failed = True
            self.close()
            raise
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.failed = True
        self.close()

    def close(self) -> None:
        with shielded():
            self._close()

    def _close(self) -> None:
        if self.admin is not None:
            with contextlib.suppress(Exception):
                self.admin.close()
            self.admin = None
        for emulator in (self.firestore, self.pubsub):
            if emulator is not None:
                emulator.stop()
        if self.failed or self.keep_logs:
            print(f"logs kept in {self.logs}", file=sys.stderr)
        else:
            shutil.rmtree(self.logs, ignore_errors=True)

    def function_env(self) -> dict[str, str]:
        """What `agentops local up` gives each function, for this project."""
        assert self.pubsub is not None and self.firestore is not None
        overrides = {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PUBSUB_EMULATOR_HOST": self.pubsub.host,
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "GITHUB_WEBHOOK_SECRET": self.secret,
            "LOG_LEVEL": self.log_level,
        }
        # Served as `make run` serves it: the same gunicorn workers and threads.
        overrides.update(WEBHOOK_SERVER_ENV)
        if self.server_threads:
            overrides["THREADS"] = str(self.server_threads)
        return child_environment(overrides)

    def tap(self) -> str:
        assert self.admin is not None
        self.admin.create_pull_subscription(TAP, topology.GITHUB_EVENTS)
        return TAP

    def serve(self, port: int) -> subprocess.Popen[bytes]:
        return serve_webhook(self.function_env(), port, self.logs / "github_webhook.log")


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = emulators.free_port()
        if port not in ports:
            ports.append(port)
    return ports


def serve_webhook(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """github_webhook as `make run` serves it: functions-framework, gunicorn gthread."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "functions_framework", f"--target={topology.WEBHOOK_FUNCTION}",
             "--source=main.py", "--host=127.0.0.1", f"--port={port}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while children are being stopped, so a second one (an impatient
    user, or a wrapper that signals the whole process group) cannot cut the cleanup short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own session, and everything it forked."""
    with shielded():
        _stop_process(process)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    runner.stop_process(process)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    runner.wait_for_port(port, process, "github_webhook", timeout)


MACHINE = "machine"
OTHER = "other processes on the machine"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def session_cpu_seconds(session: int) -> float | None:
    """User + system CPU of every live process in a session (Linux /proc), None elsewhere."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()  # fields[0] is field 3 (state) of proc(5)
        if int(fields[3]) == session:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy since boot (Linux /proc/stat), None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


class CpuMeter:
    """CPU seconds used by the generator (this process) and each child session over a window."""

    def __init__(self, sessions: dict[str, int]) -> None:
        self.sessions = sessions
        self._start: dict[str, float | None] = {}
        self._wall = 0.0
        self.used: dict[str, float | None] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, float | None]:
        sample: dict[str, float | None] = {"load generator": time.process_time()}
        for name, sid in self.sessions.items():
            sample[name] = session_cpu_seconds(sid)
        sample[MACHINE] = machine_busy_seconds()
        return sample

    def start(self) -> None:
        self._start = self._sample()
        self._wall = time.perf_counter()

    def stop(self) -> None:
        end = self._sample()
        self.wall = time.perf_counter() - self._wall
        self.used = {
            name: (end[name] - begin) if begin is not None and end[name] is not None else None
            for name, begin in self._start.items()
        }
        machine = self.used.pop(MACHINE)
        ours = [v for v in self.used.values() if v is not None]
        # Whatever else ran on the machine meanwhile: it competes for the same cores.
        self.used[OTHER] = max(0.0, machine - sum(ours)) if machine is not None else None


# --------------------------------------------------------------------------------------------
# The load


@dataclass
class Delivery:
    index: int
    phase: str  # "warmup" or "load"
    event: str
    delivery_id: str
    scheduled: float = 0.0  # due time, seconds after t0
    sent: float = 0.0  # when the request actually started
    done: float = 0.0  # when the whole response was read
    status: int = 0  # 0: no response
    retries: int = 0
    error: str = ""

    @property
    def latency_ms(self) -> float:
        return (self.done - self.scheduled) * 1000

    @property
    def service_ms(self) -> float:
        return (self.done - self.sent) * 1000

    @property
    def lag_ms(self) -> float:
        return (self.sent - self.scheduled) * 1000


def new_delivery(index: int, phase: str, payloads_: Sequence[Payload]) -> tuple[Delivery, Payload]:
    payload = payloads_[index % len(payloads_)]
    return Delivery(index, phase, payload.event, str(uuid.uuid4())), payload


def _send(client: Client, delivery: Delivery, payload: Payload, t0: float) -> None:
    delivery.sent = time.perf_counter() - t0
    delivery.status, delivery.retries, delivery.error = client.post(payload, delivery.delivery_id)
    delivery.done = time.perf_counter() - t0


def warm_up(clients: Sequence[Client], payloads_: Sequence[Payload], seconds: float,
            stop: threading.Event, timeout: float = 60.0) -> tuple[list[Delivery], float]:
    """One delivery until it is accepted, then closed-loop traffic on every connection.

    The closed loop (each worker sends its next delivery as soon as the last is answered) warms
    the JVM emulators' JIT and the server's code paths without building a backlog. Returns the
    deliveries and the closed-loop throughput (deliveries/s), a rough capacity figure.
    """
    deliveries: list[Delivery] = []
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        delivery, payload = new_delivery(len(deliveries), "startup", payloads_)
        _send(clients[0], delivery, payload, t0)
        deliveries.append(delivery)
        if delivery.status == 202:
            delivery.phase = "warmup"  # answers before the first 202 do not count against the run
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no 202 within {timeout:.0f}s of warm-up: last {delivery}")
        time.sleep(0.2)
    counter = itertools.count(len(deliveries))
    lock = threading.Lock()
    per_worker: list[list[Delivery]] = [[] for _ in clients]
    started = time.perf_counter()
    end = started + seconds

    def worker(slot: int, client: Client) -> None:
        first = True  # every connection sends at least one delivery, so all are open
        while not stop.is_set() and (first or time.perf_counter() < end):
            first = False
            with lock:
                index = next(counter)
            delivery, payload = new_delivery(index, "warmup", payloads_)
            delivery.scheduled = time.perf_counter() - t0
            _send(client, delivery, payload, t0)
            per_worker[slot].append(delivery)

    threads = [threading.Thread(target=worker, args=(slot, client), daemon=True)
               for slot, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.2)
    elapsed = time.perf_counter() - started
    closed = [d for batch in per_worker for d in batch]
    return deliveries + closed, (len(closed) / elapsed if elapsed and seconds > 0 else 0.0)


def constant_rate(clients: Sequence[Client], payloads_: Sequence[Payload], rate: float,
                  duration: float, stop: threading.Event) -> tuple[list[Delivery], float]:
    """Open loop: delivery i is due at t0 + i / rate; a free worker sends the next due one."""
    total = int(round(rate * duration))
    deliveries = [new_delivery(i, "load", payloads_) for i in range(total)]
    counter = itertools.count()
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.2

    def worker(client: Client) -> None:
        while not stop.is_set():
            with lock:
                index = next(counter)
            if index >= total:
                return
            delivery, payload = deliveries[index]
            delivery.scheduled = index / rate
            delay = t0 + delivery.scheduled - time.perf_counter()
            if delay > 0 and stop.wait(delay):
                return
            _send(client, delivery, payload, t0)

    threads = [threading.Thread(target=worker, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.2)  # stay responsive to Ctrl-C
    return [d for d, _ in deliveries], t0


def drain(admin: PubSubAdmin, subscription: str, expected: set[str], timeout: float = 60.0,
          settle: float = 1.0) -> tuple[collections.Counter[str], float]:
    """Pull and ack until every expected delivery id was seen (then `settle` s more) or timeout."""
    counts: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    complete_at: float | None = None
    while time.monotonic() - started < timeout:
        messages = admin.pull_and_ack(subscription, max_messages=1000, timeout=2.0)
        for message in messages:
            counts[message.attributes.get("delivery_id", "")] += 1
        if complete_at is None and expected.issubset(counts):
            complete_at = time.monotonic()
        if complete_at is not None and time.monotonic() - complete_at >= settle:
            break
        if not messages:
            time.sleep(0.05)
    return counts, time.monotonic() - started


# --------------------------------------------------------------------------------------------
# Results


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Result:
    target_rate: float
    duration: float
    concurrency: int
    log_level: str
    server_threads: int
    sent: int = 0
    accepted: int = 0
    non_202: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    achieved_rate: float = 0.0
    elapsed: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    service_p50_ms: float = 0.0
    service_p99_ms: float = 0.0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    retries: int = 0
    warmup_seconds: float = 0.0
    warmup_sent: int = 0
    warmup_non_202: int = 0
    warmup_rate: float = 0.0
    timeline: list[dict[str, float]] = field(default_factory=list)
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    drain_seconds: float = 0.0
    cpu_seconds: dict[str, float | None] = field(default_factory=dict)
    cpu_wall: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.non_202 == 0 and self.warmup_non_202 == 0 and self.sent > 0

    @property
    def meets_targets(self) -> bool:
        return (self.ok and self.achieved_rate >= 0.99 * self.target_rate
                and self.p99_ms < TARGET_P99_MS)


def summarise(result: Result, load: list[Delivery], warmup: list[Delivery], t0: float) -> None:
    answered = [d for d in load if d.done > 0]
    result.sent = len(answered)
    result.accepted = sum(1 for d in answered if d.status == 202)
    result.non_202 = len(load) - result.accepted
    statuses = collections.Counter(str(d.status) if d.status else (d.error.split(":")[0] or "not sent")
                                   for d in load)
    result.statuses = dict(statuses)
    if answered:
        result.elapsed = max(d.done for d in answered)
        result.achieved_rate = len(answered) / result.elapsed if result.elapsed else 0.0
    latencies = [d.latency_ms for d in answered]
    result.p50_ms, result.p90_ms, result.p99_ms = (percentile(latencies, p) for p in (50, 90, 99))
    result.max_ms = max(latencies, default=math.nan)
    service = [d.service_ms for d in answered]
    result.service_p50_ms, result.service_p99_ms = percentile(service, 50), percentile(service, 99)
    lags = [d.lag_ms for d in answered]
    result.lag_p99_ms, result.lag_max_ms = percentile(lags, 99), max(lags, default=math.nan)
    result.retries = sum(d.retries for d in load)
    result.timeline = timeline(answered, result.duration)
    counted = [d for d in warmup if d.phase == "warmup"]
    result.warmup_sent = len(counted)
    result.warmup_non_202 = sum(1 for d in counted if d.status != 202)


def timeline(answered: list[Delivery], duration: float) -> list[dict[str, float]]:
    """Latency per window of due time, to show transients (JIT warm-up, backlog, catch-up)."""
    width = max(1.0, round(duration / 10))
    windows: dict[int, list[float]] = collections.defaultdict(list)
    for delivery in answered:
        windows[int(delivery.scheduled // width)].append(delivery.latency_ms)
    return [{"start": key * width, "end": min((key + 1) * width, duration), "count": len(values),
             "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99), "max_ms": max(values)}
            for key, values in sorted(windows.items())]


def account(result: Result, deliveries: list[Delivery], counts: collections.Counter[str]) -> None:
    accepted = {d.delivery_id for d in deliveries if d.status == 202}
    load_ids = {d.delivery_id for d in deliveries if d.phase == "load"}
    result.received = sum(1 for key in counts if key in load_ids)
    result.lost = len(accepted - counts.keys())
    result.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    known = {d.delivery_id for d in deliveries}
    result.unexpected = sum(n for key, n in counts.items() if key not in known)


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def markdown(result: Result) -> str:
    rows = [
        ("target rate (deliveries/s)", f"{result.target_rate:g}"),
        ("achieved rate (deliveries/s)", f"{result.achieved_rate:.1f}"),
        ("duration (s)", f"{result.duration:g} scheduled, {result.elapsed:.1f} to last response"),
        ("sent", str(result.sent)),
        ("202", str(result.accepted)),
        ("non-202", str(result.non_202)
         + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(result.statuses.items()) if k != '202')})"
            if result.non_202 else "")),
        ("p50 ms", _ms(result.p50_ms)),
        ("p90 ms", _ms(result.p90_ms)),
        ("p99 ms", _ms(result.p99_ms)),
        ("max ms", _ms(result.max_ms)),
        ("received", str(result.received)),
        ("lost", str(result.lost)),
        ("duplicates", str(result.duplicates)),
    ]
    lines = ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += [
        "",
        f"Latency is from each delivery's due time to its full response. Service time (from the "
        f"actual send) p50 {_ms(result.service_p50_ms)} ms, p99 {_ms(result.service_p99_ms)} ms; "
        f"sender lag behind schedule p99 {_ms(result.lag_p99_ms)} ms, max {_ms(result.lag_max_ms)} ms. "
        f"Client concurrency {result.concurrency}, server LOG_LEVEL={result.log_level}, gunicorn "
        f"workers {WEBHOOK_SERVER_ENV['WORKERS']} x threads {result.server_threads}, "
        f"keep-alive reconnects {result.retries}. Warm-up: "
        f"{result.warmup_seconds:g} s closed loop, {result.warmup_sent} deliveries "
        f"({result.warmup_rate:.0f}/s, {result.warmup_non_202} non-202), not in the latency figures "
        f"but in the loss check. Drain took {result.drain_seconds:.1f} s"
        + (f"; {result.unexpected} unexpected messages" if result.unexpected else "") + ".",
    ]
    if len(result.timeline) > 1:
        lines += ["", "| due time (s) | deliveries | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
        lines += [f"| {w['start']:g}-{w['end']:g} | {w['count']} | {_ms(w['p50_ms'])} | "
                  f"{_ms(w['p99_ms'])} | {_ms(w['max_ms'])} |" for w in result.timeline]
    if result.cpu_seconds and result.cpu_wall:
        lines += ["", "| CPU during the measured load | CPU s | cores | ms CPU per delivery |",
                  "|---|---|---|---|"]

        def row(name: str, seconds: float | None, per_delivery: bool = True) -> str:
            if seconds is None:
                return f"| {name} | n/a | n/a | n/a |"
            per = _ms(seconds * 1000 / result.sent) if per_delivery and result.sent else "-"
            return f"| {name} | {seconds:.1f} | {seconds / result.cpu_wall:.2f} | {per} |"

        ours = {k: v for k, v in result.cpu_seconds.items() if k != OTHER}
        lines += [row(name, seconds) for name, seconds in ours.items()]
        total = sum(v for v in ours.values() if v is not None)
        lines.append(row("**benchmark total**", total))
        other = result.cpu_seconds.get(OTHER)
        if other is not None:
            lines.append(row(OTHER, other, per_delivery=False))
            lines.append(row(f"machine ({os.cpu_count()} cores)", total + other, per_delivery=False))
    verdict = "PASS" if result.ok else "FAIL"
    if result.target_rate < TARGET_RATE:
        targets = f"not exercised at {result.target_rate:g}/s"
    else:
        targets = "met" if result.meets_targets else "not met"
        if result.duration < TARGET_DURATION:
            targets += f" (run shortened to {result.duration:g} s of the {TARGET_DURATION:g} s target)"
    lines += ["", f"{verdict}: {result.lost} lost, {result.non_202 + result.warmup_non_202} non-202. "
              f"Targets ({TARGET_RATE:g}/s sustained for {TARGET_DURATION:g} s, p99 < "
              f"{TARGET_P99_MS:g} ms, zero loss): {targets}."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_load", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="deliveries per second (200)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (60)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="sender threads, one keep-alive connection each (32)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="the function's LOG_LEVEL (INFO, as `make run`)")
    parser.add_argument("--server-threads", type=int, default=int(WEBHOOK_SERVER_ENV["THREADS"]),
                        help="gunicorn threads per worker (THREADS); default: as make run serves it")
    parser.add_argument("--warmup-seconds", type=float, default=10.0,
                        help="closed-loop warm-up before the measured load, 0 for none (10)")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep emulator and function logs")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.concurrency <= 0:
        parser.error("--rate, --duration and --concurrency must be positive")
    if args.warmup_seconds < 0:
        parser.error("--warmup-seconds must not be negative")
    return args


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so every `finally` runs and every child is stopped."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> Result:
    threads = args.server_threads
    result = Result(args.rate, args.duration, args.concurrency, args.log_level, threads)
    stop = threading.Event()
    with Stack(args.log_level, args.server_threads, args.keep_logs) as stack:
        assert stack.admin is not None and stack.pubsub and stack.firestore
        subscription = stack.tap()
        port = emulators.free_port()
        clients = [Client(port) for _ in range(args.concurrency)]
        server: subprocess.Popen[bytes] | None = None
        try:
            server = stack.serve(port)
            wait_for_port(port, server)
            signed = payloads(stack.secret)
            print(f"project {stack.project}; github_webhook on port {port}; "
                  f"warming up for {args.warmup_seconds:g}s", file=sys.stderr)
            warmup, result.warmup_rate = warm_up(clients, signed, args.warmup_seconds, stop)
            result.warmup_seconds = args.warmup_seconds
            meter = CpuMeter({
                "github_webhook (functions-framework)": server.pid,
                "Pub/Sub emulator": stack.pubsub.process.pid,  # type: ignore[union-attr]
                "Firestore emulator": stack.firestore.process.pid,  # type: ignore[union-attr]
            })
            print(f"load: {args.rate:g}/s for {args.duration:g}s with {args.concurrency} senders",
                  file=sys.stderr)
            meter.start()
            try:
                load, t0 = constant_rate(clients, signed, args.rate, args.duration, stop)
            finally:
                stop.set()
            meter.stop()
            result.cpu_seconds, result.cpu_wall = meter.used, meter.wall
            summarise(result, load, warmup, t0)
            deliveries = warmup + load
            expected = {d.delivery_id for d in deliveries if d.status == 202}
            print(f"draining {subscription}: expecting {len(expected)} messages", file=sys.stderr)
            counts, result.drain_seconds = drain(stack.admin, subscription, expected, args.drain_timeout)
            account(result, deliveries, counts)
            if server.poll() is not None:
                print(f"github_webhook exited with {server.returncode}", file=sys.stderr)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({
                    "summary": asdict(result) | {"ok": result.ok, "meets_targets": result.meets_targets},
                    "deliveries": [asdict(d) for d in deliveries],
                }, indent=1, default=str))
            if not result.ok:
                stack.failed = True  # keep the logs for a look
        finally:
            with shielded():
                stop.set()
                if server is not None:
                    stop_process(server)  # before the emulators: it needs them to shut down promptly
                for client in clients:
                    client.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with interruptible():
        try:
            result = run(args)
        except KeyboardInterrupt:
            print("interrupted; every child process was stopped", file=sys.stderr)
            return 130
    print(markdown(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
