"""The agents' KPIs (tasks, pull requests, utilisation, cost), the daily document and week over week."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from functions.metrics import (
    CiRun,
    CoverageSample,
    DailyMetrics,
    Deployment,
    Incident,
    MetricsInputError,
    MetricsInputs,
    PullRequest,
    Review,
    Task,
    Transition,
    Window,
    daily_metrics,
    week_over_week,
)
from functions.metrics import agents as a
from functions.orchestrator import lifecycle

START = datetime(2026, 12, 1, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(days=1))
AFTER = START + timedelta(days=3)
APP = "agentops[bot]"
HOUR = 3600.0


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def task(ident: str, agent: str, *moves: tuple[float, str, str] | tuple[float, str, str, str],
         cost: float = 0.0, approvers: tuple[str, ...] = (), repository: str = "octo/shop") -> Task:
    """A task whose history is `moves`: (hours, target, actor[, reason]), starting queued."""
    history, current = [], ""
    for move in moves:
        hours, target, actor, *reason = move
        history.append(Transition(at(hours), current, target, actor, reason[0] if reason else ""))
        current = target
    return Task(ident, agent, "implement", repository, tuple(history), cost, approvers)


def clean(ident: str, agent: str = "code", start: float = 1.0, end: float = 2.0, outcome: str = "succeeded",
          cost: float = 0.0) -> Task:
    """Queued, dispatched, running and ended with no one but the system touching it."""
    return task(ident, agent, (start, "queued", "orchestrator"), (start, "dispatched", "orchestrator"),
                (start + 0.1, "running", agent), (end, outcome, agent), cost=cost)


# ---- tasks -----------------------------------------------------------------------------------------------


def test_autonomous_and_assisted_completions():
    tasks = [
        clean("alone"),
        clean("failed", outcome="failed"),
        task("retried", "code", (1, "queued", "orchestrator"), (1, "dispatched", "orchestrator"),
             (2, "failed", "code"), (3, "queued", "@alice", "/retry by @alice"),
             (3, "dispatched", "orchestrator"), (4, "succeeded", "code")),
        task("approved", "code", (1, "queued", "orchestrator"), (1, "dispatched", "orchestrator"),
             (2, "waiting_approval", "code"), (3, "queued", "alice,bob"), (3, "dispatched", "orchestrator"),
             (4, "succeeded", "code"), approvers=("alice", "bob")),
        task("operated", "deploy", (1, "queued", "orchestrator"), (2, "cancelled", "operator carol")),
        task("stalled-and-retried", "test", (1, "queued", "orchestrator"), (1, "dispatched", "orchestrator"),
             (2, "queued", "orchestrator", "stalled: no heartbeat; retrying"),
             (2, "dispatched", "orchestrator"), (3, "succeeded", "test")),
        task("blocked", "qa", (1, "queued", "orchestrator"), (5, "blocked", "orchestrator")),
    ]
    stats = a.task_report(tasks, WINDOW, AFTER).all
    assert (stats.ended, stats.succeeded, stats.autonomous, stats.assisted) == (7, 4, 2, 2)
    assert (stats.failed, stats.cancelled, stats.blocked) == (1, 1, 1)
    assert stats.autonomous_rate == pytest.approx(2 / 7) and stats.success_rate == pytest.approx(4 / 7)
    assert stats.succeeded == stats.autonomous + stats.assisted


def test_which_tasks_ended_in_the_window():
    tasks = [
        clean("before", start=-5, end=-4), clean("after", start=25, end=26), clean("inside"),
        task("running", "code", (1, "queued", "orchestrator"), (1, "dispatched", "orchestrator"),
             (2, "running", "code")),
        # Failed in the window and was retried after it: as the window ended, it had failed.
        task("retried-later", "code", (1, "queued", "orchestrator"), (1, "dispatched", "orchestrator"),
             (3, "failed", "code"), (30, "queued", "@alice", "/retry by @alice"), (31, "succeeded", "code")),
        # Failed before the window and succeeded after a /retry inside it: an assisted success.
        task("revived", "code", (-9, "queued", "orchestrator"), (-8, "failed", "code"),
             (2, "queued", "@bob", "/retry by @bob"), (3, "succeeded", "code")),
    ]
    stats = a.task_report(tasks, WINDOW, AFTER).all
    assert (stats.ended, stats.succeeded, stats.autonomous, stats.assisted, stats.failed) == (3, 2, 1, 1, 1)
    so_far = a.task_report(tasks, WINDOW, at(2.5)).all  # "today so far": neither failure nor success yet
    assert (so_far.ended, so_far.succeeded, so_far.failed) == (1, 1, 0)


def test_per_agent_task_figures_add_up():
    tasks = [clean("c1", "code"), clean("c2", "code", outcome="failed"), clean("t1", "test", cost=2.0),
             task("d1", "deploy", (1, "queued", "orchestrator"),
                  (2, "cancelled", "@alice", "/cancel by @alice"))]
    report = a.task_report(tasks, WINDOW, AFTER)
    assert [item.agent for item in report.by_agent] == ["code", "deploy", "test"]
    for name in ("ended", "succeeded", "autonomous", "assisted", "failed", "cancelled", "blocked"):
        assert getattr(report.all, name) == sum(getattr(item.tasks, name) for item in report.by_agent), name
    assert report.by_agent[0].tasks.autonomous_rate == 0.5
    assert report.all.cost_units == 2.0 and report.all.cost_per_task == 0.5


def test_routine_ticks_count_for_their_agent_but_not_in_the_overall_rates():
    import dataclasses

    probes = [dataclasses.replace(clean(f"p{n}", "monitor"), kind="probe_production") for n in range(50)]
    scan = dataclasses.replace(clean("s1", "scout"), kind="scan_repos")
    work = [clean("c1", "code"), clean("c2", "code", outcome="failed")]
    report = a.task_report([*probes, scan, *work], WINDOW, AFTER)
    assert (report.all.ended, report.all.autonomous_rate) == (2, 0.5)  # not 52 of 53
    by_agent = {item.agent: item.tasks for item in report.by_agent}
    assert by_agent["monitor"].ended == 50 and by_agent["scout"].ended == 1 and by_agent["code"].ended == 2


def test_no_tasks_means_no_rates():
    stats = a.task_report([], WINDOW, AFTER).all
    assert stats.ended == 0 and stats.autonomous_rate is None and stats.cost_per_task is None


def test_a_human_is_seen_by_actor_and_by_retry_and_the_app_counts_as_an_agent():
    touched = task("x", "code", (1, "queued", "orchestrator"), (2, "succeeded", APP))
    assert a.human_touched(touched, at(3))
    assert not a.human_touched(touched, at(3), app_login=APP)
    retried = task("y", "code", (1, "queued", "orchestrator"), (2, "queued", "code", "/retry by someone"))
    assert a.human_touched(retried, at(3))
    assert not a.human_touched(clean("z"), at(3))
    assert a.human_touched(Task("w", "code", "k", "r", (), approvers=("alice",)), at(3))


def test_task_from_a_stored_document():
    history = [lifecycle.history_entry(at(1), "", "queued", "from webhook", "orchestrator"),
               lifecycle.history_entry(at(1), "queued", "dispatched", "dispatch", "orchestrator"),
               lifecycle.history_entry(at(2), "dispatched", "waiting_approval", "merge", "code"),
               lifecycle.history_entry(at(3), "waiting_approval", "queued", "approved", "alice"),
               lifecycle.history_entry(at(4), "queued", "succeeded", "done", "code")]
    doc = {"task_id": "t-1", "agent": "code", "kind": "implement", "repository": "octo/shop",
           "status": "succeeded", "cost_units": 1.5, "history": history,
           "approval": {"state": "granted", "counted": ["alice"], "approvers": [{"login": "alice"}]}}
    loaded = a.task_from_doc(doc)
    targets = [entry.target for entry in loaded.history]
    assert targets == ["queued", "dispatched", "waiting_approval", "queued", "succeeded"]
    assert loaded.history[2].source == "dispatched" and loaded.approvers == ("alice",)
    assert loaded.cost_units == 1.5
    stats = a.task_report([loaded], WINDOW, AFTER).all
    assert (stats.succeeded, stats.assisted) == (1, 1)


@pytest.mark.parametrize("cost", [math.nan, -1.0, math.inf])
def test_a_nan_or_negative_cost_is_refused(cost):
    with pytest.raises(MetricsInputError, match="cost"):
        Task("t", "code", "k", "r", (), cost)


# ---- utilisation ------------------------------------------------------------------------------------------


def test_utilisation_is_the_union_of_active_time_over_the_window():
    tasks = [
        clean("a", "code", start=1, end=5),  # active 1..5
        clean("b", "code", start=3, end=7),  # active 3..7, overlapping
        task("c", "code", (20, "queued", "orchestrator"), (22, "dispatched", "orchestrator"),
             (23, "running", "code")),  # still active at the window's end: 22..24
        clean("d", "test", start=-2, end=1),  # clipped at the window's start: 0..1
        task("e", "qa", (1, "queued", "orchestrator"), (2, "waiting_approval", "qa")),  # never active
    ]
    result = {item.agent: item for item in a.utilisation(tasks, WINDOW, AFTER)}
    assert set(result) >= {"code", "test", "qa", "deploy", "monitor", "scout"}  # idle agents show up
    code = result["code"]
    assert code.busy_seconds == 8 * HOUR and code.task_seconds == 10 * HOUR and code.tasks == 3
    assert code.utilisation == pytest.approx(8 / 24) and code.window_seconds == 24 * HOUR
    assert result["test"].busy_seconds == HOUR and result["test"].tasks == 1
    assert result["qa"].busy_seconds == 0 and result["deploy"].utilisation == 0.0


def test_utilisation_survives_a_clock_skew_and_today_so_far():
    skewed = task("s", "code", (5, "queued", "orchestrator"), (5, "dispatched", "orchestrator"),
                  (4, "succeeded", "code"))  # ended "before" it was dispatched
    assert a.active_intervals(skewed, WINDOW) == []
    running = task("r", "code", (1, "queued", "orchestrator"), (2, "dispatched", "orchestrator"))
    so_far = {item.agent: item for item in a.utilisation([running], WINDOW, at(6))}["code"]
    assert so_far.busy_seconds == 4 * HOUR and so_far.utilisation == pytest.approx(4 / 6)


# ---- cost -------------------------------------------------------------------------------------------------


def test_cost_per_task_and_spend_against_a_budget():
    tasks = [clean("a", cost=3.0), clean("b", "test", cost=1.0), clean("c", cost=2.0),
             clean("old", start=-9, end=-8, cost=50.0)]
    over = a.spend(tasks, WINDOW, AFTER, daily_budget=5.0)
    assert (over.tasks, over.cost_units, over.per_task) == (3, 6.0, 2.0)
    assert (over.spent, over.budget, over.remaining, over.over) == (6.0, 5.0, -1.0, True)
    assert over.used == pytest.approx(1.2)
    assert [(item.agent, item.tasks, item.cost_units, item.per_task) for item in over.by_agent] == [
        ("code", 2, 5.0, 2.5), ("test", 1, 1.0, 1.0)]
    counted = a.spend(tasks, Window(START, START + timedelta(days=2)), AFTER, daily_budget=5.0, spent=4.0)
    assert (counted.spent, counted.budget, counted.used, counted.over) == (4.0, 10.0, 0.4, False)
    unlimited = a.spend(tasks, WINDOW, AFTER)
    assert unlimited.budget is None and unlimited.used is None and unlimited.over is None
    nothing_allowed = a.spend(tasks, WINDOW, AFTER, daily_budget=0.0)
    assert nothing_allowed.used is None and nothing_allowed.over is True
    assert a.spend([], WINDOW, AFTER, 5.0).per_task is None


@pytest.mark.parametrize("budget,spent", [(-1.0, None), (math.nan, None), (5.0, -2.0), (5.0, math.nan)])
def test_a_bad_budget_or_spend_is_refused(budget, spent):
    with pytest.raises(MetricsInputError):
        a.spend([], WINDOW, AFTER, budget, spent)


# ---- pull requests ----------------------------------------------------------------------------------------


def review(reviewer: str, state: str, hours: float, commit: str = "") -> Review:
    return Review(reviewer, state, at(hours), commit)


def pull(number: int, author: str, opened: float, *reviews: Review, merged: float | None = None,
         closed: float | None = None) -> PullRequest:
    return PullRequest("octo/shop", number, author, at(opened), reviews,
                       None if merged is None else at(merged), None if closed is None else at(closed))


def test_approval_rate_of_the_agents_pull_requests():
    pulls = [
        pull(1, APP, 1, review("alice", "APPROVED", 3), merged=4),
        pull(2, APP, 1, review("test-bot[bot]", "APPROVED", 2), review(APP, "APPROVED", 2), closed=5),
        pull(3, APP, 1, review("alice", "CHANGES_REQUESTED", 2), closed=6),
        pull(4, APP, 1, review("bob", "APPROVED", 9), merged=8),  # approved only after the merge
        pull(5, APP, 1, review("alice", "APPROVED", 2)),  # approved, still open: not resolved
        pull(6, "carol", 1, review("carol", "APPROVED", 2), review("dave", "APPROVED", 3), merged=4),
        pull(7, "carol", 1, review("carol", "COMMENTED", 2), closed=3),  # the author's own review
    ]
    stats = a.pull_stats(pulls, WINDOW, AFTER, APP)
    agent, human = stats.by_actor["agent"], stats.by_actor["human"]
    assert (agent.resolved, agent.approved, agent.merged) == (4, 1, 2)
    assert agent.approval_rate == 0.25
    assert (human.resolved, human.approved, human.approval_rate) == (2, 1, 0.5)
    for name in ("opened", "resolved", "merged", "approved", "first_reviews", "awaiting_first_review",
                 "review_rounds", "skewed"):
        assert getattr(stats, name) == getattr(agent, name) + getattr(human, name), name
    assert stats.approval_rate == pytest.approx(2 / 6)


def test_time_to_first_human_review_and_who_is_still_waiting():
    pulls = [
        pull(1, APP, 0, review(APP, "COMMENTED", 0.5), review("alice", "COMMENTED", 2), merged=5),
        pull(2, APP, 1, review("bob", "APPROVED", 5), review("alice", "APPROVED", 6)),
        pull(3, APP, 2, review("bob", "CHANGES_REQUESTED", 3)),
        pull(4, APP, -30, review("bob", "APPROVED", -20)),  # first reviewed before the window
        pull(5, APP, 10),  # waiting 14 hours at the window's end
        pull(6, "carol", -10, review("dependabot[bot]", "COMMENTED", 1)),  # a bot's review is no review
        pull(7, APP, 20, closed=21),  # closed unreviewed: not waiting any more
        pull(8, APP, 23, review("alice", "PENDING", 23.5)),  # a draft review nobody sees
    ]
    stats = a.pull_stats(pulls, WINDOW, AFTER, APP)
    agent = stats.by_actor["agent"]
    assert agent.first_reviews == 3
    assert agent.first_review_median_seconds == 2 * HOUR  # waits of 2, 4 and 1 hours
    assert agent.first_review_p90_seconds == pytest.approx(3.6 * HOUR)
    assert (agent.awaiting_first_review, agent.longest_wait_seconds) == (2, 14 * HOUR)
    human = stats.by_actor["human"]
    assert (human.awaiting_first_review, human.longest_wait_seconds) == (1, 34 * HOUR)


def test_review_rounds_count_distinct_heads_with_changes_requested():
    many = pull(1, APP, 0, review("alice", "CHANGES_REQUESTED", 1, "h1"),
                review("bob", "CHANGES_REQUESTED", 1.5, "h1"),  # same head: same round
                review("alice", "CHANGES_REQUESTED", 3, "h2"), review("alice", "COMMENTED", 4, "h3"),
                review("alice", "CHANGES_REQUESTED", 5), review("alice", "APPROVED", 6, "h4"),
                review(APP, "CHANGES_REQUESTED", 6.5, "h4"),  # the test agent's: not a human round
                merged=7)
    assert a.review_rounds(many, APP) == 3
    assert a.review_rounds(many, APP, until=at(2)) == 1
    none = pull(2, APP, 0, review("alice", "APPROVED", 1, "h1"), merged=2)
    stats = a.pull_stats([many, none], WINDOW, AFTER, APP)
    assert (stats.review_rounds, stats.review_rounds_mean, stats.review_rounds_max) == (3, 1.5, 3)


def test_no_pull_requests_means_no_rates_and_a_skewed_one_is_excluded():
    empty = a.pull_stats([], WINDOW, AFTER, APP)
    assert empty.approval_rate is None and empty.first_review_median_seconds is None
    assert empty.review_rounds_mean is None and empty.longest_wait_seconds is None
    skewed = a.pull_stats([pull(1, APP, 5, review("alice", "APPROVED", 4)),
                           pull(2, APP, 5, merged=3)], WINDOW, AFTER, APP)
    assert skewed.skewed == 2 and skewed.first_reviews == 0 and skewed.resolved == 0


# ---- the daily document ---------------------------------------------------------------------------------

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def inputs() -> MetricsInputs:
    deployments = [
        Deployment("r1", "octo/shop", "default", "s1", "succeeded", at(1), at(1.5), at(2), author=APP),
        Deployment("r2", "octo/shop", "default", "s2", "rolled_back", at(3), at(3.5), None, at(4),
                   author="alice"),
    ]
    incidents = [Incident("rollback-r2", "octo/shop", "default", "rollback", at(4), at(4.5), "r2"),
                 Incident("outage-1", "octo/blog", "default", "outage", at(10), None)]
    return MetricsInputs(
        deployments=deployments, incidents=incidents, first_commits={"s1": at(-5)},
        tasks=[clean("t1", cost=1.0), clean("t2", "test", outcome="failed", cost=0.5)],
        pull_requests=[pull(1, APP, 0, review("alice", "APPROVED", 1), merged=1.2)],
        ci_runs=[CiRun("success", at(2), "octo/shop", APP), CiRun("failure", at(3), "octo/shop", "alice")],
        coverage=[CoverageSample(at(-2), 80.0, "octo/shop"), CoverageSample(at(2), 81.0, "octo/shop", APP)],
    )


def walk(value, path="doc"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str) and SNAKE.match(key), f"{path}.{key}"
            walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            walk(item, f"{path}[{index}]")
    else:
        assert value is None or type(value) in (str, int, float, bool, datetime), (path, type(value))
        assert not (isinstance(value, str) and value[:1] in "{["), path
        assert not (isinstance(value, float) and (math.isnan(value) or math.isinf(value))), path


def test_the_daily_document_is_plain_and_complete():
    metrics = daily_metrics(inputs(), WINDOW, AFTER, app_login=APP, daily_budget=10.0)
    assert isinstance(metrics, DailyMetrics) and metrics.doc_id == "2026-12-01"
    doc = metrics.to_doc()
    walk(doc)
    assert set(doc) == {"schema_version", "date", "window", "computed_at", "dora", "delivery", "agents"}
    assert doc["window"] == {"start": START, "end": START + timedelta(days=1), "days": 1.0}
    dora = doc["dora"]["all"]
    assert dora["deployment_frequency"]["deploys"] == 1
    assert dora["change_failure_rate"]["rate"] == 0.5
    assert dora["change_failure_rate"]["by_actor"]["human"]["failed"] == 1
    assert dora["lead_time"]["median_seconds"] == 6.5 * HOUR
    assert dora["time_to_restore"]["open"] == 1 and dora["time_to_restore"]["restored"] == 1
    assert [repo["repository"] for repo in doc["dora"]["repositories"]] == ["octo/blog", "octo/shop"]
    assert doc["delivery"]["build"]["success_rate"] == 0.5
    assert doc["delivery"]["repositories"][0]["coverage"]["change_points"] == 1.0
    agents = doc["agents"]
    assert agents["tasks"]["all"]["autonomous"] == 1 and agents["tasks"]["all"]["ended"] == 2
    assert agents["pull_requests"]["by_actor"]["agent"]["approval_rate"] == 1.0
    assert agents["cost"]["budget"] == 10.0 and agents["cost"]["spent"] == 1.5
    assert {item["agent"] for item in agents["utilisation"]} >= {"code", "test"}


def test_the_daily_document_with_nothing_in_it():
    doc = daily_metrics(MetricsInputs(), WINDOW, AFTER).to_doc()
    walk(doc)
    assert doc["dora"]["all"]["change_failure_rate"]["band"] == "no data"
    assert doc["dora"]["repositories"] == [] and doc["delivery"]["repositories"] == []
    assert doc["agents"]["tasks"]["all"]["autonomous_rate"] is None


def test_week_over_week():
    this_week = Window(START, START + timedelta(days=7))
    last_week = Window(START - timedelta(days=7), START)
    this = daily_metrics(inputs(), this_week, AFTER + timedelta(days=7), APP)
    shifted = MetricsInputs(
        deployments=[Deployment("old", "octo/shop", "default", "s0", "succeeded", at(-100), at(-99),
                                at(-98.5), author="alice")],
        first_commits={"s0": at(-99 - 48)},
        incidents=[Incident("old-outage", "octo/shop", "default", "outage", at(-50), at(-40))],
    )
    last = daily_metrics(shifted, last_week, AFTER, APP)
    delta = week_over_week(this, last.to_doc())
    frequency = delta["dora"]["all"]["deployment_frequency"]
    assert frequency["deploys"] == {"this": 1, "last": 1, "delta": 0, "change": 0.0, "improved": None}
    lead = delta["dora"]["all"]["lead_time"]
    assert lead["median_seconds"]["this"] == 6.5 * HOUR and lead["median_seconds"]["last"] == 48 * HOUR
    assert lead["median_seconds"]["improved"] is True  # shorter is better
    assert lead["band"] == {"this": "elite", "last": "high", "changed": True, "improved": True}
    restore = delta["dora"]["all"]["time_to_restore"]["median_seconds"]
    assert restore["delta"] == 0.5 * HOUR - 10 * HOUR and restore["improved"] is True
    cfr = delta["dora"]["all"]["change_failure_rate"]["rate"]
    assert cfr == {"this": 0.5, "last": 0.0, "delta": 0.5, "change": None, "improved": False}
    repos = delta["dora"]["repositories"]
    assert [repo["repository"] for repo in repos] == ["octo/blog", "octo/shop"]
    assert repos[0]["time_to_restore"]["open"] == {"this": 1, "last": None, "delta": None, "change": None,
                                                   "improved": None}
    assert "window" not in delta and "computed_at" not in delta and "date" not in delta
    assert "open_incidents" not in delta["dora"]["all"]["time_to_restore"]
    walk(delta)
    first_week = week_over_week(this, None)
    assert first_week["dora"]["all"]["deployment_frequency"]["deploys"]["last"] is None
