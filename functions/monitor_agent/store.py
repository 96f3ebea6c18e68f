"""The monitor's Firestore records: the service registry, hourly probe buckets, incident state and MTTR.

Layout (repository documents are `repos/{owner:name}`, see `shared.task_store.repo_doc_id`):

- `repos/{id}/services/{service}`: one registered service. The deploy agent writes its configuration
  (`register_service`, from the repository's policy) when a release starts; the monitor finds every
  service with a collection-group query on `services`. Configuration fields: repository,
  installation_id, service, url, health, slo, incident, mention, slack, enabled, updated_at. The
  monitor's own fields, never touched by a registration: `state` (`incidents.MonitorState`),
  `slo_report` (`slo.SloReport.to_doc` with `evaluated_at`) and `pending`, the outbox of incident
  effects (open, update, close the issue; notify Slack) decided with the state and not yet carried out.
- `repos/{id}/services/{service}/health/{bucket id}`: one document per service per hour
  (`slo.bucket_id`, `slo.add_probe`), with `expire_at` for a TTL policy.
- `incidents/{incident id}`: one per incident, from the monitor (kind `outage`) and the deploy agent
  (kind `rollback`): repository, service, kind, issue_number, issue_url, opened_at, closed_at (None
  while open), duration_seconds, release_id, sha. MTTR comes from these.
- `deployments/{release id}` is the deploy agent's; the monitor only reads the active ones and writes
  `deployments/{release id}/health/{YYYYmmddTHHMM}`, one document per minute of an active release.

A state change is written with the effects it asks for (`pending`) and the incident record in one
transaction, so a crash between deciding and doing leaves the effects for the next tick, never lost
and never decided twice. Every Google error becomes a RetryableError, as in `shared.task_store`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.monitor_agent import slo
from functions.monitor_agent.incidents import IncidentPolicy, MonitorState, issue_created
from shared.errors import ConfigError, InvalidInput
from shared.policy import SmokeCheck
from shared.task_store import REPOS, DocumentStore, repo_doc_id, where

SERVICES = "services"
HEALTH = "health"
INCIDENTS = "incidents"
DEPLOYMENTS = "deployments"
OUTAGE = "outage"
DEFAULT_CHECKS: tuple[SmokeCheck, ...] = (SmokeCheck("/health"),)
BUCKET_RETENTION_MARGIN = timedelta(days=2)  # buckets outlive the SLO window by this much
RELEASE_HEALTH_RETENTION = timedelta(days=30)
MAX_PENDING = 50  # an outbox this long means GitHub has been down for hours: the oldest updates go
MINUTE_FORMAT = "%Y%m%dT%H%M"

_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def plain(value: Any) -> Any:
    """`value` with every time a plain `datetime`: a time read from Firestore, once shifted or replaced
    (`hour_start`), is a half-built subclass the client cannot write back."""
    if isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                        value.microsecond, tzinfo=value.tzinfo)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def minute_id(at: datetime) -> str:
    """The id of a per-minute document: `20261201T1503` (UTC)."""
    return f"{at.astimezone(UTC):{MINUTE_FORMAT}}"


def incident_id(repository: str, service: str, opened_at: datetime) -> str:
    """An outage's id: stable for the incident, so every retry names the same record and issue."""
    return f"{OUTAGE}:{repo_doc_id(repository)}:{service}:{minute_id(opened_at)}"


def _check_doc(check: SmokeCheck) -> dict[str, Any]:
    return {"path": check.path, "status": int(check.status), "max_latency_ms": int(check.max_latency_ms)}


def _url_problem(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "is malformed"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL with a host"
    if parts.username or parts.password:
        return "carries credentials; a health URL must not"
    return ""


@dataclass(frozen=True)
class RegisteredService:
    """One service as the registry holds it, checked: what a tick probes and how it judges it."""

    repository: str
    installation_id: int
    service: str
    url: str
    checks: tuple[SmokeCheck, ...]
    target: slo.SloTarget
    incident: IncidentPolicy
    mention: str
    slack: bool
    enabled: bool
    state: MonitorState
    pending: tuple[dict[str, Any], ...]

    @property
    def key(self) -> tuple[str, str]:
        return self.repository, self.service

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RegisteredService:
        """Raises InvalidInput (naming the field) for a document a tick cannot use."""
        repository, service = str(doc.get("repository") or ""), str(doc.get("service") or "")
        if not _REPOSITORY.match(repository) or not _SERVICE.match(service):
            raise InvalidInput(f"registered service {service!r} of {repository!r} has no valid name")
        url = str(doc.get("url") or "")
        problem = _url_problem(url)
        if problem:
            raise InvalidInput(f"the URL of {repository} {service} {problem}")
        try:
            checks = tuple(SmokeCheck(str(item["path"]), int(item.get("status", 200)),
                                      int(item.get("max_latency_ms", 1000)))
                           for item in doc.get("health") or ()) or DEFAULT_CHECKS
            target_doc = doc.get("slo") or {}
            target = slo.SloTarget(float(target_doc.get("availability", 0.999)),
                                   float(target_doc.get("latency_ms", 500)),
                                   float(target_doc.get("latency_percent", 0.99)),
                                   timedelta(days=int(target_doc.get("window_days", 30))))
            incident_doc = doc.get("incident") or {}
            incident = IncidentPolicy(int(incident_doc.get("open_after", 3)),
                                      timedelta(minutes=int(incident_doc.get("update_minutes", 15))),
                                      int(incident_doc.get("close_after", 2)))
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise InvalidInput(f"the registration of {repository} {service} is malformed: {exc}") from exc
        pending = tuple(dict(item) for item in doc.get("pending") or () if isinstance(item, Mapping))
        return cls(repository, int(doc.get("installation_id") or 0), service, url.rstrip("/"), checks, target,
                   incident, str(doc.get("mention") or ""), bool(doc.get("slack", True)),
                   bool(doc.get("enabled", True)), MonitorState.from_doc(doc.get("state")), pending)


@dataclass(frozen=True)
class Settled:
    """An issue found or created for an incident, recorded with `MonitorStore.settle`."""

    incident_id: str
    number: int
    url: str = ""


class MonitorStore(DocumentStore):
    # ---- references and small helpers ------------------------------------------------------

    def _service(self, repository: str, service: str) -> Any:
        return (self._client.collection(REPOS).document(repo_doc_id(repository))
                .collection(SERVICES).document(service))

    def _bucket(self, repository: str, service: str, at: datetime) -> Any:
        return self._service(repository, service).collection(HEALTH).document(slo.bucket_id(service, at))

    def _incident(self, incident: str) -> Any:
        return self._client.collection(INCIDENTS).document(incident)

    def _release_health(self, release_id: str, at: datetime) -> Any:
        return (self._client.collection(DEPLOYMENTS).document(release_id).collection(HEALTH)
                .document(minute_id(at)))

    # ---- the service registry --------------------------------------------------------------

    def register_service(self, repository: str, installation_id: int, service: str, url: str, policy: Any,
                         now: datetime) -> dict[str, Any]:
        """Register (or refresh) a service from its repository's policy; returns what was written.

        Merged into the document, so the monitor's `state`, `slo_report` and `pending` survive a
        re-registration (every release registers again) and an open incident stays open.
        """
        if not _REPOSITORY.match(repository):
            raise InvalidInput(f"{repository!r} is not a repository name")
        if not _SERVICE.match(service):
            raise InvalidInput(f"{service!r} cannot name a monitored service")
        url = str(url or "").rstrip("/")
        problem = _url_problem(url)
        if problem:
            raise InvalidInput(f"the production URL of {service} {problem}")
        monitor, notify = policy.monitor, policy.notify
        config = {
            "repository": repository,
            "installation_id": int(installation_id),
            "service": service,
            "url": url,
            "health": [_check_doc(check) for check in monitor.health or DEFAULT_CHECKS],
            "slo": {"availability": float(monitor.availability), "latency_ms": int(monitor.latency_ms),
                    "latency_percent": float(monitor.latency_percent),
                    "window_days": int(monitor.window_days)},
            "incident": {"open_after": int(monitor.open_after), "close_after": int(monitor.close_after),
                         "update_minutes": int(monitor.update_minutes)},
            "mention": str(notify.mention or ""),
            "slack": bool(notify.slack),
            "enabled": bool(policy.agent_enabled("monitor")),
            "updated_at": now,
        }
        RegisteredService.from_doc(config)  # the monitor must be able to use what is written
        self._call(f"register {service} of {repository}",
                   lambda: self._service(repository, service).set(plain(config), merge=True))
        return config

    def services(self) -> list[dict[str, Any]]:
        """Every registered service's document (only those under `repos/`)."""
        def read() -> list[dict[str, Any]]:
            found = []
            for snapshot in self._client.collection_group(SERVICES).stream():
                if snapshot.reference.path.startswith(f"{REPOS}/"):
                    found.append(snapshot.to_dict() or {})
            return found

        return self._call("list the registered services", read)

    def service(self, repository: str, service: str) -> dict[str, Any] | None:
        return self._call(f"read service {service} of {repository}",
                          lambda: self._service(repository, service).get().to_dict())

    # ---- probes and their hourly buckets ---------------------------------------------------

    def add_probe(self, repository: str, service: str, probe: slo.Probe,
                  retention: timedelta = timedelta(days=30) + BUCKET_RETENTION_MARGIN,
                  ) -> tuple[dict[str, Any], bool]:
        """Count `probe` in its hour's bucket: (the bucket as stored, whether the probe was new).

        A second probe in a minute already counted (a redelivered tick) changes nothing.
        """
        return self._run(self._add_probe, repository, service, probe, retention)

    def _add_probe(self, transaction: Any, repository: str, service: str, probe: slo.Probe,
                   retention: timedelta) -> tuple[dict[str, Any], bool]:
        ref = self._bucket(repository, service, probe.at)
        stored = ref.get(transaction=transaction).to_dict()
        if stored is not None and probe.at.minute in {int(minute) for minute in stored.get("minutes") or ()}:
            return dict(stored), False
        after = slo.add_probe(stored or slo.empty_bucket(service, probe.at), probe)
        doc = plain({**after, "repository": repository, "expire_at": after["hour"] + retention})
        transaction.set(ref, doc)
        return doc, True

    def bucket(self, repository: str, service: str, hour: datetime) -> dict[str, Any] | None:
        return self._call(f"read the {hour:%Y-%m-%dT%H} bucket of {service}",
                          lambda: self._bucket(repository, service, hour).get().to_dict())

    def buckets(self, repository: str, service: str, since: datetime,
                until: datetime | None = None) -> list[dict[str, Any]]:
        """The hourly buckets from the hour holding `since` up to (not including) `until`, oldest first."""
        def read() -> list[dict[str, Any]]:
            query = where(self._service(repository, service).collection(HEALTH), "hour", ">=",
                           plain(slo.hour_start(since)))
            if until is not None:
                query = where(query, "hour", "<", plain(until))
            docs = [snapshot.to_dict() or {} for snapshot in query.stream()]
            return sorted((doc for doc in docs if isinstance(doc.get("hour"), datetime)),
                          key=lambda doc: doc["hour"])

        return self._call(f"read the buckets of {service} of {repository}", read)

    # ---- incident state and its outbox ------------------------------------------------------

    def save_state(self, repository: str, service: str, state: MonitorState,
                   slo_report: slo.SloReport | Mapping[str, Any] | None, *,
                   expect_last_probe_at: datetime | None | bool = True,
                   pending: Sequence[Mapping[str, Any]] = (), opened: Mapping[str, Any] | None = None,
                   closed: tuple[str, datetime] | None = None, now: datetime | None = None,
                   ) -> list[dict[str, Any]] | None:
        """Write a service's new state with the effects it asks for, in one transaction.

        `expect_last_probe_at` (unless True: no check) must be the stored state's `last_probe_at`:
        another tick that got there first makes this one a no-op, returning None. Otherwise returns
        the outbox as written: the stored `pending` with `pending` appended (an update supersedes an
        older update of the same incident still waiting). `opened` is a new incident record
        (`incidents/{opened["incident_id"]}`), `closed` an (incident id, closed at) to close.
        """
        report = slo_report.to_doc() if isinstance(slo_report, slo.SloReport) else slo_report
        return self._run(self._save_state, repository, service, state, report, expect_last_probe_at,
                         [dict(item) for item in pending], dict(opened) if opened else None, closed, now)

    def _save_state(self, transaction: Any, repository: str, service: str, state: MonitorState,
                    report: Mapping[str, Any] | None, expected: datetime | None | bool,
                    pending: list[dict[str, Any]], opened: dict[str, Any] | None,
                    closed: tuple[str, datetime] | None, now: datetime | None) -> list[dict[str, Any]] | None:
        ref = self._service(repository, service)
        snapshot = ref.get(transaction=transaction)
        doc = snapshot.to_dict() if snapshot.exists else None
        if doc is None:
            return None  # unregistered meanwhile: nothing to keep state for
        if expected is not True and MonitorState.from_doc(doc.get("state")).last_probe_at != expected:
            return None
        incident_ref = None
        incident_doc = None
        if closed is not None:
            incident_ref = self._incident(closed[0])
            incident_doc = incident_ref.get(transaction=transaction).to_dict()
        outbox = _append(list(doc.get("pending") or []), pending)
        changes: dict[str, Any] = {"state": state.to_doc(), "pending": outbox}
        if report is not None:
            changes["slo_report"] = {**report, "evaluated_at": now or state.last_probe_at}
        transaction.update(ref, plain(changes))
        if opened is not None:
            transaction.set(self._incident(opened["incident_id"]), plain(_incident_doc(**opened)), merge=True)
        if closed is not None and incident_ref is not None:
            transaction.set(incident_ref, plain(_closing(incident_doc, closed[1])), merge=True)
        return outbox

    def settle(self, repository: str, service: str, done: Iterable[str],
               issues: Sequence[Settled] = ()) -> None:
        """Effects carried out (their keys leave the outbox) and incident issues now known.

        An issue of the open incident gives the state its number (`incidents.issue_created`), so the
        incident's updates can start; a close still waiting for that number gets it too.
        """
        done = set(done)
        if not done and not issues:
            return
        self._run(self._settle, repository, service, done, tuple(issues))

    def _settle(self, transaction: Any, repository: str, service: str, done: set[str],
                issues: tuple[Settled, ...]) -> None:
        ref = self._service(repository, service)
        snapshot = ref.get(transaction=transaction)
        if not snapshot.exists:
            return
        doc = snapshot.to_dict() or {}
        numbers = {issue.incident_id: issue for issue in issues if issue.number}
        outbox = []
        for item in doc.get("pending") or []:
            if not isinstance(item, Mapping) or item.get("key") in done:
                continue
            item = dict(item)
            known = numbers.get(str(item.get("incident_id") or ""))
            waiting = item.get("op") in ("update", "close") and not int(item.get("number") or 0)
            if known is not None and waiting:
                item["number"] = known.number
            outbox.append(item)
        state = MonitorState.from_doc(doc.get("state"))
        incident = state.open_incident
        if incident is not None and not incident.number:
            known = numbers.get(incident_id(repository, service, incident.opened_at))
            if known is not None:
                state = issue_created(state, known.number)
        transaction.update(ref, plain({"pending": outbox, "state": state.to_doc()}))
        for issue in numbers.values():
            transaction.set(self._incident(issue.incident_id),
                            {"issue_number": issue.number, "issue_url": issue.url}, merge=True)

    # ---- incidents and MTTR ----------------------------------------------------------------

    def record_incident(self, incident_id: str, repository: str, service: str, kind: str,
                        opened_at: datetime, issue_number: int = 0, release_id: str = "", sha: str = "",
                        issue_url: str = "") -> None:
        """Record an incident as open (the deploy agent's rollbacks too). A second call keeps the
        first opening time and an issue number already known, and never reopens a closed one."""
        self._run(self._record_incident, incident_id, repository, service, kind, opened_at, int(issue_number),
                  release_id, sha, issue_url)

    def _record_incident(self, transaction: Any, incident: str, repository: str, service: str, kind: str,
                         opened_at: datetime, issue_number: int, release_id: str, sha: str,
                         issue_url: str) -> None:
        ref = self._incident(incident)
        stored = ref.get(transaction=transaction).to_dict()
        doc = _incident_doc(incident, repository, service, kind, opened_at, issue_number, release_id, sha,
                            issue_url)
        if stored is not None:
            doc["opened_at"] = stored.get("opened_at") or opened_at
            doc["closed_at"] = stored.get("closed_at")
            doc["duration_seconds"] = stored.get("duration_seconds")
            doc["issue_number"] = issue_number or int(stored.get("issue_number") or 0)
            doc["issue_url"] = issue_url or str(stored.get("issue_url") or "")
        transaction.set(ref, plain(doc))

    def close_incident(self, incident_id: str, closed_at: datetime) -> dict[str, Any] | None:
        """Close an incident with its duration; None when there is no such record. Idempotent."""
        return self._run(self._close_incident, incident_id, closed_at)

    def _close_incident(self, transaction: Any, incident: str, closed_at: datetime) -> dict[str, Any] | None:
        ref = self._incident(incident)
        stored = ref.get(transaction=transaction).to_dict()
        if stored is None:
            return None
        changes = plain(_closing(stored, closed_at))
        transaction.set(ref, changes, merge=True)
        return {**stored, **changes}

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self._call(f"read incident {incident_id}", lambda: self._incident(incident_id).get().to_dict())

    def incidents(self, since: datetime, repository: str = "", kind: str = "") -> list[dict[str, Any]]:
        """Incidents opened at or after `since`, oldest first (filtered here: no composite index)."""
        def read() -> list[dict[str, Any]]:
            query = where(self._client.collection(INCIDENTS), "opened_at", ">=", plain(since))
            return [snapshot.to_dict() or {} for snapshot in query.stream()]

        docs = self._call("read the incidents", read)
        docs = [doc for doc in docs if (not repository or doc.get("repository") == repository)
                and (not kind or doc.get("kind") == kind)]
        return sorted(docs, key=lambda doc: doc["opened_at"])

    def mttr(self, since: datetime, repository: str = "", kind: str = "") -> timedelta | None:
        """The mean time to recovery of the incidents opened since `since` that have closed."""
        from functions.monitor_agent.incidents import mttr

        docs = self.incidents(since, repository, kind)
        return mttr((doc["opened_at"], doc.get("closed_at")) for doc in docs)

    # ---- releases ----------------------------------------------------------------------------

    def active_releases(self) -> list[dict[str, Any]]:
        """The deploy agent's releases with `active == True`, each with its `id`. Only read."""
        def read() -> list[dict[str, Any]]:
            query = where(self._client.collection(DEPLOYMENTS), "active", "==", True)
            return [{**(snapshot.to_dict() or {}), "id": snapshot.id} for snapshot in query.stream()]

        return self._call("read the active releases", read)

    def has_release_health(self, release_id: str, at: datetime) -> bool:
        return self._call(f"read the health of release {release_id}",
                          lambda: self._release_health(release_id, at).get().exists)

    def record_release_health(self, release_id: str, minute_doc: Mapping[str, Any]) -> bool:
        """Write `deployments/{id}/health/{minute of minute_doc["at"]}` once; False when it was there."""
        at = minute_doc["at"]
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidInput("a release health document needs its time (`at`, with a time zone)")
        doc = plain({**dict(minute_doc), "expire_at": at + RELEASE_HEALTH_RETENTION})
        return self._run(self._record_release_health, release_id, at, doc)

    def _record_release_health(self, transaction: Any, release_id: str, at: datetime,
                               doc: dict[str, Any]) -> bool:
        ref = self._release_health(release_id, at)
        if ref.get(transaction=transaction).exists:
            return False
        transaction.set(ref, doc)
        return True

    def release_health(self, release_id: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """The release's per-minute health documents at or after `since`, oldest first."""
        def read() -> list[dict[str, Any]]:
            collection = self._client.collection(DEPLOYMENTS).document(release_id).collection(HEALTH)
            query = where(collection, "at", ">=", plain(since)) if since is not None else collection
            return [snapshot.to_dict() or {} for snapshot in query.stream()]

        docs = self._call(f"read the health of release {release_id}", read)
        return sorted((doc for doc in docs if isinstance(doc.get("at"), datetime)), key=lambda doc: doc["at"])


def _incident_doc(incident_id: str, repository: str, service: str, kind: str, opened_at: datetime,
                  issue_number: int = 0, release_id: str = "", sha: str = "", issue_url: str = "",
                  failing_since: datetime | None = None) -> dict[str, Any]:
    return {"incident_id": incident_id, "repository": repository, "service": service, "kind": kind,
            "issue_number": int(issue_number), "issue_url": issue_url, "opened_at": opened_at,
            "failing_since": failing_since or opened_at, "closed_at": None, "duration_seconds": None,
            "release_id": release_id, "sha": sha}


def _closing(stored: Mapping[str, Any] | None, closed_at: datetime) -> dict[str, Any]:
    """The fields that close an incident; a closed one keeps its first closing."""
    stored = stored or {}
    if isinstance(stored.get("closed_at"), datetime):
        return {"closed_at": stored["closed_at"], "duration_seconds": stored.get("duration_seconds")}
    opened = stored.get("opened_at")
    duration = max((closed_at - opened).total_seconds(), 0.0) if isinstance(opened, datetime) else None
    return {"closed_at": closed_at, "duration_seconds": duration}


def _append(outbox: list[Any], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outbox with `new` after it. A newer update of an incident replaces one still waiting: the
    issue's body is replaced, not appended to, so only the latest matters."""
    items = [dict(item) for item in outbox if isinstance(item, Mapping)]
    for entry in new:
        if entry.get("op") == "update":
            items = [item for item in items if not (item.get("op") == "update"
                                                    and item.get("incident_id") == entry.get("incident_id"))]
        items.append(entry)
    if len(items) > MAX_PENDING:  # the oldest waiting updates go, never one just decided
        older = len(items) - len(new)
        updates = [index for index, item in enumerate(items[:older]) if item.get("op") == "update"]
        drop = set(updates[:len(items) - MAX_PENDING])
        items = [item for index, item in enumerate(items) if index not in drop]
    return items

