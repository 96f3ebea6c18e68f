"""Slack notifications: the body Slack gets, once per key, errors mapped, and the webhook URL kept secret.

A loopback HTTP server stands in for Slack's incoming webhook and answers as Slack documents it
(200 "ok", 400 "invalid_payload", 404 "no_service", 429, 5xx).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.errors import ConfigError, InvalidInput, RetryableError
from shared.notify import MAX_TEXT, NullNotifier, SlackNotifier, escape, notifier, slack_text
from tests.support.agents import MemoryAudit
from tests.support.push import serve

SECRET = "XXXXxxxxSECRETtoken0123"
PATH = f"/services/T0000/B0000/{SECRET}"


class FakeSlack:
    """Records each POST; answers the queued (status, text) in turn, then 200 "ok"."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.answers: list[tuple[int, str]] = []
        self.delay = 0.0
        self.lock = threading.Lock()

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with self.lock:
            self.received.append((environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                  {"content-type": environ.get("CONTENT_TYPE", "")}, body))
            status, text = self.answers.pop(0) if self.answers else (200, "ok")
        if self.delay:
            time.sleep(self.delay)
        start_response(f"{status} Answer", [("Content-Type", "text/html")])
        return [text.encode()]

    def texts(self) -> list[str]:
        return [json.loads(body)["text"] for _, _, _, body in self.received]


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[dict[str, FakeSlack], str]]:
    """One loopback server for the module, answering as the current test's stand-in Slack."""
    current: dict[str, FakeSlack] = {}
    with serve(lambda environ, start_response: current["slack"].wsgi(environ, start_response)) as base:
        yield current, base


@pytest.fixture
def slack(site) -> tuple[FakeSlack, str]:
    current, base = site
    current["slack"] = FakeSlack()
    return current["slack"], base + PATH


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger, the HTTP library's too
    return caplog


def make(url: str, audit: MemoryAudit | None = None, **options: Any) -> tuple[SlackNotifier, MemoryAudit]:
    audit = audit or MemoryAudit()
    return SlackNotifier(url, lambda: audit, **options), audit


def assert_secret_kept(url: str, logs: pytest.LogCaptureFixture, *errors: BaseException) -> None:
    """Neither the URL nor its secret path in any record (the stand-in Slack's own access log aside)
    or in an exception's text, repr or traceback."""
    records = [r for r in logs.records if r.name != "werkzeug"]
    assert any(r.name.startswith("urllib3") for r in records) or errors  # the HTTP library did log
    texts = [logging.Formatter("%(name)s %(message)s %(exc_text)s").format(r) for r in records]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    for text in texts:
        assert SECRET not in text and url not in text, text


def test_the_message_is_posted_as_json_text_once_per_key(slack, logs):
    fake, url = slack
    notify, audit = make(url)
    assert notify.notify("rollback:r-1", "widgets v-2 rolled back", "deploy", "octo/widgets") is True
    assert notify.notify("rollback:r-1", "widgets v-2 rolled back", "deploy", "octo/widgets") is False  # sent
    [(method, path, headers, body)] = fake.received
    assert (method, path, headers["content-type"]) == ("POST", PATH, "application/json")
    assert json.loads(body) == {"text": "widgets v-2 rolled back"}
    record = audit.records["rollback:r-1"]
    assert (record["actor"], record["action"], record["outcome"], record["repository"]) == (
        "deploy", "notify_slack", "ok", "octo/widgets")
    assert notify.notify("rollback:r-2", "again", "deploy", "octo/widgets") is True  # another key: sent
    assert fake.texts() == ["widgets v-2 rolled back", "again"]
    assert_secret_kept(url, logs)


def test_slacks_control_characters_are_escaped_and_long_text_is_cut(slack):
    fake, url = slack
    notify, _ = make(url)
    notify.notify("a", "<!channel> 5xx & <https://evil.example|click> > 2%", "monitor", "octo/widgets")
    notify.notify("b", "&" * 5000, "monitor", "octo/widgets")
    notify.notify("c", "x" * 50_000, "monitor", "octo/widgets")
    first, second, third = fake.texts()
    assert first == "&lt;!channel&gt; 5xx &amp; &lt;https://evil.example|click&gt; &gt; 2%"
    assert len(second) <= MAX_TEXT and second.endswith("&amp;…") and second.count("&amp;") == len(second) // 5
    assert len(third) == MAX_TEXT and third.endswith("…")


@pytest.mark.parametrize("text", ["", "plain", "a<b", "&" * 2000, "é" * 4000, "<" * 1000 + "x"])
def test_slack_text_is_within_the_limit_and_never_cuts_an_entity(text):
    cut = slack_text(text)
    assert len(cut) <= MAX_TEXT
    body = cut.removesuffix("…")
    assert body == escape(text)[:len(body)]
    assert escape(text).startswith(body) and not body.endswith(("&", "&a", "&am", "&amp", "&l", "&lt", "&g"))


@pytest.mark.parametrize("status,text", [(400, "invalid_payload"), (403, "action_prohibited"),
                                         (404, "no_service"), (410, "channel_is_archived")])
def test_a_refusal_is_logged_and_audited_beside_the_key_and_returns_false(slack, logs, status, text):
    fake, url = slack
    fake.answers = [(status, text)]
    notify, audit = make(url)
    assert notify.notify("incident:1", "down", "monitor", "octo/widgets") is False
    assert not audit.has("incident:1")
    refused = audit.records["incident:1:refused"]
    assert refused["outcome"] == "refused" and f"{status}: {text}" in refused["error"]
    assert any(r.levelno == logging.ERROR and text in r.getMessage() for r in logs.records)
    assert notify.notify("incident:1", "down", "monitor", "octo/widgets") is True  # a later try may send it
    assert len(fake.received) == 2 and audit.records["incident:1"]["outcome"] == "ok"
    assert_secret_kept(url, logs)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_server_error_or_rate_limit_raises_for_a_retry(slack, logs, status):
    fake, url = slack
    fake.answers = [(status, f"<html>{url} failed</html>")]  # even an answer that names the URL
    notify, audit = make(url)
    with pytest.raises(RetryableError, match=str(status)) as raised:
        notify.notify("k", "down", "monitor", "octo/widgets")
    assert audit.records == {}
    assert_secret_kept(url, logs, raised.value)


def test_a_timeout_raises_for_a_retry(slack, logs):
    fake, url = slack
    fake.delay = 1.0
    notify, audit = make(url, timeout=0.2)
    with pytest.raises(RetryableError, match="no answer within 0.2 s") as raised:
        notify.notify("k", "down", "monitor", "octo/widgets")
    assert audit.records == {}
    assert_secret_kept(url, logs, raised.value)


def test_a_connection_failure_raises_for_a_retry(logs):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}{PATH}"  # nothing listens there now
    notify, audit = make(url, timeout=2)
    with pytest.raises(RetryableError, match="could not be reached") as raised:
        notify.notify("k", "down", "monitor", "octo/widgets")
    assert audit.records == {} and raised.value.__cause__ is None and raised.value.__suppress_context__
    assert_secret_kept(url, logs, raised.value)


def test_the_url_is_not_in_a_repr_and_a_bad_one_is_not_repeated():
    notify, _ = make(f"https://hooks.slack.example{PATH}")
    assert SECRET not in repr(notify) and SECRET not in str(notify)
    with pytest.raises(ConfigError) as bad:
        SlackNotifier(f"hooks.slack.example{PATH}", MemoryAudit)
    assert SECRET not in str(bad.value)
    with pytest.raises(InvalidInput):
        notify.notify("", "x", "deploy", "octo/widgets")


def test_the_null_notifier_sends_nothing_and_the_factory_picks_one():
    assert NullNotifier().notify("k", "text", "deploy", "octo/widgets") is False
    assert isinstance(notifier("", MemoryAudit), NullNotifier)
    assert isinstance(notifier("  ", MemoryAudit), NullNotifier)
    assert isinstance(notifier(f"https://hooks.slack.example{PATH}", MemoryAudit), SlackNotifier)
