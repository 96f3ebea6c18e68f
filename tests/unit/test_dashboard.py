"""The dashboard: view models from documents, the handler's routes, headers and escaping."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from functions.dashboard import app as dashboard_app
from functions.dashboard import charts, views

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert(1)</script>"onmouseover="alert(2)'


def task(task_id: str, status: str, agent: str = "test", **extra):
    return {"task_id": task_id, "status": status, "agent": agent, "kind": "test_pull_request",
            "repository": "octo/widgets", "subject": f"subject of {task_id}", "number": 5,
            "created_at": NOW - timedelta(hours=2), "updated_at": NOW - timedelta(hours=1),
            "history": [{"at": NOW - timedelta(hours=2), "from": "", "to": "queued", "reason": "from webhook",
                         "actor": "orchestrator"}], **extra}


def metrics_doc(day: int, per_day: float, rate: float | None):
    return {"date": f"2026-11-{day:02d}", "window": {"days": 1},
            "dora": {"all": {"deployment_frequency": {"per_day": per_day, "deploys": int(per_day),
                                                      "band": "high"},
                             "lead_time": {"median_seconds": 7200.0, "changes": 1, "band": "elite"},
                             "change_failure_rate": {"rate": rate, "failed": 1, "deploys": 2, "band": "low"},
                             "time_to_restore": {"median_seconds": None, "open": 1, "band": "no_data"}}},
            "agents": {"tasks": {"all": {"autonomous_rate": 0.5, "success_rate": 0.75, "ended": 4,
                                         "autonomous": 2, "failed": 1, "blocked": 0}},
                       "cost": {"spent": 3.5, "budget": None},
                       "pull_requests": {"approval_rate": 1.0, "merged": 2}}}


def snapshot(**overrides) -> views.Snapshot:
    values = dict(
        now=NOW,
        agents=[{"name": "test", "state": "busy", "current_task": "t-run", "done": 3, "failed": 1},
                {"name": "deploy", "paused": True, "state": "paused"}],
        control={"agents_paused": {"deploy": {"by": "alice"}}},
        queue=[task("t-wait", "queued", depends_on=["t-approve"], waiting_on="waiting for t-approve"),
               task("t-approve", "waiting_approval", agent="code",
                    approval={"state": "pending", "step": "merge", "rule": {"count": 2},
                              "approvers": [{"login": "alice"}]}),
               task("t-run", "running", waits_for=["check_suite:octo/widgets:abc"])],
        recent_tasks=[task("t-done", "succeeded", result={"status": "succeeded", "summary": "all green"}),
                      task("t-fail", "failed", agent="code", updated_at=NOW - timedelta(minutes=5),
                           result={"status": "failed", "summary": "it broke"})],
        active_deployments=[{"id": "r1", "repository": "octo/widgets", "service": "default",
                             "sha": "abcdef123",
                             "state": "canary", "traffic": 10, "started_at": NOW - timedelta(minutes=20),
                             "timeline": [{"step": "smoke", "what": "smoke passed"}], "active": True}],
        recent_deployments=[{"id": "r0", "repository": "octo/widgets", "service": "default",
                             "sha": "0123456789",
                             "state": "rolled_back", "reasons": ["error rate 5%"],
                             "started_at": NOW - timedelta(days=2)},
                            {"id": "r1", "service": "default", "state": "canary", "started_at": NOW}],
        open_incidents=[{"incident_id": "i1", "repository": "octo/widgets", "service": "default",
                         "kind": "outage", "opened_at": NOW - timedelta(minutes=90), "closed_at": None,
                         "issue_number": 9, "issue_url": "https://github.com/octo/widgets/issues/9"}],
        recent_incidents=[{"incident_id": "i0", "repository": "octo/widgets", "service": "default",
                           "kind": "rollback", "opened_at": NOW - timedelta(days=3),
                           "closed_at": NOW - timedelta(days=3) + timedelta(minutes=30)}],
        repos=[{"id": "octo:widgets", "full_name": "octo/widgets",
                "health": {"score": 72, "reasons": ["−20: Dependabot: 1 finding (1 high)"],
                           "findings_open": 3,
                           "by_severity": {"high": 1, "low": 2}, "scanned_at": NOW, "issue_number": 4}},
               {"id": "octo:gadgets", "full_name": "octo/gadgets"}],
        metrics=[metrics_doc(29, 1.0, 0.5), metrics_doc(30, 2.0, 0.25)],
    )
    values.update(overrides)
    return views.Snapshot(**values)


class FakeReader:
    def __init__(self, snap: views.Snapshot | None = None, tasks=None, audit=None):
        self.snap = snap or snapshot()
        self.tasks = tasks or {}
        self.records = audit or []

    def snapshot(self):
        return self.snap

    def task(self, task_id):
        found = self.tasks.get(task_id)
        return found, [doc for key, doc in self.tasks.items() if key != task_id]

    def audit(self, task_id):
        return self.records

    def now(self):
        return NOW


def request(path="/", method="GET", **args):
    return SimpleNamespace(path=path, method=method, args=args, script_root="")


def handler(reader=None):
    reader = reader or FakeReader()
    return dashboard_app.Dashboard(lambda: reader)


# ---- views -----------------------------------------------------------------------------------------


def test_queue_says_what_each_task_waits_on_oldest_first():
    rows = views.overview(snapshot()).queue
    assert [row.task_id for row in rows] == ["t-approve", "t-run", "t-wait"]
    by_id = {row.task_id: row for row in rows}
    assert by_id["t-wait"].waiting.tasks == (("t-approve", "waiting_approval"),)
    assert by_id["t-wait"].waiting.reason == "waiting for t-approve"
    assert by_id["t-approve"].waiting.approval == "merge: 1 of 2 approval(s) (alice)"
    assert by_id["t-run"].waiting.events == ("check_suite:octo/widgets:abc",)
    assert by_id["t-run"].age == "2h"


def test_a_succeeded_dependency_is_no_longer_waited_on():
    snap = snapshot(queue=[task("a", "queued", depends_on=["b", "c"])],
                    recent_tasks=[task("b", "succeeded"), task("c", "failed")])
    assert views.overview(snap).queue[0].waiting.tasks == (("c", "failed"),)


def test_agents_show_paused_counts_and_their_last_result():
    agents = {row.name: row for row in views.overview(snapshot()).agents}
    assert [row.name for row in views.overview(snapshot()).agents][:6] == [
        "scout", "code", "test", "qa", "deploy", "monitor"]
    assert agents["deploy"].paused and agents["deploy"].state == "paused"
    assert agents["test"].state == "busy" and agents["test"].current_task == "t-run"
    assert agents["test"].counts == {"queued": 1, "running": 1, "succeeded": 1}
    assert agents["test"].last_result == "succeeded" and agents["test"].last_summary == "all green"
    assert agents["code"].last_task == "t-fail" and agents["code"].last_result == "failed"
    assert agents["scout"].state == "not started" and agents["scout"].counts == {}


def test_deployments_split_in_progress_from_recent():
    page = views.overview(snapshot())
    assert [d.release_id for d in page.active_deployments] == ["r1"]
    assert page.active_deployments[0].traffic == 10 and page.active_deployments[0].sha == "abcdef1"
    assert [d.release_id for d in page.recent_deployments] == ["r0"]
    assert page.recent_deployments[0].reasons == "error rate 5%"


def test_incidents_open_and_closed():
    page = views.overview(snapshot())
    assert [(i.incident_id, i.age) for i in page.open_incidents] == [("i1", "1h 30m")]
    assert page.open_incidents[0].issue_url.startswith("https://")
    assert [(i.incident_id, i.duration) for i in page.recent_incidents] == [("i0", "30m")]


def test_only_https_links_are_kept():
    assert views.safe_url("javascript:alert(1)") == ""
    assert views.safe_url('https://x/"><script>') == ""
    assert views.safe_url("https://github.com/o/r/issues/1") == "https://github.com/o/r/issues/1"


def test_repo_health_and_not_scanned_yet():
    repos = {row.repository: row for row in views.overview(snapshot()).repos}
    widgets = repos["octo/widgets"]
    assert (widgets.score, widgets.grade, widgets.findings_open) == (72, "fair", 3)
    assert widgets.by_severity == (("high", 1), ("low", 2))
    assert not repos["octo/gadgets"].scanned and repos["octo/gadgets"].score is None


def test_kpis_from_the_newest_metrics_document_with_trends():
    kpis = views.overview(snapshot()).kpis
    assert kpis.date == "2026-11-30" and kpis.points == 2
    values = {kpi.key: kpi for kpi in kpis.dora + kpis.agents}
    assert values["kpi-deployment-frequency"].value == "2/day"
    assert values["kpi-deployment-frequency"].raw == "2.0"
    assert values["kpi-change-failure-rate"].value == "25%"
    assert values["kpi-lead-time"].value == "2h"
    assert values["kpi-time-to-restore"].value == "—" and values["kpi-time-to-restore"].raw == ""
    assert values["kpi-autonomous-rate"].value == "50%"
    assert [trend.key for trend in kpis.trends] == [
        "trend-deployment-frequency", "trend-lead-time", "trend-change-failure-rate", "trend-autonomous-rate",
        "trend-spend"]
    assert all(trend.svg.startswith("<svg") for trend in kpis.trends)


def test_durations_read_well():
    assert [views.duration(s) for s in (None, 5, 125, 3600, 3660, 90000, 86400 * 3)] == [
        "—", "5s", "2m", "1h", "1h 1m", "1d 1h", "3d"]


def test_line_chart_escapes_labels_and_survives_no_data():
    svg = charts.line_chart('<b>"x"</b>', ["<i>"], [charts.Series("s", [None])])
    assert "<b>" not in svg and "<i>" not in svg and "no data yet" in svg
    svg = charts.line_chart("t", ["a", "b", "c"], [charts.Series("s", [0, None, 0])])
    assert "polyline" not in svg and svg.count("<circle") == 2
    svg = charts.line_chart("t", ["a", "b"], [charts.Series("s", [1.0, 3.0])], unit="%")
    assert "polyline" in svg and "5%" in svg  # a round axis top above 3


def test_task_page_has_history_dependencies_and_dependents():
    main = task("a", "queued", depends_on=["b"])
    page = views.task_page("a", main, [task("b", "running"), task("c", "queued", depends_on=["a"])], NOW)
    assert page.found and page.dependencies == (("b", "running"),) and page.dependents == (("c", "queued"),)
    assert [h.target for h in page.history] == ["queued"]
    assert not views.task_page("zz", None, [], NOW).found


# ---- the handler -----------------------------------------------------------------------------------


def test_overview_renders_every_panel_with_stable_test_ids():
    body, status, headers = handler()(request("/"))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for testid, value in (("open-incidents-count", "1"), ("queue-count", "3"),
                          ("active-deployments-count", "1")):
        assert re.search(rf'data-testid="{testid}">{value}<', body), testid
    assert re.search(r'data-testid="repo-score" data-repo="octo/widgets">72<', body)
    assert 'data-testid="kpi-deployment-frequency" data-value="2.0">2/day<' in body
    assert "not scanned yet" in body
    assert 'href="/tasks/t-wait"' in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_anything_but_get_and_head_is_405_with_allow(method):
    body, status, headers = handler()(request("/", method=method))
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert headers["Content-Security-Policy"]


def test_head_answers_headers_without_a_body():
    body, status, headers = handler()(request("/", method="HEAD"))
    assert (body, status) == ("", 200) and headers["Cache-Control"] == "no-store"


def test_security_headers_and_a_csp_that_allows_exactly_the_page_stylesheet():
    body, _, headers = handler()(request("/"))
    csp = headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; style-src 'sha256-")
    assert "script-src" not in csp and "unsafe-inline" not in csp and "img-src data:" in csp
    css = re.search(r"<style>(.*?)</style>", body, re.S).group(1)
    assert dashboard_app.style_hash(css) in csp
    assert "<script" not in body and " style=" not in body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"


def test_hostile_repository_text_is_inert():
    hostile = task("t-evil", "queued", subject=HOSTILE, waiting_on=HOSTILE, waits_for=[HOSTILE],
                   repository='octo/"><img src=x onerror=alert(3)>')
    snap = snapshot(queue=[hostile],
                    repos=[{"id": "x", "full_name": HOSTILE, "health": {"score": 1, "reasons": [HOSTILE]}}],
                    open_incidents=[{"incident_id": "i", "service": HOSTILE, "kind": HOSTILE,
                                     "opened_at": NOW, "issue_url": "javascript:alert(4)",
                                     "issue_number": 1}])
    body, status, _ = handler(FakeReader(snap))(request("/"))
    assert status == 200
    assert "<script>" not in body and "<img" not in body and "javascript:" not in body
    assert '"onmouseover=' not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;onmouseover=&#34;alert(2)" in body


def test_empty_database_says_nothing_yet():
    empty = views.Snapshot(now=NOW)
    body, status, _ = handler(FakeReader(empty))(request("/"))
    assert status == 200
    assert 'data-testid="nothing-yet"' in body and "The queue is empty." in body
    assert "No metrics yet" in body and "No deployment in progress." in body
    assert re.search(r'data-testid="open-incidents-count">0<', body)


def test_task_page_and_its_audit_trail():
    tasks = {"t1": task("t1", "queued", subject=HOSTILE, depends_on=["t2"]), "t2": task("t2", "running")}
    record = {"at": NOW, "actor": "test", "action": "dispatch", "subject": HOSTILE, "outcome": "ok",
              "chain": "c", "seq": 1, "link": "javascript:x"}
    reader = FakeReader(tasks=tasks, audit=[record])
    body, status, _ = handler(reader)(request("/tasks/t1"))
    assert status == 200 and "<script>" not in body and 'href="/tasks/t2"' in body
    assert 'href="/audit?task=t1"' in body
    body, status, _ = handler(reader)(request("/audit", task="t1"))
    assert status == 200 and 'data-testid="audit-row"' in body and "javascript:" not in body
    assert handler(reader)(request("/tasks/nope"))[1] == 404
    assert handler(reader)(request("/tasks/a/b"))[1] == 404
    assert handler(reader)(request("/audit"))[1] == 404


def test_healthz_and_unknown_paths():
    assert handler()(request("/healthz"))[:2] == ("ok\n", 200)
    assert handler()(request("/nope"))[1] == 404


def test_firestore_unavailable_is_503():
    from shared.errors import RetryableError

    class Broken(FakeReader):
        def snapshot(self):
            raise RetryableError("read agents: unavailable")

    assert handler(Broken())(request("/"))[1] == 503


def test_every_template_autoescapes():
    env = dashboard_app._environment()
    for name in env.list_templates(extensions=["html"]):
        assert env.get_template(name).environment.autoescape is True
