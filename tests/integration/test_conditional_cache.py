"""Conditional requests backed by Firestore: the second identical GET is a free 304."""

from __future__ import annotations

import pytest
import requests

from shared.firestore_store import FirestoreConditionalCache
from shared.github.rest import RestClient
from tests.unit.test_github_rest import API, LABELS, Scripted

pytestmark = pytest.mark.emulators


def client(services, script, scope="installation/7"):
    adapter = Scripted(script)
    http = requests.Session()
    http.mount(API, adapter)
    cache = FirestoreConditionalCache(services.firestore())
    return RestClient(API, token=lambda: "t", session=http, cache=cache, cache_scope=scope), adapter


def test_etag_survives_the_instance_and_is_kept_per_installation(services):
    body = LABELS
    first, _ = client(services, [(200, {"ETag": 'W/"abc"'}, body)])
    assert first.request("GET", "/repos/o/r/labels") == body

    # A new instance (cold start) still has the validator.
    second, adapter = client(services, [(304, {"ETag": 'W/"abc"'}, "")])
    assert second.request("GET", "/repos/o/r/labels") == body
    assert adapter.sent[0].headers["If-None-Match"] == 'W/"abc"'
    assert second.stats.hit_ratio == 1.0

    # Another installation must not see this one's cached data.
    other, adapter = client(services, [(200, {}, [])], scope="installation/8")
    assert other.request("GET", "/repos/o/r/labels") == []
    assert "If-None-Match" not in adapter.sent[0].headers
    docs = [d.to_dict() for d in services.firestore().collection("http_cache").stream()]
    assert [(d["scope"], d["etag"]) for d in docs] == [("installation/7", 'W/"abc"')]
    assert docs[0]["expire_at"] > docs[0]["stored_at"]
