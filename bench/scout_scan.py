"""The repo scout's rate-limit economy, measured: one organisation scanned three times.

Runs the real orchestrator and scout in one process on the Pub/Sub and Firestore emulators and the
GitHub sandbox (`tests/support/world.py`), with the clock turned by the benchmark. The sandbox's
organisation gets `--repos` more repositories, a third of them with a failing workflow run and a
Dependabot alert. Then the `repo_scout` tick, three times, four hours apart:

1. the first scan: every repository read over REST;
2. nothing changed: the one GraphQL query per 50 repositories says so, and each repository costs
   its policy read (a 304, which GitHub does not charge);
3. `--changed` repositories got a commit: only those are read again.

For each scan it prints the repositories re-read and reused, the API calls the scout counted per
repository (REST, 304s included, writes and its share of the GraphQL queries), the requests the
sandbox served (installation tokens and listings included), the REST rate limit charged, and the
wall time. Run from the repository root:

    .venv/bin/python -m bench.scout_scan --repos 30 --changed 3
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.release_loop import emulator_env
from shared.task_store import repo_doc_id
from tests.support.world import World, world


def _newest_scans(w: World, repos: list[str]) -> list[dict[str, Any]]:
    client = w.services.firestore()
    newest = []
    for repo in repos:
        docs = [doc.to_dict() for doc in client.collection("repos").document(repo_doc_id(repo))
                .collection("scans").stream()]
        newest.append(max(docs, key=lambda doc: doc["scanned_at"]))
    return newest


def _scan(w: World, name: str, repos: list[str]) -> dict[str, Any]:
    w.advance(hours=4)
    served_before = len(w.github.requests)
    charged_before = w.github.rate_limit_used
    started = time.perf_counter()
    w.tick("repo_scout")
    w.pump(timeout=600)
    wall = time.perf_counter() - started
    scans = _newest_scans(w, repos)
    calls = [int(scan.get("api_calls") or 0) for scan in scans]
    return {
        "scan": name,
        "repos": len(scans),
        "re_read": sum(1 for scan in scans if not scan.get("reused")),
        "reused": sum(1 for scan in scans if scan.get("reused")),
        "api_calls": sum(calls),
        "per_repo_median": statistics.median(calls),
        "per_repo_max": max(calls),
        "sandbox_requests": len(w.github.requests) - served_before,
        "rest_charged": w.github.rate_limit_used - charged_before,
        "wall_s": round(wall, 2),
    }


def run(repos: int, changed: int) -> list[dict[str, Any]]:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as logs, emulator_env(Path(logs)) as env:
        project = f"bench-{uuid.uuid4().hex[:8]}"
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        with world({**env, "GOOGLE_CLOUD_PROJECT": project}, project, start=start) as w:
            gh = w.github
            names = [f"octo/service-{n:02d}" for n in range(repos)]
            for index, name in enumerate(names):
                gh.add_repo(name, files={"README.md": f"{name}\n"})
                if index % 3 == 0:
                    gh.run_workflow(name, "ci", "main", conclusion="failure")
                    gh.add_dependabot_alert(name, "urllib3", "high")
            w.pump()
            everyone = sorted(gh.state()["repos"])
            rows = [_scan(w, "first", everyone), _scan(w, "unchanged", everyone)]
            for name in names[:changed]:
                gh.push_commit(name, "main", {"CHANGELOG.md": "a change\n"}, message="a change")
            w.pump()
            rows.append(_scan(w, f"{changed} changed", everyone))
            return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row[key]) for key in headers) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scout_scan", description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=30, help="repositories added to the organisation")
    parser.add_argument("--changed", type=int, default=3, help="repositories changed before the third scan")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = run(args.repos, min(args.changed, args.repos))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
