"""`agentops local up`: the whole system on one machine, on the official emulators.

It starts both emulators, provisions every topic (with its schema) and push subscription, serves
every function with functions-framework (one process each, as Cloud Functions would), then the
GitHub sandbox (seeded with a demo organisation whose webhooks go to the local webhook), the
App Engine sandbox and the LLM sandbox (the code agent's model, with a key generated for this run),
prints their URLs and then a single line `ready`. Ctrl-C stops every child. With the `demo` seed it
also writes a demo history into Firestore (`shared.local.history`), so the dashboard (one more
function, on its own port) has something to show from the first second.

With real GitHub App settings (`GITHUB_APP_ID` and `GITHUB_PRIVATE_KEY`) in the environment, the
functions talk to that GitHub instead and no GitHub sandbox is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared import topology
from shared.config import child_environment
from shared.errors import ConfigError
from shared.local import emulators
from shared.local.provision import PubSubAdmin, provision


@dataclass
class LocalOptions:
    project: str = "agentops-local"
    state_dir: Path = Path(".agentops")
    webhook_port: int = 8080
    first_consumer_port: int = 8090
    pubsub_port: int = 8085
    firestore_port: int = 8086
    webhook_secret: str = ""
    minimum_backoff: int = 1
    maximum_backoff: int = 60
    extra_env: dict[str, str] = field(default_factory=dict)
    github_sandbox_port: int = 8070  # 0: no GitHub sandbox (real GitHub from the environment)
    appengine_sandbox_port: int = 8071  # 0: no App Engine sandbox
    seed: str = "demo"  # "demo": the sandboxes' demo organisation and a demo history in Firestore
    dashboard_port: int = 8079  # 0: no dashboard
    # 0: no LLM sandbox. None: 8072 when the App Engine sandbox runs (so `--no-sandboxes`, which
    # turns that off, turns this off too), otherwise none.
    llm_sandbox_port: int | None = None

    def __post_init__(self) -> None:
        if self.llm_sandbox_port is None:
            self.llm_sandbox_port = LLM_SANDBOX_PORT if self.appengine_sandbox_port else 0


SANDBOX_APP_ID = "424242"
LLM_SANDBOX_PORT = 8072
LLM_SANDBOX_PROVIDER = "anthropic"
LLM_SANDBOX_MODEL = "sandbox-model"
LLM_KEY_FILE = "llm-sandbox-key"


# The ingress spends most of a request waiting on Firestore and Pub/Sub. Two gunicorn workers
# (each builds its own clients after the fork) use both cores instead of contending for one GIL;
# Cloud Functions gets the same effect by scaling out instances.
WEBHOOK_SERVER_ENV = {"WORKERS": "2", "THREADS": "8"}


class AlreadyRunning(ConfigError):
    pass


@contextlib.contextmanager
def single_instance(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock for the life of `local up`; a second one fails clearly."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = state_dir / "local.lock"
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"agentops local up is already running (pid {owner}); stop it with Ctrl-C "
            "in its terminal before starting another"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def _webhook_secret(options: LocalOptions) -> str:
    if options.webhook_secret:
        return options.webhook_secret
    path = options.state_dir / "webhook-secret"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(32)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


def _llm_sandbox_key(options: LocalOptions) -> Path:
    """A fresh key for this run's LLM sandbox, in a file only its owner reads; the path, never the key."""
    path = (options.state_dir / LLM_KEY_FILE).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    return path


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own session, and everything it forked: TERM, then KILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before serving")
        if emulators.port_in_use(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f}s")


class LocalSystem:
    def __init__(self, options: LocalOptions) -> None:
        self.options = options
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.emulators: list[emulators.Emulator] = []
        self.ports = {topology.WEBHOOK_FUNCTION: options.webhook_port} | {
            name: options.first_consumer_port + index
            for index, name in enumerate(topology.CONSUMER_FUNCTIONS)
        }
        if options.dashboard_port:
            self.ports[topology.DASHBOARD_FUNCTION] = options.dashboard_port
        self.sandbox_ports = {name: port for name, port in (
            ("github sandbox", options.github_sandbox_port),
            ("appengine sandbox", options.appengine_sandbox_port),
            ("llm sandbox", options.llm_sandbox_port)) if port}

    @property
    def github_sandbox_url(self) -> str:
        port = self.options.github_sandbox_port
        return f"http://127.0.0.1:{port}" if port else ""

    @property
    def appengine_sandbox_url(self) -> str:
        port = self.options.appengine_sandbox_port
        return f"http://127.0.0.1:{port}" if port else ""

    @property
    def llm_sandbox_url(self) -> str:
        port = self.options.llm_sandbox_port
        return f"http://127.0.0.1:{port}" if port else ""

    @property
    def llm_key_file(self) -> Path:
        return (self.options.state_dir / LLM_KEY_FILE).resolve()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.options.webhook_port}/"

    @property
    def dashboard_url(self) -> str:
        port = self.options.dashboard_port
        return f"http://127.0.0.1:{port}/" if port else ""

    def check_ports(self) -> None:
        wanted = {"Pub/Sub emulator": self.options.pubsub_port,
                  "Firestore emulator": self.options.firestore_port,
                  **{f"function {name}": port for name, port in self.ports.items()},
                  **self.sandbox_ports}
        if len(set(wanted.values())) != len(wanted):
            raise ConfigError(f"local ports overlap: {wanted}")
        busy = [f"{what} port {port}" for what, port in wanted.items() if emulators.port_in_use(port)]
        if busy:
            raise ConfigError("ports already in use: " + ", ".join(busy)
                              + "; is another agentops local up or another server running?")

    def start(self) -> None:
        options = self.options
        self.check_ports()
        logs = options.state_dir / "logs"
        pubsub = emulators.pubsub(options.pubsub_port, logs)
        firestore = emulators.firestore(options.firestore_port, logs)
        self.emulators = [pubsub, firestore]
        pubsub.start()
        firestore.start()
        admin = PubSubAdmin.connect(options.project, pubsub.host)
        try:
            provision(
                admin,
                {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()
                 if name not in topology.HTTP_FUNCTIONS},
                options.minimum_backoff,
                options.maximum_backoff,
            )
        finally:
            admin.close()
        secret = _webhook_secret(options)
        key_file = (options.state_dir / "github-sandbox-app-key.pem").resolve()
        sandbox_env = {
            # The functions read the key on their first request; the sandbox writes it before it
            # sends its first webhook.
            "GITHUB_API_URL": self.github_sandbox_url,
            "GITHUB_APP_ID": SANDBOX_APP_ID,
            "GITHUB_PRIVATE_KEY": str(key_file),
        } if options.github_sandbox_port else {}
        # The consumers (the code agent among them) call the LLM sandbox; the key file is written
        # before any of them starts, and LLM_API_KEY names the file rather than holding the key.
        llm_env = {
            "AGENTOPS_LLM_PROVIDER": LLM_SANDBOX_PROVIDER,
            "AGENTOPS_LLM_API_URL": self.llm_sandbox_url,
            "AGENTOPS_LLM_MODEL": LLM_SANDBOX_MODEL,
            "LLM_API_KEY": str(_llm_sandbox_key(options)),
        } if options.llm_sandbox_port else {}
        # The deploy and monitor agents use the App Engine sandbox for all three Google APIs, and
        # create versions with its versions API (there is no Cloud Build here).
        appengine_env = {
            "AGENTOPS_APPENGINE_API_URL": self.appengine_sandbox_url,
            "AGENTOPS_MONITORING_API_URL": self.appengine_sandbox_url,
            "AGENTOPS_CLOUDBUILD_API_URL": self.appengine_sandbox_url,
            "AGENTOPS_DEPLOY_BACKEND": "versions",
        } if options.appengine_sandbox_port else {}
        env = child_environment({
            "GOOGLE_CLOUD_PROJECT": options.project,
            **appengine_env,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "FIRESTORE_EMULATOR_HOST": firestore.host,
            "GITHUB_WEBHOOK_SECRET": secret,
            **sandbox_env,
            **options.extra_env,
        })
        root = Path(__file__).resolve().parents[2]
        for name, port in self.ports.items():
            log = (logs / f"{name}.log").open("ab")
            is_webhook = name == topology.WEBHOOK_FUNCTION
            process_env = ({**env, **WEBHOOK_SERVER_ENV} if is_webhook
                           else env if name == topology.DASHBOARD_FUNCTION
                           else {**env, **llm_env, **options.extra_env})
            process = subprocess.Popen(
                [sys.executable, "-m", "functions_framework", f"--target={name}",
                 f"--source={root / 'main.py'}", "--host=127.0.0.1", f"--port={port}"],
                cwd=root, env=process_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.processes.append((name, process))
        if options.seed == "demo":
            # While the functions start: two weeks of demo history, so the dashboard shows something.
            from shared.errors import PermanentError, RetryableError
            from shared.local import history

            try:
                history.seed_emulator(options.project, firestore.host)
            except (RetryableError, PermanentError, KeyError, TypeError, ValueError) as exc:
                # The demo data is a convenience, never a reason not to start.
                print(f"demo history not seeded: {exc}", file=sys.stderr, flush=True)
        for name, process in self.processes:
            wait_for_port(self.ports[name], process, name)
        if options.github_sandbox_port:
            command = [sys.executable, "-m", "sandbox.github", "--port", str(options.github_sandbox_port),
                       "--webhook-url", self.webhook_url,
                       "--webhook-secret-file", str((options.state_dir / "webhook-secret").resolve()),
                       "--private-key-out", str(key_file), "--app-id", SANDBOX_APP_ID,
                       "--state-file", str((options.state_dir / "github-sandbox.json").resolve())]
            self._child("github sandbox", command + (["--seed", options.seed] if options.seed else []),
                        env, logs, root)
        if options.appengine_sandbox_port:
            self._child("appengine sandbox",
                        [sys.executable, "-m", "sandbox.appengine", "--port",
                         str(options.appengine_sandbox_port), "--app", options.project,
                         *(["--demo"] if options.seed == "demo" else [])], env, logs, root)
        if options.llm_sandbox_port:
            self._child("llm sandbox",
                        [sys.executable, "-m", "sandbox.llm", "--port", str(options.llm_sandbox_port),
                         "--api-key-file", str(self.llm_key_file)], env, logs, root)
        for name, port in self.sandbox_ports.items():
            wait_for_port(port, dict(self.processes)[name], name)
        # Cloud Scheduler's jobs, on this machine: the monitor's minute tick, the sweeps and so on.
        self._child("scheduler", [sys.executable, "-m", "shared.local.scheduler"], env, logs, root)

    def write_connection_file(self) -> Path:
        """Where everything listens, for `agentops local demo` and other local tools."""
        import json

        path = self.options.state_dir / "local.json"
        path.write_text(json.dumps({
            "project": self.options.project,
            "pubsub_emulator_host": f"127.0.0.1:{self.options.pubsub_port}",
            "firestore_emulator_host": f"127.0.0.1:{self.options.firestore_port}",
            "webhook_url": self.webhook_url,
            "dashboard_url": self.dashboard_url,
            "github_sandbox_url": self.github_sandbox_url,
            "appengine_sandbox_url": self.appengine_sandbox_url,
            "llm_sandbox_url": self.llm_sandbox_url,
            "pid": os.getpid(),
        }, indent=2) + "\n")
        return path

    def _child(self, name: str, command: list[str], env: dict[str, str], logs: Path, root: Path) -> None:
        log = (logs / f"{name.replace(' ', '-')}.log").open("ab")
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append((name, process))

    def stop(self) -> None:
        # Signal every child first so they shut down in parallel, then wait for each.
        for _, process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for _, process in self.processes:
            stop_process(process)
        self.processes.clear()
        for emulator in reversed(self.emulators):
            emulator.stop()

    def failed_child(self) -> str | None:
        for name, process in self.processes:
            if process.poll() is not None:
                return f"{name} exited with {process.returncode}"
        return None


def up(options: LocalOptions) -> int:
    with single_instance(options.state_dir):
        system = LocalSystem(options)
        stopping = False

        def on_signal(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            system.start()
            print(f"webhook URL: {system.webhook_url}", flush=True)
            if system.dashboard_url:
                print(f"dashboard: {system.dashboard_url}  (read-only; tasks, deployments, incidents, "
                      "repo health, KPIs)", flush=True)
            if system.github_sandbox_url:
                print(f"GitHub sandbox: {system.github_sandbox_url}  (GITHUB_API_URL of every function; "
                      "demo org octo with octo/widgets and octo/gadgets)", flush=True)
            if system.appengine_sandbox_url:
                print(f"App Engine sandbox: {system.appengine_sandbox_url}", flush=True)
            if system.llm_sandbox_url:
                print(f"LLM sandbox: {system.llm_sandbox_url}  ({LLM_SANDBOX_PROVIDER} API for the code "
                      f"agent; key in {system.llm_key_file})", flush=True)
            print(f"webhook secret: in {options.state_dir / 'webhook-secret'}", flush=True)
            print(f"Pub/Sub emulator: 127.0.0.1:{options.pubsub_port}  "
                  f"Firestore emulator: 127.0.0.1:{options.firestore_port}  "
                  f"project: {options.project}  logs: {options.state_dir / 'logs'}", flush=True)
            system.write_connection_file()
            if system.github_sandbox_url:
                print("play the scenario: make demo (agentops local demo) in another terminal", flush=True)
            print("ready", flush=True)
            while not stopping:
                failure = system.failed_child()
                if failure:
                    print(f"stopping: {failure}; see {options.state_dir / 'logs'}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            return 0
        finally:
            system.stop()
