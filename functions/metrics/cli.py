"""`agentops metrics ...` and `agentops report weekly`: the metrics and the weekly report by hand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.metrics.dora import dig
from shared import cli as operator_cli
from shared.cli import table
from shared.errors import PermanentError


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a day is YYYY-MM-DD, not {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 31:
        raise argparse.ArgumentTypeError(f"--days is a number from 1 to 31, not {text!r}")
    return value


def _hours(seconds: Any) -> str:
    return "-" if not isinstance(seconds, int | float) else f"{seconds / 3600:.1f} h"


def _rate(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.0%}"


def _percent(value: Any) -> str:
    """A coverage figure (already in percent); "-" when there is none."""
    return "-" if isinstance(value, bool) or not isinstance(value, int | float) else f"{value:g}%"


def _with_band(text: str, band: Any) -> str:
    return f"{text} ({band})" if band else text


def _dora_cells(scope: Mapping[str, Any]) -> list[str]:
    frequency, lead = scope.get("deployment_frequency") or {}, scope.get("lead_time") or {}
    failure, restore = scope.get("change_failure_rate") or {}, scope.get("time_to_restore") or {}
    return [_with_band(str(frequency.get("deploys", 0)), frequency.get("band")),
            _with_band(_hours(lead.get("median_seconds")), lead.get("band")),
            _with_band(_rate(failure.get("rate")), failure.get("band")),
            _with_band(_hours(restore.get("median_seconds")), restore.get("band"))]


HEADERS = ["date", "deploys", "lead time", "change failure", "time to restore", "builds", "tasks ended",
           "autonomous", "agent PR approval", "spend"]


def _row(doc: Mapping[str, Any]) -> list[str]:
    tasks = dig(doc, "agents", "tasks", "all") or {}
    return [str(doc.get("date") or ""), *_dora_cells(dig(doc, "dora", "all") or {}),
            _rate(dig(doc, "delivery", "build", "success_rate")), str(tasks.get("ended", 0)),
            _rate(tasks.get("autonomous_rate")),
            _rate(dig(doc, "agents", "pull_requests", "by_actor", "agent", "approval_rate")),
            f"{dig(doc, 'agents', 'cost', 'spent') or 0:g}"]


def _metrics_daily(args: argparse.Namespace) -> int:
    from functions.metrics import job

    metrics = job.from_services(operator_cli.load_services())
    last = args.date or (datetime.now(UTC).date() - timedelta(days=1))
    days = [last - timedelta(days=back) for back in range(args.days - 1, -1, -1)]
    done = metrics.compute_days(days)
    if not done:
        print(f"agentops: {last} has not started yet", file=sys.stderr)
        return 1
    docs = [metrics.stored(date.fromisoformat(item.date)) or item.to_doc() for item in done]
    print(table(HEADERS, [_row(doc) for doc in docs]))
    for note in sorted({note for doc in docs for note in doc.get("notes") or []}):
        print(f"note: {note}")
    return 0


def _metrics_show(args: argparse.Namespace) -> int:
    from functions.metrics import job

    metrics = job.from_services(operator_cli.load_services())
    day = args.date or (datetime.now(UTC).date() - timedelta(days=1))
    doc = metrics.stored(day)
    if doc is None:
        print(f"no metrics for {day}: compute them with `agentops metrics daily --date {day}`",
              file=sys.stderr)
        return 1
    if not args.repo:
        print(table(HEADERS, [_row(doc)]))
    else:
        repos = {str(item.get("repository")): item for item in dig(doc, "dora", "repositories") or []}
        scope = repos.get(args.repo)
        if scope is None:
            print(f"no deploys or incidents of {args.repo} on {day}")
        else:
            rows = [[args.repo, *_dora_cells(scope)]]
            rows += [[f"  {item.get('service')}", *_dora_cells(item)] for item in scope.get("services") or []]
            print(table(["repository / service", "deploys", "lead time", "change failure", "time to restore"],
                        rows))
        delivery = {str(item.get("repository")): item for item in dig(doc, "delivery", "repositories") or []}
        found = delivery.get(args.repo)
        if found is not None:
            build, coverage = found.get("build") or {}, found.get("coverage") or {}
            print(f"builds {_rate(build.get('success_rate'))} of {build.get('runs')} runs, "
                  f"coverage {_percent(coverage.get('latest'))} ({coverage.get('trend') or '-'})")
    for note in doc.get("notes") or []:
        print(f"note: {note}")
    return 0


def _report_weekly(args: argparse.Namespace) -> int:
    from functions.metrics import weekly

    report = weekly.from_services(operator_cli.load_services())
    now = report.clock()
    monday = args.week or weekly.report_monday(now)
    if monday.weekday() != 0:
        monday -= timedelta(days=monday.weekday())  # any day names its week
    try:
        inputs = report.build_inputs(monday, now)
    except PermanentError as exc:
        print(f"agentops: {exc}", file=sys.stderr)
        return 1
    markdown = report.markdown(inputs)
    if args.markdown:
        Path(args.markdown).write_text(markdown, encoding="utf-8")
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.html:
        Path(args.html).write_text(report.html(inputs), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if not args.markdown and not args.html:
        sys.stdout.write(markdown)
    if args.post:
        posted = report.post_weekly(monday, now, inputs=inputs)
        print(f"weekly report {posted.week}: {posted.summary}", file=sys.stderr)
    return 0


def register(verbs: Any) -> None:
    """Add `metrics daily|show` and `report weekly` to the `agentops` parser's commands."""
    metrics = verbs.add_parser("metrics", help="DORA, delivery and agent metrics (metrics/{date})",
                               description="Compute and read the daily metrics documents. "
                               "See docs/metrics.md.")
    metrics_verbs = metrics.add_subparsers(dest="metrics_verb", required=True, metavar="COMMAND")
    daily = metrics_verbs.add_parser(
        "daily", help="compute and store days' metrics, and print their headline figures",
        description="Compute metrics/{YYYY-MM-DD} for a UTC day (default yesterday) and the days before "
        "it, store each (the same document the daily tick writes), and print a table of the headline "
        "figures. A day still going is computed as known now.")
    daily.add_argument("--date", type=_day, help="the last day to compute, YYYY-MM-DD (default yesterday)")
    daily.add_argument("--days", type=_positive, default=1, help="how many days up to --date (default 1)")
    daily.set_defaults(run=_metrics_daily)
    show = metrics_verbs.add_parser(
        "show", help="print a stored day's metrics",
        description="Print the headline figures of a stored metrics/{YYYY-MM-DD} document, or one "
        "repository's DORA figures by service. Exits 1 when the day has no document.")
    show.add_argument("--date", type=_day, help="the day, YYYY-MM-DD (default yesterday)")
    show.add_argument("--repo", help="one repository (owner/name)")
    show.set_defaults(run=_metrics_show)

    report = verbs.add_parser("report", help="the weekly report",
                              description="Render, write or post the weekly report. See docs/metrics.md.")
    report_verbs = report.add_subparsers(dest="report_verb", required=True, metavar="COMMAND")
    weekly = report_verbs.add_parser(
        "weekly", help="render the weekly report (Markdown on stdout by default)",
        description="Build the report of one week (default: the last full week) from the metrics, "
        "computing any missing daily document first. Prints the Markdown unless --markdown or --html "
        "name files; --html writes one static page (no script, no external resource). --post creates "
        "or updates the week's issue in AGENTOPS_REPORT_REPO and stores the report, as the Monday "
        "tick does.")
    weekly.add_argument("--week", type=_day, help="the week's Monday (or any day of it), YYYY-MM-DD")
    weekly.add_argument("--markdown", metavar="FILE", help="write the Markdown to FILE")
    weekly.add_argument("--html", metavar="FILE", help="write the static HTML page to FILE")
    weekly.add_argument("--post", action=argparse.BooleanOptionalAction, default=False,
                        help="post the report issue and store the report (default: --no-post)")
    weekly.set_defaults(run=_report_weekly)
