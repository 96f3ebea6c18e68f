"""A release as a state machine: pure decisions from events, for the deploy agent's shell to apply.

A release lives in Firestore `deployments/{id}` and goes

    preflight -> building -> smoke -> canary -> watching -> succeeded
                    |          |        |          |          |
                    +-> failed +        +----------+----------+-> rolling_back -> rolled_back

It is advanced by events (Cloud Build notifications, monitor ticks, approvals, chat commands), never
by a function waiting in a loop. `next_step(release, event, plan, now)` returns the new release, the
actions to take and a one-line summary. The shell writes the release and its actions in one
transaction (an outbox) and then runs the actions in order; every action is idempotent, so a crash
between steps or a redelivered event is safe. An event that does not apply (a build notification
twice, a tick from before the current step) returns the release unchanged and no actions.

`failed` means the release stopped before any traffic moved to the new version (or, on a first
deploy with no previous version, that there was nothing to roll back to). Rolling back moves 100% of
traffic to the previous serving version in one call.

Nothing here reads a clock, the environment or Firestore. Text from a repository (service names,
reasons, metrics sources) is neutralised before it reaches Markdown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from functions.deploy_agent.canary import (
    Analysis,
    DeployPlan,
    HealthWindow,
    analyse,
    decide_inconclusive,
)
from functions.test_agent.gates import FAILING_CONCLUSIONS, PASSING_CONCLUSIONS, neutralise
from shared.errors import InvalidInput, PermanentError
from shared.policy import FreezeWindow, SmokeCheck

PREFLIGHT = "preflight"
BUILDING = "building"
SMOKE = "smoke"
CANARY = "canary"
WATCHING = "watching"
SUCCEEDED = "succeeded"
ROLLING_BACK = "rolling_back"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
CANCELLED = "cancelled"

STATES = (PREFLIGHT, BUILDING, SMOKE, CANARY, WATCHING, SUCCEEDED, ROLLING_BACK, ROLLED_BACK, FAILED,
          CANCELLED)
TERMINAL = frozenset({ROLLED_BACK, FAILED, CANCELLED})
# States where the new version serves traffic, so stopping means rolling back.
TRAFFIC_BEARING = frozenset({CANARY, WATCHING, SUCCEEDED})

# Every allowed move. A canary step that advances stays in `canary` (the step index changes, not the
# state). A succeeded release can still be rolled back by a human's /rollback; with no previous
# version to go back to, a breach ends the release `failed`.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    PREFLIGHT: frozenset({BUILDING, FAILED, CANCELLED}),
    BUILDING: frozenset({SMOKE, FAILED, CANCELLED}),
    SMOKE: frozenset({CANARY, WATCHING, FAILED, CANCELLED}),
    CANARY: frozenset({WATCHING, ROLLING_BACK, FAILED}),
    WATCHING: frozenset({SUCCEEDED, ROLLING_BACK, FAILED}),
    SUCCEEDED: frozenset({ROLLING_BACK}),
    ROLLING_BACK: frozenset({ROLLED_BACK}),
    ROLLED_BACK: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

# Cloud Build statuses: https://cloud.google.com/build/docs/api/reference/rest/v1/projects.builds
BUILD_SUCCESS = "SUCCESS"
BUILD_FAILURES = frozenset({"FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"})

MAX_INCIDENT_CHARS = 60_000
MAX_CELL_CHARS = 300
MAX_REASON_CHARS = 500


class InvalidTransition(PermanentError):
    pass


def allowed(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check_transition(release_id: str, current: str, target: str) -> None:
    if not allowed(current, target):
        raise InvalidTransition(f"release {release_id} cannot go from {current or 'nothing'} to {target}")


# ---- identities ------------------------------------------------------------------------------

_VERSION_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_NOT_ID = re.compile(r"[^a-z0-9]+")


def release_id(repository: str, service: str, sha: str, attempt: int = 0) -> str:
    """The release's document id: the same merge of the same service always gets the same id.

    A redeploy of the same commit after a rollback passes `attempt` to get a fresh document.
    """
    digest = hashlib.sha256(f"{repository}\n{service}\n{sha}\n{attempt}".encode()).hexdigest()[:16]
    slug = _NOT_ID.sub("-", service.lower()).strip("-")[:40] or "service"
    short = _NOT_ID.sub("", sha.lower())[:12] or "nosha"
    return f"{slug}-{short}-{digest}" + (f"-{attempt}" if attempt else "")


def version_id(sha: str, now: datetime) -> str:
    """An App Engine version id for the commit, like `v20261201-1530-1a2b3c4`.

    Version ids are lowercase letters, digits and hyphens, at most 63 characters, start with a
    letter and must not start with `ah-`; the leading `v` takes care of the last two.
    """
    short = _NOT_ID.sub("", sha.lower())[:7] or "0000000"
    return f"v{now:%Y%m%d-%H%M}-{short}"


def valid_version_id(text: str) -> bool:
    return bool(_VERSION_ID.match(text)) and not text.startswith("ah-") and not text.endswith("-")


# ---- the release -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    step: str  # like "building" or "canary 10%"
    what: str  # the event seen
    metrics: Mapping[str, float | int | str]
    decision: str


@dataclass(frozen=True)
class Release:
    id: str
    repository: str
    service: str
    sha: str
    pull_number: int
    version: str
    previous_version: str  # "" on a first deploy
    state: str
    started_at: datetime
    step_started_at: datetime
    step: int = 0  # index into the canary steps
    traffic: int = 0  # percent of traffic on the new version
    github_deployment_id: int = 0
    build_id: str = ""
    timeline: tuple[TimelineEntry, ...] = ()
    reasons: tuple[str, ...] = ()  # why it is held, failed or rolled back
    waited: int = 0  # inconclusive intervals waited at this step
    held: bool = False  # an inconclusive step on hold until a human decides

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def new_release(repository: str, service: str, sha: str, pull_number: int, previous_version: str,
                now: datetime, attempt: int = 0) -> Release:
    return Release(
        id=release_id(repository, service, sha, attempt), repository=repository, service=service, sha=sha,
        pull_number=pull_number, version=version_id(sha, now), previous_version=previous_version,
        state=PREFLIGHT, started_at=now, step_started_at=now,
    )


# ---- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreflightChecked:
    """The shell ran `preflight`; no reasons means go.

    `final`: a reason waiting will not fix (a required check failed, the config is invalid), so the
    release stops; otherwise (a check pending, a freeze, another release running) it waits.
    """

    reasons: tuple[str, ...] = ()
    final: bool = False


@dataclass(frozen=True)
class DeploymentCreated:
    deployment_id: int


@dataclass(frozen=True)
class BuildStarted:
    build_id: str


@dataclass(frozen=True)
class BuildFinished:
    build_id: str
    status: str  # a Cloud Build status, like SUCCESS or FAILURE


@dataclass(frozen=True)
class SmokeOutcome:
    path: str
    status: int
    latency_ms: float
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class SmokeResult:
    results: tuple[SmokeOutcome, ...]


@dataclass(frozen=True)
class Tick:
    """The monitor's periodic look: health of the new version, and the split it sees serving.

    Its `now` is the moment it measured. A tick from before the current step started is stale. Any
    other tick whose health fails rolls back at once; a passing or inconclusive one only counts when
    the step's interval is over. While rolling back, a tick whose `serving` shows everything on the
    previous version ends the rollback.
    """

    now: datetime
    health: HealthWindow | None = None
    serving: Mapping[str, float] | None = None  # version -> share of traffic, None when not read
    versions: tuple[tuple[str, datetime, float], ...] = ()  # (id, created_at, share) for cleanup


@dataclass(frozen=True)
class Breach:
    reason: str
    metrics: Mapping[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class ManualRollback:
    actor: str


@dataclass(frozen=True)
class Cancel:
    actor: str


Event = PreflightChecked | DeploymentCreated | BuildStarted | BuildFinished | SmokeResult | Tick | Breach \
    | ManualRollback | Cancel


# ---- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateGitHubDeployment:
    ref: str
    environment: str
    description: str


@dataclass(frozen=True)
class SetDeploymentStatus:
    state: Literal["queued", "in_progress", "success", "failure", "inactive"]
    description: str


@dataclass(frozen=True)
class StartBuild:
    version: str  # deployed with --no-promote


@dataclass(frozen=True)
class RunSmoke:
    version: str
    checks: tuple[SmokeCheck, ...]


@dataclass(frozen=True)
class SetTraffic:
    split: Mapping[str, float]  # version -> share, summing to 1


@dataclass(frozen=True)
class Rollback:
    to_version: str  # one services.patch: 100% to this version


@dataclass(frozen=True)
class OpenIncident:
    title: str
    body: str


@dataclass(frozen=True)
class Notify:
    text: str


@dataclass(frozen=True)
class DeleteVersions:
    versions: tuple[str, ...]


@dataclass(frozen=True)
class Wait:
    until: datetime  # the shell schedules a tick for then


Action = CreateGitHubDeployment | SetDeploymentStatus | StartBuild | RunSmoke | SetTraffic | Rollback \
    | OpenIncident | Notify | DeleteVersions | Wait
TRAFFIC_ACTIONS = (SetTraffic, Rollback)


@dataclass(frozen=True)
class Decision:
    release: Release
    actions: tuple[Action, ...] = ()
    summary: str = ""

    @property
    def noop(self) -> bool:
        """Nothing to do and nothing to write: the event did not apply."""
        return not self.actions and not self.summary


# ---- pre-flight ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreflightFacts:
    """What the shell read before a release may start."""

    sha: str
    checks: Mapping[str, str] = field(default_factory=dict)  # check name -> conclusion ("" pending)
    required: tuple[str, ...] = ()
    on_hold: str = ""  # who or why the repository is held; "" when it is not
    freeze: tuple[FreezeWindow, ...] = ()
    config_problems: tuple[str, ...] = ()  # why the deploy config is invalid
    running_release: str = ""  # another release in progress for the service
    release_id: str = ""  # this release, so it does not count as another one
    approval_required: bool = False
    approved: bool = False


def freeze_until(window: FreezeWindow, now: datetime) -> str:
    if window.end is not None:
        return f"{window.end:%Y-%m-%d %H:%M} UTC"
    return f"{window.to_time} UTC today"


def preflight_final(facts: PreflightFacts) -> bool:
    """Whether pre-flight's verdict stands however long the release waits: a required check failed on
    the merge commit, or the deploy config is invalid. (A re-run check is a `/retry` of the deploy.)"""
    if facts.config_problems:
        return True
    return any(facts.checks.get(name) in FAILING_CONCLUSIONS for name in set(facts.required))


def preflight(facts: PreflightFacts, now: datetime) -> tuple[str, ...]:
    """Every reason the release may not go now, in words a person can act on; () means go."""
    reasons = []
    short = neutralise(facts.sha[:7], 12)
    for name in sorted(set(facts.required)):
        conclusion = facts.checks.get(name)
        label = neutralise(name)
        if conclusion is None:
            reasons.append(f"required check {label} has not reported on {short}")
        elif conclusion in FAILING_CONCLUSIONS:
            reasons.append(f"required check {label} is {neutralise(conclusion, 40)} on {short}")
        elif conclusion not in PASSING_CONCLUSIONS:
            reasons.append(f"required check {label} is still pending on {short}")
    if facts.on_hold:
        reasons.append(f"the repository is on hold: {neutralise(facts.on_hold, 200)}")
    window = next((window for window in facts.freeze if window.active(now)), None)
    if window is not None:
        reasons.append(f"deploys are frozen ({neutralise(window.reason, 200)}) "
                       f"until {freeze_until(window, now)}")
    for problem in facts.config_problems:
        reasons.append(f"the deploy configuration is invalid: {neutralise(problem, 300)}")
    if facts.running_release and facts.running_release != facts.release_id:
        reasons.append(f"another deploy of this service is running: {neutralise(facts.running_release, 120)}")
    if facts.approval_required and not facts.approved:
        reasons.append("the deploy needs approval and has not been approved yet")
    return tuple(reasons)


# ---- the decisions ---------------------------------------------------------------------------


def steps_for(plan: DeployPlan, previous_version: str) -> tuple[int, ...]:
    """The canary percentages, ascending and ending at 100; straight to 100 with nothing to split with."""
    if not previous_version:
        return (100,)
    steps = sorted({step for step in plan.canary_steps if 0 < step < 100})
    return (*steps, 100)


def split_for(release: Release, percent: int) -> dict[str, float]:
    if percent >= 100 or not release.previous_version:
        return {release.version: 1.0}
    share = round(percent / 100, 2)
    return {release.previous_version: round(1 - share, 2), release.version: share}


def step_label(release: Release) -> str:
    if release.state in (CANARY, WATCHING):
        return f"{release.state} {release.traffic}%"
    return release.state


def _move(release: Release, target: str, now: datetime, what: str, decision: str,
          metrics: Mapping[str, float | int | str] | None = None, **changes: object) -> Release:
    """The release after a decision, with its timeline entry (recorded at the step it was taken in)."""
    if target != release.state:
        check_transition(release.id, release.state, target)
    entry = TimelineEntry(now, step_label(release), what[:MAX_REASON_CHARS], dict(metrics or {}),
                          decision[:MAX_REASON_CHARS])
    return dataclasses.replace(release, state=target, timeline=(*release.timeline, entry), **changes)


def _describe(event: Event) -> str:
    name = type(event).__name__
    if isinstance(event, BuildFinished):
        return f"build {event.build_id} finished {event.status}"
    if isinstance(event, BuildStarted):
        return f"build {event.build_id} started"
    if isinstance(event, ManualRollback | Cancel):
        return f"{name} by {event.actor}"
    if isinstance(event, Breach):
        return f"breach: {event.reason}"
    return name


def next_step(release: Release, event: Event, plan: DeployPlan, now: datetime) -> Decision:
    """The release after `event`, the actions to take and a one-line summary."""
    if isinstance(event, DeploymentCreated):
        if release.github_deployment_id or not event.deployment_id:
            return Decision(release)
        return Decision(dataclasses.replace(release, github_deployment_id=event.deployment_id), (),
                        f"recorded GitHub deployment {event.deployment_id}")
    if isinstance(event, ManualRollback | Cancel):
        return _stop(release, event, plan, now)
    if release.terminal:
        return Decision(release)
    handler = {
        PreflightChecked: _on_preflight, BuildStarted: _on_build_started, BuildFinished: _on_build_finished,
        SmokeResult: _on_smoke, Tick: _on_tick, Breach: _on_breach,
    }.get(type(event))
    if handler is None:
        raise InvalidInput(f"release {release.id}: unknown event {type(event).__name__}")
    return handler(release, event, plan, now)


def _deployment(release: Release, plan: DeployPlan) -> tuple[Action, ...]:
    """The GitHub deployment, unless the release has one: so GitHub shows a waiting or stopped one too."""
    if release.github_deployment_id:
        return ()
    description = f"deploy {release.version} of {release.service}"
    return (CreateGitHubDeployment(release.sha, plan.environment, description),)


def _on_preflight(release: Release, event: PreflightChecked, plan: DeployPlan, now: datetime) -> Decision:
    if release.state != PREFLIGHT:
        return Decision(release)
    if event.reasons and event.final:
        return _fail(release, now, "pre-flight", "; ".join(event.reasons), {}, _deployment(release, plan),
                     reasons=event.reasons)
    if event.reasons:
        if event.reasons == release.reasons:
            return Decision(release)
        summary = f"{release.service} {release.version} may not deploy yet"
        held = _move(release, PREFLIGHT, now, "pre-flight", summary, reasons=event.reasons)
        waiting: tuple[Action, ...] = ()
        if not release.github_deployment_id and not release.reasons:
            waiting = (*_deployment(release, plan),
                       SetDeploymentStatus("queued", f"waiting: {event.reasons[0]}"[:140]))
        return Decision(held, (*waiting, Notify(_notice(held, summary, event.reasons))), summary)
    summary = f"pre-flight passed: building {release.version}"
    started = _move(release, BUILDING, now, "pre-flight", summary, reasons=(), step_started_at=now)
    queued: tuple[Action, ...] = ()
    if not release.github_deployment_id:  # else it is queued already, since it waited
        queued = (*_deployment(release, plan), SetDeploymentStatus("queued", f"building {release.version}"))
    return Decision(started, (*queued, StartBuild(release.version)), summary)


def _on_build_started(release: Release, event: BuildStarted, plan: DeployPlan, now: datetime) -> Decision:
    if release.state != BUILDING or release.build_id:
        return Decision(release)
    summary = f"build {event.build_id} started for {release.version}"
    moved = _move(release, BUILDING, now, _describe(event), summary, build_id=event.build_id)
    return Decision(moved, (SetDeploymentStatus("in_progress", f"building {release.version}"),), summary)


def _on_build_finished(release: Release, event: BuildFinished, plan: DeployPlan, now: datetime) -> Decision:
    if release.state != BUILDING or (release.build_id and release.build_id != event.build_id):
        return Decision(release)
    # The finish can overtake the start notification: then it also records the build and the status.
    first: tuple[Action, ...] = () if release.build_id else (
        SetDeploymentStatus("in_progress", f"building {release.version}"),)
    status = event.status.upper()
    if status == BUILD_SUCCESS:
        summary = f"{release.version} is deployed without traffic; running smoke tests"
        moved = _move(release, SMOKE, now, _describe(event), summary, build_id=event.build_id,
                      step_started_at=now)
        return Decision(moved, (*first, RunSmoke(release.version, plan.smoke)), summary)
    if status in BUILD_FAILURES:
        reason = f"the build {neutralise(event.build_id, 80)} ended {neutralise(status, 40)}"
        return _fail(release, now, _describe(event), reason, {"build_status": status}, first,
                     build_id=event.build_id)
    if release.build_id:
        return Decision(release)  # still queued or working
    summary = f"build {event.build_id} is {status.lower()} for {release.version}"
    return Decision(_move(release, BUILDING, now, _describe(event), summary, build_id=event.build_id),
                    first, summary)


def smoke_failures(results: Sequence[SmokeOutcome], checks: Sequence[SmokeCheck]) -> tuple[str, ...]:
    """Why the smoke tests failed: a check that failed, or one configured with no result."""
    failures = []
    seen = {result.path for result in results}
    for result in results:
        if not result.ok:
            why = f": {neutralise(result.reason, 200)}" if result.reason else ""
            failures.append(f"smoke {neutralise(result.path)} answered {result.status} "
                            f"in {result.latency_ms:g} ms{why}")
    for check in checks:
        if check.path not in seen:
            failures.append(f"smoke {neutralise(check.path)} has no result")
    return tuple(failures)


def _on_smoke(release: Release, event: SmokeResult, plan: DeployPlan, now: datetime) -> Decision:
    if release.state != SMOKE:
        return Decision(release)
    metrics: dict[str, float | int | str] = {
        "checks": len(event.results), "failed": sum(1 for result in event.results if not result.ok)}
    if event.results:
        metrics["max_latency_ms"] = max(result.latency_ms for result in event.results)
    failures = smoke_failures(event.results, plan.smoke)
    if failures:
        return _fail(release, now, "smoke tests", "; ".join(failures), metrics, (), reasons=failures)
    return _advance(release, 0, plan, now, "smoke tests", metrics, "smoke tests passed")


def _advance(release: Release, index: int, plan: DeployPlan, now: datetime, what: str,
             metrics: Mapping[str, float | int | str], why: str) -> Decision:
    """Move traffic to step `index`; the 100% step is the watch window."""
    steps = steps_for(plan, release.previous_version)
    percent = steps[index]
    if percent >= 100:
        until = now + timedelta(minutes=plan.watch_minutes)
        summary = f"{why}; all traffic on {release.version}, watching for {plan.watch_minutes} min"
        target = WATCHING
    else:
        until = now + timedelta(minutes=plan.analysis_minutes)
        summary = f"{why}; {percent}% of traffic on {release.version}"
        target = CANARY
    moved = _move(release, target, now, what, summary, metrics, step=index, traffic=percent,
                  step_started_at=now, waited=0, held=False, reasons=())
    return Decision(moved, (SetTraffic(split_for(release, percent)), Wait(until)), summary)


def _on_tick(release: Release, event: Tick, plan: DeployPlan, now: datetime) -> Decision:
    at = event.now
    if release.state == ROLLING_BACK:
        return _confirm_rollback(release, event, at)
    if release.state not in (CANARY, WATCHING) or at < release.step_started_at:
        return Decision(release)  # nothing to watch, or a tick from before this step
    analysis = analyse(event.health, plan)
    if analysis.verdict == "fail":
        return _rollback(release, at, "monitor tick", "; ".join(analysis.reasons), analysis.metrics)
    if release.state == WATCHING:
        if at < release.step_started_at + timedelta(minutes=plan.watch_minutes):
            return Decision(release)
        return _succeed(release, event, plan, analysis, at)
    if release.held:
        return Decision(release)
    due = release.step_started_at + timedelta(minutes=plan.analysis_minutes * (1 + release.waited))
    if at < due:
        return Decision(release)
    outcome = decide_inconclusive(analysis, release.waited, plan)
    reasons = "; ".join(analysis.reasons)
    if outcome == "pass":
        why = f"{release.traffic}% step passed: {reasons}" if analysis.passed else (
            f"{release.traffic}% step passed as inconclusive twice: {reasons}")
        return _advance(release, release.step + 1, plan, at, "canary analysis", analysis.metrics, why)
    if outcome == "wait":
        summary = f"{release.traffic}% step is inconclusive ({reasons}); waiting one more interval"
        moved = _move(release, CANARY, at, "canary analysis", summary, analysis.metrics,
                      waited=release.waited + 1)
        return Decision(moved, (Wait(due + timedelta(minutes=plan.analysis_minutes)),), summary)
    summary = (f"{release.service} {release.version} is held at {release.traffic}%: {reasons}; "
               "comment /rollback to go back; the next deploy of the service waits until then")
    moved = _move(release, CANARY, at, "canary analysis", summary, analysis.metrics, held=True,
                  reasons=analysis.reasons)
    return Decision(moved, (Notify(neutralise(summary, 1000)),), summary)


def _succeed(release: Release, event: Tick, plan: DeployPlan, analysis: Analysis, now: datetime) -> Decision:
    summary = f"{release.service} {release.version} is live: the {plan.watch_minutes} min watch passed"
    moved = _move(release, SUCCEEDED, now, "watch window", summary, analysis.metrics, step_started_at=now)
    actions: list[Action] = [SetDeploymentStatus("success", f"{release.version} serves all traffic"),
                             Notify(neutralise(summary, 1000))]
    if event.versions:
        doomed = cleanup(event.versions, release.version, release.previous_version, plan.keep_versions)
        if doomed:
            actions.append(DeleteVersions(doomed))
    return Decision(moved, tuple(actions), summary)


def _on_breach(release: Release, event: Breach, plan: DeployPlan, now: datetime) -> Decision:
    if release.state not in (CANARY, WATCHING):
        return Decision(release)
    reason = neutralise(event.reason, MAX_REASON_CHARS)
    return _rollback(release, now, _describe(event), reason, event.metrics)


def _stop(release: Release, event: ManualRollback | Cancel, plan: DeployPlan, now: datetime) -> Decision:
    """A human's /rollback or cancel: traffic-bearing releases roll back, earlier ones are cancelled."""
    verb = "rollback" if isinstance(event, ManualRollback) else "cancel"
    actor = neutralise(event.actor, 60)
    if release.state in TRAFFIC_BEARING and not (release.state == SUCCEEDED and verb == "cancel"):
        return _rollback(release, now, _describe(event), f"manual {verb} by {actor}", {})
    if release.state not in (PREFLIGHT, BUILDING, SMOKE):
        return Decision(release)  # already rolling back or ended
    summary = f"{release.service} {release.version} cancelled by {actor} before any traffic moved"
    moved = _move(release, CANCELLED, now, _describe(event), summary, reasons=(summary,))
    actions: tuple[Action, ...] = (Notify(neutralise(summary, 1000)),)
    if release.state != PREFLIGHT:
        actions = (SetDeploymentStatus("inactive", f"cancelled by {actor}"), *actions)
    return Decision(moved, actions, summary)


def _fail(release: Release, now: datetime, what: str, reason: str, metrics: Mapping[str, float | int | str],
          first: tuple[Action, ...], **changes: object) -> Decision:
    """Stop before any traffic moved: the GitHub deployment fails, nothing is rolled back."""
    changes.setdefault("reasons", (reason,))
    summary = f"{release.service} {release.version} failed: {reason}"
    moved = _move(release, FAILED, now, what, summary, metrics, **changes)
    return Decision(moved, (*first, SetDeploymentStatus("failure", reason[:140]),
                            Notify(neutralise(summary, 1000))), summary)


def _rollback(release: Release, now: datetime, what: str, reason: str,
              metrics: Mapping[str, float | int | str]) -> Decision:
    """Everything back to the previous version in one call, the deployment failed, an incident opened."""
    if not release.previous_version:
        summary = (f"{release.service} {release.version} is unhealthy ({reason}) and there is no previous "
                   "version to roll back to")
        moved = _move(release, FAILED, now, what, summary, metrics, reasons=(reason,))
        return Decision(moved, (SetDeploymentStatus("failure", reason[:140]), _incident(moved),
                                Notify(neutralise(summary, 1000))), summary)
    summary = f"rolling back {release.service} {release.version} to {release.previous_version}: {reason}"
    moved = _move(release, ROLLING_BACK, now, what, summary, metrics, reasons=(reason,), step_started_at=now)
    return Decision(moved, (
        Rollback(release.previous_version),
        SetDeploymentStatus("failure", f"rolled back: {reason}"[:140]),
        _incident(moved),
        Notify(neutralise(summary, 1000)),
    ), summary)


def _confirm_rollback(release: Release, event: Tick, now: datetime) -> Decision:
    """The monitor sees the split: all on the previous version ends the rollback; otherwise set it again."""
    if event.serving is None or now < release.step_started_at:
        return Decision(release)
    if event.serving.get(release.previous_version, 0.0) >= 0.999:
        summary = f"{release.service} is back on {release.previous_version}"
        moved = _move(release, ROLLED_BACK, now, "monitor tick", summary, {"previous_share": 1.0},
                      traffic=0)
        return Decision(moved, (Notify(neutralise(summary, 1000)),), summary)
    return Decision(release, (Rollback(release.previous_version),),
                    f"traffic is not yet back on {release.previous_version}; moving it again")


def _notice(release: Release, summary: str, reasons: Sequence[str]) -> str:
    lines = [neutralise(summary, 300), *(f"- {neutralise(reason, MAX_REASON_CHARS)}" for reason in reasons)]
    return "\n".join(lines)


# ---- the incident ----------------------------------------------------------------------------


def _incident(release: Release) -> OpenIncident:
    return OpenIncident(neutralise(f"Rollback of {release.service} {release.version}", 200),
                        incident_body(release))


_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _cell(text: str) -> str:
    return neutralise(text, MAX_CELL_CHARS).replace("*", "\\*").replace("_", "\\_")


def _metrics_cell(metrics: Mapping[str, float | int | str]) -> str:
    if not metrics:
        return "-"
    return _cell(", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                           for key, value in sorted(metrics.items())))


def incident_body(release: Release, limit: int = MAX_INCIDENT_CHARS) -> str:
    """The incident issue's Markdown: what happened, links, the root cause commit and the timeline."""
    valid = _REPOSITORY.match(release.repository) and release.repository.split("/")[1] not in (".", "..")
    repository = release.repository if valid and not release.repository.startswith(".") else ""
    number = release.github_deployment_id
    deployment = f"deployment {number}" if number else "deployment"
    link = f"[{deployment}](https://github.com/{repository}/deployments)" if repository else deployment
    head = [
        f"### Rollback of {_cell(release.service)} {_cell(release.version)}",
        "",
        f"- state: {release.state}",
        f"- new version: {_cell(release.version)}; rolled back to: {_cell(release.previous_version or '-')}",
        f"- pull request: #{int(release.pull_number)}" if release.pull_number else "- pull request: -",
        f"- deployment: {link}",
        f"- root cause: {_cell(release.sha)}",
        "",
        "**Why:** " + (_cell("; ".join(release.reasons)) if release.reasons else "-"),
        "",
        "| step | at | metrics | decision |",
        "| --- | --- | --- | --- |",
    ]
    rows = [f"| {_cell(entry.step)} | {entry.at:%Y-%m-%d %H:%M:%S} | {_metrics_cell(entry.metrics)} | "
            f"{_cell(entry.decision)} |" for entry in release.timeline]
    budget = limit - sum(len(line) + 1 for line in head) - 200
    if sum(len(row) + 1 for row in rows) > budget:  # keep the start and the end, where the breach is
        kept_head, kept_tail, used = [], [], 0
        for first, last in zip(rows, reversed(rows), strict=True):
            if used + len(first) + len(last) + 2 > budget or len(kept_head) + len(kept_tail) >= len(rows) - 1:
                break
            kept_head.append(first)
            kept_tail.insert(0, last)
            used += len(first) + len(last) + 2
        omitted = len(rows) - len(kept_head) - len(kept_tail)
        rows = [*kept_head, f"| … | | | {omitted} entries left out |", *kept_tail]
    return "\n".join([*head, *rows]) + "\n"


# ---- cleanup ---------------------------------------------------------------------------------


def cleanup(versions: Sequence[tuple[str, datetime, float]], serving: str, previous: str,
            keep: int) -> tuple[str, ...]:
    """Versions to delete so at most `keep` remain, oldest first.

    Never the serving or the previous version (the rollback target) and never one with traffic; those
    count towards `keep`.
    """
    ordered = sorted(versions, key=lambda version: (version[1], version[0]))
    excess = len(ordered) - max(keep, 2)
    doomed = []
    for version, _created, share in ordered:
        if excess <= 0:
            break
        if version in (serving, previous) or share > 0:
            continue
        doomed.append(version)
        excess -= 1
    return tuple(doomed)
