"""GitHub on this machine: the REST subset the project uses, webhooks out, and people to act.

`GitHubSandbox` is a WSGI app with three faces:

- **GitHub's REST API** for one App installed on one organisation. Every request is checked
  against `openapi-subset.json` (GitHub's official description of the operations the project
  calls) before it is handled and every 2xx/3xx answer before it is sent, so the sandbox can
  neither accept what GitHub would reject nor answer what GitHub cannot. A violation, or a
  request for an operation the sandbox does not serve, lands in `errors` and is answered 500.
  Authentication is GitHub's: the App's RS256 JWT on `/app/*` and `/repos/{o}/{r}/installation`,
  installation tokens it issued everywhere else, scoped to the permissions and repositories they
  were asked for (403 or 404 beyond them, as GitHub answers). Answers are GitHub's documented
  examples with ids, logins, bodies, shas and urls replaced by the sandbox's state; ETags,
  `Link` pagination and rate-limit headers are GitHub's.
- **GraphQL** (`POST /graphql`, `graphql.py`): queries validated against `graphql-subset.graphql`
  (GitHub's official schema, the part the project uses) and executed on the same state.
- **Webhooks.** Each change GitHub would announce is delivered to `webhook_url`, signed, with
  GitHub's headers, built on GitHub's example payload of that event and action. Every attempt is
  recorded and served by `GET /app/hook/deliveries`; `POST .../attempts` redelivers.
- **People.** `open_issue`, `add_label`, `comment`, `open_pull`, `push_commit`, `review`, `merge`,
  `complete_ci` and the rest change the state and announce it as GitHub would. The same actions
  are served without authentication under `/_sandbox/` (see `control.py`), which is no part of
  GitHub's API and is never checked against it.

The setup methods (`add_repo`, `set_file`, `add_issue`, `add_pull`, `add_review`, `add_comment`,
...) arrange state silently, as if it had always been there.

Known simplifications: the installation holds every repository; branches are refs to snapshots
of the whole tree (a commit the sandbox did not make shows the default branch); a merge applies
the pull request's changes onto its base without conflicts; every REST request counts against a
single rate-limit window (GraphQL queries against one of their own); git objects are git's (blob,
tree and API-made commit shas match git's) but submodules are not modelled.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import hashlib
import inspect
import io
import json
import math
import os
import re
import secrets
import string
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import jwt

from sandbox.github import graphql, openapi, webhooks
from sandbox.github.payloads import APP_FIELDS, adapt, retarget, set_present, strip, subscribed, worst
from shared.github.permissions import APP_EVENTS, app_permissions

DOCS = "https://docs.github.com/rest"
ROLE_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
                   "read": "read", "none": "none"}
LEVELS = {"read": 1, "write": 2, "admin": 3}
TOKEN_LIFETIME = timedelta(hours=1)
JWT_MAX_LIFETIME = 600  # GitHub refuses an App JWT that expires more than 10 minutes ahead
CLOCK_LEEWAY = 60
ZERO_SHA = "0" * 40
FILE_MODE = "100644"
TREE_MODE = "040000"
MAX_PUSH_COMMITS = 20  # a push payload lists at most this many commits, the newest
MAX_DELIVERIES = 500  # the newest attempts kept (GitHub keeps them for a limited time, too)
STATE_VERSION = 1
# The operations whose descriptions document 304: only these carry an ETag.
CONDITIONAL = frozenset({
    "/repos/{owner}/{repo}/contents/{path}", "/repos/{owner}/{repo}/issues/{issue_number}",
    "/repos/{owner}/{repo}/pulls", "/repos/{owner}/{repo}/pulls/{pull_number}", "/installation/repositories",
})
APP = "app"  # a route that takes the App's JWT
# Parameters GitHub's description marks x-multi-segment (a branch name may hold "/") that the
# description's router (openapi.py) takes as one segment: checked against it with "/" as %2F.
SLASHED = frozenset({"branch", "basehead", "tree_sha"})
# Alternatives, any one of which lets an installation token through.
ISSUES_READ = (("issues", "read"), ("pull_requests", "read"))
ISSUES_WRITE = (("issues", "write"), ("pull_requests", "write"))
CONTENTS_READ = (("contents", "read"),)
CONTENTS_WRITE = (("contents", "write"),)
PULLS_READ = (("pull_requests", "read"),)
PULLS_WRITE = (("pull_requests", "write"),)
ROUTES: tuple[tuple[str, str, str, Any], ...] = (
    ("GET", "/app", "_get_app", APP),
    ("GET", "/app/installations", "_list_installations", APP),
    ("GET", "/installation/repositories", "_list_installation_repositories", ()),
    ("POST", "/app/installations/{installation_id}/access_tokens", "_create_token", APP),
    ("GET", "/app/hook/deliveries", "_list_deliveries", APP),
    ("GET", "/app/hook/deliveries/{delivery_id}", "_get_delivery", APP),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts", "_redeliver", APP),
    ("GET", "/repos/{owner}/{repo}/installation", "_get_installation", APP),
    ("GET", "/repos/{owner}/{repo}", "_get_repo", ()),
    ("GET", "/repos/{owner}/{repo}/contents/{path}", "_get_content", (("contents", "read"),)),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", "_get_permission", ()),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}", "_get_issue", ISSUES_READ),
    ("POST", "/repos/{owner}/{repo}/issues", "_create_issue", (("issues", "write"),)),
    ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}", "_update_issue", ISSUES_WRITE),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "_list_comments", ISSUES_READ),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "_create_comment", ISSUES_WRITE),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "_update_comment", ISSUES_WRITE),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", "_react_to_comment",
     ISSUES_WRITE),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions", "_react_to_issue", ISSUES_WRITE),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "_add_labels", ISSUES_WRITE),
    ("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", "_remove_label", ISSUES_WRITE),
    ("POST", "/repos/{owner}/{repo}/check-runs", "_create_check_run", (("checks", "write"),)),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "_update_check_run",
     (("checks", "write"),)),
    ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "_get_check_run", (("checks", "read"),)),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", "_list_check_runs", (("checks", "read"),)),
    ("GET", "/repos/{owner}/{repo}/pulls", "_list_pulls", (("pull_requests", "read"),)),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "_get_pull", (("pull_requests", "read"),)),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "_list_reviews",
     (("pull_requests", "read"),)),
    ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}", "_get_membership",
     (("members", "read"),)),
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}", "_create_status", (("statuses", "write"),)),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses", "_list_statuses", (("statuses", "read"),)),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/status", "_combined_status", (("statuses", "read"),)),
    ("GET", "/repos/{owner}/{repo}/actions/runs", "_list_workflow_runs", (("actions", "read"),)),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", "_get_workflow_run", (("actions", "read"),)),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}",
     "_get_workflow_run_attempt", (("actions", "read"),)),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun", "_rerun", (("actions", "write"),)),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs", "_rerun_failed",
     (("actions", "write"),)),
    ("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", "_dispatch",
     (("actions", "write"),)),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "_list_jobs", (("actions", "read"),)),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", "_list_artifacts",
     (("actions", "read"),)),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}", "_download_artifact",
     (("actions", "read"),)),
    ("POST", "/repos/{owner}/{repo}/deployments", "_create_deployment", (("deployments", "write"),)),
    ("GET", "/repos/{owner}/{repo}/deployments", "_list_deployments", (("deployments", "read"),)),
    ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}", "_get_deployment",
     (("deployments", "read"),)),
    ("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", "_create_deployment_status",
     (("deployments", "write"),)),
    ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", "_list_deployment_statuses",
     (("deployments", "read"),)),
    ("GET", "/repos/{owner}/{repo}/dependabot/alerts", "_list_dependabot_alerts",
     (("vulnerability_alerts", "read"),)),
    ("GET", "/repos/{owner}/{repo}/code-scanning/alerts", "_list_code_scanning_alerts",
     (("security_events", "read"),)),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection", "_get_branch_protection",
     (("administration", "read"),)),
    # metadata: read, which GitHub grants every installation token
    ("GET", "/repos/{owner}/{repo}/rules/branches/{branch}", "_get_branch_rules", ()),
    ("PATCH", "/repos/{owner}/{repo}", "_update_repo", (("administration", "write"),)),
    ("GET", "/repos/{owner}/{repo}/branches", "_list_branches", CONTENTS_READ),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}", "_get_branch", CONTENTS_READ),
    ("GET", "/repos/{owner}/{repo}/compare/{basehead}", "_compare", CONTENTS_READ),
    ("POST", "/repos/{owner}/{repo}/git/blobs", "_create_blob", CONTENTS_WRITE),
    ("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}", "_get_blob", CONTENTS_READ),
    ("POST", "/repos/{owner}/{repo}/git/trees", "_create_tree", CONTENTS_WRITE),
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", "_get_tree", CONTENTS_READ),
    ("POST", "/repos/{owner}/{repo}/git/commits", "_create_git_commit", CONTENTS_WRITE),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}", "_get_git_commit", CONTENTS_READ),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}", "_get_ref", CONTENTS_READ),
    ("GET", "/repos/{owner}/{repo}/git/matching-refs/{ref}", "_list_matching_refs", CONTENTS_READ),
    ("POST", "/repos/{owner}/{repo}/git/refs", "_create_ref", CONTENTS_WRITE),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}", "_update_ref", CONTENTS_WRITE),
    ("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}", "_delete_ref", CONTENTS_WRITE),
    ("GET", "/repos/{owner}/{repo}/issues", "_list_issues", ISSUES_READ),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/assignees", "_add_assignees", ISSUES_WRITE),
    ("GET", "/repos/{owner}/{repo}/labels", "_list_labels", ISSUES_READ),
    ("POST", "/repos/{owner}/{repo}/labels", "_create_label", ISSUES_WRITE),
    ("GET", "/repos/{owner}/{repo}/labels/{name}", "_get_label", ISSUES_READ),
    ("PATCH", "/repos/{owner}/{repo}/labels/{name}", "_update_label", ISSUES_WRITE),
    ("DELETE", "/repos/{owner}/{repo}/labels/{name}", "_delete_label", ISSUES_WRITE),
    ("POST", "/repos/{owner}/{repo}/pulls", "_create_pull", PULLS_WRITE),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", "_update_pull", PULLS_WRITE),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", "_list_pull_files", PULLS_READ),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", "_list_pull_commits", PULLS_READ),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers", "_request_reviewers",
     PULLS_WRITE),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "_create_review", PULLS_WRITE),
    ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}", "_update_review", PULLS_WRITE),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-suites", "_list_check_suites", (("checks", "read"),)),
)
# The webhooks the sandbox sends, as `<event>$<action>` (push has no action: `push$event`).
EMITTED = frozenset({
    "installation$created",
    "issues$opened", "issues$labeled", "issues$unlabeled", "issues$closed", "issues$assigned",
    "issues$edited", "issues$reopened",
    "issue_comment$created", "issue_comment$edited",
    "pull_request$opened", "pull_request$synchronize", "pull_request$closed", "pull_request$labeled",
    "pull_request$unlabeled", "pull_request$assigned", "pull_request$review_requested",
    "pull_request_review$submitted", "push$event",
    "check_run$created", "check_run$completed", "check_suite$completed", "status$event",
    "workflow_run$requested", "workflow_run$in_progress", "workflow_run$completed",
    "deployment$created", "deployment_status$created",
})
# Another App's CI, whose check suites people complete with `complete_ci`.
CI_APP = {"id": 15368, "slug": "github-actions", "name": "GitHub Actions", "owner": "github"}
FAULTS = {
    "server_error": (502, {"message": "Server Error"}),
    "secondary_rate_limit": (403, {
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                   "again. If you reach out to GitHub Support for help, please include the request ID "
                   "{request_id}.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                             "#about-secondary-rate-limits"}),
    "slow": (0, None),
}
STATUS_STATES = ("error", "failure", "pending", "success")
RUN_CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required")
FAILED = frozenset({"failure", "cancelled", "timed_out"})  # what re-run-failed-jobs re-runs
# A closing keyword in a merged pull request's title or body closes the issue it names.
CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b", re.IGNORECASE)
# The people's actions, served as POST /_sandbox/actions/<name>.
HUMAN_ACTIONS = ("install", "open_issue", "add_label", "remove_label", "assign", "close_issue", "comment",
                 "open_pull", "push_commit", "request_review", "review", "merge", "close_pull", "complete_ci",
                 "set_permission", "add_team_member", "set_status", "run_workflow", "complete_workflow_run",
                 "script_rerun", "add_dependabot_alert", "add_code_scanning_alert", "protect_branch",
                 "add_branch_rule", "set_rate_limit")
GRAPHQL_DOCS = "https://docs.github.com/graphql"
# A check run's conclusion, and a commit status's state, as a StatusState of the rollup.
ROLLUP_CONCLUSIONS = {"success": "SUCCESS", "neutral": "SUCCESS", "skipped": "SUCCESS"}
ROLLUP_STATUSES = {"success": "SUCCESS", "failure": "FAILURE", "error": "ERROR", "pending": "PENDING"}
ROLLUP_ORDER = ("ERROR", "FAILURE", "PENDING", "EXPECTED", "SUCCESS")  # the first one present wins
# The ruleset rules `add_branch_rule` makes, with the parameters GitHub's description requires of each.
BRANCH_RULES = ("pull_request", "required_status_checks", "non_fast_forward", "deletion", "creation",
                "update", "required_linear_history", "required_signatures")


class Refused(Exception):
    """An answer GitHub gives to a well-formed request it will not carry out (4xx), with GitHub's
    `errors` where it gives them (`Validation Failed` carries objects, some 422s carry strings)."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Token:
    value: str
    permissions: dict[str, str]
    repositories: frozenset[str] | None  # repository names; None is every installed repository
    expires_at: datetime


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    token: Token | None = None


def now() -> datetime:
    return datetime.now(timezone.utc)


def timestamp(moment: datetime | None = None) -> str:
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def raw(text: str) -> bytes:
    """A file's bytes: file texts are UTF-8, with any other bytes kept as surrogate escapes."""
    return text.encode("utf-8", "surrogateescape")


def blob_sha(text: str) -> str:
    data = raw(text)
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _git_object(kind: str, body: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(body)) + body, usedforsecurity=False).hexdigest()


def tree_index(files: dict[str, str], modes: dict[str, str] | None = None
               ) -> tuple[dict[str, str], dict[str, list[tuple[str, str, str]]]]:
    """Every directory of `files` (the root is "") with its git tree sha, as git computes them, and
    its entries (name, mode, sha) in git's order."""
    modes = modes or {}
    children: dict[str, dict[str, tuple[str, str]]] = {"": {}}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), {})
    for path, text in files.items():
        directory, _, name = path.rpartition("/")
        children[directory][name] = (modes.get(path, FILE_MODE), blob_sha(text))
    shas: dict[str, str] = {}
    listing: dict[str, list[tuple[str, str, str]]] = {}
    for directory in sorted(children, key=lambda d: d.count("/") + 1 if d else 0, reverse=True):
        entries = children[directory]
        # git orders a tree's entries by name, a subtree's name as if it ended with "/"
        names = sorted(entries, key=lambda n: n + "/" if entries[n][0] == TREE_MODE else n)
        listing[directory] = [(n, *entries[n]) for n in names]
        body = b"".join(f"{entries[n][0].lstrip('0')} {n}".encode() + b"\0" + bytes.fromhex(entries[n][1])
                        for n in names)
        shas[directory] = _git_object("tree", body)
        if directory:
            parent, _, name = directory.rpartition("/")
            children[parent][name] = (TREE_MODE, shas[directory])
    return shas, listing


def tree_sha(files: dict[str, str], modes: dict[str, str] | None = None) -> str:
    return tree_index(files, modes)[0][""]


def _text_lines(text: str) -> list[str] | None:
    """A file's lines, each with its newline; None for a binary file (no patch, as GitHub shows it)."""
    if "\0" in text or any("\udc80" <= ch <= "\udcff" for ch in text):
        return None
    return text.splitlines(keepends=True)


FUNCNAME = re.compile(r"^[A-Za-z_$]")  # git's default hunk-header context: a line that starts a word


def unified_patch(before: str | None, after: str | None) -> tuple[str | None, int, int]:
    """GitHub's `patch` of one file (hunks with three lines of context, no ---/+++ header) and its
    additions and deletions; the patch is None for a binary file."""
    old = _text_lines(before or "")
    new = _text_lines(after or "")
    if old is None or new is None:
        return None, 0, 0
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    additions = deletions = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            deletions += i2 - i1
        if tag in ("replace", "insert"):
            additions += j2 - j1
    lines: list[str] = []

    def emit(prefix: str, line: str) -> None:
        lines.append(prefix + line.rstrip("\n"))
        if not line.endswith("\n"):
            lines.append("\\ No newline at end of file")

    for group in matcher.get_grouped_opcodes(3):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]

        def span(start: int, stop: int) -> str:
            length = stop - start
            first = start + 1 if length else start
            return str(first) if length == 1 else f"{first},{length}"

        context = next((line.rstrip() for line in reversed(old[:i1]) if FUNCNAME.match(line)), "")
        header = f"@@ -{span(i1, i2)} +{span(j1, j2)} @@"
        lines.append(f"{header} {context[:80].rstrip()}" if context else header)
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                for line in old[a1:a2]:
                    emit(" ", line)
                continue
            for line in old[a1:a2]:
                emit("-", line)
            for line in new[b1:b2]:
                emit("+", line)
    return "\n".join(lines), additions, deletions


def zip_files(files: dict[str, str | bytes]) -> bytes:
    """A zip archive of `files` (a name to its text or bytes), as actions/upload-artifact makes one."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data if isinstance(data, bytes) else data.encode())
    return buffer.getvalue()


def node_id(kind: str, id_: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{id_}".encode()).decode()


def _compile(template: str) -> re.Pattern[str]:
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
        pattern += re.escape(literal)
        if name:
            segments = ".*" if name == "path" else ".+" if name == "ref" or name in SLASHED else "[^/]+"
            pattern += f"(?P<{name}>{segments})"
    return re.compile(f"^{pattern}$")


def _raw_example(method: str, template: str, status: int, name: str | None = None) -> Any:
    """GitHub's documented example, unvalidated: some need repair before they match their schema."""
    content = openapi.operation(method, template)["responses"][str(status)]["content"]["application/json"]
    examples = content["examples"]
    chosen = examples[name] if name else next(iter(examples.values()))
    examples_component = openapi.spec()["components"]["examples"]
    while "$ref" in chosen:
        chosen = examples_component[chosen["$ref"].rsplit("/", 1)[-1]]
    value = chosen["value"]
    if isinstance(value, dict) and set(value) == {"$ref"}:
        value = examples_component[value["$ref"].rsplit("/", 1)[-1]]["value"]
    return json.loads(json.dumps(value))


def _date_matches(expression: str, moment: str) -> bool:
    """GitHub's search syntax for dates: `>=2024-05-01`, `<2024-05-01T12:00:00Z`, `a..b`, `2024-05-01`."""
    if ".." in expression:
        low, high = expression.split("..", 1)
        return ((low in ("", "*") or moment[:len(low)] >= low)
                and (high in ("", "*") or moment[:len(high)] <= high))
    for operator in (">=", "<=", ">", "<"):
        if expression.startswith(operator):
            bound = expression[len(operator):]
            value = moment[:len(bound)]
            return {">=": value >= bound, "<=": value <= bound, ">": value > bound,
                    "<": value < bound}[operator]
    return moment.startswith(expression)


def _json_line(line: str) -> dict[str, Any] | None:
    """One line of an append-only JSON log; None for a line a crash left half written."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _changes(method: Callable[..., Any]) -> Callable[..., Any]:
    """A public method that changes state: run it under the lock and save the state after it."""

    @functools.wraps(method)
    def changing(self: GitHubSandbox, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            result = method(self, *args, **kwargs)
            self._save()
            return result

    return changing


class GitHubSandbox:
    """GitHub for one App installed on one organisation, with the state tests and demos act on."""

    def __init__(self, public_key: Any, app_id: str = "424242", app_slug: str = "agent-ops",
                 installation_id: int = 77, owner: str = "octo", webhook_url: str = "",
                 webhook_secret: str = "", hook_id: int = 1, state_file: str | None = None) -> None:
        self.public_key = public_key
        self.app_id = str(app_id)
        self.app_slug = app_slug
        self.installation_id = installation_id
        self.owner = owner
        self.hook_id = hook_id
        self.base_url = ""  # where the sandbox is served; urls in answers and payloads are built on it
        self.app_permissions = app_permissions()
        self.rate_limit = 5000
        self.rate_limit_used = 0
        self.rate_limit_reset = int(time.time()) + 3600
        # GraphQL's own budget: each query costs 1 point.
        self.graphql_rate_limit = 5000
        self.graphql_rate_used = 0
        self.graphql_rate_reset = int(time.time()) + 3600
        self.graphql_served = 0
        self.state_file = state_file
        # What happened, for tests to assert on.
        self.comments: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []  # every attempt, oldest first
        self.requests: list[tuple[str, str, int]] = []
        self.tokens_issued: list[dict[str, str] | None] = []
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._next_id = 1000
        self._next_delivery_id = 0
        self._repos: dict[str, dict[str, Any]] = {}
        self._issues: dict[tuple[str, int], dict[str, Any]] = {}
        self._reviews: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._roles: dict[tuple[str, str], str] = {}
        self._teams: dict[tuple[str, str], dict[str, Any]] = {}
        self._users: dict[str, int] = {}
        self._labels: dict[tuple[str, str], int] = {}
        self._label_info: dict[tuple[str, str], dict[str, Any]] = {}  # color and description, when set
        self.ref_writes: list[dict[str, Any]] = []  # every ref the App created, moved or deleted
        self.force_pushes: list[dict[str, Any]] = []  # the writes among them that were not fast forwards
        self._suites: dict[int, dict[str, Any]] = {}
        self._tokens: dict[str, Token] = {}
        self._faults: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.workflow_runs: dict[int, dict[str, Any]] = {}
        self.dispatches: list[dict[str, Any]] = []
        self.deployments: dict[int, dict[str, Any]] = {}
        self._workflows: dict[str, dict[str, int]] = {}  # repository -> workflow file -> id
        self._artifacts: dict[int, dict[str, Any]] = {}
        self._reruns: dict[int, list[str]] = {}  # run id -> conclusions its next attempts end with
        self._dependabot_alerts: list[dict[str, Any]] = []
        self._code_scanning_alerts: list[dict[str, Any]] = []
        self._protection: dict[str, dict[str, list[str]]] = {}  # repository -> branch -> checks
        self._rules: dict[str, dict[str, list[dict[str, Any]]]] = {}  # repository -> branch -> ruleset rules
        self._quiet = False
        self._request_base = ""
        self._routes = []
        for method, template, handler, needs in ROUTES:
            openapi.operation(method, template)  # every route is an operation of the subset
            self._routes.append((method, _compile(template), template, getattr(self, handler), needs))
        for template in CONDITIONAL:
            assert "304" in openapi.operation("GET", template)["responses"], template
        if state_file and Path(state_file).exists():
            self._restore(json.loads(Path(state_file).read_text()))
        self._webhook_secret = webhook_secret
        self._sender: webhooks.Sender | None = None
        self.set_webhook_url(webhook_url)

    @property
    def webhook_url(self) -> str:
        return self._sender.url if self._sender else ""

    def set_webhook_url(self, url: str) -> None:
        """Where webhooks go from now on (queued ones too); empty stops sending them."""
        with self._lock:
            if self._sender is None and url:
                self._sender = webhooks.Sender(url, self._webhook_secret, self.hook_id, self.app_id,
                                               self._record_delivery)
            elif self._sender is not None:
                self._sender.url = url

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Wait until every webhook queued so far has been attempted (never call it under the lock)."""
        return self._sender.wait_idle(timeout) if self._sender else True

    def close(self) -> None:
        if self._sender:
            self._sender.close()

    # ---- setup: state as if it had always been there (nothing is announced) ----------------

    @_changes
    def add_repo(self, full_name: str, default_branch: str = "main",
                 files: dict[str, str] | None = None) -> dict[str, Any]:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"a repository is owner/name, got {full_name!r}")
        repo = {"full_name": full_name, "id": self._new_id(), "default_branch": default_branch,
                "branches": {}, "commits": {}, "created_at": int(time.time())}
        self._repos[full_name] = repo
        self._new_commit(repo, default_branch, dict(files or {}), "Initial commit", self.owner)
        return self._repo_summary(repo)

    @_changes
    def set_file(self, repo: str, path: str, text: str) -> None:
        record = self._repo(repo)
        files = dict(self._tree(record, self._head(record)))
        files[path.strip("/")] = text
        self._new_commit(record, record["default_branch"], files, f"Update {path}", self.owner)

    @_changes
    def delete_file(self, repo: str, path: str) -> None:
        record = self._repo(repo)
        files = dict(self._tree(record, self._head(record)))
        files.pop(path.strip("/"))
        self._new_commit(record, record["default_branch"], files, f"Delete {path}", self.owner)

    @_changes
    def add_commit(self, repo: str, sha: str) -> None:
        """Make a sha known to the repository, for check runs on commits outside any pull request."""
        self._repo(repo)["commits"].setdefault(sha, self._foreign_commit())

    @_changes
    def set_permission(self, repo: str, login: str, role: str) -> None:
        if role not in ROLE_PERMISSION:
            raise ValueError(f"role must be one of {sorted(ROLE_PERMISSION)}, got {role!r}")
        self._repo(repo)
        self._roles[(repo, login)] = role

    @_changes
    def add_team_member(self, org: str, team_slug: str, login: str) -> None:
        if (org, team_slug) not in self._teams:
            self._teams[(org, team_slug)] = {"id": self._new_id(), "members": []}
        team = self._teams[(org, team_slug)]
        if login not in team["members"]:
            team["members"].append(login)

    @_changes
    def add_issue(self, repo: str, number: int, title: str = "", body: str = "", author: str = "octocat",
                  labels: tuple[str, ...] = (), state: str = "open") -> dict[str, Any]:
        return self._new_issue(repo, number, title or f"Issue {number}", body, author, labels, state)

    @_changes
    def add_pull(self, repo: str, number: int, head_sha: str, author: str = "octocat",
                 head_ref: str = "feature", base_ref: str = "main", state: str = "open") -> dict[str, Any]:
        record = self._repo(repo)
        pull = self._new_issue(repo, number, f"Pull request {number}", "", author, (), state)
        pull.update(pull_request=True, head_sha=head_sha, head_ref=head_ref, base_ref=base_ref,
                    fork_sha=record["branches"].get(base_ref, ""), draft=False)
        record["commits"].setdefault(head_sha, self._foreign_commit())
        self._reviews[(repo, number)] = []
        return pull

    @_changes
    def set_pull_head(self, repo: str, number: int, head_sha: str) -> None:
        pull = self._pull(repo, number)
        pull["head_sha"] = head_sha
        pull["updated_at"] = timestamp()
        self._repo(repo)["commits"].setdefault(head_sha, self._foreign_commit())

    @_changes
    def add_review(self, repo: str, number: int, login: str, state: str = "APPROVED",
                   commit_id: str | None = None, user_type: str = "User") -> dict[str, Any]:
        return self._new_review(self._pull(repo, number), login, state, commit_id, user_type, "")

    @_changes
    def add_comment(self, repo: str, issue_number: int, body: str, author: str = "octocat",
                    user_type: str = "User") -> dict[str, Any]:
        """A comment someone else wrote (a ChatOps command, say)."""
        return self._new_comment(self._issue(repo, issue_number), body, author, user_type)

    @_changes
    def expire_tokens(self) -> None:
        """Every installation token issued so far stops working, as if it had expired."""
        past = now() - timedelta(seconds=1)
        self._tokens = {value: Token(value, t.permissions, t.repositories, past)
                        for value, t in self._tokens.items()}

    # ---- people's actions: each changes state and is announced as GitHub would ---------------

    @_changes
    def install(self, sender: str = "octocat") -> dict[str, Any]:
        """The App is installed on the organisation with every repository: `installation.created`."""
        example = self._example("installation", "created")
        installation = self._wh_installation(example["installation"])
        payload = {"action": "created", "installation": installation,
                   "repositories": [self._repo_lite(name) for name in sorted(self._repos)],
                   "sender": self._wh_user(sender)}
        self._announce("installation", payload, None)
        return installation

    @_changes
    def open_issue(self, repo: str, title: str, body: str = "", author: str = "octocat") -> dict[str, Any]:
        issue = self._new_issue(repo, self._next_number(repo), title, body, author, (), "open")
        self._announce_issue("opened", issue, self._wh_user(author))
        return self._issue_object(issue)

    @_changes
    def add_label(self, repo: str, number: int, label: str, actor: str = "octocat") -> list[str]:
        issue = self._issue(repo, number)
        self._label(issue, label, self._wh_user(actor))
        return list(issue["labels"])

    @_changes
    def remove_label(self, repo: str, number: int, label: str, actor: str = "octocat") -> list[str]:
        issue = self._issue(repo, number)
        if label not in issue["labels"]:
            raise ValueError(f"{repo}#{number} has no label {label!r}")
        self._unlabel(issue, label, self._wh_user(actor))
        return list(issue["labels"])

    @_changes
    def assign(self, repo: str, number: int, assignee: str, actor: str = "octocat") -> list[str]:
        issue = self._issue(repo, number)
        if assignee not in issue["assignees"]:
            issue["assignees"].append(assignee)
            issue["updated_at"] = timestamp()
            self._announce_issue("assigned", issue, self._wh_user(actor), assignee=self._wh_user(assignee))
        return list(issue["assignees"])

    @_changes
    def close_issue(self, repo: str, number: int, actor: str = "octocat") -> dict[str, Any]:
        issue = self._issue(repo, number)
        if issue["pull_request"]:
            raise ValueError(f"{repo}#{number} is a pull request: close it with close_pull")
        if issue["state"] == "open":
            self._close(issue)
            self._announce_issue("closed", issue, self._wh_user(actor))
        return self._issue_object(issue)

    @_changes
    def comment(self, repo: str, number: int, body: str, author: str = "octocat",
                user_type: str = "User") -> dict[str, Any]:
        issue = self._issue(repo, number)
        comment = self._new_comment(issue, body, author, user_type)
        self._announce_comment("created", comment, self._wh_user(author, user_type))
        return self._comment_object(comment)

    @_changes
    def open_pull(self, repo: str, head_ref: str, title: str, body: str = "", author: str = "octocat",
                  base_ref: str | None = None, files: dict[str, str] | None = None) -> dict[str, Any]:
        """Push `files` to a new (or existing) branch `head_ref` and open a pull request from it."""
        record = self._repo(repo)
        base_ref = base_ref or record["default_branch"]
        if base_ref not in record["branches"]:
            raise KeyError(f"{repo} has no branch {base_ref}")
        if head_ref == base_ref:
            raise ValueError(f"a pull request needs a head branch other than its base {base_ref}")
        if head_ref not in record["branches"] or files:
            self.push_commit(repo, head_ref, dict(files or {}), message=title, author=author,
                             start_from=base_ref)
        pull = self._new_issue(repo, self._next_number(repo), title, body, author, (), "open")
        pull.update(pull_request=True, head_sha=record["branches"][head_ref], head_ref=head_ref,
                    base_ref=base_ref, fork_sha=record["branches"][base_ref], draft=False)
        self._reviews[(repo, pull["number"])] = []
        self._announce_pull("opened", pull, self._wh_user(author))
        return self._pull_object(pull, _raw_example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200))

    @_changes
    def push_commit(self, repo: str, branch: str, files: dict[str, str | None], message: str = "",
                    author: str = "octocat", start_from: str | None = None) -> str:
        """Commit `files` (a path to its text; None deletes it) onto `branch`, creating the branch
        from `start_from` (the default branch) when it does not exist. Announces `push`, and
        `pull_request.synchronize` for each open pull request from that branch."""
        record = self._repo(repo)
        created = branch not in record["branches"]
        before = ZERO_SHA if created else record["branches"][branch]
        parent = record["branches"][start_from or record["default_branch"]] if created else before
        tree = dict(self._tree(record, parent))
        for path, text in files.items():
            if text is None:
                tree.pop(path.strip("/"), None)
            else:
                tree[path.strip("/")] = text
        message = message or f"Update {', '.join(sorted(files)) or branch}"
        sha = self._new_commit(record, branch, tree, message, author, parents=[parent])
        self._announce_push(record, branch, before, sha, [sha], author)
        for pull in self._open_pulls(repo):
            if pull["head_ref"] == branch and pull["head_sha"] != sha:
                previous = pull["head_sha"]
                pull.update(head_sha=sha, updated_at=timestamp())
                self._announce_pull("synchronize", pull, self._wh_user(author), before=previous, after=sha)
        return sha

    @_changes
    def request_review(self, repo: str, number: int, reviewer: str, actor: str = "octocat") -> list[str]:
        pull = self._pull(repo, number)
        if reviewer not in pull["requested_reviewers"]:
            pull["requested_reviewers"].append(reviewer)
            self._announce_pull("review_requested", pull, self._wh_user(actor),
                                requested_reviewer=self._wh_user(reviewer))
        return list(pull["requested_reviewers"])

    @_changes
    def review(self, repo: str, number: int, reviewer: str, state: str = "APPROVED",
               body: str = "") -> dict[str, Any]:
        state = state.upper()
        if state not in ("APPROVED", "CHANGES_REQUESTED", "COMMENTED"):
            raise ValueError(f"a review is APPROVED, CHANGES_REQUESTED or COMMENTED, got {state!r}")
        pull = self._pull(repo, number)
        review = self._new_review(pull, reviewer, state, None, "User", body)
        if reviewer in pull["requested_reviewers"]:
            pull["requested_reviewers"].remove(reviewer)
        return self._announce_review(pull, review, self._wh_user(reviewer))

    @_changes
    def merge(self, repo: str, number: int, actor: str = "octocat") -> str:
        """Merge a pull request: its changes land on the base branch in a merge commit. Announces
        `pull_request.closed` (merged), `push` to the base, and `issues.closed` for each issue its
        title or body closes (when the base is the default branch)."""
        pull = self._pull(repo, number)
        if pull["state"] != "open":
            raise ValueError(f"{repo}#{number} is {pull['state']}; only an open pull request merges")
        record = self._repo(repo)
        base_before = record["branches"][pull["base_ref"]]
        head_tree = self._tree(record, pull["head_sha"])
        fork_tree = self._tree(record, pull["fork_sha"] or base_before)
        tree = dict(self._tree(record, base_before))
        for path, text in head_tree.items():
            if fork_tree.get(path) != text:
                tree[path] = text
        for path in set(fork_tree) - set(head_tree):
            tree.pop(path, None)
        message = f"Merge pull request #{number} from {self.owner}/{pull['head_ref']}\n\n{pull['title']}"
        sha = self._new_commit(record, pull["base_ref"], tree, message, actor,
                               parents=[base_before, pull["head_sha"]])
        self._close(pull)
        pull.update(merged=True, merge_commit_sha=sha, merged_by=actor, merged_at=pull["closed_at"])
        self._announce_pull("closed", pull, self._wh_user(actor))
        self._announce_push(record, pull["base_ref"], base_before, sha, [sha], actor)
        if pull["base_ref"] == record["default_branch"]:
            for closed in sorted({int(n) for n in CLOSING.findall(f"{pull['title']}\n{pull['body']}")}):
                issue = self._issues.get((repo, closed))
                if issue and not issue["pull_request"] and issue["state"] == "open":
                    self._close(issue)
                    self._announce_issue("closed", issue, self._wh_user(actor))
        return sha

    @_changes
    def close_pull(self, repo: str, number: int, actor: str = "octocat") -> dict[str, Any]:
        pull = self._pull(repo, number)
        if pull["state"] == "open":
            self._close(pull)
            self._announce_pull("closed", pull, self._wh_user(actor))
        return self._pull_object(pull, _raw_example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200))

    @_changes
    def complete_ci(self, repo: str, sha: str, conclusion: str = "success",
                    name: str = "ci") -> dict[str, Any]:
        """Another App's CI finishes a check run on `sha` (a sha or a branch): `check_run.completed`,
        then `check_suite.completed` once every run of its suite has completed."""
        record = self._repo(repo)
        resolved = self._resolve(record, sha)
        if resolved is None:
            raise KeyError(f"no commit or branch {sha} in {repo}")
        suite = self._suite(repo, resolved, "ci")
        run = next((r for r in self.check_runs.values()
                    if r["suite_id"] == suite["id"] and r["name"] == name), None)
        if run is None:
            run = self._new_check_run(repo, name, resolved, "ci")
        self._apply_check_run(run, {"status": "completed", "conclusion": conclusion})
        ci_bot = self._wh_user(f"{CI_APP['slug']}[bot]", "Bot")
        self._announce_check_run("completed", run, ci_bot)
        self._settle_suite(suite, ci_bot)
        return self._check_run_object(run)

    # ---- faults ---------------------------------------------------------------------------

    @_changes
    def inject_fault(self, kind: str, count: int = 1, path_prefix: str = "",
                     delay_ms: int = 0) -> dict[str, Any]:
        """The next `count` REST requests whose path starts with `path_prefix` fail as GitHub can:
        `server_error` (502), `secondary_rate_limit` (403 with retry-after: 1) or `slow` (answered
        after `delay_ms`)."""
        if kind not in FAULTS:
            raise ValueError(f"a fault is one of {sorted(FAULTS)}, got {kind!r}")
        if count < 1 or delay_ms < 0:
            raise ValueError("a fault needs count >= 1 and delay_ms >= 0")
        fault = {"kind": kind, "count": int(count), "path_prefix": path_prefix, "delay_ms": int(delay_ms)}
        self._faults.append(fault)
        return dict(fault)

    @_changes
    def clear_faults(self) -> int:
        cleared = len(self._faults)
        self._faults.clear()
        return cleared

    def _take_fault(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault["path_prefix"] or "/"):
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self._faults.remove(fault)
                    return dict(fault)
        return None

    # ---- observed state ----------------------------------------------------------------------

    def labels(self, repo: str, number: int) -> list[str]:
        with self._lock:
            return list(self._issue(repo, number)["labels"])

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._issue(repo, number)))

    def files(self, repo: str, ref: str | None = None) -> dict[str, str]:
        """The tree at `ref` (a branch or sha; the default branch when None)."""
        with self._lock:
            record = self._repo(repo)
            sha = self._resolve(record, ref or record["default_branch"])
            if sha is None:
                raise KeyError(f"no commit or branch {ref} in {repo}")
            return dict(self._tree(record, sha))

    def state(self) -> dict[str, Any]:
        """A summary: the repositories, their issues, pulls (with `user`, the author), reviews,
        comments, reactions, check runs, commit statuses, workflow runs, deployments, alerts and
        branch protection as the sandbox records them, the refs the App wrote (`ref_writes`) and
        those writes that were force pushes (`force_pushes`), counts of each and of the deliveries,
        and every spec violation."""
        with self._lock:
            issues = [i for i in self._issues.values() if not i["pull_request"]]
            pulls = [{**i, "user": i["author"], "requested_teams": i.get("requested_teams", []),
                      "maintainer_can_modify": i.get("maintainer_can_modify", False)}
                     for i in self._issues.values() if i["pull_request"]]
            reviews = [{"id": r["id"], "repo": r["repo"], "number": r["number"], "user": r["login"],
                        "state": r["state"], "body": r["body"], "commit_id": r["commit_id"],
                        "submitted_at": r["submitted_at"]}
                       for key in sorted(self._reviews) for r in self._reviews[key]]
            failed = {d["guid"] for d in self.deliveries if not 200 <= d["status_code"] < 300}
            delivered = {d["guid"] for d in self.deliveries if 200 <= d["status_code"] < 300}
            # A workflow run's jobs are check runs too; they are listed with their runs.
            checks = [r for r in self.check_runs.values() if not r["app"].startswith("actions:")]
            return json.loads(json.dumps({
                "app_id": self.app_id, "app_slug": self.app_slug, "installation_id": self.installation_id,
                "owner": self.owner, "webhook_url": self.webhook_url,
                "repos": {name: self._repo_summary(repo) for name, repo in sorted(self._repos.items())},
                "issues": issues, "pulls": pulls, "reviews": reviews, "comments": self.comments,
                "reactions": self.reactions, "ref_writes": self.ref_writes, "force_pushes": self.force_pushes,
                "check_runs": checks, "statuses": self.statuses,
                "workflow_runs": list(self.workflow_runs.values()),
                "dispatches": self.dispatches, "deployments": list(self.deployments.values()),
                "dependabot_alerts": self._dependabot_alerts,
                "code_scanning_alerts": self._code_scanning_alerts, "protection": self._protection,
                "branch_rules": self._rules,
                "requests_served": len(self.requests),  # since this process started; not persisted
                "graphql_served": self.graphql_served,  # of those, the GraphQL queries
                "rate_limits": {
                    "core": {"limit": self.rate_limit, "remaining": self.rate_limit - self.rate_limit_used,
                             "reset": self.rate_limit_reset},
                    "graphql": {"limit": self.graphql_rate_limit,
                                "remaining": self.graphql_rate_limit - self.graphql_rate_used,
                                "reset": self.graphql_rate_reset}},
                "counts": {"repos": len(self._repos), "issues": len(issues), "pulls": len(pulls),
                           "reviews": len(reviews), "ref_writes": len(self.ref_writes),
                           "force_pushes": len(self.force_pushes),
                           "comments": len(self.comments), "reactions": len(self.reactions),
                           "check_runs": len(checks), "statuses": len(self.statuses),
                           "workflow_runs": len(self.workflow_runs), "deployments": len(self.deployments),
                           "deliveries": len(self.deliveries),
                           "failed_deliveries": len(failed - delivered),
                           "pending_deliveries": self._sender.pending if self._sender else 0},
                "faults": self._faults,
                # Requests GitHub would refuse and answers it could not give: must stay empty.
                "errors": list(self.errors),
            }))

    def delivery_summaries(self, failed: bool = False) -> list[dict[str, Any]]:
        """Every attempt, newest first (only the failed ones with `failed`)."""
        with self._lock:
            found = sorted(self.deliveries, key=lambda d: d["id"], reverse=True)
            if failed:
                found = [d for d in found if not 200 <= d["status_code"] < 300]
            return [self._delivery_item(d) for d in found]

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._delivery_record(delivery_id)))

    @_changes
    def redeliver(self, delivery_id: int) -> str:
        """Attempt a recorded delivery again, with the same guid; returns the guid."""
        record = self._delivery_record(delivery_id)
        if self._sender is not None:
            self._sender.submit(webhooks.Outgoing(
                record["guid"], record["event"], record["action"], record["request"]["payload"],
                record["installation_id"], record["repository_id"], redelivery=True))
        return record["guid"]

    # ---- HTTP ---------------------------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw_body = environ["wsgi.input"].read(length) if length else b""
        target = environ.get("REQUEST_URI") or environ.get("RAW_URI") or quote(environ["PATH_INFO"])
        path = target.split("?", 1)[0]
        if "://" in path:  # an absolute request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        host = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}"
        method = environ["REQUEST_METHOD"].upper()
        artifact = re.fullmatch(r"/_sandbox/artifacts/(\d+)\.zip", path)
        if artifact and method == "GET":  # where an artifact download redirects, like GitHub's signed url
            try:
                data = self.artifact_bytes(int(artifact.group(1)))
            except KeyError:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"Not Found"]
            start_response("200 OK", [("Content-Type", "application/zip"),
                                      ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            self._request_base = self._request_base or host
            status, answer = self._control(method, path, query, raw_body)
            payload = json.dumps(answer).encode()
            start_response(f"{status} {HTTPStatus(status).phrase}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        fault = self._take_fault(path)
        if fault and fault["kind"] == "slow":
            time.sleep(fault["delay_ms"] / 1000)
        with self._lock:
            self._request_base = host
            if fault and fault["kind"] != "slow":
                reply = self._fault_reply(fault, method, path)
            elif method == "POST" and path == "/graphql":
                reply = self._graphql(raw_body, headers)
            else:
                allocated = self._next_id
                reply = self._handle(method, path, query, raw_body, headers)
                if method != "GET" or self._next_id != allocated:
                    self._save()
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}", list(reply.headers.items()))
        return [payload]

    def _fault_reply(self, fault: dict[str, Any], method: str, path: str) -> Reply:
        status, body = FAULTS[fault["kind"]]
        reply = Reply(status, json.loads(json.dumps(body)))
        reply = self._finish(Call(method, path, {}, {}, None, {}), reply)
        if fault["kind"] == "secondary_rate_limit":
            reply.headers["Retry-After"] = "1"
            request_id = reply.headers["X-GitHub-Request-Id"]
            reply.body["message"] = reply.body["message"].format(request_id=request_id)
        return reply

    # ---- GraphQL ------------------------------------------------------------------------------

    def _graphql(self, raw_body: bytes, headers: dict[str, str]) -> Reply:
        """POST /graphql for installation tokens: every query is parsed and validated against
        `graphql-subset.graphql` (200 with `errors` when it cannot run, as GitHub answers), then
        executed on the sandbox's state, costing 1 point of GraphQL's own budget."""
        call = Call("POST", "/graphql", {}, {}, None, headers)
        if not headers.get("user-agent"):
            return self._violation("POST", "/graphql",
                                   "POST /graphql: GitHub refuses requests without a User-Agent")
        if time.time() >= self.graphql_rate_reset:
            self.graphql_rate_used, self.graphql_rate_reset = 0, int(time.time()) + 3600
        try:
            self._authenticate(call, ())
        except Refused as refused:
            return self._graphql_finish(Reply(refused.status, {"message": refused.message,
                                                               "documentation_url": GRAPHQL_DOCS}))
        assert call.token is not None
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            return self._graphql_finish(Reply(400, {"message": "Problems parsing JSON",
                                                    "documentation_url": GRAPHQL_DOCS}))
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return self._graphql_finish(Reply(200, {"errors": [
                {"message": "A query attribute must be specified and must be a string."}]}))
        variables = body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return self._graphql_finish(Reply(200, {"errors": [{"message": "Variables are invalid JSON."}]}))
        if self.graphql_rate_used >= self.graphql_rate_limit:
            message = f"API rate limit already exceeded for installation ID {self.installation_id}."
            limited = {"errors": [{"type": "RATE_LIMITED", "message": message}]}
            return self._graphql_finish(Reply(200, limited))
        document, errors = graphql.check(body["query"])
        if errors:
            return self._graphql_finish(Reply(200, {"errors": errors}))
        self.graphql_rate_used += 1
        try:
            answer = graphql.execute(document, variables, body.get("operationName"),
                                     self._graphql_root(call.token))
        except Exception as exc:  # noqa: BLE001 - a defect of the sandbox itself: named, answered 500
            return self._violation("POST", "/graphql",
                                   f"POST /graphql: the sandbox failed: {type(exc).__name__}: {exc}")
        return self._graphql_finish(Reply(200, answer))

    def _graphql_finish(self, reply: Reply) -> Reply:
        reply.headers.update({
            "Content-Type": "application/json; charset=utf-8",
            "X-RateLimit-Limit": str(self.graphql_rate_limit),
            "X-RateLimit-Remaining": str(self.graphql_rate_limit - self.graphql_rate_used),
            "X-RateLimit-Used": str(self.graphql_rate_used),
            "X-RateLimit-Reset": str(self.graphql_rate_reset),
            "X-RateLimit-Resource": "graphql",
            "X-GitHub-Request-Id": ":".join(secrets.token_hex(n).upper() for n in (2, 2, 3, 3, 4)),
        })
        self.requests.append(("POST", "/graphql", reply.status))
        self.graphql_served += 1
        return reply

    def _graphql_root(self, token: Token) -> dict[str, Any]:
        """The resolvers of Query: a repository the token can see, and the GraphQL budget."""

        def repository(info: Any, owner: str, name: str, followRenames: bool = True) -> dict[str, Any]:
            wanted = f"{owner}/{name}".lower()  # GitHub resolves names case-insensitively
            full_name = next((known for known in self._repos if known.lower() == wanted), None)
            if full_name is None or (token.repositories is not None
                                     and full_name.split("/")[1] not in token.repositories):
                raise graphql.FieldError("NOT_FOUND", f"Could not resolve to a Repository with the name "
                                                      f"'{owner}/{name}'.")
            # metadata: read, which GitHub grants every installation token, reads a repository
            return self._graphql_repository(token, self._repos[full_name])

        def rate_limit(info: Any, dryRun: bool = False) -> dict[str, Any]:
            nodes = sum(1 for selection in info.operation.selection_set.selections
                        if getattr(selection, "name", None) and selection.name.value == "repository")
            reset = datetime.fromtimestamp(self.graphql_rate_reset, timezone.utc)
            return {"cost": 1, "limit": self.graphql_rate_limit, "used": self.graphql_rate_used,
                    "remaining": self.graphql_rate_limit - self.graphql_rate_used,
                    "resetAt": timestamp(reset), "nodeCount": nodes}

        return {"repository": repository, "rateLimit": rate_limit}

    def _graphql_repository(self, token: Token, repo: dict[str, Any]) -> dict[str, Any]:
        full_name = repo["full_name"]
        items = [i for (name, _), i in self._issues.items() if name == full_name]

        def labelled(item: dict[str, Any], labels: list[str] | None) -> bool:
            return not labels or bool({label.lower() for label in labels}
                                      & {label.lower() for label in item["labels"]})

        def issues(info: Any, states: list[str] | None = None, labels: list[str] | None = None,
                   **_: Any) -> dict[str, int]:
            wanted = {state.lower() for state in states} if states else None
            return {"totalCount": sum(1 for i in items if not i["pull_request"] and labelled(i, labels)
                                      and (wanted is None or i["state"] in wanted))}

        def pull_requests(info: Any, states: list[str] | None = None, labels: list[str] | None = None,
                          baseRefName: str | None = None, headRefName: str | None = None,
                          **_: Any) -> dict[str, int]:
            def state(pull: dict[str, Any]) -> str:
                return "MERGED" if pull["merged"] else pull["state"].upper()

            return {"totalCount": sum(1 for p in items if p["pull_request"] and labelled(p, labels)
                                      and (not states or state(p) in states)
                                      and baseRefName in (None, p.get("base_ref"))
                                      and headRefName in (None, p.get("head_ref")))}

        def vulnerability_alerts(info: Any, states: list[str] | None = None, **_: Any) -> dict[str, int]:
            if LEVELS.get(token.permissions.get("vulnerability_alerts", ""), 0) < LEVELS["read"]:
                raise graphql.FieldError("FORBIDDEN", "Resource not accessible by integration")
            wanted = {state.lower() for state in states} if states else None
            return {"totalCount": sum(1 for a in self._dependabot_alerts if a["repo"] == full_name
                                      and (wanted is None or a["state"] in wanted))}

        branch = repo["default_branch"]
        head = repo["branches"].get(branch)
        created = timestamp(datetime.fromtimestamp(repo["created_at"], timezone.utc))
        return {
            "databaseId": repo["id"], "nameWithOwner": full_name,
            "pushedAt": repo.get("pushed_at", created), "updatedAt": repo.get("updated_at", created),
            "isArchived": bool(repo.get("settings", {}).get("archived", False)),
            "defaultBranchRef": None if head is None else {
                "name": branch,
                "target": {"__typename": "Commit", "oid": head,
                           "statusCheckRollup": lambda info: self._rollup(repo, head)}},
            "issues": issues, "pullRequests": pull_requests, "vulnerabilityAlerts": vulnerability_alerts,
        }

    def _rollup(self, repo: dict[str, Any], sha: str) -> dict[str, str] | None:
        """The StatusCheckRollup of a commit: its check runs (the latest of each name) and commit
        statuses (the latest of each context); None when it has neither. A required check of the
        default branch's protection that has not reported makes it EXPECTED."""
        full_name = repo["full_name"]
        statuses = {s["context"]: s for s in self.statuses if (s["repo"], s["sha"]) == (full_name, sha)}
        runs = {r["name"]: r for r in sorted(self.check_runs.values(), key=lambda r: r["id"])
                if (r["repo"], r["head_sha"]) == (full_name, sha)}
        if not statuses and not runs:
            return None
        states = {ROLLUP_STATUSES[s["state"]] for s in statuses.values()}
        states |= {"PENDING" if r["status"] != "completed"
                   else ROLLUP_CONCLUSIONS.get(r["conclusion"], "FAILURE") for r in runs.values()}
        required = self._protection.get(full_name, {}).get(repo["default_branch"], [])
        if set(required) - set(statuses) - set(runs):
            states.add("EXPECTED")
        return {"state": next(state for state in ROLLUP_ORDER if state in states)}

    def _touch(self, repo: dict[str, Any], pushed: bool) -> None:
        """A push (or a settings change, `pushed=False`) lands: `updated_at` (and `pushed_at`) move
        on, each strictly later than before so that every change is seen."""
        for key in ("pushed_at", "updated_at") if pushed else ("updated_at",):
            moment = now().replace(microsecond=0)
            if repo.get(key):
                last = datetime.fromisoformat(repo[key].replace("Z", "+00:00"))
                moment = max(moment, last + timedelta(seconds=1))
            repo[key] = timestamp(moment)

    @_changes
    def set_rate_limit(self, remaining: int, reset_in: int = 3600, resource: str = "core") -> dict[str, Any]:
        """Set what is left of the installation's REST (`core`) or `graphql` budget, reset in
        `reset_in` seconds (then the whole limit is available again)."""
        if resource not in ("core", "graphql"):
            raise ValueError(f"a rate limit resource is core or graphql, got {resource!r}")
        limit = self.rate_limit if resource == "core" else self.graphql_rate_limit
        if not 0 <= remaining <= limit or reset_in < 0:
            raise ValueError(f"remaining is 0 to {limit} and reset_in >= 0")
        reset = int(time.time()) + reset_in
        if resource == "core":
            self.rate_limit_used, self.rate_limit_reset = limit - remaining, reset
        else:
            self.graphql_rate_used, self.graphql_rate_reset = limit - remaining, reset
        return {"resource": resource, "limit": limit, "remaining": remaining, "reset": reset}

    def _handle(self, method: str, path: str, query: dict[str, str], raw_body: bytes,
                headers: dict[str, str]) -> Reply:
        where = f"{method} {path}"
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            return self._violation(method, path, f"{where}: the body is not JSON")
        if not headers.get("user-agent"):
            return self._violation(method, path, f"{where}: GitHub refuses requests without a User-Agent")
        try:
            described = self._described_path(method, path)
            openapi.validate_request(method, described, body)
            self._check_query(method, described, query)
        except AssertionError as exc:
            return self._violation(method, path, str(exc))
        found = self._route(method, path)
        if found is None:
            return self._violation(method, path, f"{where}: the sandbox does not serve this operation")
        template, handler, needs, params = found
        call = Call(method, path, params, query, body, headers)
        if time.time() >= self.rate_limit_reset:  # a new window
            self.rate_limit_used, self.rate_limit_reset = 0, int(time.time()) + 3600
        if self.rate_limit_used >= self.rate_limit:
            return self._finish(call, Reply(403, {"message": "API rate limit exceeded for installation ID "
                                                  f"{self.installation_id}.", "documentation_url": DOCS}))
        try:
            self._authenticate(call, needs)
            reply = handler(call)
        except Refused as refused:
            answer: dict[str, Any] = {"message": refused.message, "documentation_url": DOCS}
            if refused.errors is not None:
                answer = {"message": refused.message, "errors": refused.errors, "documentation_url": DOCS}
            reply = Reply(refused.status, answer)
        except Exception as exc:  # noqa: BLE001 - a defect of the sandbox itself: named, answered 500
            return self._violation(method, path, f"{where}: the sandbox failed: {type(exc).__name__}: {exc}")
        if 200 <= reply.status < 400:
            try:
                openapi.validate_response(method, described, reply.status, reply.body)
            except AssertionError as exc:
                return self._violation(method, path, str(exc))
        if method == "GET" and template in CONDITIONAL and reply.status == 200:
            etag = 'W/"' + hashlib.sha256(json.dumps(reply.body, sort_keys=True).encode()).hexdigest() + '"'
            reply.headers["ETag"] = etag
            sent = [tag.strip() for tag in headers.get("if-none-match", "").split(",")]
            if etag in sent:
                reply = Reply(304, None, {"ETag": etag})
        return self._finish(call, reply)

    def _finish(self, call: Call, reply: Reply) -> Reply:
        if reply.status != 304:
            self.rate_limit_used = min(self.rate_limit_used + 1, self.rate_limit)
        reply.headers.update({
            "Content-Type": "application/json; charset=utf-8",
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.rate_limit - self.rate_limit_used),
            "X-RateLimit-Used": str(self.rate_limit_used),
            "X-RateLimit-Reset": str(self.rate_limit_reset),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Request-Id": ":".join(secrets.token_hex(n).upper() for n in (2, 2, 3, 3, 4)),
            "X-GitHub-Api-Version-Selected": "2022-11-28",
        })
        self.requests.append((call.method, call.path, reply.status))
        return reply

    def _violation(self, method: str, path: str, message: str) -> Reply:
        self.errors.append(message)
        return self._finish(Call(method, path, {}, {}, None, {}),
                            Reply(500, {"message": f"GitHub sandbox: {message}", "documentation_url": DOCS}))

    def _described_path(self, method: str, path: str) -> str:
        """The path as GitHub's description routes it: a "/" inside a branch name is %2F there."""
        for route_method, pattern, _, _, _ in self._routes:
            match = pattern.match(path) if route_method == method else None
            if match:
                for name in sorted(set(match.groupdict()) & SLASHED, key=match.start, reverse=True):
                    start, end = match.span(name)
                    path = path[:start] + path[start:end].replace("/", "%2F") + path[end:]
                return path
        return path

    def _route(self, method: str, path: str) -> tuple[str, Callable[[Call], Reply], Any,
                                                     dict[str, str]] | None:
        for route_method, pattern, template, handler, needs in self._routes:
            match = pattern.match(path) if route_method == method else None
            if match:
                return template, handler, needs, {k: unquote(v) for k, v in match.groupdict().items()}
        return None

    @staticmethod
    def _check_query(method: str, path: str, query: dict[str, str]) -> None:
        """Query parameters must be ones the operation declares, with values its schema allows."""
        declared: dict[str, dict[str, Any]] = {}
        for parameter in openapi.operation(method, path).get("parameters", []):
            if "$ref" in parameter:
                parameter = openapi.spec()["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
            if parameter["in"] == "query":
                declared[parameter["name"]] = parameter.get("schema", {})
        for name, value in query.items():
            schema = declared.get(name)
            assert schema is not None, f"{method} {path} takes no query parameter {name!r}"
            if schema.get("type") == "integer":
                assert re.fullmatch(r"-?\d+", value), f"{method} {path}: {name}={value!r} is not an integer"
                number = int(value)
                assert number >= schema.get("minimum", number) and number <= schema.get("maximum", number), (
                    f"{method} {path}: {name}={value} is out of range")
            elif schema.get("type") == "boolean":
                assert value in ("true", "false"), f"{method} {path}: {name}={value!r} is not a boolean"
            if "enum" in schema:
                assert value in schema["enum"], (
                    f"{method} {path}: {name}={value!r} is not one of {schema['enum']}")

    # ---- the control API (/_sandbox/): JSON in and out, no authentication ---------------------

    def _control(self, method: str, path: str, query: dict[str, str], raw_body: bytes) -> tuple[int, Any]:
        parts = path.strip("/").split("/")[1:]
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return 400, {"message": "the body is not JSON"}
        if not isinstance(body, dict):
            return 400, {"message": "the body is a JSON object of arguments"}
        try:
            if method == "GET" and parts == ["state"]:
                return 200, self.state()
            if method == "POST" and len(parts) == 2 and parts[0] == "actions":
                if parts[1] not in HUMAN_ACTIONS:
                    return 404, {"message": f"no action {parts[1]!r}; the actions are {list(HUMAN_ACTIONS)}"}
                action = getattr(self, parts[1])
                try:
                    inspect.signature(action).bind(**body)
                except TypeError as exc:
                    return 400, {"message": f"{parts[1]}: {exc}"}
                return 200, action(**body)
            if method == "GET" and parts == ["deliveries"]:
                return 200, self.delivery_summaries(failed=query.get("failed", "") in ("1", "true"))
            if method == "GET" and len(parts) == 2 and parts[0] == "deliveries" and parts[1].isdigit():
                return 200, self.delivery(int(parts[1]))
            if (method == "POST" and len(parts) == 3 and parts[0] == "deliveries" and parts[1].isdigit()
                    and parts[2] == "redeliver"):
                return 202, {"guid": self.redeliver(int(parts[1]))}
            if method == "PUT" and parts == ["webhook"]:
                if not isinstance(body.get("url"), str):
                    return 400, {"message": "give the webhook url as {\"url\": \"http://...\"}"}
                self.set_webhook_url(body["url"])
                return 200, {"url": self.webhook_url}
            if method == "POST" and parts == ["wait"]:
                idle = self.wait_for_deliveries(float(body.get("timeout", 10)))
                return 200, {"idle": idle, "pending": self._sender.pending if self._sender else 0}
            if parts == ["faults"] and method == "POST":
                try:
                    inspect.signature(self.inject_fault).bind(**body)
                except TypeError as exc:
                    return 400, {"message": f"inject_fault: {exc}"}
                return 201, self.inject_fault(**body)
            if parts == ["faults"] and method == "DELETE":
                return 200, {"cleared": self.clear_faults()}
        except KeyError as exc:
            return 404, {"message": str(exc.args[0]) if exc.args else "not found"}
        except ValueError as exc:
            return 422, {"message": str(exc)}
        return 404, {"message": f"the sandbox's control API has no {method} {path}"}

    # ---- authentication ----------------------------------------------------------------------

    def _authenticate(self, call: Call, needs: Any) -> None:
        scheme, _, credential = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not credential:
            raise Refused(401, "Requires authentication")
        if needs == APP:
            self._check_jwt(credential)
            return
        token = self._tokens.get(credential)
        if token is None or token.expires_at <= now():
            raise Refused(401, "Bad credentials")
        call.token = token
        repo = call.params.get("repo")
        if repo is not None:
            full_name = f"{call.params['owner']}/{repo}"
            if full_name not in self._repos or (token.repositories is not None
                                                and repo not in token.repositories):
                raise Refused(404, "Not Found")
        if needs and not any(LEVELS.get(token.permissions.get(name, ""), 0) >= LEVELS[level]
                             for name, level in needs):
            raise Refused(403, "Resource not accessible by integration")

    def _check_jwt(self, credential: str) -> None:
        try:
            claims = jwt.decode(credential, self.public_key, algorithms=["RS256"], leeway=CLOCK_LEEWAY,
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError:
            raise Refused(401, "A JSON web token could not be decoded") from None
        if str(claims["iss"]) != self.app_id:
            raise Refused(401, "A JSON web token could not be decoded")
        if claims["exp"] > time.time() + JWT_MAX_LIFETIME + CLOCK_LEEWAY:
            raise Refused(401, "'Expiration time' claim ('exp') is too far in the future")

    # ---- App endpoints -----------------------------------------------------------------------

    def _get_app(self, call: Call) -> Reply:
        return Reply(200, self._app())

    def _create_token(self, call: Call) -> Reply:
        if call.params["installation_id"] != str(self.installation_id):
            raise Refused(404, "Not Found")
        body = call.body or {}
        requested = body.get("permissions")
        self.tokens_issued.append(None if requested is None else dict(requested))
        granted = dict(requested) if requested is not None else dict(self.app_permissions)
        for name, level in granted.items():
            if LEVELS.get(level, 0) > LEVELS.get(self.app_permissions.get(name, ""), 0):
                raise Refused(422, "The permissions requested are not granted to this installation.")
        names = set(body.get("repositories") or [])
        by_id = {repo["id"]: repo for repo in self._repos.values()}
        for repo_id in body.get("repository_ids") or []:
            if repo_id not in by_id:
                names.add(f"\0{repo_id}")
            else:
                names.add(by_id[repo_id]["full_name"].split("/")[1])
        installed = {full_name.split("/")[1]: full_name for full_name in self._repos}
        if not names <= set(installed):
            raise Refused(422, "There is at least one repository that does not exist or is not accessible "
                               "to the parent installation.")
        value = "ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        expires = now() + TOKEN_LIFETIME
        self._tokens[value] = Token(value, granted, frozenset(names) if names else None, expires)
        answer = _raw_example("POST", "/app/installations/{installation_id}/access_tokens", 201)
        template = answer["repositories"][0]
        answer.update(token=value, expires_at=timestamp(expires), permissions=granted,
                      repository_selection="selected" if names else "all")
        if names:
            answer["repositories"] = [self._repository_object(installed[name], template)
                                      for name in sorted(names)]
        else:
            answer.pop("repositories")
        return Reply(201, answer)

    def _get_installation(self, call: Call) -> Reply:
        if f"{call.params['owner']}/{call.params['repo']}" not in self._repos:
            raise Refused(404, "Not Found")
        return Reply(200, self._installation_object(_raw_example("GET", "/repos/{owner}/{repo}/installation",
                                                                  200)))

    def _list_installations(self, call: Call) -> Reply:
        """The App's installations: the one on the organisation."""
        installation = self._installation_object(_raw_example("GET", "/app/installations", 200)[0])
        # This operation's description has the account as allOf (user, enterprise), not anyOf as
        # elsewhere: the account carries the enterprise's required fields too.
        created = timestamp(datetime.fromtimestamp(min([r["created_at"] for r in self._repos.values()]
                                                       or [int(time.time())]), timezone.utc))
        installation["account"].update(name=self.owner, slug=self.owner, description=None,
                                       website_url=None, created_at=created, updated_at=created)
        return self._page(call, [installation])

    def _list_installation_repositories(self, call: Call) -> Reply:
        """The repositories the installation token may see, paginated."""
        assert call.token is not None
        allowed = call.token.repositories
        names = sorted(name for name in self._repos if allowed is None or name.split("/")[1] in allowed)
        example = _raw_example("GET", "/installation/repositories", 200)
        template = example["repositories"][0]
        for fork_only in ("parent", "source", "template_repository"):
            template.pop(fork_only, None)
        page = self._page(call, names)
        return Reply(200, {"total_count": len(names), "repository_selection": "selected",
                           "repositories": [self._repository_object(name, json.loads(json.dumps(template)))
                                            for name in page.body]}, page.headers)

    def _installation_object(self, template: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(template)
        base = self._base()
        answer.update(
            id=self.installation_id, app_id=int(self.app_id), app_slug=self.app_slug,
            account=self._user(self.owner, "Organization"), target_type="Organization",
            permissions=dict(self.app_permissions), events=subscribed(APP_EVENTS),
            repository_selection="selected",
            access_tokens_url=f"{base}/app/installations/{self.installation_id}/access_tokens",
            repositories_url=f"{base}/installation/repositories",
            html_url=f"{base}/organizations/{self.owner}/settings/installations/{self.installation_id}",
        )
        return answer

    def _list_deliveries(self, call: Call) -> Reply:
        per_page = min(max(int(call.query.get("per_page", 30)), 1), 100)
        found = sorted(self.deliveries, key=lambda d: d["id"], reverse=True)
        wanted = call.query.get("status")
        if wanted == "success":
            found = [d for d in found if 200 <= d["status_code"] < 400]
        elif wanted == "failure":
            found = [d for d in found if 400 <= d["status_code"] < 600]
        cursor = call.query.get("cursor")
        if cursor:
            match = re.fullmatch(r"v1_(\d+)", cursor)
            if match is None:
                raise Refused(400, "Bad request: the cursor is not one this API gave")
            found = [d for d in found if d["id"] < int(match.group(1))]
        page = found[:per_page]
        headers = {}
        if len(found) > per_page:
            query = {key: value for key, value in call.query.items() if key != "cursor"}
            query["cursor"] = f"v1_{page[-1]['id']}"
            url = f"{self._request_base}{call.path}?{urlencode(query)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return Reply(200, [self._delivery_item(d) for d in page], headers)

    def _get_delivery(self, call: Call) -> Reply:
        if not call.params["delivery_id"].isdigit():
            raise Refused(404, "Not Found")
        try:
            record = self._delivery_record(int(call.params["delivery_id"]))
        except KeyError:
            raise Refused(404, "Not Found") from None
        answer = self._delivery_item(record)
        answer.update(url=record["url"], request=json.loads(json.dumps(record["request"])),
                      response=json.loads(json.dumps(record["response"])))
        return Reply(200, answer)

    def _redeliver(self, call: Call) -> Reply:
        if not call.params["delivery_id"].isdigit():
            raise Refused(404, "Not Found")
        try:
            self.redeliver(int(call.params["delivery_id"]))
        except KeyError:
            raise Refused(404, "Not Found") from None
        return Reply(202, {})

    # ---- repositories and contents -----------------------------------------------------------

    def _get_repo(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        template = _raw_example("GET", "/repos/{owner}/{repo}", 200)
        for fork_only in ("parent", "source", "template_repository"):
            template.pop(fork_only, None)
        return Reply(200, self._repository_object(full_name, template))

    def _update_repo(self, call: Call) -> Reply:
        """Repository settings: the default branch and the simple settings the answer carries."""
        record = self._repo_from(call)
        body = call.body or {}
        if body.get("name") not in (None, record["full_name"].split("/")[1]):
            raise Refused(422, "GitHub sandbox: renaming a repository is not modelled")
        if "default_branch" in body:
            if body["default_branch"] not in record["branches"]:
                raise Refused(422, "Validation Failed",
                              [{"resource": "Repository", "code": "invalid", "field": "default_branch"}])
            record["default_branch"] = body["default_branch"]
        settings = record.setdefault("settings", {})
        for key, value in body.items():
            if key not in ("name", "default_branch") and isinstance(value, str | bool | None):
                settings[key] = value
        self._touch(record, pushed=False)
        return self._get_repo(call)

    def _get_content(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        repo = self._repo(full_name)
        ref = call.query.get("ref") or repo["default_branch"]
        sha = self._resolve(repo, ref)
        if sha is None:
            raise Refused(404, f"No commit found for the ref {ref}")
        files = self._tree(repo, sha)
        path = call.params["path"].strip("/")
        if path in files:
            entry = self._content_entry(full_name, ref, path, files[path], with_content=True)
            return Reply(200, entry)
        prefix = f"{path}/" if path else ""
        children: dict[str, str | None] = {}
        for file_path, text in files.items():
            if file_path.startswith(prefix):
                child, _, rest = file_path[len(prefix):].partition("/")
                children[child] = None if rest else text
        if not children:
            raise Refused(404, "Not Found")
        trees, _ = tree_index(files, self._modes(repo, sha))
        return Reply(200, [self._content_entry(full_name, ref, prefix + child, text,
                                               tree=trees.get(prefix + child))
                           for child, text in sorted(children.items())])

    def _content_entry(self, full_name: str, ref: str, path: str, text: str | None,
                       with_content: bool = False, tree: str | None = None) -> dict[str, Any]:
        base = self._base()
        is_file = text is not None
        sha = blob_sha(text) if is_file else tree or ZERO_SHA
        kind = "blobs" if is_file else "trees"
        url = f"{base}/repos/{full_name}/contents/{quote(path)}?ref={quote(ref)}"
        git_url = f"{base}/repos/{full_name}/git/{kind}/{sha}"
        html_url = f"{base}/{full_name}/{'blob' if is_file else 'tree'}/{quote(ref)}/{quote(path)}"
        entry: dict[str, Any] = {
            "type": "file" if is_file else "dir", "name": path.rsplit("/", 1)[-1], "path": path,
            "sha": sha, "size": len(raw(text)) if is_file else 0, "url": url, "git_url": git_url,
            "html_url": html_url, "download_url": f"{base}/raw/{full_name}/{quote(ref)}/{quote(path)}"
            if is_file else None,
            "_links": {"self": url, "git": git_url, "html": html_url},
        }
        if with_content and text is not None:
            entry.update(content=base64.encodebytes(raw(text)).decode(), encoding="base64")
        return entry

    def _get_permission(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        login = call.params["username"]
        role = self._roles.get((full_name, login), "none")
        permission = ROLE_PERMISSION[role]
        user = self._user(login)
        rank = ("none", "read", "triage", "write", "maintain", "admin").index(role)
        user.update(role_name=role, permissions={"pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3,
                                                 "maintain": rank >= 4, "admin": rank >= 5})
        return Reply(200, {"permission": permission, "role_name": role, "user": user})

    # ---- git data: blobs, trees, commits and refs --------------------------------------------

    def _repo_from(self, call: Call) -> dict[str, Any]:
        return self._repo(f"{call.params['owner']}/{call.params['repo']}")

    def _known_trees(self, repo: dict[str, Any]) -> list[tuple[str, dict[str, str], dict[str, str]]]:
        """Every whole tree the repository holds: made with create-tree, or a commit's."""
        found: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}
        for sha, tree in repo.get("trees", {}).items():
            found.setdefault(sha, (sha, tree["files"], tree.get("modes", {})))
        for commit in repo["commits"].values():
            if commit["files"] is not None:
                tree_id = commit["tree_id"]
                found.setdefault(tree_id, (tree_id, commit["files"], commit.get("modes", {})))
        return list(found.values())

    def _find_tree(self, repo: dict[str, Any], sha: str) -> tuple[dict[str, str], dict[str, str]] | None:
        """The files and modes of tree `sha`, a whole tree or one of its directories."""
        trees = self._known_trees(repo)
        for root, files, modes in trees:
            if root == sha:
                return files, modes
        for _, files, modes in trees:
            shas, _ = tree_index(files, modes)
            directory = next((d for d, s in shas.items() if s == sha and d), None)
            if directory is not None:
                prefix = f"{directory}/"
                return ({p[len(prefix):]: t for p, t in files.items() if p.startswith(prefix)},
                        {p[len(prefix):]: m for p, m in modes.items() if p.startswith(prefix)})
        return None

    def _find_blob(self, repo: dict[str, Any], sha: str) -> str | None:
        blobs = repo.get("blobs", {})
        if sha in blobs:
            return blobs[sha]
        for _, files, _ in self._known_trees(repo):
            for text in files.values():
                if blob_sha(text) == sha:
                    return text
        return None

    def _create_blob(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        encoding = call.body.get("encoding", "utf-8")
        if encoding not in ("utf-8", "utf8", "base64"):
            raise Refused(422, "Validation Failed",
                          [{"resource": "Blob", "field": "encoding", "code": "invalid"}])
        if encoding == "base64":
            try:
                data = base64.b64decode(call.body["content"], validate=False)
            except (binascii.Error, ValueError):
                raise Refused(422, "Validation Failed",
                              [{"resource": "Blob", "field": "content", "code": "invalid"}]) from None
            text = data.decode("utf-8", "surrogateescape")
        else:
            text = call.body["content"]
        sha = blob_sha(text)
        repo.setdefault("blobs", {})[sha] = text
        return Reply(201, {"sha": sha, "url": f"{self._base()}/repos/{repo['full_name']}/git/blobs/{sha}"})

    def _get_blob(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        sha = call.params["file_sha"]
        text = self._find_blob(repo, sha)
        if text is None:
            raise Refused(404, "Not Found")
        data = raw(text)
        return Reply(200, {"sha": sha, "node_id": node_id("Blob", int(sha[:12], 16)), "size": len(data),
                           "url": f"{self._base()}/repos/{repo['full_name']}/git/blobs/{sha}",
                           "content": base64.encodebytes(data).decode(), "encoding": "base64"})

    def _tree_answer(self, repo: dict[str, Any], files: dict[str, str], modes: dict[str, str],
                     recursive: bool) -> dict[str, Any]:
        shas, listing = tree_index(files, modes)
        api = f"{self._base()}/repos/{repo['full_name']}/git"
        entries: list[dict[str, Any]] = []

        def walk(directory: str) -> None:
            for name, mode, sha in listing[directory]:
                path = f"{directory}/{name}" if directory else name
                if mode == TREE_MODE:
                    entries.append({"path": path, "mode": mode, "type": "tree", "sha": sha,
                                    "url": f"{api}/trees/{sha}"})
                    if recursive:
                        walk(path)
                else:
                    entries.append({"path": path, "mode": mode, "type": "blob", "sha": sha,
                                    "size": len(raw(files[path])), "url": f"{api}/blobs/{sha}"})

        walk("")
        return {"sha": shas[""], "url": f"{api}/trees/{shas['']}", "tree": entries, "truncated": False}

    def _create_tree(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        files: dict[str, str] = {}
        modes: dict[str, str] = {}
        if call.body.get("base_tree"):
            base = self._find_tree(repo, call.body["base_tree"])
            if base is None:
                raise Refused(422, "Invalid tree info")
            files, modes = dict(base[0]), dict(base[1])
        for entry in call.body["tree"]:
            self._apply_tree_entry(repo, files, modes, entry)
        modes = {path: mode for path, mode in modes.items() if path in files and mode != FILE_MODE}
        sha = tree_sha(files, modes)
        repo.setdefault("trees", {})[sha] = {"files": files, "modes": modes}
        return Reply(201, self._tree_answer(repo, files, modes, recursive=False))

    def _apply_tree_entry(self, repo: dict[str, Any], files: dict[str, str], modes: dict[str, str],
                          entry: dict[str, Any]) -> None:
        path = entry.get("path") or ""
        if not path or path.startswith("/") or path.endswith("/") or any(
                part in ("", ".", "..", ".git") for part in path.split("/")):
            raise Refused(422, f"tree.path contains a malformed path component: {path!r}")
        has_sha, has_content = "sha" in entry, "content" in entry
        if has_sha == has_content:
            raise Refused(422, "Must supply either tree.sha or tree.content. Request will be rejected if "
                               "both are present.")
        kind = entry.get("type", "tree" if entry.get("mode") == TREE_MODE else "blob")
        mode = entry.get("mode", TREE_MODE if kind == "tree" else FILE_MODE)
        if kind == "commit" or mode == "160000":
            raise Refused(422, "GitHub sandbox: submodules (type commit, mode 160000) are not modelled")
        if (kind == "tree") != (mode == TREE_MODE):
            raise Refused(422, f"tree.mode {mode} does not match tree.type {kind}")
        prefix = f"{path}/"
        beneath = [p for p in files if p.startswith(prefix)]
        if has_sha and entry["sha"] is None:  # a deletion: of a file, or of a whole directory
            if path in files:
                files.pop(path)
            elif beneath:
                for p in beneath:
                    files.pop(p)
            else:
                raise Refused(422, "GitRPC::BadObjectState")
            return
        if kind == "tree":
            subtree = self._find_tree(repo, entry["sha"])
            if subtree is None:
                raise Refused(422, f"tree.sha {entry['sha']} is not a valid tree")
            new_files = {prefix + p: t for p, t in subtree[0].items()}
            new_modes = {prefix + p: m for p, m in subtree[1].items()}
        else:
            text = entry["content"] if has_content else self._find_blob(repo, entry["sha"])
            if text is None:
                raise Refused(422, f"tree.sha {entry['sha']} is not a valid blob")
            new_files, new_modes = {path: text}, {path: mode}
        for p in beneath:  # what was there gives way, as in git: a directory to a file ...
            files.pop(p)
        parts = path.split("/")
        for depth in range(1, len(parts)):  # ... and a file to a directory
            files.pop("/".join(parts[:depth]), None)
        files.pop(path, None)
        files.update(new_files)
        modes.update(new_modes)

    def _get_tree(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        wanted = call.params["tree_sha"]
        found = self._find_tree(repo, wanted)
        if found is None:
            commit = self._resolve(repo, wanted)  # a commit or a ref names its tree too
            if commit is not None:
                found = self._tree(repo, commit), self._modes(repo, commit)
        if found is None:
            raise Refused(404, "Not Found")
        # GitHub: any value of `recursive` (0 and "false" too) lists the whole tree
        return Reply(200, self._tree_answer(repo, found[0], found[1], "recursive" in call.query))

    def _person(self, commit: dict[str, Any], role: str) -> dict[str, str]:
        """The author or committer of a commit, as git records them."""
        name = commit.get(role) or commit["author"] or self.owner
        email = commit.get(f"{role}_email") or commit.get("author_email") or self._email(name)
        date = commit.get(f"{role}_date") or commit["timestamp"]
        return {"name": name, "email": email, "date": date}

    def _create_git_commit(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        body = call.body
        tree = self._find_tree(repo, body["tree"])
        if tree is None:
            raise Refused(422, "Tree SHA does not exist")
        parents = list(body.get("parents") or [])
        for parent in parents:
            if parent not in repo["commits"]:
                raise Refused(422, "Parent SHA does not exist or is not a commit object")
        bot = self._bot_login()
        author = dict(body.get("author") or {"name": bot, "email": self._email(bot)})
        author["date"] = self._git_date(author.get("date"))
        committer = dict(body.get("committer") or author)
        committer.setdefault("name", author["name"])
        committer.setdefault("email", author["email"])
        committer["date"] = self._git_date(committer.get("date") or author["date"])
        message = body["message"]
        text = "".join([f"tree {tree_sha(*tree)}\n", *(f"parent {p}\n" for p in parents),
                        self._signature_line("author", author), self._signature_line("committer", committer),
                        "\n", message])
        sha = _git_object("commit", raw(text))
        self._new_commit(repo, None, dict(tree[0]), message, author["name"], parents=parents,
                         modes=dict(tree[1]), sha=sha, author_email=author["email"],
                         author_date=author["date"], committer=committer["name"],
                         committer_email=committer["email"], committer_date=committer["date"])
        return Reply(201, self._git_commit_object(repo, sha))

    @staticmethod
    def _git_date(value: str | None) -> str:
        """A date as GitHub answers it (UTC, seconds), from ISO 8601 with any offset."""
        if not value:
            return timestamp()
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Refused(422, f"Invalid request.\n\n{value!r} is not a valid date-time.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return timestamp(moment.astimezone(timezone.utc))

    @staticmethod
    def _signature_line(role: str, person: dict[str, str]) -> str:
        moment = datetime.strptime(person["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return f"{role} {person['name']} <{person['email']}> {int(moment.timestamp())} +0000\n"

    def _git_commit_object(self, repo: dict[str, Any], sha: str) -> dict[str, Any]:
        commit = repo["commits"][sha]
        base = self._base()
        full_name = repo["full_name"]
        api = f"{base}/repos/{full_name}/git/commits"
        tree_id = commit.get("tree_id") or tree_sha(self._tree(repo, sha), self._modes(repo, sha))
        return {
            "sha": sha, "node_id": node_id("Commit", int(sha[:12], 16)), "url": f"{api}/{sha}",
            "html_url": f"{base}/{full_name}/commit/{sha}", "author": self._person(commit, "author"),
            "committer": self._person(commit, "committer"), "message": commit["message"],
            "tree": {"sha": tree_id, "url": f"{base}/repos/{full_name}/git/trees/{tree_id}"},
            "parents": [{"sha": p, "url": f"{api}/{p}", "html_url": f"{base}/{full_name}/commit/{p}"}
                        for p in commit["parents"]],
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                             "verified_at": None},
        }

    def _get_git_commit(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        sha = call.params["commit_sha"]
        if sha not in repo["commits"]:
            raise Refused(404, "Not Found")
        return Reply(200, self._git_commit_object(repo, sha))

    # refs: `refs/heads/<branch>` are the repository's branches, `refs/tags/<tag>` its tags

    @staticmethod
    def _refs(repo: dict[str, Any]) -> dict[str, str]:
        refs = {f"refs/heads/{name}": sha for name, sha in repo["branches"].items()}
        refs.update({f"refs/tags/{name}": sha for name, sha in repo.get("tags", {}).items()})
        return dict(sorted(refs.items()))

    def _ref_object(self, repo: dict[str, Any], name: str, sha: str) -> dict[str, Any]:
        api = f"{self._base()}/repos/{repo['full_name']}/git"
        return {"ref": name, "node_id": base64.b64encode(f"03:Ref{repo['id']}:{name}".encode()).decode(),
                "url": f"{api}/{quote(name)}",
                "object": {"type": "commit", "sha": sha, "url": f"{api}/commits/{sha}"}}

    def _get_ref(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        name = f"refs/{call.params['ref']}"
        sha = self._refs(repo).get(name)
        if sha is None:
            raise Refused(404, "Not Found")
        return Reply(200, self._ref_object(repo, name, sha))

    def _list_matching_refs(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        prefix = f"refs/{call.params['ref']}"
        return Reply(200, [self._ref_object(repo, name, sha) for name, sha in self._refs(repo).items()
                           if name.startswith(prefix)])

    @staticmethod
    def _check_ref_name(name: str) -> None:
        if not name.startswith("refs/") or name.count("/") < 2:
            raise Refused(422, "Reference name must contain at least three slash-separated components.")
        kind = name.split("/")[1]
        rest = name.split("/", 2)[2]
        invalid = re.search(r"[\x00-\x20~^:?*\[\\\x7f]|\.\.|//|@\{|\.lock(/|$)", rest)
        if (kind not in ("heads", "tags") or invalid or rest.startswith(("/", ".", "-"))
                or rest.endswith(("/", ".")) or "/." in rest):
            raise Refused(422, f"{name} is not a valid ref name.")

    def _create_ref(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        name, sha = call.body["ref"], call.body["sha"]
        self._check_ref_name(name)
        if name in self._refs(repo):
            raise Refused(422, "Reference already exists")
        if sha not in repo["commits"]:
            raise Refused(422, "Object does not exist")
        self._write_ref(repo, name, sha, self._bot_login())
        return Reply(201, self._ref_object(repo, name, sha))

    def _update_ref(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        name = f"refs/{call.params['ref']}"
        before = self._refs(repo).get(name)
        if before is None:
            raise Refused(422, "Reference does not exist")
        sha = call.body["sha"]
        if sha not in repo["commits"]:
            raise Refused(422, "Object does not exist")
        fast_forward = before in self._ancestors(repo, sha)
        if not fast_forward and not call.body.get("force", False):
            raise Refused(422, "Update is not a fast forward")
        self._check_protection(repo, name, sha, fast_forward)
        if sha != before:
            self._write_ref(repo, name, sha, self._bot_login(), forced=not fast_forward)
        return Reply(200, self._ref_object(repo, name, sha))

    def _delete_ref(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        name = f"refs/{call.params['ref']}"
        if name not in self._refs(repo):
            raise Refused(422, "Reference does not exist")
        if name == f"refs/heads/{repo['default_branch']}":
            raise Refused(422, "Cannot delete the default branch")
        self._check_protection(repo, name, None, True)
        self._write_ref(repo, name, None, self._bot_login())
        return Reply(204)

    def _check_protection(self, repo: dict[str, Any], name: str, sha: str | None, fast_forward: bool) -> None:
        """Branch protection refuses a deletion, a force push and a head without the required checks."""
        if not name.startswith("refs/heads/"):
            return
        required = self._protection.get(repo["full_name"], {}).get(name.removeprefix("refs/heads/"))
        if required is None:
            return
        if sha is None:
            raise Refused(422, "Cannot delete this protected branch")
        if not fast_forward:
            raise Refused(422, "Cannot force-push to this protected branch")
        for context in required:
            if not self._check_passed(repo["full_name"], sha, context):
                raise Refused(422, f'Required status check "{context}" is expected.')

    def _check_passed(self, full_name: str, sha: str, context: str) -> bool:
        statuses = [s for s in self.statuses
                    if (s["repo"], s["sha"], s["context"]) == (full_name, sha, context)]
        if statuses and max(statuses, key=lambda s: s["id"])["state"] == "success":
            return True
        return any(r["repo"] == full_name and r["head_sha"] == sha and r["name"] == context
                   and r["status"] == "completed" and r["conclusion"] in ("success", "neutral", "skipped")
                   for r in self.check_runs.values())

    def _write_ref(self, repo: dict[str, Any], name: str, sha: str | None, by: str,
                   forced: bool = False) -> None:
        """Create, move (sha) or delete (None) a ref, announced as GitHub does: `push`, then
        `pull_request.synchronize` for each open pull request from a moved branch, or
        `pull_request.closed` for each one whose branch was deleted."""
        kind, _, short = name.removeprefix("refs/").partition("/")
        store = repo["branches"] if kind == "heads" else repo.setdefault("tags", {})
        before = store.get(short, ZERO_SHA)
        if sha is None:
            store.pop(short)
        else:
            store[short] = sha
        self._touch(repo, pushed=True)
        after = sha or ZERO_SHA
        action = "created" if before == ZERO_SHA else "deleted" if sha is None else "updated"
        write = {"repo": repo["full_name"], "ref": name, "action": action, "before": before, "after": after,
                 "forced": forced, "by": by, "at": timestamp()}
        self.ref_writes.append(write)
        if forced:
            self.force_pushes.append(dict(write))
        self._announce_push(repo, short, before, after, self._pushed_commits(repo, name, before, after), by,
                            ref=name, forced=forced)
        if kind != "heads":
            return
        sender = self._wh_user(by)
        for pull in self._open_pulls(repo["full_name"]):
            if pull["head_ref"] != short:
                continue
            if sha is None:
                self._close(pull)
                self._announce_pull("closed", pull, sender)
            elif pull["head_sha"] != sha:
                previous = pull["head_sha"]
                pull.update(head_sha=sha, updated_at=timestamp())
                self._announce_pull("synchronize", pull, sender, before=previous, after=sha)

    def _pushed_commits(self, repo: dict[str, Any], name: str, before: str, after: str) -> list[str]:
        """The commits a push brings, oldest first: those `before` (or, for a new ref, any other
        branch) did not have."""
        if after == ZERO_SHA:
            return []
        known: set[str] = set()
        if before != ZERO_SHA:
            known.update(self._ancestors(repo, before))
        else:
            for other, head in self._refs(repo).items():
                if other != name and other.startswith("refs/heads/"):
                    known.update(self._ancestors(repo, head))
        new = [sha for sha in self._ancestors(repo, after) if sha not in known]
        return list(reversed(new))[-MAX_PUSH_COMMITS:]

    # branches

    def _branch_protected(self, full_name: str, branch: str) -> bool:
        return branch in self._protection.get(full_name, {})

    def _list_branches(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        full_name = repo["full_name"]
        found = sorted(repo["branches"].items())
        if "protected" in call.query:
            wanted = call.query["protected"] == "true"
            found = [(n, s) for n, s in found if self._branch_protected(full_name, n) == wanted]
        api = f"{self._base()}/repos/{full_name}"
        items = []
        for name, sha in found:
            checks = self._protection.get(full_name, {}).get(name)
            item = {"name": name, "commit": {"sha": sha, "url": f"{api}/commits/{sha}"},
                    "protected": checks is not None,
                    "protection_url": f"{api}/branches/{quote(name, safe='')}/protection"}
            item["protection"] = self._branch_protection_summary(checks)
            items.append(item)
        return self._page(call, items)

    @staticmethod
    def _branch_protection_summary(checks: list[str] | None) -> dict[str, Any]:
        if checks is None:
            return {"enabled": False, "required_status_checks": {"enforcement_level": "off", "contexts": [],
                                                                   "checks": []}}
        return {"enabled": True, "required_status_checks": {
            "enforcement_level": "non_admins", "contexts": list(checks),
            "checks": [{"context": name, "app_id": None} for name in checks]}}

    def _get_branch(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        name = call.params["branch"]
        sha = repo["branches"].get(name)
        if sha is None:
            raise Refused(404, "Branch not found")
        template = _raw_example("GET", "/repos/{owner}/{repo}/branches/{branch}", 200)
        full_name = repo["full_name"]
        api = f"{self._base()}/repos/{full_name}/branches/{quote(name, safe='')}"
        checks = self._protection.get(full_name, {}).get(name)
        answer = self._rebase(template)
        answer.update(name=name, commit=self._commit_object(repo, sha, template["commit"]),
                      protected=checks is not None, protection=self._branch_protection_summary(checks),
                      protection_url=f"{api}/protection",
                      _links={"self": api, "html": f"{self._base()}/{full_name}/tree/{quote(name)}"})
        return Reply(200, answer)

    def _commit_object(self, repo: dict[str, Any], sha: str, template: dict[str, Any]) -> dict[str, Any]:
        """A commit as the commits API answers it (with its git commit inside), on `template`."""
        answer = self._rebase(json.loads(json.dumps(template)))
        base = self._base()
        full_name = repo["full_name"]
        commit = repo["commits"].get(sha) or self._foreign_commit()
        git = self._git_commit_object(repo, sha) if sha in repo["commits"] else None
        api = f"{base}/repos/{full_name}/commits/{sha}"
        login = commit["author"] or None
        # GitHub links a commit to the account its email belongs to: the sandbox's noreply address
        user = (self._user(login, self._kind(login)) if login and commit.get("author_email")
                in (None, self._email(login)) else None)
        inner = answer["commit"]
        person = git["author"] if git else {"name": self.owner, "email": self._email(self.owner),
                                            "date": commit["timestamp"]}
        inner.update(author=person, committer=git["committer"] if git else dict(person),
                     message=commit["message"], comment_count=0,
                     tree=git["tree"] if git else {"sha": sha,
                                                   "url": f"{base}/repos/{full_name}/git/trees/{sha}"},
                     url=f"{base}/repos/{full_name}/git/commits/{sha}",
                     verification={"verified": False, "reason": "unsigned", "signature": None,
                                   "payload": None, "verified_at": None})
        answer.update(sha=sha, node_id=node_id("Commit", int(sha[:12], 16)), url=api,
                      html_url=f"{base}/{full_name}/commit/{sha}", comments_url=f"{api}/comments",
                      author=user, committer=user, commit=inner,
                      parents=[{"sha": p, "url": f"{base}/repos/{full_name}/commits/{p}",
                                "html_url": f"{base}/{full_name}/commit/{p}"} for p in commit["parents"]])
        for extra in ("stats", "files"):
            answer.pop(extra, None)
        return answer

    # comparing commits, and the files a pull request changes

    def _file_changes(self, repo: dict[str, Any], base_sha: str | None,
                      head_sha: str) -> list[dict[str, Any]]:
        """What changed from `base_sha`'s tree to `head_sha`'s, file by file, as GitHub lists it."""
        before = self._tree(repo, base_sha) if base_sha else {}
        after = self._tree(repo, head_sha)
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        renamed: dict[str, str] = {}  # new path -> old path, for a file moved unchanged
        for path in added:
            old = next((p for p in removed if before[p] == after[path] and p not in renamed.values()), None)
            if old is not None:
                renamed[path] = old
        changes = []
        full_name = repo["full_name"]
        base = self._base()
        for path in sorted(set(added) | set(removed) | {p for p in set(before) & set(after)
                                                           if before[p] != after[p]}):
            if path in renamed.values():
                continue
            old_path = renamed.get(path, path)
            old_text, new_text = before.get(old_path), after.get(path)
            status = ("renamed" if path in renamed else "added" if old_text is None
                      else "removed" if new_text is None else "modified")
            patch, additions, deletions = unified_patch(old_text, new_text)
            ref = head_sha if new_text is not None else (base_sha or head_sha)
            text = new_text if new_text is not None else old_text
            change: dict[str, Any] = {
                "sha": blob_sha(text or ""), "filename": path, "status": status, "additions": additions,
                "deletions": deletions, "changes": additions + deletions,
                "blob_url": f"{base}/{full_name}/blob/{ref}/{quote(path)}",
                "raw_url": f"{base}/{full_name}/raw/{ref}/{quote(path)}",
                "contents_url": f"{base}/repos/{full_name}/contents/{quote(path)}?ref={ref}",
            }
            if patch:
                change["patch"] = patch
            if status == "renamed":
                change["previous_filename"] = old_path
            changes.append(change)
        return changes

    def _compare(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        basehead = call.params["basehead"]
        separator = "..." if "..." in basehead else ".." if ".." in basehead else None
        if separator is None:
            raise Refused(404, "Not Found")
        base_ref, head_ref = basehead.split(separator, 1)
        owner = repo["full_name"].split("/")[0]
        base_sha = self._resolve(repo, base_ref.removeprefix(f"{owner}:"))
        head_sha = self._resolve(repo, head_ref.removeprefix(f"{owner}:"))
        if base_sha is None or head_sha is None:
            raise Refused(404, "Not Found")
        of_base, of_head = self._ancestors(repo, base_sha), self._ancestors(repo, head_sha)
        ahead = [sha for sha in of_head if sha not in set(of_base)]
        behind = [sha for sha in of_base if sha not in set(of_head)]
        status = ("identical" if not ahead and not behind else "ahead" if not behind
                  else "behind" if not ahead else "diverged")
        merge_base = self._merge_base(repo, base_sha, head_sha) or base_sha
        template = _raw_example("GET", "/repos/{owner}/{repo}/compare/{basehead}", 200)
        commit_template = template["commits"][0]
        chronological = list(reversed(ahead))
        paged = "page" in call.query or "per_page" in call.query
        page = self._page(call, chronological) if paged else Reply(200, chronological[-250:])
        base, full_name = self._base(), repo["full_name"]
        answer = self._rebase(template)
        answer.update(
            url=f"{base}/repos/{full_name}/compare/{basehead}",
            html_url=f"{base}/{full_name}/compare/{basehead}",
            permalink_url=f"{base}/{full_name}/compare/{owner}:{base_sha}...{owner}:{head_sha}",
            diff_url=f"{base}/{full_name}/compare/{basehead}.diff",
            patch_url=f"{base}/{full_name}/compare/{basehead}.patch",
            base_commit=self._commit_object(repo, base_sha, commit_template),
            merge_base_commit=self._commit_object(repo, merge_base, commit_template),
            status=status, ahead_by=len(ahead), behind_by=len(behind), total_commits=len(ahead),
            commits=[self._commit_object(repo, sha, commit_template) for sha in page.body])
        if int(call.query.get("page", 1)) == 1:
            compare_from = merge_base if separator == "..." else base_sha
            answer["files"] = self._file_changes(repo, compare_from, head_sha)
        else:
            answer.pop("files", None)
        return Reply(200, answer, page.headers)

    # ---- issues, comments, reactions, labels -------------------------------------------------

    def _get_issue(self, call: Call) -> Reply:
        return Reply(200, self._issue_object(self._issue_from(call)))

    def _create_issue(self, call: Call) -> Reply:
        """The App opens an issue: announced as `issues.opened`, then `issues.labeled` for each label,
        as GitHub does. Labels that do not exist yet are made; assignees follow `_add_assignees`."""
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        body = call.body
        title = str(body["title"])
        if not title.strip():
            raise Refused(422, "Validation Failed", [{"resource": "Issue", "code": "missing_field",
                                                      "field": "title"}])
        if len(title) > 256:
            raise Refused(422, "Validation Failed", [{
                "resource": "Issue", "code": "custom", "field": "title",
                "message": "title is too long (maximum is 256 characters)"}])
        issue = self._new_issue(full_name, self._next_number(full_name), title, body.get("body") or "",
                                self._bot_login(), (), "open")
        sender = self._wh_user(self._bot_login(), "Bot")
        self._announce_issue("opened", issue, sender)
        for name in self._label_names(body.get("labels")):
            self._label(issue, name, sender)
        for login in body.get("assignees") or []:
            if login not in issue["assignees"] and self._assignable(full_name, login) and len(
                    issue["assignees"]) < 10:
                issue["assignees"].append(login)
                self._announce_issue("assigned", issue, sender, assignee=self._wh_user(login))
        return Reply(201, self._issue_object(issue))

    def _update_issue(self, call: Call) -> Reply:
        """Title, body, labels (the whole set) and state with its reason. An edit is announced as
        `issues.edited` with what it changed, labels as `labeled`/`unlabeled`, then `closed` or
        `reopened`; for a pull request only closing is (the others' schemas are not vendored)."""
        issue = self._issue_from(call)
        body = call.body or {}
        sender = self._wh_user(self._bot_login(), "Bot")
        reopen = body.get("state") == "open" and issue["state"] == "closed"
        if reopen and issue["merged"]:
            raise Refused(422, "Validation Failed", [{
                "resource": "Issue", "code": "custom",
                "message": "state cannot be changed. The pull request has been merged."}])
        title = None if body.get("title") is None else str(body["title"])
        if title is not None and (not title.strip() or len(title) > 256):
            raise Refused(422, "Validation Failed", [{"resource": "Issue", "code": "invalid",
                                                      "field": "title"}])
        changes: dict[str, Any] = {}
        if title is not None and title != issue["title"]:
            changes["title"] = {"from": issue["title"]}
            issue["title"] = title
        if "body" in body and (body["body"] or "") != (issue["body"] or ""):
            changes["body"] = {"from": issue["body"] or ""}
            issue["body"] = body["body"] or ""
        if changes:
            issue["updated_at"] = timestamp()
            if not issue["pull_request"]:
                self._announce_issue("edited", issue, sender, changes=changes)
        if "labels" in body:
            wanted = self._label_names(body["labels"])
            for name in [name for name in issue["labels"] if name not in wanted]:
                self._unlabel(issue, name, sender)
            for name in wanted:
                self._label(issue, name, sender)
        if body.get("state") == "closed" and issue["state"] == "open":
            self._close(issue)
            issue["state_reason"] = body.get("state_reason") or "completed"
            self._announce_issue("closed", issue, sender)
        elif reopen:
            issue.update(state="open", closed_at=None, updated_at=timestamp(), state_reason="reopened")
            if not issue["pull_request"]:
                self._announce_issue("reopened", issue, sender)
        return Reply(200, self._issue_object(issue))

    @staticmethod
    def _label_names(labels: Any) -> list[str]:
        """Label names from a request's `labels` (names or objects with a name), each once."""
        names = [label if isinstance(label, str) else (label or {}).get("name") or ""
                 for label in labels or []]
        return list(dict.fromkeys(name for name in names if name))

    def _list_comments(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        since = call.query.get("since", "")
        found = [c for c in self.comments if c["repo"] == issue["repo"]
                 and c["issue_number"] == issue["number"] and c["updated_at"] >= since]
        return self._page(call, [self._comment_object(c) for c in found])

    def _create_comment(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        comment = self._new_comment(issue, call.body["body"], self._bot_login(), "Bot")
        self._announce_comment("created", comment, self._wh_user(self._bot_login(), "Bot"))
        return Reply(201, self._comment_object(comment))

    def _update_comment(self, call: Call) -> Reply:
        comment = self._comment_from(call)
        before = comment["body"]
        comment.update(body=call.body["body"], updated_at=timestamp())
        if before != comment["body"]:
            self._announce_comment("edited", comment, self._wh_user(self._bot_login(), "Bot"),
                                   changes={"body": {"from": before}})
        return Reply(200, self._comment_object(comment))

    def _react_to_comment(self, call: Call) -> Reply:
        comment = self._comment_from(call)
        return self._react(comment["repo"], "comment_id", comment["id"], call.body["content"])

    def _react_to_issue(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        return self._react(issue["repo"], "issue_number", issue["number"], call.body["content"])

    def _react(self, repo: str, subject: str, key: int, content: str) -> Reply:
        login = self._bot_login()
        for reaction in self.reactions:
            if (reaction["repo"], reaction.get(subject), reaction["content"], reaction["user"]) == (
                    repo, key, content, login):
                return Reply(200, self._reaction_object(reaction))  # GitHub's answer to a repeat
        reaction = {"id": self._new_id(), "repo": repo, subject: key, "content": content, "user": login,
                    "created_at": timestamp()}
        self.reactions.append(reaction)
        return Reply(201, self._reaction_object(reaction))

    def _add_labels(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        bot = self._wh_user(self._bot_login(), "Bot")
        for label in call.body.get("labels", []):
            self._label(issue, label if isinstance(label, str) else label["name"], bot)
        return Reply(200, [self._label_object(issue["repo"], name) for name in issue["labels"]])

    def _remove_label(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        name = call.params["name"]
        if name not in issue["labels"]:
            raise Refused(404, "Label does not exist")
        self._unlabel(issue, name, self._wh_user(self._bot_login(), "Bot"))
        return Reply(200, [self._label_object(issue["repo"], label) for label in issue["labels"]])

    def _label(self, issue: dict[str, Any], name: str, sender: dict[str, Any]) -> None:
        if name in issue["labels"]:
            return  # GitHub announces only a change
        issue["labels"].append(name)
        issue["updated_at"] = timestamp()
        self._announce_issue("labeled", issue, sender, label=self._label_object(issue["repo"], name))

    def _unlabel(self, issue: dict[str, Any], name: str, sender: dict[str, Any]) -> None:
        issue["labels"].remove(name)
        issue["updated_at"] = timestamp()
        self._announce_issue("unlabeled", issue, sender, label=self._label_object(issue["repo"], name))

    def _list_issues(self, call: Call) -> Reply:
        """Issues and pull requests (with `pull_request`), as GitHub lists them."""
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        query = call.query
        state = query.get("state", "open")
        found = [i for (repo, _), i in self._issues.items()
                 if repo == full_name and state in ("all", i["state"])]
        if "labels" in query:
            wanted = {name.strip().lower() for name in query["labels"].split(",") if name.strip()}
            found = [i for i in found if wanted <= {name.lower() for name in i["labels"]}]
        if "assignee" in query:
            assignee = query["assignee"]
            found = [i for i in found if (not i["assignees"] if assignee == "none" else bool(i["assignees"])
                                          if assignee == "*" else assignee in i["assignees"])]
        if "creator" in query:
            found = [i for i in found if i["author"] == query["creator"]]
        if "mentioned" in query:
            found = [i for i in found if f"@{query['mentioned']}" in (i["body"] or "")]
        if query.get("milestone", "none") != "none":  # the sandbox has no milestones
            found = []
        if "since" in query:
            found = [i for i in found if i["updated_at"] >= query["since"]]
        sort = query.get("sort", "created")
        counts = {key: sum(1 for c in self.comments if (c["repo"], c["issue_number"]) == key)
                  for key in ((i["repo"], i["number"]) for i in found)} if sort == "comments" else {}
        found.sort(key=lambda i: (i["updated_at"] if sort == "updated" else
                                  counts.get((i["repo"], i["number"]), 0) if sort == "comments" else 0,
                                  i["number"]), reverse=query.get("direction", "desc") == "desc")
        return self._page(call, [self._issue_object(i) for i in found])

    def _assignable(self, repo: str, login: str) -> bool:
        """Who GitHub lets be assigned: a collaborator, never a bot (it drops the others silently)."""
        return not login.endswith("[bot]") and self._roles.get((repo, login), "none") != "none"

    def _add_assignees(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        sender = self._wh_user(self._bot_login(), "Bot")
        for item in (call.body or {}).get("assignees") or []:
            login = item if isinstance(item, str) else item.get("login", "")
            if login in issue["assignees"] or not self._assignable(issue["repo"], login):
                continue
            if len(issue["assignees"]) >= 10:  # GitHub's limit
                break
            issue["assignees"].append(login)
            issue["updated_at"] = timestamp()
            self._announce_issue("assigned", issue, sender, assignee=self._wh_user(login))
        return Reply(201, self._issue_object(issue))

    def _label_key(self, repo: str, name: str) -> tuple[str, str] | None:
        """The repository's label of that name (GitHub compares label names case-insensitively)."""
        return next((key for key in self._labels if key[0] == repo and key[1].lower() == name.lower()), None)

    @staticmethod
    def _check_color(color: str) -> str:
        if not re.fullmatch(r"[0-9A-Fa-f]{6}", color):
            raise Refused(422, "Validation Failed",
                          [{"resource": "Label", "code": "invalid", "field": "color"}])
        return color.lower()

    def _list_labels(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        names = sorted((name for repo, name in self._labels if repo == full_name), key=str.lower)
        return self._page(call, [self._label_object(full_name, name) for name in names])

    def _create_label(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        body = call.body
        if self._label_key(full_name, body["name"]) is not None:
            raise Refused(422, "Validation Failed",
                          [{"resource": "Label", "code": "already_exists", "field": "name"}])
        info = {"color": self._check_color(body["color"].lstrip("#")) if "color" in body else "ededed",
                "description": body.get("description")}
        self._label_info[(full_name, body["name"])] = info
        return Reply(201, self._label_object(full_name, body["name"]))

    def _label_from(self, call: Call) -> tuple[str, str]:
        key = self._label_key(f"{call.params['owner']}/{call.params['repo']}", call.params["name"])
        if key is None:
            raise Refused(404, "Not Found")
        return key

    def _get_label(self, call: Call) -> Reply:
        repo, name = self._label_from(call)
        return Reply(200, self._label_object(repo, name))

    def _update_label(self, call: Call) -> Reply:
        repo, name = self._label_from(call)
        body = call.body or {}
        info = dict(self._label_info.get((repo, name), {"color": "ededed", "description": None}))
        if "color" in body:
            info["color"] = self._check_color(body["color"].lstrip("#"))
        if "description" in body:
            info["description"] = body["description"]
        new_name = body.get("new_name") or name
        if new_name != name:
            clash = self._label_key(repo, new_name)
            if clash is not None and clash != (repo, name):
                raise Refused(422, "Validation Failed",
                              [{"resource": "Label", "code": "already_exists", "field": "name"}])
            self._labels[(repo, new_name)] = self._labels.pop((repo, name))
            self._label_info.pop((repo, name), None)
            for issue in self._issues.values():
                if issue["repo"] == repo and name in issue["labels"]:
                    issue["labels"][issue["labels"].index(name)] = new_name
        self._label_info[(repo, new_name)] = info
        return Reply(200, self._label_object(repo, new_name))

    def _delete_label(self, call: Call) -> Reply:
        repo, name = self._label_from(call)
        self._labels.pop((repo, name))
        self._label_info.pop((repo, name), None)
        for issue in self._issues.values():  # GitHub announces `label.deleted`, which the App does not get
            if issue["repo"] == repo and name in issue["labels"]:
                issue["labels"].remove(name)
        return Reply(204)

    # ---- check runs and suites ---------------------------------------------------------------

    def _create_check_run(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        body = call.body
        if body["head_sha"] not in self._repo(full_name)["commits"]:
            raise Refused(422, f"No commit found for SHA: {body['head_sha']}")
        run = self._new_check_run(full_name, body["name"], body["head_sha"], "app")
        self._apply_check_run(run, body)
        bot = self._wh_user(self._bot_login(), "Bot")
        self._announce_check_run("created", run, bot)
        self._settle_suite(self._suites[run["suite_id"]], bot)
        return Reply(201, self._check_run_object(run))

    def _update_check_run(self, call: Call) -> Reply:
        run = self._check_run_from(call)
        was = run["status"]
        self._apply_check_run(run, call.body or {})
        if run["status"] == "completed" and was != "completed":
            bot = self._wh_user(self._bot_login(), "Bot")
            self._announce_check_run("completed", run, bot)
            self._settle_suite(self._suites[run["suite_id"]], bot)
        return Reply(200, self._check_run_object(run))

    def _new_check_run(self, repo: str, name: str, head_sha: str, app: str) -> dict[str, Any]:
        suite = self._suite(repo, head_sha, app)
        run = {"id": self._new_id(), "repo": repo, "name": name, "head_sha": head_sha, "app": app,
               "suite_id": suite["id"], "status": "queued", "conclusion": None, "external_id": "",
               "output": {}, "details_url": None, "started_at": timestamp(), "completed_at": None}
        self.check_runs[run["id"]] = run
        if suite["status"] == "completed":
            suite.update(status="in_progress", conclusion=None, updated_at=timestamp())
        return run

    @staticmethod
    def _apply_check_run(run: dict[str, Any], body: dict[str, Any]) -> None:
        status = body.get("status", run["status"])
        conclusion = body.get("conclusion", run["conclusion"])
        if "conclusion" in body:
            status = "completed"  # GitHub: a conclusion completes the run
        if status == "completed" and conclusion is None:
            raise Refused(422, "Invalid request.\n\n\"conclusion\" wasn't supplied.")
        for key in ("name", "external_id", "details_url", "started_at"):
            if key in body:
                run[key] = body[key]
        if "output" in body:
            run["output"] = dict(body["output"])
        run.update(status=status, conclusion=conclusion)
        if status == "completed":
            run["completed_at"] = body.get("completed_at") or run["completed_at"] or timestamp()

    def _suite(self, repo: str, head_sha: str, app: str) -> dict[str, Any]:
        for suite in self._suites.values():
            if (suite["repo"], suite["head_sha"], suite["app"]) == (repo, head_sha, app):
                return suite
        record = self._repo(repo)
        commit = record["commits"].get(head_sha) or {}
        suite = {"id": self._new_id(), "repo": repo, "head_sha": head_sha, "app": app,
                 "head_branch": self._branch_of(repo, head_sha), "status": "queued", "conclusion": None,
                 "before": (commit.get("parents") or [ZERO_SHA])[0], "created_at": timestamp(),
                 "updated_at": timestamp()}
        self._suites[suite["id"]] = suite
        return suite

    def _settle_suite(self, suite: dict[str, Any], sender: dict[str, Any]) -> None:
        """A suite completes, and is announced, when its last run completes."""
        runs = [run for run in self.check_runs.values() if run["suite_id"] == suite["id"]]
        if not runs:
            return
        if all(run["status"] == "completed" for run in runs):
            if suite["status"] == "completed":
                return
            suite.update(status="completed", conclusion=worst([run["conclusion"] for run in runs]),
                         updated_at=timestamp())
            self._announce_check_suite("completed", suite, sender)
        elif suite["status"] != "in_progress" and any(run["status"] != "queued" for run in runs):
            suite.update(status="in_progress", updated_at=timestamp())

    def _get_check_run(self, call: Call) -> Reply:
        return Reply(200, self._check_run_object(self._check_run_from(call)))

    def _list_check_runs(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        sha = self._resolve(self._repo(full_name), call.params["ref"])
        if sha is None:
            raise Refused(422, f"No commit found for SHA: {call.params['ref']}")
        runs = [run for run in self.check_runs.values()
                if run["repo"] == full_name and run["head_sha"] == sha]
        if "check_name" in call.query:
            runs = [run for run in runs if run["name"] == call.query["check_name"]]
        if "status" in call.query:
            runs = [run for run in runs if run["status"] == call.query["status"]]
        runs.sort(key=lambda run: run["id"], reverse=True)
        if call.query.get("filter", "latest") == "latest":
            newest: dict[str, dict[str, Any]] = {}
            for run in runs:
                newest.setdefault(run["name"], run)
            runs = list(newest.values())
        reply = self._page(call, [self._check_run_object(run) for run in runs])
        reply.body = {"total_count": len(runs), "check_runs": reply.body}
        return reply

    # ---- pull requests, reviews, teams -------------------------------------------------------

    def _get_pull(self, call: Call) -> Reply:
        template = _raw_example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200)
        return Reply(200, self._pull_object(self._pull_from(call), template))

    def _list_pulls(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        state = call.query.get("state", "open")
        pulls = [issue for (repo, _), issue in self._issues.items()
                 if repo == full_name and issue["pull_request"] and state in ("all", issue["state"])]
        if "head" in call.query:
            owner, _, ref = call.query["head"].rpartition(":")
            pulls = [p for p in pulls if p["head_ref"] == ref and owner in ("", full_name.split("/")[0])]
        if "base" in call.query:
            pulls = [p for p in pulls if p["base_ref"] == call.query["base"]]
        sort = call.query.get("sort", "created")
        direction = call.query.get("direction", "desc" if sort == "created" else "asc")
        pulls.sort(key=lambda p: (p["updated_at"] if sort == "updated" else "", p["number"]),
                   reverse=direction == "desc")
        template = _raw_example("GET", "/repos/{owner}/{repo}/pulls", 200)[0]
        return self._page(call, [self._pull_object(p, json.loads(json.dumps(template))) for p in pulls])

    def _list_reviews(self, call: Call) -> Reply:
        pull = self._pull_from(call)
        reviews = self._reviews[(pull["repo"], pull["number"])]
        return self._page(call, [self._review_object(pull, review) for review in reviews])

    def _get_membership(self, call: Call) -> Reply:
        team = self._teams.get((call.params["org"], call.params["team_slug"]))
        login = call.params["username"]
        if team is None or login not in team["members"]:
            raise Refused(404, "Not Found")
        return Reply(200, {"url": f"{self._base()}/teams/{team['id']}/memberships/{login}",
                           "role": "member", "state": "active"})

    def _create_pull(self, call: Call) -> Reply:
        """A pull request the App opens: its bot is the author. Announces `pull_request.opened`."""
        repo = self._repo_from(call)
        full_name = repo["full_name"]
        owner, name = full_name.split("/")
        body = call.body
        head_owner, _, head_ref = body["head"].rpartition(":")
        base_ref = body["base"]
        if "issue" in body:
            raise Refused(422, "GitHub sandbox: turning an issue into a pull request is not modelled")
        errors = []
        if (head_owner not in ("", owner) or body.get("head_repo") not in (None, name, full_name)
                or head_ref not in repo["branches"]):
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if base_ref not in repo["branches"]:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if not errors and not body.get("title"):
            errors.append({"resource": "PullRequest", "field": "title", "code": "missing_field"})
        if errors:
            raise Refused(422, "Validation Failed", errors)
        self._refuse_duplicate_pull(full_name, head_ref, base_ref)
        head_sha, base_sha = repo["branches"][head_ref], repo["branches"][base_ref]
        if head_sha not in repo["commits"] or head_sha in self._ancestors(repo, base_sha):
            raise Refused(422, "Validation Failed", [{
                "resource": "PullRequest", "code": "custom",
                "message": f"No commits between {base_ref} and {head_ref}"}])
        bot = self._bot_login()
        pull = self._new_issue(full_name, self._next_number(full_name), body["title"], body.get("body"), bot,
                               (), "open")
        pull.update(pull_request=True, head_sha=head_sha, head_ref=head_ref, base_ref=base_ref,
                    fork_sha=self._merge_base(repo, base_sha, head_sha) or base_sha,
                    draft=bool(body.get("draft")),
                    maintainer_can_modify=bool(body.get("maintainer_can_modify", False)), requested_teams=[])
        self._reviews[(full_name, pull["number"])] = []
        self._announce_pull("opened", pull, self._wh_user(bot, "Bot"))
        return Reply(201, self._pull_object(pull, _raw_example("POST", "/repos/{owner}/{repo}/pulls", 201)))

    def _refuse_duplicate_pull(self, full_name: str, head_ref: str, base_ref: str) -> None:
        for pull in self._open_pulls(full_name):
            if (pull["head_ref"], pull["base_ref"]) == (head_ref, base_ref):
                owner = full_name.split("/")[0]
                raise Refused(422, "Validation Failed", [{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {owner}:{head_ref}."}])

    def _update_pull(self, call: Call) -> Reply:
        """Title, body, base, maintainer_can_modify and state. Closing is announced
        (`pull_request.closed`); an edit and a reopening are not (their schemas are not vendored)."""
        pull = self._pull_from(call)
        repo = self._repos[pull["repo"]]
        body = call.body or {}
        if "base" in body and body["base"] not in repo["branches"]:
            raise Refused(422, "Validation Failed",
                          [{"resource": "PullRequest", "field": "base", "code": "invalid"}])
        if body.get("state") == "open" and pull["state"] == "closed":
            if pull["merged"]:
                raise Refused(422, "Validation Failed", [{
                    "resource": "PullRequest", "code": "custom",
                    "message": "state cannot be changed. The pull request has been merged."}])
            self._refuse_duplicate_pull(pull["repo"], pull["head_ref"], body.get("base", pull["base_ref"]))
        for key in ("title", "body", "maintainer_can_modify"):
            if key in body:
                pull[key] = body[key]
        if "base" in body and body["base"] != pull["base_ref"]:
            pull["base_ref"] = body["base"]
            pull["fork_sha"] = self._merge_base(repo, repo["branches"][body["base"]], pull["head_sha"]) or ""
        pull["updated_at"] = timestamp()
        if body.get("state") == "closed" and pull["state"] == "open":
            self._close(pull)
            self._announce_pull("closed", pull, self._wh_user(self._bot_login(), "Bot"))
        elif body.get("state") == "open" and pull["state"] == "closed":
            pull.update(state="open", closed_at=None)
        template = _raw_example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200)
        return Reply(200, self._pull_object(pull, template))

    def _list_pull_files(self, call: Call) -> Reply:
        pull = self._pull_from(call)
        repo = self._repos[pull["repo"]]
        return self._page(call, self._file_changes(repo, self._pull_fork(pull), pull["head_sha"])[:3000])

    def _list_pull_commits(self, call: Call) -> Reply:
        """The pull request's commits, oldest first (at most 250, as GitHub lists them)."""
        pull = self._pull_from(call)
        repo = self._repos[pull["repo"]]
        known = set(self._ancestors(repo, self._pull_fork(pull)))
        shas = [sha for sha in reversed(self._ancestors(repo, pull["head_sha"])) if sha not in known][:250]
        template = _raw_example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", 200)[0]
        return self._page(call, [self._commit_object(repo, sha, template) for sha in shas])

    def _pull_fork(self, pull: dict[str, Any]) -> str:
        """Where the pull request's changes start from: where its head left its base."""
        repo = self._repos[pull["repo"]]
        base_sha = repo["branches"].get(pull["base_ref"], self._head(repo))
        if pull.get("merged") and pull.get("fork_sha"):
            return pull["fork_sha"]
        return self._merge_base(repo, base_sha, pull["head_sha"]) or pull.get("fork_sha") or base_sha

    def _team_object(self, org: str, slug: str) -> dict[str, Any]:
        team = self._teams[(org, slug)]
        base = self._base()
        api = f"{base}/organizations/{self._user_id(org)}/team/{team['id']}"
        return {"id": team["id"], "node_id": node_id("Team", team["id"]), "name": slug, "slug": slug,
                "description": None, "privacy": "closed", "notification_setting": "notifications_enabled",
                "permission": "pull", "url": api, "html_url": f"{base}/orgs/{org}/teams/{slug}",
                "members_url": f"{api}/members{{/member}}", "repositories_url": f"{api}/repos",
                "parent": None, "type": "organization", "organization_id": self._user_id(org)}

    def _wh_team(self, org: str, slug: str) -> dict[str, Any]:
        team = self._team_object(org, slug)
        for rest_only in ("type", "organization_id"):
            team.pop(rest_only)
        return team

    def _request_reviewers(self, call: Call) -> Reply:
        """Review requests the App makes, to people and to teams: `pull_request.review_requested`
        for each new one."""
        pull = self._pull_from(call)
        body = call.body or {}
        reviewers = list(dict.fromkeys(body.get("reviewers") or []))
        teams = list(dict.fromkeys(body.get("team_reviewers") or []))
        if pull["author"] in reviewers:
            raise Refused(422, "Review cannot be requested from pull request author.")
        full_name = pull["repo"]
        org = full_name.split("/")[0]
        if any(self._roles.get((full_name, login), "none") == "none" for login in reviewers) or any(
                (org, slug) not in self._teams for slug in teams):
            raise Refused(422, "Reviews may only be requested from collaborators. One or more of the users "
                               f"or teams you specified is not a collaborator of the {full_name} repository.")
        sender = self._wh_user(self._bot_login(), "Bot")
        for login in reviewers:
            if login not in pull["requested_reviewers"]:
                pull["requested_reviewers"].append(login)
                pull["updated_at"] = timestamp()
                self._announce_pull("review_requested", pull, sender, requested_reviewer=self._wh_user(login))
        for slug in teams:
            requested = pull.setdefault("requested_teams", [])
            if slug not in requested:
                requested.append(slug)
                pull["updated_at"] = timestamp()
                self._announce_pull("review_requested", pull, sender, requested_team=self._wh_team(org, slug))
        template = _raw_example("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers", 201)
        return Reply(201, self._pull_object(pull, template))

    def _create_review(self, call: Call) -> Reply:
        """A review by the App's bot: GitHub refuses it approving or requesting changes on its own
        pull request. Announces `pull_request_review.submitted` (not for a pending review)."""
        pull = self._pull_from(call)
        body = call.body or {}
        event = body.get("event")
        bot = self._bot_login()
        if pull["author"] == bot and event in ("APPROVE", "REQUEST_CHANGES"):
            refusal = ("Can not approve your own pull request" if event == "APPROVE"
                       else "Can not request changes on your own pull request")
            raise Refused(422, "Unprocessable Entity", [refusal])
        if event in ("REQUEST_CHANGES", "COMMENT") and not body.get("body") and not body.get("comments"):
            raise Refused(422, "Unprocessable Entity",
                          [f"Body is required when using {event} for the event parameter."])
        reviews = self._reviews[(pull["repo"], pull["number"])]
        if event is None and any(r["login"] == bot and r["state"] == "PENDING" for r in reviews):
            raise Refused(422, "Unprocessable Entity",
                          ["User can only have one pending review per pull request"])
        commit_id = body.get("commit_id") or pull["head_sha"]
        if commit_id not in self._repos[pull["repo"]]["commits"]:
            raise Refused(422, "Unprocessable Entity", [f"No commit found for SHA: {commit_id}"])
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}.get(
            event or "", "PENDING")
        review = self._new_review(pull, bot, state, commit_id, "Bot", body.get("body") or "")
        review["comments"] = list(body.get("comments") or [])
        if state == "PENDING":
            review["submitted_at"] = None
            return Reply(200, self._review_object(pull, review))
        if bot in pull["requested_reviewers"]:
            pull["requested_reviewers"].remove(bot)
        return Reply(200, self._announce_review(pull, review, self._wh_user(bot, "Bot")))

    def _announce_review(self, pull: dict[str, Any], review: dict[str, Any],
                         sender: dict[str, Any]) -> dict[str, Any]:
        """`pull_request_review.submitted`; returns the review's REST answer."""
        repo = pull["repo"]
        example = self._example("pull_request_review", "submitted", repo)
        rest = self._review_object(pull, review)
        wh_review = adapt(rest, example["review"])
        wh_review["state"] = review["state"].lower()  # webhooks spell review states in lower case
        self._announce("pull_request_review", {
            "action": "submitted", "review": wh_review,
            "pull_request": self._wh_pull(pull, example["pull_request"]),
            "repository": self._wh_repository(repo, example["repository"]), "sender": sender}, repo)
        return rest

    def _update_review(self, call: Call) -> Reply:
        """The body of a review, changed in place (its state stays); not announced, as GitHub's
        `pull_request_review.edited` schema is not vendored."""
        pull = self._pull_from(call)
        wanted = self._number(call, "review_id")
        review = next((r for r in self._reviews[(pull["repo"], pull["number"])] if r["id"] == wanted), None)
        if review is None:
            raise Refused(404, "Not Found")
        if review["login"] != self._bot_login():
            raise Refused(403, "Resource not accessible by integration")
        review["body"] = call.body["body"]
        return Reply(200, self._review_object(pull, review))

    # ---- check suites ------------------------------------------------------------------------

    def _list_check_suites(self, call: Call) -> Reply:
        repo = self._repo_from(call)
        sha = self._resolve(repo, call.params["ref"])
        if sha is None:
            raise Refused(422, f"No commit found for SHA: {call.params['ref']}")
        suites = sorted((s for s in self._suites.values()
                         if s["repo"] == repo["full_name"] and s["head_sha"] == sha), key=lambda s: s["id"])
        if "app_id" in call.query:
            suites = [s for s in suites if str(self._suite_app(s)["id"]) == call.query["app_id"]]
        if "check_name" in call.query:
            names = {s["id"] for s in suites for r in self.check_runs.values()
                     if r["suite_id"] == s["id"] and r["name"] == call.query["check_name"]}
            suites = [s for s in suites if s["id"] in names]
        reply = self._page(call, [self._check_suite_object(s) for s in suites])
        reply.body = {"total_count": len(suites), "check_suites": reply.body}
        return reply

    def _suite_app(self, suite: dict[str, Any]) -> dict[str, Any]:
        return self._app() if suite["app"] == "app" else self._ci_app()

    def _check_suite_object(self, suite: dict[str, Any]) -> dict[str, Any]:
        listing = _raw_example("GET", "/repos/{owner}/{repo}/commits/{ref}/check-suites", 200)
        template = listing["check_suites"][0]
        answer = self._rebase(template)
        repo = self._repos[suite["repo"]]
        api = f"{self._base()}/repos/{suite['repo']}/check-suites/{suite['id']}"
        commit = repo["commits"].get(suite["head_sha"]) or self._foreign_commit()
        author = commit["author"] or self.owner
        person = {"name": author, "email": commit.get("author_email") or self._email(author)}
        runs = [run for run in self.check_runs.values() if run["suite_id"] == suite["id"]]
        answer.update(
            id=suite["id"], node_id=node_id("CheckSuite", suite["id"]), head_branch=suite["head_branch"],
            head_sha=suite["head_sha"], status=suite["status"], conclusion=suite["conclusion"], url=api,
            before=suite["before"], after=suite["head_sha"],
            pull_requests=[self._pull_minimal(p) for p in self._open_pulls(suite["repo"])
                           if p["head_sha"] == suite["head_sha"]],
            app=self._suite_app(suite),
            repository=self._repository_object(suite["repo"], template["repository"]),
            created_at=suite["created_at"], updated_at=suite["updated_at"], latest_check_runs_count=len(runs),
            check_runs_url=f"{api}/check-runs", rerequestable=True, runs_rerequestable=True,
            head_commit={"id": suite["head_sha"], "tree_id": commit.get("tree_id") or suite["head_sha"],
                         "message": commit["message"], "timestamp": commit["timestamp"], "author": person,
                         "committer": dict(person)})
        return answer

    # ---- commit statuses ----------------------------------------------------------------------

    @_changes
    def set_status(self, repo: str, sha: str, state: str, context: str = "ci", description: str = "",
                   target_url: str | None = None, creator: str = "octocat") -> dict[str, Any]:
        """Another CI reports a commit status on `sha` (a sha or a branch): `status`."""
        record = self._repo(repo)
        resolved = self._resolve(record, sha)
        if resolved is None:
            raise KeyError(f"no commit or branch {sha} in {repo}")
        if state not in STATUS_STATES:
            raise ValueError(f"a commit status is one of {list(STATUS_STATES)}, got {state!r}")
        return self._status_object(self._new_status(repo, resolved, state, context, description or None,
                                                    target_url, creator, "User"))

    def _new_status(self, repo: str, sha: str, state: str, context: str, description: str | None,
                    target_url: str | None, creator: str, user_type: str) -> dict[str, Any]:
        status = {"id": self._new_id(), "repo": repo, "sha": sha, "state": state, "context": context,
                  "description": description, "target_url": target_url, "creator": creator,
                  "user_type": user_type, "created_at": timestamp(), "updated_at": timestamp()}
        self.statuses.append(status)
        self._announce_status(status)
        return status

    def _create_status(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        sha = call.params["sha"]
        if sha not in self._repo(full_name)["commits"]:
            raise Refused(422, f"No commit found for SHA: {sha}")
        body = call.body
        status = self._new_status(full_name, sha, body["state"], body.get("context") or "default",
                                  body.get("description"), body.get("target_url"), self._bot_login(), "Bot")
        return Reply(201, self._status_object(status))

    def _statuses_for(self, call: Call) -> tuple[str, str, list[dict[str, Any]]]:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        sha = self._resolve(self._repo(full_name), call.params["ref"])
        if sha is None:
            raise Refused(404, "Not Found")
        found = [s for s in self.statuses if s["repo"] == full_name and s["sha"] == sha]
        return full_name, sha, sorted(found, key=lambda s: s["id"], reverse=True)

    def _list_statuses(self, call: Call) -> Reply:
        _, _, found = self._statuses_for(call)
        return self._page(call, [self._status_object(s) for s in found])

    def _combined_status(self, call: Call) -> Reply:
        full_name, sha, found = self._statuses_for(call)
        latest: dict[str, dict[str, Any]] = {}
        for status in found:
            latest.setdefault(status["context"], status)
        states = [s["state"] for s in latest.values()]
        combined = ("failure" if {"error", "failure"} & set(states) else
                    "pending" if not states or "pending" in states else "success")
        answer = self._rebase(_raw_example("GET", "/repos/{owner}/{repo}/commits/{ref}/status", 200))
        template = answer["statuses"][0]
        page = self._page(call, list(latest.values()))
        answer.update(state=combined, sha=sha, total_count=len(latest),
                      statuses=[self._simple_status(s, template) for s in page.body],
                      commit_url=f"{self._base()}/repos/{full_name}/commits/{sha}",
                      url=f"{self._base()}/repos/{full_name}/commits/{sha}/status",
                      repository=self._repository_object(full_name, answer["repository"]))
        return Reply(200, answer, page.headers)

    def _status_object(self, status: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("POST", "/repos/{owner}/{repo}/statuses/{sha}", 201))
        answer = self._simple_status(status, answer)
        answer["creator"] = self._user(status["creator"], status["user_type"])
        return answer

    def _simple_status(self, status: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        answer = dict(template)
        creator = self._user(status["creator"], status["user_type"])
        answer.update(id=status["id"], node_id=node_id("StatusContext", status["id"]), state=status["state"],
                      context=status["context"], description=status["description"],
                      target_url=status["target_url"], avatar_url=creator["avatar_url"],
                      url=f"{self._base()}/repos/{status['repo']}/statuses/{status['sha']}",
                      created_at=status["created_at"], updated_at=status["updated_at"])
        if "required" in answer:
            answer["required"] = False
        return answer

    def _announce_status(self, status: dict[str, Any]) -> None:
        repo = status["repo"]
        record = self._repos[repo]
        example = self._example("status", None, repo)
        sha = status["sha"]
        commit = example["commit"]
        api = f"{self._base()}/repos/{repo}/commits/{sha}"
        commit.update(sha=sha, node_id=node_id("Commit", record["id"]), url=api,
                      html_url=f"{self._base()}/{repo}/commit/{sha}", comments_url=f"{api}/comments",
                      author=None, committer=None, parents=[])
        facts = record["commits"].get(sha) or self._foreign_commit()
        commit["commit"]["message"] = facts["message"]
        commit["commit"]["url"] = f"{self._base()}/repos/{repo}/git/commits/{sha}"
        commit["commit"]["tree"]["sha"] = facts.get("tree_id") or sha
        branches = [{"name": name, "commit": {"sha": head, "url": api}, "protected": name in
                     self._protection.get(repo, {})} for name, head in sorted(record["branches"].items())
                    if head == sha]
        creator = self._wh_user(status["creator"], status["user_type"])
        payload = set_present(example, id=status["id"], sha=sha, name=repo, target_url=status["target_url"],
                              context=status["context"], description=status["description"],
                              state=status["state"], commit=commit, branches=branches,
                              created_at=status["created_at"], updated_at=status["updated_at"],
                              avatar_url=creator["avatar_url"], sender=creator,
                              repository=self._wh_repository(repo, example["repository"]))
        payload.pop("installation", None)
        self._announce("status", payload, repo)

    # ---- workflow runs, their jobs and artifacts ------------------------------------------------

    @_changes
    def run_workflow(self, repo: str, name: str, head_sha: str, branch: str | None = None,
                     conclusion: str = "success", artifacts: dict[str, Any] | None = None,
                     event: str = "push", actor: str = "octocat") -> int:
        """GitHub Actions runs workflow `name` on `head_sha` (a sha or a branch) and finishes it:
        `workflow_run` requested, in_progress, completed, with its check run and check suite
        completed in between. `artifacts` maps a name to its zip's bytes (base64 text over the
        control API) or to the files to zip ({filename: text}). Returns the run's id."""
        return self._run_workflow(repo, name, head_sha, branch, conclusion, artifacts, event, actor)

    @_changes
    def add_workflow_run(self, repo: str, name: str, head_sha: str, branch: str | None = None,
                         conclusion: str = "success", artifacts: dict[str, Any] | None = None,
                         event: str = "push", actor: str = "octocat") -> int:
        """A finished workflow run, as if it had always been there (nothing is announced)."""
        self._quiet = True
        try:
            return self._run_workflow(repo, name, head_sha, branch, conclusion, artifacts, event, actor)
        finally:
            self._quiet = False

    def _run_workflow(self, repo: str, name: str, head_sha: str, branch: str | None, conclusion: str,
                      artifacts: dict[str, Any] | None, event: str, actor: str) -> int:
        if conclusion not in RUN_CONCLUSIONS:
            raise ValueError(f"a run concludes {list(RUN_CONCLUSIONS)}, got {conclusion!r}")
        record = self._repo(repo)
        sha = self._resolve(record, head_sha)
        if sha is None:
            raise KeyError(f"no commit or branch {head_sha} in {repo}")
        if branch is None:
            branch = head_sha if head_sha in record["branches"] else self._branch_of(repo, sha)
        run = self._new_workflow_run(repo, name, sha, branch, event, actor)
        self._add_artifacts(run, artifacts)
        sender = self._wh_user(actor)
        self._start_attempt(run, sender)
        self._advance_run(run, sender)
        self._finish_run(run, conclusion, sender)
        return run["id"]

    def _add_artifacts(self, run: dict[str, Any], artifacts: dict[str, Any] | None) -> None:
        """A run's artifacts: each a zip's bytes, its base64 text, or {filename: text} to zip."""
        for artifact_name, data in (artifacts or {}).items():
            if isinstance(data, dict):
                data = zip_files(data)
            elif isinstance(data, str):
                data = base64.b64decode(data)
            elif not isinstance(data, bytes):
                raise ValueError(f"artifact {artifact_name!r} is zip bytes, base64 text or "
                                 "{filename: text}")
            self._artifacts[self._new_id()] = {
                "repo": run["repo"], "run_id": run["id"], "name": artifact_name, "created_at": timestamp(),
                "data": base64.b64encode(data).decode(), "digest": hashlib.sha256(data).hexdigest()}

    @_changes
    def complete_workflow_run(self, repo: str, run_id: int, conclusion: str = "success",
                              push: dict[str, Any] | None = None,
                              artifacts: dict[str, Any] | None = None) -> dict[str, Any]:
        """A queued or running run (a dispatched one, a re-run not scripted) finishes: `workflow_run`
        in_progress (when it was queued), then completed. With `push` ({"branch", "files": {path:
        text or None}, "message"}) the run first pushes a commit as `github-actions[bot]` (the branch
        made from the default branch when new), announced as `push` (and `pull_request.synchronize`);
        `artifacts` are uploaded as `run_workflow` takes them."""
        if conclusion not in RUN_CONCLUSIONS:
            raise ValueError(f"a run concludes {list(RUN_CONCLUSIONS)}, got {conclusion!r}")
        run = self._workflow_run(repo, int(run_id))
        if run["status"] == "completed":
            raise ValueError(f"run {run_id} of {repo} has completed already")
        if push is not None:
            if not isinstance(push, dict) or not isinstance(push.get("branch"), str) or not isinstance(
                    push.get("files", {}), dict):
                raise ValueError('push is {"branch": "...", "files": {path: text or null}, "message": "..."}')
            self.push_commit(repo, push["branch"], dict(push.get("files") or {}),
                             message=push.get("message", ""), author=f"{CI_APP['slug']}[bot]")
        self._add_artifacts(run, artifacts)
        sender = self._wh_user(f"{CI_APP['slug']}[bot]", "Bot")
        if run["status"] == "queued":
            self._advance_run(run, sender)
        self._finish_run(run, conclusion, sender)
        return self._workflow_run_object(run)

    @_changes
    def script_rerun(self, repo: str, run_id: int, conclusion: str) -> list[str]:
        """The next re-run of the run ends with `conclusion` (call again for the ones after it)."""
        if conclusion not in RUN_CONCLUSIONS:
            raise ValueError(f"a run concludes {list(RUN_CONCLUSIONS)}, got {conclusion!r}")
        self._workflow_run(repo, int(run_id))
        self._reruns.setdefault(int(run_id), []).append(conclusion)
        return list(self._reruns[int(run_id)])

    def _workflow_id(self, repo: str, file: str) -> int:
        workflows = self._workflows.setdefault(repo, {})
        if file not in workflows:
            workflows[file] = self._new_id()
        return workflows[file]

    def _new_workflow_run(self, repo: str, name: str, sha: str, branch: str | None, event: str,
                          actor: str) -> dict[str, Any]:
        file = name if name.endswith((".yml", ".yaml")) else f"{name}.yml"
        workflow_id = self._workflow_id(repo, file)
        number = 1 + max((r["run_number"] for r in self.workflow_runs.values()
                          if r["repo"] == repo and r["workflow_id"] == workflow_id), default=0)
        self._repo(repo)["commits"].setdefault(sha, self._foreign_commit())
        run = {"id": self._new_id(), "repo": repo, "name": file.rsplit(".", 1)[0], "file": file,
               "workflow_id": workflow_id, "head_sha": sha, "head_branch": branch, "event": event,
               "status": "queued", "conclusion": None, "run_number": number, "run_attempt": 0,
               "created_at": timestamp(), "updated_at": timestamp(), "run_started_at": timestamp(),
               "actor": actor, "triggering_actor": actor, "inputs": {}, "jobs": []}
        self.workflow_runs[run["id"]] = run
        suite = self._suite(repo, sha, f"actions:{run['id']}")
        suite["head_branch"] = branch
        run["suite_id"] = suite["id"]
        return run

    def _start_attempt(self, run: dict[str, Any], sender: dict[str, Any]) -> None:
        run["run_attempt"] += 1
        run.update(status="queued", conclusion=None, updated_at=timestamp(), run_started_at=timestamp())
        job = self._new_check_run(run["repo"], "build", run["head_sha"], f"actions:{run['id']}")
        job["attempt"] = run["run_attempt"]
        run["jobs"].append(job["id"])
        self._announce_workflow_run("requested", run, sender)

    def _advance_run(self, run: dict[str, Any], sender: dict[str, Any]) -> None:
        run.update(status="in_progress", updated_at=timestamp())
        self._apply_check_run(self.check_runs[run["jobs"][-1]], {"status": "in_progress"})
        self._announce_workflow_run("in_progress", run, sender)

    def _finish_run(self, run: dict[str, Any], conclusion: str, sender: dict[str, Any]) -> None:
        job = self.check_runs[run["jobs"][-1]]
        self._apply_check_run(job, {"conclusion": conclusion})
        ci_bot = self._wh_user(f"{CI_APP['slug']}[bot]", "Bot")
        self._announce_check_run("completed", job, ci_bot)
        self._settle_suite(self._suites[run["suite_id"]], ci_bot)
        run.update(status="completed", conclusion=conclusion, updated_at=timestamp())
        self._announce_workflow_run("completed", run, sender)

    def _workflow_run(self, repo: str, run_id: int) -> dict[str, Any]:
        run = self.workflow_runs.get(run_id)
        if run is None or run["repo"] != repo:
            raise KeyError(f"no workflow run {run_id} in {repo}")
        return run

    def _workflow_run_from(self, call: Call) -> dict[str, Any]:
        run = self.workflow_runs.get(self._number(call, "run_id"))
        if run is None or run["repo"] != f"{call.params['owner']}/{call.params['repo']}":
            raise Refused(404, "Not Found")
        return run

    def _list_workflow_runs(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        query = call.query
        runs = [r for r in self.workflow_runs.values() if r["repo"] == full_name]
        for key, field_ in (("branch", "head_branch"), ("head_sha", "head_sha"), ("event", "event"),
                            ("actor", "actor")):
            if key in query:
                runs = [r for r in runs if r[field_] == query[key]]
        if "status" in query:
            runs = [r for r in runs if query["status"] in (r["status"], r["conclusion"])]
        if "check_suite_id" in query:
            runs = [r for r in runs if str(r["suite_id"]) == query["check_suite_id"]]
        if "created" in query:
            runs = [r for r in runs if _date_matches(query["created"], r["created_at"])]
        runs.sort(key=lambda r: r["id"], reverse=True)
        exclude = query.get("exclude_pull_requests") == "true"
        reply = self._page(call, [self._workflow_run_object(r, exclude) for r in runs])
        reply.body = {"total_count": len(runs), "workflow_runs": reply.body}
        return reply

    def _get_workflow_run(self, call: Call) -> Reply:
        exclude = call.query.get("exclude_pull_requests") == "true"
        return Reply(200, self._workflow_run_object(self._workflow_run_from(call), exclude))

    def _get_workflow_run_attempt(self, call: Call) -> Reply:
        """The run as it was on one attempt: its number, and its job's status and conclusion then."""
        run = self._workflow_run_from(call)
        attempt = self._number(call, "attempt_number")
        jobs = [self.check_runs[id_] for id_ in run["jobs"] if self.check_runs[id_]["attempt"] == attempt]
        if not jobs:
            raise Refused(404, "Not Found")
        exclude = call.query.get("exclude_pull_requests") == "true"
        body = self._workflow_run_object(run, exclude)
        if attempt != run["run_attempt"]:
            job = jobs[-1]
            body.update(run_attempt=attempt, status=job["status"], conclusion=job.get("conclusion"))
        return Reply(200, body)

    def _rerun(self, call: Call) -> Reply:
        return self._rerun_run(self._workflow_run_from(call), failed_only=False)

    def _rerun_failed(self, call: Call) -> Reply:
        return self._rerun_run(self._workflow_run_from(call), failed_only=True)

    def _rerun_run(self, run: dict[str, Any], failed_only: bool) -> Reply:
        if run["status"] != "completed":
            raise Refused(403, "This workflow is already running")
        if failed_only and run["conclusion"] not in FAILED:
            raise Refused(403, "There are no failed jobs to re-run")
        bot = self._wh_user(self._bot_login(), "Bot")
        run["triggering_actor"] = self._bot_login()
        self._start_attempt(run, bot)
        scripted = self._reruns.get(run["id"])
        if scripted:
            self._advance_run(run, bot)
            self._finish_run(run, scripted.pop(0), bot)
        return Reply(201, {})

    def _dispatch(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        record = self._repo(full_name)
        wanted = call.params["workflow_id"]
        workflows = self._workflows.get(full_name, {})
        if wanted.isdigit():
            file = next((f for f, id_ in workflows.items() if str(id_) == wanted), None)
        else:
            file = wanted if wanted.endswith((".yml", ".yaml")) else None
        if file is None:
            raise Refused(404, "Not Found")
        ref = call.body["ref"]
        sha = self._resolve(record, ref)
        if sha is None:
            raise Refused(422, f"No ref found for: {ref}")
        branch = ref.removeprefix("refs/heads/") if ref.removeprefix("refs/heads/") in record["branches"] \
            else self._branch_of(full_name, sha)
        run = self._new_workflow_run(full_name, file, sha, branch, "workflow_dispatch", self._bot_login())
        run["inputs"] = dict(call.body.get("inputs") or {})
        self.dispatches.append({"repo": full_name, "workflow": file, "ref": ref, "inputs": run["inputs"],
                                "run_id": run["id"]})
        self._start_attempt(run, self._wh_user(self._bot_login(), "Bot"))
        if call.body.get("return_run_details"):
            api = f"{self._base()}/repos/{full_name}/actions/runs/{run['id']}"
            return Reply(200, {"workflow_run_id": run["id"], "run_url": api,
                               "html_url": f"{self._base()}/{full_name}/actions/runs/{run['id']}"})
        return Reply(204)

    def _list_jobs(self, call: Call) -> Reply:
        run = self._workflow_run_from(call)
        jobs = [self.check_runs[id_] for id_ in run["jobs"]]
        if call.query.get("filter", "latest") == "latest":
            jobs = [job for job in jobs if job["attempt"] == run["run_attempt"]]
        template = _raw_example("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", 200)["jobs"][0]
        reply = self._page(call, [self._job_object(run, job, template) for job in reversed(jobs)])
        reply.body = {"total_count": len(jobs), "jobs": reply.body}
        return reply

    def _list_artifacts(self, call: Call) -> Reply:
        run = self._workflow_run_from(call)
        found = [(id_, a) for id_, a in sorted(self._artifacts.items()) if a["run_id"] == run["id"]]
        if "name" in call.query:
            found = [(id_, a) for id_, a in found if a["name"] == call.query["name"]]
        if call.query.get("direction", "desc") == "desc":
            found.reverse()
        reply = self._page(call, [self._artifact_object(id_, a, run) for id_, a in found])
        reply.body = {"total_count": len(found), "artifacts": reply.body}
        return reply

    def _download_artifact(self, call: Call) -> Reply:
        artifact_id = self._number(call, "artifact_id")
        artifact = self._artifacts.get(artifact_id)
        if (artifact is None or artifact["repo"] != f"{call.params['owner']}/{call.params['repo']}"
                or call.params["archive_format"] != "zip"):
            raise Refused(404, "Not Found")
        return Reply(302, None, {"Location": f"{self._base()}/_sandbox/artifacts/{artifact_id}.zip"})

    def artifact_bytes(self, artifact_id: int) -> bytes:
        with self._lock:
            artifact = self._artifacts.get(artifact_id)
            if artifact is None:
                raise KeyError(f"no artifact {artifact_id}")
            return base64.b64decode(artifact["data"])

    def _workflow_run_object(self, run: dict[str, Any], exclude_pulls: bool = False) -> dict[str, Any]:
        answer = self._rebase(_raw_example("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", 200))
        base = self._base()
        repo = run["repo"]
        api = f"{base}/repos/{repo}/actions/runs/{run['id']}"
        repository = self._repository_object(repo, answer["repository"])
        commit = self._repos[repo]["commits"].get(run["head_sha"]) or self._foreign_commit()
        author = commit["author"] or self.owner
        person = {"name": author, "email": self._email(author)}
        attempt = run["run_attempt"]
        answer.update(
            id=run["id"], name=run["name"], node_id=node_id("WorkflowRun", run["id"]),
            head_branch=run["head_branch"], head_sha=run["head_sha"],
            path=f".github/workflows/{run['file']}@{run['head_branch'] or run['head_sha']}",
            display_title=(commit["message"] or run["name"]).splitlines()[0], run_number=run["run_number"],
            run_attempt=attempt, event=run["event"], status=run["status"], conclusion=run["conclusion"],
            workflow_id=run["workflow_id"], check_suite_id=run["suite_id"],
            check_suite_node_id=node_id("CheckSuite", run["suite_id"]),
            check_suite_url=f"{base}/repos/{repo}/check-suites/{run['suite_id']}",
            url=api, html_url=f"{base}/{repo}/actions/runs/{run['id']}", jobs_url=f"{api}/jobs",
            logs_url=f"{api}/logs", artifacts_url=f"{api}/artifacts", cancel_url=f"{api}/cancel",
            rerun_url=f"{api}/rerun", previous_attempt_url=f"{api}/attempts/{attempt - 1}" if attempt > 1
            else None, workflow_url=f"{base}/repos/{repo}/actions/workflows/{run['workflow_id']}",
            pull_requests=[] if exclude_pulls else [self._pull_minimal(p) for p in self._open_pulls(repo)
                                                    if p["head_sha"] == run["head_sha"]],
            created_at=run["created_at"], updated_at=run["updated_at"], run_started_at=run["run_started_at"],
            actor=self._user(run["actor"], self._kind(run["actor"])),
            triggering_actor=self._user(run["triggering_actor"], self._kind(run["triggering_actor"])),
            head_commit={"id": run["head_sha"], "tree_id": commit.get("tree_id") or run["head_sha"],
                         "message": commit["message"], "timestamp": commit["timestamp"], "author": person,
                         "committer": dict(person)},
            repository=repository, head_repository=dict(repository), referenced_workflows=[])
        return answer

    def _job_object(self, run: dict[str, Any], job: dict[str, Any],
                    template: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(json.loads(json.dumps(template)))
        base = self._base()
        repo = run["repo"]
        step = dict(answer["steps"][0])
        step.update(name="Run the workflow", number=1, status=job["status"], conclusion=job["conclusion"],
                    started_at=job["started_at"], completed_at=job["completed_at"])
        answer.update(
            id=job["id"], run_id=run["id"], run_attempt=job["attempt"],
            node_id=node_id("WorkflowJob", job["id"]),
            head_sha=run["head_sha"], head_branch=run["head_branch"], name=job["name"],
            workflow_name=run["name"], status=job["status"], conclusion=job["conclusion"],
            created_at=job["started_at"], started_at=job["started_at"], completed_at=job["completed_at"],
            url=f"{base}/repos/{repo}/actions/jobs/{job['id']}",
            html_url=f"{base}/{repo}/actions/runs/{run['id']}/job/{job['id']}",
            run_url=f"{base}/repos/{repo}/actions/runs/{run['id']}",
            check_run_url=f"{base}/repos/{repo}/check-runs/{job['id']}", steps=[step],
            labels=["ubuntu-latest"], runner_id=1, runner_name="GitHub Actions 1", runner_group_id=1,
            runner_group_name="GitHub Actions")
        return answer

    def _artifact_object(self, artifact_id: int, artifact: dict[str, Any],
                         run: dict[str, Any]) -> dict[str, Any]:
        template = _raw_example("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", 200)
        answer = self._rebase(template["artifacts"][0])
        api = f"{self._base()}/repos/{artifact['repo']}/actions/artifacts/{artifact_id}"
        created = datetime.strptime(artifact["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        repo_id = self._repos[artifact["repo"]]["id"]
        answer.update(id=artifact_id, node_id=node_id("Artifact", artifact_id), name=artifact["name"],
                      size_in_bytes=len(base64.b64decode(artifact["data"])), url=api,
                      archive_download_url=f"{api}/zip", expired=False, created_at=artifact["created_at"],
                      updated_at=artifact["created_at"], expires_at=timestamp(created + timedelta(days=90)),
                      digest=f"sha256:{artifact['digest']}",
                      workflow_run={"id": run["id"], "repository_id": repo_id, "head_repository_id": repo_id,
                                    "head_branch": run["head_branch"], "head_sha": run["head_sha"]})
        return answer

    def _announce_workflow_run(self, action: str, run: dict[str, Any], sender: dict[str, Any]) -> None:
        repo = run["repo"]
        example = self._example("workflow_run", action, repo)
        rest = self._workflow_run_object(run)
        wh_run = adapt({k: v for k, v in rest.items() if k not in ("repository", "head_repository")},
                       example["workflow_run"])
        for side in ("repository", "head_repository"):
            wh_run[side] = adapt(rest[side], example["workflow_run"][side])
        base = self._base()
        workflow = set_present(
            dict(example["workflow"]), id=run["workflow_id"], node_id=node_id("Workflow", run["workflow_id"]),
            name=run["name"], path=f".github/workflows/{run['file']}", state="active",
            url=f"{base}/repos/{repo}/actions/workflows/{run['workflow_id']}",
            html_url=f"{base}/{repo}/blob/{self._repos[repo]['default_branch']}/.github/workflows/{run['file']}",
            badge_url=f"{base}/{repo}/workflows/{quote(run['name'])}/badge.svg")
        self._announce("workflow_run", {"action": action, "workflow": workflow, "workflow_run": wh_run,
                                        "repository": self._wh_repository(repo, example["repository"]),
                                        "sender": sender}, repo)

    # ---- deployments ---------------------------------------------------------------------------

    def _deployment_from(self, call: Call) -> dict[str, Any]:
        deployment = self.deployments.get(self._number(call, "deployment_id"))
        if deployment is None or deployment["repo"] != f"{call.params['owner']}/{call.params['repo']}":
            raise Refused(404, "Not Found")
        return deployment

    def _create_deployment(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        body = call.body
        ref = body["ref"]
        sha = self._resolve(self._repo(full_name), ref)
        if sha is None:
            raise Refused(422, f"No ref found for: {ref}")
        latest: dict[str, str] = {}
        for status in sorted(self.statuses, key=lambda s: s["id"]):
            if status["repo"] == full_name and status["sha"] == sha:
                latest[status["context"]] = status["state"]
        required = body.get("required_contexts")
        contexts = list(latest) if required is None else list(required)
        failing = [c for c in contexts if latest.get(c) != "success"]
        if failing:
            raise Refused(409, f"Conflict: Commit status checks failed for {ref}.")
        environment = body.get("environment") or "production"
        deployment = {
            "id": self._new_id(), "repo": full_name, "sha": sha, "ref": ref,
            "task": body.get("task") or "deploy", "payload": body.get("payload", {}),
            "environment": environment, "original_environment": environment,
            "description": body.get("description", ""),
            "transient_environment": bool(body.get("transient_environment", False)),
            "production_environment": bool(body.get("production_environment", environment == "production")),
            "creator": self._bot_login(), "created_at": timestamp(), "updated_at": timestamp(),
            "statuses": []}
        self.deployments[deployment["id"]] = deployment
        example = self._example("deployment", "created", full_name)
        self._announce("deployment", {
            "action": "created", "deployment": self._wh_deployment(deployment, example["deployment"]),
            "workflow": None, "workflow_run": None,
            "repository": self._wh_repository(full_name, example["repository"]),
            "sender": self._wh_user(self._bot_login(), "Bot")}, full_name)
        return Reply(201, self._deployment_object(deployment))

    def _list_deployments(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        found = [d for d in self.deployments.values() if d["repo"] == full_name]
        for key in ("sha", "ref", "task", "environment"):
            if key in call.query:
                found = [d for d in found if d[key] == call.query[key]]
        found.sort(key=lambda d: d["id"], reverse=True)
        return self._page(call, [self._deployment_object(d) for d in found])

    def _get_deployment(self, call: Call) -> Reply:
        return Reply(200, self._deployment_object(self._deployment_from(call)))

    def _create_deployment_status(self, call: Call) -> Reply:
        deployment = self._deployment_from(call)
        body = call.body
        status = self._new_deployment_status(deployment, body["state"], body)
        if body["state"] == "success" and body.get("auto_inactive", True):
            for older in sorted(self.deployments.values(), key=lambda d: d["id"]):
                if (older["id"] < deployment["id"] and older["repo"] == deployment["repo"]
                        and older["environment"] == deployment["environment"]
                        and not older["transient_environment"] and not older["production_environment"]
                        and older["statuses"] and older["statuses"][-1]["state"] == "success"):
                    # GitHub's webhook schema has no inactive deployment_status: not announced.
                    self._new_deployment_status(older, "inactive", {}, announce=False)
        return Reply(201, self._deployment_status_object(deployment, status))

    def _new_deployment_status(self, deployment: dict[str, Any], state: str, body: dict[str, Any],
                               announce: bool = True) -> dict[str, Any]:
        if body.get("environment"):
            deployment["environment"] = body["environment"]
        status = {"id": self._new_id(), "state": state, "description": body.get("description", ""),
                  "environment": deployment["environment"], "target_url": body.get("target_url", ""),
                  "log_url": body.get("log_url") or body.get("target_url", ""),
                  "environment_url": body.get("environment_url", ""), "creator": self._bot_login(),
                  "created_at": timestamp(), "updated_at": timestamp()}
        deployment["statuses"].append(status)
        deployment["updated_at"] = timestamp()
        if not announce:
            return status
        repo = deployment["repo"]
        example = self._example("deployment_status", "created", repo)
        rest = self._deployment_status_object(deployment, status)
        wh_status = adapt(rest, example["deployment_status"])
        wh_status["performed_via_github_app"] = self._wh_app(self._app())
        for empty in ("environment_url", "log_url"):  # the webhook schema has no room for an empty url
            if not wh_status.get(empty):
                wh_status.pop(empty, None)
        self._announce("deployment_status", {
            "action": "created", "deployment_status": wh_status,
            "deployment": self._wh_deployment(deployment, example["deployment"]),
            "repository": self._wh_repository(repo, example["repository"]),
            "sender": self._wh_user(self._bot_login(), "Bot")}, repo)
        return status

    def _list_deployment_statuses(self, call: Call) -> Reply:
        deployment = self._deployment_from(call)
        return self._page(call, [self._deployment_status_object(deployment, s)
                                 for s in reversed(deployment["statuses"])])

    def _deployment_object(self, deployment: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("POST", "/repos/{owner}/{repo}/deployments", 201))
        base = self._base()
        api = f"{base}/repos/{deployment['repo']}/deployments/{deployment['id']}"
        answer.update({key: deployment[key] for key in (
            "id", "sha", "ref", "task", "payload", "environment", "original_environment", "description",
            "transient_environment", "production_environment", "created_at", "updated_at")})
        answer.update(node_id=node_id("Deployment", deployment["id"]), url=api,
                      statuses_url=f"{api}/statuses",
                      repository_url=f"{base}/repos/{deployment['repo']}",
                      creator=self._user(deployment["creator"], "Bot"), performed_via_github_app=self._app())
        return answer

    def _wh_deployment(self, deployment: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        answer = adapt(self._deployment_object(deployment), template)
        answer["performed_via_github_app"] = self._wh_app(self._app())
        return answer

    def _deployment_status_object(self, deployment: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example(
            "POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", 201))
        base = self._base()
        api = f"{base}/repos/{deployment['repo']}/deployments/{deployment['id']}"
        answer.update({key: status[key] for key in (
            "id", "state", "description", "environment", "target_url", "log_url", "environment_url",
            "created_at", "updated_at")})
        answer.update(node_id=node_id("DeploymentStatus", status["id"]), url=f"{api}/statuses/{status['id']}",
                      deployment_url=api, repository_url=f"{base}/repos/{deployment['repo']}",
                      creator=self._user(status["creator"], "Bot"), performed_via_github_app=self._app())
        return answer

    # ---- security alerts and branch protection ------------------------------------------------

    @_changes
    def add_dependabot_alert(self, repo: str, package: str, severity: str, state: str = "open",
                             ecosystem: str = "pip", manifest: str = "requirements.txt") -> int:
        """Dependabot finds a vulnerable dependency (`moderate` is GitHub's word for `medium`).
        Returns the alert's number."""
        self._repo(repo)
        severity = "medium" if severity == "moderate" else severity
        if severity not in ("low", "medium", "high", "critical"):
            raise ValueError(f"a Dependabot severity is low, medium (moderate), high or critical, "
                             f"got {severity!r}")
        if state not in ("open", "dismissed", "fixed", "auto_dismissed"):
            raise ValueError(f"a Dependabot alert is open, dismissed, fixed or auto_dismissed, got {state!r}")
        number = self._next_alert_number(repo)
        self._dependabot_alerts.append({"repo": repo, "number": number, "package": package,
                                        "severity": severity, "state": state, "ecosystem": ecosystem,
                                        "manifest": manifest, "created_at": timestamp()})
        return number

    @_changes
    def add_code_scanning_alert(self, repo: str, rule: str, severity: str, state: str = "open") -> int:
        """Code scanning finds `rule` broken: severity is a rule's (note, warning, error) or a
        security severity (low, medium, high, critical). Returns the alert's number."""
        self._repo(repo)
        if severity not in ("none", "note", "warning", "error", "low", "medium", "high", "critical"):
            raise ValueError(f"a code scanning severity is note, warning, error, low, medium, high or "
                             f"critical, got {severity!r}")
        if state not in ("open", "dismissed", "fixed"):
            raise ValueError(f"a code scanning alert is open, dismissed or fixed, got {state!r}")
        number = self._next_alert_number(repo)
        self._code_scanning_alerts.append({"repo": repo, "number": number, "rule": rule, "severity": severity,
                                           "state": state, "created_at": timestamp()})
        return number

    @_changes
    def protect_branch(self, repo: str, branch: str, required_checks: list[str]) -> dict[str, list[str]]:
        """Branch protection on `branch`, requiring these status checks."""
        record = self._repo(repo)
        if branch not in record["branches"]:
            raise KeyError(f"{repo} has no branch {branch}")
        self._protection.setdefault(repo, {})[branch] = list(required_checks)
        return dict(self._protection[repo])

    @_changes
    def add_branch_rule(self, repo: str, branch: str, type: str,
                        required_checks: list[str] | None = None) -> list[dict[str, Any]]:
        """A repository ruleset's rule of `type` (one of BRANCH_RULES) on `branch`, which need not exist
        (rulesets name branches, as GitHub's do): one ruleset per rule, active. `required_checks` are a
        `required_status_checks` rule's contexts. Returns the branch's rules. Rules are reported by
        `GET .../rules/branches/{branch}`, not enforced on pushes."""
        self._repo(repo)
        if type not in BRANCH_RULES:
            raise ValueError(f"a branch rule is one of {list(BRANCH_RULES)}, got {type!r}")
        rule: dict[str, Any] = {"type": type, "ruleset_source_type": "Repository", "ruleset_source": repo,
                                "ruleset_id": self._new_id()}
        if type == "pull_request":
            rule["parameters"] = {"dismiss_stale_reviews_on_push": False, "require_code_owner_review": False,
                                  "require_last_push_approval": False, "required_approving_review_count": 1,
                                  "required_review_thread_resolution": False,
                                  "allowed_merge_methods": ["merge", "squash", "rebase"]}
        elif type == "required_status_checks":
            rule["parameters"] = {"strict_required_status_checks_policy": False, "required_status_checks": [
                {"context": str(name)} for name in required_checks or ("ci",)]}
        elif type == "update":
            rule["parameters"] = {"update_allows_fetch_and_merge": False}
        self._rules.setdefault(repo, {}).setdefault(branch, []).append(rule)
        return [dict(item) for item in self._rules[repo][branch]]

    def _next_alert_number(self, repo: str) -> int:
        numbers = [a["number"] for a in self._dependabot_alerts + self._code_scanning_alerts
                   if a["repo"] == repo]
        return max(numbers, default=0) + 1

    def _list_dependabot_alerts(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        found = [a for a in self._dependabot_alerts if a["repo"] == full_name]
        for key in ("state", "severity"):
            if key in call.query:
                wanted = set(call.query[key].split(","))
                found = [a for a in found if a[key] in wanted]
        if "package" in call.query:
            found = [a for a in found if a["package"] in call.query["package"].split(",")]
        found.sort(key=lambda a: a["number"], reverse=call.query.get("direction", "desc") == "desc")
        per_page = min(max(int(call.query.get("per_page", 30)), 1), 100)
        after = call.query.get("after")
        if after:
            match = re.fullmatch(r"n(\d+)", after)
            if match is None:
                raise Refused(400, "Bad request: the cursor is not one this API gave")
            position = next((i for i, a in enumerate(found) if a["number"] == int(match.group(1))), None)
            found = found[position + 1:] if position is not None else []
        page = found[:per_page]
        headers = {}
        if len(found) > per_page:
            query = {**call.query, "after": f"n{page[-1]['number']}"}
            headers["Link"] = f'<{self._request_base}{call.path}?{urlencode(query)}>; rel="next"'
        return Reply(200, [self._dependabot_alert_object(a) for a in page], headers)

    def _dependabot_alert_object(self, alert: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("GET", "/repos/{owner}/{repo}/dependabot/alerts", 200)[0])
        base = self._base()
        package = {"ecosystem": alert["ecosystem"], "name": alert["package"]}
        answer["dependency"].update(package=package, manifest_path=alert["manifest"])
        answer["security_advisory"].update(severity=alert["severity"], summary=f"A vulnerability in "
                                           f"{alert['package']}")
        for vulnerability in answer["security_advisory"].get("vulnerabilities", []):
            vulnerability.update(package=dict(package), severity=alert["severity"])
        answer["security_vulnerability"].update(package=dict(package), severity=alert["severity"])
        open_ = alert["state"] == "open"
        answer.update(number=alert["number"], state=alert["state"], assignees=[],
                      url=f"{base}/repos/{alert['repo']}/dependabot/alerts/{alert['number']}",
                      html_url=f"{base}/{alert['repo']}/security/dependabot/{alert['number']}",
                      created_at=alert["created_at"], updated_at=alert["created_at"],
                      dismissed_at=None if alert["state"] != "dismissed" else alert["created_at"],
                      dismissed_by=None,
                      dismissed_reason="tolerable_risk" if alert["state"] == "dismissed" else None,
                      dismissed_comment=None,
                      fixed_at=alert["created_at"] if alert["state"] == "fixed" else None,
                      auto_dismissed_at=alert["created_at"] if alert["state"] == "auto_dismissed" else None)
        answer.pop("dismissal_request", None)
        if isinstance(answer["security_advisory"].get("epss"), dict):  # the example's percentile is text
            answer["security_advisory"]["epss"] = {"percentage": 0.00045, "percentile": 0.16001}
        if open_:
            answer["dismissed_by"] = None
        return answer

    def _list_code_scanning_alerts(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        found = [a for a in self._code_scanning_alerts if a["repo"] == full_name]
        if "state" in call.query:
            found = [a for a in found if a["state"] == call.query["state"]]
        found.sort(key=lambda a: a["number"], reverse=call.query.get("direction", "desc") == "desc")
        return self._page(call, [self._code_scanning_alert_object(a) for a in found])

    def _code_scanning_alert_object(self, alert: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("GET", "/repos/{owner}/{repo}/code-scanning/alerts", 200)[0])
        base = self._base()
        api = f"{base}/repos/{alert['repo']}/code-scanning/alerts/{alert['number']}"
        security = alert["severity"] in ("low", "medium", "high", "critical")
        answer["rule"].update(id=alert["rule"], name=alert["rule"], description=alert["rule"],
                              severity="error" if security else alert["severity"])
        if security or "security_severity_level" in answer["rule"]:
            answer["rule"]["security_severity_level"] = alert["severity"] if security else None
        record = self._repos[alert["repo"]]
        answer["most_recent_instance"].update(ref=f"refs/heads/{record['default_branch']}",
                                              commit_sha=self._head(record), state=alert["state"])
        answer.update(number=alert["number"], state=alert["state"], url=api, instances_url=f"{api}/instances",
                      html_url=f"{base}/{alert['repo']}/security/code-scanning/{alert['number']}",
                      created_at=alert["created_at"], dismissed_at=None, dismissed_by=None,
                      dismissed_reason=None, dismissed_comment=None,
                      fixed_at=alert["created_at"] if alert["state"] == "fixed" else None)
        return answer

    def _get_branch_protection(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        branch = call.params["branch"]
        if branch not in self._repo(full_name)["branches"]:
            raise Refused(404, "Branch not found")
        checks = self._protection.get(full_name, {}).get(branch)
        if checks is None:
            raise Refused(404, "Branch not protected")
        api = f"{self._base()}/repos/{full_name}/branches/{quote(branch)}/protection"
        disabled = {"enabled": False}
        return Reply(200, {
            "url": api,
            "required_status_checks": {"url": f"{api}/required_status_checks", "strict": True,
                                       "contexts": list(checks),
                                       "contexts_url": f"{api}/required_status_checks/contexts",
                                       "checks": [{"context": name, "app_id": None} for name in checks]},
            "enforce_admins": {"url": f"{api}/enforce_admins", "enabled": False},
            "required_linear_history": dict(disabled), "allow_force_pushes": dict(disabled),
            "allow_deletions": dict(disabled), "block_creations": dict(disabled),
            "required_conversation_resolution": dict(disabled), "lock_branch": dict(disabled),
            "allow_fork_syncing": dict(disabled)})

    def _get_branch_rules(self, call: Call) -> Reply:
        """Every active rule that applies to a branch of that name; the branch need not exist."""
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        rules = self._rules.get(full_name, {}).get(call.params["branch"], [])
        return self._page(call, [json.loads(json.dumps(rule)) for rule in rules])

    # ---- state helpers -----------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _user_id(self, login: str) -> int:
        if login not in self._users:
            self._users[login] = self._new_id()
        return self._users[login]

    def _bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    def _kind(self, login: str) -> str:
        if login == self.owner:
            return "Organization"
        return "Bot" if login.endswith("[bot]") else "User"

    @staticmethod
    def _foreign_commit() -> dict[str, Any]:
        """A commit the sandbox did not make: it shows the default branch's tree."""
        return {"files": None, "message": "", "author": "", "timestamp": timestamp(), "parents": [],
                "added": [], "modified": [], "removed": []}

    def _new_commit(self, repo: dict[str, Any], branch: str | None, files: dict[str, str], message: str,
                    author: str, parents: list[str] | None = None, modes: dict[str, str] | None = None,
                    sha: str | None = None, **people: str) -> str:
        """A commit of the whole tree `files`, moving `branch` (None moves nothing) to it. A file keeps
        its mode from the first parent unless `modes` says otherwise; `people` are the author's and
        committer's email and dates when they are not the sandbox's defaults."""
        if parents is None:
            parents = [repo["branches"][branch]] if branch in repo["branches"] else []
        before = self._tree(repo, parents[0]) if parents else {}
        if modes is None:
            modes = {path: mode for path, mode in self._modes(repo, parents[0]).items()
                     if path in files} if parents else {}
        modes = {path: mode for path, mode in modes.items() if mode != FILE_MODE}
        sha = sha or hashlib.sha1(json.dumps([repo["full_name"], parents, files, message, self._new_id()],
                                             sort_keys=True).encode(), usedforsecurity=False).hexdigest()
        record = {
            "files": dict(files), "message": message, "author": author,
            "timestamp": people.pop("author_date", None) or timestamp(),
            "parents": list(parents), "tree_id": tree_sha(files, modes),
            "added": sorted(set(files) - set(before)), "removed": sorted(set(before) - set(files)),
            "modified": sorted(p for p in set(files) & set(before) if files[p] != before[p]),
        }
        if modes:
            record["modes"] = dict(modes)
        record.update(people)
        repo["commits"].setdefault(sha, record)
        if branch is not None:
            repo["branches"][branch] = sha
            self._touch(repo, pushed=True)
        return sha

    def _head(self, repo: dict[str, Any]) -> str:
        return repo["branches"][repo["default_branch"]]

    def _tree(self, repo: dict[str, Any], sha: str) -> dict[str, str]:
        commit = repo["commits"].get(sha)
        if commit is None or commit["files"] is None:
            return repo["commits"][self._head(repo)]["files"]
        return commit["files"]

    def _modes(self, repo: dict[str, Any], sha: str) -> dict[str, str]:
        """The modes other than 100644 of the tree at `sha`."""
        commit = repo["commits"].get(sha)
        if commit is None or commit["files"] is None:
            commit = repo["commits"][self._head(repo)]
        return commit.get("modes", {})

    @staticmethod
    def _ancestors(repo: dict[str, Any], sha: str, limit: int = 10_000) -> list[str]:
        """`sha` and every commit it descends from that the repository knows, newest first."""
        found: list[str] = []
        seen: set[str] = set()
        pending = [sha]
        while pending and len(found) < limit:
            current = pending.pop(0)
            if current in seen or current not in repo["commits"]:
                continue
            seen.add(current)
            found.append(current)
            pending.extend(repo["commits"][current]["parents"])
        return found

    def _merge_base(self, repo: dict[str, Any], base: str, head: str) -> str | None:
        """The newest commit both descend from (git merge-base), None when they share none."""
        of_base = set(self._ancestors(repo, base))
        return next((sha for sha in self._ancestors(repo, head) if sha in of_base), None)

    def _repo(self, full_name: str) -> dict[str, Any]:
        repo = self._repos.get(full_name)
        if repo is None:
            raise KeyError(f"no repository {full_name}: add it with add_repo first")
        return repo

    def _resolve(self, repo: dict[str, Any], ref: str) -> str | None:
        ref = ref.removeprefix("refs/").removeprefix("heads/")
        if ref in repo["commits"]:
            return ref
        if ref in repo["branches"]:
            return repo["branches"][ref]
        if ref.removeprefix("tags/") in repo.get("tags", {}):
            return repo["tags"][ref.removeprefix("tags/")]
        for (full_name, _), issue in self._issues.items():
            if full_name == repo["full_name"] and issue["pull_request"] and issue["head_ref"] == ref:
                return issue["head_sha"]
        return None

    def _branch_of(self, repo: str, sha: str) -> str | None:
        record = self._repo(repo)
        for branch, head in record["branches"].items():
            if head == sha:
                return branch
        for pull in self._open_pulls(repo):
            if pull["head_sha"] == sha:
                return pull["head_ref"]
        return None

    def _open_pulls(self, repo: str) -> list[dict[str, Any]]:
        return [issue for (name, _), issue in sorted(self._issues.items())
                if name == repo and issue["pull_request"] and issue["state"] == "open"]

    def _next_number(self, repo: str) -> int:
        self._repo(repo)
        return max((number for name, number in self._issues if name == repo), default=0) + 1

    def _new_issue(self, repo: str, number: int, title: str, body: str, author: str,
                   labels: tuple[str, ...], state: str) -> dict[str, Any]:
        self._repo(repo)
        if (repo, number) in self._issues:
            raise ValueError(f"{repo}#{number} exists already")
        issue = {"repo": repo, "number": number, "id": self._new_id(), "title": title, "body": body,
                 "author": author, "labels": list(labels), "state": state, "locked": False,
                 "pull_request": False, "assignees": [], "requested_reviewers": [], "requested_teams": [],
                 "created_at": timestamp(), "updated_at": timestamp(),
                 "closed_at": timestamp() if state == "closed" else None,
                 "merged": False, "merge_commit_sha": None, "merged_by": None, "merged_at": None}
        self._issues[(repo, number)] = issue
        return issue

    @staticmethod
    def _close(issue: dict[str, Any]) -> None:
        issue.update(state="closed", closed_at=timestamp(), updated_at=timestamp(), state_reason="completed")

    def _new_review(self, pull: dict[str, Any], login: str, state: str, commit_id: str | None,
                    user_type: str, body: str) -> dict[str, Any]:
        review = {"id": self._new_id(), "repo": pull["repo"], "number": pull["number"], "login": login,
                  "state": state, "commit_id": commit_id or pull["head_sha"], "user_type": user_type,
                  "body": body, "submitted_at": timestamp()}
        self._reviews[(pull["repo"], pull["number"])].append(review)
        return review

    def _issue(self, repo: str, number: int) -> dict[str, Any]:
        issue = self._issues.get((repo, number))
        if issue is None:
            raise KeyError(f"no issue or pull request {repo}#{number}")
        return issue

    def _pull(self, repo: str, number: int) -> dict[str, Any]:
        issue = self._issues.get((repo, number))
        if issue is None or not issue["pull_request"]:
            raise KeyError(f"no pull request {repo}#{number}")
        return issue

    def _pull_from(self, call: Call) -> dict[str, Any]:
        issue = self._issues.get((f"{call.params['owner']}/{call.params['repo']}",
                                  self._number(call, "pull_number")))
        if issue is None or not issue["pull_request"]:
            raise Refused(404, "Not Found")
        return issue

    @staticmethod
    def _number(call: Call, name: str) -> int:
        if not call.params[name].isdigit():
            raise Refused(404, "Not Found")
        return int(call.params[name])

    def _issue_from(self, call: Call) -> dict[str, Any]:
        issue = self._issues.get((f"{call.params['owner']}/{call.params['repo']}",
                                  self._number(call, "issue_number")))
        if issue is None:
            raise Refused(404, "Not Found")
        return issue

    def _comment_from(self, call: Call) -> dict[str, Any]:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        wanted = self._number(call, "comment_id")
        for comment in self.comments:
            if comment["id"] == wanted and comment["repo"] == full_name:
                return comment
        raise Refused(404, "Not Found")

    def _check_run_from(self, call: Call) -> dict[str, Any]:
        run = self.check_runs.get(self._number(call, "check_run_id"))
        if run is None or run["repo"] != f"{call.params['owner']}/{call.params['repo']}":
            raise Refused(404, "Not Found")
        return run

    def _new_comment(self, issue: dict[str, Any], body: str, login: str, user_type: str) -> dict[str, Any]:
        comment = {"id": self._new_id(), "repo": issue["repo"], "issue_number": issue["number"],
                   "body": body, "user": login, "user_type": user_type,
                   "created_at": timestamp(), "updated_at": timestamp()}
        self.comments.append(comment)
        return comment

    def _delivery_record(self, delivery_id: int) -> dict[str, Any]:
        for record in self.deliveries:
            if record["id"] == delivery_id:
                return record
        raise KeyError(f"no delivery {delivery_id}")

    def _repo_summary(self, repo: dict[str, Any]) -> dict[str, Any]:
        name = repo["full_name"]
        issues = [i for (r, _), i in self._issues.items() if r == name]
        return {"full_name": name, "id": repo["id"], "default_branch": repo["default_branch"],
                "head_sha": self._head(repo), "branches": dict(sorted(repo["branches"].items())),
                "open_issues": sum(1 for i in issues if not i["pull_request"] and i["state"] == "open"),
                "open_pulls": sum(1 for i in issues if i["pull_request"] and i["state"] == "open")}

    # ---- webhooks ---------------------------------------------------------------------------

    def _announce(self, event: str, payload: dict[str, Any], repo: str | None) -> None:
        """Queue one webhook: the installation, and the organisation of a repository's event, added."""
        if not self.webhook_url or self._quiet:
            return
        payload.setdefault("installation", {"id": self.installation_id,
                                            "node_id": node_id("Installation", self.installation_id)})
        if repo is not None and repo.split("/")[0] == self.owner:
            payload["organization"] = self._wh_organization()
        repository_id = self._repos[repo]["id"] if repo else None
        self._sender.submit(webhooks.Outgoing.new(event, payload, self.installation_id, repository_id))

    def _record_delivery(self, outgoing: webhooks.Outgoing, attempt: dict[str, Any]) -> None:
        with self._lock:
            self._next_delivery_id += 1
            self.deliveries.append({
                "id": self._next_delivery_id, "guid": outgoing.guid, "delivered_at": timestamp(),
                "redelivery": outgoing.redelivery, "duration": attempt["duration"],
                "status": attempt["status"], "status_code": attempt["status_code"], "event": outgoing.event,
                "action": outgoing.action, "installation_id": outgoing.installation_id,
                "repository_id": outgoing.repository_id, "throttled_at": None, "url": attempt["url"],
                "request": {"headers": attempt["request_headers"], "payload": outgoing.payload},
                "response": {"headers": attempt["response_headers"], "payload": attempt["response_body"]},
            })
            del self.deliveries[:-MAX_DELIVERIES]
            self._log_delivery(self.deliveries[-1])

    def _example(self, event: str, action: str | None, repo: str | None = None) -> dict[str, Any]:
        """GitHub's example of the event, its urls pointing at the sandbox and at `repo`."""
        body = webhooks.example(event, action)
        example_repo = (body.get("repository") or {}).get("full_name")
        if repo and example_repo:
            body = retarget(body, example_repo, repo)
        return self._rebase(body)

    def _announce_issue(self, action: str, issue: dict[str, Any], sender: dict[str, Any],
                        **extra: Any) -> None:
        if issue["pull_request"]:
            self._announce_pull(action, issue, sender, **extra)
            return
        example = self._example("issues", action, issue["repo"])
        self._announce("issues", {"action": action, "issue": self._wh_issue(issue, example["issue"]), **extra,
                                  "repository": self._wh_repository(issue["repo"], example["repository"]),
                                  "sender": sender}, issue["repo"])

    def _announce_pull(self, action: str, pull: dict[str, Any], sender: dict[str, Any], **extra: Any) -> None:
        example = self._example("pull_request", action, pull["repo"])
        self._announce("pull_request", {
            "action": action, "number": pull["number"], **extra,
            "pull_request": self._wh_pull(pull, example["pull_request"]),
            "repository": self._wh_repository(pull["repo"], example["repository"]), "sender": sender,
        }, pull["repo"])

    def _announce_comment(self, action: str, comment: dict[str, Any], sender: dict[str, Any],
                          **extra: Any) -> None:
        repo = comment["repo"]
        issue = self._issues[(repo, comment["issue_number"])]
        example = self._example("issue_comment", action, repo)
        wh_comment = adapt(self._comment_object(comment), example["comment"])
        wh_comment["performed_via_github_app"] = (self._wh_app(self._app()) if comment["user_type"] == "Bot"
                                                  and comment["user"] == self._bot_login() else None)
        wh_comment["reactions"] = self._reactions_summary(wh_comment["url"])
        self._announce("issue_comment", {
            "action": action, **extra, "issue": self._wh_issue(issue, example["issue"]),
            "comment": wh_comment, "repository": self._wh_repository(repo, example["repository"]),
            "sender": sender,
        }, repo)

    def _announce_push(self, repo: dict[str, Any], branch: str, before: str, after: str, shas: list[str],
                       pusher: str, ref: str | None = None, forced: bool = False) -> None:
        """`push` of `ref` (the branch's) from `before` to `after` (ZERO_SHA: created or deleted),
        bringing the commits `shas`, oldest first."""
        full_name = repo["full_name"]
        example = self._example("push", None, full_name)
        html = f"{self._base()}/{full_name}"
        commits = [self._wh_commit(repo, sha) for sha in shas]
        deleted = after == ZERO_SHA
        head = (None if deleted else commits[-1] if shas and shas[-1] == after
                else self._wh_commit(repo, after))
        self._announce("push", {
            "ref": ref or f"refs/heads/{branch}", "before": before, "after": after,
            "created": before == ZERO_SHA, "deleted": deleted, "forced": forced, "base_ref": None,
            "compare": f"{html}/compare/{before[:12]}...{after[:12]}" if before != ZERO_SHA
            else f"{html}/commit/{after[:12]}",
            "commits": commits, "head_commit": head,
            "repository": self._wh_repository(full_name, example["repository"]),
            "pusher": {"name": pusher, "email": self._email(pusher)}, "sender": self._wh_user(pusher),
        }, full_name)

    def _announce_check_run(self, action: str, run: dict[str, Any], sender: dict[str, Any]) -> None:
        repo = run["repo"]
        example = self._example("check_run", action, repo)
        template = example["check_run"]
        rest = self._check_run_object(run)
        check_run = adapt({key: value for key, value in rest.items() if key not in ("app", "check_suite")},
                          template)
        suite = self._wh_check_suite(self._suites[run["suite_id"]], template["check_suite"])
        check_run.update(app=self._wh_app(rest["app"]), check_suite=suite,
                         pull_requests=rest["pull_requests"])
        if check_run.get("details_url") is None:
            check_run["details_url"] = rest["html_url"]
        self._announce("check_run", {"action": action, "check_run": check_run,
                                     "repository": self._wh_repository(repo, example["repository"]),
                                     "sender": sender}, repo)

    def _announce_check_suite(self, action: str, suite: dict[str, Any], sender: dict[str, Any]) -> None:
        repo = suite["repo"]
        example = self._example("check_suite", action, repo)
        self._announce("check_suite", {
            "action": action, "check_suite": self._wh_check_suite(suite, example["check_suite"]),
            "repository": self._wh_repository(repo, example["repository"]), "sender": sender,
        }, repo)

    # ---- webhook objects: GitHub's example shapes, the sandbox's data --------------------------

    def _wh_user(self, login: str, user_type: str | None = None) -> dict[str, Any]:
        return strip(self._user(login, user_type or self._kind(login)))

    def _email(self, login: str) -> str:
        return f"{self._user_id(login)}+{login}@users.noreply.github.com"

    def _wh_app(self, rest_app: dict[str, Any]) -> dict[str, Any]:
        app = {key: strip(rest_app[key]) for key in APP_FIELDS if key in rest_app}
        app["events"] = subscribed(app.get("events") or [])
        return app

    def _wh_organization(self) -> dict[str, Any]:
        template = self._rebase(webhooks.organization_example())
        user = self._user(self.owner, "Organization")
        api = f"{self._base()}/orgs/{self.owner}"
        return set_present(template, login=self.owner, id=user["id"],
                           node_id=node_id("Organization", user["id"]), url=api,
                           html_url=f"{self._base()}/{self.owner}", repos_url=f"{api}/repos",
                           events_url=f"{api}/events", hooks_url=f"{api}/hooks", issues_url=f"{api}/issues",
                           members_url=f"{api}/members{{/member}}",
                           public_members_url=f"{api}/public_members{{/member}}",
                           avatar_url=user["avatar_url"], description=None)

    def _wh_installation(self, template: dict[str, Any]) -> dict[str, Any]:
        base = self._base()
        account = self._wh_user(self.owner, "Organization")
        return set_present(
            dict(template), id=self.installation_id, account=account, repository_selection="selected",
            access_tokens_url=f"{base}/app/installations/{self.installation_id}/access_tokens",
            repositories_url=f"{base}/installation/repositories",
            html_url=f"{base}/organizations/{self.owner}/settings/installations/{self.installation_id}",
            app_id=int(self.app_id), target_id=account["id"], target_type="Organization",
            permissions=dict(self.app_permissions), events=subscribed(APP_EVENTS),
            created_at=int(time.time()), updated_at=int(time.time()), single_file_name=None,
            suspended_at=None, suspended_by=None)

    def _repo_lite(self, full_name: str) -> dict[str, Any]:
        repo = self._repos[full_name]
        return {"id": repo["id"], "node_id": node_id("Repository", repo["id"]),
                "name": full_name.split("/")[1], "full_name": full_name, "private": False}

    def _wh_repository(self, full_name: str, template: dict[str, Any]) -> dict[str, Any]:
        repo = self._repos[full_name]
        owner, name = full_name.split("/")
        api = f"{self._base()}/repos/{full_name}"
        html = f"{self._base()}/{full_name}"
        issues = [i for (r, _), i in self._issues.items() if r == full_name and i["state"] == "open"]
        return set_present(
            dict(template), id=repo["id"], node_id=node_id("Repository", repo["id"]), name=name,
            full_name=full_name, owner=self._wh_user(owner), private=False, fork=False, archived=False,
            disabled=False, default_branch=repo["default_branch"], master_branch=repo["default_branch"],
            visibility="public", description=None, homepage=None, language=None, mirror_url=None,
            url=api, html_url=html, clone_url=f"{html}.git", git_url=f"{html}.git",
            svn_url=html, open_issues_count=len(issues), open_issues=len(issues), is_template=False,
            topics=[], organization=owner if self._kind(owner) == "Organization" else None,
        )

    def _wh_issue(self, issue: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        answer = adapt(self._issue_object(issue), template)
        answer["state_reason"] = self._state_reason(issue)  # GitHub sends it; older examples lack it
        api = f"{self._base()}/repos/{issue['repo']}/issues/{issue['number']}"
        return set_present(answer, timeline_url=f"{api}/timeline", performed_via_github_app=None,
                           reactions=self._reactions_summary(api), draft=issue.get("draft", False),
                           active_lock_reason=None)

    def _wh_pull(self, pull: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        rest = self._pull_object(pull, _raw_example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200))
        answer = adapt(rest, template)
        for side in ("head", "base"):
            answer[side]["repo"] = self._wh_repository(pull["repo"], template[side]["repo"])
        org = pull["repo"].split("/")[0]
        answer["requested_teams"] = [self._wh_team(org, slug) for slug in pull.get("requested_teams", [])]
        return set_present(answer, comments=rest["comments"], review_comments=0, commits=rest["commits"],
                           rebaseable=True, maintainer_can_modify=rest["maintainer_can_modify"],
                           additions=rest["additions"], deletions=rest["deletions"],
                           changed_files=rest["changed_files"])

    def _pull_commits(self, pull: dict[str, Any]) -> list[str]:
        """The pull request's commits: from its head back to where it left its base."""
        record = self._repos[pull["repo"]]
        found, sha = [], pull["head_sha"]
        while sha and sha != pull.get("fork_sha") and sha in record["commits"] and len(found) < 250:
            found.append(sha)
            parents = record["commits"][sha]["parents"]
            sha = parents[0] if parents else ""
        return found or [pull["head_sha"]]

    def _wh_commit(self, repo: dict[str, Any], sha: str) -> dict[str, Any]:
        commit = repo["commits"][sha]
        people = {}
        for role in ("author", "committer"):
            person = self._person(commit, role)
            people[role] = {"name": person["name"], "email": person["email"]}
            if person["email"] == self._email(person["name"]):  # an account's own address
                people[role]["username"] = person["name"]
        return {"id": sha, "tree_id": commit.get("tree_id") or sha, "distinct": True,
                "message": commit["message"], "timestamp": commit["timestamp"],
                "url": f"{self._base()}/{repo['full_name']}/commit/{sha}", **people,
                "added": commit["added"], "removed": commit["removed"], "modified": commit["modified"]}

    def _wh_check_suite(self, suite: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        repo = self._repos[suite["repo"]]
        api = f"{self._base()}/repos/{suite['repo']}/check-suites/{suite['id']}"
        commit = repo["commits"].get(suite["head_sha"]) or self._foreign_commit()
        author = commit["author"] or self.owner
        person = {"name": author, "email": self._email(author)}
        runs = [run for run in self.check_runs.values() if run["suite_id"] == suite["id"]]
        return set_present(
            dict(template), id=suite["id"], node_id=node_id("CheckSuite", suite["id"]),
            head_branch=suite["head_branch"], head_sha=suite["head_sha"], status=suite["status"],
            conclusion=suite["conclusion"], url=api, before=suite["before"], after=suite["head_sha"],
            pull_requests=[self._pull_minimal(p) for p in self._open_pulls(suite["repo"])
                           if p["head_sha"] == suite["head_sha"]],
            app=self._wh_app(self._app() if suite["app"] == "app" else self._ci_app()),
            created_at=suite["created_at"], updated_at=suite["updated_at"],
            latest_check_runs_count=len(runs), check_runs_url=f"{api}/check-runs", rerequestable=True,
            runs_rerequestable=True,
            head_commit={"id": suite["head_sha"], "tree_id": commit.get("tree_id") or suite["head_sha"],
                         "message": commit["message"], "timestamp": commit["timestamp"],
                         "author": person, "committer": dict(person)})

    def _reactions_summary(self, url: str) -> dict[str, Any]:
        return {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}

    # ---- REST answers, built on GitHub's examples -------------------------------------------

    def _base(self) -> str:
        return (self.base_url or self._request_base or "http://localhost").rstrip("/")

    def _rebase(self, value: Any) -> Any:
        """Point an example's urls at the sandbox."""
        base = self._base()
        if isinstance(value, str):
            for host in ("https://api.github.com", "https://github.com", "https://uploads.github.com"):
                if value.startswith(host):
                    return base + value[len(host):]
            return value
        if isinstance(value, dict):
            return {key: self._rebase(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._rebase(item) for item in value]
        return value

    def _page(self, call: Call, items: list[Any]) -> Reply:
        per_page = min(max(int(call.query.get("per_page", 30)), 1), 100)
        page = max(int(call.query.get("page", 1)), 1)
        last = max(1, math.ceil(len(items) / per_page))
        headers = {}
        if page < last:
            url = f"{self._request_base}{call.path}?"
            headers["Link"] = (f'<{url}{urlencode({**call.query, "page": page + 1})}>; rel="next", '
                               f'<{url}{urlencode({**call.query, "page": last})}>; rel="last"')
        return Reply(200, items[(page - 1) * per_page:page * per_page], headers)

    def _user(self, login: str, user_type: str = "User") -> dict[str, Any]:
        user_id = self._user_id(login)
        base = self._base()
        api = f"{base}/users/{quote(login)}"
        return {
            "login": login, "id": user_id, "node_id": node_id(user_type, user_id),
            "avatar_url": f"{base}/avatars/u/{user_id}", "gravatar_id": "", "url": api,
            "html_url": f"{base}/{quote(login)}", "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}", "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs", "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}", "received_events_url": f"{api}/received_events",
            "type": user_type, "site_admin": False, "user_view_type": "public",
        }

    def _app(self) -> dict[str, Any]:
        answer = self._rebase(_raw_example("GET", "/app", 200))
        app_id = int(self.app_id)
        answer.update(id=app_id, slug=self.app_slug, name=self.app_slug,
                      node_id=node_id("Integration", app_id), owner=self._user(self.owner, "Organization"),
                      html_url=f"{self._base()}/apps/{self.app_slug}",
                      permissions=dict(self.app_permissions), events=subscribed(APP_EVENTS))
        return answer

    def _ci_app(self) -> dict[str, Any]:
        answer = self._rebase(_raw_example("GET", "/app", 200))
        answer.update(id=CI_APP["id"], slug=CI_APP["slug"], name=CI_APP["name"],
                      node_id=node_id("Integration", CI_APP["id"]),
                      owner=self._user(CI_APP["owner"], "Organization"),
                      html_url=f"{self._base()}/apps/{CI_APP['slug']}",
                      permissions={"checks": "write", "contents": "read", "metadata": "read"},
                      events=["check_run", "check_suite", "push"])
        return answer

    def _repository_object(self, full_name: str, template: dict[str, Any]) -> dict[str, Any]:
        repo = self._repos[full_name]
        owner, name = full_name.split("/")
        old_api = template["url"]
        old_html = template["html_url"]
        api = f"{self._base()}/repos/{full_name}"
        html = f"{self._base()}/{full_name}"

        def retarget_urls(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace(old_api, api).replace(old_html, html)
            if isinstance(value, dict):
                return {key: retarget_urls(item) for key, item in value.items()}
            if isinstance(value, list):
                return [retarget_urls(item) for item in value]
            return value

        answer = self._rebase(retarget_urls(template))
        answer.update(id=repo["id"], node_id=node_id("Repository", repo["id"]), name=name,
                      full_name=full_name,
                      owner=self._user(owner, "Organization" if owner == self.owner else "User"),
                      default_branch=repo["default_branch"], private=False, visibility="public",
                      fork=False, archived=False, disabled=False, language=None, url=api, html_url=html,
                      clone_url=f"{html}.git", git_url=f"{html}.git", mirror_url=None)
        created = timestamp(datetime.fromtimestamp(repo["created_at"], timezone.utc))
        set_present(answer, created_at=created, pushed_at=repo.get("pushed_at", created),
                    updated_at=repo.get("updated_at", created))
        set_present(answer, **repo.get("settings", {}))
        return answer

    def _label_object(self, repo: str, name: str) -> dict[str, Any]:
        if (repo, name) not in self._labels:
            self._labels[(repo, name)] = self._new_id()
        label_id = self._labels[(repo, name)]
        info = self._label_info.get((repo, name), {})
        return {"id": label_id, "node_id": node_id("Label", label_id), "name": name,
                "description": info.get("description"),
                "url": f"{self._base()}/repos/{repo}/labels/{quote(name)}",
                "color": info.get("color", "ededed"), "default": False}

    def _association(self, repo: str, login: str) -> str:
        if login == self.owner:
            return "OWNER"
        return "COLLABORATOR" if self._roles.get((repo, login), "none") != "none" else "NONE"

    def _issue_object(self, issue: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("GET", "/repos/{owner}/{repo}/issues/{issue_number}", 200))
        base = self._base()
        api = f"{base}/repos/{issue['repo']}/issues/{issue['number']}"
        html = f"{base}/{issue['repo']}/{'pull' if issue['pull_request'] else 'issues'}/{issue['number']}"
        count = sum(1 for c in self.comments if (c["repo"], c["issue_number"]) == (issue["repo"],
                                                                                  issue["number"]))
        assignees = [self._user(login) for login in issue["assignees"]]
        answer.update(
            id=issue["id"], node_id=node_id("Issue", issue["id"]), number=issue["number"],
            title=issue["title"],
            body=issue["body"], user=self._user(issue["author"], self._kind(issue["author"])),
            state=issue["state"],
            state_reason=self._state_reason(issue),
            labels=[self._label_object(issue["repo"], name) for name in issue["labels"]],
            assignee=assignees[0] if assignees else None, assignees=assignees, milestone=None,
            locked=issue["locked"], active_lock_reason=None,
            comments=count, closed_at=issue["closed_at"] if issue["state"] == "closed" else None,
            closed_by=None, created_at=issue["created_at"], updated_at=issue["updated_at"],
            url=api, html_url=html, repository_url=f"{base}/repos/{issue['repo']}",
            comments_url=f"{api}/comments", events_url=f"{api}/events", labels_url=f"{api}/labels{{/name}}",
            author_association=self._association(issue["repo"], issue["author"]),
        )
        if issue["pull_request"]:
            pulls = f"{base}/repos/{issue['repo']}/pulls/{issue['number']}"
            answer["pull_request"] = {"url": pulls, "html_url": html, "diff_url": f"{html}.diff",
                                      "patch_url": f"{html}.patch", "merged_at": issue["merged_at"]}
        else:
            answer.pop("pull_request", None)
        return answer

    @staticmethod
    def _state_reason(issue: dict[str, Any]) -> str | None:
        """Why an issue is in its state: how it was closed (completed unless said), or reopened."""
        reason = issue.get("state_reason")
        if issue["state"] == "closed":
            return reason or "completed"
        return "reopened" if reason == "reopened" else None

    def _comment_object(self, comment: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                                           201))
        base = self._base()
        issue = self._issues[(comment["repo"], comment["issue_number"])]
        kind = "pull" if issue["pull_request"] else "issues"
        answer.update(
            id=comment["id"], node_id=node_id("IssueComment", comment["id"]), body=comment["body"],
            user=self._user(comment["user"], comment["user_type"]),
            url=f"{base}/repos/{comment['repo']}/issues/comments/{comment['id']}",
            html_url=f"{base}/{comment['repo']}/{kind}/{comment['issue_number']}#issuecomment-{comment['id']}",
            issue_url=f"{base}/repos/{comment['repo']}/issues/{comment['issue_number']}",
            created_at=comment["created_at"], updated_at=comment["updated_at"],
            author_association=self._association(comment["repo"], comment["user"]),
        )
        if comment["user_type"] == "Bot" and comment["user"] == self._bot_login():
            answer["performed_via_github_app"] = self._app()
        return answer

    def _reaction_object(self, reaction: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions",
                                           201))
        answer.update(id=reaction["id"], node_id=node_id("Reaction", reaction["id"]),
                      content=reaction["content"], user=self._user(reaction["user"], "Bot"),
                      created_at=reaction["created_at"])
        return answer

    def _check_run_object(self, run: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(_raw_example("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", 200))
        base = self._base()
        output = run["output"]
        answer.update(
            id=run["id"], node_id=node_id("CheckRun", run["id"]), name=run["name"], head_sha=run["head_sha"],
            external_id=run["external_id"], status=run["status"], conclusion=run["conclusion"],
            started_at=run["started_at"], completed_at=run["completed_at"],
            details_url=run["details_url"] or f"{base}/{run['repo']}/runs/{run['id']}",
            url=f"{base}/repos/{run['repo']}/check-runs/{run['id']}",
            html_url=f"{base}/{run['repo']}/runs/{run['id']}",
            output={"title": output.get("title"), "summary": output.get("summary"),
                    "text": output.get("text"),
                    "annotations_count": len(output.get("annotations", [])),
                    "annotations_url": f"{base}/repos/{run['repo']}/check-runs/{run['id']}/annotations"},
            check_suite={"id": run["suite_id"]},
            app=self._app() if run["app"] == "app" else self._ci_app(),
            pull_requests=[self._pull_minimal(issue) for issue in self._open_pulls(run["repo"])
                           if issue["head_sha"] == run["head_sha"]],
        )
        return answer

    def _pull_minimal(self, pull: dict[str, Any]) -> dict[str, Any]:
        repo = self._repos[pull["repo"]]
        short = {"id": repo["id"], "url": f"{self._base()}/repos/{pull['repo']}",
                 "name": pull["repo"].split("/")[1]}
        return {"id": pull["id"], "number": pull["number"],
                "url": f"{self._base()}/repos/{pull['repo']}/pulls/{pull['number']}",
                "head": {"ref": pull["head_ref"], "sha": pull["head_sha"], "repo": short},
                "base": {"ref": pull["base_ref"], "sha": repo["branches"].get(pull["base_ref"], ""),
                         "repo": dict(short)}}

    def _pull_object(self, pull: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(template)
        base = self._base()
        full_name = pull["repo"]
        owner = full_name.split("/")[0]
        repo = self._repos[full_name]
        api = f"{base}/repos/{full_name}/pulls/{pull['number']}"
        html = f"{base}/{full_name}/pull/{pull['number']}"
        issue_api = f"{base}/repos/{full_name}/issues/{pull['number']}"
        author = self._user(pull["author"], self._kind(pull["author"]))
        repository = self._repository_object(full_name, answer["base"]["repo"])
        assignees = [self._user(login) for login in pull["assignees"]]
        base_sha = repo["branches"].get(pull["base_ref"], self._head(repo))
        answer.update(
            id=pull["id"], node_id=node_id("PullRequest", pull["id"]), number=pull["number"],
            state=pull["state"], title=pull["title"], body=pull["body"], user=author, draft=pull["draft"],
            locked=pull["locked"], active_lock_reason=None,
            labels=[self._label_object(full_name, name) for name in pull["labels"]],
            assignee=assignees[0] if assignees else None, assignees=assignees,
            requested_reviewers=[self._user(login) for login in pull["requested_reviewers"]],
            requested_teams=[self._team_object(owner, slug) for slug in pull.get("requested_teams", [])],
            milestone=None, auto_merge=None, merge_commit_sha=pull["merge_commit_sha"],
            created_at=pull["created_at"], updated_at=pull["updated_at"],
            closed_at=pull["closed_at"] if pull["state"] == "closed" else None, merged_at=pull["merged_at"],
            url=api, html_url=html, diff_url=f"{html}.diff", patch_url=f"{html}.patch", issue_url=issue_api,
            commits_url=f"{api}/commits", review_comments_url=f"{api}/comments",
            review_comment_url=f"{base}/repos/{full_name}/pulls/comments{{/number}}",
            comments_url=f"{issue_api}/comments", statuses_url=f"{base}/repos/{full_name}/statuses/"
            f"{pull['head_sha']}",
            author_association=self._association(full_name, pull["author"]),
            head={"label": f"{owner}:{pull['head_ref']}", "ref": pull["head_ref"], "sha": pull["head_sha"],
                  "user": self._user(owner, "Organization"), "repo": repository},
            base={"label": f"{owner}:{pull['base_ref']}", "ref": pull["base_ref"], "sha": base_sha,
                  "user": self._user(owner, "Organization"), "repo": repository},
            _links={"self": {"href": api}, "html": {"href": html}, "issue": {"href": issue_api},
                    "comments": {"href": f"{issue_api}/comments"},
                    "review_comments": {"href": f"{api}/comments"},
                    "review_comment": {"href": f"{base}/repos/{full_name}/pulls/comments{{/number}}"},
                    "commits": {"href": f"{api}/commits"},
                    "statuses": {"href": f"{base}/repos/{full_name}/statuses/{pull['head_sha']}"}},
        )
        if "merged" in answer:
            open_ = pull["state"] == "open"
            changes = self._file_changes(repo, self._pull_fork(pull), pull["head_sha"])
            answer.update(merged=pull["merged"], mergeable=True if open_ else None,
                          mergeable_state="clean" if open_ else "unknown",
                          merged_by=self._user(pull["merged_by"]) if pull["merged_by"] else None,
                          comments=sum(1 for c in self.comments
                                       if (c["repo"], c["issue_number"]) == (full_name, pull["number"])),
                          review_comments=0, commits=len(self._pull_commits(pull)),
                          additions=sum(c["additions"] for c in changes),
                          deletions=sum(c["deletions"] for c in changes), changed_files=len(changes),
                          maintainer_can_modify=bool(pull.get("maintainer_can_modify", False)))
        return answer

    def _review_object(self, pull: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        template = _raw_example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", 200)[0]
        answer = self._rebase(template)
        base = self._base()
        api = f"{base}/repos/{pull['repo']}/pulls/{pull['number']}"
        html = f"{base}/{pull['repo']}/pull/{pull['number']}#pullrequestreview-{review['id']}"
        answer.update(
            id=review["id"], node_id=node_id("PullRequestReview", review["id"]),
            user=self._user(review["login"], review["user_type"]), body=review["body"], state=review["state"],
            commit_id=review["commit_id"], submitted_at=review["submitted_at"], html_url=html,
            pull_request_url=api, _links={"html": {"href": html}, "pull_request": {"href": api}},
            author_association=self._association(pull["repo"], review["login"]),
        )
        if review["submitted_at"] is None:  # a pending review has not been submitted
            answer.pop("submitted_at")
        return answer

    @staticmethod
    def _delivery_item(record: dict[str, Any]) -> dict[str, Any]:
        return {key: record[key] for key in (
            "id", "guid", "delivered_at", "redelivery", "duration", "status", "status_code", "event",
            "action", "installation_id", "repository_id", "throttled_at")}

    # ---- persistence ------------------------------------------------------------------------

    # The state is one JSON document in `state_file`, rewritten after each change; delivery
    # attempts, which never change once made and hold whole payloads, are appended one JSON
    # object a line to `<state_file>.deliveries`.

    def _deliveries_file(self) -> Path:
        return Path(f"{self.state_file}.deliveries")

    def _save(self) -> None:
        """Write the state to `state_file`, atomically (a crash leaves the previous state)."""
        if not self.state_file:
            return
        self._write_atomically(Path(self.state_file), json.dumps(self._snapshot(), separators=(",", ":")))

    def _log_delivery(self, record: dict[str, Any]) -> None:
        if not self.state_file:
            return
        with self._deliveries_file().open("a") as handle:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")

    @staticmethod
    def _write_atomically(target: Path, data: str) -> None:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "app_id": self.app_id, "installation_id": self.installation_id,
            "next_id": self._next_id, "next_delivery_id": self._next_delivery_id,
            "repos": list(self._repos.values()), "issues": list(self._issues.values()),
            "reviews": [review for reviews in self._reviews.values() for review in reviews],
            "pulls_with_reviews": [list(key) for key in self._reviews],
            "roles": [[repo, login, role] for (repo, login), role in self._roles.items()],
            "teams": [{"org": org, "slug": slug, **team} for (org, slug), team in self._teams.items()],
            "users": self._users, "labels": [[repo, name, id_] for (repo, name), id_ in self._labels.items()],
            "label_info": [[repo, name, info] for (repo, name), info in self._label_info.items()],
            "ref_writes": self.ref_writes, "force_pushes": self.force_pushes,
            "suites": list(self._suites.values()), "comments": self.comments, "reactions": self.reactions,
            "check_runs": list(self.check_runs.values()), "statuses": self.statuses,
            "workflow_runs": list(self.workflow_runs.values()), "dispatches": self.dispatches,
            "deployments": list(self.deployments.values()), "workflows": self._workflows,
            "artifacts": [{"id": id_, **a} for id_, a in self._artifacts.items()],
            "reruns": [[id_, conclusions] for id_, conclusions in self._reruns.items()],
            "dependabot_alerts": self._dependabot_alerts, "code_scanning_alerts": self._code_scanning_alerts,
            "protection": self._protection, "branch_rules": self._rules,
            "tokens": [{"value": t.value, "permissions": t.permissions,
                        "repositories": sorted(t.repositories) if t.repositories is not None else None,
                        "expires_at": t.expires_at.isoformat()} for t in self._tokens.values()],
        }

    def _restore(self, data: dict[str, Any]) -> None:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_file}: state version {data.get('version')!r}, expected "
                             f"{STATE_VERSION}; remove the file to start afresh")
        self._next_id = int(data["next_id"])
        self._next_delivery_id = int(data["next_delivery_id"])
        self._repos = {repo["full_name"]: repo for repo in data["repos"]}
        for repo in self._repos.values():  # a state saved before commits carried git's tree ids
            for commit in repo["commits"].values():
                if commit["files"] is not None:
                    commit["tree_id"] = tree_sha(commit["files"], commit.get("modes"))
        self._issues = {(issue["repo"], issue["number"]): issue for issue in data["issues"]}
        self._reviews = {(repo, number): [] for repo, number in data["pulls_with_reviews"]}
        for review in data["reviews"]:
            self._reviews.setdefault((review["repo"], review["number"]), []).append(review)
        self._roles = {(repo, login): role for repo, login, role in data["roles"]}
        self._teams = {(team.pop("org"), team.pop("slug")): team for team in data["teams"]}
        self._users = dict(data["users"])
        self._labels = {(repo, name): id_ for repo, name, id_ in data["labels"]}
        self._label_info = {(repo, name): dict(info) for repo, name, info in data.get("label_info", [])}
        self.ref_writes = list(data.get("ref_writes", []))
        self.force_pushes = list(data.get("force_pushes", []))
        self._suites = {suite["id"]: suite for suite in data["suites"]}
        self.comments = list(data["comments"])
        self.reactions = list(data["reactions"])
        self.check_runs = {run["id"]: run for run in data["check_runs"]}
        self.statuses = list(data.get("statuses", []))
        self.workflow_runs = {run["id"]: run for run in data.get("workflow_runs", [])}
        self.dispatches = list(data.get("dispatches", []))
        self.deployments = {d["id"]: d for d in data.get("deployments", [])}
        self._workflows = {repo: dict(files) for repo, files in data.get("workflows", {}).items()}
        self._artifacts = {a.pop("id"): a for a in data.get("artifacts", [])}
        self._reruns = {int(id_): list(conclusions) for id_, conclusions in data.get("reruns", [])}
        self._dependabot_alerts = list(data.get("dependabot_alerts", []))
        self._code_scanning_alerts = list(data.get("code_scanning_alerts", []))
        self._protection = {repo: dict(b) for repo, b in data.get("protection", {}).items()}
        self._rules = {repo: {branch: list(rules) for branch, rules in b.items()}
                       for repo, b in data.get("branch_rules", {}).items()}
        log = self._deliveries_file()
        lines = log.read_text().splitlines() if log.exists() else []
        self.deliveries = [record for record in map(_json_line, lines[-MAX_DELIVERIES:]) if record]
        if len(lines) > MAX_DELIVERIES:  # compact what is no longer kept
            self._write_atomically(log, "".join(json.dumps(d, separators=(",", ":")) + "\n"
                                                for d in self.deliveries))
        self._next_delivery_id = max([self._next_delivery_id, *(d["id"] for d in self.deliveries)])
        self._tokens = {t["value"]: Token(t["value"], dict(t["permissions"]),
                                          frozenset(t["repositories"]) if t["repositories"] is not None
                                          else None, datetime.fromisoformat(t["expires_at"]))
                        for t in data["tokens"]}


def generate_app_key() -> tuple[Any, str]:
    """A fresh RSA 2048 key for an App: (public key, private key as PEM text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key.public_key(), pem
