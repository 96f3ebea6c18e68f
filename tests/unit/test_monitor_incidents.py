"""The monitor's incident decisions: one issue per outage, edited in place, closed on recovery; and MTTR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.monitor_agent.incidents import (
    INCIDENT_LABELS,
    MAX_BODY_CHARS,
    ActiveIncident,
    CloseIncident,
    IncidentPolicy,
    MonitorState,
    OpenIncident,
    ReportBreach,
    UpdateIncident,
    decide,
    format_duration,
    incident_markdown,
    incident_marker,
    issue_created,
    mttr,
    neutralise,
)
from functions.monitor_agent.slo import Probe, SloTarget, add_probe, empty_bucket, evaluate
from shared.errors import ConfigError

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
ISSUE = 42


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def ok(minute: float) -> Probe:
    return Probe(at(minute), True, 200, 80.0)


def bad(minute: float, error: str = "unavailable", status: int = 503) -> Probe:
    return Probe(at(minute), False, status, 15.0, error)


def run(probes, state: MonitorState | None = None, policy: IncidentPolicy | None = None,
        number: int | None = ISSUE):
    """Feed probes through decide; when an incident is opened, the shell 'creates' issue `number`."""
    state = state or MonitorState()
    steps = []
    for probe in probes:
        state, actions = decide(state, probe, policy or IncidentPolicy(), service="widgets")
        if number is not None and any(isinstance(action, OpenIncident) for action in actions):
            state = issue_created(state, number)
        steps.append(actions)
    return state, steps


def kinds(actions) -> list[str]:
    return [type(action).__name__ for action in actions if not isinstance(action, ReportBreach)]


# ---------------------------------------------------------------------------------------------
# Opening


@pytest.mark.parametrize("failures,opened", [(1, False), (2, False), (3, True)])
def test_the_third_consecutive_failure_opens_one_incident(failures, opened):
    state, steps = run([bad(m) for m in range(failures)])
    assert state.consecutive_failures == failures
    assert [kinds(actions) for actions in steps[:-1]] == [[]] * (failures - 1)
    assert kinds(steps[-1]) == (["OpenIncident"] if opened else [])
    assert (state.open_incident is not None) == opened
    if opened:
        action = steps[-1][-1]
        assert action.labels == INCIDENT_LABELS
        assert action.title == "Incident: widgets is failing its health checks"
        assert incident_marker("widgets") in action.body
        assert state.open_incident == ActiveIncident(ISSUE, at(2), at(2), 3, "status 503: unavailable", at(0))


def test_every_failure_reports_a_breach_and_successes_do_not():
    _, steps = run([bad(0), bad(1), ok(2), bad(3), bad(4), bad(5), bad(6)])
    breaches = [[action for action in actions if isinstance(action, ReportBreach)] for actions in steps]
    assert [len(found) for found in breaches] == [1, 1, 0, 1, 1, 1, 1]
    assert breaches[0][0] == ReportBreach("widgets", "widgets failed its health probe 1 time(s) in a row: "
                                                     "status 503: unavailable")
    assert "3 time(s)" in breaches[5][0].reason


def test_a_success_between_failures_restarts_the_count():
    state, steps = run([bad(0), bad(1), ok(2), bad(3), bad(4)])
    assert state.open_incident is None and state.consecutive_failures == 2
    assert all(kinds(actions) == [] for actions in steps)


def test_open_after_one_opens_on_the_first_failure():
    _, steps = run([bad(0)], policy=IncidentPolicy(open_after=1))
    assert kinds(steps[0]) == ["OpenIncident"]


# ---------------------------------------------------------------------------------------------
# Updating


def test_later_failures_edit_the_issue_at_most_every_fifteen_minutes():
    probes = [bad(m) for m in range(0, 40)]
    state, steps = run(probes)
    updates = {index: actions for index, actions in enumerate(steps) if kinds(actions) == ["UpdateIncident"]}
    assert list(updates) == [17, 32]  # opened at minute 2, then 15 and 30 minutes later
    assert all(kinds(actions) in ([], ["OpenIncident"], ["UpdateIncident"]) for actions in steps)
    update = updates[17][-1]
    assert isinstance(update, UpdateIncident)
    assert update.number == ISSUE and "| Failed probes | 18 |" in update.body
    assert state.open_incident.failures == 40  # the streak that opened it counts
    assert state.open_incident.last_updated_at == at(32)


def test_a_new_error_edits_the_issue_at_once():
    state, steps = run([bad(0), bad(1), bad(2), bad(3), bad(4, "timeout", 0), bad(5, "timeout", 0)])
    assert [kinds(actions) for actions in steps] == [[], [], ["OpenIncident"], [], ["UpdateIncident"], []]
    assert "timeout" in steps[4][-1].body
    assert state.open_incident.last_error == "timeout"


# ---------------------------------------------------------------------------------------------
# Closing


def test_recovery_needs_two_successes_and_closes_with_the_duration():
    state, steps = run([bad(0), bad(1), bad(2), bad(3), ok(10), ok(11), ok(12)])
    assert [kinds(actions) for actions in steps[4:]] == [[], ["CloseIncident"], []]
    close = steps[5][-1]
    assert close == CloseIncident(ISSUE, close.body, timedelta(minutes=9))
    assert "Resolved: widgets recovered after 9 min" in close.body
    assert incident_marker("widgets") in close.body
    assert state.open_incident is None and state.consecutive_successes == 3
    assert state.consecutive_failures == 0 and state.failing_since is None


def test_a_flapping_service_keeps_its_one_incident():
    probes = [bad(0), bad(1), bad(2), ok(3), bad(4), bad(5), bad(6), bad(7), ok(8), bad(9), ok(10), ok(11)]
    state, steps = run(probes)
    opened = [index for index, actions in enumerate(steps) if "OpenIncident" in kinds(actions)]
    closed = [index for index, actions in enumerate(steps) if "CloseIncident" in kinds(actions)]
    assert opened == [2] and closed == [11]
    assert steps[11][-1].duration == timedelta(minutes=9)
    assert state.open_incident is None


def test_close_after_one_success():
    _, steps = run([bad(0), bad(1), bad(2), ok(3)], policy=IncidentPolicy(close_after_successes=1))
    assert kinds(steps[-1]) == ["CloseIncident"]


# ---------------------------------------------------------------------------------------------
# Duplicates and in-flight issues


@pytest.mark.parametrize("probe", [bad(2), ok(2), bad(1), ok(0)],
                         ids=["same-bad", "same-ok", "older", "oldest"])
def test_a_duplicate_or_older_probe_changes_nothing(probe):
    state, _ = run([bad(0), bad(1), bad(2)])
    assert decide(state, probe, service="widgets") == (state, ())


def test_an_open_in_flight_is_not_reopened_nor_updated_until_its_number_is_known():
    state, steps = run([bad(m) for m in range(30)], number=None)
    assert sum(kinds(actions).count("OpenIncident") for actions in steps) == 1
    assert all(kinds(actions) == [] for actions in steps[3:])  # nothing to edit without a number
    assert state.open_incident.number == 0 and state.open_incident.failures == 30
    state = issue_created(state, ISSUE)
    state, actions = decide(state, bad(30), service="widgets")
    assert kinds(actions) == ["UpdateIncident"] and actions[-1].number == ISSUE  # overdue: at once
    assert issue_created(state, 7) == state  # a number is recorded once


def test_recovery_while_the_issue_is_in_flight_closes_by_marker():
    _, steps = run([bad(0), bad(1), bad(2), ok(3), ok(4)], number=None)
    close = steps[-1][-1]
    assert isinstance(close, CloseIncident) and close.number == 0
    assert incident_marker("widgets") in close.body


def test_issue_created_without_an_open_incident_changes_nothing():
    assert issue_created(MonitorState(), ISSUE) == MonitorState()


# ---------------------------------------------------------------------------------------------
# State documents and policy


def test_state_round_trips_through_its_document():
    state, _ = run([bad(0), bad(1), bad(2), bad(3)])
    assert MonitorState.from_doc(state.to_doc()) == state
    assert MonitorState.from_doc(MonitorState().to_doc()) == MonitorState()
    assert MonitorState.from_doc(None) == MonitorState()
    assert MonitorState.from_doc({"open_incident": {"number": 3}}).open_incident is None


@pytest.mark.parametrize("kwargs", [{"open_after": 0}, {"close_after_successes": 0},
                                    {"update_every": timedelta(seconds=-1)}])
def test_policies_are_validated(kwargs):
    with pytest.raises(ConfigError):
        IncidentPolicy(**kwargs)


# ---------------------------------------------------------------------------------------------
# Markdown


def incident(**changes) -> ActiveIncident:
    fields = {"number": ISSUE, "opened_at": at(2), "last_updated_at": at(2), "failures": 3,
              "last_error": "status 503: unavailable", "failing_since": at(0)}
    return ActiveIncident(**{**fields, **changes})


def test_markdown_carries_the_marker_the_state_the_slo_and_recent_probes():
    doc = empty_bucket("widgets", T0)
    probes = [bad(0), bad(1), bad(2)]
    for probe in probes:
        doc = add_probe(doc, probe)
    report = evaluate([doc], SloTarget(), at(3))
    body = incident_markdown("widgets", incident(), probes, report)
    lines = body.splitlines()
    assert lines[0] == "<!-- agent-ops:incident:widgets -->"
    assert lines[1] == "## widgets is failing its health checks"
    assert "| Failing since | 2026-12-01 15:00 UTC |" in lines
    assert "| Opened | 2026-12-01 15:02 UTC |" in lines
    assert "- Status: **breached** (3 probes, 3 failed)" in lines
    assert "- Error budget: exhausted" in lines
    assert lines.index("| 2026-12-01 15:02:00 | **failed** | 503 | 15 ms | unavailable |") < \
        lines.index("| 2026-12-01 15:00:00 | **failed** | 503 | 15 ms | unavailable |")  # newest first


def test_markdown_without_slo_or_probes():
    body = incident_markdown("widgets", incident(), [], None)
    assert "### SLO" not in body and "### Recent probes" not in body
    closed_at = at(2) + timedelta(hours=1, minutes=5)
    closed = incident_markdown("widgets", incident(), [], None, closed_at=closed_at)
    assert "| Duration | 1 h 5 min |" in closed


def test_markdown_neutralises_untrusted_text_and_stays_small():
    hostile = "@admin <script>x</script> [link](http://evil) `code` | col\n## heading " + "x" * 100_000
    probes = [Probe(at(m / 10), False, 500, 1.0, hostile) for m in range(200)]
    body = incident_markdown("wid<gets>@team", incident(last_error=hostile), probes, None)
    assert len(body) < MAX_BODY_CHARS
    assert "<script>" not in body and "@admin" not in body and "`" not in body and "](" not in body
    assert "\n## heading" not in body
    assert body.count("<!--") == 1 and body.splitlines()[0] == "<!-- agent-ops:incident:wid-gets-team -->"
    assert body.count("| **failed** |") == 30


def test_neutralise_is_idempotent():
    text = "@a <b> [c] `d` | e\nf"
    assert neutralise(neutralise(text)) == neutralise(text)


@pytest.mark.parametrize("span,text", [
    (timedelta(0), "0 s"), (timedelta(seconds=45), "45 s"), (timedelta(minutes=9), "9 min"),
    (timedelta(minutes=9, seconds=5), "9 min 5 s"), (timedelta(hours=1, minutes=5, seconds=5), "1 h 5 min"),
    (timedelta(days=2, hours=3), "2 d 3 h"), (timedelta(seconds=-5), "0 s"),
])
def test_format_duration(span, text):
    assert format_duration(span) == text


# ---------------------------------------------------------------------------------------------
# MTTR


@pytest.mark.parametrize("incidents,expected", [
    ([], None),
    ([(at(0), None)], None),
    ([(at(0), at(10))], timedelta(minutes=10)),
    ([(at(0), at(10)), (at(20), at(50)), (at(60), None)], timedelta(minutes=20)),
    ([(at(10), at(0)), (at(0), at(4))], timedelta(minutes=4)),  # a corrupt record is left out
])
def test_mttr(incidents, expected):
    assert mttr(incidents) == expected
