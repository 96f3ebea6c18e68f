"""Building Pub/Sub push bodies, and serving WSGI apps on loopback for the emulator to push to."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone

from werkzeug.serving import make_server


def push_body(project: str, topic: str, data: bytes, attributes: Mapping[str, str] | None = None,
              message_id: str | None = None, publish_time: datetime | None = None) -> dict:
    """The body Pub/Sub POSTs to a push endpoint (the emulator sends the same shape)."""
    published = (publish_time or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": dict(attributes or {}),
            "messageId": message_id or str(uuid.uuid4().int)[:16],
            "publishTime": published,
        },
        "subscription": f"projects/{project}/subscriptions/test",
    }


def push(client, project: str, topic: str, data: bytes, **kwargs):
    """POST a push body to a functions-framework test client at the topic's push path."""
    return client.post(f"/projects/{project}/topics/{topic}",
                       json=push_body(project, topic, data, **kwargs))


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port for the duration of the block."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
