"""What each agent may do on GitHub: one table for installation-token scoping and for app.yml.

An installation token is requested with exactly its agent's permissions, so an agent can never
do more than this table says. The App's manifest (`app.yml`) must ask for exactly the union of
the table; a test fails when the two drift.
"""

from __future__ import annotations

from collections.abc import Mapping

LEVELS = ("read", "write")

AGENT_PERMISSIONS: Mapping[str, Mapping[str, str]] = {
    # Routes work; replies to ChatOps; the agent-ops/approval check run; reads repo config,
    # collaborator roles, reviews and team membership for approval gates.
    "orchestrator": {"issues": "write", "pull_requests": "write", "contents": "read",
                     "checks": "write", "members": "read"},
    # Scans repo health: CI runs, alerts, branch protection; keeps one health issue per repo.
    "scout": {"actions": "read", "administration": "read", "checks": "read", "contents": "read",
              "issues": "write", "pull_requests": "read", "security_events": "read",
              "statuses": "read", "vulnerability_alerts": "read"},
    # Branches, commits and PRs from labelled issues; dispatches the workflow implementer.
    "code": {"actions": "write", "contents": "write", "issues": "write", "pull_requests": "write"},
    # Gates PRs with check runs and reviews; re-runs a failed workflow once to tell flaky from broken.
    "test": {"actions": "write", "checks": "write", "contents": "read", "pull_requests": "write",
             "statuses": "read"},
    "qa": {"checks": "write", "contents": "read", "pull_requests": "write"},
    # GitHub deployments, their statuses, incident issues.
    "deploy": {"checks": "read", "contents": "read", "deployments": "write", "issues": "write",
               "pull_requests": "write", "statuses": "read"},
    # Opens and updates incident issues; nothing else.
    "monitor": {"issues": "write"},
}

# Webhook events the App subscribes to, each with the reason it is needed.
APP_EVENTS: Mapping[str, str] = {
    "check_run": "test and QA gates follow their own check runs",
    "check_suite": "CI completion for gates and deploy pre-flight",
    "deployment_status": "the deploy agent follows GitHub deployments",
    "installation_repositories": "keep the record of installed repositories",
    "issue_comment": "ChatOps commands",
    "issues": "the agent-task label starts the code agent",
    "pull_request": "PRs are gated; merged PRs deploy",
    "pull_request_review": "approvals for approval gates",
    "push": "default-branch changes",
    "status": "commit statuses for pre-flight checks",
    "workflow_run": "workflow implementer and CI health",
}


def app_permissions() -> dict[str, str]:
    """The union of every agent's permissions, at the highest level any agent needs."""
    union: dict[str, str] = {"metadata": "read"}
    for permissions in AGENT_PERMISSIONS.values():
        for name, level in permissions.items():
            if LEVELS.index(level) >= LEVELS.index(union.get(name, "read")):
                union[name] = level
    return dict(sorted(union.items()))


def for_agent(agent: str) -> dict[str, str]:
    try:
        return dict(AGENT_PERMISSIONS[agent])
    except KeyError:
        raise KeyError(f"no GitHub permissions declared for agent {agent!r}") from None
