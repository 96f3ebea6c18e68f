"""The deploy agent: ships a merged commit to App Engine as a release, event by event.

One task per release (`deploy_merge` from a merge, `/deploy`, or `rollback` from `/rollback` and
`agentops deploy rollback`). Each turn reads the release from `deployments/{id}`, turns what woke
it into one event of the state machine (`functions.deploy_agent.release`), writes the decision and
its actions in one transaction and then runs the actions. Actions that learn something (the GitHub
deployment's id, the build's id, the smoke results) produce the next event at once, so a turn goes
as far as it can without waiting; then the task parks, naming `release:<id>` (the monitor wakes it
every minute while it is in progress), `build:<id>` (a Cloud Build notification) and, during
pre-flight, the merge commit's checks. Nothing sleeps.

A crash between two actions is safe: the next turn finds them pending and runs them first, and
every action is idempotent (keyed GitHub writes; App Engine calls that set a state; a build found
by its release tag before one is created).

What it needs from outside, each behind a small port so tests run it against the sandboxes:
`appengine` (the Admin API: versions, traffic splits, operations), `builder` (Cloud Build, or the
versions API directly), `monitoring` (Cloud Monitoring request counts; None where unavailable),
`monitor_store` (the monitor's probes of the new version, and its service registry) and `notifier`
(Slack).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from functions.deploy_agent import release as rel
from functions.deploy_agent import store as deploy_store
from functions.deploy_agent.canary import HealthWindow, plan_from_policy
from functions.deploy_agent.store import DeployStore
from shared import executor as ex
from shared.agent_runtime import FAILED, SUCCEEDED, Outcome, TaskContext, running
from shared.errors import PermanentError
from shared.github.issues import find_issue_by_marker
from shared.markdown import neutralise

log = logging.getLogger("agentops.deploy")

DEPLOY_KINDS = ("deploy_merge", "deploy")
ROLLBACK_KIND = "rollback"
OWN_CHECKS = "agent-ops/"
MAX_EVENTS_PER_TURN = 12  # a turn follows at most this many immediate events (a loop guard)
SMOKE_TIMEOUT_CAP_SECONDS = 30.0


class Builder(Protocol):
    def start(self, release: rel.Release, repository_url: str) -> str: ...

    def status(self, build_id: str) -> str: ...


class Prober(Protocol):
    def __call__(self, url: str, check: Any, timeout: float) -> Any: ...


@dataclass
class Ports:
    """What the agent reaches outside GitHub; factories, so a cold start builds only what it uses."""

    store: Callable[[], DeployStore]
    appengine: Callable[[], Any]
    builder: Callable[[], Builder]
    monitor_store: Callable[[], Any]
    monitoring: Callable[[], Any] = lambda: None
    notifier: Callable[[], Any] = lambda: None
    probe: Callable[[], Prober] | None = None


class DeployAgent:
    name = "deploy"

    def __init__(self, ports: Ports) -> None:
        self._ports = ports

    # ---- the turn ----------------------------------------------------------------------------

    def handle(self, ctx: TaskContext) -> Outcome:
        if ctx.task.kind == ROLLBACK_KIND:
            return self._manual_rollback(ctx)
        store = self._ports.store()
        doc = self._current_release(ctx, store)
        if doc is None:
            # The policy decides whether a release starts, never whether one in flight goes on: a
            # merge that turns deploying off mid-canary must not leave the traffic split.
            load = ctx.policy()
            if not load.valid or not load.policy.agent_enabled("deploy"):
                why = "its policy is invalid" if not load.valid else "deploying is off or names no service"
                return Outcome(SUCCEEDED, f"nothing to deploy: {why}")
            doc = self._new_release(ctx, load.policy, store)
        return self._drive(ctx, doc, self._event_for(ctx, doc))

    def _current_release(self, ctx: TaskContext, store: DeployStore) -> dict[str, Any] | None:
        """The task's release: from its checkpoint, or (a turn that died before reporting one) the
        active release it created. A /retry of a release that ended deploys again: None."""
        release_id = str(ctx.checkpoint.get("release_id") or "")
        doc = store.get(release_id) if release_id else store.active_for_task(ctx.task.task_id)
        if doc is not None and doc.get("state") in rel.TERMINAL \
                and int(doc.get("task_attempt") or 0) != ctx.task.attempt:
            return None
        return doc

    def _new_release(self, ctx: TaskContext, policy: Any, store: DeployStore) -> dict[str, Any]:
        sha = str(ctx.inputs.get("merge_commit_sha") or ctx.inputs.get("sha") or "")
        if not sha:
            raise PermanentError("the deploy task names no commit")
        service = str(policy.deploy_service)
        now = ctx.now()
        appengine = self._ports.appengine()
        split = appengine.split(service)
        previous = max(split, key=lambda version: split[version]) if split else ""
        # A new attempt of the task (a /retry after a rollback) is a new release of the same commit.
        release = rel.new_release(ctx.repository, service, sha, int(ctx.inputs.get("pull_number") or 0),
                                  previous, now, attempt=max(ctx.task.attempt - 1, 0))
        plan = plan_from_policy(policy)
        url = policy.deploy.url or appengine.service_url(service)
        doc = store.create(release, plan, installation_id=ctx.installation_id, task_id=ctx.task.task_id,
                           task_attempt=ctx.task.attempt, version_url="", service_url=url,
                           notify={"mention": policy.notify.mention, "slack": policy.notify.slack})
        self._register(ctx, policy, service, url)
        return doc

    def _register(self, ctx: TaskContext, policy: Any, service: str, url: str) -> None:
        """The monitor learns the service (its URL, health checks and SLOs) from its deploys.

        A registration the monitor refuses (a URL it will not probe) is logged; the release goes on.
        """
        try:
            self._ports.monitor_store().register_service(ctx.repository, ctx.installation_id, service, url,
                                                         policy, ctx.now())
        except PermanentError as exc:
            log.error("the monitor will not watch %s: %s", service, exc, extra={"task_id": ctx.task.task_id})

    def _drive(self, ctx: TaskContext, doc: dict[str, Any], event: rel.Event | None) -> Outcome:
        store = self._ports.store()
        events: list[rel.Event] = []
        doc, produced = self._run_pending(ctx, doc)
        events.extend(produced)
        if event is not None:
            events.append(event)
        for _ in range(MAX_EVENTS_PER_TURN):
            if not events or deploy_store.pending_actions(doc):
                break  # nothing more to decide, or an action that must succeed first
            event = events.pop(0)
            release = deploy_store.release_from_doc(doc)
            plan = deploy_store.plan_from_doc(doc.get("plan") or {})
            decision = rel.next_step(release, event, plan, ctx.now())
            if decision.noop:
                continue
            committed = store.commit(release.id, int(doc.get("seq") or 0), decision.release, decision.actions,
                                     ctx.now())
            if committed is None:  # another turn moved it: go on from what it wrote, with this event
                doc = store.get(release.id) or doc
                doc, produced = self._run_pending(ctx, doc)
                events[:0] = [*produced, event]
                continue
            doc, produced = self._run_pending(ctx, committed)
            events.extend(produced)
        return self._outcome(ctx, doc)

    def _run_pending(self, ctx: TaskContext, doc: dict[str, Any]) -> tuple[dict[str, Any], list[rel.Event]]:
        store = self._ports.store()
        events: list[rel.Event] = []
        seq = int(doc.get("seq") or 0)
        for index, action in deploy_store.pending_actions(doc):
            try:
                event, facts = self._perform(ctx, doc, seq, index, action)
            except PermanentError as exc:
                if not isinstance(action, rel.Rollback):
                    raise
                # Going back must not be given up: it stays pending, and every tick tries again.
                log.error("App Engine refused the rollback of %s: %s", doc.get("service"), exc,
                          extra={"task_id": str(doc.get("id") or "")})
                break
            store.mark_done(str(doc["id"]), seq, index, ctx.now(), **facts)
            doc = {**doc, "done": index + 1, **facts}
            if event is not None:
                events.append(event)
        return doc, events

    def _outcome(self, ctx: TaskContext, doc: Mapping[str, Any]) -> Outcome:
        release = deploy_store.release_from_doc(doc)
        checkpoint = {"release_id": release.id}
        last = release.timeline[-1].decision if release.timeline else f"release {release.id} started"
        summary = neutralise(last, 900)
        if release.state == rel.SUCCEEDED:
            return Outcome(SUCCEEDED, summary, checkpoint=checkpoint, details={"release_id": release.id})
        if release.terminal:
            return Outcome(FAILED, summary, checkpoint=checkpoint,
                           details={"release_id": release.id, "state": release.state, "decided": True})
        waits = [f"release:{release.id}"]
        if release.build_id:
            waits.append(f"build:{release.build_id}")
        if release.state == rel.PREFLIGHT:
            commit = f"{release.repository}@{release.sha}"
            waits += [f"check_run:{commit}", f"check_suite:{commit}", f"status:{commit}"]
        return running(summary, waits, checkpoint)

    # ---- events from what woke the task ------------------------------------------------------

    def _event_for(self, ctx: TaskContext, doc: Mapping[str, Any]) -> rel.Event | None:
        release = deploy_store.release_from_doc(doc)
        wake = ctx.wake or {}
        event = str(wake.get("event") or "")
        if event == "chatops" and wake.get("action") == "rollback":
            return rel.ManualRollback(str(wake.get("actor") or "a maintainer"))
        if release.state == rel.PREFLIGHT:
            return self._preflight(ctx, release)
        if release.state == rel.BUILDING and not release.build_id and doc.get("started_build"):
            # The build started but the turn ended before the release recorded it.
            return rel.BuildStarted(str(doc["started_build"]))
        if release.state == rel.SMOKE and not deploy_store.pending_actions(doc):
            # The smoke results were lost with a turn: run the checks again (they change nothing).
            plan = deploy_store.plan_from_doc(doc.get("plan") or {})
            return self._smoke(release, rel.RunSmoke(release.version, plan.smoke))
        if release.state == rel.BUILDING:
            if event == "cloud_build" and wake.get("build_id"):
                return rel.BuildFinished(str(wake["build_id"]), str(wake.get("status") or ""))
            if release.build_id:  # a tick: ask, in case the notification was lost
                status = self._ports.builder().status(release.build_id)
                return rel.BuildFinished(release.build_id, status) if status else None
            return None
        if release.state in (rel.CANARY, rel.WATCHING, rel.ROLLING_BACK):
            breach = self._breach(release)
            if breach is not None:
                return breach
            return self._tick(ctx, release)
        return None

    def _preflight(self, ctx: TaskContext, release: rel.Release) -> rel.PreflightChecked:
        policy = ctx.policy().policy
        checks = self._checks(ctx, release.sha)
        required = tuple(policy.tests.required_checks) or tuple(checks)
        store = self._ports.store()
        facts = rel.PreflightFacts(
            sha=release.sha, checks=checks, required=required, freeze=tuple(policy.freeze),
            config_problems=tuple(f"{p.path}: {p.message}" for p in ctx.policy().problems),
            running_release=store.running_for(release.service, exclude=release.id), release_id=release.id,
            # The orchestrator's gate dispatches a deploy only once its approval is granted.
            approval_required=policy.approval_for("deploy") is not None, approved=True,
        )
        return rel.PreflightChecked(rel.preflight(facts, ctx.now()), final=rel.preflight_final(facts))

    def _checks(self, ctx: TaskContext, sha: str) -> dict[str, str]:
        """Check runs and commit statuses on the merge commit: name -> conclusion ("" while pending)."""
        checks: dict[str, tuple[int, str]] = {}
        for page in ctx.client.paginate(f"/repos/{ctx.repository}/commits/{sha}/check-runs"):
            for run in page.get("check_runs", []) if isinstance(page, dict) else []:
                name = str(run.get("name") or "")
                if not name or name.startswith(OWN_CHECKS) or _own_app(run):
                    continue
                conclusion = str(run.get("conclusion") or "") if run.get("status") == "completed" else ""
                if name not in checks or int(run.get("id") or 0) > checks[name][0]:
                    checks[name] = (int(run.get("id") or 0), conclusion)
        combined = ctx.client.request("GET", f"/repos/{ctx.repository}/commits/{sha}/status")
        states = {"success": "success", "failure": "failure", "error": "failure", "pending": ""}
        for status in (combined or {}).get("statuses") or []:
            context = str(status.get("context") or "")
            if context and not context.startswith(OWN_CHECKS):
                state = states.get(str(status.get("state")), "")
                checks.setdefault(context, (int(status.get("id") or 0), state))
        return {name: conclusion for name, (_, conclusion) in checks.items()}

    def _breach(self, release: rel.Release) -> rel.Breach | None:
        for doc in self._ports.monitor_store().release_health(release.id, release.step_started_at):
            if doc.get("breach") and release.state in (rel.CANARY, rel.WATCHING):
                return rel.Breach(str(doc["breach"]), {"probes": int(doc.get("probes") or 0),
                                                       "failures": int(doc.get("failures") or 0)})
        return None

    def _tick(self, ctx: TaskContext, release: rel.Release) -> rel.Tick | None:
        """What the monitor and Cloud Monitoring saw of the new version since this step began."""
        appengine = self._ports.appengine()
        now = ctx.now()
        try:
            serving = appengine.split(release.service)
            versions = tuple(_version_rows(appengine, release.service, serving))
        except PermanentError as exc:  # no decision on a look that failed; the next tick looks again
            log.error("could not read %s from App Engine: %s", release.service, exc,
                      extra={"task_id": release.id})
            return None
        if release.state == rel.ROLLING_BACK:
            return rel.Tick(now, None, serving, versions)
        return rel.Tick(now, self._health(release, now), serving, versions)

    def _health(self, release: rel.Release, now: datetime) -> HealthWindow | None:
        probes = self._ports.monitor_store().release_health(release.id, release.step_started_at)
        requests = sum(int(doc.get("probes") or 0) for doc in probes)
        errors = sum(int(doc.get("failures") or 0) for doc in probes)
        latencies = sorted(float(ms) for doc in probes for ms in doc.get("latencies_ms") or ())
        sources = ["probes"] if probes else []
        monitoring = self._ports.monitoring()
        if monitoring is not None and now > release.step_started_at:
            try:
                counts = monitoring.response_counts(release.service, release.version,
                                                    release.step_started_at, now)
            except PermanentError as exc:  # refused or misconfigured: judge on the probes alone
                log.error("Cloud Monitoring refused the query: %s", exc, extra={"task_id": release.id})
                counts = None
            if counts is not None:
                requests += counts[0]
                errors += counts[1]
                sources.append("cloud-monitoring")
        if not sources:
            return None
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
        return HealthWindow(requests, errors, p95, "+".join(sources))

    # ---- actions -----------------------------------------------------------------------------

    def _perform(self, ctx: TaskContext, doc: Mapping[str, Any], seq: int, index: int,
                 action: rel.Action) -> tuple[rel.Event | None, dict[str, Any]]:
        release = deploy_store.release_from_doc(doc)
        # The release's, not the task's: a rollback task finishing a decision the deploy task
        # committed makes none of its effects a second time.
        key = f"deploy:{release.id}:{seq}:{index}"
        repo = release.repository
        if isinstance(action, rel.CreateGitHubDeployment):
            deployment_id = self._github_deployment(ctx, release, action, key)
            return rel.DeploymentCreated(deployment_id), {"github_deployment_id": deployment_id}
        if isinstance(action, rel.SetDeploymentStatus):
            deployment_id = int(doc.get("github_deployment_id") or release.github_deployment_id or 0)
            if deployment_id:
                ctx.apply(ex.CreateDeploymentStatus(
                    repo, deployment_id, action.state, neutralise(action.description, 140),
                    environment_url=str(doc.get("service_url") or ""),
                    log_url=ctx.links.task_url(ctx.task.task_id), key=key))
            return None, {}
        if isinstance(action, rel.StartBuild):
            build_id = self._ports.builder().start(release, f"https://github.com/{repo}")
            # The release's own build_id is set by the BuildStarted event, not here.
            return rel.BuildStarted(build_id), {"started_build": build_id}
        if isinstance(action, rel.RunSmoke):
            return self._smoke(release, action), {}
        if isinstance(action, rel.SetTraffic):
            try:
                self._ports.appengine().set_split(release.service, dict(action.split))
            except PermanentError as exc:  # App Engine refused the step: go back rather than stay split
                return rel.Breach(f"App Engine refused the traffic split: {exc}"), {}
            return None, {}
        if isinstance(action, rel.Rollback):
            self._ports.appengine().set_split(release.service, {action.to_version: 1.0})
            return None, {}
        if isinstance(action, rel.OpenIncident):
            self._incident(ctx, doc, release, action, key)
            return None, {}
        if isinstance(action, rel.Notify):
            self._notify(ctx, doc, release, action.text, key)
            return None, {}
        if isinstance(action, rel.DeleteVersions):
            for version in action.versions:
                try:
                    self._ports.appengine().delete_version(release.service, version)
                except PermanentError as exc:  # clean-up is best effort; the release stands
                    log.error("could not delete version %s: %s", version, exc, extra={"task_id": release.id})
            return None, {}
        return None, {}  # Wait: the monitor's ticks wake the task; nothing to schedule

    def _github_deployment(self, ctx: TaskContext, release: rel.Release, action: rel.CreateGitHubDeployment,
                           key: str) -> int:
        """The release's GitHub deployment, found again by its payload after a crash hid the answer."""
        answer = ctx.apply(ex.CreateDeployment(
            release.repository, action.ref, action.environment, neutralise(action.description, 140),
            {"release_id": release.id, "service": release.service, "version": release.version}, key=key))
        if answer and isinstance(answer.get("id"), int):
            return int(answer["id"])
        for deployment in ctx.client.paginate(f"/repos/{release.repository}/deployments",
                                              {"sha": release.sha, "environment": action.environment}):
            payload = deployment.get("payload") if isinstance(deployment, dict) else None
            if isinstance(payload, dict) and payload.get("release_id") == release.id:
                return int(deployment["id"])
        return 0  # dry-run, or GitHub refused: the release goes on without deployment statuses

    def _smoke(self, release: rel.Release, action: rel.RunSmoke) -> rel.SmokeResult:
        """Every configured check against the new version's own URL, before any traffic moves."""
        appengine = self._ports.appengine()
        url = appengine.version_url(release.service, action.version)
        self._ports.store().update(release.id, version_url=url)
        prober = self._ports.probe() if self._ports.probe else _default_probe()
        results = []
        for check in action.checks:
            timeout = min(SMOKE_TIMEOUT_CAP_SECONDS, max(check.max_latency_ms / 1000 * 2, 1.0))
            probe = prober(url.rstrip("/") + check.path, check, timeout)
            status = int(getattr(probe, "status", 0) or 0)
            latency = float(getattr(probe, "latency_ms", 0.0) or 0.0)
            reasons = []
            if status != check.status:
                reasons.append(f"expected {check.status}")
            if latency > check.max_latency_ms:
                reasons.append(f"slower than {check.max_latency_ms} ms")
            error = str(getattr(probe, "error", "") or "")
            if error:
                reasons.append(error)
            results.append(rel.SmokeOutcome(check.path, status, round(latency, 1), not reasons,
                                            "; ".join(reasons)))
        return rel.SmokeResult(tuple(results))

    def _incident(self, ctx: TaskContext, doc: Mapping[str, Any], release: rel.Release,
                  action: rel.OpenIncident, key: str) -> None:
        """One incident issue per rollback: found again by its marker after a lost answer."""
        mention = str((doc.get("notify") or {}).get("mention") or "")
        marker = f"<!-- agentops-release: {release.id} -->"
        body = action.body + (f"\n\ncc {mention}\n" if mention else "")
        body += f"\nDeployment: release `{release.id}`"
        if release.pull_number:
            body += f", pull request #{release.pull_number}"
        found = find_issue_by_marker(ctx.client, release.repository, marker, "incident")
        number = int(found["number"]) if found else 0
        if not number:
            answer = ctx.apply(ex.CreateIssue(release.repository, action.title, f"{body}\n{marker}\n",
                                              ("incident",), key=key))
            number = int(answer.get("number") or 0) if answer else 0
        self._ports.monitor_store().record_incident(
            incident_id=f"rollback-{release.id}", repository=release.repository, service=release.service,
            kind="rollback", issue_number=number, opened_at=ctx.now(), release_id=release.id, sha=release.sha)

    def _notify(self, ctx: TaskContext, doc: Mapping[str, Any], release: rel.Release, text: str,
                key: str) -> None:
        """On the pull request (or nowhere, for a manual deploy without one) and on Slack."""
        if release.pull_number:
            ctx.apply(ex.PostComment(release.repository, release.pull_number, text, key=key))
        notifier = self._ports.notifier()
        if notifier is not None and (doc.get("notify") or {}).get("slack", True):
            notifier.notify(f"{key}:slack", f"{release.repository}: {text}", self.name, release.repository)

    # ---- /rollback -----------------------------------------------------------------------------

    def _manual_rollback(self, ctx: TaskContext) -> Outcome:
        release_id = str(ctx.inputs.get("release_id") or ctx.checkpoint.get("release_id") or "")
        doc = self._ports.store().get(release_id) if release_id else None
        if doc is None:
            return Outcome(FAILED, f"there is no release {neutralise(release_id, 80)} to roll back")
        actor = str(ctx.inputs.get("requested_by") or "a maintainer")
        first = not ctx.checkpoint.get("release_id")
        outcome = self._drive(ctx, doc, rel.ManualRollback(actor) if first else self._event_for(ctx, doc))
        release = deploy_store.release_from_doc(self._ports.store().get(release_id) or doc)
        if release.state == rel.ROLLED_BACK:
            return Outcome(SUCCEEDED, outcome.summary, checkpoint={"release_id": release.id})
        if release.state == rel.ROLLING_BACK:
            return running(outcome.summary, [f"release:{release.id}"], {"release_id": release.id})
        return Outcome(SUCCEEDED, f"nothing to roll back: {release.service} {release.version} is "
                                  f"{release.state}", checkpoint={"release_id": release.id})

    # ---- failures ----------------------------------------------------------------------------

    def on_failure(self, ctx: TaskContext, summary: str) -> None:
        """An agent failure (not a decided rollback) still ends the GitHub deployment and says why."""
        release_id = str(ctx.checkpoint.get("release_id") or "")
        doc = self._ports.store().get(release_id) if release_id else None
        if doc is None:
            return
        release = deploy_store.release_from_doc(doc)
        if release.terminal or release.state == rel.SUCCEEDED:
            return  # the release decided this itself and has said so
        if doc.get("github_deployment_id"):
            ctx.apply(ex.CreateDeploymentStatus(release.repository, int(doc["github_deployment_id"]), "error",
                                                neutralise(summary, 140), "", "",
                                                key=ctx.key(release.id, "agent-failure", ctx.task.attempt)))
        if release.pull_number:
            ctx.apply(ex.PostComment(release.repository, release.pull_number,
                                     f"The deploy agent stopped on {release.service} {release.version}: "
                                     f"{neutralise(summary, 500)}. Traffic was left as it is; "
                                     "`/rollback` moves it back to the previous version.",
                                     key=ctx.key(release.id, "agent-failure-comment", ctx.task.attempt)))


def _own_app(run: Mapping[str, Any]) -> bool:
    app = run.get("app") if isinstance(run.get("app"), dict) else {}
    return bool(app) and str(app.get("slug") or "") == "agent-ops"


def _version_rows(appengine: Any, service: str,
                  serving: Mapping[str, float]) -> list[tuple[str, datetime, float]]:
    rows = []
    for version in appengine.list_versions(service):
        created = _parse_time(str(version.get("createTime") or ""))
        if created is not None:
            rows.append((str(version["id"]), created, float(serving.get(str(version["id"]), 0.0))))
    return rows


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _default_probe() -> Prober:
    from functions.monitor_agent.probe import probe

    return probe

