"""The monitor agent: every minute, probe production, keep the SLOs, run one incident per outage, and
measure the releases in flight.

Kind `probe_production`: the scheduler's tick (repository "", installation 0), one task per minute.
A tick:

1. reads the service registry (`MonitorStore.services`, written by the deploy agent) and the active
   releases (`deployments` with `active == True`);
2. probes, concurrently and with bounded timeouts, every health check of every enabled service's
   production URL, and of every release in canary, watching or rolling back at its version URL;
3. per service, one after the other: folds the checks into one probe (`slo.combine`) counted in the
   hour's bucket, evaluates the SLOs over the service's window, and runs `incidents.decide`. The new
   state is written in one transaction with the incident record and the effects it asks for (an
   outbox, `pending`), then the effects are carried out and leave the outbox: open ONE incident
   issue (labelled `incident`, mentioning the configured team), edit it in place, close it with its
   duration and a closing comment on recovery, tell Slack on open and close;
4. per release, writes `deployments/{id}/health/{minute}` with what its version answered and, when
   the production service of the release is failing its probes, the reason in `breach`: the deploy
   agent's state machine decides on rollback, not the monitor;
5. succeeds with `details.wake` naming `release:<id>` for every active release, so the orchestrator
   wakes the deploy tasks to read what was measured.

Time is the tick's minute (`ctx.now()` without seconds): every probe of a tick carries it, so a
redelivered tick is the same minute and counts nowhere twice (the bucket knows its minutes, `decide`
ignores a probe no newer than the last, a release's minute document is written once, every GitHub
write and Slack message has a stable key). An incident's keys derive from its id (repository,
service, the minute it opened), not from the tick's task, so no retry of any tick opens a second
issue; before creating one, the open incident's issue is looked for by its hidden id marker, in case
a lost response hid an earlier success.

Errors, and what becomes of them:
- a service that does not answer, refuses, times out or answers wrongly is a failed probe: data;
- the tick-wide reads (the registry, the active releases) failing raise RetryableError: nothing
  was done yet, and Pub/Sub's redelivery is the same minute;
- one service's Firestore write failing skips that service for this minute (a gap in its series,
  never a double count) and is reported in the summary; only when every service failed so (the
  database is down) does the tick raise RetryableError for a redelivery;
- a GitHub or Slack error that may pass (5xx, rate limit, timeout) leaves the effect in the
  service's outbox: the next tick, a minute later, carries it out. It is not raised, so the other
  services and the releases' wake-ups are not held up by it;
- a GitHub refusal (forbidden, gone, invalid) is audited by the executor, dropped from the outbox and
  reported; the other services go on. A refused issue leaves the incident without one: it is still
  recorded for MTTR and Slack still hears of it;
- a malformed registration, or a bug in handling one service, skips that service (logged) and is
  reported; the others go on.

A paused repository (`stop_reason`, when given) is skipped whole: not probed, nothing written.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.monitor_agent import slo
from functions.monitor_agent.incidents import (
    INCIDENT_LABELS,
    CloseIncident,
    MonitorState,
    OpenIncident,
    ReportBreach,
    UpdateIncident,
    decide,
    format_duration,
    neutralise,
)
from functions.monitor_agent.probe import check_url, new_session, probe, timeout_for
from functions.monitor_agent.store import (
    BUCKET_RETENTION_MARGIN,
    DEFAULT_CHECKS,
    OUTAGE,
    MonitorStore,
    RegisteredService,
    Settled,
    incident_id,
    minute_id,
)
from shared.agent_runtime import SUCCEEDED, Outcome, TaskContext
from shared.errors import InvalidInput, PermanentError, RetryableError
from shared.executor import CreateIssue, PostComment, UpdateIssue
from shared.github.issues import find_issue_by_marker
from shared.policy import SmokeCheck

log = logging.getLogger("agentops.monitor")

PROBE_KIND = "probe_production"
RELEASE_PROBE_STATES = frozenset({"canary", "watching", "rolling_back"})
MAX_WORKERS = 8
PROBE_TIMEOUT_CAP = 10.0  # seconds; a tick must end well within its minute
MAX_PROBLEMS = 20
MAX_RELEASE_ERRORS = 10
RECENT_HOURS = 2  # the buckets whose kept probes go into an incident's body
ACTOR = "monitor"
_MENTION = re.compile(r"^@[A-Za-z0-9][A-Za-z0-9-]{0,38}(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,99})?$")


def id_marker(incident: str) -> str:
    """The hidden line naming an incident in its issue: finds the issue again after a lost answer."""
    return f"<!-- agent-ops:incident-id:{neutralise(incident, 200)} -->"


def mention_of(text: str) -> str:
    """The configured mention if it is one (`@login`, `@org/team`), else "": never free text."""
    text = text.strip()
    return text if _MENTION.match(text) else ""


@dataclass(frozen=True)
class ServiceResult:
    """What one service's probe of this tick came to: the release health documents quote it."""

    probe: slo.Probe
    state: MonitorState
    breach: str
    report: slo.SloReport | None


class BucketCache:
    """Complete hours of a service's buckets, kept between the ticks a warm instance serves.

    A probe's time is its tick's minute, always in the current hour, so an hour that is over never
    changes: a tick reads only the hours it has not seen, instead of a whole SLO window (720 documents
    for 30 days) every minute. The kept probes (`last`) of an hour are needed only where a window
    starts inside it: they stay on the hours of the burn-rate windows (the last 6 hours, which hold
    the recent probes an incident's body shows too) and go from older ones; the hour the SLO window
    starts inside is read afresh each tick.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[datetime, datetime, dict[datetime, dict[str, Any]]]] = {}

    def window(self, store: MonitorStore, repository: str, service: str, current: Mapping[str, Any],
               start: datetime) -> list[dict[str, Any]]:
        """The buckets of [start, now]: cached complete hours, the window's first hour, `current`."""
        hour = slo.hour_start(current["hour"])
        first = slo.hour_start(start)
        key = (repository, service)
        with self._lock:
            since, through, kept = self._entries.get(key, (first, first, {}))
            kept = dict(kept)
        if since > first or through > hour:  # a longer window, or a clock that went back: start over
            through, kept = first, {}
        if through < hour:
            for doc in store.buckets(repository, service, through, hour):
                kept[slo.hour_start(doc["hour"])] = dict(doc)
        kept = {at: doc for at, doc in kept.items() if first <= at < hour}
        recent = slo.hour_start(current["hour"] - max(slo.BURN_WINDOWS.values()))
        kept = {at: (doc if at >= recent else {**doc, "last": []}) for at, doc in kept.items()}
        with self._lock:
            self._entries[key] = (first, hour, kept)
        docs = dict(kept)
        if first in docs and start > first:
            fresh = store.bucket(repository, service, first)
            if fresh is None:
                docs.pop(first)
            else:
                docs[first] = fresh
        return [docs[at] for at in sorted(docs)] + [dict(current)]


class MonitorAgent:
    name = ACTOR

    def __init__(self, store: Callable[[], MonitorStore], notifier: Callable[[], Any] = lambda: None,
                 session: Callable[[], Any] = new_session, prober: Callable[..., slo.Probe] = probe,
                 stop_reason: Callable[[str], str] | None = None, max_workers: int = MAX_WORKERS) -> None:
        self._store = store  # () -> MonitorStore
        self._notifier = notifier  # () -> SlackNotifier | NullNotifier | None
        self._session = session  # () -> a requests.Session for probes
        self._prober = prober  # probe(url, check, timeout, *, at, session) -> slo.Probe
        self._stop_reason = stop_reason  # repository -> why it is paused, or ""
        self._max_workers = max(1, int(max_workers))
        self.cache = BucketCache()

    def handle(self, ctx: TaskContext) -> Outcome:
        if ctx.task.kind != PROBE_KIND:
            raise InvalidInput(f"the monitor agent does not do {ctx.task.kind}")
        return MonitorTick(self, ctx).run()

    def on_failure(self, ctx: TaskContext, summary: str) -> None:
        """A tick belongs to no repository: its failed result and this log line are the record, and the
        next tick, a minute later, tries again."""
        log.error("monitor tick failed: %s", summary,
                  extra={"task_id": ctx.task.task_id, "outcome": "failed"})


class MonitorTick:
    """One tick: everything it probed, decided and did, for its summary."""

    def __init__(self, agent: MonitorAgent, ctx: TaskContext) -> None:
        self.agent = agent
        self.ctx = ctx
        self.now = ctx.now().astimezone(UTC)
        self.minute = self.now.replace(second=0, microsecond=0)
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        self.deferred: list[str] = []
        self.releases: list[dict[str, Any]] = []  # the active releases, read once per tick
        self._clients: dict[tuple[int, str], Any] = {}
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._sessions_lock = threading.Lock()

    def problem(self, text: str) -> None:
        log.warning("monitor: %s", text, extra={"task_id": self.ctx.task.task_id, "outcome": "problem"})
        self.problems.append(neutralise(text, 300))

    # ---- the tick --------------------------------------------------------------------------

    def run(self) -> Outcome:
        store = self.agent._store()
        docs = store.services()  # these two failing: nothing done yet; the redelivery is this minute
        releases = sorted(store.active_releases(), key=lambda doc: str(doc.get("id")))
        self.releases = releases
        services = self._registered(docs)
        measured = self._releases_to_probe(store, releases, {svc.key: svc for svc in services})
        try:
            probes = self._probe_all(services, measured)
        finally:
            self._close_sessions()
        results: dict[tuple[str, str], ServiceResult] = {}
        store_failures = 0
        for svc in services:
            try:
                results[svc.key] = self._service(store, svc, probes[("service", *svc.key)])
            except RetryableError as exc:
                store_failures += 1
                self.problem(f"{svc.repository} {svc.service}: not recorded this minute: {exc}")
            except Exception:
                log.exception("monitor: service failed", extra={"task_id": self.ctx.task.task_id})
                self.problem(f"{svc.repository} {svc.service}: an internal error; the logs have the details")
        if services and store_failures == len(services):
            raise RetryableError(f"no service's probe could be recorded: {'; '.join(self.problems[:3])}")
        for release, _ in measured:
            try:
                if self._release(store, release, probes[("release", str(release["id"]))], results):
                    self.counts["releases"] += 1
            except RetryableError as exc:
                self.problem(f"release {release['id']}: health not recorded this minute: {exc}")
            except Exception:
                log.exception("monitor: release failed", extra={"task_id": self.ctx.task.task_id})
                self.problem(f"release {release['id']}: an internal error; the logs have the details")
        return self._outcome(len(services), releases)

    def _outcome(self, probed: int, releases: Sequence[Mapping[str, Any]]) -> Outcome:
        counts = self.counts
        summary = (f"probed {probed} service{'s' if probed != 1 else ''}: incidents {counts['opened']} "
                   f"opened, {counts['updated']} updated, {counts['closed']} closed; "
                   f"{counts['releases']} release{'s' if counts['releases'] != 1 else ''} measured")
        if self.deferred:
            summary += f"; {len(self.deferred)} effect(s) wait for the next tick"
        if self.problems:
            summary += f"; {len(self.problems)} problem(s): {self.problems[0]}"
        wake = [f"release:{doc['id']}" for doc in releases]
        return Outcome(SUCCEEDED, summary, details={
            "wake": wake, "minute": minute_id(self.minute), "services": probed, "opened": counts["opened"],
            "updated": counts["updated"], "closed": counts["closed"], "notified": counts["notified"],
            "releases": counts["releases"], "deferred": self.deferred[:MAX_PROBLEMS],
            "problems": self.problems[:MAX_PROBLEMS]})

    def _registered(self, docs: Sequence[Mapping[str, Any]]) -> list[RegisteredService]:
        services = []
        seen = set()
        for doc in docs:
            try:
                svc = RegisteredService.from_doc(doc)
            except InvalidInput as exc:
                self.problem(f"skipped a registered service: {exc}")
                continue
            if not svc.enabled or svc.key in seen:
                continue
            if self.agent._stop_reason is not None:
                stopped = self.agent._stop_reason(svc.repository)
                if stopped:
                    self.counts["paused"] += 1
                    continue
            seen.add(svc.key)
            services.append(svc)
        return sorted(services, key=lambda svc: svc.key)

    # ---- probing ---------------------------------------------------------------------------

    def _releases_to_probe(self, store: MonitorStore, releases: Sequence[Mapping[str, Any]],
                           services: Mapping[tuple[str, str], RegisteredService],
                           ) -> list[tuple[dict[str, Any], tuple[SmokeCheck, ...]]]:
        """The releases whose version is measured this minute, with the checks to run on it."""
        chosen = []
        for release in releases:
            if release.get("state") not in RELEASE_PROBE_STATES:
                continue
            try:
                if store.has_release_health(str(release["id"]), self.minute):
                    continue  # this minute was measured (a redelivered tick)
            except RetryableError as exc:
                self.problem(f"release {release['id']}: health not recorded this minute: {exc}")
                continue
            key = (str(release.get("repository") or ""), str(release.get("service") or ""))
            registered = services.get(key)
            chosen.append((dict(release), registered.checks if registered else _plan_checks(release)))
        return chosen

    def _probe_all(self, services: Sequence[RegisteredService],
                   releases: Sequence[tuple[Mapping[str, Any], tuple[SmokeCheck, ...]]],
                   ) -> dict[tuple[str, ...], list[slo.Probe]]:
        jobs: list[tuple[tuple[str, ...], str, SmokeCheck]] = []
        for svc in services:
            jobs += [(("service", *svc.key), check_url(svc.url, check.path), check) for check in svc.checks]
        found: dict[tuple[str, ...], list[slo.Probe]] = {("service", *svc.key): [] for svc in services}
        for release, checks in releases:
            key = ("release", str(release["id"]))
            found[key] = []
            base = str(release.get("version_url") or "")
            if base:
                jobs += [(key, check_url(base, check.path), check) for check in checks]
        if not jobs:
            return found
        workers = min(self.agent._max_workers, len(jobs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
            answers = list(pool.map(lambda job: self._probe(job[1], job[2]), jobs))
        for (key, _, _), answer in zip(jobs, answers, strict=True):
            found[key].append(answer)
        return found

    def _probe(self, url: str, check: SmokeCheck) -> slo.Probe:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self.agent._session()
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return self.agent._prober(url, check, timeout_for(check, PROBE_TIMEOUT_CAP), at=self.minute,
                                  session=session)

    def _close_sessions(self) -> None:
        for session in self._sessions:
            close = getattr(session, "close", None)
            if callable(close):
                close()
        self._sessions.clear()

    # ---- one service -----------------------------------------------------------------------

    def _service(self, store: MonitorStore, svc: RegisteredService,
                 probes: Sequence[slo.Probe]) -> ServiceResult:
        probe_ = slo.combine(probes)
        retention = svc.target.window + BUCKET_RETENTION_MARGIN
        bucket, _ = store.add_probe(svc.repository, svc.service, probe_, retention)
        buckets = self.agent.cache.window(store, svc.repository, svc.service, bucket,
                                          probe_.at - svc.target.window)
        report = slo.evaluate(buckets, svc.target, probe_.at)
        recent = slo.recent_probes(buckets[-RECENT_HOURS:])
        state, actions = decide(svc.state, probe_, svc.incident, service=svc.service, recent=recent,
                                slo=report)
        breach = next((action.reason for action in actions if isinstance(action, ReportBreach)), "")
        if not breach and state.last_probe_at == probe_.at and state.consecutive_failures:
            breach = (f"{svc.service} failed its health probe {state.consecutive_failures} time(s) in a row"
                      f" (as of {self.minute:%H:%M} UTC)")  # a redelivered tick: decided before
        pending: list[dict[str, Any]] = list(svc.pending)
        if state != svc.state:
            entries, opened, closed = self._entries(svc, state, actions, probe_)
            written = store.save_state(svc.repository, svc.service, state, report,
                                       expect_last_probe_at=svc.state.last_probe_at, pending=entries,
                                       opened=opened, closed=closed, now=self.now)
            if written is None:  # another tick recorded this service first; it carries the effects out
                return ServiceResult(probe_, state, breach, report)
            pending = written
        if pending:
            self._drain(store, svc, pending)
        return ServiceResult(probe_, state, breach, report)

    def _entries(self, svc: RegisteredService, state: MonitorState, actions: Sequence[Any], probe_: slo.Probe,
                 ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, tuple[str, datetime] | None]:
        """The outbox entries, the incident to record as opened and the one to close, for `actions`."""
        entries: list[dict[str, Any]] = []
        opened: dict[str, Any] | None = None
        closed: tuple[str, datetime] | None = None
        repo, name = svc.repository, svc.service
        for action in actions:
            if isinstance(action, OpenIncident) and state.open_incident is not None:
                incident = state.open_incident
                iid = incident_id(repo, name, incident.opened_at)
                release = self._release_of(repo, name)
                entries.append({"op": "open", "key": f"{ACTOR}:{iid}:open", "incident_id": iid,
                                "title": action.title, "body": self._body(svc, action.body, iid),
                                "labels": list(action.labels)})
                entries.append({"op": "notify", "key": f"{ACTOR}:{iid}:notify-open", "incident_id": iid,
                                "text": f"Incident in {repo}: {name} is failing its health checks "
                                        f"({neutralise(incident.last_error, 200)})."})
                opened = {"incident_id": iid, "repository": repo, "service": name, "kind": OUTAGE,
                          "opened_at": incident.opened_at, "failing_since": incident.failing_since,
                          "release_id": str(release.get("id") or ""), "sha": str(release.get("sha") or "")}
            elif isinstance(action, UpdateIncident) and state.open_incident is not None:
                iid = incident_id(repo, name, state.open_incident.opened_at)
                entries.append({"op": "update", "key": f"{ACTOR}:{iid}:update:{minute_id(probe_.at)}",
                                "incident_id": iid, "number": action.number,
                                "body": self._body(svc, action.body, iid)})
            elif isinstance(action, CloseIncident) and svc.state.open_incident is not None:
                incident = svc.state.open_incident
                iid = incident_id(repo, name, incident.opened_at)
                took = format_duration(action.duration)
                mention = mention_of(svc.mention)
                comment = (f"Resolved: {neutralise(name, 100)} recovered after {took} (from "
                           f"{incident.opened_at:%Y-%m-%d %H:%M} to {probe_.at:%Y-%m-%d %H:%M} UTC). "
                           "The monitor closes this issue; the duration is recorded for MTTR."
                           + (f"\n\ncc {mention}" if mention else ""))
                entries.append({"op": "close", "key": f"{ACTOR}:{iid}:close", "incident_id": iid,
                                "number": action.number, "body": self._body(svc, action.body, iid),
                                "comment": comment, "duration_seconds": action.duration.total_seconds()})
                entries.append({"op": "notify", "key": f"{ACTOR}:{iid}:notify-close", "incident_id": iid,
                                "text": f"Resolved in {repo}: {name} recovered after {took}."})
                closed = (iid, probe_.at)
        return entries, opened, closed

    def _release_of(self, repository: str, service: str) -> Mapping[str, Any]:
        return next((doc for doc in self.releases if doc.get("repository") == repository
                     and doc.get("service") == service), {})

    @staticmethod
    def _body(svc: RegisteredService, body: str, iid: str) -> str:
        lines = [body.rstrip("\n")]
        mention = mention_of(svc.mention)
        if mention:
            lines += ["", f"cc {mention}"]
        lines.append(id_marker(iid))
        return "\n".join(lines) + "\n"

    # ---- the outbox ------------------------------------------------------------------------

    def _drain(self, store: MonitorStore, svc: RegisteredService,
               pending: Sequence[Mapping[str, Any]]) -> None:
        """Carry out the outbox in order; what may pass stops it, to go on at the next tick."""
        done: list[str] = []
        settled: dict[str, Settled] = {}
        for entry in pending:
            try:
                self._perform(store, svc, entry, settled)
            except RetryableError as exc:
                self.deferred.append(neutralise(f"{svc.repository} {svc.service}: {entry.get('op')} waits "
                                                f"for the next tick ({exc})", 300))
                break
            done.append(str(entry.get("key")))
        store.settle(svc.repository, svc.service, done, list(settled.values()))

    def _apply(self, svc: RegisteredService, action: Any, what: str) -> dict[str, Any] | None:
        """One GitHub write in the service's installation; a refusal is reported and gives None."""
        try:
            return self.ctx.apply(action, raise_refused=True, installation_id=svc.installation_id)
        except RetryableError:
            raise
        except PermanentError as exc:
            self.problem(f"GitHub refused to {what} of {svc.repository} {svc.service}: {exc}")
            return None

    def _perform(self, store: MonitorStore, svc: RegisteredService, entry: Mapping[str, Any],
                 settled: dict[str, Settled]) -> None:
        op, iid, key = str(entry.get("op")), str(entry.get("incident_id") or ""), str(entry.get("key"))
        repo = svc.repository
        known = settled.get(iid)
        if op == "open":
            found = self._find_issue(svc, iid)
            if found is not None:
                settled[iid] = found
                return
            create = CreateIssue(repo, str(entry.get("title") or ""), str(entry.get("body") or ""),
                                 tuple(entry.get("labels") or ()), key=key)
            answer = self._apply(svc, create, "open the incident issue")
            if answer and answer.get("number"):
                settled[iid] = Settled(iid, int(answer["number"]), str(answer.get("html_url") or ""))
                self.counts["opened"] += 1
            return
        if op == "update":
            number = int(entry.get("number") or 0) or (known.number if known else 0)
            update = UpdateIssue(repo, number, key=key, body=str(entry.get("body") or ""))
            if number and self._apply(svc, update, "update the incident issue") is not None:
                self.counts["updated"] += 1
            return
        if op == "close":
            number = int(entry.get("number") or 0) or (known.number if known else 0)
            if not number:
                found = self._find_issue(svc, iid)
                number = found.number if found else 0
            if not number:
                self.problem(f"{repo} {svc.service} recovered, but its incident has no issue to close")
                return
            answer = self._apply(svc, UpdateIssue(repo, number, key=key, body=str(entry.get("body") or ""),
                                                  state="closed", state_reason="completed"),
                                 "close the incident issue")
            if answer is not None:
                self.counts["closed"] += 1
            self._apply(svc, PostComment(repo, number, str(entry.get("comment") or ""), key=f"{key}:comment"),
                        "comment on the incident issue")
            return
        if op == "notify":
            self._notify(store, svc, entry, known)
            return
        log.warning("monitor: unknown outbox entry %r dropped", op)

    def _notify(self, store: MonitorStore, svc: RegisteredService, entry: Mapping[str, Any],
                known: Settled | None) -> None:
        if not svc.slack:
            return
        notifier = self.agent._notifier()
        if notifier is None:
            return
        text = str(entry.get("text") or "")
        url = known.url if known else ""
        if not url:
            record = store.incident(str(entry.get("incident_id") or "")) or {}
            url = str(record.get("issue_url") or "")
        if url.startswith(("https://", "http://")):
            text += f" {url}"
        if notifier.notify(str(entry.get("key")), text, ACTOR, svc.repository):
            self.counts["notified"] += 1

    def _find_issue(self, svc: RegisteredService, iid: str) -> Settled | None:
        """The incident's issue, by its id marker, if GitHub has one (a create whose answer was lost)."""
        marker = id_marker(iid)
        try:
            issue = find_issue_by_marker(self._client(svc), svc.repository, marker, INCIDENT_LABELS[0])
            if issue is not None:
                return Settled(iid, int(issue["number"]), str(issue.get("html_url") or ""))
        except RetryableError:
            raise
        except PermanentError as exc:  # unreadable: the create that follows says what GitHub thinks
            log.info("monitor: could not look for the incident issue: %s", exc)
        return None

    def _client(self, svc: RegisteredService) -> Any:
        key = (svc.installation_id, svc.repository)
        if key not in self._clients:
            self._clients[key] = self.ctx.client_for(svc.installation_id, svc.repository)
        return self._clients[key]

    # ---- releases --------------------------------------------------------------------------

    def _release(self, store: MonitorStore, release: Mapping[str, Any], probes: Sequence[slo.Probe],
                 results: Mapping[tuple[str, str], ServiceResult]) -> bool:
        production = results.get((str(release.get("repository") or ""), str(release.get("service") or "")))
        passed = [item for item in probes if item.ok]
        errors = [neutralise(item.error or f"status {item.status}", 200) for item in probes if not item.ok]
        if not release.get("version_url"):
            errors.append("the release has no version URL yet: its version was not probed")
        doc: dict[str, Any] = {
            "at": self.minute, "version": str(release.get("version") or ""), "probes": len(probes),
            "failures": len(probes) - len(passed),
            "latencies_ms": [round(item.latency_ms, 1) for item in passed],  # successful probes only
            "errors": errors[:MAX_RELEASE_ERRORS],
            "breach": neutralise(production.breach, 500) if production else "",
        }
        if production is not None:
            report = production.report
            doc["production"] = {"ok": production.probe.ok, "status": production.probe.status,
                                 "burn_rate_1h": report.burn_rate_1h if report else None}
        return store.record_release_health(str(release["id"]), doc)


def _plan_checks(release: Mapping[str, Any]) -> tuple[SmokeCheck, ...]:
    """A release of an unregistered service: its plan's smoke checks, else the default health check."""
    checks = []
    for item in (release.get("plan") or {}).get("smoke") or ():
        if isinstance(item, Mapping) and item.get("path"):
            checks.append(SmokeCheck(str(item["path"]), int(item.get("status", 200)),
                                     int(item.get("max_latency_ms", 1000))))
    return tuple(checks) or DEFAULT_CHECKS

