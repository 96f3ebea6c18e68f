"""`agentops`: the operator's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.errors import ConfigError


def _local_up(args: argparse.Namespace) -> int:
    from shared.local.runner import LocalOptions, up

    return up(LocalOptions(
        project=args.project,
        state_dir=Path(args.state_dir),
        webhook_port=args.port,
        first_consumer_port=args.consumer_port or args.port + 10,
        pubsub_port=args.pubsub_port,
        firestore_port=args.firestore_port,
    ))


def _tasks(args: argparse.Namespace) -> int:
    from shared.bootstrap import Services
    from shared.config import Config

    services = Services(Config.from_env())
    query = services.firestore().collection("tasks")
    if args.status:
        query = query.where(filter=_field_filter("status", "==", args.status))
    rows = [doc.to_dict() for doc in query.limit(args.limit).stream()]
    rows.sort(key=lambda row: row.get("updated_at") or row.get("created_at"), reverse=True)
    if not rows:
        print("no tasks")
        return 0
    print(f"{'task':<40} {'agent':<12} {'status':<18} {'repository':<30} subject")
    for row in rows:
        print(f"{row.get('task_id', ''):<40} {row.get('agent', ''):<12} {row.get('status', ''):<18} "
              f"{row.get('repository', '') or '-':<30} {row.get('subject', '')}")
    return 0


def _duration_hours(text: str) -> float:
    units = {"m": 1 / 60, "h": 1.0, "d": 24.0}
    try:
        value = float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 72h, 90m or 3d") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


def progress_bar(done: int, total: int, width: int = 30) -> None:
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end, file=sys.stderr,
          flush=True)


def _redeliver(args: argparse.Namespace) -> int:
    from shared.bootstrap import Services
    from shared.config import Config

    services = Services(Config.from_env())
    if args.since > 72:
        print("agentops: GitHub keeps deliveries for 3 days; looking back 72h", file=sys.stderr)
    from shared.github.redelivery import summarize

    report = services.redelivery_report(dry_run=args.dry_run, since_hours=min(args.since, 72.0),
                                        progress=progress_bar)
    for line in summarize(report):
        print(line)
    return 1 if report.failed else 0


def _field_filter(field: str, op: str, value: str) -> object:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(field, op, value)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="agentops", description="Operate Agent Ops.")
    verbs = root.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    local = verbs.add_parser("local", help="run the whole system on this machine")
    local_verbs = local.add_subparsers(dest="local_verb", required=True, metavar="COMMAND")
    up = local_verbs.add_parser(
        "up", help="start the emulators and every function; print the webhook URL and 'ready'",
        description="Start the Pub/Sub and Firestore emulators, create every topic and push "
        "subscription, serve every function, then print the webhook URL and 'ready'. Ctrl-C stops all.",
    )
    up.add_argument("--project", default="agentops-local", help="project id on the emulators")
    up.add_argument("--port", type=int, default=8080,
                    help="webhook port; the consumers take the seven ports from PORT+10 (default 8080)")
    up.add_argument("--consumer-port", type=int, default=0,
                    help="first of the seven consumer ports (default PORT+10)")
    up.add_argument("--pubsub-port", type=int, default=8085)
    up.add_argument("--firestore-port", type=int, default=8086)
    up.add_argument("--state-dir", default=".agentops", help="lock file, logs and the local secret")
    up.set_defaults(run=_local_up)

    tasks = verbs.add_parser(
        "tasks", help="list tasks from Firestore",
        description="List task documents (newest first). Reads GOOGLE_CLOUD_PROJECT and, "
        "locally, FIRESTORE_EMULATOR_HOST.",
    )
    tasks.add_argument("--status", help="only tasks in this status, for example queued")
    tasks.add_argument("--limit", type=int, default=50)
    tasks.set_defaults(run=_tasks)

    redeliver = verbs.add_parser(
        "redeliver", help="redeliver webhook deliveries GitHub failed to deliver",
        description="List the App's webhook deliveries, find those whose every attempt failed and "
        "that were never published, and redeliver each once. Needs GITHUB_APP_ID and the App's "
        "private key (GITHUB_PRIVATE_KEY locally, Secret Manager otherwise).",
    )
    redeliver.add_argument("--since", type=_duration_hours, default=72.0, metavar="DURATION",
                           help="how far back to look, like 72h (the maximum), 90m or 1d")
    redeliver.add_argument("--dry-run", action="store_true", help="report, but redeliver nothing")
    redeliver.set_defaults(run=_redeliver)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"agentops: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
