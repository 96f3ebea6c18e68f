"""The weekly report: Markdown for the report issue and a static HTML page, from constructed weeks."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

import pytest

from functions.metrics import (
    CiRun,
    Deployment,
    Incident,
    MetricsInputs,
    Task,
    Transition,
    daily_metrics,
    week_window,
)
from functions.metrics import report as r
from functions.repo_scout.health import finding
from shared.errors import InvalidInput

MONDAY = date(2026, 11, 30)
START = datetime(2026, 11, 30, tzinfo=UTC)
LAST_START = START - timedelta(days=7)
APP = "agentops[bot]"
ZW = "\u200b"
HOSTILE = '<script>alert(1)</script> "onload=x @everyone [click](https://evil.example) | `x` #7'


def at(hours: float, start: datetime = START) -> datetime:
    return start + timedelta(hours=hours)


def done_task(ident: str, agent: str, start: datetime, hours: float, outcome: str = "succeeded") -> Task:
    return Task(ident, agent, "implement", "octo/shop", (
        Transition(at(hours, start), "", "queued", "orchestrator"),
        Transition(at(hours, start), "queued", "dispatched", "orchestrator"),
        Transition(at(hours + 1, start), "dispatched", outcome, agent)), cost_units=2.0)


def week_doc(start: datetime, *, deploys: int = 2, lead_hours: float = 2.0, failed: int = 0,
             restore_hours: float | None = 1.0, open_incident: bool = False, service: str = "api",
             repository: str = "octo/shop", tasks: int = 3) -> dict:
    """A week's metrics document from constructed events."""
    deployments, first_commits = [], {}
    for index in range(deploys):
        sha = f"{index:07x}{start:%d}"
        kwargs = {"failed_at": at(10 * index + 3, start)} if index < failed else {
            "succeeded_at": at(10 * index + 3, start)}
        deployments.append(Deployment(f"d{index}", repository, service, sha, "succeeded",
                                      at(10 * index, start), deployed_at=at(10 * index + 1, start),
                                      author=APP, **kwargs))
        first_commits[sha] = at(10 * index + 1 - lead_hours, start)
    incidents = []
    if restore_hours is not None:
        incidents.append(Incident("i1", repository, service, "outage", at(5, start),
                                  at(5 + restore_hours, start)))
    if open_incident:
        incidents.append(Incident("i2", repository, service, "outage", at(100, start)))
    work = [done_task(f"t{index}", "code", start, 2 + index) for index in range(tasks)]
    runs = [CiRun("success", at(4, start), repository), CiRun("failure", at(6, start), repository)]
    inputs = MetricsInputs(tuple(deployments), tuple(incidents), first_commits, tuple(work),
                           ci_runs=tuple(runs))
    return daily_metrics(inputs, week_window(start.date()), start + timedelta(days=7, hours=9), APP,
                         daily_budget=10).to_doc()


def entry(hours: float, step: str) -> dict:
    return {"at": at(hours), "step": step, "what": "", "metrics": {}, "decision": ""}


def release(ident: str, hours: float, state: str = "succeeded", *, service: str = "api",
            repository: str = "octo/shop", pull: int = 13, reasons: tuple[str, ...] = ()) -> dict:
    timeline = [entry(hours, "preflight"), entry(hours + 0.5, "canary 10%")]
    if state == "cancelled":  # cancelled in pre-flight: it never served traffic
        timeline = timeline[:1]
    elif state in ("rolling_back", "rolled_back"):
        timeline.append(entry(hours + 1, "rolling_back"))
    elif state == "succeeded":
        timeline.append(entry(hours + 1, "watching"))
    return {"id": ident, "repository": repository, "service": service, "version": f"v{ident}-abc",
            "state": state, "started_at": at(hours), "sha": "0123456789abcdef", "pull_number": pull,
            "reasons": list(reasons), "timeline": timeline}


def incident_doc(ident: str, opened: float, closed: float | None, number: int = 40, service: str = "api",
                 repository: str = "octo/shop") -> dict:
    return {"incident_id": ident, "repository": repository, "service": service, "kind": "outage",
            "opened_at": at(opened), "closed_at": None if closed is None else at(closed),
            "duration_seconds": None if closed is None else (closed - opened) * 3600, "issue_number": number}


def inputs(**kwargs) -> r.WeeklyInputs:
    values = {"week_start": MONDAY, "this_week": week_doc(START), "last_week": week_doc(LAST_START)}
    values.update(kwargs)
    return r.WeeklyInputs(**values)


def row(markdown: str, label: str) -> list[str]:
    """The cells of the table row that starts with `label`."""
    for line in markdown.splitlines():
        if line.startswith(f"| {label} |"):
            return [cell.strip() for cell in line.strip("|").split(" | ")]
    raise AssertionError(f"no row {label!r}")


def section(markdown: str, heading: str) -> str:
    text = markdown.split(f"## {heading}\n", 1)[1]
    return text.split("\n## ", 1)[0]


def mermaid_blocks(markdown: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)\n```", markdown, re.S)


# ---- the week, the title and the marker ------------------------------------------------------------------


def test_title_marker_and_reading_the_marker_back():
    assert r.report_title(MONDAY) == "Weekly report 2026-W49: Mon 30 Nov – Sun 6 Dec 2026"
    assert r.report_title(datetime(2026, 11, 30, 9, tzinfo=UTC)) == r.report_title(MONDAY)
    marker = r.report_marker(MONDAY)
    assert marker == "<!-- agent-ops:weekly-report week=2026-11-30 -->" and marker.startswith(r.MARKER_PREFIX)
    body = r.weekly_markdown(inputs())
    assert body.startswith(marker + "\n")
    assert r.report_week(body) == MONDAY
    assert r.report_week("no marker here") is None
    assert r.report_week("<!-- agent-ops:weekly-report week=2026-12-01 -->") is None  # not a Monday
    assert r.report_week(None) is None  # type: ignore[arg-type]


def test_a_week_must_start_on_a_monday():
    with pytest.raises(InvalidInput):
        r.report_title(date(2026, 12, 1))
    with pytest.raises(InvalidInput):
        r.WeeklyInputs(date(2026, 12, 6), week_doc(START))
    with pytest.raises(InvalidInput):
        r.WeeklyInputs(MONDAY, "not a document")  # type: ignore[arg-type]


def test_a_links_base_must_be_an_http_origin():
    for base in ("javascript:alert(1)", "https://evil.example/x)y", "ftp://x", "https://a b"):
        with pytest.raises(InvalidInput):
            r.weekly_markdown(inputs(), base)
    assert "https://ghe.example/octo/shop/pull/13" in r.weekly_markdown(
        inputs(releases=[release("a", 1)]), "https://ghe.example/")


# ---- the summary -----------------------------------------------------------------------------------------


def test_week_over_week_deltas_and_which_way_is_better():
    this = week_doc(START, deploys=4, lead_hours=1.0, failed=1, restore_hours=3.0, tasks=3)
    last = week_doc(LAST_START, deploys=2, lead_hours=4.0, failed=0, restore_hours=1.0, tasks=3)
    body = r.weekly_markdown(inputs(this_week=this, last_week=last))
    # three of four deploys succeeded this week, two of two last week: more is better
    assert row(body, "Successful deploys") == ["Successful deploys", "3", "2", "↑ +1 (+50%)", "🟢 better"]
    # a lower lead time is better
    assert row(body, "Lead time for changes (median)") == [
        "Lead time for changes (median)", "1h 0m", "4h 0m", "↓ −3h 0m (−75%)", "🟢 better"]
    # a higher change failure rate is worse, in percentage points
    assert row(body, "Change failure rate") == [
        "Change failure rate", "25.0%", "0.0%", "↑ +25.0 pp", "🔴 worse"]
    assert row(body, "Time to restore (median)")[-1] == "🔴 worse"
    # a count of tasks is neither better nor worse; the same value is unchanged
    assert row(body, "Agent tasks ended")[-2:] == ["→ 0", "unchanged"]
    assert row(body, "Spend")[1] == "6.00 of 70.00 budget"
    assert "No metrics for last week" not in body


def test_last_week_missing_shows_dashes():
    body = r.weekly_markdown(inputs(last_week=None))
    cells = row(body, "Lead time for changes (median)")
    assert cells == ["Lead time for changes (median)", "2h 0m", "—", "—", "—"]
    assert all(row(body, headline.label)[2:] == ["—", "—", "—"] for headline in r.HEADLINES)
    assert "No metrics for last week" in body
    assert "↑" not in section(body, "Summary") and "↓" not in section(body, "Summary")
    html = r.weekly_html(inputs(last_week=None))
    assert "No metrics for last week" in html


def test_an_empty_metrics_document_renders_dashes_not_errors():
    body = r.weekly_markdown(r.WeeklyInputs(MONDAY, {}))
    assert row(body, "Successful deploys")[1:] == ["—", "—", "—", "—"]
    assert "No deploys or incidents in any repository this week." in body
    assert "No deploys this week." in body and "No incidents this week." in body
    assert "No open findings." in body and "No tasks ended this week." in body
    assert r.weekly_html(r.WeeklyInputs(MONDAY, {})).startswith("<!DOCTYPE html>")


# ---- DORA per repository ---------------------------------------------------------------------------------


def test_dora_bands_per_repository_and_service_with_their_moves():
    this = week_doc(START, deploys=4, lead_hours=30.0, failed=1)  # 3 successes of 4: a 25% failure rate
    last = week_doc(LAST_START, deploys=2, lead_hours=1.0)
    body = r.weekly_markdown(inputs(this_week=this, last_week=last))
    dora = section(body, "DORA by repository")
    cells = row(dora, "octo/shop")
    assert cells[1] == "3"
    assert cells[3] == "high · 1d 6h 🔴 ↓ from elite"  # lead time got worse
    assert cells[4] == "low · 25.0% 🔴 ↓ from elite"
    assert row(dora, "↳ api")[0] == "↳ api"
    assert row(dora, "**All repositories**")[1] == "3"
    assert "| octo/shop | 50.0% of 2 runs | — | — |" in dora  # builds: one success, one failure


# ---- incidents -------------------------------------------------------------------------------------------


def test_an_open_incident_is_listed_as_open_with_its_age():
    docs = [incident_doc("i1", 5, 6, number=40), incident_doc("i2", 100, None, number=41),
            incident_doc("old", -200, -100, number=2)]  # closed before the week: not listed
    now = START + timedelta(days=7, hours=9)
    body = r.weekly_markdown(inputs(incidents=docs, now=now))
    part = section(body, "Incidents")
    assert "2 opened, 1 closed, 1 still open." in part
    assert "Mean time to restore 1h 0m (median 1h 0m) over 1 restored." in part
    lines = [line for line in part.splitlines() if line.startswith("| ") and "octo/shop#" in line]
    assert "🔴 open for 3d 5h" in lines[0]  # 77 hours at `now`
    assert "octo/shop#41" in lines[0]
    assert "restored in 1h 0m" in lines[1] and "octo/shop#40" in lines[1]
    assert "octo/shop#2" not in part
    html = r.weekly_html(inputs(incidents=docs, now=now))
    assert 'href="https://github.com/octo/shop/issues/41"' in html and "open for 3d 5h" in html


def test_an_open_incident_only_the_metrics_know_is_still_listed():
    this = week_doc(START, open_incident=True)
    body = r.weekly_markdown(inputs(this_week=this, incidents=[]))
    part = section(body, "Incidents")
    assert "still open" in part and "open for 2d 20h" in part  # at the week's end, without `now`


# ---- deploys ---------------------------------------------------------------------------------------------


def test_deploys_per_day_chart_and_releases_table():
    releases = [release("a", 1), release("b", 2), release("c", 26, "rolled_back", reasons=("error rate 9%",)),
                release("d", 50, "cancelled"), release("e", 51, "canary")]
    body = r.weekly_markdown(inputs(releases=releases))
    part = section(body, "Deploys and rollbacks")
    assert ("5 releases: 2 succeeded, 1 rolled back, 1 cancelled, 1 in progress."
            " 4 reached production this week.") in part
    [chart] = mermaid_blocks(part)
    assert chart.splitlines()[0] == "xychart-beta"
    assert '    x-axis ["Mon 30", "Tue 1", "Wed 2", "Thu 3", "Fri 4", "Sat 5", "Sun 6"]' in chart
    assert "    bar [2, 1, 1, 0, 0, 0, 0]" in chart and '    y-axis "Deploys" 0 --> 2' in chart
    assert "[PR 13](https://github.com/octo/shop/pull/13) `0123456`" in part
    assert "↩️ rolled back" in part and "error rate 9%" in part and "`vc-abc`" in part


def test_no_deploys_this_week_draws_no_chart_and_never_divides_by_zero():
    this = week_doc(START, deploys=0, restore_hours=None, tasks=0)
    body = r.weekly_markdown(inputs(this_week=this, releases=[]))
    part = section(body, "Deploys and rollbacks")
    assert "No deploys this week." in part and "```mermaid" not in part
    assert "No tasks ended this week." in body and "pie" not in body
    # releases that never reached production are listed, without a chart
    stopped = [release("x", 3, "failed") | {"timeline": []}]
    part = section(r.weekly_markdown(inputs(this_week=this, releases=stopped)), "Deploys and rollbacks")
    assert "No deploys this week." in part and "❌ failed" in part and "0 reached production" in part
    html = r.weekly_html(inputs(this_week=this, releases=stopped))
    assert "No deploys this week." in html
    assert 'height="0"' in r.svg_bars("none", ["Mon"] * 7, [0] * 7)
    assert "(0%)" in r.svg_shares("none", ["a", "b"], [0, 0])
    assert "<rect" not in r.svg_bars("empty", [], [])


def test_a_release_doc_without_a_start_time_does_not_stop_the_report():
    broken = {"id": "z", "repository": "octo/shop", "service": "api", "state": "succeeded", "timeline": "?"}
    part = section(r.weekly_markdown(inputs(releases=[broken])), "Deploys and rollbacks")
    assert "1 release: 1 succeeded." in part and "| — | octo/shop | api |" in part


# ---- findings --------------------------------------------------------------------------------------------


def test_top_findings_are_severity_ordered_and_capped():
    items = [
        r.TopFinding("octo/shop", finding("octo/shop", "stale_issue", "issue:1", "low", "Old issue",
                                          link="issues/1", label="issue 1")),
        {"repository": "octo/web", "kind": "dependabot_alert", "severity": "critical", "title": "lodash",
         "detail": "prototype pollution", "link": "security/dependabot/3", "label": "alert 3"},
        finding("octo/shop", "ci_failing", "workflow:9", "high", "CI failing: build"),
        {"repository": "octo/web", "kind": "code_scanning_alert", "severity": "critical", "title": "second"},
    ]
    body = r.weekly_markdown(inputs(findings=items), max_findings=3)
    part = section(body, "Top findings")
    bullets = [line for line in part.splitlines() if line.startswith("- ")]
    assert len(bullets) == 3
    assert bullets[0].startswith(
        "- **Critical** octo/web · Dependabot alerts: "
        "[alert 3](https://github.com/octo/web/security/dependabot/3) lodash — prototype")
    assert bullets[1].startswith("- **Critical** octo/web · Code scanning alerts: second")
    assert bullets[2] == "- **High** CI failing: CI failing: build"  # a bare Finding has no repository
    assert "…and 1 more findings (1 low)." in part


# ---- agents ----------------------------------------------------------------------------------------------


def test_what_each_agent_did_from_the_metrics_and_examples():
    this = week_doc(START, tasks=2)
    examples = {"code": [r.Example("opened PR 13 for #12", "octo/shop", 13), "fixed #3 by hand"] + ["x"] * 6}
    body = r.weekly_markdown(inputs(this_week=this, examples=examples))
    part = section(body, "What each agent did")
    [pie] = mermaid_blocks(part)
    assert pie.splitlines()[:3] == [
        "pie showData", "    title Task outcomes this week", '    "Autonomous" : 2']
    assert row(part, "code") == ["code", "2 succeeded", "2", row(part, "code")[3], "4.00"]
    assert row(part, "deploy")[1] == "idle"
    assert f"- octo/shop#13 opened PR 13 for #{ZW}12" in part  # a reference only where the shell put one
    assert f"- fixed #{ZW}3 by hand" in part
    assert "- …and 3 more" in part
    activity = r.agent_activity(this, examples)
    code = next(item for item in activity if item.agent == "code")
    assert code.tasks == {"succeeded": 2, "failed": 0, "cancelled": 0, "blocked": 0} and code.autonomous == 2
    assert {item.agent for item in activity} >= {"code", "deploy", "test"}


def test_activity_given_by_the_shell_is_used_as_is():
    activity = [r.AgentActivity("code", {"succeeded": 1, "running": 2}, autonomous=1, utilisation=0.5,
                                cost_units=3.0)]
    part = section(r.weekly_markdown(inputs(activity=activity)), "What each agent did")
    assert row(part, "code") == ["code", "1 succeeded · 2 running", "1", "50.0%", "3.00"]
    assert "| deploy |" not in part


# ---- size ------------------------------------------------------------------------------------------------


def test_very_many_releases_findings_incidents_and_examples_stay_under_the_limit():
    long = "x" * 5000
    releases = [release(f"r{index}", index % 160, "rolled_back" if index == 3 else "succeeded",
                        service=f"svc-{index}-{long}", reasons=(long,)) for index in range(3000)]
    findings = [{"repository": "octo/shop", "kind": "stale_pr", "severity": "low", "title": long,
                 "detail": long, "link": f"pull/{index}", "label": "PR"} for index in range(2000)]
    incidents = [incident_doc(f"i{index}", index % 160, None, number=index + 1, service=long)
                 for index in range(2000)]
    examples = {f"agent-{index}": [long] * 50 for index in range(100)}
    this = week_doc(START)
    big = inputs(this_week=this, releases=releases, findings=findings, incidents=incidents, examples=examples)
    body = r.weekly_markdown(big)
    assert len(body) <= r.MAX_BODY_CHARS
    assert body.startswith(r.report_marker(MONDAY)) and body.count("```") % 2 == 0
    assert "more releases." in body and "more findings (" in body and "more incidents (" in body
    assert "more agents." in body
    assert "↩️ rolled back" in body  # a rollback is kept when the table is cut
    assert "3000 releases" in body  # the counts cover every release
    # a tighter limit shrinks the lists further, and a last resort cuts at a line
    small = r.weekly_markdown(big, max_chars=20_000)
    assert len(small) <= 20_000 and small.count("```") % 2 == 0
    tiny = r.weekly_markdown(big, max_chars=3_000)
    assert len(tiny) <= 3_000 and tiny.count("```") % 2 == 0 and "cut here" in tiny
    assert r.weekly_html(big).count("<tr>") < 1000


# ---- hostile text ----------------------------------------------------------------------------------------


def hostile_inputs() -> r.WeeklyInputs:
    evil_repo = f"octo/shop{HOSTILE}"
    this = week_doc(START, service=HOSTILE, repository=evil_repo, open_incident=True)
    releases = [release("a", 1, "rolled_back", service=HOSTILE, repository=evil_repo, reasons=(HOSTILE,)),
                release("b", 2, service=HOSTILE) | {"version": HOSTILE, "sha": HOSTILE, "state": HOSTILE}]
    incidents = [incident_doc("i1", 5, 6, service=HOSTILE, repository=evil_repo) | {"kind": HOSTILE},
                 incident_doc("i2", 7, None, service=HOSTILE)]
    findings = [{"repository": evil_repo, "kind": HOSTILE, "severity": HOSTILE, "title": HOSTILE,
                 "detail": HOSTILE, "link": "javascript:alert(1)", "label": HOSTILE},
                {"repository": "octo/shop", "kind": "stale_pr", "severity": "low", "title": HOSTILE,
                 "link": "pull/1", "label": HOSTILE}]
    activity = [r.AgentActivity(HOSTILE, {HOSTILE: 2}, examples=(HOSTILE, r.Example(HOSTILE, evil_repo, 3),
                                                                    r.Example(HOSTILE, "octo/shop", 4)))]
    return r.WeeklyInputs(MONDAY, this, None, releases, incidents, findings, activity)


def test_hostile_text_is_neutralised_in_markdown():
    body = r.weekly_markdown(hostile_inputs())
    assert "<script" not in body and "</script" not in body and "<" not in body.replace(
        r.report_marker(MONDAY), "").replace("<!--", "")
    assert "@everyone" not in body and f"@{ZW}everyone" in body
    assert "[click]" not in body and "](https://evil" not in body and "https://evil" not in body
    assert "javascript:" not in body.replace(f"javascript:{ZW}", "")
    assert "`x`" not in body and "#7" not in body
    # every table row keeps its table's column count: no `|` from the text breaks a table
    for table in re.findall(r"(?:^\|.*\|\n?)+", body, re.M):
        widths = {line.count(" | ") for line in table.strip().splitlines() if not line.startswith("|---")}
        assert len(widths) == 1, table
    # links only to the base, built from checked parts
    assert set(re.findall(r"\]\((https?://[^/]+)", body)) == {"https://github.com"}
    assert "octo/shop#4" in body  # a checked repository keeps its reference; the hostile one has none
    assert re.search(r"octo/shop\S*#3\b", body) is None


def test_mermaid_blocks_hold_only_safe_labels_and_numbers():
    body = r.weekly_markdown(hostile_inputs())
    for block in mermaid_blocks(body):
        assert re.fullmatch(r'[A-Za-z0-9 ._:/+\-"\[\],>\n]*', block), block
        assert "%%" not in block and "<" not in block
    assert r.mermaid_label('a"b]\n[c %%{init}%% <x>') == "a b c init x"
    assert r.mermaid_label('"""') == "item"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "thead", "tbody",
                "tr", "th", "td", "ul", "li", "a", "code", "strong", "span", "figure", "figcaption", "svg",
                "rect", "line", "text"}
ALLOWED_ATTRS = {"lang", "charset", "http-equiv", "content", "name", "href", "rel", "class", "xmlns", "width",
                 "height", "viewbox", "role", "aria-label", "x", "y", "x1", "y1", "x2", "y2", "stroke",
                 "text-anchor"}


def test_hostile_text_is_escaped_in_html_and_nothing_gets_through():
    page = r.weekly_html(hostile_inputs())
    parser = _Collector()
    parser.feed(page)
    tags = {tag for tag, _ in parser.tags}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert name in ALLOWED_ATTRS and not name.startswith("on"), (tag, name)
            if name == "href":
                assert value.startswith("https://github.com/octo/shop/"), value
    assert "<script" not in page.lower() and '"onload' not in page and "@everyone" in "".join(parser.text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &quot;onload=x" in page
    # the text reads as it was written: escaped, not neutralised for Markdown
    assert any("[click](https://evil.example)" in text for text in parser.text)
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page
    assert re.search(r"""(src|href)=["'](?!https://github\.com/)""", page) is None
    assert "url(" not in page and "@import" not in page


def test_html_is_the_same_report_as_markdown():
    item = inputs(releases=[release("a", 1), release("c", 26, "rolled_back")],
                  incidents=[incident_doc("i1", 5, None, number=41)],
                  findings=[finding("octo/shop", "ci_failing", "workflow:9", "high", "CI failing: build")])
    page, body = r.weekly_html(item), r.weekly_markdown(item)
    for text in ("Summary", "DORA by repository", "Incidents", "Deploys and rollbacks", "Top findings",
                 "What each agent did", "↩️ rolled back", "octo/shop#41", "CI failing: build", "unchanged"):
        assert text in body and text in page, text
    assert page.count("<svg") == 2 and "```" not in page
    assert '<a href="https://github.com/octo/shop/pull/13"' in page
