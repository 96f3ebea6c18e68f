"""Regenerate sandbox/github/openapi-subset.json from GitHub's official REST description.

The project validates every request it sends, and every response the GitHub sandbox returns,
against the operations it uses. The full description is 13 MB; this keeps those operations and
the components they reference. Usage:

    npm pack @octokit/openapi@23.0.2 && tar xzf octokit-openapi-23.0.2.tgz
    python scripts/github_openapi_subset.py package/generated/api.github.com.json

Add an operation id to OPERATIONS when code starts calling a new endpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SOURCE_PACKAGE = "@octokit/openapi@23.0.2"
OPERATIONS = (
    "apps/create-installation-access-token",
    "apps/get-repo-installation",
    "apps/get-authenticated",
    "apps/list-webhook-deliveries",
    "apps/get-webhook-delivery",
    "apps/redeliver-webhook-delivery",
    "issues/list-for-repo",
    "issues/create-comment",
    "issues/add-labels",
    "issues/create-label",
    "issues/list-labels-for-repo",
    "issues/get-label",
    "issues/update-label",
    "issues/delete-label",
    "repos/get",
    "repos/update",
    "repos/get-content",
    "repos/list-branches",
    "repos/get-branch",
    "git/create-ref",
    "git/update-ref",
    "git/delete-ref",
    "git/list-matching-refs",
    "checks/create",
    "checks/list-for-ref",
    "checks/get",
    "checks/update",
    "repos/get-collaborator-permission-level",
    "reactions/create-for-issue-comment",
    "reactions/create-for-issue",
    "pulls/get",
    "pulls/list",
    "pulls/list-reviews",
    "teams/get-membership-for-user-in-org",
    "issues/get",
    "issues/list-comments",
    "issues/update-comment",
    "issues/remove-label",
    "repos/create-commit-status",
    "repos/list-commit-statuses-for-ref",
    "repos/get-combined-status-for-ref",
    "actions/list-workflow-runs-for-repo",
    "actions/get-workflow-run",
    "actions/get-workflow-run-attempt",
    "actions/re-run-workflow",
    "actions/re-run-workflow-failed-jobs",
    "actions/create-workflow-dispatch",
    "actions/list-jobs-for-workflow-run",
    "actions/list-workflow-run-artifacts",
    "actions/download-artifact",
    "repos/create-deployment",
    "repos/list-deployments",
    "repos/get-deployment",
    "repos/create-deployment-status",
    "repos/list-deployment-statuses",
    "dependabot/list-alerts-for-repo",
    "code-scanning/list-alerts-for-repo",
    "repos/get-branch-protection",
    "repos/get-branch-rules",
    "git/create-blob",
    "git/get-blob",
    "git/create-tree",
    "git/get-tree",
    "git/create-commit",
    "git/get-commit",
    "git/get-ref",
    "issues/add-assignees",
    "pulls/create",
    "pulls/update",
    "pulls/request-reviewers",
    "pulls/list-files",
    "repos/compare-commits-with-basehead",
    "pulls/create-review",
    "pulls/update-review",
    "checks/list-suites-for-ref",
    "issues/create",
    "issues/update",
    "apps/list-installations",
    "apps/list-repos-accessible-to-installation",
    "pulls/list-commits",
)
OUTPUT = Path(__file__).resolve().parent.parent / "sandbox" / "github" / "openapi-subset.json"


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def subset(spec: dict[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and operation.get("operationId") in operations:
                paths.setdefault(path, {})[method] = operation
    found = {op.get("operationId") for item in paths.values() for op in item.values()}
    missing = set(operations) - found
    if missing:
        raise SystemExit(f"operations not in the description: {sorted(missing)}")
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        value = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = value
        pending |= _refs(value)
    return {
        "openapi": spec["openapi"],
        "info": {**spec["info"], "x-subset-of": SOURCE_PACKAGE},
        "paths": dict(sorted(paths.items())),
        "components": {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    OUTPUT.write_text(json.dumps(subset(spec, OPERATIONS), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT.name}: {len(OPERATIONS)} operations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
