"""The pull-request agents' loop, end to end, timed: label -> pull request -> CI -> both gates.

Starts `agentops local up` (emulators, every function, the GitHub sandbox) on free ports, then, as
the demo organisation's people, labels `--issues` issues in `octo/gadgets` one after another, each
with a patch in its body. For each it measures, from the label:

- claim: the code agent's status comment is on the issue;
- pull request: the agent's pull request is open, with its reviewers asked;
- gates: from the moment CI reports (a workflow run with a coverage artifact) until both
  `agent-ops/tests` and `agent-ops/qa` have completed;

and counts the GitHub REST requests the system made per issue (from the sandbox's request log).
Prints a table, and `--json PATH` writes it. Run from the repository root:

    .venv/bin/python -m bench.agent_loop --issues 5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPO = "octo/gadgets"


def free_base(count: int) -> int:
    from tests.e2e.test_local_up import free_run

    return free_run(count)


def until(what: str, condition: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")


def patch(n: int) -> str:
    return (f"Add module {n}.\n\n```diff\n--- /dev/null\n+++ b/lib/bench_{n}.py\n@@ -0,0 +1 @@\n"
            f"+VALUE = {n}\n--- /dev/null\n+++ b/tests/test_bench_{n}.py\n@@ -0,0 +1 @@\n+x = {n}\n```\n")


COVERAGE = json.dumps({"meta": {"version": "7.6.1"}, "files": {}, "totals": {"covered_lines": 9,
                                                                           "num_statements": 10}})


def one_issue(control: Any, n: int) -> dict[str, float]:
    state = control.state
    requests_before = state()["requests_served"]
    issue = int(control.open_issue(REPO, f"Bench {n}", patch(n), author="bob")["number"])
    start = time.monotonic()
    control.add_label(REPO, issue, "agent-task", actor="alice")

    def comments() -> list[dict[str, Any]]:
        return [c for c in state()["comments"] if c["repo"] == REPO and c["issue_number"] == issue]

    until("the claim", lambda: any("agent-ops:code:" in c["body"] for c in comments()))
    claimed = time.monotonic() - start
    until("the pull request", lambda: any("Opened #" in c["body"] for c in comments()))
    opened = time.monotonic() - start
    pull = next(p for p in state()["pulls"] if p["repo"] == REPO
                and str(p["head_ref"]).startswith(f"agent/{issue}-"))
    ci = time.monotonic()
    control.run_workflow(REPO, "ci", pull["head_sha"], artifacts={"coverage": {"coverage.json": COVERAGE}})

    def gates_done() -> bool:
        runs = [r for r in state()["check_runs"] if r["head_sha"] == pull["head_sha"]
                and r["name"] in ("agent-ops/tests", "agent-ops/qa") and r["status"] == "completed"]
        return len(runs) == 2

    until("both gates", gates_done)
    gated = time.monotonic() - ci
    time.sleep(2)  # let the last turns finish before counting
    requests = state()["requests_served"] - requests_before
    return {"claim_s": claimed, "pull_request_s": opened, "gates_s": gated, "github_requests": requests}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issues", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from sandbox.github.control import SandboxControl

    base = free_base(14)
    state = Path(tempfile.mkdtemp(prefix="agent-loop-"))
    command = [sys.executable, "-m", "shared.cli", "local", "up", "--project", f"bench-{base}",
               "--port", str(base), "--consumer-port", str(base + 1), "--pubsub-port", str(base + 9),
               "--firestore-port", str(base + 10), "--github-port", str(base + 11),
               "--appengine-port", str(base + 12), "--llm-port", str(base + 13), "--state-dir", str(state)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, env={**env, "LOG_LEVEL": "WARNING"})
    try:
        for line in process.stdout:
            if line.strip() == "ready":
                break
        else:
            print("agentops local up did not get ready", file=sys.stderr)
            return 1
        control = SandboxControl(f"http://127.0.0.1:{base + 11}")
        rows = []
        for n in range(1, args.issues + 1):
            rows.append(one_issue(control, n))
            print(f"issue {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()), flush=True)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    print(f"\n{'measure':<16}{'median':>10}{'max':>10}")
    for key in rows[0]:
        values = [row[key] for row in rows]
        print(f"{key:<16}{statistics.median(values):>10.2f}{max(values):>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
