"""`agentops local up` as a user runs it: ready line, a real delivery through, single instance, Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from shared.local.emulators import port_in_use
from tests.e2e.conftest import PORTS, ROOT
from tests.support import github

pytestmark = pytest.mark.emulators


def _blocked_pull_tasks(listing: str) -> int:
    return sum(1 for line in listing.splitlines() if " blocked " in line and " pull/2@" in line)


def test_local_up_serves_a_delivery_end_to_end_and_stops_cleanly(local_up):
    process, command, ports, project, state = local_up.process, local_up.command, local_up.ports, \
        local_up.project, local_up.state
    lines = local_up.lines
    assert f"webhook URL: http://127.0.0.1:{ports['webhook']}/" in lines
    assert any(line.startswith(f"dashboard: http://127.0.0.1:{ports['dashboard']}/") for line in lines)

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

    local_up.stop()
    assert process.returncode == 0
    time.sleep(0.5)
    still_open = [port for port in range(ports["webhook"], ports["webhook"] + PORTS) if port_in_use(port)]
    assert still_open == []
