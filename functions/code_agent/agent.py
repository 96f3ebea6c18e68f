"""The code agent: an issue labelled for it (or `/agent implement`) becomes a pull request.

Each turn re-reads what GitHub holds (the issue, the branch, an open pull request) and does only
what is missing, so a redelivered task, a retry or a crash between two steps never makes a second
claim, branch or pull request. The steps:

1. claim: one status comment (kept up to date in place), the in-progress label, the App assigned
   where GitHub allows it;
2. branch `agent/<issue>-<slug>` from the default branch's head, created and only ever moved
   forward (there is no forced update, and no write outside the prefix);
3. implement with the repository's implementer (`patch`, `llm` or `workflow`), validated against
   protected paths and size caps, committed through the Git Data API;
4. check that the branch really holds a commit ahead of the base, then open the pull request with
   `Closes #N`, a checklist and the task link, and ask CODEOWNERS and the configured reviewers.

Any failure is said on the issue (what failed, `/retry`, `/cancel`) with the failed label.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from functions.code_agent import changes as ch
from functions.code_agent import owners
from functions.orchestrator import core
from shared import policy as policies
from shared.agent_runtime import (
    SUCCEEDED,
    WAITING_APPROVAL,
    Outcome,
    TaskContext,
    running,
)
from shared.errors import InvalidInput, PermanentError
from shared.executor import (
    AddAssignees,
    AddLabels,
    AdvanceBranch,
    CreateBranch,
    DispatchWorkflow,
    OpenPullRequest,
    PostComment,
    RemoveLabel,
    RequestReviewers,
    UpdateComment,
)
from shared.github.rest import NotFound

log = logging.getLogger("agentops.code")

MARKER = "<!-- agent-ops:code:{task_id} -->"
MAX_CONTEXT_FILES = 20
MAX_FILE_BYTES = 100_000
MAX_TREE_ENTRIES = 20_000
MAX_OUTPUT_TOKENS = 8192
SYSTEM_PROMPT = ("You are a careful software engineer. You change code only as the task asks, and you "
                 "answer in the format the task gives.")
_PATH_MENTION = re.compile(r"(?<![\w/.-])([\w.-]+(?:/[\w.-]+)*\.[A-Za-z0-9]{1,8})(?![\w/-])")


class Refused(PermanentError):
    """The change may not go ahead as it is (protected path, too big, not permitted)."""


class CodeAgent:
    name = "code"

    def __init__(self, llm: Callable[[str], Any] | None = None,
                 app_login: Callable[[], str] = lambda: "") -> None:
        self._llm = llm  # (model) -> LlmClient, or None when no provider is configured
        self._app_login = app_login

    # ---- the turn --------------------------------------------------------------------------

    def handle(self, ctx: TaskContext) -> Outcome:
        if ctx.task.kind != core.IMPLEMENT_KIND:
            raise InvalidInput(f"the code agent does not do {ctx.task.kind}")
        number = ctx.number
        repo = ctx.repository
        load = ctx.policy()
        policy = load.policy
        issue = ctx.client.request("GET", f"/repos/{repo}/issues/{number}")
        if issue.get("pull_request"):
            raise Refused(f"#{number} is a pull request; the code agent works on issues")
        if issue.get("state") != "open":
            return Outcome(SUCCEEDED, f"#{number} is closed; nothing to do")
        work = Work(ctx, policy, issue, self._app_login())
        work.claim()
        existing = work.open_pull()
        if existing:
            work.request_reviews(existing)  # keyed: a turn that died before asking asks now
            return work.finish(existing)
        implementer = policy.code.implementer
        if not work.committed():
            if implementer == "workflow":
                waiting = work.run_workflow()
                if waiting is not None:
                    return waiting
            else:
                outcome = work.commit_change(self._llm if implementer == "llm" else None)
                if outcome is not None:
                    return outcome
        return work.finish(work.open_pull() or work.open_pull_request())

    def on_failure(self, ctx: TaskContext, summary: str) -> None:
        load = ctx.policy()
        labels = load.policy.labels
        repo, number = ctx.repository, ctx.number
        if not number:
            return
        marker = MARKER.format(task_id=ctx.task.task_id)
        body = (f"{marker}\n❌ **The code agent could not finish #{number}.**\n\n"
                f"What failed: {ch.neutralise(summary, 1500)}\n\n"
                "What you can do: fix what is named above (the issue text, the policy, the branch) and "
                "comment `/retry` to start again, or `/cancel` to stop.\n\n"
                f"{ctx.links.task(ctx.task.task_id, repo)} · {ctx.links.audit(ctx.task.task_id)}")
        ctx.apply(PostComment(repo, number, body, key=ctx.key("failed", ctx.task.attempt)))
        ctx.apply(AddLabels(repo, number, (labels["failed"],), key=ctx.key("failed-label", ctx.task.attempt)))
        try:
            ctx.apply(RemoveLabel(repo, number, labels["in_progress"],
                                  key=ctx.key("unlabel-failed", ctx.task.attempt)))
        except PermanentError:
            pass  # the label was not there


class Work:
    """One turn's view of one issue: what GitHub holds and the steps still to do."""

    def __init__(self, ctx: TaskContext, policy: policies.Policy, issue: Mapping[str, Any],
                 app_login: str) -> None:
        self.ctx = ctx
        self.policy = policy
        self.issue = issue
        self.app_login = app_login
        self.repo = ctx.repository
        self.number = int(issue["number"])
        self.client = ctx.client
        self.checkpoint = dict(ctx.checkpoint)
        self._patch_text = ""
        self.cost: dict[str, Any] = {}  # this turn's spend; each turn reports only its own
        meta = self.client.request("GET", f"/repos/{self.repo}")
        self.default_branch = str(meta["default_branch"])
        self.branch = str(self.checkpoint.get("branch")
                          or ch.branch_name(self.number, str(issue.get("title") or "")))
        if not ch.within_prefix(self.branch) or self.branch == self.default_branch:
            raise Refused(f"the branch {self.branch!r} is outside agent/ or is the default branch")
        self.base_sha = str(self.checkpoint.get("base_sha") or self._ref_sha(self.default_branch))
        self.checkpoint.update(branch=self.branch, base_sha=self.base_sha)

    # ---- claim and status --------------------------------------------------------------------

    def claim(self) -> None:
        ctx, labels = self.ctx, self.policy.labels
        if not self._status_comment_id():
            answer = ctx.apply(PostComment(self.repo, self.number, self._status(
                "🤖 **Working on it.** The code agent has claimed this issue and will open a pull request "
                f"from `{self.branch}`."), key=ctx.key("claim")))
            if answer and answer.get("id"):
                self.checkpoint["status_comment_id"] = int(answer["id"])
        ctx.apply(AddLabels(self.repo, self.number, (labels["in_progress"],),
                            key=ctx.key("claim-label", ctx.task.attempt)))
        if labels["failed"] in _label_names(self.issue):
            try:
                ctx.apply(RemoveLabel(self.repo, self.number, labels["failed"],
                                      key=ctx.key("unfail", ctx.task.attempt)))
            except PermanentError:
                pass
        if self.app_login:
            # GitHub drops an assignee it does not allow (Apps usually); the answer says who stuck.
            ctx.apply(AddAssignees(self.repo, self.number, (self.app_login,), key=ctx.key("assign")))

    def _status(self, text: str) -> str:
        task_id = self.ctx.task.task_id
        return (f"{MARKER.format(task_id=task_id)}\n{text}\n\n"
                f"{self.ctx.links.task(task_id, self.repo)} · {self.ctx.links.audit(task_id)}")

    def _status_comment_id(self) -> int:
        known = int(self.checkpoint.get("status_comment_id") or 0)
        if known:
            return known
        marker = MARKER.format(task_id=self.ctx.task.task_id)
        for comment in self.client.paginate(f"/repos/{self.repo}/issues/{self.number}/comments", max_pages=5):
            if marker in str(comment.get("body") or "") and (comment.get("user") or {}).get("type") == "Bot":
                self.checkpoint["status_comment_id"] = int(comment["id"])
                return int(comment["id"])
        return 0

    def say(self, text: str, step: str) -> None:
        comment_id = self._status_comment_id()
        if comment_id:
            self.ctx.apply(UpdateComment(self.repo, comment_id, self._status(text),
                                         key=self.ctx.key("status", self.ctx.task.attempt, step)))

    # ---- branch and commits ----------------------------------------------------------------

    def _ref_sha(self, branch: str) -> str:
        try:
            ref = self.client.request("GET", f"/repos/{self.repo}/git/ref/heads/{branch}")
        except NotFound:
            return ""
        return str((ref.get("object") or {}).get("sha") or "")

    def ensure_branch(self) -> str:
        """The branch's head sha, creating the branch at the base when it does not exist."""
        head = self._ref_sha(self.branch)
        if not head:
            self.ctx.apply(CreateBranch(self.repo, self.branch, self.base_sha, key=self.ctx.key("branch")))
            head = self._ref_sha(self.branch) or self.base_sha
        return head

    def committed(self) -> bool:
        """Whether the branch already holds work ahead of the base (an earlier turn's or the workflow's)."""
        if not self._ref_sha(self.branch):
            return False
        compare = self._compare()
        return int(compare.get("ahead_by") or 0) > 0 and bool(compare.get("files"))

    def _compare(self) -> dict[str, Any]:
        return self.client.request("GET", f"/repos/{self.repo}/compare/{self.base_sha}...{self.branch}")

    def commit_change(self, llm: Callable[[str], Any] | None) -> Outcome | None:
        """Make the change and commit it to the branch; an Outcome when the turn ends here."""
        if llm is not None:
            patch_text, summary = self._from_llm(llm)
        else:
            patch_text, summary = self._from_issue()
        self._patch_text = patch_text
        try:
            changes = ch.parse_unified_diff(patch_text)
        except InvalidInput as exc:
            raise Refused(f"the patch cannot be read: {exc}") from exc
        waiting = self._check(changes)
        if waiting is not None:
            return waiting
        originals = {path: self._read(path) for change in changes
                     for path in {change.path, change.old_path} if path}
        try:
            files = ch.apply_changes(changes, originals)
        except InvalidInput as exc:
            raise Refused(f"the patch does not apply to {self.default_branch} at {self.base_sha[:12]}: "
                          f"{exc}") from exc
        head = self.ensure_branch()
        sha = self._commit(head, files, f"{self.issue.get('title') or 'Change'} (#{self.number})"[:200])
        if sha != head:
            self.ctx.apply(AdvanceBranch(self.repo, self.branch, sha, key=self.ctx.key("advance", sha)))
        self.checkpoint["summary"] = summary[:1500]
        return None

    def _from_issue(self) -> tuple[str, str]:
        author = str((self.issue.get("user") or {}).get("login") or "")
        role = self._role(author)
        if not policies.role_at_least(role, "write"):
            raise Refused("the patch implementer takes a diff only from a user with write access; the "
                          f"issue's author @{ch.neutralise(author, 40)} has {role or 'no'} access")
        patch = ch.extract_patch(str(self.issue.get("body") or ""))
        if patch is None:
            raise Refused("the issue body holds no ```diff block for the patch implementer to apply")
        return patch, f"Applies the patch given in #{self.number}."

    def _from_llm(self, llm: Callable[[str], Any]) -> tuple[str, str]:
        from functions.code_agent.reply import changes_from_reply

        model = self.policy.code.model
        client = llm(model)
        if client is None:
            raise Refused("the llm implementer is chosen, but no LLM provider is configured "
                          "(AGENTOPS_LLM_PROVIDER and the llm-api-key secret)")
        files = self._context_files()
        prompt = ch.build_prompt(str(self.issue.get("title") or ""), str(self.issue.get("body") or ""), files,
                                 self.policy.code.max_prompt_chars)
        self.ctx.heartbeat(f"asking the model about #{self.number}", checkpoint=self.checkpoint)
        completion = client.complete(SYSTEM_PROMPT, prompt, MAX_OUTPUT_TOKENS)
        used = self.cost
        used["llm_input_tokens"] = int(used.get("llm_input_tokens") or 0) + completion.input_tokens
        used["llm_output_tokens"] = int(used.get("llm_output_tokens") or 0) + completion.output_tokens
        used["units"] = used["llm_input_tokens"] + used["llm_output_tokens"]
        used["model"] = completion.model
        self.ctx.cost = used  # charged even if what follows refuses the answer
        if getattr(completion, "truncated", False):
            raise Refused(f"the model's answer was cut off at {MAX_OUTPUT_TOKENS} tokens; the change is too "
                          "big for one answer")
        reply = changes_from_reply(completion.text)
        return reply.patch_text, reply.summary or f"A change for #{self.number}."

    def _context_files(self) -> dict[str, str]:
        tree = self.client.request("GET", f"/repos/{self.repo}/git/trees/{self.base_sha}",
                                   params={"recursive": "1"})
        paths = [e["path"] for e in (tree.get("tree") or [])[:MAX_TREE_ENTRIES] if e.get("type") == "blob"]
        known = set(paths)
        mentioned = _PATH_MENTION.findall(str(self.issue.get("body") or ""))
        wanted = [p for p in dict.fromkeys(mentioned) if p in known]
        for pattern in self.policy.code.context_paths:
            wanted += [p for p in paths if ch.glob_match(pattern, p) and p not in wanted]
        files: dict[str, str] = {}
        for path in wanted[:MAX_CONTEXT_FILES]:
            text = self._read(path)
            if text is not None:
                files[path] = text[:MAX_FILE_BYTES]
        return files

    def _check(self, changes: Sequence[ch.FileChange]) -> Outcome | None:
        code = self.policy.code
        problems = ch.validate_changes(changes, (), code.max_files, code.max_lines)
        if problems:
            raise Refused("; ".join(problems[:10]))
        paths = {p for change in changes for p in (change.path, change.old_path) if p}
        return self._protected(sorted(paths), self._patch_text)

    def _protected(self, paths: Sequence[str], change: str = "") -> Outcome | None:
        """None when no protected path is touched, or the approved change is this one."""
        hit = [(path, ch.protected_by(path, self.policy.protected_paths)) for path in paths]
        hit = [(path, pattern) for path, pattern in hit if pattern]
        if not hit:
            return None
        listed = ", ".join(f"`{ch.neutralise(path, 200)}` ({pattern})" for path, pattern in hit[:10])
        rule = self.policy.approval_for("protected_paths")
        digest = hashlib.sha256(json.dumps([paths, change], sort_keys=True).encode()).hexdigest()[:24]
        granted = (self.ctx.approval or {}).get("step") == "protected_paths"
        if granted and self.checkpoint.get("protected_digest") == digest:
            return None  # approved, and the change is the one that was approved
        self.checkpoint["protected_digest"] = digest
        if rule is None:
            raise Refused(f"the change touches protected paths: {listed}. Agents may not change them; "
                          "a maintainer can make the change, or configure approvals.protected_paths")
        self.say(f"⏸️ **Waiting for approval.** The change touches protected paths: {listed}.", "protected")
        return Outcome(WAITING_APPROVAL, f"the change touches protected paths: {listed}",
                       checkpoint=self.checkpoint, cost=self.cost or None,
                       approval={"step": "protected_paths", "pull_number": self.number, "head_sha": "",
                                 "rule": {"count": rule.count, "teams": list(rule.teams),
                                          "users": list(rule.users), "permission": rule.permission}})

    def _read(self, path: str, ref: str = "") -> str | None:
        """A file's text at `ref` (the base commit by default); None when it does not exist."""
        try:
            entry = self.client.request("GET", f"/repos/{self.repo}/contents/{path}",
                                        params={"ref": ref or self.base_sha})
        except NotFound:
            return None
        if not isinstance(entry, dict) or entry.get("type") != "file":
            raise Refused(f"{ch.neutralise(path, 200)} is not a regular file")
        if entry.get("encoding") != "base64":
            raise Refused(f"{ch.neutralise(path, 200)} is too large to read through the Contents API")
        try:
            return base64.b64decode(str(entry.get("content") or "")).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(f"{ch.neutralise(path, 200)} is not UTF-8 text") from exc

    def _commit(self, parent: str, files: Mapping[str, str | None], message: str) -> str:
        """A commit on `parent` with `files` changed (blobs, a tree on the base's, the commit)."""
        base = self.client.request("GET", f"/repos/{self.repo}/git/commits/{parent}")
        entries = []
        for path, text in sorted(files.items()):
            if text is None:
                entries.append({"path": path, "mode": "100644", "type": "blob", "sha": None})
                continue
            blob = self.client.request("POST", f"/repos/{self.repo}/git/blobs",
                                       json_body={"content": text, "encoding": "utf-8"}, idempotent=True)
            entries.append({"path": path, "mode": "100644", "type": "blob", "sha": blob["sha"]})
        tree = self.client.request("POST", f"/repos/{self.repo}/git/trees",
                                   json_body={"base_tree": base["tree"]["sha"], "tree": entries},
                                   idempotent=True)
        if tree["sha"] == base["tree"]["sha"]:
            return parent  # an earlier turn made this very change already
        commit = self.client.request("POST", f"/repos/{self.repo}/git/commits", json_body={
            "message": f"{message}\n\nMade by the Agent Ops code agent for #{self.number}.",
            "tree": tree["sha"], "parents": [parent]})
        return str(commit["sha"])

    def _role(self, login: str) -> str:
        if not login:
            return ""
        try:
            answer = self.client.request("GET", f"/repos/{self.repo}/collaborators/{login}/permission")
        except NotFound:
            return ""
        return str(answer.get("role_name") or answer.get("permission") or "")

    # ---- the workflow implementer --------------------------------------------------------------

    def run_workflow(self) -> Outcome | None:
        """Dispatch the workflow once, then follow it; an Outcome while it runs or when it failed."""
        workflow = self.policy.code.workflow
        attempt = self.ctx.task.attempt
        self.ensure_branch()
        dispatched_by = int(self.checkpoint.get("dispatch_attempt") or 0)
        if self.checkpoint.get("dispatched_at") and dispatched_by != attempt:
            # A new attempt (/retry, a stall retry): run the workflow again unless its run still goes.
            last = self._workflow_run(workflow)
            if last is None or (last.get("status") == "completed" and last.get("conclusion") != "success"):
                self.checkpoint.pop("dispatched_at", None)
        if not self.checkpoint.get("dispatched_at"):
            self.checkpoint.update(dispatched_at=self.ctx.now().isoformat(), dispatch_attempt=attempt)
            self.ctx.apply(DispatchWorkflow(self.repo, workflow, self.default_branch,
                                            {"issue": str(self.number), "branch": self.branch},
                                            key=self.ctx.key("dispatch", attempt)), raise_refused=True)
            self.say(f"⚙️ **Running the `{workflow}` workflow** to make the change on `{self.branch}`.",
                     "dispatched")
        run = self._workflow_run(workflow)
        keys = [f"workflow:{self.repo}@{self.base_sha}"]
        if run is None or run.get("status") != "completed":
            if run is not None:
                keys.append(f"workflow_run:{self.repo}#{run['id']}")
            where = f"run {run['id']} is {run.get('status')}" if run else "no run has started yet"
            return running(f"waiting for the {workflow} workflow: {where}", keys, self.checkpoint)
        link = str(run.get("html_url") or f"run {run['id']}")
        if run.get("conclusion") != "success":
            raise PermanentError(f"the {workflow} workflow ended {run.get('conclusion')}: {link}")
        compare = self._compare()
        if int(compare.get("ahead_by") or 0) < 1 or not compare.get("files"):
            raise PermanentError(f"the {workflow} workflow succeeded ({link}) but pushed no commits to "
                                 f"{self.branch}; nothing to propose")
        files = compare.get("files") or []
        code = self.policy.code
        lines = sum(int(f.get("additions") or 0) + int(f.get("deletions") or 0) for f in files)
        if len(files) > code.max_files or lines > code.max_lines:
            raise Refused(f"the workflow's change has {len(files)} files and {lines} lines; the limits are "
                          f"{code.max_files} and {code.max_lines}")
        paths = sorted({str(p) for f in files for p in (f.get("filename"), f.get("previous_filename")) if p})
        waiting = self._protected(paths, str(compare.get("merge_base_commit", {}).get("sha") or "")
                                  + ":" + str((compare.get("commits") or [{}])[-1].get("sha") or ""))
        if waiting is not None:
            return waiting
        self.checkpoint["summary"] = f"Made by the `{workflow}` workflow ({link})."
        return None

    def _workflow_run(self, workflow: str) -> dict[str, Any] | None:
        since = str(self.checkpoint.get("dispatched_at") or "")
        listing = self.client.request("GET", f"/repos/{self.repo}/actions/runs", params={
            "event": "workflow_dispatch", "head_sha": self.base_sha, "per_page": 50})
        runs = [r for r in listing.get("workflow_runs") or []
                if str(r.get("path") or "").split("@")[0].endswith(f"/{workflow}")
                and str(r.get("created_at") or "") >= since[:19]]
        return max(runs, key=lambda r: int(r["id"]), default=None)

    # ---- the pull request ----------------------------------------------------------------------

    def open_pull(self) -> dict[str, Any] | None:
        owner = self.repo.split("/")[0]
        pulls = self.client.request("GET", f"/repos/{self.repo}/pulls",
                                    params={"head": f"{owner}:{self.branch}", "state": "open"})
        return pulls[0] if pulls else None

    def open_pull_request(self) -> dict[str, Any]:
        compare = self._compare()
        if int(compare.get("ahead_by") or 0) < 1:
            raise PermanentError(f"{self.branch} holds no commit ahead of {self.default_branch}; nothing was "
                                 "committed, so no pull request is opened")
        title = f"{ch.neutralise(str(self.issue.get('title') or 'Change'), 200)} (#{self.number})"
        names = [str(f.get("filename") or "") for f in compare.get("files") or []]
        tests = any("test" in name.lower() for name in names)
        docs = any(name.lower().endswith((".md", ".rst")) for name in names)
        body = ch.pull_request_body(self.number, str(self.checkpoint.get("summary") or ""),
                                    self.ctx.links.task_url(self.ctx.task.task_id),
                                    {"tests": tests, "docs": docs}, "see the QA agent's check")
        pull = self.ctx.apply(OpenPullRequest(self.repo, self.branch, self.default_branch, title, body,
                                              key=self.ctx.key("pull")))
        pull = pull or self.open_pull()
        if not pull:
            raise PermanentError(f"the pull request from {self.branch} could not be found after opening it")
        self._request_reviews(int(pull["number"]), names)
        return pull

    def request_reviews(self, pull: Mapping[str, Any]) -> None:
        names = [str(f.get("filename") or "") for f in self._compare().get("files") or []]
        self._request_reviews(int(pull["number"]), names)

    def _request_reviews(self, pull_number: int, paths: Sequence[str]) -> None:
        users, teams = owners.reviewers_for(self._codeowners(), paths)
        code = self.policy.code
        users = [u for u in dict.fromkeys([*users, *code.reviewer_users])
                 if u.lower() != self.app_login.lower() and not u.endswith("[bot]")]
        teams = list(dict.fromkeys([*teams, *code.reviewer_teams]))
        own = self.repo.split("/")[0].lower()
        team_slugs = [t.split("/", 1)[1] for t in teams if t.split("/", 1)[0].lower() == own]
        if users or team_slugs:
            try:
                action = RequestReviewers(self.repo, pull_number, tuple(users[:15]), tuple(team_slugs[:15]),
                                          key=self.ctx.key("reviewers", pull_number))
                self.ctx.apply(action)
            except PermanentError as exc:  # a reviewer without access: the PR stands, say so
                log.warning("reviewers not requested: %s", exc, extra={"task_id": self.ctx.task.task_id})

    def _codeowners(self) -> str:
        for path in (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"):
            try:
                text = self._read(path, self.default_branch)
            except Refused:  # not a readable file: no owners from it
                continue
            if text is not None:
                return text
        return ""

    def finish(self, pull: Mapping[str, Any]) -> Outcome:
        labels = self.policy.labels
        number = int(pull["number"])
        try:
            self.ctx.apply(RemoveLabel(self.repo, self.number, labels["in_progress"],
                                       key=self.ctx.key("done-label", number)))
        except PermanentError:
            pass
        self.say(f"✅ **Opened #{number}** from `{self.branch}`. The test and QA agents gate it; a human "
                 "reviews and merges it.", f"pull-{number}")
        head = str((pull.get("head") or {}).get("sha") or "")
        return Outcome(SUCCEEDED, f"opened #{number} from {self.branch}", checkpoint=self.checkpoint,
                       cost=self.cost or None,
                       details={"pull_number": number, "branch": self.branch, "head_sha": head})


def _label_names(issue: Mapping[str, Any]) -> set[str]:
    return {str(label.get("name") if isinstance(label, Mapping) else label)
            for label in issue.get("labels") or []}

