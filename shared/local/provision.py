"""Create the Pub/Sub topology on the emulator (or any Pub/Sub endpoint) from shared.topology.

Used by `agentops local up` and by the integration tests, so both run the same topology that
Terraform declares in production: schemas, topics with JSON-encoded Avro schemas, push
subscriptions with retry and dead-letter policies, and a pull subscription per dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared import topology
from shared.messages import schema_text


@dataclass
class PubSubAdmin:
    publisher: Any
    subscriber: Any
    schemas: Any
    project: str

    @classmethod
    def connect(cls, project: str, emulator_host: str) -> PubSubAdmin:
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.schema_service import SchemaServiceClient
        from google.pubsub_v1.services.schema_service.transports import SchemaServiceGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        def channel() -> Any:
            return grpc.insecure_channel(emulator_host)

        return cls(
            publisher=pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel())),
            subscriber=pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel())),
            schemas=SchemaServiceClient(transport=SchemaServiceGrpcTransport(channel=channel())),
            project=project,
        )

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    def create_topic(self, topic: str, schema: str | None = None) -> None:
        from google.api_core.exceptions import AlreadyExists
        from google.pubsub_v1 import Encoding, Schema, SchemaSettings, Topic

        request: dict[str, Any] = {"name": self.topic_path(topic)}
        if schema:
            try:
                self.schemas.create_schema(
                    parent=f"projects/{self.project}",
                    schema=Schema(name="", type_=Schema.Type.AVRO, definition=schema_text(schema)),
                    schema_id=schema,
                )
            except AlreadyExists:
                pass  # provisioning is idempotent: a second `local up` reuses the schema
            request["schema_settings"] = SchemaSettings(
                schema=f"projects/{self.project}/schemas/{schema}", encoding=Encoding.JSON
            )
        try:
            self.publisher.create_topic(request=Topic(**request))
        except AlreadyExists:
            return

    def create_pull_subscription(self, name: str, topic: str, ack_deadline: int = 60) -> None:
        from google.api_core.exceptions import AlreadyExists

        try:
            self.subscriber.create_subscription(request={
                "name": self.subscription_path(name),
                "topic": self.topic_path(topic),
                "ack_deadline_seconds": ack_deadline,
            })
        except AlreadyExists:
            return

    def create_push_subscription(
        self, subscription: topology.Subscription, endpoint: str, minimum_backoff: int | None = None,
        maximum_backoff: int | None = None,
    ) -> None:
        from google.api_core.exceptions import AlreadyExists

        self.create_topic(subscription.dead_letter_topic)
        self.create_pull_subscription(subscription.dead_letter_topic, subscription.dead_letter_topic)
        request = {
            "name": self.subscription_path(subscription.name),
            "topic": self.topic_path(subscription.topic),
            # The topic in the path tells the consumer runtime which schema the message has.
            "push_config": {"push_endpoint": f"{endpoint.rstrip('/')}/{self.topic_path(subscription.topic)}"},
            "ack_deadline_seconds": subscription.ack_deadline_seconds,
            "dead_letter_policy": {
                "dead_letter_topic": self.topic_path(subscription.dead_letter_topic),
                "max_delivery_attempts": subscription.max_delivery_attempts,
            },
            "retry_policy": {
                "minimum_backoff": {"seconds": minimum_backoff
                                    if minimum_backoff is not None
                                    else subscription.minimum_backoff_seconds},
                "maximum_backoff": {"seconds": maximum_backoff
                                    if maximum_backoff is not None
                                    else subscription.maximum_backoff_seconds},
            },
        }
        try:
            self.subscriber.create_subscription(request=request)
        except AlreadyExists:
            return

    def pull_and_ack(self, subscription: str, max_messages: int = 100, timeout: float = 1.0) -> list[Any]:
        """One pull from a pull subscription; acknowledges and returns what came (maybe nothing)."""
        from google.api_core.exceptions import DeadlineExceeded

        path = self.subscription_path(subscription)
        try:
            response = self.subscriber.pull(
                request={"subscription": path, "max_messages": max_messages}, timeout=timeout
            )
        except DeadlineExceeded:
            return []
        received = list(response.received_messages)
        if received:
            self.subscriber.acknowledge(
                request={"subscription": path, "ack_ids": [m.ack_id for m in received]}
            )
        return [m.message for m in received]

    def close(self) -> None:
        for client in (self.publisher, self.subscriber, self.schemas):
            transport = getattr(client, "transport", None) or getattr(client, "_transport", None)
            if transport is not None:
                transport.close()


def provision(
    admin: PubSubAdmin, endpoints: Mapping[str, str], minimum_backoff: int | None = None,
    maximum_backoff: int | None = None,
) -> None:
    """Create every topic and, for each consumer in `endpoints`, its push subscriptions."""
    for topic in topology.TOPICS:
        admin.create_topic(topic.name, topic.schema)
    for subscription in topology.SUBSCRIPTIONS:
        endpoint = endpoints.get(subscription.consumer)
        if endpoint:
            admin.create_push_subscription(subscription, endpoint, minimum_backoff, maximum_backoff)
