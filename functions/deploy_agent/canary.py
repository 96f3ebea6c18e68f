"""Canary analysis: is the new version healthy over one interval? Pure.

The monitor measures a window of traffic on the new version and hands it over as a `HealthWindow`;
`analyse` compares it with the plan's limits. Too little traffic to judge is *inconclusive*, never a
failure: a quiet service at 10% must not be rolled back for being quiet. `decide_inconclusive` says
what an inconclusive step does: wait one more interval, then pass or hold as the plan says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.policy import Policy, SmokeCheck

Verdict = Literal["pass", "fail", "inconclusive"]
StepOutcome = Literal["pass", "fail", "wait", "hold"]

# Rates come from ratios of counts; a window exactly at a limit must not fail on float noise.
EPSILON = 1e-9


@dataclass(frozen=True)
class DeployPlan:
    """The policy numbers a release follows, fixed when the release starts."""

    canary_steps: tuple[int, ...] = (10, 50, 100)
    watch_minutes: int = 15
    smoke: tuple[SmokeCheck, ...] = ()
    analysis_minutes: int = 5
    min_requests: int = 20
    inconclusive: Literal["pass", "hold"] = "hold"
    max_error_rate: float = 0.02
    max_p95_ms: int | None = None
    keep_versions: int = 3
    environment: str = "production"


def plan_from_policy(policy: Policy, **overrides: object) -> DeployPlan:
    """The plan for a repository's policy, every number from it; `overrides` replace any of them."""
    deploy = policy.deploy
    fields: dict[str, object] = {
        "canary_steps": tuple(policy.canary_steps), "watch_minutes": policy.watch_minutes,
        "smoke": tuple(policy.smoke), "environment": policy.deploy_environment,
        "analysis_minutes": deploy.analysis_minutes, "min_requests": deploy.min_requests,
        "inconclusive": deploy.inconclusive, "max_error_rate": deploy.max_error_rate,
        "max_p95_ms": deploy.max_p95_ms, "keep_versions": deploy.keep_versions,
    }
    return DeployPlan(**{**fields, **overrides})  # type: ignore[arg-type]


@dataclass(frozen=True)
class HealthWindow:
    """Traffic served by the new version over one window, as the monitor measured it."""

    requests: int
    errors: int
    p95_ms: float | None = None
    source: str = ""  # where the numbers come from, e.g. "cloud-monitoring" or "logs"


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    reasons: tuple[str, ...]
    metrics: Mapping[str, float | int | str]

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def window_metrics(window: HealthWindow | None) -> dict[str, float | int | str]:
    if window is None:
        return {}
    metrics: dict[str, float | int | str] = {"requests": window.requests, "errors": window.errors}
    if window.requests > 0:
        metrics["error_rate"] = round(window.errors / window.requests, 6)
    if window.p95_ms is not None:
        metrics["p95_ms"] = window.p95_ms
    if window.source:
        metrics["source"] = window.source
    return metrics


def analyse(window: HealthWindow | None, plan: DeployPlan) -> Analysis:
    """The verdict on one window: pass, fail (a limit is exceeded) or inconclusive (too little to judge)."""
    metrics = window_metrics(window)
    if window is None:
        return Analysis("inconclusive", ("the monitor reported no health data",), metrics)
    if window.requests < 0 or window.errors < 0 or window.errors > window.requests:
        return Analysis("inconclusive", (f"the monitor's numbers are inconsistent: {window.errors} errors "
                                         f"of {window.requests} requests",), metrics)
    if window.requests < plan.min_requests:
        return Analysis("inconclusive", (f"only {window.requests} requests in the window, fewer than the "
                                         f"{plan.min_requests} needed to judge",), metrics)
    failures = []
    rate = window.errors / window.requests
    if rate > plan.max_error_rate + EPSILON:
        failures.append(f"error rate {rate:.1%} is over the limit of {plan.max_error_rate:.1%} "
                        f"({window.errors} of {window.requests} requests)")
    if plan.max_p95_ms is not None and window.p95_ms is not None and window.p95_ms > plan.max_p95_ms:
        failures.append(f"p95 latency {window.p95_ms:g} ms is over the limit of {plan.max_p95_ms} ms")
    if failures:
        return Analysis("fail", tuple(failures), metrics)
    if plan.max_p95_ms is not None and window.p95_ms is None:
        return Analysis("inconclusive", ("the monitor reported no p95 latency to compare with the limit of "
                                         f"{plan.max_p95_ms} ms",), metrics)
    return Analysis("pass", (f"error rate {rate:.1%} over {window.requests} requests is within the limit",),
                    metrics)


def decide_inconclusive(analysis: Analysis, waited_intervals: int, plan: DeployPlan) -> StepOutcome:
    """What a step does with its analysis: a pass or fail stands; an inconclusive step waits one more
    interval, then counts as pass or hold as `plan.inconclusive` says."""
    if analysis.verdict != "inconclusive":
        return analysis.verdict
    if waited_intervals < 1:
        return "wait"
    return "pass" if plan.inconclusive == "pass" else "hold"


def compare_to_baseline(new: HealthWindow, old: HealthWindow, plan: DeployPlan) -> tuple[str, ...]:
    """Why the new version looks worse than the old one over the same window; () when it does not,
    or when either side has too few requests to compare."""
    if min(new.requests, old.requests) < plan.min_requests or new.errors > new.requests:
        return ()
    reasons = []
    new_rate, old_rate = new.errors / new.requests, old.errors / old.requests
    # Worse means clearly worse: at least double the old rate and one point more.
    if new_rate > max(2 * old_rate, old_rate + 0.01) + EPSILON:
        reasons.append(f"error rate {new_rate:.1%} against {old_rate:.1%} on the serving version")
    if new.p95_ms is not None and old.p95_ms is not None and new.p95_ms > 1.5 * old.p95_ms + 50:
        reasons.append(f"p95 latency {new.p95_ms:g} ms against {old.p95_ms:g} ms on the serving version")
    return tuple(reasons)
