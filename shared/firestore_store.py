"""Firestore adapters for the ledger, task and audit ports.

Collections read well in the console: snake_case fields, Firestore timestamps, maps rather than
JSON strings, and an `expire_at` field that the TTL policy in Terraform uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.audit import FirestoreAuditLog as FirestoreAuditLog  # re-exported: it lives by its checks
from shared.errors import RetryableError
from shared.ports import Claim, DeliveryRecord

DELIVERIES = "deliveries"
TASKS = "tasks"
AUDIT = "audit"

CLAIM_LEASE = timedelta(seconds=30)  # longer than any publish may take (GitHub waits 10 s)



def _google_errors() -> tuple[type[BaseException], ...]:
    from google.api_core.exceptions import GoogleAPIError

    return (GoogleAPIError,)


class _Firestore:
    def __init__(self, client: Any) -> None:
        self._client = client

    def _transaction(self, fn: Any, *args: Any) -> Any:
        from google.cloud import firestore

        run = firestore.transactional(fn)
        try:
            return run(self._client.transaction(), *args)
        except _google_errors() as exc:
            raise RetryableError(f"firestore transaction {fn.__name__} failed: {exc}") from exc


class FirestoreDeliveryLedger(_Firestore):
    def __init__(self, client: Any, retention: timedelta = timedelta(days=30)) -> None:
        super().__init__(client)
        self._retention = retention

    def _doc(self, key: str) -> Any:
        return self._client.collection(DELIVERIES).document(key)

    def _new(self, record: DeliveryRecord, status: str, now: datetime) -> dict[str, Any]:
        return {
            "delivery_id": record.delivery_id,
            "event": record.event,
            "action": record.action,
            "repository": record.repository,
            "installation_id": record.installation_id,
            "hook_id": record.hook_id,
            "received_at": record.received_at,
            "status": status,
            "attempts": 1,
            "claimed_until": now + CLAIM_LEASE,
            "updated_at": now,
            "expire_at": now + self._retention,
        }

    def claim(self, record: DeliveryRecord, now: datetime) -> Claim:
        from google.api_core.exceptions import AlreadyExists

        # The common case is a new delivery: one create, no transaction.
        try:
            self._doc(record.delivery_id).create(self._new(record, "claimed", now))
            return Claim.CLAIMED
        except AlreadyExists:
            pass
        except _google_errors() as exc:
            raise RetryableError(f"claim delivery {record.delivery_id}: {exc}") from exc
        return self._transaction(self._reclaim, record, now)

    def _reclaim(self, transaction: Any, record: DeliveryRecord, now: datetime) -> Claim:
        ref = self._doc(record.delivery_id)
        snapshot = ref.get(transaction=transaction)
        data = snapshot.to_dict() or {}
        status = data.get("status")
        if status in ("published", "ping"):
            return Claim.DUPLICATE
        if status == "claimed" and data.get("claimed_until") and data["claimed_until"] > now:
            return Claim.IN_FLIGHT
        # A failed publish, an expired claim (its owner died), or a document the orchestrator
        # created first: take it over so GitHub's redelivery publishes.
        update = self._new(record, "claimed", now)
        update["attempts"] = int(data.get("attempts", 0)) + 1
        transaction.set(ref, update, merge=True)
        return Claim.CLAIMED

    def mark_published(self, delivery_id: str, message_id: str, now: datetime) -> None:
        self._update(delivery_id, {"status": "published", "message_id": message_id,
                                   "published_at": now, "updated_at": now, "claimed_until": None,
                                   "error": None})

    def mark_failed(self, delivery_id: str, reason: str, now: datetime) -> None:
        self._update(delivery_id, {"status": "publish_failed", "error": reason[:500],
                                   "updated_at": now, "claimed_until": None})

    def _update(self, key: str, fields: dict[str, Any]) -> None:
        try:
            self._doc(key).set(fields, merge=True)
        except _google_errors() as exc:
            raise RetryableError(f"update delivery {key}: {exc}") from exc

    def record_ping(self, record: DeliveryRecord, hook: Mapping[str, Any], now: datetime) -> None:
        fields = self._new(record, "ping", now)
        fields.update(claimed_until=None, hook=dict(hook))
        self._update(record.delivery_id, fields)

    def mark_processed(
        self, key: str, consumer: str, task_ids: Sequence[str], now: datetime, **facts: Any
    ) -> bool:
        return self._transaction(self._mark_processed, key, consumer, list(task_ids), now, facts)

    def _mark_processed(
        self, transaction: Any, key: str, consumer: str, task_ids: list[str], now: datetime,
        facts: dict[str, Any],
    ) -> bool:
        ref = self._doc(key)
        data = ref.get(transaction=transaction).to_dict() or {}
        if consumer in (data.get("processed_by") or {}):
            return False
        update: dict[str, Any] = {
            "processed_by": {consumer: {"at": now, "task_ids": task_ids, **facts}},
            "processed_at": now,
            "task_ids": sorted(set(data.get("task_ids") or []) | set(task_ids)),
            "updated_at": now,
        }
        if not data:
            update["expire_at"] = now + self._retention
        transaction.set(ref, update, merge=True)
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return self._doc(key).get().to_dict()
        except _google_errors() as exc:
            raise RetryableError(f"read delivery {key}: {exc}") from exc


HTTP_CACHE = "http_cache"


class FirestoreConditionalCache:
    """ETag / Last-Modified and the body they validate, per installation and URL.

    A 304 costs no rate limit, so a second read of unchanged data is free. One document per
    (scope, URL), keyed by a hash because URLs hold characters document ids cannot.
    """

    def __init__(self, client: Any, retention: timedelta = timedelta(days=7)) -> None:
        self._client = client
        self._retention = retention

    def _doc(self, scope: str, url: str) -> Any:
        key = hashlib.sha256(f"{scope}\n{url}".encode()).hexdigest()[:40]
        return self._client.collection(HTTP_CACHE).document(key)

    def get(self, scope: str, url: str) -> dict[str, Any] | None:
        try:
            data = self._doc(scope, url).get().to_dict()
        except _google_errors() as exc:
            raise RetryableError(f"read conditional cache for {url}: {exc}") from exc
        if not data or data.get("url") != url or data.get("scope") != scope:
            return None
        return {"etag": data.get("etag"), "last_modified": data.get("last_modified"),
                "body": data.get("body")}

    def put(self, scope: str, url: str, entry: dict[str, Any]) -> None:
        now = datetime.now(timezone.utc)
        try:
            self._doc(scope, url).set({
                "scope": scope, "url": url, "etag": entry.get("etag"),
                "last_modified": entry.get("last_modified"), "body": entry.get("body"),
                "stored_at": now, "expire_at": now + self._retention,
            })
        except _google_errors() as exc:
            # A cache that cannot be written costs rate limit later, not correctness now.
            raise RetryableError(f"write conditional cache for {url}: {exc}") from exc


INSTALLATIONS = "installations"
REPOS = "repos"


def repo_doc_id(full_name: str) -> str:
    """`owner/name` as a document id (ids cannot hold '/'; GitHub names cannot hold ':')."""
    return full_name.replace("/", ":")


class FirestoreInstallations:
    """`installations/{id}` and `repos/{owner:name}`: which repositories the App is installed on."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def apply(self, change: Any, delivery_id: str, now: datetime) -> None:
        batch = self._client.batch()
        installation: dict[str, Any] = {
            "installation_id": change.installation_id,
            "account": change.account,
            "updated_at": now,
            "last_delivery_id": delivery_id,
        }
        if change.status:
            installation["status"] = change.status
        if change.repository_selection:
            installation["repository_selection"] = change.repository_selection
        batch.set(self._client.collection(INSTALLATIONS).document(str(change.installation_id)),
                  installation, merge=True)
        for repo, installed in [(r, True) for r in change.added] + [(r, False) for r in change.removed]:
            batch.set(self._client.collection(REPOS).document(repo_doc_id(repo["full_name"])), {
                "full_name": repo["full_name"],
                "repository_id": repo["id"],
                "private": repo["private"],
                "installation_id": change.installation_id,
                "installed": installed,
                "updated_at": now,
            }, merge=True)
        try:
            batch.commit()
        except _google_errors() as exc:
            raise RetryableError(f"record installation {change.installation_id}: {exc}") from exc
