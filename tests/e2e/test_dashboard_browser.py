"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against `agentops local up`.

The key figures on the page must be what Firestore holds: open incidents, tasks in the queue, active
deployments, each repository's health score, the latest deployment frequency and change failure rate.
The page must load without a console error (a Content-Security-Policy violation is one).

`AGENTOPS_SCREENSHOT=docs/dashboard.png` saves a full-page screenshot (a path relative to the
repository); `AGENTOPS_CHROMIUM` names another Chromium than /usr/bin/chromium.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.emulators

CHROMIUM = os.environ.get("AGENTOPS_CHROMIUM", "/usr/bin/chromium")
OPEN = ("queued", "dispatched", "running", "waiting_approval")


def firestore_figures(client: Any) -> dict[str, Any]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    def count(collection: str, field: str, op: str, value: Any) -> int:
        query = client.collection(collection).where(filter=FieldFilter(field, op, value))
        return len(list(query.stream()))

    scores = {}
    for snapshot in client.collection("repos").stream():
        doc = snapshot.to_dict() or {}
        health = doc.get("health") if isinstance(doc.get("health"), dict) else None
        name = str(doc.get("full_name") or snapshot.id.replace(":", "/"))
        scores[name] = str(health["score"]) if health and health.get("score") is not None else "—"
    newest = [s.to_dict() for s in client.collection("metrics").order_by(
        "date", direction="DESCENDING").limit(1).stream()]
    dora = newest[0]["dora"]["all"] if newest else {}
    per_day = (dora.get("deployment_frequency") or {}).get("per_day")
    rate = (dora.get("change_failure_rate") or {}).get("rate")
    return {
        "open_incidents": str(count("incidents", "closed_at", "==", None)),
        "queue": str(count("tasks", "status", "in", list(OPEN))),
        "active_deployments": str(count("deployments", "active", "==", True)),
        "repo_scores": scores,
        "deployment_frequency": "" if per_day is None else repr(float(per_day)),
        "change_failure_rate": "" if rate is None else repr(float(rate)),
    }


def page_figures(page: Any) -> dict[str, Any]:
    def text(testid: str) -> str:
        return page.get_by_test_id(testid).inner_text().strip()

    def value(testid: str) -> str:
        found = page.get_by_test_id(testid)
        return (found.get_attribute("data-value") or "") if found.count() else ""

    scores = {}
    for cell in page.get_by_test_id("repo-score").all():
        scores[cell.get_attribute("data-repo")] = cell.inner_text().strip()
    return {
        "open_incidents": text("open-incidents-count"),
        "queue": text("queue-count"),
        "active_deployments": text("active-deployments-count"),
        "repo_scores": scores,
        "deployment_frequency": value("kpi-deployment-frequency"),
        "change_failure_rate": value("kpi-change-failure-rate"),
    }


@pytest.fixture
def firestore(local_up, monkeypatch):
    from google.cloud import firestore as gfirestore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{local_up.ports['firestore']}")
    client = gfirestore.Client(project=local_up.project)
    yield client
    client.close()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/ensure-chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_dashboard_in_a_real_browser_shows_what_firestore_holds(local_up, firestore, browser):
    url = f"http://127.0.0.1:{local_up.ports['dashboard']}/"
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    # The system keeps working while we look (the monitor's minute tick makes a task): compare a
    # page with the Firestore it was rendered from, read just before and just after it.
    shown = held = None
    for _ in range(5):
        before = firestore_figures(firestore)
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200
        shown = page_figures(page)
        held = firestore_figures(firestore)
        if before == held and shown == held:
            break
        time.sleep(1)
    assert shown == held

    # The demo history is there from the first second: a queue, incidents, scores and KPIs.
    assert int(held["queue"]) >= 3 and held["open_incidents"] == "1"
    assert held["repo_scores"].get("octo/widgets") not in (None, "—")
    assert held["deployment_frequency"] != ""
    assert page.get_by_test_id("queue-row").count() == int(held["queue"])
    assert page.locator("svg.chart").count() == 5
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert problems == [], problems  # no CSP violation, no script error

    screenshot = os.environ.get("AGENTOPS_SCREENSHOT", "")
    if screenshot:
        target = Path(screenshot) if Path(screenshot).is_absolute() else ROOT / screenshot
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)

    # The links the agents post: a task with what it waits on, and its audit trail.
    page.get_by_role("link", name="demo-review-120").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/tasks/demo-review-120")
    assert "demo-implement-120" in page.get_by_test_id("task-waiting").inner_text()
    assert page.get_by_test_id("task-history").locator("tbody tr").count() >= 2
    page.get_by_role("link", name="audit trail").click()
    page.wait_for_load_state("load")
    assert "/audit?task=demo-review-120" in page.url
    assert problems == [], problems
