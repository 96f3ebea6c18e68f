"""DORA's four keys and the delivery figures, as pure arithmetic over first-party records.

Nothing here reads a clock, the environment or Firestore. The shell reads `deployments/{id}`,
`incidents/{id}`, the first commit time of each deployed change, CI runs and the coverage baselines,
fills the dataclasses below (`deployment_from_release_doc` and `incident_from_doc` map the stored
documents) and passes a `Window` and `now` in.

Definitions (each chosen so a figure means one thing, and documented where it is computed):

- A deploy *reaches production* when its release first serves production traffic: its first canary
  step, or the 100% watch window when there is nothing to split with. That moment, `deployed_at`,
  places a deploy in a window. A release that stopped before any traffic moved (a failed build or
  smoke test, a cancel) is not a production deploy and is only counted as `stopped_before_production`.
- *Deployment frequency* counts the production deploys of the window that went on to succeed (reached
  `succeeded`, even if a human rolled them back later): DORA's "successful production deploys".
- *Lead time for changes* is `deployed_at` minus the first commit time of the change (the shell maps
  the deployed sha to the earliest commit of its pull request), over the same successful deploys.
- *Change failure rate* is, over the window's production deploys whose outcome is known, those that
  failed: rolled back, failed while serving traffic, or named by an incident (`release_id`), each
  counted once. A deploy still in canary or watching is `in_progress`, in neither side of the rate.
  A rollback or incident of a deploy from before the window does not count in this window.
- *Time to restore* is an incident's close minus its open, over the incidents closed in the window;
  an incident still open at the window's end is listed as open (with its age), never as restored.

Facts are taken as known at `now`: anything stamped after `now` has not happened yet. The window's
effective end is `min(window.end, now)`, so a dashboard can ask for "today so far".

Clock skew: an interval that comes out negative (an incident closed before it opened, a first commit
after the deploy) is excluded from the figure and counted in its `skewed` field, so one corrupt record
cannot stop the daily metrics; a number handed in directly that is NaN, infinite or negative (a
duration to band, a coverage percentage, a cost) is refused with `MetricsInputError`.

Attribution: every figure has a `by_actor` split into "agent" and "human" (`actor_kind`), by the
author of the deployed pull request. Counts in the split add up to the total; incidents that name no
known deploy are counted in `unattributed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from shared.audit import SYSTEM_ACTORS
from shared.errors import InvalidInput

ActorKind = Literal["agent", "human"]
AGENT: ActorKind = "agent"
HUMAN: ActorKind = "human"
ACTOR_KINDS: tuple[ActorKind, ...] = (AGENT, HUMAN)

ELITE, HIGH, MEDIUM, LOW, NO_DATA = "elite", "high", "medium", "low", "no data"
BANDS = (ELITE, HIGH, MEDIUM, LOW)  # best first; NO_DATA is not a band

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY  # "a month" in DORA's bands

# ---- DORA's performance bands --------------------------------------------------------------------
#
# Source: DORA, "Accelerate State of DevOps Report 2023", chapter "How do you compare?", the table of
# software delivery performance levels (https://dora.dev/research/2023/dora-report/; summarised in
# https://octopus.com/blog/software-delivery-performance-clusters-2023):
#
#   level   deployment frequency               change lead time        change failure  failed deployment
#                                                                              rate            recovery time
#   elite   on demand (multiple deploys a day) less than one day       5%              less than one hour
#   high    once a day to once a week          one day to one week     10%             less than one day
#   medium  once a week to once a month        one week to one month   15%             one day to one week
#   low     once a week to once a month        one week to one month   64%             one month to six months
#
# ("X to Y" stands for the report's "between X and Y".)
#
# The table describes clusters, not cut-offs, so turning it into thresholds takes three readings:
# - A value gets the best level whose range holds it, boundaries included where the words say
#   "between" and excluded where they say "less than" or "multiple". In 2023 the low cluster's
#   frequency and lead time are worded like medium's, so they never decide "low": a value beyond every
#   range (deploys rarer than monthly, a lead time over a month, a recovery over a week) is low.
# - The failure rates are the clusters' typical values, read as upper bounds: at most 5% is elite,
#   at most 10% high, at most 15% medium, above 15% low.
# - Frequency is banded on the mean interval between successful deploys (window days / deploys):
#   under a day is elite, up to a week high, up to 30 days medium, longer low. Lead time is banded on
#   its median, recovery on the median time to restore.
# The bands mean most over a week or a month; a one-day window carries them for the record.


class MetricsInputError(InvalidInput, ValueError):
    """A figure handed in is not a number a metric can use: NaN, infinite, negative or out of range."""


def check_number(value: float, what: str, upper: float | None = None) -> float:
    """`value` as a float, refused when it is not a finite non-negative number (or above `upper`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricsInputError(f"{what} must be a number, not {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise MetricsInputError(f"{what} must be a finite number, not {number}")
    if number < 0:
        raise MetricsInputError(f"{what} must not be negative, not {number:g}")
    if upper is not None and number > upper:
        raise MetricsInputError(f"{what} must be at most {upper:g}, not {number:g}")
    return number


def frequency_band(deploys: int, days: float) -> str:
    """The band of `deploys` successful deploys over `days` days; NO_DATA without a deploy."""
    if isinstance(deploys, bool) or not isinstance(deploys, int) or deploys < 0:
        raise MetricsInputError(f"a deploy count must be a non-negative integer, not {deploys!r}")
    days = check_number(days, "a window's length in days")
    if deploys == 0 or days == 0:
        return NO_DATA
    interval = days / deploys
    if interval < 1:
        return ELITE
    if interval <= 7:
        return HIGH
    if interval <= 30:
        return MEDIUM
    return LOW


def lead_time_band(seconds: float | None) -> str:
    if seconds is None:
        return NO_DATA
    seconds = check_number(seconds, "a lead time in seconds")
    if seconds < DAY:
        return ELITE
    if seconds <= WEEK:
        return HIGH
    if seconds <= MONTH:
        return MEDIUM
    return LOW


def change_failure_band(failed: int, deploys: int) -> str:
    """The band of `failed` failed changes among `deploys`, on integers so 1 in 20 is exactly 5%."""
    for name, count in (("failed", failed), ("deploys", deploys)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise MetricsInputError(f"{name} must be a non-negative integer, not {count!r}")
    if failed > deploys:
        raise MetricsInputError(f"{failed} failed changes cannot come from {deploys} deploys")
    if deploys == 0:
        return NO_DATA
    if failed * 100 <= 5 * deploys:
        return ELITE
    if failed * 100 <= 10 * deploys:
        return HIGH
    if failed * 100 <= 15 * deploys:
        return MEDIUM
    return LOW


def restore_band(seconds: float | None) -> str:
    if seconds is None:
        return NO_DATA
    seconds = check_number(seconds, "a time to restore in seconds")
    if seconds < HOUR:
        return ELITE
    if seconds < DAY:
        return HIGH
    if seconds <= WEEK:
        return MEDIUM
    return LOW


def band_rank(band: str) -> int | None:
    """0 for elite up to 3 for low; None for NO_DATA or anything else."""
    return BANDS.index(band) if band in BANDS else None


# ---- actors ---------------------------------------------------------------------------------------


def is_bot(login: str) -> bool:
    """A GitHub App or bot account: `<slug>[bot]`."""
    return login.lower().endswith("[bot]")


def actor_kind(actor: str, app_login: str = "") -> ActorKind:
    """"agent" for the system's own actors, "human" for everyone else.

    The system's own actors are `shared.audit`'s: the agents by name (`code`, `test`...), the
    orchestrator and the functions (`code_agent`, `github_webhook`...): exactly the actors audit gives
    a chain of their own, while everyone audit chains as `people` is human here. On GitHub the agents
    act as the App, so the App's own login (`app_login`, like `agentops[bot]`) is an agent too.
    Humans appear as `@alice` (chat commands), `operator alice` (the CLI), `alice` or `alice,bob`
    (the approvers of a grant). Other bots (`dependabot[bot]`) are not our agents, so they count as
    "human" here; `is_bot` tells them apart where a bot must not pass for a reviewer.
    """
    if actor in SYSTEM_ACTORS:
        return AGENT
    if app_login and actor.lower() == app_login.lower():
        return AGENT
    return HUMAN


# ---- time -----------------------------------------------------------------------------------------


def utc(moment: datetime) -> datetime:
    """`moment` in UTC as a plain datetime; a naive one is taken as UTC, as Firestore does."""
    if not isinstance(moment, datetime):
        raise MetricsInputError(f"expected a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                    moment.microsecond, tzinfo=UTC)


def maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


@dataclass(frozen=True)
class Window:
    """A half-open span of time, [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.end <= self.start:
            raise MetricsInputError(f"a window must end after it starts: {self.start} to {self.end}")

    def until(self, now: datetime) -> Window:
        """This window as known at `now`: it ends at `now` if that comes first."""
        now = utc(now)
        if now <= self.start:
            raise MetricsInputError(f"nothing of the window starting {self.start} is known at {now}")
        return self if now >= self.end else Window(self.start, now)

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= utc(moment) < self.end

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def days(self) -> float:
        return self.seconds / DAY


def day_window(day: date) -> Window:
    """The UTC day `day`: the window of `metrics/{YYYY-MM-DD}`."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def week_window(monday: date) -> Window:
    start = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    return Window(start, start + timedelta(days=7))


# ---- statistics ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; None when empty.

    The 50th is the median (the mean of the two middle values for an even count).
    """
    q = check_number(q, "a percentile", upper=100)
    ordered = sorted(check_number(value, "a duration") for value in values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def ratio(part: int | float, whole: int | float) -> float | None:
    """part / whole, None when whole is zero: never a division by zero."""
    return None if not whole else part / whole


# ---- records ---------------------------------------------------------------------------------------


def dig(doc: Any, *path: str) -> Any:
    """`doc[path[0]][path[1]]...` of a stored document, or None where a step is missing or not a map."""
    for key in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


# Release states, as `functions.deploy_agent.release` names them.
SUCCEEDED = "succeeded"
ROLLING_BACK = "rolling_back"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
CANCELLED = "cancelled"
SERVING = frozenset({"canary", "watching"})  # the states in which a new version first takes traffic


@dataclass(frozen=True)
class Deployment:
    """One release (`deployments/{id}`), reduced to the moments the metrics need.

    `deployed_at`: when it first served production traffic, None if it never did. `succeeded_at`:
    when it was declared live. `failed_at`: when a deploy that reached production failed: its rollback
    started, or it failed while serving traffic (a first deploy has nothing to roll back to).
    `stopped_at`: when a release that never served traffic ended (failed before traffic, cancelled).
    `author`: the deployed pull request's author (the App's login or an agent name for the code
    agent's), or whoever started a deploy without one.
    """

    id: str
    repository: str
    service: str
    sha: str
    state: str
    started_at: datetime
    deployed_at: datetime | None = None
    succeeded_at: datetime | None = None
    failed_at: datetime | None = None
    stopped_at: datetime | None = None
    pull_number: int = 0
    author: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", utc(self.started_at))
        for name in ("deployed_at", "succeeded_at", "failed_at", "stopped_at"):
            object.__setattr__(self, name, maybe_utc(getattr(self, name)))


@dataclass(frozen=True)
class Incident:
    """One incident (`incidents/{id}`): kind `outage` (the monitor) or `rollback` (the deploy agent)."""

    id: str
    repository: str
    service: str
    kind: str
    opened_at: datetime
    closed_at: datetime | None = None
    release_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "opened_at", utc(self.opened_at))
        object.__setattr__(self, "closed_at", maybe_utc(self.closed_at))


@dataclass(frozen=True)
class CiRun:
    """A finished CI workflow run on the default branch (not stored yet: the scout reads them)."""

    conclusion: str
    finished_at: datetime
    repository: str = ""
    actor: str = ""  # whose change it built: the pull request's author, or the pusher

    def __post_init__(self) -> None:
        object.__setattr__(self, "finished_at", utc(self.finished_at))


@dataclass(frozen=True)
class CoverageSample:
    """The default branch's line coverage (percent) as a baseline recorded it, and whose merge moved it."""

    at: datetime
    line_rate: float
    repository: str = ""
    actor: str = ""
    sha: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", utc(self.at))
        object.__setattr__(self, "line_rate", check_number(self.line_rate, "a coverage percentage", 100))


def _state_of(step: str) -> str:
    """The state in a timeline entry's step label: "canary 10%" is canary."""
    return str(step or "").split(" ", 1)[0]


def deployment_from_release_doc(doc: Mapping[str, Any], author: str = "") -> Deployment:
    """A `deployments/{id}` document (`functions.deploy_agent.store.release_doc`) as a Deployment.

    Each timeline entry records the step a decision was taken in; the state it moved to is the next
    entry's step, or the release's state for the last one. The first move into canary or watching is
    `deployed_at`, into succeeded `succeeded_at`; the first into rolling_back or failed is `failed_at`
    after `deployed_at`, else (and a cancel) `stopped_at`.
    """
    timeline = [entry for entry in doc.get("timeline") or [] if isinstance(entry, Mapping)]
    state = str(doc.get("state") or "")
    after = [_state_of(str(entry.get("step") or "")) for entry in timeline[1:]] + [state]
    moments: dict[str, datetime] = {}
    for entry, target in zip(timeline, after, strict=True):
        at = entry.get("at")
        if not isinstance(at, datetime):
            continue
        if target in SERVING:
            moments.setdefault("deployed", at)
        elif target == SUCCEEDED:
            moments.setdefault("succeeded", at)
            moments.setdefault("deployed", at)  # a timeline that lost its earlier entries
        elif target in (ROLLING_BACK, ROLLED_BACK, FAILED):
            moments.setdefault("failed" if "deployed" in moments else "stopped", at)
        elif target == CANCELLED:
            moments.setdefault("stopped", at)
    started = doc.get("started_at") or doc.get("created_at")
    if not isinstance(started, datetime):
        raise MetricsInputError(f"release {doc.get('id')!r} has no start time")
    return Deployment(
        id=str(doc.get("id") or ""), repository=str(doc.get("repository") or ""),
        service=str(doc.get("service") or ""), sha=str(doc.get("sha") or ""), state=state,
        started_at=started, deployed_at=moments.get("deployed"), succeeded_at=moments.get("succeeded"),
        failed_at=moments.get("failed"), stopped_at=moments.get("stopped"),
        pull_number=int(doc.get("pull_number") or 0), author=author,
    )


def incident_from_doc(doc: Mapping[str, Any]) -> Incident:
    """An `incidents/{id}` document (`functions.monitor_agent.store._incident_doc`) as an Incident.

    The stored `duration_seconds` is not used: it is clamped at zero, which would hide a clock skew.
    """
    opened = doc.get("opened_at")
    if not isinstance(opened, datetime):
        raise MetricsInputError(f"incident {doc.get('incident_id')!r} has no open time")
    closed = doc.get("closed_at")
    return Incident(
        id=str(doc.get("incident_id") or ""), repository=str(doc.get("repository") or ""),
        service=str(doc.get("service") or ""), kind=str(doc.get("kind") or ""), opened_at=opened,
        closed_at=closed if isinstance(closed, datetime) else None,
        release_id=str(doc.get("release_id") or ""),
    )


# ---- results ---------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A result as Firestore-ready plain data: dataclasses become maps, tuples lists.

    An empty `by_actor` (the split inside a split) is left out.
    """
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        for item in fields(value):
            content = getattr(value, item.name)
            if item.name == "by_actor" and not content:
                continue
            out[item.name] = plain(content)
        return out
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return utc(value)
    return value


@dataclass(frozen=True)
class Frequency:
    deploys: int  # successful production deploys
    production_deploys: int  # every deploy that reached production, whatever became of it
    stopped_before_production: int  # releases that ended before any traffic moved
    per_day: float
    per_week: float
    band: str
    by_actor: Mapping[str, Frequency] = field(default_factory=dict)


@dataclass(frozen=True)
class LeadTime:
    changes: int
    median_seconds: float | None
    p90_seconds: float | None
    band: str
    unknown_commit: int = 0  # successful deploys whose first commit time was not given
    skewed: int = 0  # first commit after the deploy: excluded
    by_actor: Mapping[str, LeadTime] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeFailureRate:
    deploys: int  # production deploys with a known outcome
    failed: int
    in_progress: int
    rate: float | None
    band: str
    by_actor: Mapping[str, ChangeFailureRate] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenIncident:
    incident_id: str
    repository: str
    service: str
    kind: str
    opened_at: datetime
    age_seconds: float


@dataclass(frozen=True)
class TimeToRestore:
    restored: int
    open: int
    median_seconds: float | None
    p90_seconds: float | None
    mean_seconds: float | None
    band: str
    skewed: int = 0  # closed before it opened: excluded
    unattributed: int = 0  # restored or open incidents that name no known deploy
    open_incidents: tuple[OpenIncident, ...] = ()
    by_actor: Mapping[str, TimeToRestore] = field(default_factory=dict)


@dataclass(frozen=True)
class Dora:
    deployment_frequency: Frequency
    lead_time: LeadTime
    change_failure_rate: ChangeFailureRate
    time_to_restore: TimeToRestore

    def to_doc(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class ServiceDora:
    service: str
    dora: Dora

    def to_doc(self) -> dict[str, Any]:
        return {"service": self.service, **self.dora.to_doc()}


@dataclass(frozen=True)
class RepositoryDora:
    repository: str
    dora: Dora
    services: tuple[ServiceDora, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"repository": self.repository, **self.dora.to_doc(),
                "services": [service.to_doc() for service in self.services]}


@dataclass(frozen=True)
class DoraReport:
    all: Dora
    repositories: tuple[RepositoryDora, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"all": self.all.to_doc(), "repositories": [repo.to_doc() for repo in self.repositories]}


# ---- the arithmetic --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Deployed:
    """A production deploy of the window and what became of it by `now`."""

    deployment: Deployment
    kind: ActorKind
    succeeded: bool
    failed: bool


def _known(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment <= now


def _production(deployments: Sequence[Deployment], incidents: Sequence[Incident], span: Window,
                now: datetime, app_login: str) -> list[_Deployed]:
    blamed = {incident.release_id for incident in incidents if incident.release_id
              and incident.opened_at <= now}
    out = []
    for deployment in deployments:
        if deployment.deployed_at is None or deployment.deployed_at not in span:
            continue
        failed = _known(deployment.failed_at, now) or deployment.id in blamed
        succeeded = _known(deployment.succeeded_at, now)
        out.append(_Deployed(deployment, actor_kind(deployment.author, app_login), succeeded, failed))
    return out


def _frequency(deployed: Sequence[_Deployed], stopped: Sequence[ActorKind], span: Window,
               split: bool) -> Frequency:
    successes = sum(1 for item in deployed if item.succeeded)
    per_day = successes / span.days
    by_actor = {kind: _frequency([item for item in deployed if item.kind == kind],
                                 [other for other in stopped if other == kind], span, False)
                for kind in ACTOR_KINDS} if split else {}
    return Frequency(successes, len(deployed), len(stopped), per_day, per_day * 7,
                     frequency_band(successes, span.days), by_actor)


def _lead_time(deployed: Sequence[_Deployed], first_commits: Mapping[str, datetime],
               split: bool) -> LeadTime:
    durations, unknown, skewed = [], 0, 0
    for item in deployed:
        if not item.succeeded:
            continue
        first = first_commits.get(item.deployment.sha)
        if first is None:
            unknown += 1
            continue
        deployed_at = item.deployment.deployed_at
        assert deployed_at is not None  # a production deploy has one
        seconds = (deployed_at - utc(first)).total_seconds()
        if seconds < 0:
            skewed += 1
            continue
        durations.append(seconds)
    middle = median(durations)
    by_actor = {kind: _lead_time([item for item in deployed if item.kind == kind], first_commits, False)
                for kind in ACTOR_KINDS} if split else {}
    return LeadTime(len(durations), middle, percentile(durations, 90), lead_time_band(middle), unknown,
                    skewed, by_actor)


def _change_failure(deployed: Sequence[_Deployed], split: bool) -> ChangeFailureRate:
    failed = sum(1 for item in deployed if item.failed)
    known = sum(1 for item in deployed if item.failed or item.succeeded)
    by_actor = {kind: _change_failure([item for item in deployed if item.kind == kind], False)
                for kind in ACTOR_KINDS} if split else {}
    return ChangeFailureRate(known, failed, len(deployed) - known, ratio(failed, known),
                             change_failure_band(failed, known), by_actor)


def _restore(incidents: Sequence[Incident], kinds: Mapping[str, ActorKind], span: Window,
             split: bool) -> TimeToRestore:
    durations, skewed, unattributed, open_ = [], 0, 0, []
    for incident in incidents:
        closed = incident.closed_at
        if closed is not None and closed in span:
            seconds = (closed - incident.opened_at).total_seconds()
            if seconds < 0:
                skewed += 1
                continue
            durations.append(seconds)
        elif incident.opened_at < span.end and (closed is None or closed >= span.end):
            open_.append(OpenIncident(incident.id, incident.repository, incident.service, incident.kind,
                                      incident.opened_at, (span.end - incident.opened_at).total_seconds()))
        else:
            continue
        if incident.release_id not in kinds:
            unattributed += 1
    open_.sort(key=lambda item: (item.opened_at, item.incident_id))
    if not split:
        open_listed: tuple[OpenIncident, ...] = ()  # the split counts them; the total lists them
    else:
        open_listed = tuple(open_)
    middle = median(durations)
    mean = sum(durations) / len(durations) if durations else None
    by_actor = {kind: _restore([incident for incident in incidents if kinds.get(incident.release_id) == kind],
                               kinds, span, False)
                for kind in ACTOR_KINDS} if split else {}
    return TimeToRestore(len(durations), len(open_), middle, percentile(durations, 90), mean,
                         restore_band(middle), skewed, unattributed, open_listed, by_actor)


def four_keys(deployments: Iterable[Deployment], incidents: Iterable[Incident],
              first_commits: Mapping[str, datetime], window: Window, now: datetime, app_login: str = "",
              all_deployments: Iterable[Deployment] | None = None) -> Dora:
    """The four keys over one set of deploys and incidents (one scope: everything, a repo, a service).

    `all_deployments` (default: `deployments`) is where an incident's `release_id` is looked up for
    its attribution, so an incident of a deploy from before the window is still attributed.
    """
    now = utc(now)
    span = window.until(now)
    deployments, incidents = list(deployments), list(incidents)
    lookup = deployments if all_deployments is None else list(all_deployments)
    kinds = {item.id: actor_kind(item.author, app_login) for item in lookup}
    deployed = _production(deployments, incidents, span, now, app_login)
    stopped = [actor_kind(item.author, app_login) for item in deployments
               if item.deployed_at is None and item.stopped_at is not None and item.stopped_at in span]
    return Dora(_frequency(deployed, stopped, span, True), _lead_time(deployed, first_commits, True),
                _change_failure(deployed, True), _restore(incidents, kinds, span, True))


def _grouped(items: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def dora_report(deployments: Iterable[Deployment], incidents: Iterable[Incident],
                first_commits: Mapping[str, datetime], window: Window, now: datetime,
                app_login: str = "") -> DoraReport:
    """DORA over everything, per repository and per service of each repository, sorted by name.

    Pass every deploy the window's incidents may name (a few weeks back), not only the window's: a
    deploy outside the window counts nowhere but lets its incidents be attributed.
    """
    deployments, incidents = list(deployments), list(incidents)
    by_repo = _grouped(deployments, lambda item: item.repository)
    incidents_by_repo = _grouped(incidents, lambda item: item.repository)
    repositories = []
    for repository in sorted(set(by_repo) | set(incidents_by_repo)):
        repo_deploys, repo_incidents = by_repo.get(repository, []), incidents_by_repo.get(repository, [])
        by_service = _grouped(repo_deploys, lambda item: item.service)
        incidents_by_service = _grouped(repo_incidents, lambda item: item.service)
        services = tuple(
            ServiceDora(service, four_keys(by_service.get(service, []), incidents_by_service.get(service, []),
                                           first_commits, window, now, app_login, deployments))
            for service in sorted(set(by_service) | set(incidents_by_service)))
        scoped = four_keys(repo_deploys, repo_incidents, first_commits, window, now, app_login, deployments)
        repositories.append(RepositoryDora(repository, scoped, services))
    overall = four_keys(deployments, incidents, first_commits, window, now, app_login)
    return DoraReport(overall, tuple(repositories))


# ---- delivery: builds and coverage -----------------------------------------------------------------

# A run's verdict on the build. Unlike the test agent's gates (where a cancelled required check
# blocks), a cancelled, skipped, neutral or stale run says nothing about whether the code builds (a
# newer push usually cancelled it), so it is left out of the rate and counted as `excluded`.
BUILD_PASSED = frozenset({"success"})
BUILD_FAILED = frozenset({"failure", "timed_out", "startup_failure", "action_required"})


@dataclass(frozen=True)
class BuildStats:
    runs: int
    succeeded: int
    failed: int
    excluded: int
    success_rate: float | None
    last_success_at: datetime | None = None  # the latest green at or before the window's end
    since_last_success_seconds: float | None = None
    by_actor: Mapping[str, BuildStats] = field(default_factory=dict)


def build_stats(runs: Iterable[CiRun], window: Window, now: datetime, app_login: str = "",
                split: bool = True) -> BuildStats:
    """The build success rate of the runs that finished in the window (success / success + failure)."""
    span = window.until(now)
    runs = [run for run in runs if run.finished_at < span.end]
    inside = [run for run in runs if run.finished_at in span]
    succeeded = sum(1 for run in inside if run.conclusion.lower() in BUILD_PASSED)
    failed = sum(1 for run in inside if run.conclusion.lower() in BUILD_FAILED)
    greens = [run.finished_at for run in runs if run.conclusion.lower() in BUILD_PASSED]
    last = max(greens) if greens else None
    by_actor = {kind: build_stats([run for run in runs if actor_kind(run.actor, app_login) == kind],
                                  window, now, app_login, False)
                for kind in ACTOR_KINDS} if split else {}
    return BuildStats(len(inside), succeeded, failed, len(inside) - succeeded - failed,
                      ratio(succeeded, succeeded + failed), last,
                      None if last is None else (span.end - last).total_seconds(), by_actor)


FLAT_POINTS = 0.01  # a coverage change smaller than this (in percentage points) is flat


@dataclass(frozen=True)
class CoverageChange:
    samples: int
    change_points: float


@dataclass(frozen=True)
class CoverageStats:
    latest: float | None  # percent, the last baseline before the window's end
    latest_at: datetime | None
    start: float | None  # the last baseline before the window, else its first one
    change_points: float | None  # latest - start
    trend: str | None  # "up", "down", "flat"; None without two baselines to compare
    samples: int  # baselines recorded in the window
    by_actor: Mapping[str, CoverageChange] = field(default_factory=dict)


def coverage_stats(samples: Iterable[CoverageSample], window: Window, now: datetime,
                   app_login: str = "") -> CoverageStats:
    """Coverage of one repository's default branch: its latest value and how the window moved it.

    Each baseline's step from the one before is credited to the author of the merge that recorded it,
    so the agent's and the humans' `change_points` add up to the window's change.
    """
    span = window.until(now)
    known = sorted((sample for sample in samples if sample.at < span.end), key=lambda sample: sample.at)
    if not known:
        return CoverageStats(None, None, None, None, None, 0,
                             {kind: CoverageChange(0, 0.0) for kind in ACTOR_KINDS})
    before = [sample for sample in known if sample.at < span.start]
    inside = [sample for sample in known if sample.at >= span.start]
    base = before[-1] if before else inside[0]
    steps = inside if before else inside[1:]
    credit = {kind: [0, 0.0] for kind in ACTOR_KINDS}
    previous = base
    for sample in steps:
        kind = actor_kind(sample.actor, app_login)
        credit[kind][0] += 1
        credit[kind][1] += sample.line_rate - previous.line_rate
        previous = sample
    latest = known[-1]
    # With a baseline from before the window, a window without a new one did not move: flat.
    change = latest.line_rate - base.line_rate if before or steps else None
    trend = (None if change is None else "flat" if abs(change) < FLAT_POINTS
             else "up" if change > 0 else "down")
    return CoverageStats(latest.line_rate, latest.at, base.line_rate, change, trend, len(inside),
                         {kind: CoverageChange(int(count), float(points)) for kind, (count, points)
                          in credit.items()})


@dataclass(frozen=True)
class RepositoryDelivery:
    repository: str
    build: BuildStats
    coverage: CoverageStats


@dataclass(frozen=True)
class Delivery:
    build: BuildStats
    repositories: tuple[RepositoryDelivery, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return plain(self)


def delivery(runs: Iterable[CiRun], coverage: Iterable[CoverageSample], window: Window, now: datetime,
             app_login: str = "") -> Delivery:
    """Builds over everything and, per repository, builds and coverage (coverage has no total)."""
    runs, coverage = list(runs), list(coverage)
    runs_by_repo = _grouped(runs, lambda run: run.repository)
    coverage_by_repo = _grouped(coverage, lambda sample: sample.repository)
    repositories = tuple(
        RepositoryDelivery(repository, build_stats(runs_by_repo.get(repository, []), window, now, app_login),
                           coverage_stats(coverage_by_repo.get(repository, []), window, now, app_login))
        for repository in sorted(set(runs_by_repo) | set(coverage_by_repo)))
    return Delivery(build_stats(runs, window, now, app_login), repositories)
