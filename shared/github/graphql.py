"""GitHub's GraphQL API through the installation's REST client, and the scout's repository signals.

`query` POSTs a document to `/graphql` with the client's token, retries and error mapping. GitHub
answers 200 even when a query fails, with `errors`:

- `type: RATE_LIMITED` anywhere: `RateLimited` (retryable), due at the GraphQL window's reset;
- no `data`, or an error that names no field (a syntax or validation error): `QueryFailed`
  (permanent), with the first messages;
- errors on fields (`path`), such as `NOT_FOUND` for one aliased repository or `FORBIDDEN` for a
  field the token may not read: the data and those errors are returned, nothing is raised.

A query is a read: it is neither paced nor audited as the client's writes are, and GraphQL's rate
limit (its own budget, `X-RateLimit-Resource: graphql`) does not replace the REST budget the
client plans with.

`repo_signals` asks, in one query per 50 repositories, for a cheap signature of each: a repository
whose `RepoSignal.digest()` did not change since the last scan need not be read again over REST.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

from shared.errors import PermanentError
from shared.github.rest import GitHubError, RateLimit, RateLimited, RestClient

BATCH = 50  # repositories per query; GitHub allows up to 500,000 nodes and a cost of 5,000 per hour
TOLERATED = frozenset({"NOT_FOUND", "FORBIDDEN"})

REPO_SIGNAL_FRAGMENT = """\
fragment RepoSignal on Repository {
  databaseId
  nameWithOwner
  pushedAt
  updatedAt
  isArchived
  defaultBranchRef {
    name
    target {
      oid
      ... on Commit {
        statusCheckRollup {
          state
        }
      }
    }
  }
  issues(states: [OPEN]) {
    totalCount
  }
  pullRequests(states: [OPEN]) {
    totalCount
  }
  vulnerabilityAlerts(states: [OPEN]) {
    totalCount
  }
}"""


class QueryFailed(GitHubError, PermanentError):
    """GitHub refused the whole query: a syntax or validation error, or no data at all."""


def query(client: RestClient, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Run `document`; returns `{"data": ..., "errors": [...]}`, the errors being the tolerated
    per-field ones (possibly none)."""
    previous = client.rate_limit
    try:
        # A read, retried like a GET: not paced or audited as a write.
        body, headers = client._send("POST", "/graphql", {"query": document, "variables": variables},
                                     None, True)
    finally:
        if client.rate_limit is not None and client.rate_limit.resource != "core":
            client.rate_limit = previous  # GraphQL's budget is not the REST budget
    if not isinstance(body, dict):
        raise QueryFailed(f"POST /graphql: not a GraphQL answer: {str(body)[:200]}", 200)
    errors = body.get("errors") or []
    if not isinstance(errors, list):
        errors = [errors]
    errors = [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
    limited = [e for e in errors if e.get("type") == "RATE_LIMITED"]
    if limited:
        limit = RateLimit.from_headers(headers)
        retry_at = limit.reset if limit is not None else client._clock() + 60
        raise RateLimited(f"POST /graphql: {limited[0].get('message', 'rate limited')}", 200, retry_at)
    data = body.get("data")
    whole = [e for e in errors if not e.get("path")]
    if data is None or whole:
        shown = (whole or errors)[:3]
        messages = "; ".join(str(e.get("message", "")) for e in shown) or "no data"
        raise QueryFailed(f"POST /graphql: {messages}", 200)
    return {"data": data, "errors": errors}


@dataclass(frozen=True)
class RepoSignal:
    """What the scout compares between scans: a change in any field is a change of the repository."""

    database_id: int | None
    name_with_owner: str
    pushed_at: datetime | None
    updated_at: datetime | None
    is_archived: bool
    default_branch: str | None  # None for an empty repository
    head_oid: str | None
    check_state: str | None  # StatusState of the head's checks and statuses; None when there are none
    open_issues: int
    open_pull_requests: int
    open_vulnerability_alerts: int | None  # None when the token may not read them

    def digest(self) -> str:
        """A short string, the same for the same fields on any machine and in any process."""
        values = [value.isoformat() if isinstance(value, datetime) else value for value in astuple(self)]
        named = dict(zip((f.name for f in fields(self)), values, strict=True))
        encoded = json.dumps(named, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> RepoSignal:
        branch = node.get("defaultBranchRef") or {}
        target = branch.get("target") or {}
        rollup = target.get("statusCheckRollup") or {}
        alerts = node.get("vulnerabilityAlerts")
        return cls(
            database_id=node.get("databaseId"),
            name_with_owner=str(node.get("nameWithOwner", "")),
            pushed_at=_moment(node.get("pushedAt")),
            updated_at=_moment(node.get("updatedAt")),
            is_archived=bool(node.get("isArchived")),
            default_branch=branch.get("name"),
            head_oid=target.get("oid"),
            check_state=rollup.get("state"),
            open_issues=int((node.get("issues") or {}).get("totalCount", 0)),
            open_pull_requests=int((node.get("pullRequests") or {}).get("totalCount", 0)),
            open_vulnerability_alerts=None if alerts is None else int(alerts.get("totalCount", 0)),
        )


class GraphQLRate(NamedTuple):
    cost: int  # the cost of every query made, summed
    remaining: int
    reset_at: datetime | None
    limit: int


@dataclass
class SignalsResult:
    signals: dict[str, RepoSignal] = field(default_factory=dict)  # by the name asked for
    missing: dict[str, str] = field(default_factory=dict)  # name -> why (GitHub's type: message)
    rate: GraphQLRate = GraphQLRate(0, 0, None, 0)
    requests: int = 0


def signals_document(count: int) -> str:
    """The query for `count` repositories: `r<i>: repository(owner: $o<i>, name: $n<i>)`."""
    declared = ", ".join(f"$o{i}: String!, $n{i}: String!" for i in range(count))
    aliases = "\n".join(f"  r{i}: repository(owner: $o{i}, name: $n{i}) {{\n    ...RepoSignal\n  }}"
                        for i in range(count))
    return (f"query RepoSignals({declared}) {{\n"
            "  rateLimit {\n    cost\n    remaining\n    resetAt\n    limit\n  }\n"
            f"{aliases}\n}}\n\n{REPO_SIGNAL_FRAGMENT}\n")


def repo_signals(client: RestClient, repos: Sequence[str], batch: int = BATCH) -> SignalsResult:
    """The signal of each `owner/name`, in one query per `batch` (at most 50) repositories."""
    if not 1 <= batch <= BATCH:
        raise ValueError(f"a batch is 1 to {BATCH} repositories, got {batch}")
    result = SignalsResult()
    wanted: list[str] = []
    for full_name in dict.fromkeys(repos):
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            result.missing[full_name] = "INVALID: not owner/name"
        else:
            wanted.append(full_name)
    cost = 0
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        variables: dict[str, Any] = {}
        for i, full_name in enumerate(chunk):
            variables[f"o{i}"], _, variables[f"n{i}"] = full_name.partition("/")
        answer = query(client, signals_document(len(chunk)), variables)
        result.requests += 1
        data = answer["data"]
        reasons: dict[str, str] = {}
        for error in answer["errors"]:
            alias = str(error["path"][0])
            reasons.setdefault(alias, f"{error.get('type', 'ERROR')}: {error.get('message', '')}")
        for i, full_name in enumerate(chunk):
            node = data.get(f"r{i}")
            if node is None:
                result.missing[full_name] = reasons.get(f"r{i}", "NOT_FOUND")
            else:
                result.signals[full_name] = RepoSignal.from_node(node)
        rate = data.get("rateLimit") or {}
        cost += int(rate.get("cost", 0))
        result.rate = GraphQLRate(cost, int(rate.get("remaining", 0)), _moment(rate.get("resetAt")),
                                  int(rate.get("limit", 0)))
    return result


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
