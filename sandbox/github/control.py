"""A client of the GitHub sandbox's control API (`/_sandbox/`): people's actions, faults, deliveries.

    control = SandboxControl("http://127.0.0.1:8070")
    issue = control.open_issue("octo/widgets", "Add a /version endpoint", author="alice")
    control.add_label("octo/widgets", issue["number"], "agent-task", actor="alice")

Each action method takes the same arguments as the `GitHubSandbox` method of the same name and
returns its JSON answer. A refused action raises `SandboxError` with the sandbox's message.

An artifact is given as its zip's bytes or as the files to zip, `{filename: text}`:

    run_id = control.run_workflow("octo/widgets", "ci", "main", artifacts={"junit": {"junit.xml": "<x/>"}})
"""

from __future__ import annotations

import base64
from typing import Any


class SandboxError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SandboxControl:
    def __init__(self, base_url: str, timeout: float = 30.0, session: Any = None) -> None:
        if session is None:
            import requests

            session = requests.Session()
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session = session

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> Any:
        import requests

        url = f"{self.base_url}/_sandbox/{path}"
        try:
            response = self._session.request(method, url, json=body, params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            raise SandboxError(f"{method} {url}: the GitHub sandbox does not answer ({type(exc).__name__})",
                               0) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {"message": response.text[:200]}
        if response.status_code >= 400:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise SandboxError(f"{method} /_sandbox/{path}: {response.status_code}: {message}",
                               response.status_code)
        return answer

    def _act(self, action: str, **arguments: Any) -> Any:
        return self._call("POST", f"actions/{action}",
                          {key: value for key, value in arguments.items() if value is not None})

    # ---- people's actions -------------------------------------------------------------------

    def install(self, sender: str = "octocat") -> dict[str, Any]:
        return self._act("install", sender=sender)

    def open_issue(self, repo: str, title: str, body: str = "", author: str = "octocat") -> dict[str, Any]:
        return self._act("open_issue", repo=repo, title=title, body=body, author=author)

    def add_label(self, repo: str, number: int, label: str, actor: str = "octocat") -> list[str]:
        return self._act("add_label", repo=repo, number=number, label=label, actor=actor)

    def remove_label(self, repo: str, number: int, label: str, actor: str = "octocat") -> list[str]:
        return self._act("remove_label", repo=repo, number=number, label=label, actor=actor)

    def assign(self, repo: str, number: int, assignee: str, actor: str = "octocat") -> list[str]:
        return self._act("assign", repo=repo, number=number, assignee=assignee, actor=actor)

    def close_issue(self, repo: str, number: int, actor: str = "octocat") -> dict[str, Any]:
        return self._act("close_issue", repo=repo, number=number, actor=actor)

    def comment(self, repo: str, number: int, body: str, author: str = "octocat",
                user_type: str = "User") -> dict[str, Any]:
        return self._act("comment", repo=repo, number=number, body=body, author=author, user_type=user_type)

    def open_pull(self, repo: str, head_ref: str, title: str, body: str = "", author: str = "octocat",
                  base_ref: str | None = None, files: dict[str, str] | None = None) -> dict[str, Any]:
        return self._act("open_pull", repo=repo, head_ref=head_ref, title=title, body=body, author=author,
                         base_ref=base_ref, files=files)

    def push_commit(self, repo: str, branch: str, files: dict[str, str | None], message: str = "",
                    author: str = "octocat", start_from: str | None = None) -> str:
        return self._act("push_commit", repo=repo, branch=branch, files=files, message=message, author=author,
                         start_from=start_from)

    def request_review(self, repo: str, number: int, reviewer: str, actor: str = "octocat") -> list[str]:
        return self._act("request_review", repo=repo, number=number, reviewer=reviewer, actor=actor)

    def review(self, repo: str, number: int, reviewer: str, state: str = "APPROVED",
               body: str = "") -> dict[str, Any]:
        return self._act("review", repo=repo, number=number, reviewer=reviewer, state=state, body=body)

    def merge(self, repo: str, number: int, actor: str = "octocat") -> str:
        return self._act("merge", repo=repo, number=number, actor=actor)

    def close_pull(self, repo: str, number: int, actor: str = "octocat") -> dict[str, Any]:
        return self._act("close_pull", repo=repo, number=number, actor=actor)

    def complete_ci(self, repo: str, sha: str, conclusion: str = "success",
                    name: str = "ci") -> dict[str, Any]:
        return self._act("complete_ci", repo=repo, sha=sha, conclusion=conclusion, name=name)

    def set_permission(self, repo: str, login: str, role: str) -> None:
        self._act("set_permission", repo=repo, login=login, role=role)

    def add_team_member(self, org: str, team_slug: str, login: str) -> None:
        self._act("add_team_member", org=org, team_slug=team_slug, login=login)

    def set_status(self, repo: str, sha: str, state: str, context: str = "ci", description: str = "",
                   target_url: str | None = None, creator: str = "octocat") -> dict[str, Any]:
        return self._act("set_status", repo=repo, sha=sha, state=state, context=context,
                         description=description, target_url=target_url, creator=creator)

    def run_workflow(self, repo: str, name: str, head_sha: str, branch: str | None = None,
                     conclusion: str = "success", artifacts: dict[str, bytes | dict[str, str]] | None = None,
                     event: str = "push", actor: str = "octocat") -> int:
        """A workflow run that goes requested -> in_progress -> completed; returns its id.
        `artifacts` maps a name to its zip's bytes, or to the files the sandbox zips."""
        return int(self._act("run_workflow", repo=repo, name=name, head_sha=head_sha, branch=branch,
                             conclusion=conclusion, artifacts=_artifacts(artifacts), event=event,
                             actor=actor))

    def complete_workflow_run(self, repo: str, run_id: int, conclusion: str = "success",
                              push: dict[str, Any] | None = None,
                              artifacts: dict[str, bytes | dict[str, str]] | None = None) -> dict[str, Any]:
        """A queued run finishes. `push` ({"branch", "files": {path: text or None}, "message"}) is a
        commit the run pushes first, as github-actions[bot]; `artifacts` as for `run_workflow`."""
        return self._act("complete_workflow_run", repo=repo, run_id=run_id, conclusion=conclusion, push=push,
                         artifacts=_artifacts(artifacts))

    def script_rerun(self, repo: str, run_id: int, conclusion: str) -> list[str]:
        return self._act("script_rerun", repo=repo, run_id=run_id, conclusion=conclusion)

    def add_dependabot_alert(self, repo: str, package: str, severity: str, state: str = "open") -> int:
        return int(self._act("add_dependabot_alert", repo=repo, package=package, severity=severity,
                             state=state))

    def add_code_scanning_alert(self, repo: str, rule: str, severity: str, state: str = "open") -> int:
        return int(self._act("add_code_scanning_alert", repo=repo, rule=rule, severity=severity, state=state))

    def protect_branch(self, repo: str, branch: str, required_checks: list[str]) -> dict[str, list[str]]:
        return self._act("protect_branch", repo=repo, branch=branch, required_checks=list(required_checks))

    def add_branch_rule(self, repo: str, branch: str, type: str,
                        required_checks: list[str] | None = None) -> list[dict[str, Any]]:
        """A repository ruleset's rule on `branch`: `pull_request`, `required_status_checks` (with
        `required_checks`), `non_fast_forward`, `deletion`, ... Returns the branch's rules."""
        arguments: dict[str, Any] = {"repo": repo, "branch": branch, "type": type}
        if required_checks is not None:
            arguments["required_checks"] = list(required_checks)
        return list(self._act("add_branch_rule", **arguments))

    # ---- the sandbox itself -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def deliveries(self, failed: bool = False) -> list[dict[str, Any]]:
        """Every delivery attempt, newest first; with `failed`, those not answered 2xx."""
        return self._call("GET", "deliveries", params={"failed": "true"} if failed else None)

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        """One attempt with its request (headers, payload) and the receiver's response."""
        return self._call("GET", f"deliveries/{int(delivery_id)}")

    def redeliver(self, delivery_id: int) -> str:
        """Attempt a delivery again with the same guid; returns the guid."""
        return self._call("POST", f"deliveries/{int(delivery_id)}/redeliver")["guid"]

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook has been attempted; False if some are still queued."""
        return bool(self._call("POST", "wait", {"timeout": timeout})["idle"])

    def set_webhook_url(self, url: str) -> str:
        return self._call("PUT", "webhook", {"url": url})["url"]

    def inject_fault(self, kind: str, count: int = 1, path_prefix: str = "",
                     delay_ms: int = 0) -> dict[str, Any]:
        return self._call("POST", "faults", {"kind": kind, "count": count, "path_prefix": path_prefix,
                                             "delay_ms": delay_ms})

    def clear_faults(self) -> int:
        return int(self._call("DELETE", "faults")["cleared"])

    def set_rate_limit(self, remaining: int, reset_in: int = 3600, resource: str = "core") -> dict[str, Any]:
        """What is left of the installation's `core` (REST) or `graphql` budget, reset in `reset_in`
        seconds."""
        return self._act("set_rate_limit", remaining=remaining, reset_in=reset_in, resource=resource)


def _artifacts(artifacts: dict[str, bytes | dict[str, str]] | None) -> dict[str, Any] | None:
    """Artifacts for the JSON body: zip bytes as base64 text, files to zip as they are."""
    if not artifacts:
        return None
    return {name: data if isinstance(data, dict) else base64.b64encode(data).decode()
            for name, data in artifacts.items()}
