"""One `agentops local up` for the tests that need the whole system (tests/e2e/test_local_up.py and
test_dashboard_browser.py): starting it costs minutes on a small machine, so they share it.

The browser test runs right before test_local_up.py's, which stops the system as a user does (Ctrl-C)
and checks that everything went away.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.local.emulators import port_in_use

ROOT = Path(__file__).resolve().parents[2]
PORTS = 12  # webhook, seven consumers, dashboard, a spare, Pub/Sub, Firestore
SHARED_BY = ("test_dashboard_browser.py", "test_local_up.py")  # in this order, one after the other


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


@dataclass
class LocalUp:
    process: subprocess.Popen
    command: list[str]
    ports: dict[str, int]
    project: str
    state: Path
    lines: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="package")
def local_up(tmp_path_factory: pytest.TempPathFactory):
    """`agentops local up --no-sandboxes` with the demo history, once it printed `ready`."""
    base = free_run(PORTS)
    ports = {"webhook": base, "consumers": base + 1, "dashboard": base + 8, "pubsub": base + 10,
             "firestore": base + 11}
    project = f"e2e-{random.randint(0, 10**9)}"
    state = tmp_path_factory.mktemp("local-up") / "state"
    command = [sys.executable, "-m", "shared.cli", "local", "up", "--project", project,
               "--port", str(ports["webhook"]), "--consumer-port", str(ports["consumers"]),
               "--pubsub-port", str(ports["pubsub"]), "--firestore-port", str(ports["firestore"]),
               "--dashboard-port", str(ports["dashboard"]), "--state-dir", str(state), "--no-sandboxes"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True)
    system = LocalUp(process, command, ports, project, state)
    try:
        system.lines = read_until(process, "ready", timeout=180)
        yield system
    finally:
        system.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that share `local_up` one after the other, so it is not left running between."""
    here = Path(__file__).parent
    shared = [item for item in items if item.path.name in SHARED_BY and item.path.parent == here]
    if not shared:
        return
    first = items.index(shared[0])
    rest = [item for item in items if item not in shared]
    shared.sort(key=lambda item: SHARED_BY.index(item.path.name))
    items[:] = rest[:first] + shared + rest[first:]
