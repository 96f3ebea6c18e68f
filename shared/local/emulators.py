"""Start and stop the official Pub/Sub and Firestore emulators on loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError

SDK_ROOTS = (
    Path("/usr/lib/google-cloud-sdk"),
    Path("/usr/share/google-cloud-sdk"),
    Path("/opt/google-cloud-sdk"),
)


def sdk_root(explicit: str = "") -> Path:
    candidates = [Path(explicit)] if explicit else []
    gcloud = shutil.which("gcloud")
    if gcloud:
        candidates.append(Path(gcloud).resolve().parent.parent)
    candidates.extend(SDK_ROOTS)
    for root in candidates:
        if (root / "platform" / "pubsub-emulator").is_dir():
            return root
    raise ConfigError(
        "Google Cloud SDK with the Pub/Sub and Firestore emulators not found; install "
        "google-cloud-cli with its pubsub-emulator and firestore-emulator components"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Emulator:
    name: str
    port: int
    command: list[str]
    ready_path: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Emulator:
        if port_in_use(self.port):
            raise ConfigError(f"{self.name} emulator port {self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so stop() reaches the JVM too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} emulator exited with {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            try:
                url = f"http://{self.host}{self.ready_path}"
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback http only
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} emulator not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            process.wait(timeout=10)


def pubsub(port: int, log_dir: Path, sdk: str = "") -> Emulator:
    root = sdk_root(sdk)
    binary = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    return Emulator(
        "pubsub",
        port,
        [str(binary), "--host=127.0.0.1", f"--port={port}"],
        "/v1/projects/ready/topics",
        log_dir / "pubsub-emulator.log",
    )


def firestore(port: int, log_dir: Path, sdk: str = "") -> Emulator:
    root = sdk_root(sdk)
    jar = root / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    java = shutil.which("java") or "java"
    return Emulator(
        "firestore",
        port,
        [
            java,
            "-cp",
            str(jar),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        "/",
        log_dir / "firestore-emulator.log",
    )


def reset_firestore(host: str, project: str) -> None:
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents",
        method="DELETE",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback http only
        return
