"""Recover webhook deliveries GitHub failed to deliver.

GitHub never redelivers on its own, and keeps deliveries redeliverable for 3 days. The sweep lists
the App's deliveries (`GET /app/hook/deliveries`, newest first, cursor-paginated), groups the
attempts by guid, and redelivers (`POST /app/hook/deliveries/{id}/attempts`) each guid whose
every attempt failed and which the `deliveries` collection has not seen published since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

REDELIVERY_WINDOW = timedelta(days=3)
RECENT_ATTEMPT = timedelta(minutes=10)  # a redelivery this fresh may still be on its way


@dataclass(frozen=True)
class Attempt:
    id: int
    guid: str
    delivered_at: datetime
    status_code: int
    redelivery: bool
    event: str
    action: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Attempt:
        return cls(
            id=int(item["id"]),
            guid=str(item["guid"]),
            delivered_at=datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00")),
            status_code=int(item.get("status_code") or 0),
            redelivery=bool(item.get("redelivery")),
            event=str(item.get("event") or ""),
            action=str(item.get("action") or ""),
        )


@dataclass(frozen=True)
class Decision:
    redeliver: tuple[Attempt, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)  # guid -> why


def decide(attempts: Iterable[Attempt], published: Callable[[str], bool], now: datetime,
           since: timedelta = REDELIVERY_WINDOW) -> Decision:
    """Which guids to redeliver, and why the others are left alone. Pure but for `published`."""
    by_guid: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_guid.setdefault(attempt.guid, []).append(attempt)
    window = min(since, REDELIVERY_WINDOW)
    chosen: list[Attempt] = []
    skipped: dict[str, str] = {}
    for guid, group in by_guid.items():
        newest = max(group, key=lambda a: a.delivered_at)
        first = min(group, key=lambda a: a.delivered_at)
        if any(a.succeeded for a in group):
            skipped[guid] = "delivered"
        elif now - first.delivered_at > window:
            skipped[guid] = "outside the redelivery window"
        elif newest.redelivery and now - newest.delivered_at < RECENT_ATTEMPT:
            skipped[guid] = "redelivered moments ago"
        elif published(guid):
            skipped[guid] = "already published"
        else:
            chosen.append(newest)
    chosen.sort(key=lambda a: a.delivered_at)
    return Decision(tuple(chosen), skipped)


@dataclass
class Report:
    listed: int = 0
    redelivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False
    deferred: int = 0  # over this sweep's cap: the next sweep takes them


def sweep(client: Any, published: Callable[[str], bool], now: datetime,
          since: timedelta = REDELIVERY_WINDOW, dry_run: bool = False, max_pages: int = 50,
          progress: Callable[[int, int], None] | None = None,
          max_redeliveries: int = 40) -> Report:
    """List, decide, redeliver. `client` is a RestClient authenticated as the App (JWT).

    Writes are spaced a second apart, so a sweep redelivers at most `max_redeliveries` to finish
    well inside the orchestrator's ack deadline; the oldest go first and the rest wait a sweep.
    """
    from shared.github.rest import GitHubError

    cutoff = now - min(since, REDELIVERY_WINDOW)
    attempts: list[Attempt] = []
    for item in client.paginate("/app/hook/deliveries", max_pages=max_pages):
        attempt = Attempt.from_api(item)
        if attempt.delivered_at < cutoff:
            break  # newest first: the rest is older still
        attempts.append(attempt)
    decision = decide(attempts, published, now, since)
    chosen = decision.redeliver[:max_redeliveries]
    report = Report(listed=len(attempts), skipped=decision.skipped, dry_run=dry_run,
                    deferred=len(decision.redeliver) - len(chosen))
    for done, attempt in enumerate(chosen, 1):
        if not dry_run:
            try:
                client.request("POST", f"/app/hook/deliveries/{attempt.id}/attempts")
            except GitHubError as exc:
                report.failed[attempt.guid] = str(exc)
                continue
        report.redelivered.append(attempt.guid)
        if progress:
            progress(done, len(chosen))
    return report


def guids_published(ledger: Any) -> Callable[[str], bool]:
    def published(guid: str) -> bool:
        record = ledger.get(guid) or {}
        return record.get("status") in ("published", "ping")

    return published


def summarize(report: Report) -> Sequence[str]:
    verb = "would redeliver" if report.dry_run else "redelivered"
    lines = [f"listed {report.listed} delivery attempts; {verb} {len(report.redelivered)}; "
             f"failed {len(report.failed)}; left alone {len(report.skipped)}; "
             f"deferred to the next sweep {report.deferred}"]
    lines += [f"  {verb}: {guid}" for guid in report.redelivered]
    lines += [f"  failed: {guid}: {why}" for guid, why in report.failed.items()]
    return lines
