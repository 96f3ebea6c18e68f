"""The test agent: a pull request's head commit is gated on its CI, its coverage and its benchmarks.

Kind `test_pull_request` (inputs pull_number, head_sha, head_ref, base_ref). Each turn re-reads what
GitHub holds and does only what is missing, so a redelivered task or a retry repeats nothing:

1. the check run `agent-ops/tests` on the head (external id: the task id), in progress;
2. the CI facts of the head (check runs, commit statuses, workflow runs) decided by `ci.decide_ci`:
   while CI runs the task parks with `waits_for` naming the head's CI events (never polling), and the
   check run says what it waits for; a workflow run that failed on its first attempt is re-run once
   (failed jobs only), and failure then success is flaky. A re-run GitHub refuses counts as failed;
3. flaky items are counted per repository (`store.TestStore`);
4. the coverage and benchmark artifacts (`tests.coverage_artifact` / `tests.benchmark_artifact`, by
   exact name) of the head's completed workflow runs are downloaded and read in memory;
5. the gates compare them with the base branch's baseline and the policy's thresholds;
6. the head's measurement is stored, for when the pull request is merged;
7. the check run completes with the verdict (the gate branch protection can require);
8. one review, kept up to date in place: the App's latest review carrying MARKER is edited when its
   verdict is the same, else a new review is submitted. GitHub refuses an App's approval or request
   for changes on a bot's pull request (the agents' own), so there the review is a comment and the
   check run is the gate.

A head that is no longer the pull request's head, or a closed pull request, ends the task at once.

Kind `update_baseline` (a pull request merged to the default branch; inputs pull_number,
merge_commit_sha, base_ref, pull_head_sha): the baseline of the base branch
becomes the merged pull request head's stored measurement. The baseline is the merged head's
measurement, not one of the merge commit (CI on the default branch is not read): for a merge that
combined the head with newer base commits it is an approximation, corrected by the next merge. A part
the head did not measure (no coverage or no benchmark artifact) keeps the baseline's previous value.

When the agent itself fails, its check run completes `neutral` with "Test agent failed" and what
failed: a human sees it, and it is not mistaken for the pull request's failure.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from functions.test_agent.artifacts import (
    BENCHMARK_NAMES,
    COVERAGE_NAMES,
    ArtifactContents,
    BaselineFormatError,
    baseline_doc,
    baseline_from_doc,
    merge_artifacts,
    read_artifact,
)
from functions.test_agent.ci import (
    CiDecision,
    CiFacts,
    CiItem,
    CiPolicy,
    Done,
    Rerun,
    Wait,
    decide_ci,
    record_reruns,
    status_item,
    tests_outcome,
    wait_keys,
)
from functions.test_agent.gates import (
    Benchmark,
    Coverage,
    GateResult,
    Verdict,
    coverage_gate,
    neutralise,
    performance_gate,
    verdict,
)
from shared.agent_runtime import SUCCEEDED, Outcome, TaskContext, running
from shared.errors import InvalidInput, PermanentError, RetryableError
from shared.executor import CreateCheckRun, RerunFailedJobs, SubmitReview, UpdateCheckRun, UpdateReview
from shared.github.checks import find_check_run
from shared.github.rest import GitHubError

log = logging.getLogger("agentops.test")

TEST_KIND = "test_pull_request"
BASELINE_KIND = "update_baseline"
CHECK_NAME = "agent-ops/tests"
OWN_APP = CHECK_NAME.split("/", 1)[0]  # the App's slug: its check runs and statuses never count as CI
MARKER = "<!-- agent-ops:test -->"
FAILED_TITLE = "Test agent failed"
MAX_ARTIFACT_BYTES = 50 * 1024 * 1024  # a zip larger than this is not downloaded
MAX_ARTIFACTS = 10  # artifacts read per commit
MAX_PROBLEMS = 20
EVENTS = {"success": "APPROVE", "failure": "REQUEST_CHANGES", "neutral": "COMMENT"}
REVIEW_STATES = {"APPROVED": "APPROVE", "CHANGES_REQUESTED": "REQUEST_CHANGES", "COMMENTED": "COMMENT"}
WORDS = {"success": "Approved", "failure": "Changes requested", "neutral": "No verdict"}
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")


def _sha(value: Any, what: str) -> str:
    text = str(value or "")
    if not _SHA.fullmatch(text):
        raise InvalidInput(f"the task's {what} is not a commit sha: {neutralise(text, 80)!r}")
    return text


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _is_bot(user: Mapping[str, Any] | None) -> bool:
    user = user or {}
    return user.get("type") == "Bot" or str(user.get("login") or "").endswith("[bot]")


def _items(pages: Any, key: str) -> list[dict[str, Any]]:
    """The entries of paginated listings that wrap their items (`{"total_count": n, key: [...]}`)."""
    found: list[dict[str, Any]] = []
    for page in pages:
        if isinstance(page, Mapping):
            found += [item for item in page.get(key) or [] if isinstance(item, Mapping)]
    return found


class TestAgent:
    __test__ = False  # not a pytest test class, though its name starts with Test
    name = "test"

    def __init__(self, store: Callable[[], Any], app_login: Callable[[], str] = lambda: "") -> None:
        self._store = store  # () -> TestStore
        self._app_login = app_login  # the App's `<slug>[bot]` login, or "" (then any bot's marked review)

    def handle(self, ctx: TaskContext) -> Outcome:
        if ctx.task.kind == BASELINE_KIND:
            return self._promote(ctx)
        if ctx.task.kind != TEST_KIND:
            raise InvalidInput(f"the test agent does not do {ctx.task.kind}")
        return PullTurn(ctx, self._store, self._app_login).run()

    def on_failure(self, ctx: TaskContext, summary: str) -> None:
        """The check run completes neutral, saying the agent failed: a human sees it, never silence.

        A check run that completed with a verdict already keeps it (the gate stands).
        """
        if ctx.task.kind != TEST_KIND:
            return  # a baseline update has no check run; its failed result is the record
        head = str(ctx.inputs.get("head_sha") or "")
        if not _SHA.fullmatch(head):
            return
        repo, task_id = ctx.repository, ctx.task.task_id
        text = (f"The test agent could not finish its checks on `{head[:12]}`. This is a failure of the "
                "agent, not a verdict on the pull request.\n\n"
                f"What failed: {neutralise(summary, 1500)}\n\n"
                "What you can do: fix what is named above and comment `/retry` on the pull request, or "
                "push a new commit.\n\n"
                f"{ctx.links.task(task_id, repo)} · {ctx.links.audit(task_id)}")
        run_id = int(ctx.checkpoint.get("check_run_id") or 0)
        found = None
        if run_id:
            found = ctx.client.request("GET", f"/repos/{repo}/check-runs/{run_id}")
        else:
            found = find_check_run(ctx.client, repo, head, CHECK_NAME, task_id)
        if found is None:
            ctx.apply(CreateCheckRun(repo, head, CHECK_NAME, task_id, "completed", FAILED_TITLE, text,
                                     key=ctx.key("check-failed-create", ctx.task.attempt),
                                     conclusion="neutral"))
            return
        if found.get("status") == "completed" and (found.get("output") or {}).get("title") != FAILED_TITLE:
            log.warning("the agent failed after its verdict; the check run keeps it",
                        extra={"task_id": task_id, "outcome": "failed"})
            return
        ctx.apply(UpdateCheckRun(repo, int(found["id"]), "completed", FAILED_TITLE, text,
                                 key=ctx.key("check-failed", ctx.task.attempt, _digest(text)),
                                 conclusion="neutral"))

    # ---- update_baseline -----------------------------------------------------------------------

    def _promote(self, ctx: TaskContext) -> Outcome:
        inputs = ctx.inputs
        repo = ctx.repository
        number = int(inputs.get("pull_number") or 0)
        base_ref = str(inputs.get("base_ref") or "")
        if not base_ref:
            raise InvalidInput("the baseline update names no base branch")
        merge_sha = _sha(inputs.get("merge_commit_sha"), "merge_commit_sha")
        head = str(inputs.get("pull_head_sha") or "")
        unchanged = f"so the {base_ref} baseline stays as it was"
        if not head:
            return Outcome(SUCCEEDED, f"no measurement to promote: the merge of #{number} names no head "
                                      f"commit, {unchanged}", details={"promoted": False})
        head = _sha(head, "pull_head_sha")
        store = self._store()
        measurement = store.measurement(repo, head)
        try:
            coverage, benchmarks = baseline_from_doc(measurement)
        except BaselineFormatError as exc:
            raise PermanentError(f"the stored measurement of {head[:12]} is unreadable: {exc}") from exc
        if measurement is None or (coverage is None and benchmarks is None):
            return Outcome(SUCCEEDED, f"no measurement to promote: the test agent stored none for "
                                      f"#{number}'s head {head[:12]}, {unchanged}",
                           details={"promoted": False})
        written = store.save_baseline(repo, base_ref, measurement, sha=merge_sha, head_sha=head,
                                      pull_number=number, now=ctx.now())
        parts = [f"coverage {coverage.line_rate:.2f}%" if coverage else "",
                 f"{len(benchmarks)} benchmarks" if benchmarks is not None else ""]
        kept = [str(part) for part in written.get("kept") or []]
        summary = (f"the {base_ref} baseline is now the measurement of #{number}'s head {head[:12]} "
                   f"(merged as {merge_sha[:12]}): {', '.join(p for p in parts if p)}")
        if kept:
            summary += f"; kept the previous {' and '.join(kept)}, which the head did not measure"
        return Outcome(SUCCEEDED, summary, details={"promoted": True, "base_ref": base_ref, "sha": merge_sha,
                                                    "head_sha": head, "kept": kept})


class PullTurn:
    """One turn on one pull request head: what GitHub holds, and the steps still to do."""

    def __init__(self, ctx: TaskContext, store: Callable[[], Any], app_login: Callable[[], str]) -> None:
        self.ctx = ctx
        self.repo = ctx.repository
        self.number = int(ctx.inputs.get("pull_number") or 0)
        if self.number < 1:
            raise InvalidInput("the test task names no pull request")
        self.head_sha = _sha(ctx.inputs.get("head_sha"), "head_sha")
        self.client = ctx.client
        self._store_factory = store
        self._app_login = app_login
        self.checkpoint: dict[str, Any] = dict(ctx.checkpoint)
        if self.checkpoint.get("attempt") != ctx.task.attempt:
            # A new attempt: what the check run says is not known (on_failure may have completed it).
            self.checkpoint.pop("text", None)
            self.checkpoint["attempt"] = ctx.task.attempt
        load = ctx.policy()
        self.policy = load.policy
        self.settings = self.policy.tests
        self.ci_policy = CiPolicy(required=tuple(self.settings.required_checks),
                                  require_ci=bool(self.settings.require_ci),
                                  rerun_failed=bool(self.settings.rerun_failed), own_app=OWN_APP)
        self.problems: list[str] = []
        if getattr(load, "source", "") == "invalid":
            self.problems.append("the repository's .github/agent-ops.yml is invalid: the safe policy applies")

    @property
    def short(self) -> str:
        return self.head_sha[:12]

    def _store(self) -> Any:
        return self._store_factory()

    # ---- the turn --------------------------------------------------------------------------

    def run(self) -> Outcome:
        pull = self.client.request("GET", f"/repos/{self.repo}/pulls/{self.number}")
        head = str((pull.get("head") or {}).get("sha") or "")
        if pull.get("state") != "open" or head != self.head_sha:
            return self._superseded(pull, head)
        self.pull = pull
        self.base_ref = str(self.ctx.inputs.get("base_ref") or (pull.get("base") or {}).get("ref") or "")
        self._ensure_check_run()
        runs, items = self._facts()
        decision = self._decide(items)
        if isinstance(decision, Rerun):
            waiting = self._rerun(decision)
            if waiting is not None:
                return waiting
            decision = self._decide(items)
        if isinstance(decision, Wait):
            return self._wait(decision)
        assert isinstance(decision, Done)
        return self._finish(decision, runs)

    def _superseded(self, pull: Mapping[str, Any], head: str) -> Outcome:
        if pull.get("state") != "open":
            why = f"#{self.number} is {'merged' if pull.get('merged') else 'closed'}"
        else:
            why = f"#{self.number}'s head moved on to {head[:12]}"
        run_id = int(self.checkpoint.get("check_run_id") or 0)
        if run_id:
            self.ctx.apply(UpdateCheckRun(self.repo, run_id, "completed", "Not gated: superseded",
                                          f"{why}; this commit is no longer gated.", conclusion="neutral",
                                          key=self.ctx.key("check-superseded", self.ctx.task.attempt)))
        return Outcome(SUCCEEDED, f"{why}: {self.short} is no longer gated", checkpoint=self.checkpoint,
                       details={"conclusion": "superseded"})

    # ---- the check run ---------------------------------------------------------------------

    def _ensure_check_run(self) -> None:
        if self.checkpoint.get("check_run_id"):
            return
        ctx = self.ctx
        title, text = "Waiting for CI", f"The test agent is gathering the CI results of `{self.short}`."
        answer = ctx.apply(CreateCheckRun(self.repo, self.head_sha, CHECK_NAME, ctx.task.task_id,
                                          "in_progress", title, text, key=ctx.key("check", self.head_sha)))
        if not answer or not answer.get("id"):
            answer = find_check_run(self.client, self.repo, self.head_sha, CHECK_NAME, ctx.task.task_id)
        if answer and answer.get("id"):
            self.checkpoint["check_run_id"] = int(answer["id"])
            self.checkpoint["text"] = _digest(f"{title}\n{text}")
        else:
            self.problems.append(f"the {CHECK_NAME} check run could not be created (dry-run, or GitHub "
                                 "refused)")

    def _say(self, title: str, text: str) -> None:
        """The check run's in-progress text, written only when it changed."""
        run_id = int(self.checkpoint.get("check_run_id") or 0)
        digest = _digest(f"{title}\n{text}")
        if not run_id or self.checkpoint.get("text") == digest:
            return
        count = int(self.checkpoint.get("text_count") or 0) + 1
        self.ctx.apply(UpdateCheckRun(self.repo, run_id, "in_progress", title, text,
                                      key=self.ctx.key("check-text", count)))
        self.checkpoint.update(text=digest, text_count=count)

    # ---- CI ----------------------------------------------------------------------------------

    def _facts(self) -> tuple[list[dict[str, Any]], list[CiItem]]:
        repo, sha = self.repo, self.head_sha
        check_runs = _items(self.client.paginate(f"/repos/{repo}/commits/{sha}/check-runs",
                                                 {"filter": "latest"}), "check_runs")
        statuses = _items(self.client.paginate(f"/repos/{repo}/commits/{sha}/status"), "statuses")
        runs = _items(self.client.paginate(f"/repos/{repo}/actions/runs",
                                           {"head_sha": sha, "exclude_pull_requests": "true"}),
                      "workflow_runs")
        runs = [run for run in runs if run.get("head_sha") in (None, sha)]
        self._first_attempts(runs)
        items = [CiItem("check_run", int(run["id"]), _text(run, "name"), _text(run, "status"),
                        _text(run, "conclusion"), app=str((run.get("app") or {}).get("slug") or ""),
                        url=_text(run, "details_url") or _text(run, "html_url"))
                 for run in check_runs]
        items += [status_item(int(status["id"]), _text(status, "context"), _text(status, "state"),
                              _text(status, "target_url")) for status in statuses]
        items += [CiItem("workflow_run", int(run["id"]), _text(run, "name"), _text(run, "status"),
                         _text(run, "conclusion"), attempt=int(run.get("run_attempt") or 1),
                         url=_text(run, "html_url")) for run in runs]
        return runs, items

    def _first_attempts(self, runs: list[dict[str, Any]]) -> None:
        """How each re-run run's first attempt ended, from GitHub (`attempts/1`), kept in the checkpoint.

        Flaky means failed on the first attempt and passed on a re-run, whoever re-ran it; reading
        the first attempt from GitHub keeps that true when two turns of the task race and the
        checkpoint of the turn that asked for the re-run is not back yet.
        """
        known = dict(self.checkpoint.get("reruns") or {})
        for run in runs:
            run_id = str(run.get("id") or "")
            if int(run.get("run_attempt") or 1) < 2 or not run_id or run_id in known:
                continue
            first = self.client.request("GET", f"/repos/{self.repo}/actions/runs/{run_id}/attempts/1",
                                        params={"exclude_pull_requests": "true"})
            if first.get("status") == "completed" and first.get("conclusion"):
                known[run_id] = str(first["conclusion"])
        if known:
            self.checkpoint["reruns"] = known

    @property
    def reruns(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.checkpoint.get("reruns") or {}).items()}

    @property
    def refused(self) -> set[int]:
        return {int(run_id) for run_id in self.checkpoint.get("rerun_refused") or []}

    def _decide(self, items: list[CiItem]) -> CiDecision:
        facts = CiFacts(self.head_sha, tuple(items), self.reruns)
        decision = decide_ci(facts, self.ci_policy)
        if isinstance(decision, Rerun) and set(decision.run_ids) <= self.refused:
            # Every run to re-run could not be: judge them as they are, failed.
            decision = decide_ci(facts, replace(self.ci_policy, rerun_failed=False))
        return decision

    def _rerun(self, decision: Rerun) -> Outcome | None:
        """Re-run the failed jobs of each run once; an Outcome (waiting) when any re-run started."""
        started: list[int] = []
        refused = self.refused
        for run_id in decision.run_ids:
            if run_id in refused:
                continue
            answer = self.ctx.apply(RerunFailedJobs(self.repo, run_id, key=self.ctx.key("rerun", run_id)))
            if answer is None and not self._rerun_started(run_id):
                refused.add(run_id)  # refused by GitHub (or dry-run): the failure stands
            else:
                started.append(run_id)
        self.checkpoint["rerun_refused"] = sorted(refused)
        if not started:
            return None
        first = {str(run_id): decision.first_conclusions[str(run_id)] for run_id in started}
        self.checkpoint["reruns"] = record_reruns(self.reruns, Rerun(tuple(started), first, decision.reason))
        self._say("Re-running failed jobs", f"{decision.reason}\n\nThe verdict follows when the re-runs "
                                            "finish.")
        return running(f"{decision.reason} on {self.short}",
                       wait_keys(self.repo, self.head_sha, self.checkpoint["reruns"].keys()), self.checkpoint)

    def _rerun_started(self, run_id: int) -> bool:
        """Whether a run shows a re-run: a re-run applied before, or none at all (refused, dry-run)."""
        run = self.client.request("GET", f"/repos/{self.repo}/actions/runs/{run_id}",
                                  params={"exclude_pull_requests": "true"})
        return int(run.get("run_attempt") or 1) > 1 or run.get("status") != "completed"

    def _wait(self, decision: Wait) -> Outcome:
        self._say("Waiting for CI", f"{decision.reason}\n\nThe verdict follows when CI has finished.")
        return running(decision.reason, wait_keys(self.repo, self.head_sha, self.reruns.keys()),
                       self.checkpoint)

    # ---- the verdict ---------------------------------------------------------------------------

    def _finish(self, done: Done, runs: list[dict[str, Any]]) -> Outcome:
        ctx, store = self.ctx, self._store()
        if self.refused:
            listed = ", ".join(str(run_id) for run_id in sorted(self.refused)[:10])
            self.problems.append(f"could not re-run the failed jobs of workflow run {listed} (GitHub "
                                 "refused, or dry-run): judged as failed")
        if done.flaky:
            store.record_flaky(self.repo, done.flaky, self.head_sha, self.number, ctx.now())
        contents = self._artifacts(runs)
        base_coverage, base_benchmarks = self._baseline(store)
        coverage_result = None
        if contents.coverage is not None:
            coverage_result = coverage_gate(contents.coverage, base_coverage, self.policy.coverage_minimum,
                                            self.policy.coverage_max_drop)
        elif self.policy.coverage_minimum is not None or base_coverage is not None:
            self.problems.append("coverage was not measured: no coverage report was found in an artifact "
                                 f"named {neutralise(self.settings.coverage_artifact)}")
        performance_result = None
        if contents.benchmarks is not None:
            performance_result = performance_gate(contents.benchmarks, base_benchmarks,
                                                  self.policy.performance_tolerance_percent)
        elif base_benchmarks:
            self.problems.append("performance was not measured: no benchmark report was found in an artifact "
                                 f"named {neutralise(self.settings.benchmark_artifact)}")
        tests = tests_outcome(done, self.ci_policy)
        result = verdict(tests, coverage_result, performance_result, done.flaky)
        if contents.coverage is not None or contents.benchmarks is not None:
            store.save_measurement(self.repo, self.head_sha, self.number,
                                   baseline_doc(contents.coverage, contents.benchmarks), ctx.now())
        line = self._line(result, tests, done, coverage_result, performance_result)
        self._complete(result, tests, done, contents.coverage)
        review = self._review(result)
        return Outcome(SUCCEEDED, line, checkpoint=self.checkpoint, details={
            "conclusion": result.check_conclusion,
            "coverage": None if contents.coverage is None else round(contents.coverage.line_rate, 4),
            "flaky": list(done.flaky),
            "tests": tests,
            "failed": list(done.failed),
            "review": review,
            "check_run_id": int(self.checkpoint.get("check_run_id") or 0),
            "problems": self.problems[:MAX_PROBLEMS],
        })

    def _line(self, result: Verdict, tests: str, done: Done, coverage: GateResult | None,
              performance: GateResult | None) -> str:
        more = ", …" if len(done.failed) > 3 else ""
        failed = f" ({', '.join(done.failed[:3])}{more})" if done.failed else ""
        parts = [f"tests {tests}{failed}", coverage.summary if coverage else "coverage not measured",
                 performance.summary if performance else "performance not measured"]
        if done.flaky:
            parts.append(f"{len(done.flaky)} flaky")
        return f"#{self.number} @ {self.short}: {WORDS[result.check_conclusion].lower()}: {'; '.join(parts)}"

    def _complete(self, result: Verdict, tests: str, done: Done, coverage: Coverage | None) -> None:
        run_id = int(self.checkpoint.get("check_run_id") or 0)
        if not run_id:
            return
        measured = f"coverage {coverage.line_rate:.2f}%" if coverage else "coverage not measured"
        title = f"{WORDS[result.check_conclusion]}: tests {tests}, {measured}"
        lines = [result.summary_markdown.rstrip("\n")]
        if done.summary_lines:
            lines += ["", "### CI", *(f"- {line}" for line in done.summary_lines)]
        if self.problems:
            lines += ["", "### Problems", *(f"- {neutralise(p, 300)}" for p in self.problems[:MAX_PROBLEMS])]
        summary = "\n".join(lines) + "\n"
        self.ctx.apply(UpdateCheckRun(self.repo, run_id, "completed", title, summary,
                                      conclusion=result.check_conclusion,
                                      key=self.ctx.key("check-done", self.ctx.task.attempt,
                                                       _digest(summary))))

    # ---- artifacts and baselines ---------------------------------------------------------------

    def _artifacts(self, runs: list[dict[str, Any]]) -> ArtifactContents:
        coverage_name = str(self.settings.coverage_artifact or "")
        benchmark_name = str(self.settings.benchmark_artifact or "")
        wanted = {name for name in (coverage_name, benchmark_name) if name}
        found: list[dict[str, Any]] = []
        for run in runs:
            if run.get("status") != "completed":
                continue
            listing = self.client.paginate(f"/repos/{self.repo}/actions/runs/{int(run['id'])}/artifacts")
            found += [artifact for artifact in _items(listing, "artifacts") if artifact.get("name") in wanted]
        # By name, then the newest first: `merge_artifacts` keeps the first coverage report.
        found.sort(key=lambda artifact: (str(artifact["name"]), -int(artifact["id"])))
        if len(found) > MAX_ARTIFACTS:
            self.problems.append(f"{len(found)} matching artifacts; read the first {MAX_ARTIFACTS}")
        parts: list[ArtifactContents] = []
        for artifact in found[:MAX_ARTIFACTS]:
            name = str(artifact["name"])
            shown = f"artifact {neutralise(name)} ({int(artifact['id'])})"
            size = artifact.get("size_in_bytes")
            if artifact.get("expired"):
                self.problems.append(f"{shown} has expired: not read")
                continue
            if isinstance(size, int) and size > MAX_ARTIFACT_BYTES:
                self.problems.append(f"{shown} is {size} bytes, over the {MAX_ARTIFACT_BYTES}-byte limit: "
                                     "not read")
                continue
            try:
                data = self.client.download(f"/repos/{self.repo}/actions/artifacts/{int(artifact['id'])}/zip",
                                            MAX_ARTIFACT_BYTES)
            except (PermanentError, GitHubError) as exc:
                if isinstance(exc, RetryableError):
                    raise  # a 5xx or a rate limit: the turn is retried
                self.problems.append(f"{shown} could not be downloaded: {neutralise(str(exc), 200)}")
                continue
            part = read_artifact(data, coverage_names=COVERAGE_NAMES if name == coverage_name else (),
                                 benchmark_names=BENCHMARK_NAMES if name == benchmark_name else (), name=name)
            parts.append(part)
        merged = merge_artifacts(parts)
        self.problems += list(merged.problems)
        if merged.coverage is None and any(a["name"] == coverage_name for a in found[:MAX_ARTIFACTS]):
            self.problems.append(f"the artifact {neutralise(coverage_name)} holds no readable coverage "
                                 "report")
        return merged

    def _baseline(self, store: Any) -> tuple[Coverage | None, dict[str, Benchmark] | None]:
        if not self.base_ref:
            return None, None
        doc = store.baseline(self.repo, self.base_ref)
        try:
            return baseline_from_doc(doc)
        except BaselineFormatError as exc:
            self.problems.append(f"the stored baseline of {neutralise(self.base_ref)} is unreadable ({exc}): "
                                 "compared with no baseline")
            return None, None

    # ---- the review ----------------------------------------------------------------------------

    def _review(self, result: Verdict) -> str:
        """Submit or update the one review; says which it did."""
        author = self.pull.get("user") or {}
        own = _is_bot(author)
        event = "COMMENT" if own else EVENTS[result.check_conclusion]
        body = self._review_body(result, own)
        mine = self._latest_review()
        ctx = self.ctx
        if mine is not None and REVIEW_STATES.get(str(mine.get("state"))) == event:
            if _same_text(str(mine.get("body") or ""), body):
                return "unchanged"
            ctx.apply(UpdateReview(self.repo, self.number, int(mine["id"]), body,
                                   key=ctx.key("review-update", int(mine["id"]), _digest(body))))
            return "updated"
        ctx.apply(SubmitReview(self.repo, self.number, self.head_sha, event, body,
                               key=ctx.key("review", ctx.task.attempt, event, _digest(body))))
        return "submitted"

    def _latest_review(self) -> dict[str, Any] | None:
        login = self._app_login() or ""
        latest: dict[str, Any] | None = None
        for review in self.client.paginate(f"/repos/{self.repo}/pulls/{self.number}/reviews"):
            if not isinstance(review, Mapping):
                continue
            user = review.get("user") or {}
            if (login and user.get("login") != login) or (not login and not _is_bot(user)):
                continue
            if MARKER not in str(review.get("body") or "") or review.get("state") == "PENDING":
                continue
            if latest is None or int(review["id"]) > int(latest["id"]):
                latest = dict(review)
        return latest

    def _review_body(self, result: Verdict, own: bool) -> str:
        note = (f"Verdict for commit `{self.short}`. The test agent keeps this one review up to date as the "
                f"pull request changes; the `{CHECK_NAME}` check run on the commit has the CI details.")
        if own:
            note += (" GitHub does not let an App approve or request changes on a bot's pull request, so "
                     f"this review is a comment: the `{CHECK_NAME}` check run is the gate.")
        return f"{MARKER}\n{result.summary_markdown.rstrip()}\n\n---\n_{note}_\n"


def _text(entry: Mapping[str, Any], key: str) -> str:
    return str(entry.get(key) or "")


def _same_text(left: str, right: str) -> bool:
    return left.replace("\r\n", "\n").strip() == right.replace("\r\n", "\n").strip()

