"""The repo scout's Firestore records (repository documents are `repos/{owner:name}`, `repo_doc_id`).

- `repos/{id}` field `health` (merged; the metrics and the dashboard read it): score, reasons,
  findings_open, by_severity {critical, high, medium, low}, scanned_at, scan_id, issue_number, quiet.
  Field `scout`, the scout's own bookkeeping: last_scan_id, last_full_read_at, signature (the GraphQL
  digest of the last scan), settings (a digest of the settings the facts were read with), last_task_id
  (the tick that scanned it, so a redelivered tick does not scan it twice), repository_id.
- `repos/{id}/scans/{scan_id}`: one per scan of the repository: scan_id, repository, scanned_at, score,
  reasons, findings_open, by_severity, api_calls, rest_calls, rest_not_modified, graphql_share,
  graphql_cost, writes, reused, signature, coverage {line_rate, branch, at, sha}, ci {runs_30d,
  success_rate, last_green_at}, ci_runs [...], unknown [...], notes [...], facts (what `assess` needs to
  re-assess the repository without reading it again, `collect.facts_to_doc`), expire_at (TTL, 180 days).
- `repos/{id}/findings/{fingerprint}`: fingerprint, repository, kind, identity, severity, title, detail,
  link, label, state ("open" | "fixed"), first_seen, last_seen, fixed_at (None while open).
- `repos/{id}/scout/issue`: the health issue as last seen or written: number, open, body, updated_at;
  an unchanged repository is planned against it without asking GitHub.
- `repos/{id}/scout/lease`: holder, until, taken_at: the turn scanning the repository now
  (`claim_scan`), so that two turns at once (a redelivered tick while the first still runs, or
  `agentops scout run` during a tick) never both edit or create its health issue.
- `installations/{id}` field `scout`: cursor (the repository a stopped scan resumes at, None when the
  last scan went through), stopped_at, reason, scan_id.

Every Google error becomes a RetryableError, as in `shared.task_store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.repo_scout.health import SEVERITIES, Finding
from shared.task_store import REPOS, DocumentStore, repo_doc_id, where

SCANS = "scans"
FINDINGS = "findings"
SCOUT = "scout"
ISSUE_DOC = "issue"
LEASE_DOC = "lease"
INSTALLATIONS = "installations"
SCAN_RETENTION = timedelta(days=180)
BATCH_SIZE = 400  # Firestore takes at most 500 writes in one batch
SCORED_SEVERITIES = ("critical", "high", "medium", "low")


def by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    counts = {severity: 0 for severity in SCORED_SEVERITIES}
    for item in findings:
        if item.severity in counts:
            counts[item.severity] += 1
    return counts


class ScoutStore(DocumentStore):
    # ---- references ------------------------------------------------------------------------

    def _repo(self, repository: str) -> Any:
        return self._client.collection(REPOS).document(repo_doc_id(repository))

    def _scans(self, repository: str) -> Any:
        return self._repo(repository).collection(SCANS)

    def _findings(self, repository: str) -> Any:
        return self._repo(repository).collection(FINDINGS)

    def _issue(self, repository: str) -> Any:
        return self._repo(repository).collection(SCOUT).document(ISSUE_DOC)

    def _installation(self, installation_id: int) -> Any:
        return self._client.collection(INSTALLATIONS).document(str(installation_id))

    # ---- reads -------------------------------------------------------------------------------

    def repo(self, repository: str) -> dict[str, Any]:
        return self._call(f"read repo {repository}", lambda: self._repo(repository).get().to_dict() or {})

    def scan(self, repository: str, scan_id: str) -> dict[str, Any] | None:
        if not scan_id:
            return None
        return self._call(f"read scan {scan_id} of {repository}",
                          lambda: self._scans(repository).document(scan_id).get().to_dict())

    def scans(self, repository: str, since: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The repository's scans, oldest first (those since `since`, when given)."""
        def read() -> list[dict[str, Any]]:
            query = self._scans(repository)
            if since is not None:
                query = where(query, "scanned_at", ">=", since)
            query = query.order_by("scanned_at", direction="DESCENDING").limit(limit)
            return [snap.to_dict() for snap in query.stream()]
        return list(reversed(self._call(f"read scans of {repository}", read)))

    def findings(self, repository: str, state: str | None = None) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            query = self._findings(repository)
            if state is not None:
                query = where(query, "state", "==", state)
            return [snap.to_dict() for snap in query.stream()]
        return self._call(f"read findings of {repository}", read)

    def open_findings(self, repository: str) -> list[Finding]:
        return [item for item in (Finding.from_doc(doc) for doc in self.findings(repository, "open"))
                if item is not None]

    def baseline(self, repository: str, branch: str) -> dict[str, Any] | None:
        """The test agent's baseline of `branch` (`repos/{id}/baselines/{ref}`), for the coverage."""
        from functions.test_agent.store import BASELINES, ref_doc_id

        return self._call(f"read the baseline of {repository}", lambda: self._repo(repository).collection(
            BASELINES).document(ref_doc_id(branch)).get().to_dict())

    def issue(self, repository: str) -> dict[str, Any]:
        return self._call(f"read the health issue of {repository}",
                          lambda: self._issue(repository).get().to_dict() or {})

    def cursor(self, installation_id: int) -> str | None:
        doc = self._call(f"read installation {installation_id}",
                         lambda: self._installation(installation_id).get().to_dict() or {})
        scout = doc.get(SCOUT) if isinstance(doc.get(SCOUT), Mapping) else {}
        cursor = scout.get("cursor")
        return cursor if isinstance(cursor, str) and cursor else None

    def installed(self) -> dict[int, list[str]]:
        """The repositories Firestore records as installed, per installation (`repos` docs)."""
        def read() -> dict[int, list[str]]:
            found: dict[int, list[str]] = {}
            for snap in where(self._client.collection(REPOS), "installed", "==", True).stream():
                doc = snap.to_dict() or {}
                name, installation = doc.get("full_name"), doc.get("installation_id")
                if isinstance(name, str) and isinstance(installation, int):
                    found.setdefault(installation, []).append(name)
            return found
        return self._call("read the installed repositories", read)

    def health_all(self) -> list[dict[str, Any]]:
        """Every repository document with a `health` field (for `agentops scout show`)."""
        def read() -> list[dict[str, Any]]:
            rows = []
            for snap in self._client.collection(REPOS).stream():
                doc = snap.to_dict() or {}
                if isinstance(doc.get("health"), Mapping):
                    rows.append({"id": snap.id, **doc})
            return rows
        return self._call("read repositories' health", read)

    # ---- writes ------------------------------------------------------------------------------

    def claim_scan(self, repository: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take the repository's scan lease for `holder`; False while another holds it. A lease left
        by a crashed turn expires after `ttl`."""
        return bool(self._run(self._claim_scan, repository, holder, _utc(now), ttl))

    def _claim_scan(self, transaction: Any, repository: str, holder: str, now: datetime,
                    ttl: timedelta) -> bool:
        ref = self._repo(repository).collection(SCOUT).document(LEASE_DOC)
        lease = ref.get(transaction=transaction).to_dict() or {}
        until = lease.get("until")
        if lease.get("holder") not in (None, holder) and isinstance(until, datetime) and _utc(until) > now:
            return False
        transaction.set(ref, {"holder": holder, "until": now + ttl, "taken_at": now})
        return True

    def release_scan(self, repository: str, holder: str) -> None:
        self._run(self._release_scan, repository, holder)

    def _release_scan(self, transaction: Any, repository: str, holder: str) -> None:
        ref = self._repo(repository).collection(SCOUT).document(LEASE_DOC)
        if (ref.get(transaction=transaction).to_dict() or {}).get("holder") == holder:
            transaction.delete(ref)

    def save_cursor(self, installation_id: int, cursor: str | None, *, now: datetime, reason: str = "",
                    scan_id: str = "") -> None:
        doc = {SCOUT: {"cursor": cursor, "stopped_at": now if cursor else None, "reason": reason[:500],
                       "scan_id": scan_id}}
        self._call(f"write the scout cursor of installation {installation_id}",
                   lambda: self._installation(installation_id).set(doc, merge=True))

    def save_issue(self, repository: str, *, number: int | None, open_: bool, body: str,
                   now: datetime) -> None:
        doc = {"number": number, "open": open_, "body": body, "updated_at": now}
        self._call(f"write the health issue of {repository}", lambda: self._issue(repository).set(doc))

    def save_signature(self, repository: str, digest: str) -> None:
        """The repository's signature after the scan's own edit of its health issue."""
        self._call(f"write the signature of {repository}",
                   lambda: self._repo(repository).set({SCOUT: {"signature": digest}}, merge=True))

    def save_scan(self, repository: str, scan: Mapping[str, Any], findings: Sequence[Finding], *,
                  now: datetime, quiet: bool, issue_number: int | None,
                  scout: Mapping[str, Any]) -> dict[str, int]:
        """Write the scan, its findings (open ones upserted, the others marked fixed) and the repository's
        health, in batches. Returns {"opened": new findings, "fixed": findings fixed by this scan}."""
        previous = {doc.get("fingerprint"): doc for doc in self.findings(repository)}
        current = {item.fingerprint: item for item in findings}
        writes: list[tuple[Any, dict[str, Any], bool]] = []
        opened = fixed = 0
        for fp, item in current.items():
            old = previous.get(fp) or {}
            reopened = old.get("state") != "open"
            if reopened:
                opened += 1
            writes.append((self._findings(repository).document(fp), {
                "fingerprint": fp, "repository": repository, "kind": item.kind, "identity": item.identity,
                "severity": item.severity, "title": item.title, "detail": item.detail, "link": item.link,
                "label": item.label, "state": "open",
                "first_seen": now if reopened or not old.get("first_seen") else old["first_seen"],
                "last_seen": now, "fixed_at": None}, False))
        for fp, old in previous.items():
            if fp in current or old.get("state") != "open" or not isinstance(fp, str):
                continue
            fixed += 1
            writes.append((self._findings(repository).document(fp), {"state": "fixed", "fixed_at": now},
                           True))
        scanned_at = scan["scanned_at"]
        counts = by_severity(findings)
        health = {"score": int(scan["score"]), "reasons": list(scan["reasons"]),
                  "findings_open": len(findings), "by_severity": counts, "scanned_at": scanned_at,
                  "scan_id": scan["scan_id"], "issue_number": issue_number, "quiet": bool(quiet)}
        writes.append((self._scans(repository).document(str(scan["scan_id"])),
                       {**dict(scan), "by_severity": counts, "findings_open": len(findings),
                        "expire_at": _utc(scanned_at) + SCAN_RETENTION}, False))
        writes.append((self._repo(repository), {"health": health, SCOUT: dict(scout)}, True))
        for start in range(0, len(writes), BATCH_SIZE):
            chunk = writes[start:start + BATCH_SIZE]

            def commit(chunk: list[tuple[Any, dict[str, Any], bool]] = chunk) -> None:
                batch = self._client.batch()
                for ref, doc, merge in chunk:
                    batch.set(ref, doc, merge=merge)
                batch.commit()

            self._call(f"write the scan of {repository}", commit)
        return {"opened": opened, "fixed": fixed}


def severity_order(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
