"""Branch rulesets: the sandbox's `GET .../rules/branches/{branch}` and the scout reading a ruleset as
branch protection when classic protection is absent, with the GitHub sandbox served in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.repo_scout import collect
from functions.repo_scout.health import ScoutSettings, assess
from sandbox.github.control import SandboxControl, SandboxError
from sandbox.github.server import GitHubSandbox
from shared.github.rest import Forbidden
from tests.support.sandbox_site import app_for

REPO = "octo/widgets"
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
SETTINGS = ScoutSettings()
RULES_PATH = f"/repos/{REPO}/rules/branches/main"
PROTECTION_PATH = f"/repos/{REPO}/branches/main/protection"


@pytest.fixture
def github_repos() -> dict[str, dict[str, str]]:
    return {REPO: {"README.md": "# widgets\n"}}


def _client(github: GitHubSandbox, key: tuple[Any, str]) -> collect.CountingClient:
    return collect.CountingClient(app_for(github, key).client_for("scout", github.installation_id))


def _protection_findings(facts: collect.RepoFacts) -> list[tuple[str, str]]:
    return [(item.severity, item.title) for item in assess(facts, SETTINGS, NOW).findings
            if item.kind == "no_branch_protection"]


class RulesForbidden:
    """The scout's client, with GitHub refusing the rules listing (403)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.stats = client.stats

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._client.request(method, path, **kwargs)

    def paginate(self, path: str, params: Any = None, max_pages: int = 10) -> Any:
        if "/rules/branches/" in path:
            raise Forbidden("Resource not accessible by integration", 403)
        return self._client.paginate(path, params, max_pages=max_pages)


def test_the_sandbox_serves_a_branchs_rules_as_github_describes_them(github, key):
    control = SandboxControl(github.base_url)
    control.add_branch_rule(REPO, "main", "pull_request")
    rules = control.add_branch_rule(REPO, "main", "required_status_checks", required_checks=["ci", "lint"])
    assert [rule["type"] for rule in rules] == ["pull_request", "required_status_checks"]
    for kind in ("non_fast_forward", "deletion", "update", "required_signatures"):
        control.add_branch_rule(REPO, "release/1", kind)
    with pytest.raises(SandboxError):
        control.add_branch_rule(REPO, "main", "no_such_rule")

    client = app_for(github, key).client_for("monitor", github.installation_id)  # metadata is enough
    served = list(client.paginate(RULES_PATH))
    assert [rule["type"] for rule in served] == ["pull_request", "required_status_checks"]
    assert served[1]["parameters"]["required_status_checks"] == [{"context": "ci"}, {"context": "lint"}]
    assert all(rule["ruleset_source_type"] == "Repository" and rule["ruleset_source"] == REPO
               for rule in served)
    release = list(client.paginate(f"/repos/{REPO}/rules/branches/release%2F1"))
    assert [rule["type"] for rule in release] == ["non_fast_forward", "deletion", "update",
                                                  "required_signatures"]
    assert list(client.paginate(f"/repos/{REPO}/rules/branches/no-such-branch")) == []  # need not exist
    assert control.state()["branch_rules"][REPO]["main"][0]["type"] == "pull_request"
    # Every answer was validated against GitHub's description: the fixture asserts no violation.


@pytest.mark.parametrize("rule", sorted(collect.PROTECTING_RULES))
def test_a_branch_protected_only_by_a_ruleset_is_protected(github, key, rule):
    github.add_branch_rule(REPO, "main", rule, required_checks=["ci"] if rule == "required_status_checks"
                           else None)
    client = _client(github, key)
    before = len(github.requests)
    got = collect.collect(client, REPO, settings=SETTINGS, now=NOW)

    assert got.facts.branch_protection.status == "present" and "branch_protection" not in got.unknown
    findings = _protection_findings(got.facts)
    if rule == "required_status_checks":
        assert got.facts.branch_protection.required_checks == ("ci",) and findings == []
    else:  # protected, without required checks: the low finding only, never "not protected"
        assert [severity for severity, _ in findings] == ["low"]
    paths = [path for _, path, _ in github.requests[before:] if path.startswith("/repos/")]
    assert paths.index(PROTECTION_PATH) + 1 == paths.index(RULES_PATH)  # classic first: 404, then rules
    assert client.requests == len(paths)  # the rules request is counted in the scan (the token is not)


def test_without_protection_or_protecting_rules_the_branch_is_not_protected(github, key):
    github.add_branch_rule(REPO, "main", "required_signatures")  # a rule, but not one that protects
    got = collect.collect(_client(github, key), REPO, settings=SETTINGS, now=NOW)
    assert got.facts.branch_protection.status == "absent"
    assert _protection_findings(got.facts) == [("high", "The default branch main is not protected")]


def test_without_any_rule_the_finding_stays(github, key):
    client = _client(github, key)
    before = len(github.requests)
    got = collect.collect(client, REPO, settings=SETTINGS, now=NOW)
    assert got.facts.branch_protection.status == "absent"
    assert [severity for severity, _ in _protection_findings(got.facts)] == ["high"]
    served = [request for request in github.requests[before:] if request[1].startswith("/repos/")]
    assert ("GET", RULES_PATH, 200) in served and client.requests == len(served)


def test_classic_protection_is_not_followed_by_the_rules(github, key):
    github.protect_branch(REPO, "main", ["ci"])
    before = len(github.requests)
    got = collect.collect(_client(github, key), REPO, settings=SETTINGS, now=NOW)
    assert got.facts.branch_protection == collect.BranchProtection("present", ("ci",))
    assert all(path != RULES_PATH for _, path, _ in github.requests[before:])


def test_rules_github_refuses_to_show_are_unknown_not_a_finding(github, key):
    client = collect.CountingClient(RulesForbidden(app_for(github, key).client_for(
        "scout", github.installation_id)))
    got = collect.collect(client, REPO, settings=SETTINGS, now=NOW)
    assert got.facts.branch_protection.status == "unknown" and "branch_protection" in got.unknown
    result = assess(got.facts, SETTINGS, NOW)
    assert "no_branch_protection" in result.unchecked
    assert not [item for item in result.findings if item.kind == "no_branch_protection"]
