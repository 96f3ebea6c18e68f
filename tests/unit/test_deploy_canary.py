"""Canary analysis: pass, fail, and too little traffic to judge (inconclusive, never failure)."""

from __future__ import annotations

import pytest

from functions.deploy_agent.canary import (
    Analysis,
    DeployPlan,
    HealthWindow,
    analyse,
    compare_to_baseline,
    decide_inconclusive,
    plan_from_policy,
)
from shared.policy import DEFAULT_POLICY, SmokeCheck

PLAN = DeployPlan(min_requests=20, max_error_rate=0.02, max_p95_ms=800)


@pytest.mark.parametrize("window,verdict,words", [
    (HealthWindow(1000, 0, 120.0, "monitoring"), "pass", "within the limit"),
    (HealthWindow(100, 2, 100.0), "pass", "within the limit"),  # exactly at the limit passes
    (HealthWindow(100, 3, 100.0), "fail", "error rate 3.0% is over the limit of 2.0%"),
    (HealthWindow(1000, 0, 950.0), "fail", "p95 latency 950 ms is over the limit of 800 ms"),
    (HealthWindow(1000, 500, 950.0), "fail", "error rate 50.0%"),
    (HealthWindow(19, 0, 100.0), "inconclusive", "only 19 requests"),
    (HealthWindow(5, 5, 100.0), "inconclusive", "fewer than the 20 needed"),  # few requests never fail
    (HealthWindow(0, 0, None), "inconclusive", "only 0 requests"),
    (HealthWindow(100, 0, None), "inconclusive", "no p95 latency"),
    (HealthWindow(10, 20, None), "inconclusive", "inconsistent"),
    (None, "inconclusive", "no health data"),
])
def test_analyse(window, verdict, words):
    analysis = analyse(window, PLAN)
    assert analysis.verdict == verdict
    assert any(words in reason for reason in analysis.reasons), analysis.reasons


def test_both_failures_are_reported_with_metrics():
    analysis = analyse(HealthWindow(200, 20, 900.0, "logs"), PLAN)
    assert analysis.verdict == "fail" and len(analysis.reasons) == 2
    assert analysis.metrics == {"requests": 200, "errors": 20, "error_rate": 0.1, "p95_ms": 900.0,
                                "source": "logs"}


def test_no_latency_limit_ignores_missing_p95():
    assert analyse(HealthWindow(100, 0, None), DeployPlan()).verdict == "pass"


INCONCLUSIVE = Analysis("inconclusive", ("only 3 requests",), {})


@pytest.mark.parametrize("analysis,waited,mode,outcome", [
    (Analysis("pass", (), {}), 0, "hold", "pass"),
    (Analysis("fail", (), {}), 0, "pass", "fail"),
    (Analysis("fail", (), {}), 3, "pass", "fail"),
    (INCONCLUSIVE, 0, "hold", "wait"),
    (INCONCLUSIVE, 0, "pass", "wait"),
    (INCONCLUSIVE, 1, "hold", "hold"),
    (INCONCLUSIVE, 1, "pass", "pass"),
    (INCONCLUSIVE, 4, "pass", "pass"),
])
def test_decide_inconclusive(analysis, waited, mode, outcome):
    assert decide_inconclusive(analysis, waited, DeployPlan(inconclusive=mode)) == outcome


@pytest.mark.parametrize("new,old,worse", [
    (HealthWindow(100, 1, 100.0), HealthWindow(100, 1, 100.0), False),
    (HealthWindow(100, 10, 100.0), HealthWindow(100, 1, 100.0), True),
    (HealthWindow(100, 0, 400.0), HealthWindow(100, 0, 100.0), True),
    (HealthWindow(5, 5, 400.0), HealthWindow(100, 0, 100.0), False),  # too few to compare
])
def test_compare_to_baseline(new, old, worse):
    assert bool(compare_to_baseline(new, old, PLAN)) is worse


def test_plan_from_policy():
    plan = plan_from_policy(DEFAULT_POLICY, min_requests=50)
    assert plan.canary_steps == (10, 50, 100) and plan.watch_minutes == 15 and plan.min_requests == 50
    assert plan.environment == "production" and all(isinstance(c, SmokeCheck) for c in plan.smoke)
