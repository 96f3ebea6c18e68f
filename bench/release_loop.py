"""A release, end to end, measured: merge -> live, and a canary regression -> rolled back.

Runs the real webhook, orchestrator, deploy and monitor agents in one process on the Pub/Sub and
Firestore emulators, the GitHub sandbox and the App Engine sandbox (`tests/support/world.py`),
with the clock turned by the benchmark: a release with three canary steps (10%, 50%, 100%), a
5-minute analysis per step and a 15-minute watch window, and users' traffic through the service's
router. For each release it reports:

- the agents' processing time (the wall time the system spent moving messages; the simulated
  minutes of analysis and watch are not waited for);
- the deploy agent's turns, and the monitor ticks it took;
- the requests the system made to GitHub, to the App Engine and Monitoring APIs, and the probes;

and, for `--rollbacks`, the time from the tick that saw the regression to all traffic back on the
previous version. Prints a table; `--json PATH` writes it. Run from the repository root:

    .venv/bin/python -m bench.release_loop --releases 3 --rollbacks 3
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from shared.local import emulators
from tests.support.world import REPO, World, world

SERVICE = "widgets"
POLICY = """\
version: 1
agents:
  deploy: true
deploy:
  service: widgets
  smoke:
    - path: /health
  canary_steps: [10, 50, 100]
  analysis_minutes: 5
  min_requests: 20
  watch_minutes: 15
"""


class RequestCounter:
    """Every HTTP request made in this process, by the base URL it went to."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._original = requests.Session.request

    def __enter__(self) -> RequestCounter:
        counter, original = self, self._original

        def counted(session: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            counter.counts["/".join(str(url).split("/")[:3])] += 1
            return original(session, method, url, *args, **kwargs)

        requests.Session.request = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        requests.Session.request = self._original  # type: ignore[method-assign]


@contextmanager
def emulator_env(logs: Path) -> Iterator[dict[str, str]]:
    pubsub = emulators.pubsub(emulators.free_port(), logs)
    firestore = emulators.firestore(emulators.free_port(), logs)
    pubsub.start()
    firestore.start()
    try:
        yield {"PUBSUB_EMULATOR_HOST": pubsub.host, "FIRESTORE_EMULATOR_HOST": firestore.host,
               "GITHUB_WEBHOOK_SECRET": uuid.uuid4().hex, "AGENTOPS_PUBLISH_TIMEOUT_SECONDS": "3"}
    finally:
        pubsub.stop()
        firestore.stop()


class Run:
    def __init__(self, w: World, counter: RequestCounter) -> None:
        self.w = w
        self.counter = counter
        self.busy = 0.0  # seconds spent pumping messages

    def pump(self) -> None:
        started = time.perf_counter()
        self.w.pump()
        self.busy += time.perf_counter() - started

    def minute(self, minutes: int = 1, traffic: int = 0) -> None:
        if traffic:
            self.w.send_traffic(SERVICE, traffic)
        self.w.advance(minutes=minutes)
        self.w.tick("monitor")
        self.pump()

    def release(self, n: int, fault: bool) -> dict[str, Any]:
        w = self.w
        before = Counter(self.counter.counts)
        deploy_turns = sum(1 for name, _ in w.handled if name == "world-agent-deploy")
        self.busy = 0.0
        w.github.push_commit(REPO, f"bench-{n}", {f"app/bench_{n}.py": f"VALUE = {n}\n"},
                             message=f"bench {n}")
        pull = w.github.open_pull(REPO, f"bench-{n}", f"Bench {n}", author="bob")
        self.pump()
        sha = w.github.merge(REPO, pull["number"], actor="alice")
        self.pump()
        ticks, rollback_seconds = 0, None
        for minutes, traffic in ((1, 0), (5, 400), (5, 200), (5, 50), (5, 50), (5, 50)):
            release = w.releases()[0]
            if release["state"] in ("succeeded", "rolled_back", "failed"):
                break
            if fault and release["state"] == "canary":
                w.control.set_faults(SERVICE, release["version"], error_rate=0.5)
                w.send_traffic(SERVICE, 400)
                started = time.perf_counter()
                self.minute(5)
                rollback_seconds = round(time.perf_counter() - started, 2)
                ticks += 1
                self.minute(1)  # the next tick confirms the traffic is back
                ticks += 1
                break
            self.minute(minutes, traffic)
            ticks += 1
        release = [r for r in w.releases() if r["sha"] == sha][0]
        spent = self.counter.counts - before
        github = sum(count for url, count in spent.items() if url == w.github.base_url)
        google = sum(count for url, count in spent.items() if url == w.appengine.url)
        probes = sum(spent.values()) - github - google
        turns = sum(1 for name, _ in w.handled if name == "world-agent-deploy") - deploy_turns
        return {"state": release["state"], "busy_seconds": round(self.busy, 2), "ticks": ticks,
                "deploy_turns": turns, "github_requests": github, "google_requests": google,
                "probes_and_traffic": probes, "rollback_seconds": rollback_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.release_loop", description=__doc__.split("\n")[0])
    parser.add_argument("--releases", type=int, default=3, help="healthy releases to measure")
    parser.add_argument("--rollbacks", type=int, default=3,
                        help="releases rolled back by a canary regression")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per sandbox request
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as logs, emulator_env(Path(logs)) as env, RequestCounter() as counter:
        project = f"bench-{uuid.uuid4().hex[:8]}"
        with world({**env, "GOOGLE_CLOUD_PROJECT": project}, project,
                   start=datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)) as w:
            for service, version in (("default", "v1"), (SERVICE, "v-old")):
                w.control.create_version(service, {"id": version, "runtime": "python312"})
            w.github.set_file(REPO, ".github/agent-ops.yml", POLICY)
            w.pump()
            run = Run(w, counter)
            for n in range(args.releases + args.rollbacks):
                fault = n >= args.releases
                row = {"release": n + 1, "kind": "rollback" if fault else "healthy", **run.release(n, fault)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| kind | releases | end state | agents' time (s) | deploy turns | ticks | GitHub requests "
             "| App Engine + Monitoring requests | traffic back after (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind in ("healthy", "rollback"):
        group = [row for row in rows if row["kind"] == kind]
        if not group:
            continue

        def median(key: str, rows: list[dict[str, Any]] = group) -> str:
            values = [row[key] for row in rows if row[key] is not None]
            return f"{statistics.median(values):g}" if values else "-"

        states = ", ".join(sorted({row["state"] for row in group}))
        lines.append(f"| {kind} | {len(group)} | {states} | {median('busy_seconds')} "
                     f"| {median('deploy_turns')} | {median('ticks')} | {median('github_requests')} "
                     f"| {median('google_requests')} "
                     f"| {median('rollback_seconds')} |")
    lines.append("")
    lines.append("Medians per release. Agents' time is wall time spent moving messages; the simulated "
                 "analysis and watch minutes are not waited for.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
