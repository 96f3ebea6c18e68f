"""The policy's release, notification and production-monitoring keys: deploy.*, notify.*, monitor.*.

Each valid file gives its typed settings, each invalid one names the key and says what is wrong, the
schema's defaults are the code's, and the deploy plan carries every number the policy sets.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from functions.deploy_agent.canary import DeployPlan, plan_from_policy
from shared.policy import (
    DEFAULT_POLICY,
    SAFE_POLICY,
    SCHEMA_PATH,
    DeploySettings,
    MonitorSettings,
    NotifySettings,
    Policy,
    SmokeCheck,
    parse_policy,
    problems_markdown,
)

EVERY_KEY = """\
version: 1
agents: {deploy: true}
deploy:
  service: api
  environment: staging
  smoke: [{path: /health}]
  canary_steps: [5, 100]
  watch_minutes: 30
  url: "https://api.example.com/base/"
  analysis_minutes: 10
  min_requests: 0
  inconclusive: pass
  max_error_rate: 0.1
  max_p95_ms: 750
  keep_versions: 5
  runtime: python311
notify:
  mention: "@octo-org/on-call"
  slack: false
monitor:
  health:
    - {path: /health, status: 204, max_latency_ms: 300}
    - {path: /ready}
  slo: {availability: 0.99, latency_ms: 250, latency_percent: 0.95, window_days: 7}
  incident: {open_after: 5, close_after: 4, update_minutes: 0}
"""


def test_defaults_are_the_documented_ones():
    assert DEFAULT_POLICY.deploy == DeploySettings(url=None, analysis_minutes=5, min_requests=20,
                                                   inconclusive="hold", max_error_rate=0.02, max_p95_ms=None,
                                                   keep_versions=3, runtime="python312")
    assert DEFAULT_POLICY.notify == NotifySettings(mention="", slack=True)
    assert DEFAULT_POLICY.monitor == MonitorSettings(
        health=(SmokeCheck("/health", 200, 1000),), availability=0.999, latency_ms=500, latency_percent=0.99,
        window_days=30, open_after=3, close_after=2, update_minutes=15)
    assert SAFE_POLICY.deploy == DEFAULT_POLICY.deploy and SAFE_POLICY.monitor == DEFAULT_POLICY.monitor


def test_a_policy_built_without_the_new_sections_takes_their_defaults():
    required = {f.name: getattr(DEFAULT_POLICY, f.name) for f in dataclasses.fields(Policy)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert "deploy" not in required and "monitor" not in required
    assert Policy(**required) == DEFAULT_POLICY


def test_every_key_is_read():
    load = parse_policy(EVERY_KEY)
    assert load.problems == () and load.source == "file"
    policy = load.policy
    assert policy.deploy == DeploySettings(url="https://api.example.com/base", analysis_minutes=10,
                                           min_requests=0, inconclusive="pass", max_error_rate=0.1,
                                           max_p95_ms=750, keep_versions=5, runtime="python311")
    assert policy.notify == NotifySettings("@octo-org/on-call", False)
    assert policy.monitor == MonitorSettings(
        health=(SmokeCheck("/health", 204, 300), SmokeCheck("/ready", 200, 1000)), availability=0.99,
        latency_ms=250, latency_percent=0.95, window_days=7, open_after=5, close_after=4, update_minutes=0)
    assert isinstance(policy.deploy.max_error_rate, float) and isinstance(policy.monitor.availability, float)


@pytest.mark.parametrize("text,expected", [
    ("deploy: {url: null, max_p95_ms: null}", DEFAULT_POLICY.deploy),
    ("deploy: {url: 'http://127.0.0.1:8081'}", dataclasses.replace(DEFAULT_POLICY.deploy,
                                                                    url="http://127.0.0.1:8081")),
    ("deploy: {url: 'https://[::1]:8443/'}", dataclasses.replace(DEFAULT_POLICY.deploy, url="https://[::1]:8443")),
    ("deploy: {max_error_rate: 0, inconclusive: hold}", dataclasses.replace(DEFAULT_POLICY.deploy,
                                                                            max_error_rate=0.0)),
    ("deploy: {max_error_rate: 1}", dataclasses.replace(DEFAULT_POLICY.deploy, max_error_rate=1.0)),
    ("notify: {mention: '@alice'}", NotifySettings("@alice")),
    ("notify: {mention: ''}", NotifySettings()),
    ("monitor: {slo: {latency_percent: 1}}", dataclasses.replace(DEFAULT_POLICY.monitor,
                                                                 latency_percent=1.0)),
    ("monitor: {health: [{path: /healthz}]}", dataclasses.replace(DEFAULT_POLICY.monitor,
                                                                  health=(SmokeCheck("/healthz"),))),
], ids=["nulls", "http-with-port", "ipv6", "zero-errors", "all-errors", "a-user", "nobody",
        "every-probe-good", "other-path"])
def test_edge_values_are_valid(text, expected):
    load = parse_policy(f"version: 1\n{text}\n")
    assert load.problems == ()
    section = {DeploySettings: "deploy", NotifySettings: "notify", MonitorSettings: "monitor"}[type(expected)]
    assert getattr(load.policy, section) == expected


BAD = [
    ("deploy-ranges", """\
deploy:
  analysis_minutes: 0
  min_requests: -1
  inconclusive: fail
  max_error_rate: 1.5
  max_p95_ms: 0
  keep_versions: 1
  runtime: "Python 3.12"
""", [
        (3, "deploy.analysis_minutes", "0 is less than the minimum of 1"),
        (4, "deploy.min_requests", "-1 is less than the minimum of 0"),
        (5, "deploy.inconclusive", "'fail' is not one of: hold, pass"),
        (6, "deploy.max_error_rate", "1.5 is greater than the maximum of 1"),
        (7, "deploy.max_p95_ms", "0 is less than the minimum of 1"),
        (8, "deploy.keep_versions", "1 is less than the minimum of 2"),
        (9, "deploy.runtime", "'Python 3.12' is not valid: expected the App Engine standard runtime"),
    ]),
    ("deploy-types", """\
deploy:
  analysis_minutes: "5"
  max_error_rate: 2%
  max_p95_ms: 1.5
  keep_versions: true
""", [
        (3, "deploy.analysis_minutes", "expected a whole number, got the text '5'"),
        (4, "deploy.max_error_rate", "expected a number, got the text '2%'"),
        (5, "deploy.max_p95_ms", "expected a whole number or nothing (null), got the number 1.5"),
        (6, "deploy.keep_versions", "expected a whole number, got true"),
    ]),
    ("url-not-http", "deploy: {url: 'ftp://files.example.com'}\n", [
        (2, "deploy.url", "'ftp://files.example.com' is not valid: expected an http or https URL"),
    ]),
    ("url-with-space", "deploy: {url: 'https://api example.com'}\n", [
        (2, "deploy.url", "is not valid: expected an http or https URL"),
    ]),
    ("url-no-host", "deploy: {url: 'https://:8080/'}\n", [
        (2, "deploy.url", "is not a valid URL: expected http:// or https:// and a host name"),
    ]),
    ("url-bad-port", "deploy: {url: 'https://api.example.com:99999'}\n", [
        (2, "deploy.url", "is not a valid URL (like https://api.example.com)"),
    ]),
    ("url-query", "deploy: {url: 'https://api.example.com/?env=prod'}\n", [
        (2, "deploy.url", "must not have a query or a fragment"),
    ]),
    ("url-fragment", "deploy: {url: 'https://api.example.com/#top'}\n", [
        (2, "deploy.url", "must not have a query or a fragment"),
    ]),
    ("url-credentials", "deploy: {url: 'https://deployer:hunter2@api.example.com'}\n", [
        (2, "deploy.url", "must not hold a user name or password"),
    ]),
    ("deploy-typo", "deploy: {max_error: 0.1}\n", [
        (2, "deploy.max_error", "did you mean 'max_error_rate'?"),
    ]),
    ("notify", """\
notify:
  mention: oncall
  slack: "yes"
  slak: true
""", [
        (3, "notify.mention", "'oncall' is not valid: expected a person or team to mention, as @login or "
                              "@org/team-slug"),
        (4, "notify.slack", "expected true or false, got the text 'yes'"),
        (5, "notify.slak", "unknown key 'slak'; did you mean 'slack'?"),
    ]),
    ("mention-shapes", "notify: {mention: '@-alice'}\n", [(2, "notify.mention", "is not valid")]),
    ("mention-two", "notify: {mention: '@alice @bob'}\n", [(2, "notify.mention", "is not valid")]),
    ("mention-nested-team", "notify: {mention: '@octo/a/b'}\n", [(2, "notify.mention", "is not valid")]),
    ("notify-not-a-mapping", "notify: true\n", [(2, "notify", "expected a mapping of keys, got true")]),
    ("monitor-health", """\
monitor:
  health:
    - {path: /health}
    - {path: health}
    - {path: /health, status: 204}
    - {status: 200}
    - {path: /ready, max_latency_ms: 0, method: POST}
""", [
        (5, "monitor.health[1].path", "'health' is not valid: expected the URL path to request, "
                                      "starting with /"),
        (6, "monitor.health[2].path", "'/health' is probed already by monitor.health[0]: "
                                      "list each path once"),
        (7, "monitor.health[3]", "missing required key 'path'"),
        (8, "monitor.health[4].max_latency_ms", "0 is less than the minimum of 1"),
        (8, "monitor.health[4].method", "unknown key 'method'"),
    ]),
    ("monitor-health-empty", "monitor: {health: []}\n", [
        (2, "monitor.health", "lists 0 items; at least 1 is needed"),
    ]),
    ("monitor-slo", """\
monitor:
  slo:
    availability: 1
    latency_ms: 0
    latency_percent: 0
    window_days: 91
    target: 0.9
""", [
        (4, "monitor.slo.availability", "1 must be less than 1"),
        (5, "monitor.slo.latency_ms", "0 is less than the minimum of 1"),
        (6, "monitor.slo.latency_percent", "0 must be more than 0"),
        (7, "monitor.slo.window_days", "91 is greater than the maximum of 90"),
        (8, "monitor.slo.target", "unknown key 'target'"),
    ]),
    ("monitor-slo-percent-as-percent", "monitor: {slo: {availability: 99.9}}\n", [
        (2, "monitor.slo.availability", "99.9 must be less than 1"),
    ]),
    ("monitor-incident", "monitor: {incident: {open_after: 0, close_after: 101, update_minutes: -5}}\n", [
        (2, "monitor.incident.open_after", "0 is less than the minimum of 1"),
        (2, "monitor.incident.close_after", "101 is greater than the maximum of 100"),
        (2, "monitor.incident.update_minutes", "-5 is less than the minimum of 0"),
    ]),
    ("monitor-typo", "monitor: {helth: []}\n", [(2, "monitor.helth", "did you mean 'health'?")]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_invalid_values_name_the_key_and_the_problem(text, expected):
    load = parse_policy("version: 1\n" + text)
    assert load.source == "invalid" and load.policy is SAFE_POLICY
    found = Counter((p.line, p.path) for p in load.problems)
    assert found == Counter((line, path) for line, path, _ in expected)
    for line, path, fragment in expected:
        [message] = [p.message for p in load.problems if (p.line, p.path) == (line, path)]
        assert fragment in message, (path, message)


def test_a_password_in_the_url_is_never_repeated():
    load = parse_policy("version: 1\ndeploy: {url: 'https://deployer:hunter2@api.example.com'}\n")
    body = problems_markdown(load)
    assert "hunter2" not in body and "deployer" not in body and "hunter2" not in str(load.problems)
    assert "user name or password" in body


def test_the_watch_window_is_described_as_the_window_after_all_traffic():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    watch = schema["properties"]["deploy"]["properties"]["watch_minutes"]["description"]
    assert "all traffic" in watch and "at each canary step" not in watch


def _schema_node(path: str) -> dict:
    node = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for part in path.split("."):
        node = node["properties"][part]
    return node


SCHEMA_DEFAULTS = [
    *[(f"deploy.{f.name}", getattr(DEFAULT_POLICY.deploy, f.name))
      for f in dataclasses.fields(DeploySettings)],
    *[(f"notify.{f.name}", getattr(DEFAULT_POLICY.notify, f.name))
      for f in dataclasses.fields(NotifySettings)],
    ("monitor.slo.availability", DEFAULT_POLICY.monitor.availability),
    ("monitor.slo.latency_ms", DEFAULT_POLICY.monitor.latency_ms),
    ("monitor.slo.latency_percent", DEFAULT_POLICY.monitor.latency_percent),
    ("monitor.slo.window_days", DEFAULT_POLICY.monitor.window_days),
    ("monitor.incident.open_after", DEFAULT_POLICY.monitor.open_after),
    ("monitor.incident.close_after", DEFAULT_POLICY.monitor.close_after),
    ("monitor.incident.update_minutes", DEFAULT_POLICY.monitor.update_minutes),
]


@pytest.mark.parametrize("path,value", SCHEMA_DEFAULTS, ids=[c[0] for c in SCHEMA_DEFAULTS])
def test_schema_defaults_are_the_code_defaults(path, value):
    assert _schema_node(path)["default"] == value


def test_the_schema_default_health_check_is_the_code_default():
    [check] = _schema_node("monitor.health")["default"]
    load = parse_policy(f"version: 1\nmonitor: {{health: [{json.dumps(check)}]}}\n")
    assert load.policy.monitor.health == DEFAULT_POLICY.monitor.health


def test_the_deploy_plan_carries_every_number_of_the_policy():
    policy = parse_policy(EVERY_KEY).policy
    plan = plan_from_policy(policy)
    assert plan == DeployPlan(canary_steps=(5, 100), watch_minutes=30, smoke=(SmokeCheck("/health"),),
                              analysis_minutes=10, min_requests=0, inconclusive="pass", max_error_rate=0.1,
                              max_p95_ms=750, keep_versions=5, environment="staging")
    unchanged = [f.name for f in dataclasses.fields(DeployPlan) if getattr(plan, f.name) == getattr(
        DeployPlan(), f.name)]
    assert unchanged == []  # every field came from the file, none from DeployPlan's defaults
    assert plan_from_policy(DEFAULT_POLICY) == DeployPlan()
    assert plan_from_policy(policy, min_requests=50).min_requests == 50
