"""Cold start of the webhook ingress: a fresh instance's time to its first 202.

    python -m bench.cold_start [--runs 5]

With both emulators running and the topology provisioned, it starts `github_webhook` fresh (the
same `python -m functions_framework` command as `make run`) `--runs` times, and for each measures,
from Popen: when the port first accepts a connection, and when the first signed delivery, sent on
that very connection, is answered 202. Then it explains the time:

- `python -X importtime -c "import main"` (same environment), the top 15 modules by cumulative
  import time; then the same for what the first request imports lazily (the Google clients);
- in a fresh interpreter, step by step: `import main`, the framework's app, the handler, each client
  library's import and client construction, the first request (first RPCs) and a warm one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.webhook_load import (
    ROOT,
    Payload,
    Stack,
    headers,
    interruptible,
    payloads,
    serve_webhook,
    stop_process,
)
from shared.local import emulators

TARGET_SECONDS = 1.5


@dataclass
class ColdStart:
    listening: float  # s from Popen to the first accepted connection
    first_202: float  # s from Popen to the first 202
    status: int
    warm_ms: float  # the second delivery's latency on the same connection


def _connect(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"github_webhook exited with {process.returncode} before serving")
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except (ConnectionRefusedError, TimeoutError):
            time.sleep(0.005)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(30.0)
        return sock
    raise RuntimeError(f"github_webhook did not listen on port {port} within {timeout:.0f}s")


def _post(conn: http.client.HTTPConnection, payload: Payload) -> int:
    conn.request("POST", "/", body=payload.body, headers=headers(payload, str(uuid.uuid4())))
    response = conn.getresponse()
    response.read()
    return response.status


def cold_start(stack: Stack, payload: Payload) -> ColdStart:
    port = emulators.free_port()
    env = stack.function_env()
    started = time.perf_counter()
    process = serve_webhook(env, port, stack.logs / "github_webhook-cold.log")
    try:
        sock = _connect(port, process)
        listening = time.perf_counter() - started
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.sock = sock  # the request goes out on the connection that was first accepted
        status = _post(conn, payload)
        first = time.perf_counter() - started
        sent = time.perf_counter()
        _post(conn, payload)
        warm_ms = (time.perf_counter() - sent) * 1000
        conn.close()
        return ColdStart(listening, first, status, warm_ms)
    finally:
        stop_process(process)


# --------------------------------------------------------------------------------------------
# Where the time goes

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)")


def import_times(env: dict[str, str], code: str) -> list[tuple[str, int, int, int]]:
    """(module, self us, cumulative us, depth) per import line of `python -X importtime -c code`."""
    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
    if process.returncode != 0:
        raise RuntimeError(f"importtime run failed: {process.stderr[-2000:]}")
    rows = []
    for line in process.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            depth = (len(match.group(3)) - 1) // 2
            rows.append((match.group(4), int(match.group(1)), int(match.group(2)), depth))
    return rows


def split_after(rows: list[tuple[str, int, int, int]], module: str) -> tuple[list, list]:
    """Rows up to and including the top-level import of `module`, and the rest."""
    for index, (name, _, _, depth) in enumerate(rows):
        if name == module and depth == 0:
            return rows[: index + 1], rows[index + 1:]
    return rows, []


def import_table(rows: list[tuple[str, int, int, int]], top: int = 15) -> str:
    lines = ["| module | depth | self ms | cumulative ms |", "|---|---|---|---|"]
    for name, self_us, cumulative, depth in sorted(rows, key=lambda r: -r[2])[:top]:
        lines.append(f"| `{name}` | {depth} | {self_us / 1000:.1f} | {cumulative / 1000:.1f} |")
    total = sum(cumulative for _, _, cumulative, depth in rows if depth == 0)
    lines.append(f"| **all top-level imports** | | | **{total / 1000:.1f}** |")
    return "\n".join(lines)


# Runs in a fresh interpreter with the function's environment. Each step is timed on its own.
STEPS = r"""
import json, sys, time
marks = []
clock = time.perf_counter
def step(name, since):
    marks.append((name, (clock() - since) * 1000))
t = clock(); import main; step("import main (functions_framework, flask, shared.bootstrap)", t)
t = clock()
import functions_framework
app = functions_framework.create_app(target="github_webhook", source="main.py")
step("functions_framework.create_app (loads main.py as the source)", t)
t = clock()
from shared.bootstrap import services
s = services(); s.webhook(); s.webhook_secrets()
step("Config.from_env, logging, WebhookHandler", t)
t = clock(); import google.cloud.firestore; step("import google.cloud.firestore", t)
t = clock(); s.firestore(); s.ledger(); step("firestore.Client() + ledger", t)
t = clock(); from google.cloud import pubsub_v1; step("import google.cloud.pubsub_v1", t)
t = clock(); s.publisher(); step("PublisherClient() on a gRPC channel", t)
import hashlib, hmac, uuid
body = open(sys.argv[1], "rb").read()
secret = s.config.webhook_secret.encode()
headers = {"X-GitHub-Event": "push", "X-GitHub-Hook-ID": "123456", "Content-Type": "application/json",
           "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}
client = app.test_client()
statuses = []
for name in ("first request: claim create + publish + mark_published (first RPCs)",
             "second request (warm)"):
    t = clock()
    response = client.post("/", data=body, headers={**headers, "X-GitHub-Delivery": str(uuid.uuid4())})
    step(name, t)
    statuses.append(response.status_code)
print(json.dumps({"marks": marks, "statuses": statuses}))
"""


def steps(env: dict[str, str], body_path: Path) -> tuple[list[tuple[str, float]], list[int]]:
    process = subprocess.run(
        [sys.executable, "-c", STEPS, str(body_path)], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )
    if process.returncode != 0:
        raise RuntimeError(f"step timing failed: {process.stderr[-2000:]}")
    data = json.loads(process.stdout.strip().splitlines()[-1])
    return [(name, ms) for name, ms in data["marks"]], data["statuses"]


def interpreter_start(env: dict[str, str]) -> float:
    """ms for `python -c pass` with this environment (the floor under every cold start)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, env=env, check=True)
    return (time.perf_counter() - started) * 1000


# --------------------------------------------------------------------------------------------


def _summary(values: Sequence[float]) -> str:
    return (f"{statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes to start (5)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if args.runs <= 0:
        parser.error("--runs must be positive")
    with interruptible():
        try:
            return _run(args)
        except KeyboardInterrupt:
            print("interrupted; every child process was stopped", file=sys.stderr)
            return 130


def _run(args: argparse.Namespace) -> int:
    with Stack(args.log_level, keep_logs=args.keep_logs) as stack:
        signed = {p.event: p for p in payloads(stack.secret)}
        env = stack.function_env()
        print(f"project {stack.project}; {args.runs} cold starts", file=sys.stderr)
        runs = [cold_start(stack, signed["push"]) for _ in range(args.runs)]
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(signed["push"].body)
            body.flush()
            step_runs = [steps(env, Path(body.name)) for _ in range(min(args.runs, 3))]
        rows = import_times(env, "import main")
        lazy_rows = import_times(
            env,
            "import main\nfrom shared.bootstrap import services\n"
            "s = services(); s.webhook(); s.webhook_secrets(); s.ledger(); s.publisher()",
        )
        _, lazy_rows = split_after(lazy_rows, "main")
        bare = statistics.median(interpreter_start(env) for _ in range(3))

    ok = all(r.status == 202 for r in runs) and all(
        status == 202 for _, statuses in step_runs for status in statuses)
    print(f"## Cold start: Popen to first 202 ({args.runs} runs, LOG_LEVEL={args.log_level})\n")
    print("| measure | median | min | max |")
    print("|---|---|---|---|")
    print(f"| port accepts a connection (s) | {_summary([r.listening for r in runs])} |")
    print(f"| first 202 (s) | {_summary([r.first_202 for r in runs])} |")
    print(f"| first request, from connect to 202 (s) | "
          f"{_summary([r.first_202 - r.listening for r in runs])} |")
    print(f"| second request on the same connection (ms) | {_summary([r.warm_ms for r in runs])} |")
    print(f"\nStatuses of the first deliveries: {', '.join(str(r.status) for r in runs)}. "
          f"Bare interpreter start (`python -c pass`): {bare:.0f} ms.")
    median_first = statistics.median(r.first_202 for r in runs)
    verdict = "met" if median_first < TARGET_SECONDS and ok else "not met"
    print(f"Target: first 202 under {TARGET_SECONDS:g} s (median): {verdict}.\n")

    print(f"## Step by step in one fresh interpreter (median of {len(step_runs)})\n")
    print("| step | ms |")
    print("|---|---|")
    names = [name for name, _ in step_runs[0][0]]
    medians = [statistics.median(run[0][i][1] for run in step_runs) for i in range(len(names))]
    for name, value in zip(names, medians, strict=True):
        print(f"| {name} | {value:.0f} |")
    print(f"| **sum** | **{sum(medians[:-1]):.0f}** (without the warm request) |")
    imports_ms = medians[0] + medians[3] + medians[5]
    clients_ms = medians[2] + medians[4] + medians[6]
    print(f"\n`import main`: {medians[0]:.0f} ms. What the first request adds before its RPCs: "
          f"{medians[3] + medians[5]:.0f} ms importing the Google client libraries and "
          f"{clients_ms:.0f} ms building config, handler and clients; its RPCs then take "
          f"{medians[7]:.0f} ms. Imports are {imports_ms:.0f} ms in all.\n")

    print('## `python -X importtime -c "import main"`: top 15 by cumulative time\n')
    print(import_table(rows))
    print("\n## Imported lazily by the first request (ledger and publisher): top 15 by cumulative time\n")
    print(import_table(lazy_rows))
    print("\n(`depth` 0 is a top-level import; deeper rows are counted inside their parents. "
          "importtime itself adds overhead, so its totals exceed the step timings.)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

