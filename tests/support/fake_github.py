"""A stateful fake of the GitHub REST API for integration tests, held to GitHub's own description.

The project's real client talks to it over HTTP (`GITHUB_API_URL`). Every request is checked
against `openapi-subset.json` before it is handled and every 2xx/3xx answer before it is sent, so
the fake can neither accept what GitHub would reject nor answer what GitHub cannot. A violation,
or a request for an endpoint the fake does not serve, lands in `errors` and is answered 500.

Authentication is GitHub's: the App's RS256 JWT on `/app/*` and `/repos/{o}/{r}/installation`,
installation tokens it issued everywhere else, scoped to the permissions and repositories they were
asked for (403 or 404 beyond them, as GitHub answers). Answers are GitHub's documented examples
with ids, logins, bodies, shas and urls replaced by the fake's state.

Known simplifications: the installation holds every repository added to the fake; a repository
has one tree of files, served for any ref that resolves to one of its commits; every request counts
against a single rate-limit window.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import jwt

from shared.github.permissions import APP_EVENTS, app_permissions
from tests.support import openapi
from tests.support.push import serve

DOCS = "https://docs.github.com/rest"
ROLE_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
                   "read": "read", "none": "none"}
LEVELS = {"read": 1, "write": 2, "admin": 3}
TOKEN_LIFETIME = timedelta(hours=1)
JWT_MAX_LIFETIME = 600  # GitHub refuses an App JWT that expires more than 10 minutes ahead
CLOCK_LEEWAY = 60
# The operations whose descriptions document 304: only these carry an ETag.
CONDITIONAL = frozenset({
    "/repos/{owner}/{repo}/contents/{path}", "/repos/{owner}/{repo}/issues/{issue_number}",
    "/repos/{owner}/{repo}/pulls", "/repos/{owner}/{repo}/pulls/{pull_number}",
})
APP = "app"  # a route that takes the App's JWT
# Alternatives, any one of which lets an installation token through.
ISSUES_READ = (("issues", "read"), ("pull_requests", "read"))
ISSUES_WRITE = (("issues", "write"), ("pull_requests", "write"))
ROUTES: tuple[tuple[str, str, str, Any], ...] = (
    ("GET", "/app", "_get_app", APP),
    ("POST", "/app/installations/{installation_id}/access_tokens", "_create_token", APP),
    ("GET", "/repos/{owner}/{repo}/installation", "_get_installation", APP),
    ("GET", "/repos/{owner}/{repo}", "_get_repo", ()),
    ("GET", "/repos/{owner}/{repo}/contents/{path}", "_get_content", (("contents", "read"),)),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", "_get_permission", ()),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}", "_get_issue", ISSUES_READ),
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
)


class Refused(Exception):
    """An answer GitHub gives to a well-formed request it will not carry out (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def blob_sha(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def node_id(kind: str, id_: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{id_}".encode()).decode()


def _compile(template: str) -> re.Pattern[str]:
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
        pattern += re.escape(literal)
        if name:
            pattern += f"(?P<{name}>{'.*' if name == 'path' else '.+' if name == 'ref' else '[^/]+'})"
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


class FakeGitHub:
    """GitHub's REST API for one App installed on one account, with the state tests assert on."""

    def __init__(self, public_key: Any, app_id: str = "424242", app_slug: str = "agent-ops",
                 installation_id: int = 77, owner: str = "octo") -> None:
        self.public_key = public_key
        self.app_id = str(app_id)
        self.app_slug = app_slug
        self.installation_id = installation_id
        self.owner = owner
        self.base_url = ""  # where the test serves the fake; urls in answers are built on it
        self.app_permissions = app_permissions()
        self.rate_limit = 5000
        self.rate_limit_used = 0
        self.rate_limit_reset = int(time.time()) + 3600
        # What the project did, for tests to assert on.
        self.comments: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.tokens_issued: list[dict[str, str] | None] = []
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._repos: dict[str, dict[str, Any]] = {}
        self._issues: dict[tuple[str, int], dict[str, Any]] = {}
        self._reviews: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._roles: dict[tuple[str, str], str] = {}
        self._teams: dict[tuple[str, str], dict[str, Any]] = {}
        self._users: dict[str, int] = {}
        self._labels: dict[tuple[str, str], int] = {}
        self._suites: dict[tuple[str, str], int] = {}
        self._tokens: dict[str, Token] = {}
        self._request_base = ""
        self._routes = []
        for method, template, handler, needs in ROUTES:
            openapi.operation(method, template)  # every route is an operation of the subset
            self._routes.append((method, _compile(template), template, getattr(self, handler), needs))
        for template in CONDITIONAL:
            assert "304" in openapi.operation("GET", template)["responses"], template

    # ---- setup -----------------------------------------------------------------------------

    def add_repo(self, full_name: str, default_branch: str = "main",
                 files: dict[str, str] | None = None) -> dict[str, Any]:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"a repository is owner/name, got {full_name!r}")
        with self._lock:
            repo = {"full_name": full_name, "id": next(self._ids), "default_branch": default_branch,
                    "files": dict(files or {}), "head_sha": "", "commits": set()}
            self._repos[full_name] = repo
            self._commit(repo)
            return repo

    def set_file(self, repo: str, path: str, text: str) -> None:
        with self._lock:
            record = self._repo(repo)
            record["files"][path.strip("/")] = text
            self._commit(record)

    def delete_file(self, repo: str, path: str) -> None:
        with self._lock:
            record = self._repo(repo)
            record["files"].pop(path.strip("/"))
            self._commit(record)

    def add_commit(self, repo: str, sha: str) -> None:
        """Make a sha known to the repository, for check runs on commits outside any pull request."""
        with self._lock:
            self._repo(repo)["commits"].add(sha)

    def set_permission(self, repo: str, login: str, role: str) -> None:
        if role not in ROLE_PERMISSION:
            raise ValueError(f"role must be one of {sorted(ROLE_PERMISSION)}, got {role!r}")
        with self._lock:
            self._repo(repo)
            self._roles[(repo, login)] = role

    def add_team_member(self, org: str, team_slug: str, login: str) -> None:
        with self._lock:
            team = self._teams.setdefault((org, team_slug), {"id": next(self._ids), "members": set()})
            team["members"].add(login)

    def add_issue(self, repo: str, number: int, title: str = "", body: str = "", author: str = "octocat",
                  labels: tuple[str, ...] = (), state: str = "open") -> dict[str, Any]:
        with self._lock:
            return self._new_issue(repo, number, title or f"Issue {number}", body, author, labels, state)

    def add_pull(self, repo: str, number: int, head_sha: str, author: str = "octocat",
                 head_ref: str = "feature", base_ref: str = "main", state: str = "open") -> dict[str, Any]:
        with self._lock:
            pull = self._new_issue(repo, number, f"Pull request {number}", "", author, (), state)
            pull.update(pull_request=True, head_sha=head_sha, head_ref=head_ref, base_ref=base_ref,
                        draft=False, merged=False)
            self._repo(repo)["commits"].add(head_sha)
            self._reviews[(repo, number)] = []
            return pull

    def set_pull_head(self, repo: str, number: int, head_sha: str) -> None:
        with self._lock:
            pull = self._pull(repo, number)
            pull["head_sha"] = head_sha
            pull["updated_at"] = timestamp()
            self._repo(repo)["commits"].add(head_sha)

    def add_review(self, repo: str, number: int, login: str, state: str = "APPROVED",
                   commit_id: str | None = None, user_type: str = "User") -> dict[str, Any]:
        with self._lock:
            pull = self._pull(repo, number)
            review = {"id": next(self._ids), "repo": repo, "number": number, "login": login,
                      "state": state, "commit_id": commit_id or pull["head_sha"], "user_type": user_type,
                      "body": "", "submitted_at": timestamp()}
            self._reviews[(repo, number)].append(review)
            return review

    def add_comment(self, repo: str, issue_number: int, body: str, author: str = "octocat",
                    user_type: str = "User") -> dict[str, Any]:
        """A comment someone else wrote (a ChatOps command, say)."""
        with self._lock:
            return self._new_comment(self._issue(repo, issue_number), body, author, user_type)

    def expire_tokens(self) -> None:
        """Every installation token issued so far stops working, as if it had expired."""
        with self._lock:
            past = now() - timedelta(seconds=1)
            self._tokens = {value: Token(value, t.permissions, t.repositories, past)
                            for value, t in self._tokens.items()}

    # ---- observed state ----------------------------------------------------------------------

    def labels(self, repo: str, number: int) -> list[str]:
        with self._lock:
            return list(self._issue(repo, number)["labels"])

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        with self._lock:
            return dict(self._issue(repo, number))

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
        with self._lock:
            self._request_base = host
            reply = self._handle(environ["REQUEST_METHOD"].upper(), path, query, raw_body, headers)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}", list(reply.headers.items()))
        return [payload]

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
            openapi.validate_request(method, path, body)
            self._check_query(method, path, query)
        except AssertionError as exc:
            return self._violation(method, path, str(exc))
        found = self._route(method, path)
        if found is None:
            return self._violation(method, path, f"{where}: the fake does not serve this operation")
        template, handler, needs, params = found
        call = Call(method, path, params, query, body, headers)
        if self.rate_limit_used >= self.rate_limit:
            return self._finish(call, Reply(403, {"message": "API rate limit exceeded for installation ID "
                                                  f"{self.installation_id}.", "documentation_url": DOCS}))
        try:
            self._authenticate(call, needs)
            reply = handler(call)
        except Refused as refused:
            reply = Reply(refused.status, {"message": refused.message, "documentation_url": DOCS})
        except Exception as exc:  # a defect of the fake itself: fail the test that met it
            return self._violation(method, path, f"{where}: the fake failed: {type(exc).__name__}: {exc}")
        if 200 <= reply.status < 400:
            try:
                openapi.validate_response(method, path, reply.status, reply.body)
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
                            Reply(500, {"message": f"fake GitHub: {message}", "documentation_url": DOCS}))

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
        answer = self._rebase(_raw_example("GET", "/repos/{owner}/{repo}/installation", 200))
        base = self._base()
        answer.update(
            id=self.installation_id, app_id=int(self.app_id), app_slug=self.app_slug,
            account=self._user(self.owner, "Organization"), target_type="Organization",
            permissions=dict(self.app_permissions), events=sorted(APP_EVENTS),
            repository_selection="selected",
            access_tokens_url=f"{base}/app/installations/{self.installation_id}/access_tokens",
            repositories_url=f"{base}/installation/repositories",
            html_url=f"{base}/organizations/{self.owner}/settings/installations/{self.installation_id}",
        )
        return Reply(200, answer)

    # ---- repositories and contents -----------------------------------------------------------

    def _get_repo(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        template = _raw_example("GET", "/repos/{owner}/{repo}", 200)
        for fork_only in ("parent", "source", "template_repository"):
            template.pop(fork_only, None)
        return Reply(200, self._repository_object(full_name, template))

    def _get_content(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        repo = self._repo(full_name)
        ref = call.query.get("ref") or repo["default_branch"]
        if self._resolve(repo, ref) is None:
            raise Refused(404, f"No commit found for the ref {ref}")
        path = call.params["path"].strip("/")
        if path in repo["files"]:
            entry = self._content_entry(full_name, ref, path, repo["files"][path], with_content=True)
            return Reply(200, entry)
        prefix = f"{path}/" if path else ""
        children: dict[str, str | None] = {}
        for file_path, text in repo["files"].items():
            if file_path.startswith(prefix):
                child, _, rest = file_path[len(prefix):].partition("/")
                children[child] = None if rest else text
        if not children:
            raise Refused(404, "Not Found")
        return Reply(200, [self._content_entry(full_name, ref, prefix + child, text)
                           for child, text in sorted(children.items())])

    def _content_entry(self, full_name: str, ref: str, path: str, text: str | None,
                       with_content: bool = False) -> dict[str, Any]:
        base = self._base()
        is_file = text is not None
        sha = blob_sha(text) if is_file else blob_sha(f"tree:{full_name}:{path}")
        kind = "blobs" if is_file else "trees"
        url = f"{base}/repos/{full_name}/contents/{quote(path)}?ref={quote(ref)}"
        git_url = f"{base}/repos/{full_name}/git/{kind}/{sha}"
        html_url = f"{base}/{full_name}/{'blob' if is_file else 'tree'}/{quote(ref)}/{quote(path)}"
        entry: dict[str, Any] = {
            "type": "file" if is_file else "dir", "name": path.rsplit("/", 1)[-1], "path": path,
            "sha": sha, "size": len(text.encode()) if is_file else 0, "url": url, "git_url": git_url,
            "html_url": html_url, "download_url": f"{base}/raw/{full_name}/{quote(ref)}/{quote(path)}"
            if is_file else None,
            "_links": {"self": url, "git": git_url, "html": html_url},
        }
        if with_content and text is not None:
            entry.update(content=base64.encodebytes(text.encode()).decode(), encoding="base64")
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

    # ---- issues, comments, reactions, labels -------------------------------------------------

    def _get_issue(self, call: Call) -> Reply:
        return Reply(200, self._issue_object(self._issue_from(call)))

    def _list_comments(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        since = call.query.get("since", "")
        found = [c for c in self.comments if c["repo"] == issue["repo"]
                 and c["issue_number"] == issue["number"] and c["updated_at"] >= since]
        return self._page(call, [self._comment_object(c) for c in found])

    def _create_comment(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        comment = self._new_comment(issue, call.body["body"], f"{self.app_slug}[bot]", "Bot")
        return Reply(201, self._comment_object(comment))

    def _update_comment(self, call: Call) -> Reply:
        comment = self._comment_from(call)
        comment.update(body=call.body["body"], updated_at=timestamp())
        return Reply(200, self._comment_object(comment))

    def _react_to_comment(self, call: Call) -> Reply:
        comment = self._comment_from(call)
        return self._react(comment["repo"], "comment_id", comment["id"], call.body["content"])

    def _react_to_issue(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        return self._react(issue["repo"], "issue_number", issue["number"], call.body["content"])

    def _react(self, repo: str, subject: str, key: int, content: str) -> Reply:
        login = f"{self.app_slug}[bot]"
        for reaction in self.reactions:
            if (reaction["repo"], reaction.get(subject), reaction["content"], reaction["user"]) == (
                    repo, key, content, login):
                return Reply(200, self._reaction_object(reaction))  # GitHub's answer to a repeat
        reaction = {"id": next(self._ids), "repo": repo, subject: key, "content": content, "user": login,
                    "created_at": timestamp()}
        self.reactions.append(reaction)
        return Reply(201, self._reaction_object(reaction))

    def _add_labels(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        for label in call.body.get("labels", []):
            name = label if isinstance(label, str) else label["name"]
            if name not in issue["labels"]:
                issue["labels"].append(name)
        return Reply(200, [self._label_object(issue["repo"], name) for name in issue["labels"]])

    def _remove_label(self, call: Call) -> Reply:
        issue = self._issue_from(call)
        name = call.params["name"]
        if name not in issue["labels"]:
            raise Refused(404, "Label does not exist")
        issue["labels"].remove(name)
        return Reply(200, [self._label_object(issue["repo"], label) for label in issue["labels"]])

    # ---- check runs --------------------------------------------------------------------------

    def _create_check_run(self, call: Call) -> Reply:
        full_name = f"{call.params['owner']}/{call.params['repo']}"
        body = call.body
        if body["head_sha"] not in self._repo(full_name)["commits"]:
            raise Refused(422, f"No commit found for SHA: {body['head_sha']}")
        run = {"id": next(self._ids), "repo": full_name, "name": body["name"], "head_sha": body["head_sha"],
               "status": "queued", "conclusion": None, "external_id": "", "output": {},
               "details_url": None, "started_at": timestamp(), "completed_at": None}
        self._apply_check_run(run, body)
        self.check_runs[run["id"]] = run
        return Reply(201, self._check_run_object(run))

    def _update_check_run(self, call: Call) -> Reply:
        run = self._check_run_from(call)
        self._apply_check_run(run, call.body or {})
        return Reply(200, self._check_run_object(run))

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
        pulls.sort(key=lambda p: p["number"], reverse=call.query.get("direction", "desc") == "desc")
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

    # ---- state helpers -----------------------------------------------------------------------

    def _commit(self, repo: dict[str, Any]) -> None:
        digest = blob_sha(json.dumps([repo["full_name"], repo["head_sha"], repo["files"]], sort_keys=True))
        repo["head_sha"] = digest
        repo["commits"].add(digest)

    def _repo(self, full_name: str) -> dict[str, Any]:
        repo = self._repos.get(full_name)
        if repo is None:
            raise KeyError(f"no repository {full_name}: add it with add_repo first")
        return repo

    def _resolve(self, repo: dict[str, Any], ref: str) -> str | None:
        ref = ref.removeprefix("refs/").removeprefix("heads/")
        if ref in repo["commits"]:
            return ref
        if ref == repo["default_branch"]:
            return repo["head_sha"]
        for (full_name, _), issue in self._issues.items():
            if full_name == repo["full_name"] and issue["pull_request"] and issue["head_ref"] == ref:
                return issue["head_sha"]
        return None

    def _new_issue(self, repo: str, number: int, title: str, body: str, author: str,
                   labels: tuple[str, ...], state: str) -> dict[str, Any]:
        self._repo(repo)
        if (repo, number) in self._issues:
            raise ValueError(f"{repo}#{number} exists already")
        issue = {"repo": repo, "number": number, "id": next(self._ids), "title": title, "body": body,
                 "author": author, "labels": list(labels), "state": state, "locked": False,
                 "pull_request": False, "created_at": timestamp(), "updated_at": timestamp()}
        self._issues[(repo, number)] = issue
        return issue

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
        comment = {"id": next(self._ids), "repo": issue["repo"], "issue_number": issue["number"],
                   "body": body, "user": login, "user_type": user_type,
                   "created_at": timestamp(), "updated_at": timestamp()}
        self.comments.append(comment)
        return comment

    # ---- answers, built on GitHub's examples -------------------------------------------------

    def _base(self) -> str:
        return (self.base_url or self._request_base or "http://localhost").rstrip("/")

    def _rebase(self, value: Any) -> Any:
        """Point an example's urls at the fake."""
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
        user_id = self._users.setdefault(login, next(self._ids))
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
                      permissions=dict(self.app_permissions), events=sorted(APP_EVENTS))
        return answer

    def _repository_object(self, full_name: str, template: dict[str, Any]) -> dict[str, Any]:
        repo = self._repos[full_name]
        owner, name = full_name.split("/")
        old_api = template["url"]
        old_html = template["html_url"]
        api = f"{self._base()}/repos/{full_name}"
        html = f"{self._base()}/{full_name}"

        def retarget(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace(old_api, api).replace(old_html, html)
            if isinstance(value, dict):
                return {key: retarget(item) for key, item in value.items()}
            if isinstance(value, list):
                return [retarget(item) for item in value]
            return value

        answer = self._rebase(retarget(template))
        answer.update(id=repo["id"], node_id=node_id("Repository", repo["id"]), name=name,
                      full_name=full_name,
                      owner=self._user(owner, "Organization" if owner == self.owner else "User"),
                      default_branch=repo["default_branch"], private=False, visibility="public",
                      fork=False, archived=False, disabled=False, language=None, url=api, html_url=html,
                      clone_url=f"{html}.git", git_url=f"{html}.git", mirror_url=None)
        return answer

    def _label_object(self, repo: str, name: str) -> dict[str, Any]:
        label_id = self._labels.setdefault((repo, name), next(self._ids))
        return {"id": label_id, "node_id": node_id("Label", label_id), "name": name, "description": None,
                "url": f"{self._base()}/repos/{repo}/labels/{quote(name)}", "color": "ededed",
                "default": False}

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
        answer.update(
            id=issue["id"], node_id=node_id("Issue", issue["id"]), number=issue["number"],
            title=issue["title"],
            body=issue["body"], user=self._user(issue["author"]), state=issue["state"],
            state_reason="completed" if issue["state"] == "closed" else None,
            labels=[self._label_object(issue["repo"], name) for name in issue["labels"]],
            assignee=None, assignees=[], milestone=None, locked=issue["locked"], active_lock_reason=None,
            comments=count, closed_at=issue["updated_at"] if issue["state"] == "closed" else None,
            closed_by=None, created_at=issue["created_at"], updated_at=issue["updated_at"],
            url=api, html_url=html, repository_url=f"{base}/repos/{issue['repo']}",
            comments_url=f"{api}/comments", events_url=f"{api}/events", labels_url=f"{api}/labels{{/name}}",
            author_association=self._association(issue["repo"], issue["author"]),
        )
        if issue["pull_request"]:
            pulls = f"{base}/repos/{issue['repo']}/pulls/{issue['number']}"
            answer["pull_request"] = {"url": pulls, "html_url": html, "diff_url": f"{html}.diff",
                                      "patch_url": f"{html}.patch", "merged_at": None}
        else:
            answer.pop("pull_request", None)
        return answer

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
        if comment["user_type"] == "Bot":
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
            check_suite={"id": self._suites.setdefault((run["repo"], run["head_sha"]), next(self._ids))},
            app=self._app(),
            pull_requests=[self._pull_minimal(issue) for (repo, _), issue in sorted(self._issues.items())
                           if repo == run["repo"] and issue["pull_request"] and issue["state"] == "open"
                           and issue["head_sha"] == run["head_sha"]],
        )
        return answer

    def _pull_minimal(self, pull: dict[str, Any]) -> dict[str, Any]:
        repo = self._repos[pull["repo"]]
        short = {"id": repo["id"], "url": f"{self._base()}/repos/{pull['repo']}",
                 "name": pull["repo"].split("/")[1]}
        return {"id": pull["id"], "number": pull["number"],
                "url": f"{self._base()}/repos/{pull['repo']}/pulls/{pull['number']}",
                "head": {"ref": pull["head_ref"], "sha": pull["head_sha"], "repo": short},
                "base": {"ref": pull["base_ref"], "sha": repo["head_sha"], "repo": short}}

    def _pull_object(self, pull: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        answer = self._rebase(template)
        base = self._base()
        full_name = pull["repo"]
        owner = full_name.split("/")[0]
        repo = self._repos[full_name]
        api = f"{base}/repos/{full_name}/pulls/{pull['number']}"
        html = f"{base}/{full_name}/pull/{pull['number']}"
        issue_api = f"{base}/repos/{full_name}/issues/{pull['number']}"
        author = self._user(pull["author"])
        repository = self._repository_object(full_name, answer["base"]["repo"])
        answer.update(
            id=pull["id"], node_id=node_id("PullRequest", pull["id"]), number=pull["number"],
            state=pull["state"], title=pull["title"], body=pull["body"], user=author, draft=pull["draft"],
            locked=pull["locked"], active_lock_reason=None,
            labels=[self._label_object(full_name, name) for name in pull["labels"]],
            assignee=None, assignees=[], requested_reviewers=[], requested_teams=[], milestone=None,
            auto_merge=None, merge_commit_sha=None, created_at=pull["created_at"],
            updated_at=pull["updated_at"],
            closed_at=pull["updated_at"] if pull["state"] == "closed" else None, merged_at=None,
            url=api, html_url=html, diff_url=f"{html}.diff", patch_url=f"{html}.patch", issue_url=issue_api,
            commits_url=f"{api}/commits", review_comments_url=f"{api}/comments",
            review_comment_url=f"{base}/repos/{full_name}/pulls/comments{{/number}}",
            comments_url=f"{issue_api}/comments", statuses_url=f"{base}/repos/{full_name}/statuses/"
            f"{pull['head_sha']}",
            author_association=self._association(full_name, pull["author"]),
            head={"label": f"{owner}:{pull['head_ref']}", "ref": pull["head_ref"], "sha": pull["head_sha"],
                  "user": self._user(owner, "Organization"), "repo": repository},
            base={"label": f"{owner}:{pull['base_ref']}", "ref": pull["base_ref"], "sha": repo["head_sha"],
                  "user": self._user(owner, "Organization"), "repo": repository},
            _links={"self": {"href": api}, "html": {"href": html}, "issue": {"href": issue_api},
                    "comments": {"href": f"{issue_api}/comments"},
                    "review_comments": {"href": f"{api}/comments"},
                    "review_comment": {"href": f"{base}/repos/{full_name}/pulls/comments{{/number}}"},
                    "commits": {"href": f"{api}/commits"},
                    "statuses": {"href": f"{base}/repos/{full_name}/statuses/{pull['head_sha']}"}},
        )
        if "merged" in answer:
            answer.update(merged=pull["merged"], mergeable=True, mergeable_state="clean", merged_by=None)
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
        return answer


def generate_app_key() -> tuple[Any, str]:
    """A fresh RSA 2048 key for a test App: (public key, private key as PEM text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key.public_key(), pem


@contextmanager
def running_fake(env: dict[str, str], monkeypatch: Any) -> Iterator[FakeGitHub]:
    """Serve a FakeGitHub with a fresh App key and point the configuration at it.

    Sets GITHUB_API_URL, GITHUB_APP_ID and GITHUB_PRIVATE_KEY both in the process environment and
    in `env`, so a Config built from either sees them. Fails on exit if the fake saw a request
    GitHub would reject or answered one it could not.
    """
    public_key, pem = generate_app_key()
    fake = FakeGitHub(public_key)
    with serve(fake.wsgi) as url:
        fake.base_url = url
        settings = {"GITHUB_API_URL": url, "GITHUB_APP_ID": fake.app_id, "GITHUB_PRIVATE_KEY": pem}
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        env.update(settings)
        try:
            yield fake
        except BaseException as exc:
            if fake.errors:
                exc.add_note("fake GitHub saw requests GitHub would not accept:\n" + "\n".join(fake.errors))
            raise
    assert fake.errors == [], "fake GitHub saw requests GitHub would not accept:\n" + "\n".join(fake.errors)
