"""`agentops local up` as a user runs it: ready line, a real delivery through, single instance, Ctrl-C."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from shared.local.emulators import port_in_use
from tests.support import github

pytestmark = pytest.mark.emulators

ROOT = Path(__file__).resolve().parents[2]


def free_run(count: int) -> int:
    # Below Linux's ephemeral range (32768 and up), where outgoing connections pick their ports.
    for _ in range(200):
        base = random.randint(10000, 32000 - count)
        if not any(port_in_use(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def read_until(process: subprocess.Popen, wanted: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if line.strip() == wanted:
            return lines
    raise AssertionError(f"no {wanted!r} line; got {lines}")


@pytest.fixture
def local_up(tmp_path):
    base = free_run(11)
    ports = {"webhook": base, "consumers": base + 1, "pubsub": base + 9, "firestore": base + 10}
    project = f"e2e-{random.randint(0, 10**9)}"
    command = [sys.executable, "-m", "shared.cli", "local", "up", "--project", project,
               "--port", str(ports["webhook"]), "--consumer-port", str(ports["consumers"]),
               "--pubsub-port", str(ports["pubsub"]), "--firestore-port", str(ports["firestore"]),
               "--state-dir", str(tmp_path / "state"), "--no-sandboxes"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        yield process, command, ports, project, tmp_path / "state"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _blocked_pull_tasks(listing: str) -> int:
    return sum(1 for line in listing.splitlines() if " blocked " in line and " pull/2@" in line)


def test_local_up_serves_a_delivery_end_to_end_and_stops_cleanly(local_up):
    process, command, ports, project, state = local_up
    lines = read_until(process, "ready", timeout=120)
    assert f"webhook URL: http://127.0.0.1:{ports['webhook']}/" in lines

    # A second instance fails with a clear message, not a port traceback.
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert second.returncode == 2
    assert "already running" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout

    secret = (state / "webhook-secret").read_text().strip()
    assert oct((state / "webhook-secret").stat().st_mode)[-3:] == "600"
    body = json.dumps(github.example("pull_request", "opened")).encode()
    response = requests.post(f"http://127.0.0.1:{ports['webhook']}/", data=body, timeout=15,
                             headers=github.delivery_headers("pull_request", body, secret))
    assert response.status_code == 202, response.text

    env = {**os.environ, "GOOGLE_CLOUD_PROJECT": project,
           "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{ports['firestore']}"}
    deadline = time.monotonic() + 60
    listing = ""
    while time.monotonic() < deadline:
        listing = subprocess.run([sys.executable, "-m", "shared.cli", "tasks"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=60).stdout
        if _blocked_pull_tasks(listing) == 2 and "probe_production-" in listing:
            break
        time.sleep(0.5)
    assert "test_pull_request-" in listing and "review_pull_request-" in listing, listing
    assert _blocked_pull_tasks(listing) == 2, listing
    # The local scheduler ticks the monitor as Cloud Scheduler would; without GitHub it is blocked.
    assert "probe_production-" in listing, listing

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    time.sleep(0.5)
    still_open = [port for port in range(ports["webhook"], ports["webhook"] + 11) if port_in_use(port)]
    assert still_open == []
