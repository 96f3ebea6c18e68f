"""Run the GitHub sandbox on 127.0.0.1.

    python -m sandbox.github --port 8070 --webhook-url http://127.0.0.1:8080/ \\
        --webhook-secret-file .agentops/webhook-secret --private-key-out .agentops/app-key.pem \\
        --app-id 424242 [--state-file .agentops/github-sandbox.json] [--seed demo]

A fresh App key is generated at every start; its private half is written (mode 0600) to
`--private-key-out` for the functions to sign their JWTs with. Prints
`github sandbox: http://127.0.0.1:PORT`, seeds, then prints `ready` and serves until Ctrl-C or
SIGTERM. A seed is applied only to an empty sandbox: a saved state is kept as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from sandbox.github.seed import SEEDS
from sandbox.github.server import GitHubSandbox, generate_app_key
from sandbox.serving import serve_until_stopped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.github",
        description="GitHub's REST subset, webhooks and people's actions for one App, on this machine.")
    parser.add_argument("--port", type=int, default=8070, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--webhook-url", default="", help="where webhooks are delivered (none when empty)")
    parser.add_argument("--webhook-secret-file", default="",
                        help="a file holding the webhook secret that signs every delivery")
    parser.add_argument("--private-key-out", required=True,
                        help="where to write the App's private key (PEM, mode 0600)")
    parser.add_argument("--app-id", default="424242", help="the App's id (default: %(default)s)")
    parser.add_argument("--app-slug", default="agent-ops", help="the App's slug (default: %(default)s)")
    parser.add_argument("--installation-id", type=int, default=77)
    parser.add_argument("--owner", default="octo", help="the organisation the App is installed on")
    parser.add_argument("--hook-id", type=int, default=1)
    parser.add_argument("--state-file", default=None, help="keep the state in this JSON file across restarts")
    parser.add_argument("--seed", choices=sorted(SEEDS), default=None,
                        help="populate an empty sandbox (demo: octo/widgets and octo/gadgets)")
    return parser.parse_args(argv)


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only, whatever the file's mode was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import make_server

    args = parse_args(argv)
    secret = ""
    if args.webhook_secret_file:
        try:
            secret = Path(args.webhook_secret_file).read_text().strip()
        except OSError as exc:
            print(f"github sandbox: cannot read the webhook secret: {exc}", file=sys.stderr)
            return 2
    public_key, pem = generate_app_key()
    write_private(Path(args.private_key_out), pem)
    sandbox = GitHubSandbox(public_key, app_id=args.app_id, app_slug=args.app_slug,
                            installation_id=args.installation_id, owner=args.owner,
                            webhook_url=args.webhook_url, webhook_secret=secret, hook_id=args.hook_id,
                            state_file=args.state_file)
    try:
        server = make_server("127.0.0.1", args.port, sandbox.wsgi, threaded=True)
    except OSError as exc:
        print(f"github sandbox: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    sandbox.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name="github-sandbox", daemon=True)
    thread.start()

    def close() -> None:
        server.shutdown()
        thread.join(timeout=10)
        sandbox.close()

    def seed() -> None:
        if args.seed and not sandbox.state()["repos"]:
            SEEDS[args.seed](sandbox)

    return serve_until_stopped("github sandbox", sandbox.base_url, close, seed)


if __name__ == "__main__":
    sys.exit(main())
