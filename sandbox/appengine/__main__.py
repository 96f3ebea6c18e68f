"""Run the App Engine sandbox: `python -m sandbox.appengine --port 8090 [--app agentops-local]`.

Prints `appengine sandbox: http://127.0.0.1:PORT`, then `ready`, and serves until Ctrl-C or SIGTERM,
which stop every version server and router.
"""

from __future__ import annotations

import argparse
import sys

from sandbox.appengine.server import DEFAULT_APP, DEFAULT_OPERATION_DELAY_SECONDS, AppEngineSandbox
from sandbox.serving import serve_until_stopped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.appengine",
        description="A local App Engine Admin API v1 whose versions really serve.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--app", default=DEFAULT_APP,
                        help=f"the app id, appsId in paths (default: {DEFAULT_APP})")
    parser.add_argument("--operation-delay", type=float, default=DEFAULT_OPERATION_DELAY_SECONDS,
                        help="seconds until an operation is done (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed traffic and fault sampling, for repeatable runs")
    parser.add_argument("--demo", action="store_true",
                        help="start with the demo organisation's services: default and widgets, each "
                        "with a version v1 serving all its traffic")
    args = parser.parse_args(argv)
    if args.operation_delay < 0:
        parser.error("--operation-delay must be >= 0")
    return args


DEMO_SERVICES = ("default", "widgets")  # App Engine's first service must be `default`


def seed_demo(url: str, app: str) -> None:
    """What the demo organisation already runs, created through the Admin API like any client."""
    from sandbox.appengine.control import AppEngineControl

    control = AppEngineControl(url, app=app)
    try:
        for service in DEMO_SERVICES:
            control.wait(control.create_version(service, {"id": "v1", "runtime": "python312"}))
    finally:
        control.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sandbox = AppEngineSandbox(app=args.app, operation_delay=args.operation_delay, port=args.port,
                               seed=args.seed)
    try:
        url = sandbox.start()
    except OSError as exc:
        print(f"appengine sandbox: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    if args.demo:
        seed_demo(url, args.app)
    return serve_until_stopped("appengine sandbox", url, sandbox.close)


if __name__ == "__main__":
    sys.exit(main())
