"""The repo scout's rate-limit economy: stop before the reserve, resume at the cursor next tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.repo_scout.budget import (
    FIRST_SCAN_COST,
    BudgetDecision,
    budget_stop,
    cost_estimate,
    resume_order,
)
from shared.errors import InvalidInput

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=40)
REPOS = ["octo/a", "octo/b", "octo/c", "octo/d"]


def test_plenty_of_budget_scans_everything():
    decision = budget_stop(4_000, LATER, REPOS, 30, 0.2, now=NOW)
    assert decision == BudgetDecision(False, 4, None, 3_000, decision.reason)
    assert "4 repositories" in decision.reason


def test_a_tight_budget_stops_before_the_reserve_with_a_cursor():
    # 1,000 kept in reserve; 1,100 - 1,000 = 100 usable at 30 each: 3 fit.
    decision = budget_stop(1_100, LATER, REPOS, 30, 0.2, now=NOW)
    assert (decision.stop, decision.scan_now, decision.cursor, decision.usable) == (True, 3, "octo/d", 100)
    assert "resets at 12:40 UTC" in decision.reason and "resumes at octo/d" in decision.reason


def test_at_or_below_the_reserve_nothing_is_scanned():
    for remaining in (1_000, 500, 0, -5):
        decision = budget_stop(remaining, LATER, REPOS, 30, 0.2, now=NOW)
        assert (decision.stop, decision.scan_now, decision.cursor) == (True, 0, "octo/a")


def test_exactly_enough_for_the_last_repository_scans_it():
    assert not budget_stop(1_120, LATER, REPOS, 30, 0.2, now=NOW).stop
    assert budget_stop(1_119, LATER, REPOS, 30, 0.2, now=NOW).scan_now == 3


def test_a_past_reset_means_the_whole_limit_is_back():
    decision = budget_stop(0, NOW - timedelta(seconds=1), REPOS, 30, 0.2, now=NOW, limit=5_000)
    assert not decision.stop and decision.usable == 4_000


def test_costs_are_rounded_up_and_an_unchanged_repository_costs_at_least_one_call():
    assert budget_stop(1_002, LATER, REPOS, 0.0, 0.2, now=NOW).scan_now == 2
    assert budget_stop(1_010, LATER, REPOS, 4.2, 0.2, now=NOW).scan_now == 2


def test_no_repositories_left_is_never_a_stop():
    decision = budget_stop(0, LATER, [], 30, 0.2, now=NOW)
    assert (decision.stop, decision.scan_now, decision.cursor) == (False, 0, None)


def test_naive_times_are_utc():
    assert budget_stop(0, datetime(2026, 6, 1, 11, 0), REPOS, 30, 0.2, now=NOW).stop is False


@pytest.mark.parametrize("kwargs", [dict(reserve_fraction=1.0), dict(reserve_fraction=-0.1),
                                    dict(cost_per_repo_estimate=float("nan")),
                                    dict(cost_per_repo_estimate=-1), dict(limit=0)])
def test_bad_arguments_are_refused(kwargs):
    arguments = dict(remaining=100, reset_at=LATER, repos_left=REPOS, cost_per_repo_estimate=30,
                     reserve_fraction=0.2, now=NOW)
    arguments.update(kwargs)
    with pytest.raises(InvalidInput):
        budget_stop(**arguments)


def test_resume_order_starts_at_the_cursor_and_wraps():
    repos = ["octo/c", "octo/a", "Octo/B", "octo/d", "octo/a"]
    assert resume_order(repos, None) == ["octo/a", "Octo/B", "octo/c", "octo/d"]
    assert resume_order(repos, "octo/c") == ["octo/c", "octo/d", "octo/a", "Octo/B"]
    # A cursor whose repository is gone resumes at the next one, and past the end wraps to the start.
    assert resume_order(["octo/a", "octo/d"], "octo/b") == ["octo/d", "octo/a"]
    assert resume_order(["octo/a", "octo/b"], "octo/z") == ["octo/a", "octo/b"]


def test_a_stopped_tick_resumes_where_it_stopped():
    first = budget_stop(1_060, LATER, resume_order(REPOS, None), 30, 0.2, now=NOW)
    assert (first.scan_now, first.cursor) == (2, "octo/c")
    second = resume_order(REPOS, first.cursor)
    assert second[:2] == ["octo/c", "octo/d"]
    assert not budget_stop(5_000, LATER, second, 30, 0.2, now=NOW).stop


def test_cost_estimate():
    assert cost_estimate([]) == FIRST_SCAN_COST
    assert cost_estimate([3, 1, 12, 2]) == 12
    assert cost_estimate([500] + [1] * 20) == 1  # only the recent ones
    assert cost_estimate([-3]) == 0
