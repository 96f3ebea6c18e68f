"""The repo scout's rate-limit economy: stop politely before an installation's budget runs out. Pure.

A scan tick walks the installation's repositories in `resume_order` (a stable order, starting where the
previous tick stopped). Before each repository (or once, for a batch) the shell calls `budget_stop`
with the installation token's latest rate-limit headers (`x-ratelimit-remaining`, `-reset`, `-limit`).
The decision says how many of the repositories left fit in the budget while `reserve_fraction` of the
hourly limit stays for the other agents (webhook-driven work is more urgent than a health scan), and
the cursor where the next tick resumes. A stopped scan is not an error: the shell records the cursor
and acknowledges; the next tick (every four hours) carries on, after the budget has been reset.

Once `reset_at` is past, the remaining count the shell holds is stale: the whole limit is available.
Conditional requests answered 304 do not count against the primary rate limit, which is why an
unchanged repository costs close to nothing; `cost_estimate` turns measured per-repository costs into
the next estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.errors import InvalidInput

DEFAULT_LIMIT = 5_000  # an installation's hourly REST budget, at the least
FIRST_SCAN_COST = 40  # calls for a repository scanned for the first time, before any measurement
RECENT_COSTS = 20


@dataclass(frozen=True)
class BudgetDecision:
    stop: bool  # True: scan `scan_now` repositories, then stop until the next tick
    scan_now: int  # how many of the repositories left fit in the budget now
    cursor: str | None  # the first repository not scanned now: the next tick resumes there
    usable: int  # calls left above the reserve
    reason: str


def budget_stop(remaining: int, reset_at: datetime, repos_left: Sequence[str], cost_per_repo_estimate: float,
                reserve_fraction: float, *, now: datetime, limit: int = DEFAULT_LIMIT) -> BudgetDecision:
    """How many of `repos_left` to scan before the budget reaches the reserve; see the module docstring."""
    if not 0 <= reserve_fraction < 1:
        raise InvalidInput(f"reserve_fraction {reserve_fraction!r} must be in [0, 1)")
    if not math.isfinite(cost_per_repo_estimate) or cost_per_repo_estimate < 0:
        raise InvalidInput(f"cost_per_repo_estimate {cost_per_repo_estimate!r} must be a non-negative number")
    if limit < 1:
        raise InvalidInput(f"rate limit {limit!r} must be positive")
    if _utc(reset_at) <= _utc(now):
        remaining = limit  # the window has been reset since these numbers were read
    reserve = math.ceil(reserve_fraction * limit)
    usable = max(int(remaining), 0) - reserve
    cost = max(math.ceil(cost_per_repo_estimate), 1)
    fits = min(max(usable, 0) // cost, len(repos_left))
    if fits >= len(repos_left):
        return BudgetDecision(False, len(repos_left), None, usable,
                              f"{len(repos_left)} repositories at about {cost} calls each fit in "
                              f"{usable} calls")
    when = f"{_utc(reset_at):%H:%M} UTC"
    return BudgetDecision(True, fits, repos_left[fits], usable,
                          f"{fits} of {len(repos_left)} repositories fit: {max(remaining, 0)} calls remain, "
                          f"{reserve} are kept in reserve, about {cost} per repository; the budget resets at "
                          f"{when} and the next tick resumes at {repos_left[fits]}")


def resume_order(repos: Iterable[str], cursor: str | None) -> list[str]:
    """The repositories sorted, starting at `cursor` (or the first after it, if it is gone) and wrapping.

    Every repository gets its turn even when each tick is stopped early.
    """
    ordered = sorted(set(repos), key=lambda name: (name.lower(), name))
    if not cursor:
        return ordered
    key = (cursor.lower(), cursor)
    start = next((index for index, name in enumerate(ordered) if (name.lower(), name) >= key), 0)
    return ordered[start:] + ordered[:start]


def cost_estimate(recent_costs: Sequence[int], first_scan_cost: int = FIRST_SCAN_COST) -> int:
    """The calls to expect for the next repository: the most of the recent measured ones (conservative).

    Without measurements, `first_scan_cost`: the first scan has no ETags to send yet.
    """
    recent = [max(int(cost), 0) for cost in recent_costs[-RECENT_COSTS:]]
    return max(recent) if recent else first_scan_cost


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
