"""The policy file .github/agent-ops.yml: parsing, validation with lines, reports, fetching."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.errors import InvalidInput
from shared.github.rest import Forbidden, NotFound, ServerError
from shared.policy import (
    DEFAULT_POLICY,
    MAX_BYTES,
    POLICY_PATH,
    ROLES,
    SAFE_POLICY,
    SCHEMA_PATH,
    ApprovalRule,
    FreezeWindow,
    PolicyLoad,
    PolicyProblem,
    SmokeCheck,
    fetch_policy,
    parse_policy,
    problems_markdown,
    role_at_least,
)
from tests.support import openapi

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "policy"
DOC = ROOT / "docs" / "agent-ops-yml.md"
CONTENTS_URL = f"/repos/octo-org/widgets/contents/{POLICY_PATH}"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Good files

GOOD = [
    ("minimal", "good/minimal.yml", {"agents": DEFAULT_POLICY.agents, "limits": {"code": 1, "deploy": 1}}),
    ("complete", "good/complete.yml", {
        "agents": {"code": False, "test": True, "qa": False, "deploy": True, "scout": False, "monitor": True},
        "labels": {"task": "ready-for-agent", "in_progress": "bot:working", "failed": "bot:failed"},
        "approvals": {
            "deploy": ApprovalRule(2, ("octo-org/release",), ("octocat",), "maintain"),
            "protected_paths": ApprovalRule(1, (), ("hubot",), "admin"),
        },
        "protected_paths": (".github/workflows/**", "terraform/**", "src/billing/**"),
        "coverage_minimum": 85.0, "coverage_max_drop": 0.25, "performance_tolerance_percent": 5.0,
        "deploy_service": "api", "deploy_environment": "staging",
        "smoke": (SmokeCheck("/health"), SmokeCheck("/api/v1/status", 204, 250)),
        "canary_steps": (5, 25, 100), "watch_minutes": 30,
        "freeze": (
            FreezeWindow("holidays", start=datetime(2026, 12, 23, 23, tzinfo=UTC),
                         end=datetime(2026, 12, 27, tzinfo=UTC)),
            FreezeWindow("weekend", days=("fri", "sat", "sun"), from_time="16:00", to_time="23:59"),
        ),
        "daily_tasks": 10, "daily_cost": 1500.5,
        "limits": {"code": 2, "deploy": 1, "test": 4},
        "chatops_permission": "triage", "chatops_admin_permission": "admin",
        "heartbeat_minutes": 5, "max_attempts": 3,
    }),
    ("unquoted-times-and-dates-stay-text", "good/unquoted.yml", {
        "agents": {**DEFAULT_POLICY.agents, "code": False, "deploy": True},
        "freeze": (
            FreezeWindow("maintenance", start=datetime(2026, 7, 1, 22, tzinfo=UTC),
                         end=datetime(2026, 7, 2, 6, tzinfo=UTC)),
            FreezeWindow("standup", days=("mon",), from_time="09:00", to_time="09:30"),
        ),
    }),
    ("limits-paths-and-empty-rule", "good/limits_and_paths.yml", {
        "protected_paths": (".github/workflows/**", "docs/**"),
        "limits": {"deploy": 1, "qa": 3},
        "approvals": {"merge": ApprovalRule()},
        "daily_tasks": 0,
        "canary_steps": (100,),
        "deploy_service": None,
    }),
]


@pytest.mark.parametrize("name,expected", [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_good_files_give_their_policy(name, expected):
    load = parse_policy(fixture(name), blob_sha="abc123")
    assert (load.source, load.problems, load.valid, load.blob_sha) == ("file", (), True, "abc123")
    for field, value in expected.items():
        assert getattr(load.policy, field) == value, field


def test_a_file_that_sets_nothing_is_the_default_policy():
    assert parse_policy(fixture("good/minimal.yml")).policy == DEFAULT_POLICY


def test_missing_file_is_the_default_policy():
    load = parse_policy(None)
    assert (load.source, load.problems, load.valid) == ("default", (), True)
    assert load.policy is DEFAULT_POLICY


def test_defaults():
    policy = DEFAULT_POLICY
    assert dict(policy.agents) == {"code": True, "test": True, "qa": True, "deploy": False, "scout": True,
                                   "monitor": True}
    assert dict(policy.labels) == {"task": "agent-task", "in_progress": "agent:in-progress",
                                   "failed": "agent:failed"}
    assert (dict(policy.approvals), policy.protected_paths) == ({}, (".github/workflows/**",))
    assert (policy.coverage_minimum, policy.coverage_max_drop, policy.performance_tolerance_percent) == (
        None, 1.0, 10.0)
    assert (policy.deploy_service, policy.deploy_environment, policy.smoke, policy.canary_steps,
            policy.watch_minutes) == (None, "production", (), (10, 50, 100), 15)
    assert (policy.freeze, policy.daily_tasks, policy.daily_cost, dict(policy.limits)) == (
        (), 50, None, {"code": 1, "deploy": 1})
    assert (policy.chatops_permission, policy.chatops_admin_permission) == ("write", "maintain")
    assert (policy.heartbeat_minutes, policy.max_attempts) == (10, 2)


def test_safe_policy_is_the_default_without_code_changes_or_deploys():
    assert not SAFE_POLICY.agent_enabled("code")
    assert not SAFE_POLICY.agents["deploy"]
    assert dataclasses.replace(SAFE_POLICY, agents=DEFAULT_POLICY.agents) == DEFAULT_POLICY


def test_policies_cannot_be_changed_in_place():
    with pytest.raises(TypeError):
        DEFAULT_POLICY.agents["deploy"] = True  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_POLICY.daily_tasks = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Bad files: every problem, with its line

UNKNOWN = "unknown key"
ALIAS = "aliases (*"
BAD = [
    ("typos", "bad/typos.yml", [
        (2, "agnets", "did you mean 'agents'?"),
        (6, "approvals.deploy.cuont", "did you mean 'count'?"),
        (8, "deploy.servce", "did you mean 'service'?"),
    ]),
    ("types-and-ranges", "bad/types_and_ranges.yml", [
        (3, "agents.code", "expected true or false, got the text 'sure'"),
        (5, "approvals.deploy.count", "-1 is less than the minimum of 1"),
        (5, "approvals.deploy.permission", "'writer' is not one of: read, triage, write, maintain, admin"),
        (6, "approvals.merge.count", "needs 3 approvals but only 2 users may approve"),
        (7, "approvals.protected_paths.teams[0]", "expected a team as org/team-slug"),
        (7, "approvals.protected_paths.users[0]", "expected a GitHub login"),
        (10, "thresholds.coverage.minimum", "120 is greater than the maximum of 100"),
        (12, "deploy.service", "'My_Service' is not valid"),
        (14, "deploy.smoke[0]", "missing required key 'path'"),
        (15, "deploy.smoke[1].path", "starting with /"),
        (15, "deploy.smoke[1].max_latency_ms", "0 is less than the minimum of 1"),
        (17, "budget.daily_tasks", "expected a whole number, got the number 1.5"),
        (19, "chatops.permission", "'owner' is not one of"),
    ]),
    ("duplicate-keys", "bad/duplicate_keys.yml", [
        (4, "agents.code", "duplicate key 'code' (first at line 3)"),
        (7, "deploy", "duplicate key 'deploy' (first at line 5)"),
    ]),
    ("canary-and-freeze", "bad/canary_and_freeze.yml", [
        (4, "deploy.canary_steps[2]", "50 must be greater than the step before it (50)"),
        (4, "deploy.canary_steps[3]", "the last step must be 100"),
        (6, "freeze[0].end", "must be after start"),
        (7, "freeze[1].start", "'2026-02-30T00:00:00Z' is not a valid date and time"),
        (8, "freeze[2].weekly.from", "'25:00' is not a time of day"),
        (9, "freeze[3].weekly.to", "cannot cross midnight"),
        (10, "freeze[4]", "'start' needs 'end' as well"),
        (11, "freeze[5]", "must be either a one-off window with start and end or a weekly window"),
        (12, "freeze[6]", "not both"),
        (13, "freeze[7].weekly.days[0]", "'friday' is not one of: mon, tue"),
        (13, "freeze[7].weekly.from", "'1600' is not valid: expected the UTC time of day"),
    ]),
    ("syntax-error", "bad/syntax_error.yml", [(4, "", "invalid YAML: mapping values are not allowed here")]),
    ("not-a-mapping", "bad/not_a_mapping.yml", [(1, "", "the top level must be a mapping")]),
    ("empty", "bad/empty.yml", [(1, "", "the file is empty: delete it to use the defaults, or")]),
    ("wrong-version", "bad/wrong_version.yml", [(1, "version", "must be 1, not 2")]),
    ("no-version", "bad/no_version.yml", [(2, "", "missing required key 'version'")]),
    ("tags", "bad/tags.yml", [
        (3, "labels.task", "unsupported YAML tag !!python/object/apply:os.system"),
        (4, "budget", "unsupported YAML tag !!set"),
        (6, "stall.heartbeat_minutes", "'.inf' is not a finite number"),
    ]),
    ("alias-bomb", "bad/alias_bomb.yml", [
        (4, "labels.in_progress", ALIAS),
        *[(5, f"protected_paths[{i}]", ALIAS) for i in range(9)],
        *[(line, key, UNKNOWN) for line, key in ((6, "x"), (7, "y"), (8, "z"))],
        *[(line, f"{key}[{i}]", ALIAS) for line, key in ((6, "x"), (7, "y"), (8, "z")) for i in range(9)],
    ]),
]


@pytest.mark.parametrize("name,expected", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_files_report_every_problem_by_line(name, expected):
    load = parse_policy(fixture(name), blob_sha="f00")
    assert (load.source, load.valid, load.blob_sha) == ("invalid", False, "f00")
    assert load.policy is SAFE_POLICY
    found = Counter((p.line, p.path) for p in load.problems)
    assert found == Counter((line, path) for line, path, _ in expected)
    for line, path, fragment in expected:
        messages = [p.message for p in load.problems if (p.line, p.path) == (line, path)]
        assert any(fragment in message for message in messages), (line, path, messages)
    assert [p.line for p in load.problems] == sorted(p.line for p in load.problems)
    assert all(p.column >= 1 for p in load.problems)


INLINE_BAD = [
    ("nul-character", "version: 1\nx: \x00\n", 2, "the character #x0000 is not allowed"),
    ("lone-surrogate", "version: 1\nx: \ud800\n", 2, "#xd800"),
    ("tab-indent", "version: 1\n\tagents: {}\n", 2, "invalid YAML"),
    ("two-documents", "version: 1\n---\nversion: 1\n", 2, "expected a single document"),
    ("scalar-top-level", "just text\n", 1, "not the text 'just text'"),
    ("whitespace-only", "   \n\n", 1, "the file is empty"),
    ("deeply-nested-flow", "[" * 5000, 0, "nested too deeply"),
    ("nested-too-deep", "version: 1\nx: " + "[" * 40 + "]" * 40 + "\n", 2, "nested too deeply"),
    ("too-big", "version: 1\n#" + "x" * MAX_BYTES, 0, "the limit is 65536 bytes"),
    ("list-as-key", "version: 1\n? [a]\n: 1\n", 2, "a key must be a plain name"),
    ("undefined-alias", "version: 1\nagents: *nowhere\n", 2, "aliases (*nowhere)"),
    ("recursive-alias", "version: 1\nx: &a [*a]\n", 2, "aliases (*a)"),
    ("bad-explicit-bool", "version: 1\nagents: {code: !!bool maybe}\n", 2, "cannot be read as bool"),
    ("custom-tag", "version: 1\nlabels: !include other.yml\n", 2, "unsupported YAML tag !include"),
    ("nan", "version: 1\nbudget: {daily_cost: .nan}\n", 2, "not a finite number"),
    ("null-section", "version: 1\nagents:\n", 2, "expected a mapping of keys, got nothing"),
    ("version-as-text", 'version: "1"\n', 1, "must be 1, not '1'"),
    ("version-as-bool", "version: true\n", 1, "expected a whole number, got true"),
    ("freeze-not-a-list", "version: 1\nfreeze: {reason: x}\n", 2, "expected a list, got a mapping"),
    ("canary-empty", "version: 1\ndeploy: {canary_steps: []}\n", 2, "canary_steps"),
    ("not-text", b"version: 1\n", 0, "expected the file's text, got bytes"),
]


@pytest.mark.parametrize("text,line,fragment", [c[1:] for c in INLINE_BAD], ids=[c[0] for c in INLINE_BAD])
def test_hostile_and_broken_input_is_a_problem_not_a_crash(text, line, fragment):
    load = parse_policy(text)
    assert load.source == "invalid" and load.policy is SAFE_POLICY
    assert any(p.line == line and fragment in str(p) for p in load.problems), load.problems


def test_random_damage_never_raises():
    source = fixture("good/complete.yml")
    chars = "{}[]:,-&*!|>'\"#%@`\n\t ?<=0123456789.ab"
    rng = random.Random(20260101)
    for _ in range(300):
        text = list(source)
        for _ in range(rng.randint(1, 6)):
            text.insert(rng.randrange(len(text) + 1), rng.choice(chars))
        load = parse_policy("".join(text))
        assert load.source in ("file", "invalid")
        assert load.valid == (not load.problems)


# ---------------------------------------------------------------------------------------------
# Problems as text and as a comment

PROBLEM_TEXT = [
    ("line-and-path", PolicyProblem(12, 19, "approvals.deploy.count", "-1 is less than the minimum of 1"),
     ".github/agent-ops.yml line 12, approvals.deploy.count: -1 is less than the minimum of 1"),
    ("no-path", PolicyProblem(3, 1, "", "invalid YAML: x"), ".github/agent-ops.yml line 3: invalid YAML: x"),
    ("no-line", PolicyProblem(0, 0, "", "is a directory"), ".github/agent-ops.yml: is a directory"),
]


@pytest.mark.parametrize("problem,text", [c[1:] for c in PROBLEM_TEXT], ids=[c[0] for c in PROBLEM_TEXT])
def test_problem_text(problem, text):
    assert str(problem) == text


def test_markdown_lists_each_problem_with_its_line_and_what_happens_now():
    load = parse_policy(fixture("bad/typos.yml"), blob_sha="0123456789abcdef")
    html_url = "https://github.com/octo-org/widgets/blob/main/.github/agent-ops.yml"
    body = problems_markdown(load, html_url)
    assert f"[`.github/agent-ops.yml`]({html_url})" in body
    assert "has 3 problems" in body
    for line in (2, 6, 8):
        assert f"- **line {line}**" in body
    assert "did you mean 'count'?" in body
    assert "The code and deploy agents are off" in body
    assert "delete the file" in body


def test_markdown_is_empty_without_problems():
    assert problems_markdown(parse_policy(None)) == ""
    assert problems_markdown(parse_policy(fixture("good/complete.yml"))) == ""


def test_markdown_links_only_a_plain_web_address():
    load = parse_policy("version: 2\n")
    assert "](" not in problems_markdown(load, "javascript:alert(1)")
    assert "](" not in problems_markdown(load, "https://x.example/a) [b](https://evil.example")


HOSTILE = ("<img src=x onerror=alert(1)> @octocat ``` `code` [click](https://evil.example) "
           "<!-- --> &amp; **bold** #1\n# heading\r\n")


def test_markdown_neutralises_hostile_text_from_the_file():
    key, value = json.dumps(HOSTILE), json.dumps(HOSTILE + "A" * 5000)
    text = f"version: 1\n{key}: 1\nagents: {{code: {value}}}\n"
    load = parse_policy(text)
    body = problems_markdown(load)
    assert len(load.problems) == 2
    assert "<img" not in body and "<!--" not in body and "&amp;amp;" in body
    assert "@octocat" not in body and "@\u200boctocat" in body
    assert re.search(r"(?<!\\)`", body.replace("`.github/agent-ops.yml`", "")) is None
    assert "[click]" not in body and "**bold**" not in body
    assert "\n# heading" not in body
    assert "A" * 201 not in body
    assert len(body) < 3000


def test_markdown_caps_the_list():
    text = "version: 1\n" + "".join(f"k{i}: 1\n" for i in range(80))
    body = problems_markdown(parse_policy(text))
    assert body.count("\n- **line") == 50 and "- and 30 more" in body


# ---------------------------------------------------------------------------------------------
# The schema and the documentation agree with the code


def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _resolve(node: dict, root: dict) -> dict:
    if "$ref" not in node:
        return node
    target = root
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target, root), **{k: v for k, v in node.items() if k != "$ref"}}


def _properties(node: dict, root: dict, prefix: str = ""):
    """(dotted path, schema) of every property; list items as []."""
    node = _resolve(node, root)
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, _resolve(child, root)
        yield from _properties(child, root, path)
    if isinstance(node.get("items"), dict):
        yield from _properties(node["items"], root, prefix + "[]")


def _objects(node, root):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield node
        for value in node.values():
            yield from _objects(value, root)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value, root)


def test_schema_describes_every_property_and_rejects_unknown_keys():
    schema = _schema()
    undocumented = [path for path, child in _properties(schema, schema) if not child.get("description")]
    assert undocumented == []
    objects = list(_objects(schema, schema))
    open_objects = [sorted(o.get("properties", {})) for o in objects
                    if o.get("additionalProperties") is not False]
    assert len(objects) > 15 and open_objects == []


def test_doc_mentions_every_property_of_the_schema():
    doc = DOC.read_text(encoding="utf-8")
    schema = _schema()
    step = re.compile(r"^approvals\.\w+\.")
    paths = {step.sub("approvals.<step>.", path) for path, _ in _properties(schema, schema)}
    missing = sorted(path for path in paths if f"`{path}`" not in doc)
    assert len(paths) >= 60 and missing == []


def test_doc_complete_example_is_valid_and_sets_every_section():
    doc = DOC.read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert example is not None
    load = parse_policy(example.group(1))
    assert load.problems == () and load.source == "file"
    assert set(_schema()["properties"]) <= set(re.findall(r"^(\w+):", example.group(1), re.M))
    assert load.policy.agent_enabled("deploy") and load.policy.approval_for("protected_paths").count == 2


def _schema_default(path: str):
    schema = _schema()
    return dict(_properties(schema, schema))[path]["default"]


SCHEMA_DEFAULTS = [
    *[(f"agents.{name}", DEFAULT_POLICY.agents[name]) for name in DEFAULT_POLICY.agents],
    *[(f"labels.{name}", DEFAULT_POLICY.labels[name]) for name in DEFAULT_POLICY.labels],
    *[(f"limits.{name}", DEFAULT_POLICY.limit_for(name)) for name in DEFAULT_POLICY.agents],
    ("approvals.deploy.count", ApprovalRule().count),
    ("approvals.deploy.permission", ApprovalRule().permission),
    ("protected_paths", list(DEFAULT_POLICY.protected_paths)),
    ("thresholds.coverage.minimum", DEFAULT_POLICY.coverage_minimum),
    ("thresholds.coverage.max_drop", DEFAULT_POLICY.coverage_max_drop),
    ("thresholds.performance.tolerance_percent", DEFAULT_POLICY.performance_tolerance_percent),
    ("deploy.service", DEFAULT_POLICY.deploy_service),
    ("deploy.environment", DEFAULT_POLICY.deploy_environment),
    ("deploy.smoke", list(DEFAULT_POLICY.smoke)),
    ("deploy.smoke[].status", SmokeCheck("/").status),
    ("deploy.smoke[].max_latency_ms", SmokeCheck("/").max_latency_ms),
    ("deploy.canary_steps", list(DEFAULT_POLICY.canary_steps)),
    ("deploy.watch_minutes", DEFAULT_POLICY.watch_minutes),
    ("freeze", list(DEFAULT_POLICY.freeze)),
    ("budget.daily_tasks", DEFAULT_POLICY.daily_tasks),
    ("budget.daily_cost", DEFAULT_POLICY.daily_cost),
    ("chatops.permission", DEFAULT_POLICY.chatops_permission),
    ("chatops.admin_permission", DEFAULT_POLICY.chatops_admin_permission),
    ("stall.heartbeat_minutes", DEFAULT_POLICY.heartbeat_minutes),
    ("stall.max_attempts", DEFAULT_POLICY.max_attempts),
]


@pytest.mark.parametrize("path,value", SCHEMA_DEFAULTS, ids=[c[0] for c in SCHEMA_DEFAULTS])
def test_schema_defaults_are_the_code_defaults(path, value):
    assert _schema_default(path) == value


def test_schema_roles_are_the_code_roles():
    assert tuple(_schema()["$defs"]["role"]["enum"]) == ROLES


# ---------------------------------------------------------------------------------------------
# Policy decisions

FRI_1700 = datetime(2026, 12, 25, 17, 0, tzinfo=UTC)  # a Friday
WEEKEND = FreezeWindow("weekend", days=("fri", "sat", "sun"), from_time="16:00", to_time="23:59")
HOLIDAYS = FreezeWindow("holidays", start=datetime(2026, 12, 24, tzinfo=UTC),
                        end=datetime(2026, 12, 27, tzinfo=UTC))
FREEZE = [
    ("weekly-inside", WEEKEND, FRI_1700, True),
    ("weekly-at-from", WEEKEND, FRI_1700.replace(hour=16), True),
    ("weekly-last-minute", WEEKEND, FRI_1700.replace(hour=23, minute=59, second=59), True),
    ("weekly-before-from", WEEKEND, FRI_1700.replace(hour=15, minute=59), False),
    ("weekly-other-day", WEEKEND, FRI_1700 - timedelta(days=1), False),
    ("weekly-sunday", WEEKEND, FRI_1700 + timedelta(days=2), True),
    ("weekly-in-utc-not-local", WEEKEND, datetime(2026, 12, 25, 15, 30, tzinfo=timezone(timedelta(hours=-2))),
     True),
    ("weekly-naive-is-utc", WEEKEND, datetime(2026, 12, 25, 17, 0), True),
    ("one-off-at-start", HOLIDAYS, datetime(2026, 12, 24, tzinfo=UTC), True),
    ("one-off-inside", HOLIDAYS, FRI_1700, True),
    ("one-off-at-end", HOLIDAYS, datetime(2026, 12, 27, tzinfo=UTC), False),
    ("one-off-before", HOLIDAYS, datetime(2026, 12, 23, 23, 59, tzinfo=UTC), False),
    ("one-off-other-offset", HOLIDAYS, datetime(2026, 12, 24, 0, 30, tzinfo=timezone(timedelta(hours=1))),
     False),
    ("empty-window", FreezeWindow("nothing"), FRI_1700, False),
]


@pytest.mark.parametrize("window,now,active", [c[1:] for c in FREEZE], ids=[c[0] for c in FREEZE])
def test_freeze_window_active(window, now, active):
    assert window.active(now) is active


def test_active_freeze_is_the_first_active_window():
    policy = dataclasses.replace(DEFAULT_POLICY, freeze=(HOLIDAYS, WEEKEND))
    assert policy.active_freeze(FRI_1700) is HOLIDAYS
    assert policy.active_freeze(FRI_1700 + timedelta(days=7)) is WEEKEND
    assert policy.active_freeze(FRI_1700 + timedelta(days=5)) is None


ROLE_CASES = [
    ("same", "write", "write", True),
    ("higher", "admin", "write", True),
    ("lower", "triage", "write", False),
    ("read-is-lowest", "read", "triage", False),
    ("anything-meets-read", "read", "read", True),
    ("unknown-role", "owner", "read", False),
    ("unknown-minimum", "admin", "owner", False),
    ("empty-role", "", "read", False),
    ("case-matters", "Admin", "write", False),
]


@pytest.mark.parametrize("role,minimum,expected", [c[1:] for c in ROLE_CASES], ids=[c[0] for c in ROLE_CASES])
def test_role_at_least(role, minimum, expected):
    assert role_at_least(role, minimum) is expected


def test_agent_enabled_deploy_needs_a_service():
    on = dataclasses.replace(DEFAULT_POLICY, agents={**DEFAULT_POLICY.agents, "deploy": True})
    assert not on.agent_enabled("deploy")
    assert dataclasses.replace(on, deploy_service="default").agent_enabled("deploy")
    assert not dataclasses.replace(DEFAULT_POLICY, deploy_service="default").agent_enabled("deploy")
    assert DEFAULT_POLICY.agent_enabled("code") and not DEFAULT_POLICY.agent_enabled("nonsense")


def test_approval_and_limit_lookups():
    policy = parse_policy(fixture("good/complete.yml")).policy
    assert policy.approval_for("deploy") == ApprovalRule(2, ("octo-org/release",), ("octocat",), "maintain")
    assert policy.approval_for("merge") is None
    assert (policy.limit_for("code"), policy.limit_for("test"), policy.limit_for("qa")) == (2, 4, None)


# ---------------------------------------------------------------------------------------------
# Fetching through the Contents API, against a recording fake that answers only what GitHub can


class FakeContents:
    def __init__(self, answer):
        self.answer = answer
        self.calls: list[tuple[str, str, dict | None]] = []

    def request(self, method, path, *, params=None):
        self.calls.append((method, path, params))
        openapi.operation(method, path)  # an operation GitHub has
        if isinstance(self.answer, Exception):
            raise self.answer
        openapi.validate_response(method, path, 200, self.answer)
        return self.answer


def file_answer(raw: bytes, **changes) -> dict:
    answer = openapi.example("GET", CONTENTS_URL, 200, "response-if-content-is-a-file")
    answer.update(name="agent-ops.yml", path=POLICY_PATH, sha="b10b5a", size=len(raw),
                  content=base64.encodebytes(raw).decode("ascii"), encoding="base64")
    answer.update(changes)
    return answer


def other_answer(kind: str):
    return openapi.example("GET", CONTENTS_URL, 200, f"response-if-content-is-a-{kind}")


FETCH = [
    ("file", file_answer(fixture("good/complete.yml").encode()), "file", ""),
    ("file-with-bom", file_answer(b"\xef\xbb\xbfversion: 1\n"), "file", ""),
    ("invalid-file", file_answer(b"version: 2\n"), "invalid", "must be 1, not 2"),
    ("missing", NotFound(f"GET {CONTENTS_URL}: not found", 404), "default", ""),
    ("directory", other_answer("directory"), "invalid", "is a directory"),
    ("symlink", other_answer("symlink"), "invalid", "is a 'symlink', not a file"),
    ("submodule", other_answer("submodule"), "invalid", "is a 'submodule', not a file"),
    ("not-base64", file_answer(b"", content="version: 1 !!!"), "invalid", "not valid base64"),
    ("not-utf8", file_answer(b"version: 1\nx: \xff\xfe\n"), "invalid", "not UTF-8 text"),
    ("too-big-by-size", file_answer(b"version: 1\n", size=MAX_BYTES + 1), "invalid", "the limit is 65536"),
    ("too-big-by-content", file_answer(b"#" * (MAX_BYTES + 1), size=10), "invalid", "the limit is 65536"),
    ("too-big-for-the-api", file_answer(b"", encoding="none", content="", size=2_000_000), "invalid",
     "the limit is 65536"),
]


@pytest.mark.parametrize("answer,source,fragment", [c[1:] for c in FETCH], ids=[c[0] for c in FETCH])
def test_fetch_policy(answer, source, fragment):
    client = FakeContents(answer)
    load = fetch_policy(client, "octo-org/widgets")
    assert client.calls == [("GET", CONTENTS_URL, None)]
    assert load.source == source
    assert fragment in " ".join(str(p) for p in load.problems)
    if source == "invalid":
        assert load.policy is SAFE_POLICY and load.problems
    if isinstance(answer, dict) and answer.get("type") == "file":
        assert load.blob_sha == "b10b5a"


def test_fetch_policy_reads_the_given_ref():
    client = FakeContents(file_answer(b"version: 1\n"))
    assert fetch_policy(client, "octo-org/widgets", ref="feature/x").source == "file"
    assert client.calls == [("GET", CONTENTS_URL, {"ref": "feature/x"})]


@pytest.mark.parametrize("error", [Forbidden("GET x: forbidden", 403), ServerError("GET x: 502", 502)],
                         ids=["forbidden", "server-error"])
def test_fetch_policy_lets_other_errors_through(error):
    with pytest.raises(type(error)):
        fetch_policy(FakeContents(error), "octo-org/widgets")


@pytest.mark.parametrize("repository", ["widgets", "octo-org/widgets/../x", "octo-org/..", ""],
                         ids=["no-owner", "traversal", "dot-dot", "empty"])
def test_fetch_policy_rejects_a_malformed_repository_without_a_request(repository):
    client = FakeContents(file_answer(b"version: 1\n"))
    with pytest.raises(InvalidInput, match="owner/name"):
        fetch_policy(client, repository)
    assert client.calls == []


def test_policy_load_valid_follows_source():
    assert PolicyLoad(DEFAULT_POLICY, "file").valid and not PolicyLoad(SAFE_POLICY, "invalid").valid
