"""DORA's four keys, their bands, builds and coverage: arithmetic on constructed histories."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from functions.deploy_agent import release as rel
from functions.deploy_agent.canary import DeployPlan, HealthWindow
from functions.deploy_agent.store import release_doc
from functions.metrics import dora as d
from functions.metrics.dora import (
    DAY,
    ELITE,
    HIGH,
    HOUR,
    LOW,
    MEDIUM,
    MONTH,
    NO_DATA,
    WEEK,
    CiRun,
    CoverageSample,
    Deployment,
    Incident,
    MetricsInputError,
    Window,
)
from functions.monitor_agent.store import _closing, _incident_doc
from shared import audit
from shared.policy import SmokeCheck

START = datetime(2026, 12, 1, tzinfo=UTC)
DAY_WINDOW = Window(START, START + timedelta(days=1))
WEEK_WINDOW = Window(START, START + timedelta(days=7))
AFTER = START + timedelta(days=8)  # every test's `now`, unless it says otherwise
APP = "agentops[bot]"


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def deploy(ident: str, hours: float | None, *, succeeded: float | None = None, failed: float | None = None,
           stopped: float | None = None, author: str = "alice", repository: str = "octo/shop",
           service: str = "default", sha: str = "") -> Deployment:
    """A deploy that reached production `hours` after START (None: never did)."""
    state = ("rolled_back" if failed is not None else "succeeded" if succeeded is not None
             else "failed" if stopped is not None else "canary")
    started = at((hours if hours is not None else stopped or 0) - 0.5)
    return Deployment(ident, repository, service, sha or f"sha-{ident}", state, started,
                      None if hours is None else at(hours), None if succeeded is None else at(succeeded),
                      None if failed is None else at(failed), None if stopped is None else at(stopped),
                      author=author)


def ok(ident: str, hours: float, **kwargs) -> Deployment:
    return deploy(ident, hours, succeeded=hours + 0.5, **kwargs)


def incident(ident: str, opened: float, closed: float | None, release_id: str = "", kind: str = "outage",
             repository: str = "octo/shop", service: str = "default") -> Incident:
    return Incident(ident, repository, service, kind, at(opened), None if closed is None else at(closed),
                    release_id)


def compute(deployments=(), incidents=(), first_commits=None, window=DAY_WINDOW, now=AFTER):
    return d.four_keys(deployments, incidents, first_commits or {}, window, now, APP)


# ---- bands, with their ties ---------------------------------------------------------------------------


@pytest.mark.parametrize("deploys,days,band", [
    (0, 7, NO_DATA), (2, 1, ELITE), (8, 7, ELITE),
    (1, 1, HIGH), (7, 7, HIGH),  # once a day exactly is "between once per day and once per week"
    (1, 7, HIGH), (2, 14, HIGH),  # once a week exactly is still high
    (1, 8, MEDIUM), (1, 30, MEDIUM),  # once a month exactly is still medium
    (1, 31, LOW), (2, 90, LOW),
])
def test_frequency_band(deploys, days, band):
    assert d.frequency_band(deploys, days) == band


@pytest.mark.parametrize("seconds,band", [
    (None, NO_DATA), (0, ELITE), (DAY - 1, ELITE), (DAY, HIGH), (WEEK, HIGH), (WEEK + 1, MEDIUM),
    (MONTH, MEDIUM), (MONTH + 1, LOW),
])
def test_lead_time_band(seconds, band):
    assert d.lead_time_band(seconds) == band


@pytest.mark.parametrize("failed,deploys,band", [
    (0, 0, NO_DATA), (0, 1, ELITE), (1, 20, ELITE), (1, 19, HIGH), (2, 20, HIGH), (3, 20, MEDIUM),
    (4, 20, LOW), (1, 1, LOW),
])
def test_change_failure_band_ties_are_exact(failed, deploys, band):
    assert d.change_failure_band(failed, deploys) == band


@pytest.mark.parametrize("seconds,band", [
    (None, NO_DATA), (HOUR - 1, ELITE), (HOUR, HIGH), (DAY - 1, HIGH), (DAY, MEDIUM), (WEEK, MEDIUM),
    (WEEK + 1, LOW), (60 * DAY, LOW),
])
def test_restore_band(seconds, band):
    assert d.restore_band(seconds) == band


@pytest.mark.parametrize("call", [
    lambda: d.lead_time_band(math.nan), lambda: d.lead_time_band(-1), lambda: d.restore_band(math.inf),
    lambda: d.restore_band(-0.5), lambda: d.frequency_band(-1, 7), lambda: d.frequency_band(1, math.nan),
    lambda: d.change_failure_band(3, 2), lambda: d.percentile([1.0, math.nan], 50),
    lambda: d.percentile([-3.0], 50), lambda: d.percentile([1.0], 101),
    lambda: CoverageSample(START, math.nan), lambda: CoverageSample(START, 100.5),
    lambda: d.lead_time_band(True),
])
def test_nan_negative_and_out_of_range_numbers_are_refused(call):
    with pytest.raises(MetricsInputError) as caught:
        call()
    assert isinstance(caught.value, ValueError) and str(caught.value)


def test_band_rank_orders_best_first():
    assert [d.band_rank(band) for band in (ELITE, HIGH, MEDIUM, LOW, NO_DATA)] == [0, 1, 2, 3, None]


def test_percentile_interpolates_and_the_median_of_an_even_count_is_the_middle_mean():
    assert d.percentile([], 50) is None
    assert d.median([5.0]) == 5.0 and d.percentile([5.0], 90) == 5.0
    assert d.median([4.0, 1.0, 3.0]) == 3.0
    assert d.median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert d.percentile(list(map(float, range(1, 11))), 90) == pytest.approx(9.1)
    assert d.percentile([1.0, 2.0], 0) == 1.0 and d.percentile([1.0, 2.0], 100) == 2.0


# ---- actors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["code", "test", "qa", "deploy", "monitor", "scout", "orchestrator",
                                   "code_agent", "github_webhook", "repo_scout"])
def test_the_systems_own_actors_are_agents(actor):
    assert d.actor_kind(actor) == "agent"


@pytest.mark.parametrize("actor", ["@alice", "operator alice", "alice", "alice,bob", "dependabot[bot]", "",
                                   "Code"])
def test_everyone_else_is_human(actor):
    assert d.actor_kind(actor) == "human"


def test_the_apps_login_is_an_agent_only_when_named():
    assert d.actor_kind(APP) == "human"
    assert d.actor_kind(APP, APP) == "agent" and d.actor_kind("AgentOps[bot]", APP) == "agent"
    assert d.is_bot(APP) and d.is_bot("dependabot[bot]") and not d.is_bot("alice")


def test_actor_kind_agrees_with_the_audit_chains():
    for actor in [*audit.SYSTEM_ACTORS, "@alice", "operator x", "alice,bob", "people", "mallory"]:
        assert (d.actor_kind(actor) == "agent") == (audit.actor_kind(actor) != audit.PEOPLE), actor


# ---- windows ---------------------------------------------------------------------------------------------


def test_a_window_must_end_after_it_starts_and_naive_times_are_utc():
    with pytest.raises(MetricsInputError):
        Window(START, START)
    naive = Window(datetime(2026, 12, 1), datetime(2026, 12, 2))
    assert naive == DAY_WINDOW and naive.days == 1.0
    assert d.day_window(date(2026, 12, 1)) == DAY_WINDOW and d.week_window(date(2026, 12, 1)) == WEEK_WINDOW
    assert at(0) in DAY_WINDOW and at(24) not in DAY_WINDOW and at(-0.01) not in DAY_WINDOW


def test_a_window_known_only_in_part_ends_at_now():
    assert DAY_WINDOW.until(at(6)) == Window(START, at(6))
    assert DAY_WINDOW.until(AFTER) is DAY_WINDOW
    with pytest.raises(MetricsInputError, match="nothing"):
        DAY_WINDOW.until(START)


# ---- the four keys ---------------------------------------------------------------------------------------


def test_no_deploys_no_incidents_is_no_data_and_never_divides_by_zero():
    result = compute()
    freq, lead, cfr, ttr = (result.deployment_frequency, result.lead_time, result.change_failure_rate,
                            result.time_to_restore)
    assert (freq.deploys, freq.per_day, freq.per_week, freq.band) == (0, 0.0, 0.0, NO_DATA)
    assert (lead.changes, lead.median_seconds, lead.p90_seconds, lead.band) == (0, None, None, NO_DATA)
    assert (cfr.deploys, cfr.failed, cfr.rate, cfr.band) == (0, 0, None, NO_DATA)
    assert (ttr.restored, ttr.open, ttr.median_seconds, ttr.mean_seconds) == (0, 0, None, None)
    assert ttr.band == NO_DATA
    assert all(block.band == NO_DATA for block in result.deployment_frequency.by_actor.values())


def test_a_single_successful_deploy():
    first = {"sha-a": at(8)}
    result = compute([ok("a", 10)], first_commits=first)
    assert result.deployment_frequency.deploys == 1
    assert result.deployment_frequency.per_day == 1.0 and result.deployment_frequency.per_week == 7.0
    assert result.deployment_frequency.band == HIGH
    assert result.lead_time.median_seconds == result.lead_time.p90_seconds == 2 * HOUR
    assert result.lead_time.band == ELITE
    assert (result.change_failure_rate.rate, result.change_failure_rate.band) == (0.0, ELITE)


def test_all_failed():
    deploys = [deploy(name, hours, failed=hours + 0.2) for name, hours in (("a", 1), ("b", 5), ("c", 9))]
    result = compute(deploys, first_commits={"sha-a": at(0)})
    assert result.deployment_frequency.deploys == 0 and result.deployment_frequency.production_deploys == 3
    assert result.deployment_frequency.band == NO_DATA
    assert (result.change_failure_rate.failed, result.change_failure_rate.deploys) == (3, 3)
    assert (result.change_failure_rate.rate, result.change_failure_rate.band) == (1.0, LOW)
    assert result.lead_time.changes == 0 and result.lead_time.band == NO_DATA  # no change got to stay


def test_deploys_outside_the_window_are_ignored_and_the_window_is_half_open():
    deploys = [ok("before", -1), ok("at-start", 0), ok("inside", 12), ok("at-end", 24), ok("after", 30)]
    result = compute(deploys)
    assert result.deployment_frequency.deploys == 2
    assert result.change_failure_rate.deploys == 2


def test_a_rollback_of_a_deploy_from_before_the_window_counts_in_neither_rate_but_is_restored():
    old = deploy("old", -3, succeeded=-2, failed=2, author=APP)
    rollback = incident("rollback-old", 2, 3, release_id="old", kind="rollback")
    result = compute([old], [rollback])
    assert result.change_failure_rate.deploys == 0 and result.change_failure_rate.rate is None
    assert result.deployment_frequency.deploys == 0
    restore = result.time_to_restore
    assert (restore.restored, restore.median_seconds, restore.band) == (1, HOUR, HIGH)
    assert restore.by_actor["agent"].restored == 1 and restore.by_actor["human"].restored == 0
    assert restore.unattributed == 0


def test_an_open_incident_is_listed_as_open_never_as_restored():
    incidents = [incident("still-open", 20, None), incident("closed-later", 22, 30),
                 incident("restored", 1, 1.5), incident("closed-before", -10, -5)]
    result = compute([], incidents).time_to_restore
    assert result.restored == 1 and result.median_seconds == 1800 and result.band == ELITE
    assert result.open == 2
    assert [(item.incident_id, item.age_seconds) for item in result.open_incidents] == [
        ("still-open", 4 * HOUR), ("closed-later", 2 * HOUR)]
    assert result.unattributed == 3  # outages naming no deploy


def test_today_so_far_knows_nothing_after_now():
    """`now` inside the window: a later close and a later rollback have not happened yet."""
    deploys = [deploy("a", 1, succeeded=2, failed=10)]
    incidents = [incident("i", 3, 9)]
    result = compute(deploys, incidents, now=at(6))
    assert result.change_failure_rate.failed == 0 and result.change_failure_rate.deploys == 1
    assert result.deployment_frequency.per_day == pytest.approx(4.0)  # one in six hours
    assert result.time_to_restore.open == 1 and result.time_to_restore.restored == 0
    assert result.time_to_restore.open_incidents[0].age_seconds == 3 * HOUR
    later = compute(deploys, incidents)
    assert later.change_failure_rate.failed == 1 and later.time_to_restore.restored == 1


def test_a_deploy_still_in_canary_is_in_progress_not_in_the_rate():
    result = compute([ok("a", 1), deploy("b", 20)])
    cfr = result.change_failure_rate
    assert (cfr.deploys, cfr.failed, cfr.in_progress, cfr.rate) == (1, 0, 1, 0.0)
    assert result.deployment_frequency.production_deploys == 2 and result.deployment_frequency.deploys == 1


def test_an_incident_naming_a_deploy_fails_it_once_even_with_its_rollback():
    deploys = [ok("a", 1), deploy("b", 2, succeeded=2.5, failed=4), ok("c", 3), ok("d", 5)]
    incidents = [incident("outage-a", 6, 7, release_id="a"), incident("rollback-b", 4, 5, "b", "rollback"),
                 incident("outage-b", 4.1, 5, "b")]
    cfr = compute(deploys, incidents).change_failure_rate
    assert (cfr.failed, cfr.deploys, cfr.rate, cfr.band) == (2, 4, 0.5, LOW)
    # A succeeded deploy that was rolled back still was a successful deploy.
    assert compute(deploys, incidents).deployment_frequency.deploys == 4


def test_releases_stopped_before_production_are_counted_apart():
    deploys = [deploy("built-badly", None, stopped=3), deploy("cancelled", None, stopped=4, author="code"),
               deploy("old-stop", None, stopped=-3), ok("a", 5)]
    result = compute(deploys)
    assert result.deployment_frequency.stopped_before_production == 2
    assert result.deployment_frequency.production_deploys == 1
    assert result.change_failure_rate.deploys == 1 and result.change_failure_rate.failed == 0


def test_lead_time_median_p90_and_the_changes_it_cannot_measure():
    deploys = [ok(f"d{n}", 10 + n) for n in range(5)] + [ok("unknown", 20), ok("skewed", 21)]
    first = {f"sha-d{n}": at(10 + n - (n + 1)) for n in range(5)}  # lead times 1h..5h
    first["sha-skewed"] = at(22)  # the first commit after the deploy: a clock skew
    lead = compute(deploys, first_commits=first).lead_time
    assert lead.changes == 5 and lead.unknown_commit == 1 and lead.skewed == 1
    assert lead.median_seconds == 3 * HOUR
    assert lead.p90_seconds == pytest.approx(4.6 * HOUR)
    assert lead.band == ELITE


def test_an_incident_closed_before_it_opened_is_excluded_and_counted():
    result = compute([], [incident("skewed", 5, 4), incident("fine", 5, 7)]).time_to_restore
    assert result.skewed == 1 and result.restored == 1 and result.median_seconds == 2 * HOUR
    assert result.open == 0


def test_time_to_restore_statistics_and_band_ties():
    incidents = [incident(f"i{n}", 0, hours) for n, hours in enumerate((1, 2, 3, 23))]
    result = compute([], incidents).time_to_restore
    assert result.median_seconds == 2.5 * HOUR and result.mean_seconds == 7.25 * HOUR
    assert result.p90_seconds == pytest.approx(17 * HOUR)
    assert result.band == HIGH
    on_the_end = compute([], [incident("end", 0, 24)]).time_to_restore
    assert on_the_end.restored == 0 and on_the_end.open == 1  # closed as the window ended: not in it
    exactly_a_day = compute([], [incident("x", 0, 24)], window=WEEK_WINDOW).time_to_restore
    assert exactly_a_day.band == MEDIUM  # "less than one day" does not hold a whole day


def test_attribution_splits_add_up_to_the_totals():
    deploys = [ok("a1", 1, author=APP), ok("a2", 2, author="code"), deploy("a3", 3, failed=4, author=APP),
               ok("h1", 5, author="alice"), deploy("h2", 6, author="@bob"),
               deploy("h3", None, stopped=7, author="bob"), deploy("a4", None, stopped=8, author=APP),
               ok("h4", 9, author="carol")]
    incidents = [incident("r-a3", 4, 5, "a3", "rollback"), incident("o-h1", 10, None, "h1"),
                 incident("o-none", 11, 12)]
    first = {"sha-a1": at(0), "sha-a2": at(1), "sha-h1": at(4), "sha-h4": at(30)}
    result = compute(deploys, incidents, first)
    freq, lead = result.deployment_frequency, result.lead_time
    cfr, ttr = result.change_failure_rate, result.time_to_restore
    agent, human = "agent", "human"
    assert freq.by_actor[agent].deploys == 2 and freq.by_actor[human].deploys == 2
    for name in ("deploys", "production_deploys", "stopped_before_production"):
        assert getattr(freq, name) == sum(getattr(freq.by_actor[kind], name) for kind in (agent, human)), name
    assert freq.per_day == pytest.approx(freq.by_actor[agent].per_day + freq.by_actor[human].per_day)
    for name in ("changes", "unknown_commit", "skewed"):
        assert getattr(lead, name) == sum(getattr(lead.by_actor[kind], name) for kind in (agent, human)), name
    assert lead.skewed == 1  # h4's first commit is after its deploy
    for name in ("deploys", "failed", "in_progress"):
        assert getattr(cfr, name) == sum(getattr(cfr.by_actor[kind], name) for kind in (agent, human)), name
    assert cfr.by_actor[agent].rate == pytest.approx(1 / 3) and cfr.by_actor[human].rate == 0.5
    assert ttr.restored == 2 and ttr.open == 1 and ttr.unattributed == 1
    assert ttr.restored + ttr.open == sum(ttr.by_actor[kind].restored + ttr.by_actor[kind].open
                                          for kind in (agent, human)) + ttr.unattributed


def test_dora_per_repository_and_service():
    deploys = [ok("s1", 1, repository="octo/shop", service="api"),
               deploy("s2", 2, failed=3, repository="octo/shop", service="web"),
               ok("s3", 4, repository="octo/shop", service="web"),
               ok("b1", 5, repository="octo/blog")]
    incidents = [incident("i-web", 3, 4, "s2", "rollback", "octo/shop", "web"),
                 incident("i-docs", 6, None, repository="octo/docs", service="default")]
    report = d.dora_report(deploys, incidents, {}, DAY_WINDOW, AFTER, APP)
    assert [repo.repository for repo in report.repositories] == ["octo/blog", "octo/docs", "octo/shop"]
    shop = report.repositories[2]
    assert [service.service for service in shop.services] == ["api", "web"]
    web = shop.services[1].dora
    assert web.change_failure_rate.rate == 0.5 and web.time_to_restore.restored == 1
    assert shop.dora.change_failure_rate.deploys == 3
    assert report.all.change_failure_rate.deploys == sum(
        repo.dora.change_failure_rate.deploys for repo in report.repositories) == 4
    assert report.repositories[1].dora.time_to_restore.open == 1
    doc = report.to_doc()
    assert doc["repositories"][2]["services"][1]["service"] == "web"
    assert doc["repositories"][2]["services"][1]["change_failure_rate"]["rate"] == 0.5


def test_a_weeks_bands():
    deploys = [ok(f"d{n}", 24 * n + 10) for n in range(7)]
    first = {f"sha-d{n}": at(24 * n + 10 - 30) for n in range(7)}  # 30 hours each
    result = compute(deploys, first_commits=first, window=WEEK_WINDOW)
    assert result.deployment_frequency.per_day == pytest.approx(1.0)
    assert result.deployment_frequency.band == HIGH  # once a day, not several
    assert result.lead_time.band == HIGH
    eight = compute([*deploys, ok("extra", 100)], window=WEEK_WINDOW)
    assert eight.deployment_frequency.band == ELITE


# ---- from the stored documents ----------------------------------------------------------------------------

PLAN = DeployPlan(canary_steps=(10, 50, 100), watch_minutes=15, smoke=(SmokeCheck("/healthz"),),
                  analysis_minutes=5, min_requests=20)
HEALTHY = HealthWindow(500, 1, 120.0, "monitoring")
SMOKE_OK = rel.SmokeResult((rel.SmokeOutcome("/healthz", 200, 40.0, True),))


def drive(events, previous="v20261130-0900-0fedcba"):
    release = rel.new_release("octo/shop", "default", "1a2b3c4d5e6f", 42, previous, START)
    for event, minute in events:
        release = rel.next_step(release, event, PLAN, START + timedelta(minutes=minute)).release
    return release


TO_CANARY = [(rel.PreflightChecked(()), 0), (rel.DeploymentCreated(7), 0), (rel.BuildStarted("b-1"), 1),
             (rel.BuildFinished("b-1", "SUCCESS"), 4), (SMOKE_OK, 5)]


def minute(n: float) -> datetime:
    return START + timedelta(minutes=n)


def test_a_release_that_succeeded_read_from_its_document():
    release = drive([*TO_CANARY, (rel.Tick(minute(10), HEALTHY), 10), (rel.Tick(minute(15), HEALTHY), 15),
                     (rel.Tick(minute(31), HEALTHY), 31)])
    assert release.state == rel.SUCCEEDED
    deployment = d.deployment_from_release_doc({**release_doc(release)}, author=APP)
    assert deployment.deployed_at == minute(5) and deployment.succeeded_at == minute(31)
    assert deployment.failed_at is None and deployment.stopped_at is None
    assert (deployment.repository, deployment.service, deployment.pull_number) == ("octo/shop", "default", 42)
    assert deployment.id == release.id and deployment.author == APP


def test_a_rolled_back_release_read_from_its_document():
    release = drive([*TO_CANARY, (rel.Breach("5xx"), 7),
                     (rel.Tick(minute(8), serving={"v20261130-0900-0fedcba": 1.0}), 8)])
    assert release.state == rel.ROLLED_BACK
    deployment = d.deployment_from_release_doc(release_doc(release))
    assert deployment.deployed_at == minute(5) and deployment.failed_at == minute(7)
    assert deployment.succeeded_at is None


def test_a_first_deploy_that_failed_while_serving_is_a_failed_change():
    release = drive([*TO_CANARY, (rel.Breach("5xx"), 9)], previous="")
    assert release.state == rel.FAILED
    deployment = d.deployment_from_release_doc(release_doc(release))
    assert deployment.deployed_at == minute(5) and deployment.failed_at == minute(9)


@pytest.mark.parametrize("events,stopped", [
    ([(rel.PreflightChecked(()), 0), (rel.BuildStarted("b-1"), 1),
      (rel.BuildFinished("b-1", "FAILURE"), 3)], 3),
    ([(rel.PreflightChecked(()), 0), (rel.Cancel("@alice"), 2)], 2),
])
def test_releases_that_stopped_before_traffic_read_from_their_documents(events, stopped):
    deployment = d.deployment_from_release_doc(release_doc(drive(events)))
    assert deployment.deployed_at is None and deployment.failed_at is None
    assert deployment.stopped_at == minute(stopped)


def test_incidents_read_from_their_documents_ignore_the_clamped_duration():
    doc = _incident_doc("rollback-x", "octo/shop", "default", "rollback", at(5), release_id="x", sha="abc")
    open_ = d.incident_from_doc(doc)
    assert (open_.id, open_.kind, open_.release_id, open_.closed_at) == ("rollback-x", "rollback", "x", None)
    skewed = d.incident_from_doc({**doc, **_closing(doc, at(4))})
    assert skewed.closed_at == at(4)
    assert compute([], [skewed]).time_to_restore.skewed == 1  # the stored duration said 0 seconds
    with pytest.raises(MetricsInputError):
        d.incident_from_doc({"incident_id": "broken"})


# ---- builds and coverage -----------------------------------------------------------------------------------


def test_build_success_rate_leaves_out_runs_that_say_nothing_about_the_build():
    runs = [CiRun("success", at(1), actor=APP), CiRun("failure", at(2), actor="alice"),
            CiRun("cancelled", at(3)), CiRun("skipped", at(4)), CiRun("timed_out", at(5), actor="code"),
            CiRun("success", at(6), actor="alice"), CiRun("success", at(-3)), CiRun("failure", at(30))]
    stats = d.build_stats(runs, DAY_WINDOW, AFTER, APP)
    assert (stats.runs, stats.succeeded, stats.failed, stats.excluded) == (6, 2, 2, 2)
    assert stats.success_rate == 0.5
    assert stats.last_success_at == at(6) and stats.since_last_success_seconds == 18 * HOUR
    for name in ("runs", "succeeded", "failed", "excluded"):
        assert getattr(stats, name) == sum(getattr(stats.by_actor[kind], name) for kind in ("agent", "human"))
    assert stats.by_actor["agent"].success_rate == 0.5


def test_build_success_rate_without_runs_is_none():
    stats = d.build_stats([CiRun("cancelled", at(1))], DAY_WINDOW, AFTER)
    assert stats.success_rate is None and stats.last_success_at is None
    assert d.build_stats([CiRun("failure", at(1))] * 3, DAY_WINDOW, AFTER).success_rate == 0.0


def test_coverage_latest_trend_and_whose_merges_moved_it():
    samples = [CoverageSample(at(-30), 70.0), CoverageSample(at(-5), 80.0, actor="alice"),
               CoverageSample(at(2), 82.5, actor=APP), CoverageSample(at(5), 81.0, actor="bob"),
               CoverageSample(at(9), 84.0, actor="code"), CoverageSample(at(30), 10.0)]
    stats = d.coverage_stats(samples, DAY_WINDOW, AFTER, APP)
    assert (stats.latest, stats.latest_at, stats.start, stats.samples) == (84.0, at(9), 80.0, 3)
    assert stats.change_points == pytest.approx(4.0) and stats.trend == "up"
    assert stats.by_actor["agent"].samples == 2 and stats.by_actor["human"].samples == 1
    assert stats.by_actor["agent"].change_points == pytest.approx(5.5)
    assert stats.by_actor["human"].change_points == pytest.approx(-1.5)
    assert sum(item.change_points for item in stats.by_actor.values()) == pytest.approx(stats.change_points)


def test_coverage_edges():
    none = d.coverage_stats([], DAY_WINDOW, AFTER)
    assert none.latest is None and none.trend is None and none.change_points is None
    one = d.coverage_stats([CoverageSample(at(3), 75.0)], DAY_WINDOW, AFTER)
    assert one.latest == 75.0 and one.change_points is None and one.trend is None
    quiet = d.coverage_stats([CoverageSample(at(-3), 75.0)], DAY_WINDOW, AFTER)
    assert quiet.latest == 75.0 and quiet.change_points == 0.0 and quiet.trend == "flat"
    down = d.coverage_stats([CoverageSample(at(1), 75.0), CoverageSample(at(2), 74.0)], DAY_WINDOW, AFTER)
    assert down.start == 75.0 and down.trend == "down" and down.by_actor["human"].samples == 1


def test_delivery_per_repository():
    runs = [CiRun("success", at(1), "octo/shop"), CiRun("failure", at(2), "octo/blog")]
    coverage = [CoverageSample(at(1), 50.0, "octo/docs")]
    result = d.delivery(runs, coverage, DAY_WINDOW, AFTER)
    assert result.build.runs == 2 and result.build.success_rate == 0.5
    assert [repo.repository for repo in result.repositories] == ["octo/blog", "octo/docs", "octo/shop"]
    assert result.repositories[1].coverage.latest == 50.0 and result.repositories[1].build.runs == 0
    doc = result.to_doc()
    assert doc["repositories"][0]["build"]["success_rate"] == 0.0


SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def test_results_are_plain_firestore_data_with_snake_case_keys():
    deploys = [ok("a", 1, author=APP), deploy("b", 2, failed=3)]
    doc = d.dora_report(deploys, [incident("i", 3, None, "b")], {"sha-a": at(0)}, DAY_WINDOW, AFTER,
                        APP).to_doc()

    def walk(value, path="doc"):
        if isinstance(value, dict):
            for key, item in value.items():
                assert isinstance(key, str) and SNAKE.match(key), f"{path}.{key}"
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        else:
            assert value is None or type(value) in (str, int, float, bool, datetime), path
            assert not (isinstance(value, str) and value[:1] in "{["), path
            assert not (isinstance(value, float) and math.isnan(value)), path

    walk(doc)
    assert doc["all"]["time_to_restore"]["open_incidents"][0]["incident_id"] == "i"
    assert "by_actor" not in doc["all"]["lead_time"]["by_actor"]["agent"]
    assert doc["all"]["change_failure_rate"]["by_actor"]["human"]["rate"] == 1.0
