"""The per-repository policy file `.github/agent-ops.yml`: parse, validate, explain, fetch.

`parse_policy(text)` is pure and never raises. It reads the YAML into a node tree, so every problem
(YAML syntax, duplicate keys, aliases, JSON Schema violations, the checks a schema cannot express)
carries the line and column it is about. A valid file gives a typed `Policy` with defaults; a
missing file gives `DEFAULT_POLICY`; an invalid file gives `SAFE_POLICY` (no code changes, no
deploys) and the problems, which `problems_markdown` turns into a comment a human can act on.

`shared/schemas/agent_ops.schema.json` is the single source of the validation rules.
`fetch_policy` is the only function here that does I/O: one GET of the Contents API.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import jsonschema
import yaml

from shared.errors import InvalidInput
from shared.github.rest import NotFound

POLICY_PATH = ".github/agent-ops.yml"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "agent_ops.schema.json"
MAX_BYTES = 64 * 1024

ROLES = ("read", "triage", "write", "maintain", "admin")  # ascending
AGENTS = ("code", "test", "qa", "deploy", "scout", "monitor")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
ALWAYS_PROTECTED = ".github/workflows/**"


def role_at_least(role: str, minimum: str) -> bool:
    """Whether `role` is `minimum` or higher. An unknown role (or minimum) is never enough."""
    if role not in ROLES or minimum not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(minimum)


# ---------------------------------------------------------------------------------------------
# The typed policy


@dataclass(frozen=True)
class ApprovalRule:
    count: int = 1
    teams: tuple[str, ...] = ()  # "org/team-slug"
    users: tuple[str, ...] = ()  # logins
    permission: str = "write"  # the lowest role an approver must hold


@dataclass(frozen=True)
class SmokeCheck:
    path: str
    status: int = 200
    max_latency_ms: int = 1000


@dataclass(frozen=True)
class FreezeWindow:
    """One-off (`start` <= now < `end`) or weekly (UTC `days`, `from_time` <= HH:MM <= `to_time`)."""

    reason: str
    start: datetime | None = None
    end: datetime | None = None
    days: tuple[str, ...] = ()
    from_time: str = ""  # "HH:MM"
    to_time: str = ""  # "HH:MM"

    def active(self, now: datetime) -> bool:
        now = _utc(now)
        if self.start is not None and self.end is not None:
            return self.start <= now < self.end
        if self.days:
            return WEEKDAYS[now.weekday()] in self.days and self.from_time <= f"{now:%H:%M}" <= self.to_time
        return False


@dataclass(frozen=True)
class CodeSettings:
    implementer: str = "patch"  # patch | llm | workflow
    workflow: str = "agent.yml"
    model: str = ""  # "" means the deployment's AGENTOPS_LLM_MODEL
    max_files: int = 20
    max_lines: int = 1000
    max_prompt_chars: int = 60_000
    context_paths: tuple[str, ...] = ()
    reviewer_users: tuple[str, ...] = ()
    reviewer_teams: tuple[str, ...] = ()  # "org/team-slug"


@dataclass(frozen=True)
class TestSettings:
    required_checks: tuple[str, ...] = ()
    require_ci: bool = True
    rerun_failed: bool = True
    coverage_artifact: str = "coverage"
    benchmark_artifact: str = "benchmarks"


@dataclass(frozen=True)
class DeploySettings:
    """How a release is judged and tidied, beyond the service, environment, smoke checks and steps."""

    url: str | None = None  # the production URL (no trailing /); None: the one App Engine gives
    analysis_minutes: int = 5  # each canary step's analysis interval
    min_requests: int = 20  # fewer in an interval is inconclusive, never a failure
    inconclusive: Literal["hold", "pass"] = "hold"  # what a step inconclusive twice does
    max_error_rate: float = 0.02  # 0..1
    max_p95_ms: int | None = None  # None: latency is not judged
    keep_versions: int = 3  # versions kept after a release; the serving and previous one always are
    runtime: str = "python312"  # the runtime of versions the versions backend creates


@dataclass(frozen=True)
class NotifySettings:
    mention: str = ""  # "@login" or "@org/team-slug"; "" mentions nobody
    slack: bool = True  # also post to the deployment's Slack webhook, when it has one


@dataclass(frozen=True)
class MonitorSettings:
    """The monitor agent's probes, SLO targets and incident thresholds for the deployed service."""

    health: tuple[SmokeCheck, ...] = (SmokeCheck("/health"),)
    availability: float = 0.999  # the share of probes that must succeed, in (0, 1)
    latency_ms: int = 500  # a successful probe this fast is good
    latency_percent: float = 0.99  # the share of successful probes that must be good, in (0, 1]
    window_days: int = 30
    open_after: int = 3  # consecutive failures that open an incident
    close_after: int = 2  # consecutive successes that close it
    update_minutes: int = 15  # the most often an open incident's issue is edited


@dataclass(frozen=True)
class ScoutPolicy:
    """The repo scout's thresholds (`functions.repo_scout.health.ScoutSettings`) and how often it reads a
    repository in full even when its signature did not change."""

    stale_issue_days: int = 60
    stale_pr_days: int = 30
    first_review_hours: int = 48
    ci_window_days: int = 30
    ci_min_success_rate: float = 0.8  # in (0, 1]
    ci_min_runs: int = 5
    ci_green_days: int = 7
    coverage_window_days: int = 30
    coverage_drop_points: float = 2.0
    stale_exempt_labels: tuple[str, ...] = ("pinned", "security")
    quiet: bool = False  # no health issue; the score and findings are still stored
    refresh_hours: int = 24


@dataclass(frozen=True)
class Policy:
    agents: Mapping[str, bool]  # all of AGENTS
    labels: Mapping[str, str]  # task, in_progress, failed
    approvals: Mapping[str, ApprovalRule]  # only the configured steps
    protected_paths: tuple[str, ...]  # always includes ALWAYS_PROTECTED
    coverage_minimum: float | None
    coverage_max_drop: float
    performance_tolerance_percent: float
    deploy_service: str | None
    deploy_environment: str
    smoke: tuple[SmokeCheck, ...]
    canary_steps: tuple[int, ...]
    watch_minutes: int
    freeze: tuple[FreezeWindow, ...]
    daily_tasks: int
    daily_cost: float | None
    limits: Mapping[str, int]  # only the limited agents
    chatops_permission: str
    chatops_admin_permission: str
    heartbeat_minutes: int
    max_attempts: int
    code: CodeSettings = field(default_factory=lambda: CodeSettings())
    tests: TestSettings = field(default_factory=lambda: TestSettings())
    qa_high_risk_score: int = 70
    deploy: DeploySettings = field(default_factory=lambda: DeploySettings())
    notify: NotifySettings = field(default_factory=lambda: NotifySettings())
    monitor: MonitorSettings = field(default_factory=lambda: MonitorSettings())
    scout: ScoutPolicy = field(default_factory=lambda: ScoutPolicy())

    def agent_enabled(self, agent: str) -> bool:
        """Whether `agent` may act. The deploy agent also needs a service to deploy."""
        if not self.agents.get(agent, False):
            return False
        return agent != "deploy" or bool(self.deploy_service)

    def approval_for(self, step: str) -> ApprovalRule | None:
        return self.approvals.get(step)

    def active_freeze(self, now: datetime) -> FreezeWindow | None:
        return next((window for window in self.freeze if window.active(now)), None)

    def limit_for(self, agent: str) -> int | None:
        return self.limits.get(agent)


_DEFAULT_AGENTS = {"code": True, "test": True, "qa": True, "deploy": False, "scout": True, "monitor": True}
_DEFAULT_LABELS = {"task": "agent-task", "in_progress": "agent:in-progress", "failed": "agent:failed"}
_DEFAULT_LIMITS: dict[str, int | None] = {"code": 1, "deploy": 1}


def _utc(moment: datetime) -> datetime:
    # A naive time is taken as UTC, never as the machine's local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _build(document: Mapping[str, Any]) -> Policy:
    """A Policy from a document that has passed every check; absent keys take their defaults."""
    def section(name: str) -> Mapping[str, Any]:
        return document.get(name) or {}

    thresholds = section("thresholds")
    coverage = thresholds.get("coverage") or {}
    performance = thresholds.get("performance") or {}
    deploy = section("deploy")
    budget = section("budget")
    chatops = section("chatops")
    stall = section("stall")
    code = section("code")
    reviewers = code.get("reviewers") or {}
    tests = section("tests")
    notify = section("notify")
    monitor = section("monitor")
    slo = monitor.get("slo") or {}
    incident = monitor.get("incident") or {}
    limits = {**_DEFAULT_LIMITS, **section("limits")}
    paths = [ALWAYS_PROTECTED, *document.get("protected_paths", ())]
    daily_cost = budget.get("daily_cost")
    minimum = coverage.get("minimum")
    url, p95 = deploy.get("url"), deploy.get("max_p95_ms")
    health = monitor.get("health")
    return Policy(
        agents=MappingProxyType({**_DEFAULT_AGENTS, **section("agents")}),
        labels=MappingProxyType({**_DEFAULT_LABELS, **section("labels")}),
        approvals=MappingProxyType({
            step: ApprovalRule(
                count=int(rule.get("count", 1)),
                teams=tuple(rule.get("teams", ())),
                users=tuple(rule.get("users", ())),
                permission=rule.get("permission", "write"),
            )
            for step, rule in section("approvals").items()
        }),
        protected_paths=tuple(dict.fromkeys(paths)),
        coverage_minimum=None if minimum is None else float(minimum),
        coverage_max_drop=float(coverage.get("max_drop", 1.0)),
        performance_tolerance_percent=float(performance.get("tolerance_percent", 10.0)),
        deploy_service=deploy.get("service") or None,
        deploy_environment=deploy.get("environment", "production"),
        smoke=tuple(_check(check) for check in deploy.get("smoke", ())),
        canary_steps=tuple(int(step) for step in deploy.get("canary_steps", (10, 50, 100))),
        watch_minutes=int(deploy.get("watch_minutes", 15)),
        freeze=tuple(_window(window) for window in document.get("freeze", ())),
        daily_tasks=int(budget.get("daily_tasks", 50)),
        daily_cost=None if daily_cost is None else float(daily_cost),
        limits=MappingProxyType({agent: int(n) for agent, n in limits.items() if n is not None}),
        chatops_permission=chatops.get("permission", "write"),
        chatops_admin_permission=chatops.get("admin_permission", "maintain"),
        heartbeat_minutes=int(stall.get("heartbeat_minutes", 10)),
        max_attempts=int(stall.get("max_attempts", 2)),
        code=CodeSettings(
            implementer=code.get("implementer", "patch"),
            workflow=code.get("workflow", "agent.yml"),
            model=code.get("model", ""),
            max_files=int(code.get("max_files", 20)),
            max_lines=int(code.get("max_lines", 1000)),
            max_prompt_chars=int(code.get("max_prompt_chars", 60_000)),
            context_paths=tuple(code.get("context_paths", ())),
            reviewer_users=tuple(reviewers.get("users", ())),
            reviewer_teams=tuple(reviewers.get("teams", ())),
        ),
        tests=TestSettings(
            required_checks=tuple(tests.get("required_checks", ())),
            require_ci=bool(tests.get("require_ci", True)),
            rerun_failed=bool(tests.get("rerun_failed", True)),
            coverage_artifact=tests.get("coverage_artifact", "coverage"),
            benchmark_artifact=tests.get("benchmark_artifact", "benchmarks"),
        ),
        qa_high_risk_score=int(section("qa").get("high_risk_score", 70)),
        deploy=DeploySettings(
            url=None if url is None else url.rstrip("/"),
            analysis_minutes=int(deploy.get("analysis_minutes", _DEPLOY.analysis_minutes)),
            min_requests=int(deploy.get("min_requests", _DEPLOY.min_requests)),
            inconclusive=deploy.get("inconclusive", _DEPLOY.inconclusive),
            max_error_rate=float(deploy.get("max_error_rate", _DEPLOY.max_error_rate)),
            max_p95_ms=None if p95 is None else int(p95),
            keep_versions=int(deploy.get("keep_versions", _DEPLOY.keep_versions)),
            runtime=deploy.get("runtime", _DEPLOY.runtime),
        ),
        notify=NotifySettings(
            mention=notify.get("mention", _NOTIFY.mention),
            slack=bool(notify.get("slack", _NOTIFY.slack)),
        ),
        monitor=MonitorSettings(
            health=_MONITOR.health if health is None else tuple(_check(check) for check in health),
            availability=float(slo.get("availability", _MONITOR.availability)),
            latency_ms=int(slo.get("latency_ms", _MONITOR.latency_ms)),
            latency_percent=float(slo.get("latency_percent", _MONITOR.latency_percent)),
            window_days=int(slo.get("window_days", _MONITOR.window_days)),
            open_after=int(incident.get("open_after", _MONITOR.open_after)),
            close_after=int(incident.get("close_after", _MONITOR.close_after)),
            update_minutes=int(incident.get("update_minutes", _MONITOR.update_minutes)),
        ),
        scout=_scout(section("scout")),
    )


def _scout(scout: Mapping[str, Any]) -> ScoutPolicy:
    values: dict[str, Any] = {}
    for name, default in dataclasses.asdict(_SCOUT).items():
        value = scout.get(name, default)
        if isinstance(default, bool):
            values[name] = bool(value)
        elif isinstance(default, int):
            values[name] = int(value)
        elif isinstance(default, float):
            values[name] = float(value)
        else:
            values[name] = tuple(str(item) for item in value)
    return ScoutPolicy(**values)


_DEPLOY, _NOTIFY, _MONITOR, _SCOUT = DeploySettings(), NotifySettings(), MonitorSettings(), ScoutPolicy()


def _check(check: Mapping[str, Any]) -> SmokeCheck:
    return SmokeCheck(check["path"], int(check.get("status", 200)), int(check.get("max_latency_ms", 1000)))


def _window(window: Mapping[str, Any]) -> FreezeWindow:
    weekly = window.get("weekly")
    if weekly is not None:
        return FreezeWindow(window["reason"], days=tuple(weekly["days"]),
                            from_time=weekly["from"], to_time=weekly["to"])
    return FreezeWindow(window["reason"], start=_timestamp(window["start"]), end=_timestamp(window["end"]))


def _timestamp(text: str) -> datetime:
    """An RFC 3339 date-time with an offset, in UTC. Raises ValueError."""
    return datetime.fromisoformat(text.upper()).astimezone(UTC)


DEFAULT_POLICY = _build({"version": 1})
SAFE_POLICY = dataclasses.replace(
    DEFAULT_POLICY, agents=MappingProxyType({**DEFAULT_POLICY.agents, "code": False, "deploy": False})
)


# ---------------------------------------------------------------------------------------------
# Loads and problems


@dataclass(frozen=True)
class PolicyProblem:
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    path: str  # like "approvals.deploy.count" or "freeze[1].weekly.from"; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = POLICY_PATH + (f" line {self.line}" if self.line else "")
        return f"{where}, {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class PolicyLoad:
    policy: Policy
    source: str  # "default" (no file) | "file" | "invalid"
    problems: tuple[PolicyProblem, ...] = ()
    blob_sha: str = ""

    @property
    def valid(self) -> bool:
        return self.source != "invalid"


def _invalid(problems: Iterable[PolicyProblem], blob_sha: str) -> PolicyLoad:
    ordered = sorted(set(problems), key=lambda p: (p.line, p.column, p.path, p.message))
    return PolicyLoad(SAFE_POLICY, "invalid", tuple(ordered), blob_sha)


def _whole_file(message: str, blob_sha: str = "") -> PolicyLoad:
    return _invalid([PolicyProblem(0, 0, "", message)], blob_sha)


def parse_policy(text: str | None, blob_sha: str = "") -> PolicyLoad:
    """The policy in `text` (the file's content; None when there is no file). Never raises."""
    if text is None:
        return PolicyLoad(DEFAULT_POLICY, "default", (), blob_sha)
    if not isinstance(text, str):
        return _whole_file(f"expected the file's text, got {type(text).__name__}", blob_sha)
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_BYTES:
        return _whole_file(f"the file is {size} bytes; the limit is {MAX_BYTES} bytes (64 KiB)", blob_sha)
    try:
        document, problems = _read(text)
    except RecursionError:
        return _whole_file("the file is nested too deeply to read", blob_sha)
    if document is not None and not problems:
        try:
            return PolicyLoad(_build(document), "file", (), blob_sha)
        except (KeyError, TypeError, ValueError) as exc:  # a check missed something: stay safe
            problems = [PolicyProblem(0, 0, "", f"the file could not be applied: {exc!r}")]
    return _invalid(problems, blob_sha)


def _read(text: str) -> tuple[dict[str, Any] | None, list[PolicyProblem]]:
    """The document and every problem with it, each with its line."""
    try:
        root = _Loader(text).get_single_node()
    except yaml.MarkedYAMLError as exc:
        return None, [_yaml_problem(exc)]
    except yaml.YAMLError as exc:  # the reader: a character YAML does not allow
        return None, [_reader_problem(text, exc)]
    if root is None:
        return None, [PolicyProblem(1, 1, "", "the file is empty: delete it to use the defaults, "
                                               "or write version: 1 and the keys you want to change")]
    tree = _Tree()
    document = tree.value(root, ())
    if tree.problems and not isinstance(document, dict):
        return None, tree.problems
    if not isinstance(document, dict):
        line, column = _position(root.start_mark)
        return None, [PolicyProblem(line, column, "", f"the top level must be a mapping of keys, like "
                                                      f"version: 1, not {_describe(document)}")]
    schema_problems = list(_schema_problems(document, tree))
    judged = {problem.path for problem in schema_problems}
    semantic = [problem for problem in _semantic_problems(document, tree) if problem.path not in judged]
    return document, [*tree.problems, *schema_problems, *semantic]


def _yaml_problem(exc: yaml.MarkedYAMLError) -> PolicyProblem:
    mark = exc.problem_mark or exc.context_mark
    line, column = _position(mark) if mark is not None else (0, 0)
    message = str(exc.problem or exc.context or "could not be read")
    if exc.context and exc.problem and exc.context_mark is not None:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return PolicyProblem(line, column, "", f"invalid YAML: {_short_text(message)}")


def _reader_problem(text: str, exc: yaml.YAMLError) -> PolicyProblem:
    position, character = getattr(exc, "position", None), getattr(exc, "character", None)
    if not isinstance(position, int) or not isinstance(character, int):
        return PolicyProblem(0, 0, "", f"invalid YAML: {_short_text(str(exc))}")
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return PolicyProblem(line, column, "", f"invalid YAML: the character #x{character:04x} is not allowed "
                                           "(control characters and invalid Unicode cannot appear)")


def _position(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


# ---------------------------------------------------------------------------------------------
# YAML: a safe loader that keeps what the author wrote, and a node tree with positions

_ALIAS_TAG = "!agent-ops/alias"
_SCALAR_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")}
_TEXT_TAGS = {"tag:yaml.org,2002:value", "tag:yaml.org,2002:merge"}  # "=" and "<<" as plain text
_SEQUENCE_TAG = "tag:yaml.org,2002:seq"
_MAPPING_TAG = "tag:yaml.org,2002:map"
_MAX_DEPTH = 32

# YAML 1.1 reads 16:00 as the number 960 (base 60) and an unquoted date as a datetime. This file
# has times of day and RFC 3339 strings, so both stay text. Everything else resolves as usual.
_INT = re.compile(r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$""")
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_REPLACED = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


class _Loader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent: Any, index: Any) -> Any:
        # An alias becomes a marker node where it is used: nothing is shared or expanded, so an
        # alias bomb costs nothing, and the problem names the line of the alias itself.
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            return yaml.ScalarNode(_ALIAS_TAG, event.anchor, event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))

_NodePath = tuple[str | int, ...]


class _Tree:
    """Plain data from a node tree, the position of every key and value, and structural problems."""

    def __init__(self) -> None:
        self._constructor = yaml.constructor.SafeConstructor()  # for scalars only
        self.values: dict[_NodePath, Any] = {}  # path -> start mark of the value
        self.keys: dict[_NodePath, Any] = {}  # path -> start mark of the key
        self.problems: list[PolicyProblem] = []
        self.unusable: set[_NodePath] = set()  # values replaced by None after a problem

    def _problem(self, mark: Any, path: _NodePath, message: str, unusable: bool = True) -> None:
        line, column = _position(mark)
        self.problems.append(PolicyProblem(line, column, dotted(path), message))
        if unusable:
            self.unusable.add(path)

    def value(self, node: Any, path: _NodePath) -> Any:
        self.values[path] = node.start_mark
        if len(path) > _MAX_DEPTH:
            self._problem(node.start_mark, path, "nested too deeply")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQUENCE_TAG:
                self._problem(node.start_mark, path, f"unsupported YAML tag {_tag(node.tag)}")
                return None
            return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: Any, path: _NodePath) -> Any:
        if node.tag != _MAPPING_TAG:
            self._problem(node.start_mark, path, f"unsupported YAML tag {_tag(node.tag)}")
            return None
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _ALIAS_TAG:
                self._problem(key_node.start_mark, path, "a key must be a plain name, not a list, "
                                                         "a mapping or an alias", unusable=False)
                continue
            key = key_node.value
            child = (*path, key)
            if key in first_line:
                self._problem(key_node.start_mark, child,
                              f"duplicate key {_short(key)} (first at line {first_line[key]}): keep one",
                              unusable=False)
                continue
            first_line[key] = key_node.start_mark.line + 1
            self.keys[child] = key_node.start_mark
            result[key] = self.value(value_node, child)
        return result

    def _scalar(self, node: Any, path: _NodePath) -> Any:
        if node.tag == _ALIAS_TAG:
            self._problem(node.start_mark, path, f"aliases (*{_short_text(node.value, 40)}) are not "
                                                 "supported: write the value out in full")
            return None
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self._problem(node.start_mark, path, f"unsupported YAML tag {_tag(node.tag)}")
            return None
        try:
            value = self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, KeyError, TypeError):
            self._problem(node.start_mark, path,
                          f"{_short(node.value)} cannot be read as {node.tag.rsplit(':', 1)[-1]}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self._problem(node.start_mark, path, f"{_short(node.value)} is not a finite number")
            return None
        return value

    def where(self, path: _NodePath) -> tuple[int, int]:
        """Where a problem about `path` points: the value when it is on its key's line, else the key."""
        while path and path not in self.values:
            path = path[:-1]
        value = self.values.get(path)
        key = self.keys.get(path)
        mark = key if key is not None and (value is None or value.line != key.line) else value
        return _position(mark) if mark is not None else (0, 0)

    def key_position(self, path: _NodePath) -> tuple[int, int]:
        return _position(self.keys[path]) if path in self.keys else self.where(path)


def dotted(path: Iterable[str | int]) -> str:
    """("approvals", "deploy", "count") -> "approvals.deploy.count"; ("freeze", 1) -> "freeze[1]"."""
    text = ""
    for part in path:
        name = _short_text(str(part), 80)
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text


# ---------------------------------------------------------------------------------------------
# The JSON Schema, and its errors in words a repository owner understands


@functools.cache
def policy_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


_TYPE_NAMES = {
    "integer": "a whole number", "number": "a number", "string": "text", "boolean": "true or false",
    "object": "a mapping of keys", "array": "a list", "null": "nothing (null)",
}


def _schema_problems(document: dict[str, Any], tree: _Tree) -> Iterator[PolicyProblem]:
    for error in _validator().iter_errors(document):
        path: _NodePath = tuple(error.absolute_path)
        if any(path[: len(bad)] == bad for bad in tree.unusable):
            continue  # already reported by the tree
        yield from _explain(error, path, tree)


def _explain(error: jsonschema.ValidationError, path: _NodePath, tree: _Tree) -> Iterator[PolicyProblem]:
    def at(where: _NodePath, message: str, key: bool = False) -> PolicyProblem:
        line, column = tree.key_position(where) if key else tree.where(where)
        return PolicyProblem(line, column, dotted(where), _short_text(message, 400))

    kind, expected, instance, schema = error.validator, error.validator_value, error.instance, error.schema
    if kind == "additionalProperties":
        known = list(schema.get("properties", {}))
        for key in instance:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(known)
                yield at((*path, key), f"unknown key {_short(key)}; {hint}", key=True)
    elif kind == "required":
        for key in expected:
            if key not in instance:
                yield at(path, f"missing required key {key!r}", key=True)
    elif kind == "dependentRequired":
        for key, needed in expected.items():
            for other in needed:
                if key in instance and other not in instance:
                    yield at(path, f"{key!r} needs {other!r} as well", key=True)
    elif kind == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        names = " or ".join(_TYPE_NAMES.get(name, name) for name in wanted)
        yield at(path, f"expected {names}, got {_describe(instance)}")
    elif kind == "enum":
        yield at(path, f"{_short(instance)} is not one of: " + ", ".join(str(value) for value in expected))
    elif kind == "const":
        yield at(path, f"must be {json.dumps(expected)}, not {_short(instance)}")
    elif kind == "pattern" and schema.get("description"):
        yield at(path, f"{_short(instance)} is not valid: expected {_first_sentence(schema['description'])}")
    elif kind == "oneOf":
        either = "either " + " or ".join(branch.get("title", "?") for branch in expected)
        yield at(path, f"must be {either}" if error.context else f"must be {either}, not both", key=True)
    elif kind == "exclusiveMaximum":
        yield at(path, f"{_short(instance)} must be less than {expected}")
    elif kind == "exclusiveMinimum":
        yield at(path, f"{_short(instance)} must be more than {expected}")
    elif kind == "minItems":
        yield at(path, f"lists {len(instance)} item{'s' if len(instance) != 1 else ''}; at least {expected} "
                       f"{'is' if expected == 1 else 'are'} needed")
    elif kind == "uniqueItems":
        yield at(path, "lists an item more than once")
    else:
        yield at(path, error.message)


def _first_sentence(text: str) -> str:
    sentence = text.split(". ", 1)[0].rstrip(".")
    return sentence[:1].lower() + sentence[1:]


# ---------------------------------------------------------------------------------------------
# The rules a schema cannot state

_TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def _semantic_problems(document: Mapping[str, Any], tree: _Tree) -> Iterator[PolicyProblem]:
    def at(path: _NodePath, message: str) -> PolicyProblem:
        line, column = tree.where(path)
        return PolicyProblem(line, column, dotted(path), message)

    deploy = document.get("deploy")
    steps = deploy.get("canary_steps") if isinstance(deploy, dict) else None
    if isinstance(steps, list) and steps and all(_is_int(step) for step in steps):
        for index in range(1, len(steps)):
            if steps[index] <= steps[index - 1]:
                yield at(("deploy", "canary_steps", index),
                         f"{steps[index]} must be greater than the step before it ({steps[index - 1]})")
        if steps[-1] != 100:
            yield at(("deploy", "canary_steps", len(steps) - 1),
                     f"the last step must be 100 (all traffic), not {steps[-1]}")

    url = deploy.get("url") if isinstance(deploy, dict) else None
    if isinstance(url, str):
        problem = _url_problem(url)
        if problem:
            yield at(("deploy", "url"), problem)

    monitor = document.get("monitor")
    health = monitor.get("health") if isinstance(monitor, dict) else None
    first_index: dict[str, int] = {}
    for index, check in enumerate(health if isinstance(health, list) else ()):
        path = check.get("path") if isinstance(check, dict) else None
        if isinstance(path, str) and first_index.setdefault(path, index) != index:
            yield at(("monitor", "health", index, "path"),
                     f"{_short(path)} is probed already by monitor.health[{first_index[path]}]: "
                     "list each path once")

    freeze = document.get("freeze")
    for index, window in enumerate(freeze if isinstance(freeze, list) else ()):
        if isinstance(window, dict):
            yield from _window_problems(window, ("freeze", index), at)

    approvals = document.get("approvals")
    for step, rule in (approvals.items() if isinstance(approvals, dict) else ()):
        if not isinstance(rule, dict):
            continue
        count, users, teams = rule.get("count", 1), rule.get("users") or [], rule.get("teams") or []
        if _is_int(count) and isinstance(users, list) and users and not teams and count > len(set(users)):
            yield at(("approvals", step, "count"),
                     f"needs {count} approvals but only {len(set(users))} users may approve and no teams "
                     "are named: lower count or add users or teams")


def _url_problem(url: str) -> str:
    """Why `url` cannot be the production URL; "" when it can. The URL is never repeated: it could
    hold a password, and the problems are posted as a comment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        return "is not a valid URL (like https://api.example.com)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not a valid URL: expected http:// or https:// and a host name, like https://api.example.com"
    if "@" in parts.netloc:
        return ("must not hold a user name or password: anyone who can read the repository can read this "
                "file, so remove them (and change the password)")
    if "?" in url or "#" in url:
        return "must not have a query or a fragment: the health paths are added to its end"
    return ""


def _window_problems(window: Mapping[str, Any], path: _NodePath, at: Any) -> Iterator[PolicyProblem]:
    moments = {}
    for name in ("start", "end"):
        if isinstance(window.get(name), str):
            try:
                moments[name] = _timestamp(window[name])
            except ValueError:
                yield at((*path, name), f"{_short(window[name])} is not a valid date and time "
                                        "(RFC 3339, like 2026-12-24T00:00:00Z)")
    if len(moments) == 2 and moments["start"] >= moments["end"]:
        yield at((*path, "end"), f"end {_short(window['end'])} must be after start {_short(window['start'])}")
    weekly = window.get("weekly")
    if not isinstance(weekly, dict):
        return
    times = {}
    for name in ("from", "to"):
        if isinstance(weekly.get(name), str):
            if _TIME_OF_DAY.match(weekly[name]):
                times[name] = weekly[name]
            else:
                yield at((*path, "weekly", name), f"{_short(weekly[name])} is not a time of day "
                                                  "(HH:MM from 00:00 to 23:59)")
    if len(times) == 2 and times["from"] > times["to"]:
        yield at((*path, "weekly", "to"), f"to {times['to']} is before from {times['from']}: a weekly "
                                          "window cannot cross midnight, so split it into two windows")


def _tag(tag: str) -> str:
    return _short_text(tag.replace("tag:yaml.org,2002:", "!!", 1), 80)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short_text(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any) -> str:
    """A value quoted for a message, short enough to read."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(_short_text(value, 200))
    return _short_text(repr(value), 200)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return _short(value)
    if isinstance(value, int | float):
        return f"the number {_short(value)}"
    if isinstance(value, str):
        return f"the text {_short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# The report a human reads

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_URL = re.compile(r"^https?://[^\s<>()\[\]`\"']+$")
_MAX_LISTED = 50


def _escape(text: str, limit: int = 200) -> str:
    """Text from the file, made inert: no HTML, no Markdown, no mentions, one line, short."""
    text = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", _short_text(str(text), limit))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return text.replace("@", "@\u200b")


def problems_markdown(load: PolicyLoad, html_url: str = "") -> str:
    """A comment body that explains an invalid policy file; "" when the load has no problems."""
    if not load.problems:
        return ""
    link = f"[`{POLICY_PATH}`]({html_url})" if _URL.match(html_url or "") else f"`{POLICY_PATH}`"
    count = len(load.problems)
    lines = [
        f"### Agent Ops cannot use `{POLICY_PATH}`",
        "",
        f"{link} has {count} problem{'s' if count != 1 else ''}, so it is ignored until it is fixed:",
        "",
    ]
    for problem in load.problems[:_MAX_LISTED]:
        where = f"line {problem.line}" if problem.line else "the file"
        subject = f", {_escape(problem.path, 120)}" if problem.path else ""
        lines.append(f"- **{where}**{subject}: {_escape(problem.message, 500)}")
    if count > _MAX_LISTED:
        lines.append(f"- and {count - _MAX_LISTED} more")
    on = [agent for agent in AGENTS if SAFE_POLICY.agent_enabled(agent)]
    off = [agent for agent in AGENTS if not SAFE_POLICY.agent_enabled(agent)]
    lines += [
        "",
        f"**What happens now:** this repository runs on the safe default. The {_and(off)} agents are "
        f"off, so no code is changed and nothing is deployed; the {_and(on)} agents run on their defaults.",
        "",
        f"**How to fix it:** correct each line above in `{POLICY_PATH}` (on the branch that changed it, "
        "or the default branch) and push; the next event reads the file again. To use the defaults "
        "instead, delete the file. The Agent Ops reference for agent-ops.yml lists every key with its "
        "type and default.",
    ]
    if load.blob_sha:
        lines += ["", f"<sub>file blob {_escape(load.blob_sha[:12], 12)}</sub>"]
    return "\n".join(lines) + "\n"


def _and(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


# ---------------------------------------------------------------------------------------------
# Reading the file through the Contents API


class ContentsClient(Protocol):
    """The one call `fetch_policy` needs; `shared.github.rest.RestClient` is one."""

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> Any: ...


_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def unreadable(reason: object) -> PolicyLoad:
    """The load for a policy file that cannot be read (forbidden, a suspended installation): the safe
    policy, with the reason as its one problem."""
    problem = PolicyProblem(0, 0, "", f"the file cannot be read: {reason}")
    return PolicyLoad(SAFE_POLICY, "invalid", (problem,))


def fetch_policy(client: ContentsClient, repository: str, ref: str | None = None) -> PolicyLoad:
    """The policy of `repository` at `ref` (the default branch when None).

    A missing file is the default policy; NotFound is the answer, not an error. Rate limits,
    server errors and Forbidden propagate for the caller's retry policy.
    """
    if not _REPOSITORY.match(repository) or repository.split("/")[1] in (".", ".."):
        raise InvalidInput(f"read {POLICY_PATH}: {repository!r} is not owner/name")
    try:
        body = client.request("GET", f"/repos/{repository}/contents/{POLICY_PATH}",
                              params={"ref": ref} if ref else None)
    except NotFound:
        return parse_policy(None)
    return policy_from_content(body)


def policy_from_content(body: Any) -> PolicyLoad:
    """The policy in a Contents API answer for the file. Pure; never raises."""
    if isinstance(body, list):
        return _whole_file(f"{POLICY_PATH} is a directory; it must be a file")
    if not isinstance(body, dict):
        return _whole_file("GitHub answered with something other than a file's content")
    sha = body.get("sha") if isinstance(body.get("sha"), str) else ""
    kind = body.get("type")
    if kind != "file":
        return _whole_file(f"{POLICY_PATH} is a {_short(kind)}, not a file", sha)
    size = body.get("size")
    if _is_int(size) and size > MAX_BYTES:
        return _whole_file(f"the file is {size} bytes; the limit is {MAX_BYTES} bytes (64 KiB)", sha)
    content = body.get("content")
    if body.get("encoding") != "base64" or not isinstance(content, str):
        return _whole_file(f"GitHub sent the file with encoding {_short(body.get('encoding'))}; "
                           "expected base64", sha)
    try:
        raw = base64.b64decode("".join(content.split()), validate=True)
    except (binascii.Error, ValueError):
        return _whole_file("the file's content from GitHub is not valid base64", sha)
    if len(raw) > MAX_BYTES:
        return _whole_file(f"the file is {len(raw)} bytes; the limit is {MAX_BYTES} bytes (64 KiB)", sha)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _whole_file(f"the file is not UTF-8 text (byte {exc.start} is invalid)", sha)
    return parse_policy(text, sha)
