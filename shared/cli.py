"""`agentops`: the operator's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shared.errors import ConfigError


def _local_up(args: argparse.Namespace) -> int:
    from shared.config import Config, child_environment
    from shared.local.runner import LocalOptions, up

    # Real GitHub App settings in the environment mean: real GitHub, local everything else.
    config = Config.from_env(child_environment({"GOOGLE_CLOUD_PROJECT": args.project}))
    real_github = bool(config.github_app_id and config.private_key)
    if real_github:
        print(f"GitHub: {config.github_api_url} as App {config.github_app_id} (no GitHub sandbox)",
              flush=True)
    return up(LocalOptions(
        project=args.project,
        state_dir=Path(args.state_dir),
        webhook_port=args.port,
        first_consumer_port=args.consumer_port or args.port + 10,
        pubsub_port=args.pubsub_port,
        firestore_port=args.firestore_port,
        webhook_secret=config.webhook_secret if real_github else "",
        github_sandbox_port=0 if real_github or args.no_sandboxes else args.github_port,
        appengine_sandbox_port=0 if args.no_sandboxes else args.appengine_port,
        llm_sandbox_port=0 if args.no_sandboxes else args.llm_port,
        seed="" if args.no_seed else "demo",
        dashboard_port=args.dashboard_port,
    ))


def _local_demo(args: argparse.Namespace) -> int:
    from shared.local import demo

    return demo.run(Path(args.state_dir), step_timeout=args.step_timeout)


def load_services() -> Any:
    """The deployment's `Services`, configured from the environment (every command's first step)."""
    from shared.bootstrap import Services
    from shared.config import Config

    return Services(Config.from_env())


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width table: each column as wide as its widest cell."""
    cells = [[str(h) for h in headers]] + [["-" if v in (None, "") else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    return "\n".join(lines)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else ""


def _tasks(args: argparse.Namespace) -> int:
    services = load_services()
    rows = services.tasks().query(repository=args.repo, status=args.state, limit=args.limit)
    rows.sort(key=lambda row: row.get("updated_at") or row.get("created_at"), reverse=True)
    if not rows:
        print("no tasks")
        return 0
    print(table(["task", "agent", "status", "attempt", "repository", "subject", "waiting on", "updated"],
                [[r.get("task_id"), r.get("agent"), r.get("status"), r.get("attempt"), r.get("repository"),
                  r.get("subject"), str(r.get("waiting_on") or "")[:60], _when(r.get("updated_at"))]
                 for r in rows]))
    return 0


def _agents(args: argparse.Namespace) -> int:
    from shared import topology

    services = load_services()
    control = services.tasks().control()
    rows = []
    for agent in ("orchestrator", *(a.name for a in topology.AGENTS)):
        doc = services.tasks().agent(agent)
        state = "paused" if control.get("paused") or agent in (control.get("agents_paused") or {}) else (
            doc.get("state") or "idle")
        average = doc.get("average_duration_seconds")
        rows.append([agent, state, _when(doc.get("last_heartbeat")), doc.get("current_task"),
                     doc.get("done") or 0, doc.get("failed") or 0,
                     f"{average:.1f}s" if isinstance(average, int | float) else ""])
    if control.get("paused"):
        print(f"ALL AGENTS PAUSED by {control.get('paused_by') or '?'}: {control.get('pause_reason') or ''}")
    print(table(["agent", "state", "last heartbeat", "current task", "done", "failed", "avg duration"], rows))
    return 0


def _pause_scope(args: argparse.Namespace) -> str:
    if args.all:
        return "global"
    if args.agent:
        return f"agent:{args.agent}"
    return f"repo:{args.repo}"


def _pause(args: argparse.Namespace, paused: bool) -> int:
    import getpass
    from datetime import datetime, timezone

    services = load_services()
    scope = _pause_scope(args)
    by = f"operator {getpass.getuser()}"
    changed = services.tasks().set_pause(scope, paused, by, args.reason or "", datetime.now(timezone.utc))
    services.audit().record(
        key=f"cli:{'pause' if paused else 'resume'}:{scope}:{datetime.now(timezone.utc).isoformat()}",
        actor=by, action="pause" if paused else "resume", subject=scope,
        outcome="changed" if changed else "unchanged", reason=args.reason or "",
        repository=args.repo or "")
    what = {"global": "all agents"}.get(scope, scope.replace(":", " "))
    if not changed:
        print(f"{what}: already {'paused' if paused else 'running'}")
        return 0
    print(f"{what}: {'paused; nothing is dispatched until resumed' if paused else 'resumed'}")
    if not paused:
        # The orchestrator dispatches what waited, under each repo's policy and its own config:
        # a task_sweep tick asks it to now rather than at the next scheduled sweep.
        from shared import topology
        from shared.messages import ScheduleTick

        tick = ScheduleTick("task_sweep")
        services.publisher().publish(topology.SCHEDULE_TICKS, tick.encode(), {"job": tick.job})
        print("waiting tasks are dispatched by the orchestrator's task sweep, which was asked to run now")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from shared.audit import verify_command

    services = load_services()
    return verify_command(services.firestore(), args.chain or None, progress=progress_bar)


def _audit_show(args: argparse.Namespace) -> int:
    from shared.audit import task_trail

    records = task_trail(load_services().firestore(), args.task)
    if not records:
        print(f"no audit records for task {args.task}")
        return 1
    for record in records:
        at = record.get("at")
        when = f"{at:%Y-%m-%d %H:%M:%S}" if hasattr(at, "strftime") else str(at or "")
        print(f"{when}  {record.get('actor', '')}  {record.get('action', '')}  {record.get('subject', '')}  "
              f"{record.get('outcome', '')}")
    return 0


def _deploy_list(args: argparse.Namespace) -> int:
    releases = load_services().deployments().releases(repository=args.repo or "", service=args.service or "",
                                                 limit=args.limit)
    if not releases:
        print("no releases")
        return 0
    print(table(["release", "service", "version", "state", "traffic", "previous", "repository", "started"],
                [[r.get("id"), r.get("service"), r.get("version"), r.get("state"),
                  f"{r.get('traffic') or 0}%", r.get("previous_version"), r.get("repository"),
                  _when(r.get("started_at"))]
                 for r in releases]))
    return 0


def _deploy_rollback(args: argparse.Namespace) -> int:
    """Roll a service back through the orchestrator, so the deploy agent does it and it is audited."""
    import getpass

    from functions.orchestrator.handler import Turn

    services = load_services()
    releases = services.deployments().releases(repository=args.repo or "", service=args.service, limit=1)
    if not releases:
        print(f"no release of {args.service} to roll back")
        return 1
    release = releases[0]
    actor = f"operator {getpass.getuser()}"
    turn = Turn(delivery_id=f"cli-{release.get('id')}")
    reply = services.orchestrator().rollback(str(release.get("repository") or ""),
                                             int(release.get("installation_id") or 0), actor, turn,
                                             service=args.service)
    print(reply)
    return 1 if reply.startswith(("There is no", "Deploys are not")) else 0


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
    services = load_services()
    if args.since > 72:
        print("agentops: GitHub keeps deliveries for 3 days; looking back 72h", file=sys.stderr)
    from shared.github.redelivery import summarize

    report = services.redelivery_report(dry_run=args.dry_run, since_hours=min(args.since, 72.0),
                                        progress=progress_bar)
    for line in summarize(report):
        print(line)
    return 1 if report.failed else 0


def _agent_list() -> tuple[Any, ...]:
    from shared import topology

    return topology.AGENTS


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
    up.add_argument("--github-port", type=int, default=8070, help="GitHub sandbox port (default 8070)")
    up.add_argument("--appengine-port", type=int, default=8071, help="App Engine sandbox port (default 8071)")
    up.add_argument("--llm-port", type=int, default=8072, help="LLM provider sandbox port (default 8072)")
    up.add_argument("--no-sandboxes", action="store_true",
                    help="start neither sandbox (the functions then have no GitHub unless configured)")
    up.add_argument("--no-seed", action="store_true", help="an empty GitHub sandbox, no demo organisation")
    up.add_argument("--dashboard-port", type=int, default=8079, help="dashboard port (default 8079; 0: none)")
    up.set_defaults(run=_local_up)
    demo = local_verbs.add_parser(
        "demo", help="play the whole agent loop against a running `local up`, with a live timeline",
        description="Act as the humans of the seeded demo organisation through the GitHub sandbox "
        "(label an issue, open and approve a PR, merge, /approve the deploy) while printing every "
        "webhook, task move and audit record. Steps whose agents are not built yet show as SKIPPED "
        "with the agent's own reason. Exits 1 if a step failed.",
    )
    demo.add_argument("--state-dir", default=".agentops", help="the state directory of `local up`")
    demo.add_argument("--step-timeout", type=float, default=60.0, help="seconds each step may take")
    demo.set_defaults(run=_local_demo)

    tasks = verbs.add_parser(
        "tasks", help="list tasks from Firestore",
        description="List task documents (newest first) with what each waits on. Reads "
        "GOOGLE_CLOUD_PROJECT and, locally, FIRESTORE_EMULATOR_HOST.",
    )
    tasks.add_argument("--repo", help="only tasks of this repository (owner/name)")
    tasks.add_argument("--state", "--status", dest="state",
                       choices=["queued", "dispatched", "running", "waiting_approval", "succeeded", "failed",
                                "cancelled", "blocked"], help="only tasks in this state")
    tasks.add_argument("--limit", type=int, default=50)
    tasks.set_defaults(run=_tasks)

    agents = verbs.add_parser(
        "agents", help="show each agent's state, heartbeat, current task and counters",
        description="One row per agent from the agents collection, and the kill switch's state.",
    )
    agents.set_defaults(run=_agents)

    for verb, paused in (("pause", True), ("resume", False)):
        command = verbs.add_parser(
            verb, help=f"{verb} dispatch: every agent (--all), one agent or one repository",
            description=("Stop dispatching new work. --all is the kill switch: the next message "
                         "dispatches nothing. Running tasks finish; waiting ones stay queued.")
            if paused else "Dispatch again, and dispatch the tasks that were waiting.",
        )
        scope = command.add_mutually_exclusive_group(required=True)
        scope.add_argument("--all", action="store_true", help="every agent (the global kill switch)")
        scope.add_argument("--agent", choices=[a.name for a in _agent_list()], help="one agent")
        scope.add_argument("--repo", help="one repository (owner/name)")
        command.add_argument("--reason", default="", help="why, shown to whoever looks")
        command.set_defaults(run=lambda args, paused=paused: _pause(args, paused))

    audit = verbs.add_parser("audit", help="the audit trail")
    audit_verbs = audit.add_subparsers(dest="audit_verb", required=True, metavar="COMMAND")
    verify = audit_verbs.add_parser(
        "verify", help="check the hash chains of the audit trail",
        description="Recompute every audit record's hash and check each chain's links, sequence and "
        "head. Exits 1 when a record was edited, deleted or the chain truncated.",
    )
    verify.add_argument("--chain", action="append",
                        help="a repository (all its chains), system, or one chain such as owner/name#test "
                        "(repeatable)")
    verify.set_defaults(run=_audit_verify)
    show = audit_verbs.add_parser(
        "show", help="the audit trail of one task, oldest first",
        description="Every audit record of one task: time, actor, action, subject and outcome.",
    )
    show.add_argument("--task", required=True, help="the task id")
    show.set_defaults(run=_audit_show)

    deploy = verbs.add_parser("deploy", help="releases of the deploy agent")
    deploy_verbs = deploy.add_subparsers(dest="deploy_verb", required=True, metavar="COMMAND")
    listing = deploy_verbs.add_parser(
        "list", help="the newest releases, with state and traffic",
        description="One row per release from the deployments collection, newest first.")
    listing.add_argument("--service", help="one App Engine service")
    listing.add_argument("--repo", help="one repository (owner/name)")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=_deploy_list)
    rollback = deploy_verbs.add_parser(
        "rollback", help="move a service's traffic back to the version before its newest release",
        description="Stops the service's newest release: one in progress is rolled back (or cancelled "
        "before any traffic moved) by its own deploy task; an ended one gets a rollback task. The deploy "
        "agent moves 100%% of traffic to the previous version in one call, marks the GitHub deployment "
        "failed and opens an incident issue.")
    rollback.add_argument("service", help="the App Engine service, like default")
    rollback.add_argument("--repo", help="the repository, when more than one deploys the service")
    rollback.set_defaults(run=_deploy_rollback)

    from functions.metrics.cli import register as register_metrics
    from functions.repo_scout.cli import register as register_scout
    from sandbox.cli import register as register_sandbox

    register_sandbox(verbs)
    register_scout(verbs)
    register_metrics(verbs)

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
