"""The QA agent: a deterministic, explained risk report on every pull request head.

The report (`risk.assess`) reads the pull request's files and the compare of its base and head.
It lands as the check run `agent-ops/qa` with the score and its reasons:
- a secret in an added line fails the check (its place and kind are named, never its value);
- a high score asks for a human's approval through the orchestrator's gate (the `high_risk` step;
  `agent-ops/approval` shows it), and the check turns green once it is granted at that head;
- anything else passes, with its reasons listed.
"""

from __future__ import annotations

from typing import Any

from functions.qa_agent import risk
from functions.test_agent.gates import neutralise
from shared.agent_runtime import SUCCEEDED, WAITING_APPROVAL, Outcome, TaskContext
from shared.errors import InvalidInput
from shared.executor import CreateCheckRun, UpdateCheckRun
from shared.github import checks

CHECK_NAME = "agent-ops/qa"
REVIEW_KIND = "review_pull_request"
MAX_FILE_PAGES = 30  # GitHub lists at most 3,000 files of a pull request, 100 a page
DEFAULT_HIGH_RISK_RULE = {"count": 1, "teams": [], "users": [], "permission": "write"}


class QaAgent:
    name = "qa"

    def handle(self, ctx: TaskContext) -> Outcome:
        if ctx.task.kind != REVIEW_KIND:
            raise InvalidInput(f"the QA agent does not do {ctx.task.kind}")
        repo, number = ctx.repository, ctx.number
        head_sha = str(ctx.inputs.get("head_sha") or "")
        pull = ctx.client.request("GET", f"/repos/{repo}/pulls/{number}")
        if pull.get("state") != "open":
            return Outcome(SUCCEEDED, f"#{number} is {pull.get('state')}; nothing to review")
        if (pull.get("head") or {}).get("sha") != head_sha:
            return Outcome(SUCCEEDED, f"#{number} moved on from {head_sha[:12]}; the newer head gets its own "
                                      "report")
        check_id = self._check_run(ctx, head_sha)
        policy = ctx.policy().policy
        approval = ctx.approval or {}
        if approval.get("step") == "high_risk" and approval.get("head_sha") == head_sha:
            who = ", ".join(f"@{login}" for login in approval.get("approved_by") or []) or "a human"
            ctx.apply(UpdateCheckRun(repo, check_id, "completed", "High risk, approved",
                                     f"The risk report asked for a human's approval; {who} approved "
                                     f"this head ({head_sha[:12]}).", conclusion="success",
                                     key=ctx.key("approved", head_sha)))
            return Outcome(SUCCEEDED, f"#{number}: high risk, approved by {who}")
        report = risk.assess(self._facts(ctx, pull), risk.RiskConfig(
            protected_paths=tuple(policy.protected_paths), high_risk_score=policy.qa_high_risk_score))
        conclusion = risk.check_conclusion(report)
        summary = risk.report_markdown(report)
        ctx.apply(UpdateCheckRun(repo, check_id, "completed", risk.report_title(report), summary,
                                 conclusion=conclusion, key=ctx.key("report", head_sha, ctx.task.attempt)))
        details = {"score": report.score, "level": report.level, "secrets": len(report.secrets),
                   "conclusion": conclusion}
        line = f"#{number}: risk {report.score} ({report.level})"
        if report.needs_approval:
            rule = policy.approval_for("high_risk")
            rule_doc = (DEFAULT_HIGH_RISK_RULE if rule is None else
                        {"count": rule.count, "teams": list(rule.teams), "users": list(rule.users),
                         "permission": rule.permission})
            return Outcome(WAITING_APPROVAL, f"{line}: a human must approve this head", details=details,
                           approval={"step": "high_risk", "rule": rule_doc, "head_sha": head_sha,
                                     "pull_number": number})
        if report.secrets:
            line += f": {len(report.secrets)} secret(s) in added lines; the check fails"
        return Outcome(SUCCEEDED, line, details=details)

    def on_failure(self, ctx: TaskContext, summary: str) -> None:
        head_sha = str(ctx.inputs.get("head_sha") or "")
        if not head_sha:
            return
        check_id = self._check_run(ctx, head_sha)
        text = (f"The QA agent could not finish its report: {neutralise(summary, 1500)}\n\n"
                "Comment `/retry` on the pull request to run it again.")
        ctx.apply(UpdateCheckRun(ctx.repository, check_id, "completed", "QA agent failed", text,
                                 conclusion="neutral", key=ctx.key("failed", ctx.task.attempt)))

    def _check_run(self, ctx: TaskContext, head_sha: str) -> int:
        created = ctx.apply(CreateCheckRun(
            ctx.repository, head_sha, CHECK_NAME, ctx.task.task_id, "in_progress", "Assessing the risk",
            "The QA agent is reading the change.", key=ctx.key("check", head_sha)))
        if created and created.get("id"):
            return int(created["id"])
        found = checks.find_check_run(ctx.client, ctx.repository, head_sha, CHECK_NAME, ctx.task.task_id)
        if found is None:
            raise InvalidInput(f"the {CHECK_NAME} check run of {head_sha[:12]} cannot be found")
        return int(found["id"])

    def _facts(self, ctx: TaskContext, pull: dict[str, Any]) -> risk.PullFacts:
        repo, number = ctx.repository, int(pull["number"])
        files = list(ctx.client.paginate(f"/repos/{repo}/pulls/{number}/files", max_pages=MAX_FILE_PAGES))
        base, head = (pull.get("base") or {}).get("sha"), (pull.get("head") or {}).get("sha")
        compare = ctx.client.request("GET", f"/repos/{repo}/compare/{base}...{head}")
        return risk.PullFacts(
            number=number,
            title=str(pull.get("title") or ""),
            body=str(pull.get("body") or ""),
            author=str((pull.get("user") or {}).get("login") or ""),
            files=tuple(risk.PullFile(
                filename=str(f.get("filename") or ""), status=str(f.get("status") or "modified"),
                additions=int(f.get("additions") or 0), deletions=int(f.get("deletions") or 0),
                patch=f.get("patch"), previous_filename=f.get("previous_filename")) for f in files),
            total_commits=int(compare.get("total_commits") or 0),
            files_truncated=len(files) >= MAX_FILE_PAGES * 100,
        )
