"""Seeds: a ready-made organisation to try the system on.

`demo`: the App is installed (installation 77) on the organisation `octo` with two repositories.
`octo/widgets` deploys (service `widgets`, smoke-tested at /health, straight to all traffic with a
two-minute watch) after one approval;
`octo/gadgets` keeps the default policy. alice is an admin, bob may write and carol may read.
`octo/widgets` has a green `ci` workflow run on its default branch's head, one open Dependabot
alert (moderate) and branch protection on `main` requiring `ci`; none of it is announced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WIDGETS_POLICY = """\
# Agent Ops policy for this repository (schema: shared/schemas/agent_ops.schema.json).
version: 1
agents:
  deploy: true
deploy:
  service: widgets
  smoke:
    - path: /health
  # Small numbers, so the demo's release is live in a few monitor ticks: straight to all
  # traffic (there is one user, the demo) and a two-minute watch window.
  canary_steps: [100]
  watch_minutes: 2
approvals:
  deploy:
    count: 1
"""
GADGETS_POLICY = """\
# Agent Ops policy for this repository: every setting at its default.
version: 1
"""
CODEOWNERS = "* @octo/maintainers\n"
WIDGETS_APP = '''\
"""The widgets service."""


def health() -> dict:
    return {"status": "ok"}
'''
PEOPLE = {"alice": "admin", "bob": "write", "carol": "read"}


def demo(sandbox: Any) -> None:
    if sandbox.owner != "octo" or sandbox.installation_id != 77:
        raise ValueError("the demo seed is installation 77 on the organisation octo")
    repos = {
        "octo/widgets": {"README.md": "# widgets\n\nA small service the agents look after.\n",
                         ".github/agent-ops.yml": WIDGETS_POLICY, ".github/CODEOWNERS": CODEOWNERS,
                         "app/main.py": WIDGETS_APP},
        "octo/gadgets": {"README.md": "# gadgets\n\nA library; nothing here is deployed.\n",
                         ".github/agent-ops.yml": GADGETS_POLICY, ".github/CODEOWNERS": CODEOWNERS},
    }
    for full_name, files in repos.items():
        sandbox.add_repo(full_name, files=files)
        for login, role in PEOPLE.items():
            sandbox.set_permission(full_name, login, role)
    sandbox.add_team_member("octo", "maintainers", "alice")
    sandbox.add_workflow_run("octo/widgets", "ci", "main", "main", conclusion="success")
    sandbox.add_dependabot_alert("octo/widgets", "requests", "moderate")
    sandbox.protect_branch("octo/widgets", "main", ["ci"])
    sandbox.install(sender="alice")


SEEDS: dict[str, Callable[[Any], None]] = {"demo": demo}
