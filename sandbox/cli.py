"""`agentops sandbox github ...`: act as people on the GitHub sandbox, and look at what it delivered.

Every verb talks to a running sandbox's control API (`--url`, default http://127.0.0.1:8070), so it
works against `make run` as well as a sandbox started by hand with `python -m sandbox.github`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8070"
FAULT_KINDS = ("server_error", "secondary_rate_limit", "slow")


def _control(args: argparse.Namespace) -> Any:
    from sandbox.github.control import SandboxControl

    return SandboxControl(args.url)


def _files(pairs: list[str] | None) -> dict[str, str | None]:
    files: dict[str, str | None] = {}
    for pair in pairs or []:
        path, sep, text = pair.partition("=")
        if not sep or not path:
            raise argparse.ArgumentTypeError(f"--file takes PATH=TEXT, got {pair!r}")
        files[path] = text.replace("\\n", "\n")
    return files


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["-" if v in (None, "") else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    return "\n".join(lines)


# ---- the verbs: each returns the exit status -----------------------------------------------------

def issue_open(args: argparse.Namespace) -> int:
    issue = _control(args).open_issue(args.repo, args.title, body=args.body, author=args.author)
    print(f"opened {args.repo}#{issue['number']}: {issue['title']}  {issue['html_url']}")
    return 0


def issue_label(args: argparse.Namespace) -> int:
    labels = _control(args).add_label(args.repo, args.number, args.label, actor=args.actor)
    print(f"{args.repo}#{args.number} labels: {', '.join(labels)}")
    return 0


def issue_comment(args: argparse.Namespace) -> int:
    comment = _control(args).comment(args.repo, args.number, args.body, author=args.author,
                                     user_type=args.user_type)
    print(f"commented on {args.repo}#{args.number} as {args.author}: {comment['html_url']}")
    return 0


def pr_open(args: argparse.Namespace) -> int:
    pull = _control(args).open_pull(args.repo, args.head, args.title, body=args.body, author=args.author,
                                    base_ref=args.base, files=_files(args.file))
    print(f"opened {args.repo}#{pull['number']} ({pull['head']['ref']} -> {pull['base']['ref']}, "
          f"head {pull['head']['sha'][:12]}): {pull['title']}")
    return 0


def pr_review(args: argparse.Namespace) -> int:
    review = _control(args).review(args.repo, args.number, args.reviewer, state=args.state, body=args.body)
    print(f"{args.reviewer} reviewed {args.repo}#{args.number}: {review['state']} "
          f"at {review['commit_id'][:12]}")
    return 0


def pr_merge(args: argparse.Namespace) -> int:
    sha = _control(args).merge(args.repo, args.number, actor=args.actor)
    print(f"merged {args.repo}#{args.number}: {sha}")
    return 0


def pr_push(args: argparse.Namespace) -> int:
    files = _files(args.file)
    for path in args.delete or []:
        files[path] = None
    if not files:
        raise argparse.ArgumentTypeError("push needs at least one --file PATH=TEXT or --delete PATH")
    sha = _control(args).push_commit(args.repo, args.branch, files, message=args.message, author=args.author)
    print(f"pushed {sha} to {args.repo}:{args.branch}")
    return 0


def ci_complete(args: argparse.Namespace) -> int:
    run = _control(args).complete_ci(args.repo, args.sha, conclusion=args.conclusion, name=args.name)
    print(f"{run['name']} on {run['head_sha'][:12]}: {run['status']} {run['conclusion']}")
    return 0


def status_set(args: argparse.Namespace) -> int:
    status = _control(args).set_status(args.repo, args.sha, args.state, context=args.context,
                                       description=args.description)
    print(f"{status['context']} on {args.repo}@{args.sha}: {status['state']}")
    return 0


def workflow_run(args: argparse.Namespace) -> int:
    artifacts = {}
    for pair in args.artifact or []:
        name, sep, path = pair.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--artifact takes NAME=ZIPFILE, got {pair!r}")
        with open(path, "rb") as handle:
            artifacts[name] = handle.read()
    run_id = _control(args).run_workflow(args.repo, args.name, args.sha, branch=args.branch,
                                         conclusion=args.conclusion, artifacts=artifacts or None,
                                         event=args.event)
    print(f"workflow run {run_id} ({args.name} on {args.repo}@{args.sha}): {args.conclusion}")
    return 0


def workflow_complete(args: argparse.Namespace) -> int:
    run = _control(args).complete_workflow_run(args.repo, args.run_id, conclusion=args.conclusion)
    print(f"workflow run {run['id']} attempt {run['run_attempt']}: {run['status']} {run['conclusion']}")
    return 0


def workflow_script_rerun(args: argparse.Namespace) -> int:
    scripted = _control(args).script_rerun(args.repo, args.run_id, args.conclusion)
    print(f"the next re-runs of {args.run_id} end: {', '.join(scripted)}")
    return 0


def alert_dependabot(args: argparse.Namespace) -> int:
    number = _control(args).add_dependabot_alert(args.repo, args.package, args.severity, state=args.state)
    print(f"Dependabot alert {args.repo}#{number}: {args.package} ({args.severity})")
    return 0


def alert_code_scanning(args: argparse.Namespace) -> int:
    number = _control(args).add_code_scanning_alert(args.repo, args.rule, args.severity)
    print(f"code scanning alert {args.repo}#{number}: {args.rule} ({args.severity})")
    return 0


def branch_protect(args: argparse.Namespace) -> int:
    _control(args).protect_branch(args.repo, args.branch, args.require or [])
    print(f"{args.repo}:{args.branch} is protected, requiring {', '.join(args.require or []) or 'no checks'}")
    return 0


def branch_rule(args: argparse.Namespace) -> int:
    rules = _control(args).add_branch_rule(args.repo, args.branch, args.type, args.require or None)
    kinds = ", ".join(rule["type"] for rule in rules)
    print(f"{args.repo}:{args.branch} has {len(rules)} ruleset rule(s): {kinds}")
    return 0


def rate_limit(args: argparse.Namespace) -> int:
    _control(args).set_rate_limit(args.remaining, reset_in=args.reset_in, resource=args.resource)
    print(f"the installation's {args.resource} rate limit: {args.remaining} left, reset in {args.reset_in} s")
    return 0


def deliveries(args: argparse.Namespace) -> int:
    found = _control(args).deliveries(failed=args.failed)[:args.limit]
    if not found:
        print("no failed deliveries" if args.failed else "no deliveries")
        return 0
    print(_table(["id", "guid", "event", "status", "redelivery", "delivered at"],
                 [[d["id"], d["guid"], d["event"] + (f".{d['action']}" if d.get("action") else ""),
                   f"{d['status_code']} {d['status']}", "yes" if d["redelivery"] else "",
                   d["delivered_at"]] for d in found]))
    return 0


def redeliver(args: argparse.Namespace) -> int:
    guid = _control(args).redeliver(args.id)
    print(f"redelivering {args.id} (guid {guid})")
    return 0


def fault_inject(args: argparse.Namespace) -> int:
    fault = _control(args).inject_fault(args.kind, count=args.count, path_prefix=args.path_prefix,
                                        delay_ms=args.delay_ms)
    where = fault["path_prefix"] or "every path"
    extra = f" ({fault['delay_ms']} ms)" if fault["kind"] == "slow" else ""
    print(f"the next {fault['count']} requests to {where} meet {fault['kind']}{extra}")
    return 0


def fault_clear(args: argparse.Namespace) -> int:
    print(f"cleared {_control(args).clear_faults()} faults")
    return 0


def state(args: argparse.Namespace) -> int:
    summary = _control(args).state()
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    counts = summary["counts"]
    print(f"installation {summary['installation_id']} of App {summary['app_slug']} ({summary['app_id']}) "
          f"on {summary['owner']}; webhooks to {summary['webhook_url'] or 'nowhere'}")
    print(_table(["repository", "default branch", "head", "branches", "open issues", "open pulls"],
                 [[name, repo["default_branch"], repo["head_sha"][:12], len(repo["branches"]),
                   repo["open_issues"], repo["open_pulls"]] for name, repo in summary["repos"].items()]))
    print(", ".join(f"{name.replace('_', ' ')} {value}" for name, value in counts.items()))
    return 0


def _guarded(verb: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Answer a refusal or an unreachable sandbox with one line on stderr and exit status 1."""
    from sandbox.github.control import SandboxError

    def run(args: argparse.Namespace) -> int:
        try:
            return verb(args)
        except (SandboxError, argparse.ArgumentTypeError) as exc:
            print(f"agentops sandbox github: {exc}", file=sys.stderr)
            return 1

    return run


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `sandbox github ...` to an `agentops`-style parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help=f"the sandbox (default {DEFAULT_URL})")

    sandbox = subparsers.add_parser("sandbox",
                                    help="drive the local sandboxes that stand in for outside services")
    services = sandbox.add_subparsers(dest="sandbox_service", required=True, metavar="SERVICE")
    github = services.add_parser(
        "github", help="act as people on the GitHub sandbox and inspect its deliveries",
        description="Act on the GitHub sandbox as people would (each action is delivered to the "
        "webhook as GitHub would deliver it), inspect deliveries, inject faults.")
    verbs = github.add_subparsers(dest="github_verb", required=True, metavar="COMMAND")

    def leaf(parent: Any, name: str, verb: Callable[[argparse.Namespace], int], help_: str) -> Any:
        command = parent.add_parser(name, parents=[common], help=help_,
                                    description=help_[0].upper() + help_[1:])
        command.set_defaults(run=_guarded(verb))
        return command

    issue = verbs.add_parser("issue", help="open, label and comment on issues")
    issue_verbs = issue.add_subparsers(dest="issue_verb", required=True, metavar="COMMAND")
    command = leaf(issue_verbs, "open", issue_open, "open an issue (issues.opened)")
    command.add_argument("repo", help="owner/name")
    command.add_argument("title")
    command.add_argument("--body", default="")
    command.add_argument("--author", default="octocat")
    command = leaf(issue_verbs, "label", issue_label, "add a label to an issue or PR (issues.labeled)")
    command.add_argument("repo")
    command.add_argument("number", type=int)
    command.add_argument("label")
    command.add_argument("--actor", default="octocat")
    command = leaf(issue_verbs, "comment", issue_comment,
                   "comment on an issue or PR, a ChatOps command say (issue_comment.created)")
    command.add_argument("repo")
    command.add_argument("number", type=int)
    command.add_argument("body")
    command.add_argument("--author", default="octocat")
    command.add_argument("--user-type", choices=["User", "Bot"], default="User")

    pr = verbs.add_parser("pr", help="open, push to, review and merge pull requests")
    pr_verbs = pr.add_subparsers(dest="pr_verb", required=True, metavar="COMMAND")
    command = leaf(pr_verbs, "open", pr_open,
                   "push a branch and open a pull request (push, pull_request.opened)")
    command.add_argument("repo")
    command.add_argument("head", help="the head branch (created from the base when new)")
    command.add_argument("title")
    command.add_argument("--body", default="")
    command.add_argument("--author", default="octocat")
    command.add_argument("--base", default=None, help="the base branch (default: the default branch)")
    command.add_argument("--file", action="append", metavar="PATH=TEXT", help="a file of the head commit")
    command = leaf(pr_verbs, "push", pr_push,
                   "push a commit to a branch (push; pull_request.synchronize for its open PRs)")
    command.add_argument("repo")
    command.add_argument("branch")
    command.add_argument("--file", action="append", metavar="PATH=TEXT", help="a file to write")
    command.add_argument("--delete", action="append", metavar="PATH", help="a file to delete")
    command.add_argument("--message", default="")
    command.add_argument("--author", default="octocat")
    command = leaf(pr_verbs, "review", pr_review, "review a pull request (pull_request_review.submitted)")
    command.add_argument("repo")
    command.add_argument("number", type=int)
    command.add_argument("reviewer")
    command.add_argument("--state", choices=["APPROVED", "CHANGES_REQUESTED", "COMMENTED"],
                         default="APPROVED")
    command.add_argument("--body", default="")
    command = leaf(pr_verbs, "merge", pr_merge,
                   "merge a pull request (pull_request.closed merged, push to the base)")
    command.add_argument("repo")
    command.add_argument("number", type=int)
    command.add_argument("--actor", default="octocat")

    ci = verbs.add_parser("ci", help="complete another App's CI on a commit")
    ci_verbs = ci.add_subparsers(dest="ci_verb", required=True, metavar="COMMAND")
    command = leaf(ci_verbs, "complete", ci_complete,
                   "CI finishes a check run on a commit (check_run.completed, check_suite.completed)")
    command.add_argument("repo")
    command.add_argument("sha", help="a commit sha or a branch")
    command.add_argument("--conclusion", default="success",
                         choices=["success", "failure", "neutral", "cancelled", "timed_out",
                                  "action_required", "skipped"])
    command.add_argument("--name", default="ci", help="the check run's name (default: ci)")

    status = verbs.add_parser("status", help="report commit statuses as another CI")
    status_verbs = status.add_subparsers(dest="status_verb", required=True, metavar="COMMAND")
    command = leaf(status_verbs, "set", status_set, "another CI reports a commit status (status)")
    command.add_argument("repo")
    command.add_argument("sha", help="a commit sha or a branch")
    command.add_argument("state", choices=["error", "failure", "pending", "success"])
    command.add_argument("--context", default="ci")
    command.add_argument("--description", default="")

    workflow = verbs.add_parser("workflow", help="run GitHub Actions workflows")
    workflow_verbs = workflow.add_subparsers(dest="workflow_verb", required=True, metavar="COMMAND")
    conclusions = ["success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"]
    command = leaf(workflow_verbs, "run", workflow_run,
                   "a workflow runs and finishes (workflow_run requested, in_progress, completed)")
    command.add_argument("repo")
    command.add_argument("name", help="the workflow, like ci (its file .github/workflows/ci.yml)")
    command.add_argument("sha", help="a commit sha or a branch")
    command.add_argument("--branch", default=None)
    command.add_argument("--conclusion", default="success", choices=conclusions)
    command.add_argument("--event", default="push")
    command.add_argument("--artifact", action="append", metavar="NAME=ZIPFILE", help="an artifact it uploads")
    command = leaf(workflow_verbs, "complete", workflow_complete,
                   "a queued or running workflow run finishes (workflow_run completed)")
    command.add_argument("repo")
    command.add_argument("run_id", type=int)
    command.add_argument("--conclusion", default="success", choices=conclusions)
    command = leaf(workflow_verbs, "script-rerun", workflow_script_rerun,
                   "the next re-run of a workflow run ends with this conclusion")
    command.add_argument("repo")
    command.add_argument("run_id", type=int)
    command.add_argument("conclusion", choices=conclusions)

    alert = verbs.add_parser("alert", help="security alerts: Dependabot and code scanning")
    alert_verbs = alert.add_subparsers(dest="alert_verb", required=True, metavar="COMMAND")
    command = leaf(alert_verbs, "dependabot", alert_dependabot, "Dependabot finds a vulnerable dependency")
    command.add_argument("repo")
    command.add_argument("package")
    command.add_argument("severity", choices=["low", "moderate", "medium", "high", "critical"])
    command.add_argument("--state", default="open", choices=["open", "dismissed", "fixed", "auto_dismissed"])
    command = leaf(alert_verbs, "code-scanning", alert_code_scanning, "code scanning finds a rule broken")
    command.add_argument("repo")
    command.add_argument("rule", help="the rule's id, like py/sql-injection")
    command.add_argument("severity",
                         choices=["note", "warning", "error", "low", "medium", "high", "critical"])

    branch = verbs.add_parser("branch", help="branch protection")
    branch_verbs = branch.add_subparsers(dest="branch_verb", required=True, metavar="COMMAND")
    command = leaf(branch_verbs, "protect", branch_protect, "protect a branch, requiring status checks")
    command.add_argument("repo")
    command.add_argument("branch")
    command.add_argument("--require", action="append", metavar="CHECK", help="a required status check")

    command = leaf(branch_verbs, "rule", branch_rule, "add a repository ruleset's rule to a branch")
    command.add_argument("repo")
    command.add_argument("branch")
    command.add_argument("type", help="pull_request, required_status_checks, non_fast_forward, deletion, ...")
    command.add_argument("--require", action="append", metavar="CHECK",
                         help="for required_status_checks: a required check")
    command = leaf(verbs, "rate-limit", rate_limit, "set what is left of the installation's rate limit")
    command.add_argument("remaining", type=int)
    command.add_argument("--reset-in", type=int, default=3600, metavar="SECONDS")
    command.add_argument("--resource", default="core", choices=["core", "graphql"])

    command = leaf(verbs, "deliveries", deliveries, "list webhook delivery attempts, newest first")
    command.add_argument("--failed", action="store_true", help="only attempts not answered 2xx")
    command.add_argument("--limit", type=int, default=50)
    command = leaf(verbs, "redeliver", redeliver, "attempt a delivery again, with the same guid")
    command.add_argument("id", type=int, help="the delivery attempt's id (see deliveries)")

    fault = verbs.add_parser("fault", help="make the next REST requests fail as GitHub can")
    fault_verbs = fault.add_subparsers(dest="fault_verb", required=True, metavar="COMMAND")
    command = leaf(fault_verbs, "inject", fault_inject,
                   "the next COUNT matching requests meet a fault: 502, a secondary rate limit, or a delay")
    command.add_argument("kind", choices=FAULT_KINDS)
    command.add_argument("--count", type=int, default=1)
    command.add_argument("--path-prefix", default="", help="only requests whose path starts so, like /repos/")
    command.add_argument("--delay-ms", type=int, default=0, help="for slow: how long each answer waits")
    leaf(fault_verbs, "clear", fault_clear, "remove every fault not yet met")

    command = leaf(verbs, "state", state, "summarise the sandbox: repositories and counts")
    command.add_argument("--json", action="store_true", help="everything the sandbox records, as JSON")
    return sandbox
