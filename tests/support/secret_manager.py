"""The real SecretManagerService gRPC service, served in-process for tests.

Secret Manager has no emulator, so this serves the service's own wire protocol with the message
types shipped in google-cloud-secret-manager; the real client talks to it over an insecure channel.
It implements what the project calls: AccessSecretVersion, with `latest`, numbered versions and
disabled or destroyed versions answering as Secret Manager does.
"""

from __future__ import annotations

import threading
import zlib
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.cloud.secretmanager_v1.types import resources, service

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"


@dataclass
class FakeSecretManagerState:
    # secret id -> list of (data, state) where index + 1 is the version number
    secrets: dict[str, list[tuple[bytes, str]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_with: grpc.StatusCode | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_version(self, secret_id: str, data: bytes) -> int:
        with self.lock:
            versions = self.secrets.setdefault(secret_id, [])
            versions.append((data, "ENABLED"))
            return len(versions)

    def set_state(self, secret_id: str, version: int, state: str) -> None:
        with self.lock:
            data, _ = self.secrets[secret_id][version - 1]
            self.secrets[secret_id][version - 1] = (data, state)


class SecretManagerServer:
    def __init__(self) -> None:
        self.state = FakeSecretManagerState()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
                self._access,
                request_deserializer=service.AccessSecretVersionRequest.deserialize,
                response_serializer=service.AccessSecretVersionResponse.serialize,
            ),
        })
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SecretManagerServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def client(self):
        """The real client library, pointed at this server."""
        from google.cloud import secretmanager
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(self.address)
        return secretmanager.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=channel)
        )

    def _access(self, request: service.AccessSecretVersionRequest, context: grpc.ServicerContext):
        self.state.calls.append(request.name)
        if self.state.fail_with is not None:
            context.abort(self.state.fail_with, "injected failure")
        parts = request.name.split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[2] != "secrets" or parts[4] != "versions":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad name {request.name}")
        secret_id, version = parts[3], parts[5]
        with self.state.lock:
            versions = list(self.state.secrets.get(secret_id, []))
        if not versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found")
        if version == "latest":
            enabled = [n for n, (_, state) in enumerate(versions, 1) if state == "ENABLED"]
            if not enabled:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no enabled version")
            number = enabled[-1]
        elif version.isdigit() and 1 <= int(version) <= len(versions):
            number = int(version)
        else:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found")
        data, state = versions[number - 1]
        if state != "ENABLED":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"Secret Version [{request.name}] is in {state} state")
        return service.AccessSecretVersionResponse(
            name="/".join(parts[:5] + [str(number)]),
            payload=resources.SecretPayload(data=data, data_crc32c=zlib.crc32(data)),
        )
