"""Adapters over the Google Cloud client libraries.

This is the only module that imports `google.cloud`, and it does so inside the constructors:
the webhook's cold start must not pay for clients a path does not use.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared import topology
from shared.errors import RetryableError, SecretUnavailable


class PubSubPublisher:
    """Publishes and waits for the ack, bounded by `timeout` so callers can answer in time."""

    def __init__(self, project: str, emulator_host: str = "", timeout: float = 5.0) -> None:
        from google.api_core.retry import Retry
        from google.cloud import pubsub_v1

        kwargs: dict[str, Any] = {}
        if emulator_host:
            import grpc
            from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

            kwargs["transport"] = PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host))
        # A short batch window still lets concurrent requests share one RPC.
        batch = pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.002)
        self._client = pubsub_v1.PublisherClient(batch_settings=batch, **kwargs)
        self._project = project
        self._timeout = timeout
        self._retry = Retry(initial=0.05, maximum=1.0, multiplier=2.0, timeout=timeout)
        self._paths: dict[str, str] = {}

    def _path(self, topic: str) -> str:
        path = self._paths.get(topic)
        if path is None:
            path = self._paths[topic] = self._client.topic_path(self._project, topic)
        return path

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        from google.api_core.exceptions import GoogleAPIError

        try:
            future = self._client.publish(
                self._path(topic), data, retry=self._retry, timeout=self._timeout, **attributes
            )
            return future.result(timeout=self._timeout + 1.0)
        except (GoogleAPIError, concurrent.futures.TimeoutError, TimeoutError) as exc:
            raise RetryableError(f"publish to {topic} failed: {type(exc).__name__}: {exc}") from exc


def firestore_client(project: str, emulator_host: str = "") -> Any:
    """A Firestore client, on the emulator when `emulator_host` is given.

    The library takes the emulator's address only from its process environment, so this is the
    one place that puts it there.
    """
    import os

    from google.cloud import firestore

    if emulator_host:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator_host
    return firestore.Client(project=project)


@dataclass(frozen=True)
class SecretVersion:
    secret_id: str
    version: int
    data: bytes


class SecretManagerSource:
    """Reads Secret Manager with a per-instance TTL cache and optional version pinning.

    Every read is cached for `cache_seconds`, pinned versions too: a version's data never changes,
    but it can be disabled, and a disabled secret must stop working. The webhook secret's
    previous version (the one before `latest`) is
    accepted too while it is enabled, so a rotation is: add a version, update GitHub, then disable
    the old version.
    """

    def __init__(
        self,
        project: str,
        client_factory: Callable[[], Any] | None = None,
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        webhook_secret_id: str = topology.WEBHOOK_SECRET,
        webhook_secret_version: str = "latest",
    ) -> None:
        self._project = project
        self._client_factory = client_factory or _secret_manager_client
        self._client: Any = None
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, SecretVersion | None]] = {}
        self._webhook_secret_id = webhook_secret_id
        self._webhook_secret_version = webhook_secret_version
        from google.api_core.retry import Retry

        # Bounded: the webhook must still answer GitHub within its 10 s.
        self._retry = Retry(initial=0.1, maximum=1.0, multiplier=2.0, timeout=3.0)

    def _fetch(self, secret_id: str, version: str) -> SecretVersion | None:
        from google.api_core import exceptions

        if self._client is None:
            self._client = self._client_factory()
        name = f"projects/{self._project}/secrets/{secret_id}/versions/{version}"
        try:
            response = self._client.access_secret_version(
                request={"name": name}, retry=self._retry, timeout=self._retry.timeout
            )
        except (exceptions.NotFound, exceptions.FailedPrecondition):
            return None  # absent, disabled or destroyed
        except exceptions.GoogleAPIError as exc:
            raise SecretUnavailable(f"read secret {secret_id} ({version}): {type(exc).__name__}") from exc
        number = int(response.name.rsplit("/", 1)[-1])
        return SecretVersion(secret_id, number, bytes(response.payload.data))

    def access(self, secret_id: str, version: str = "latest") -> SecretVersion | None:
        key = (secret_id, version)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached and now - cached[0] < self._cache_seconds:
                return cached[1]
        value = self._fetch(secret_id, version)
        with self._lock:
            self._cache[key] = (now, value)
        return value

    def require(self, secret_id: str, version: str = "latest") -> SecretVersion:
        value = self.access(secret_id, version)
        if value is None or not value.data:
            raise SecretUnavailable(f"secret {secret_id} ({version}) is missing, disabled or empty")
        return value

    def webhook_secrets(self) -> Sequence[bytes]:
        current = self.require(self._webhook_secret_id, self._webhook_secret_version)
        secrets = [current.data]
        if current.version > 1:
            previous = self.access(self._webhook_secret_id, str(current.version - 1))
            if previous is not None and previous.data:
                secrets.append(previous.data)
        return secrets


def _secret_manager_client() -> Any:
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient()


class StaticWebhookSecrets:
    """Local stand-in for Secret Manager: secrets from the environment, via Config."""

    def __init__(self, current: str, previous: str = "") -> None:
        self._secrets = [s.encode() for s in (current, previous) if s]

    def webhook_secrets(self) -> Sequence[bytes]:
        if not self._secrets:
            raise SecretUnavailable("GITHUB_WEBHOOK_SECRET is empty; refusing to verify against nothing")
        return self._secrets
