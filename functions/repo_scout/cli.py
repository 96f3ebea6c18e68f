"""`agentops scout ...`: run the repo scout now, and show the repositories' health.

`scout run [--repo R] [--dry-run]` runs one scan in this process through the same agent code as the
four-hourly tick (the GitHub App's key and Firestore as configured), and prints one row per
repository. `scout show [--repo R]` prints the health the last scans recorded in Firestore.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Mapping
from typing import Any

from shared import cli as operator_cli
from shared.cli import table


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else ""


def run_scan(services: Any, repository: str = "", dry_run: bool = False) -> Any:
    """One scan, in-process: the scout agent's `handle` with a context as the runner builds it."""
    from functions.repo_scout.agent import ACTOR, SCAN_KIND
    from shared.agent_runtime import Links, TaskContext
    from shared.executor import Executor
    from shared.messages import AgentTask

    agent = services.agent(ACTOR)
    app = services.github_app()
    now = services.clock()
    task_id = f"scout-cli-{uuid.uuid4().hex[:12]}"

    def client_for(installation_id: int, repo: str, task: str = task_id) -> Any:
        return app.client_for(ACTOR, installation_id, [repo.split("/")[-1]] if repo else [], task_id=task,
                              audit=services.audit())

    # The deployment's dry-run (AGENTOPS_DRY_RUN) makes this scan a dry run too: nothing on GitHub,
    # and nothing in Firestore that would record effects the executor did not make.
    dry_run = bool(dry_run or services.config.dry_run)
    executor = Executor(services.audit, client_for, actor=ACTOR, dry_run=dry_run)
    inputs = {"repository": repository, "dry_run": dry_run}
    task = AgentTask(task_id=task_id, kind=SCAN_KIND, agent=ACTOR, attempt=1, repository="",
                     installation_id=0, subject="agentops scout run", source="cli",
                     created_at=int(now.timestamp() * 1000), inputs=json.dumps(inputs))
    ctx = TaskContext(task, client=lambda: None, executor=executor, policy=lambda: None,
                      publisher=services.publisher, links=Links(services.config.dashboard_url),
                      delivery_id=task_id, clock=services.clock,
                      client_for=lambda installation_id, repo: client_for(installation_id, repo))
    return agent.handle(ctx)


def scout_run(args: argparse.Namespace) -> int:
    services = operator_cli.load_services()
    stopped = services.tasks().stop_reason("scout", args.repo or "", 0)
    if stopped:
        print(f"not scanning: {stopped}")
        return 1
    from shared.errors import PermanentError

    try:
        outcome = run_scan(services, args.repo or "", args.dry_run)
    except PermanentError as exc:
        print(f"scan failed: {exc}")
        return 1
    rows = outcome.details.get("repos") or []
    if rows:
        print(table(["repository", "status", "score", "findings", "API calls", "reused", "issue", "action"],
                     [[r["repository"], r["status"] + (f" ({r['reason']})" if r.get("reason") else ""),
                       r.get("score"), r.get("findings") if r["status"] == "scanned" else "",
                       r.get("api_calls") if r["status"] == "scanned" else "",
                       ("yes" if r.get("reused") else "no") if r["status"] == "scanned" else "",
                       f"#{r['issue_number']}" if r.get("issue_number") else "", r.get("issue_action")]
                      for r in rows]))
    print(outcome.summary)
    return 0


def scout_show(args: argparse.Namespace) -> int:
    from functions.repo_scout.store import ScoutStore

    store = ScoutStore(operator_cli.load_services().firestore())
    if args.repo:
        doc = store.repo(args.repo)
        health = doc.get("health") if isinstance(doc.get("health"), Mapping) else None
        if health is None:
            print(f"{args.repo} has not been scanned")
            return 1
        rows = [{"full_name": args.repo, **doc}]
    else:
        rows = sorted(store.health_all(), key=lambda doc: str(doc.get("full_name") or doc.get("id")))
    if not rows:
        print("no repository has been scanned")
        return 0
    table_rows = []
    for doc in rows:
        health = doc["health"]
        counts = health.get("by_severity") or {}
        table_rows.append([doc.get("full_name") or str(doc.get("id", "")).replace(":", "/", 1),
                           health.get("score"), health.get("findings_open"),
                           "/".join(str(counts.get(s, 0)) for s in ("critical", "high", "medium", "low")),
                           f"#{health['issue_number']}" if health.get("issue_number") else "",
                           "yes" if health.get("quiet") else "no", _when(health.get("scanned_at")),
                           health.get("scan_id")])
    print(table(["repository", "score", "open", "crit/high/med/low", "issue", "quiet", "scanned", "scan"],
                 table_rows))
    if args.repo:
        health = rows[0]["health"]
        for reason in health.get("reasons") or ():
            print(f"  {reason}")
        for finding in sorted(store.findings(args.repo, "open"), key=lambda f: str(f.get("severity"))):
            print(f"  [{finding.get('severity')}] {finding.get('kind')}: {finding.get('title')}")
    return 0


def register(verbs: Any) -> None:
    """Add `scout run` and `scout show` to the `agentops` verbs."""
    scout = verbs.add_parser("scout", help="the repo scout: repository health scans",
                             description="Run the repo scout now, or show the health it recorded.")
    scout_verbs = scout.add_subparsers(dest="scout_verb", required=True, metavar="COMMAND")
    run = scout_verbs.add_parser(
        "run", help="scan now, in this process, and print a row per repository",
        description="One scan of every repository of every installation (or of one), through the same "
        "agent code as the four-hourly tick: health score, findings and the health issue. Prints the "
        "score, open findings, API calls, whether the repository was unchanged (not read again) and its "
        "health issue. Needs GITHUB_APP_ID, the App's private key and Firestore.")
    run.add_argument("--repo", help="scan only this repository (owner/name)")
    run.add_argument("--dry-run", action="store_true",
                     help="read and judge, but write nothing: no issue is touched and Firestore is unchanged")
    run.set_defaults(run=scout_run)
    show = scout_verbs.add_parser(
        "show", help="the repositories' health, from the last scans",
        description="One row per scanned repository from Firestore: score, open findings by severity, "
        "the health issue and when it was scanned. With --repo, also the score's reasons and the open "
        "findings.")
    show.add_argument("--repo", help="one repository (owner/name), with its reasons and findings")
    show.set_defaults(run=scout_show)
