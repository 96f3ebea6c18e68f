"""A release as pure decisions: transitions, pre-flight, the healthy path, rollbacks and no-ops."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from functions.deploy_agent import release as rel
from functions.deploy_agent.canary import DeployPlan, HealthWindow
from functions.deploy_agent.release import (
    Breach,
    BuildFinished,
    BuildStarted,
    Cancel,
    CreateGitHubDeployment,
    DeleteVersions,
    DeploymentCreated,
    InvalidTransition,
    ManualRollback,
    Notify,
    OpenIncident,
    PreflightChecked,
    PreflightFacts,
    Rollback,
    RunSmoke,
    SetDeploymentStatus,
    SetTraffic,
    SmokeOutcome,
    SmokeResult,
    StartBuild,
    Tick,
    Wait,
)
from shared.errors import PermanentError
from shared.policy import FreezeWindow, SmokeCheck

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
SHA = "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d"
PREVIOUS = "v20261130-0900-0fedcba"
CHECKS = (SmokeCheck("/healthz"), SmokeCheck("/api/ping", 200, 500))
PLAN = DeployPlan(canary_steps=(10, 50, 100), watch_minutes=15, smoke=CHECKS, analysis_minutes=5,
                  min_requests=20)
HEALTHY = HealthWindow(500, 1, 120.0, "monitoring")
SICK = HealthWindow(500, 60, 120.0, "monitoring")
QUIET = HealthWindow(3, 0, 50.0, "monitoring")
SMOKE_OK = SmokeResult(tuple(SmokeOutcome(c.path, 200, 40.0, True) for c in CHECKS))


def minutes(n: float) -> datetime:
    return NOW + timedelta(minutes=n)


def fresh(previous: str = PREVIOUS) -> rel.Release:
    return rel.new_release("octo/shop", "default", SHA, 42, previous, NOW)


def run(release, events, plan=PLAN):
    """Apply (event, now) pairs; the release at the end and every action in order."""
    actions = []
    for event, at in events:
        decision = rel.next_step(release, event, plan, at)
        release = decision.release
        actions.extend(decision.actions)
    return release, actions


TO_SMOKE = [(PreflightChecked(()), NOW), (DeploymentCreated(7), NOW), (BuildStarted("b-1"), minutes(1)),
            (BuildFinished("b-1", "SUCCESS"), minutes(4))]
TO_CANARY = [*TO_SMOKE, (SMOKE_OK, minutes(5))]


def at_state(state: str) -> rel.Release:
    events = {
        rel.PREFLIGHT: [],
        rel.BUILDING: TO_SMOKE[:3],
        rel.SMOKE: TO_SMOKE,
        rel.CANARY: TO_CANARY,
        rel.WATCHING: [*TO_CANARY, (Tick(minutes(10), HEALTHY), minutes(10)),
                       (Tick(minutes(15), HEALTHY), minutes(15))],
    }
    if state == rel.SUCCEEDED:
        release, _ = run(at_state(rel.WATCHING), [(Tick(minutes(31), HEALTHY), minutes(31))])
    else:
        release, _ = run(fresh(), events[state])
    assert release.state == state
    return release


def traffic_actions(actions):
    return [action for action in actions if isinstance(action, SetTraffic | Rollback)]


def statuses(actions):
    return [action.state for action in actions if isinstance(action, SetDeploymentStatus)]


# ---------------------------------------------------------------------------------------------
# Transitions

ALLOWED = [(current, target) for current in rel.STATES for target in sorted(rel.TRANSITIONS[current])]
FORBIDDEN = [(rel.PREFLIGHT, rel.CANARY), (rel.PREFLIGHT, rel.ROLLING_BACK), (rel.BUILDING, rel.CANARY),
             (rel.SMOKE, rel.ROLLING_BACK), (rel.SUCCEEDED, rel.FAILED), (rel.ROLLED_BACK, rel.CANARY),
             (rel.FAILED, rel.BUILDING), (rel.CANCELLED, rel.PREFLIGHT), (rel.ROLLING_BACK, rel.CANARY),
             (rel.CANARY, rel.CANCELLED), ("", rel.BUILDING), (rel.WATCHING, rel.SMOKE)]


def test_every_state_has_a_row():
    assert set(rel.TRANSITIONS) == set(rel.STATES)
    assert all(targets <= set(rel.STATES) for targets in rel.TRANSITIONS.values())


@pytest.mark.parametrize("current,target", ALLOWED, ids=[f"{c}-to-{t}" for c, t in ALLOWED])
def test_allowed_moves(current, target):
    assert rel.allowed(current, target)
    rel.check_transition("r-1", current, target)


@pytest.mark.parametrize("current,target", FORBIDDEN, ids=[f"{c or 'none'}-to-{t}" for c, t in FORBIDDEN])
def test_forbidden_moves(current, target):
    assert not rel.allowed(current, target)
    with pytest.raises(InvalidTransition, match=f"release r-1 cannot go from .* to {target}") as caught:
        rel.check_transition("r-1", current, target)
    assert isinstance(caught.value, PermanentError)


# ---------------------------------------------------------------------------------------------
# Identities


def test_release_id_is_deterministic():
    one = rel.release_id("octo/shop", "default", SHA)
    assert one == rel.release_id("octo/shop", "default", SHA) and "/" not in one
    assert one != rel.release_id("octo/shop", "api", SHA)
    assert one != rel.release_id("octo/other", "default", SHA)
    assert one != rel.release_id("octo/shop", "default", SHA, attempt=1)
    assert fresh().id == one


def test_version_id_example():
    assert rel.version_id(SHA, NOW) == "v20261201-1530-1a2b3c4"


@pytest.mark.parametrize("seed", range(25))
def test_version_ids_are_valid(seed):
    rng = random.Random(seed)
    alphabet = "0123456789abcdefABCDEF-_/ .ah"
    sha = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
    moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 60_000_000))
    version = rel.version_id(sha, moment)
    assert rel.valid_version_id(version), version
    assert len(version) <= 63 and version[0].isalpha() and not version.startswith("ah-")


@pytest.mark.parametrize("text,valid", [("v1", True), ("ah-builtin", False), ("1abc", False), ("V1", False),
                                        ("a" * 63, True), ("a" * 64, False), ("v1_2", False), ("", False)])
def test_valid_version_id(text, valid):
    assert rel.valid_version_id(text) is valid


# ---------------------------------------------------------------------------------------------
# Pre-flight

GREEN = PreflightFacts(sha=SHA, checks={"ci": "success", "lint": "neutral"}, required=("ci", "lint"))


@pytest.mark.parametrize("changes,words", [
    ({"checks": {"ci": "failure", "lint": "success"}}, "required check ci is failure on 1a2b3c4"),
    ({"checks": {"lint": "success"}}, "required check ci has not reported on 1a2b3c4"),
    ({"checks": {"ci": "in_progress", "lint": "success"}}, "required check ci is still pending"),
    ({"on_hold": "octocat: investigating"}, "on hold: octocat: investigating"),
    ({"freeze": (FreezeWindow("holiday", start=NOW - timedelta(days=1), end=NOW + timedelta(days=2)),)},
     "deploys are frozen (holiday) until 2026-12-03 15:30 UTC"),
    ({"freeze": (FreezeWindow("office hours", days=("tue",), from_time="09:00", to_time="17:00"),)},
     "frozen (office hours) until 17:00 UTC today"),
    ({"config_problems": ("deploy.service is missing",)}, "configuration is invalid: deploy.service"),
    ({"running_release": "default-abc"}, "another deploy of this service is running: default-abc"),
    ({"approval_required": True}, "needs approval"),
])
def test_each_preflight_reason(changes, words):
    reasons = rel.preflight(dataclasses.replace(GREEN, **changes), NOW)
    assert len(reasons) == 1 and words in reasons[0], reasons


@pytest.mark.parametrize("changes", [
    {}, {"approval_required": True, "approved": True}, {"running_release": "me", "release_id": "me"},
    {"freeze": (FreezeWindow("past", start=NOW - timedelta(days=2), end=NOW - timedelta(days=1)),)},
    {"checks": {"ci": "success", "lint": "skipped", "other": "failure"}},
])
def test_preflight_goes(changes):
    assert rel.preflight(dataclasses.replace(GREEN, **changes), NOW) == ()


def test_preflight_neutralises_names():
    reasons = rel.preflight(PreflightFacts(sha=SHA, required=("@team <b>",)), NOW)
    assert "@\u200bteam" in reasons[0] and "<b>" not in reasons[0]


def test_preflight_reasons_hold_the_release_and_notify_once():
    reasons = ("the repository is on hold: x",)
    twice = [(PreflightChecked(reasons), NOW), (PreflightChecked(reasons), minutes(1))]
    release, actions = run(fresh(), twice)
    assert release.state == rel.PREFLIGHT and release.reasons == reasons
    # GitHub shows the waiting deployment, queued with the first reason, and the PR hears why, once.
    assert [type(a) for a in actions] == [CreateGitHubDeployment, SetDeploymentStatus, Notify]
    assert actions[1].state == "queued" and actions[1].description.startswith("waiting: the repository")
    release, _ = run(release, [(DeploymentCreated(7), minutes(1))])
    changed = ("deploys are frozen (x) until 12:00 UTC today",)
    release, actions = run(release, [(PreflightChecked(changed), minutes(1))])
    assert [type(a) for a in actions] == [Notify]  # a new reason: said, no second deployment
    release, actions = run(release, [(PreflightChecked(()), minutes(2))])
    assert release.state == rel.BUILDING and release.reasons == ()
    assert [type(a) for a in actions] == [StartBuild]  # queued already


def test_a_failed_required_check_stops_the_release_with_its_reason_on_the_deployment():
    facts = PreflightFacts(sha=SHA, checks={"ci": "failure"}, required=("ci",))
    reasons = rel.preflight(facts, NOW)
    assert rel.preflight_final(facts) is True
    decision = rel.next_step(fresh(), PreflightChecked(reasons, final=True), PLAN, NOW)
    assert decision.release.state == rel.FAILED and decision.release.traffic == 0
    kinds = [type(a) for a in decision.actions]
    assert kinds == [CreateGitHubDeployment, SetDeploymentStatus, Notify]
    status = decision.actions[1]
    assert status.state == "failure" and "required check ci is failure" in status.description
    pending = PreflightFacts(sha=SHA, checks={"ci": ""}, required=("ci",))
    assert rel.preflight_final(pending) is False
    assert rel.preflight_final(PreflightFacts(sha=SHA, config_problems=("deploy.service: bad",))) is True


# ---------------------------------------------------------------------------------------------
# The healthy path


def test_healthy_path_event_by_event():
    release = fresh()
    steps = [
        (PreflightChecked(()), NOW, rel.BUILDING,
         [CreateGitHubDeployment, SetDeploymentStatus, StartBuild]),
        (DeploymentCreated(7), NOW, rel.BUILDING, []),
        (BuildStarted("b-1"), minutes(1), rel.BUILDING, [SetDeploymentStatus]),
        (BuildFinished("b-1", "WORKING"), minutes(2), rel.BUILDING, []),
        (BuildFinished("b-1", "SUCCESS"), minutes(4), rel.SMOKE, [RunSmoke]),
        (SMOKE_OK, minutes(5), rel.CANARY, [SetTraffic, Wait]),
        (Tick(minutes(7), HEALTHY), minutes(7), rel.CANARY, []),  # not due yet
        (Tick(minutes(10), HEALTHY), minutes(10), rel.CANARY, [SetTraffic, Wait]),
        (Tick(minutes(15), HEALTHY), minutes(15), rel.WATCHING, [SetTraffic, Wait]),
        (Tick(minutes(25), HEALTHY), minutes(25), rel.WATCHING, []),
        (Tick(minutes(30), HEALTHY), minutes(30), rel.SUCCEEDED, [SetDeploymentStatus, Notify]),
    ]
    every = []
    for event, at, state, kinds in steps:
        decision = rel.next_step(release, event, PLAN, at)
        assert decision.release.state == state, (event, decision.summary)
        assert [type(action) for action in decision.actions] == kinds, event
        assert "\n" not in decision.summary
        release = decision.release
        every.extend(decision.actions)
    assert statuses(every) == ["queued", "in_progress", "success"]
    assert [a.split for a in traffic_actions(every)] == [
        {PREVIOUS: 0.9, release.version: 0.1}, {PREVIOUS: 0.5, release.version: 0.5}, {release.version: 1.0}]
    assert next(a for a in every if isinstance(a, RunSmoke)) == RunSmoke(release.version, CHECKS)
    assert next(a for a in every if isinstance(a, StartBuild)).version == release.version
    assert release.github_deployment_id == 7 and release.build_id == "b-1" and release.traffic == 100
    assert [entry.step for entry in release.timeline][-3:] == ["canary 10%", "canary 50%", "watching 100%"]
    assert release.timeline[-1].metrics["requests"] == 500
    assert all(entry.decision for entry in release.timeline)


def test_succeeded_cleans_up_old_versions():
    versions = tuple((f"v{i}", NOW - timedelta(days=10 - i), 0.0) for i in range(5))
    versions += ((PREVIOUS, NOW - timedelta(days=1), 0.0), (fresh().version, NOW, 1.0))
    decision = rel.next_step(at_state(rel.WATCHING), Tick(minutes(31), HEALTHY, versions=versions), PLAN,
                             minutes(31))
    assert decision.release.state == rel.SUCCEEDED
    assert decision.actions[-1] == DeleteVersions(("v0", "v1", "v2", "v3"))  # keeps v4, previous, new


def test_first_deploy_goes_straight_to_watching():
    release, actions = run(fresh(previous=""), TO_CANARY)
    assert release.state == rel.WATCHING
    assert [a.split for a in traffic_actions(actions)] == [{release.version: 1.0}]


def test_build_finish_before_start_records_the_build():
    release, actions = run(fresh(), [(PreflightChecked(()), NOW), (BuildFinished("b-9", "SUCCESS"), NOW)])
    assert release.state == rel.SMOKE and release.build_id == "b-9"
    assert statuses(actions) == ["queued", "in_progress"]
    _, late = run(release, [(BuildStarted("b-9"), NOW)])
    assert late == []


# ---------------------------------------------------------------------------------------------
# Failures before traffic


@pytest.mark.parametrize("outcomes", [
    (SmokeOutcome("/healthz", 500, 30.0, False, "server error"), SmokeOutcome("/api/ping", 200, 40.0, True)),
    (SmokeOutcome("/healthz", 200, 30.0, True),),  # /api/ping never ran
    (SmokeOutcome("/healthz", 200, 3000.0, False, "too slow"), SmokeOutcome("/api/ping", 200, 40.0, True)),
])
def test_smoke_failure_fails_without_any_traffic(outcomes):
    release, actions = run(fresh(), [*TO_SMOKE, (SmokeResult(outcomes), minutes(5)),
                                     (Tick(minutes(20), HEALTHY), minutes(20)),
                                     (Breach("5xx"), minutes(21)), (ManualRollback("octocat"), minutes(22))])
    assert release.state == rel.FAILED and release.reasons
    assert traffic_actions(actions) == []
    assert statuses(actions) == ["queued", "in_progress", "failure"]


@pytest.mark.parametrize("status", ["FAILURE", "TIMEOUT", "INTERNAL_ERROR", "CANCELLED", "failure"])
def test_build_failure_fails(status):
    release, actions = run(fresh(), [*TO_SMOKE[:3], (BuildFinished("b-1", status), minutes(3))])
    assert release.state == rel.FAILED and status.upper() in release.reasons[0]
    assert traffic_actions(actions) == [] and statuses(actions)[-1] == "failure"


# ---------------------------------------------------------------------------------------------
# Rollbacks


def check_rollback(release, decision, reason_words):
    assert decision.release.state == rel.ROLLING_BACK
    assert traffic_actions(decision.actions) == [Rollback(PREVIOUS)]
    failure = [a for a in decision.actions if isinstance(a, SetDeploymentStatus)]
    assert len(failure) == 1 and failure[0].state == "failure" and reason_words in failure[0].description
    incident = next(a for a in decision.actions if isinstance(a, OpenIncident))
    assert incident.title == f"Rollback of default {release.version}"
    assert f"root cause: {SHA}" in incident.body and "#42" in incident.body
    assert "| step | at | metrics | decision |" in incident.body
    assert "https://github.com/octo/shop/deployments" in incident.body
    assert any(isinstance(a, Notify) for a in decision.actions)
    assert decision.release.timeline[-1].decision == decision.summary


def test_canary_failure_at_ten_percent_rolls_back():
    release = at_state(rel.CANARY)
    assert release.traffic == 10
    decision = rel.next_step(release, Tick(minutes(10), SICK), PLAN, minutes(10))
    check_rollback(release, decision, "error rate 12.0%")
    body = next(a for a in decision.actions if isinstance(a, OpenIncident)).body
    assert "canary 10%" in body and "errors=60" in body


def test_rollback_completes_when_the_monitor_sees_the_old_version():
    rolling = rel.next_step(at_state(rel.CANARY), Tick(minutes(6), SICK), PLAN, minutes(6)).release
    assert rel.next_step(rolling, Tick(minutes(7), SICK), PLAN, minutes(7)).actions == ()
    again = rel.next_step(rolling, Tick(minutes(7), serving={rolling.version: 0.1, PREVIOUS: 0.9}), PLAN,
                          minutes(7))
    assert again.actions == (Rollback(PREVIOUS),) and again.release == rolling
    done = rel.next_step(rolling, Tick(minutes(8), serving={PREVIOUS: 1.0}), PLAN, minutes(8))
    assert done.release.state == rel.ROLLED_BACK and done.release.traffic == 0
    assert rel.next_step(done.release, Tick(minutes(9), SICK, {PREVIOUS: 1.0}), PLAN, minutes(9)).noop


@pytest.mark.parametrize("event", [Tick(minutes(20), SICK), Breach("5xx over 5%", {"error_rate": 0.07})])
def test_watch_window_breach_rolls_back(event):
    release = at_state(rel.WATCHING)
    decision = rel.next_step(release, event, PLAN, minutes(20))
    check_rollback(release, decision, "5" if isinstance(event, Breach) else "error rate")


@pytest.mark.parametrize("state", [rel.CANARY, rel.WATCHING, rel.SUCCEEDED])
def test_manual_rollback_from_any_traffic_bearing_state(state):
    release = at_state(state)
    decision = rel.next_step(release, ManualRollback("octocat"), PLAN, minutes(40))
    check_rollback(release, decision, "manual rollback by octocat")


@pytest.mark.parametrize("state", [rel.PREFLIGHT, rel.BUILDING, rel.SMOKE])
@pytest.mark.parametrize("event", [Cancel("octocat"), ManualRollback("octocat")])
def test_stopping_before_traffic_cancels(state, event):
    decision = rel.next_step(at_state(state), event, PLAN, minutes(5))
    assert decision.release.state == rel.CANCELLED and traffic_actions(decision.actions) == []
    assert statuses(decision.actions) == ([] if state == rel.PREFLIGHT else ["inactive"])


def test_cancel_during_canary_rolls_back_but_not_after_success():
    assert rel.next_step(at_state(rel.CANARY), Cancel("o"), PLAN, NOW).release.state == rel.ROLLING_BACK
    assert rel.next_step(at_state(rel.SUCCEEDED), Cancel("o"), PLAN, NOW).noop


def test_breach_without_previous_version_fails_with_an_incident():
    release, _ = run(fresh(previous=""), TO_CANARY)
    decision = rel.next_step(release, Breach("5xx"), PLAN, minutes(8))
    assert decision.release.state == rel.FAILED and traffic_actions(decision.actions) == []
    assert any(isinstance(a, OpenIncident) for a in decision.actions)


# ---------------------------------------------------------------------------------------------
# Inconclusive steps


def test_inconclusive_waits_then_passes_when_configured():
    plan = dataclasses.replace(PLAN, inconclusive="pass")
    release = at_state(rel.CANARY)
    wait = rel.next_step(release, Tick(minutes(10), QUIET), plan, minutes(10))
    assert wait.release.state == rel.CANARY and wait.release.waited == 1
    assert wait.actions == (Wait(minutes(15)),) and "inconclusive" in wait.summary
    assert rel.next_step(wait.release, Tick(minutes(12), QUIET), plan, minutes(12)).noop  # not due again
    passed = rel.next_step(wait.release, Tick(minutes(15), QUIET), plan, minutes(15))
    assert passed.release.traffic == 50 and passed.release.waited == 0
    assert [type(a) for a in passed.actions] == [SetTraffic, Wait]


def test_inconclusive_waits_then_holds_by_default():
    release = at_state(rel.CANARY)
    release, actions = run(release, [(Tick(minutes(10), QUIET), minutes(10)),
                                     (Tick(minutes(15), None), minutes(15))])
    assert release.state == rel.CANARY and release.held and release.traffic == 10
    assert "no health data" in release.reasons[0]
    assert [type(a) for a in actions] == [Wait, Notify] and "/rollback" in actions[-1].text
    assert rel.next_step(release, Tick(minutes(40), HEALTHY), PLAN, minutes(40)).noop  # a human decides
    sick = rel.next_step(release, Tick(minutes(41), SICK), PLAN, minutes(41))
    assert sick.release.state == rel.ROLLING_BACK
    assert rel.next_step(release, ManualRollback("o"), PLAN, minutes(42)).release.state == rel.ROLLING_BACK


# ---------------------------------------------------------------------------------------------
# Duplicate and stale events


@pytest.mark.parametrize("state,event", [
    (rel.BUILDING, BuildStarted("b-1")),  # twice
    (rel.BUILDING, BuildStarted("b-2")),
    (rel.BUILDING, BuildFinished("b-2", "SUCCESS")),  # another build
    (rel.BUILDING, BuildFinished("b-1", "QUEUED")),
    (rel.BUILDING, DeploymentCreated(8)),  # already recorded
    (rel.SMOKE, BuildFinished("b-1", "SUCCESS")),  # redelivered
    (rel.SMOKE, BuildFinished("b-1", "FAILURE")),
    (rel.CANARY, SMOKE_OK),
    (rel.CANARY, PreflightChecked(())),
    (rel.CANARY, Tick(minutes(4), SICK)),  # from before the step started
    (rel.CANARY, Tick(minutes(7), HEALTHY)),  # not due
    (rel.WATCHING, Tick(minutes(14), SICK)),  # stale: before the watch started
    (rel.SUCCEEDED, Tick(minutes(50), SICK)),
    (rel.SUCCEEDED, Breach("late")),
    (rel.SMOKE, Breach("no traffic yet")),
    (rel.PREFLIGHT, Tick(minutes(1), SICK)),
    (rel.PREFLIGHT, SMOKE_OK),
])
def test_duplicate_and_stale_events_are_noops(state, event):
    release = at_state(state)
    decision = rel.next_step(release, event, PLAN, minutes(15))
    assert decision.actions == () and decision.release == release


@pytest.mark.parametrize("state", [rel.FAILED, rel.CANCELLED, rel.ROLLED_BACK])
@pytest.mark.parametrize("event", [PreflightChecked(()), BuildFinished("b-1", "SUCCESS"), SMOKE_OK,
                                   Tick(minutes(60), SICK, {PREVIOUS: 1.0}), Breach("x"), Cancel("o"),
                                   ManualRollback("o")])
def test_terminal_releases_ignore_everything(state, event):
    release = dataclasses.replace(at_state(rel.CANARY), state=state)
    decision = rel.next_step(release, event, PLAN, minutes(60))
    assert decision.noop and decision.release == release


def test_a_redelivered_rollback_does_nothing_more():
    rolling = rel.next_step(at_state(rel.CANARY), Breach("5xx"), PLAN, minutes(6)).release
    for event in (Breach("5xx"), ManualRollback("o"), Cancel("o")):
        assert rel.next_step(rolling, event, PLAN, minutes(7)).noop


# ---------------------------------------------------------------------------------------------
# The incident and cleanup


def test_incident_body_is_neutralised_and_bounded():
    release = at_state(rel.CANARY)
    hostile = "@everyone <img src=x> | `rm` [link](http://evil)\n# heading"
    release = dataclasses.replace(release, service="svc@x", reasons=(hostile,))
    entry = rel.TimelineEntry(NOW, "canary 10%", "tick", {"source": hostile}, hostile)
    body = rel.incident_body(dataclasses.replace(release, timeline=(entry,) * 5))
    assert "@everyone" not in body and "<img" not in body and "`rm`" not in body
    assert "](http://evil" not in body
    assert "\n# heading" not in body
    table = [line for line in body.splitlines() if line.startswith("| canary")]
    assert len(table) == 5 and all(line.count("|") == 5 for line in table)
    huge = dataclasses.replace(release, timeline=(entry,) * 2000)
    body = rel.incident_body(huge)
    assert len(body) < 60_000 and "entries left out" in body and f"root cause: {SHA}" in body


def test_incident_body_without_a_valid_repository_has_no_link():
    body = rel.incident_body(dataclasses.replace(at_state(rel.CANARY), repository="../evil"))
    assert "https://" not in body


V = [("v1", NOW - timedelta(days=9), 0.0), ("v2", NOW - timedelta(days=8), 0.0),
     ("v3", NOW - timedelta(days=7), 0.3), ("v4", NOW - timedelta(days=6), 0.0),
     ("v5", NOW - timedelta(days=5), 0.7), ("v6", NOW - timedelta(days=4), 0.0)]


@pytest.mark.parametrize("versions,serving,previous,keep,expected", [
    (V, "v5", "v4", 3, ("v1", "v2", "v6")),
    (V, "v5", "v4", 6, ()),
    (V, "v5", "v4", 0, ("v1", "v2", "v6")),  # serving, previous and v3 (traffic) always stay
    (V, "v1", "v2", 4, ("v4", "v6")),
    (V, "v6", "v1", 5, ("v2",)),
    ([], "v1", "", 3, ()),
    (list(reversed(V)), "v5", "v4", 4, ("v1", "v2")),  # oldest first whatever the input order
])
def test_cleanup(versions, serving, previous, keep, expected):
    doomed = rel.cleanup(versions, serving, previous, keep)
    assert doomed == expected
    with_traffic = {name for name, _, share in versions if share > 0}
    assert not set(doomed) & ({serving, previous} | with_traffic)
