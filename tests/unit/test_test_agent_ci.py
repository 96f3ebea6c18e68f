"""The test agent's CI decision: wait, re-run failed workflow runs once, or done (passed, failed, flaky)."""

from __future__ import annotations

import pytest

from functions.orchestrator.core import EventFacts
from functions.orchestrator.core import wake_keys as wake_keys_of
from functions.test_agent.ci import (
    CiFacts,
    CiItem,
    CiPolicy,
    Done,
    Rerun,
    Wait,
    decide_ci,
    record_reruns,
    status_conclusion,
    status_item,
    tests_outcome,
    wait_keys,
)
from functions.test_agent.gates import TEST_OUTCOMES, verdict
from shared.errors import InvalidInput

SHA = "0123456789abcdef0123456789abcdef01234567"
SHORT = SHA[:12]


def run(run_id: int, name: str, conclusion: str = "success", status: str = "completed",
        attempt: int = 1) -> CiItem:
    return CiItem("workflow_run", run_id, name, status, conclusion if status == "completed" else "", attempt,
                  app="github-actions", url=f"https://github.com/o/r/actions/runs/{run_id}")


def check(check_id: int, name: str, conclusion: str = "success", status: str = "completed",
          app: str = "circleci", url: str = "") -> CiItem:
    return CiItem("check_run", check_id, name, status, conclusion if status == "completed" else "", app=app,
                  url=url)


def job(check_id: int, name: str, run_id: int, conclusion: str = "success") -> CiItem:
    return check(check_id, name, conclusion, app="github-actions",
                 url=f"https://github.com/o/r/actions/runs/{run_id}/job/{check_id}")


def facts(*items: CiItem, reruns: dict[str, str] | None = None) -> CiFacts:
    return CiFacts(SHA, tuple(items), reruns or {})


DEFAULT = CiPolicy()

CASES = [
    # (id, facts, policy, expected decision type, expected fields)
    ("workflow in progress", facts(run(1, "CI", status="in_progress")), DEFAULT,
     Wait, {"pending": ("CI",)}),
    ("queued check run", facts(check(5, "lint", status="queued"), run(1, "CI")), DEFAULT,
     Wait, {"pending": ("lint",)}),
    ("all passed", facts(run(1, "CI"), check(5, "lint", "neutral"), status_item(9, "ci/jenkins", "success")),
     DEFAULT, Done, {"tests": "passed", "failed": (), "flaky": ()}),
    ("skipped counts as passing", facts(run(1, "CI", "skipped")), DEFAULT, Done, {"tests": "passed"}),
    ("failed run is re-run once", facts(run(1, "CI", "failure")), DEFAULT,
     Rerun, {"run_ids": (1,), "first_conclusions": {"1": "failure"}}),
    ("timed out run is re-run", facts(run(1, "CI", "timed_out")), DEFAULT,
     Rerun, {"run_ids": (1,), "first_conclusions": {"1": "timed_out"}}),
    ("rerun requested while others still run", facts(run(2, "Docs", "failure"), run(1, "CI", status="queued"),
                                                     run(3, "E2E", "failure")), DEFAULT,
     Rerun, {"run_ids": (2, 3), "first_conclusions": {"2": "failure", "3": "failure"}}),
    ("rerun not started yet", facts(run(1, "CI", "failure"), reruns={"1": "failure"}), DEFAULT,
     Wait, {"pending": ("CI",)}),
    ("rerun running", facts(run(1, "CI", status="in_progress", attempt=2), reruns={"1": "failure"}), DEFAULT,
     Wait, {"pending": ("CI",)}),
    ("rerun passed is flaky", facts(run(1, "CI", "success", attempt=2), run(2, "Lint"),
                                    reruns={"1": "failure"}), DEFAULT,
     Done, {"tests": "flaky", "failed": (), "flaky": ("CI",)}),
    ("rerun failed again", facts(run(1, "CI", "failure", attempt=2), reruns={"1": "failure"}), DEFAULT,
     Done, {"tests": "failed", "failed": ("CI",), "flaky": ()}),
    ("failed beats flaky", facts(run(1, "CI", "success", attempt=2), check(7, "lint", "failure"),
                                 reruns={"1": "failure"}), DEFAULT,
     Done, {"tests": "failed", "failed": ("lint",), "flaky": ("CI",)}),
    ("re-run by someone else is judged on its attempt", facts(run(1, "CI", "success", attempt=2)), DEFAULT,
     Done, {"tests": "passed"}),
    ("failed attempt 2 not in checkpoint is not re-run again", facts(run(1, "CI", "failure", attempt=3)),
     DEFAULT, Done, {"tests": "failed", "failed": ("CI",)}),
    ("rerun disabled", facts(run(1, "CI", "failure")), CiPolicy(rerun_failed=False),
     Done, {"tests": "failed", "failed": ("CI",)}),
    ("cancelled is not re-run", facts(run(1, "CI", "cancelled")), DEFAULT,
     Done, {"tests": "failed", "failed": ("CI",)}),
    ("action required is not re-run", facts(run(1, "CI", "action_required")), DEFAULT,
     Done, {"tests": "failed"}),
    ("failed check run of another app fails, no re-run", facts(check(3, "circleci: build", "failure")),
     DEFAULT, Done, {"tests": "failed", "failed": ("circleci: build",)}),
    ("unknown conclusion never approves", facts(check(3, "build", "exploded")), DEFAULT,
     Done, {"tests": "failed", "failed": ("build",)}),
    ("required filter ignores others", facts(run(1, "CI"), check(4, "optional", "failure")),
     CiPolicy(required=("CI",)), Done, {"tests": "passed"}),
    ("required glob", facts(run(1, "CI / py3.11"), run(2, "CI / py3.12", "failure"), run(3, "Docs")),
     CiPolicy(required=("CI / *",)), Rerun, {"run_ids": (2,)}),
    ("missing required name waits", facts(run(1, "CI")), CiPolicy(required=("CI", "deploy-preview")),
     Wait, {"pending": ("deploy-preview",)}),
    ("missing required name waits even if CI optional", facts(), CiPolicy(required=("CI",), require_ci=False),
     Wait, {"pending": ("CI",)}),
    ("own check runs ignored", facts(check(1, "agent-ops/test", status="in_progress", app="agent-ops"),
                                     check(2, "tests", "failure", app="agent-ops"), run(3, "CI")),
     DEFAULT, Done, {"tests": "passed"}),
    ("own status context ignored", facts(status_item(1, "agent-ops/review", "pending"), run(3, "CI")),
     DEFAULT, Done, {"tests": "passed"}),
    ("required own check is not awaited", facts(run(3, "CI")), CiPolicy(required=("agent-ops/test", "CI")),
     Done, {"tests": "passed"}),
    ("only own items is no CI", facts(check(1, "agent-ops/test", app="agent-ops")), DEFAULT,
     Wait, {"pending": (), "reason": f"no CI has reported on {SHORT} yet"}),
    ("actions jobs collapse into their workflow run",
     facts(job(11, "test (3.11)", 1, "failure"), job(12, "lint", 1), run(1, "CI", "success", attempt=2),
           reruns={"1": "failure"}), DEFAULT, Done, {"tests": "flaky", "failed": (), "flaky": ("CI",)}),
    ("pending actions job does not block when its run is done",
     facts(check(11, "test", status="in_progress", app="github-actions"), run(1, "CI")), DEFAULT,
     Done, {"tests": "passed"}),
    ("actions jobs count without workflow run facts", facts(job(11, "test", 1, "failure")), DEFAULT,
     Done, {"tests": "failed", "failed": ("test",)}),
    ("required job name stands for its workflow run",
     facts(job(11, "test (3.11)", 1, "failure"), run(1, "CI", "failure")),
     CiPolicy(required=("test (3.11)",)),
     Rerun, {"run_ids": (1,)}),
    ("required job with unknown run counts itself",
     facts(check(11, "test", "success", app="github-actions"), run(1, "Other")), CiPolicy(required=("test",)),
     Done, {"tests": "passed"}),
    ("status pending", facts(status_item(1, "ci/jenkins", "pending")), DEFAULT,
     Wait, {"pending": ("ci/jenkins",)}),
    ("status error fails", facts(status_item(1, "ci/jenkins", "error")), DEFAULT,
     Done, {"tests": "failed", "failed": ("ci/jenkins",)}),
    ("latest status per context wins", facts(status_item(1, "ci/jenkins", "failure"),
                                             status_item(2, "ci/jenkins", "success")), DEFAULT,
     Done, {"tests": "passed"}),
    ("latest check run per name wins", facts(check(5, "build", "success"), check(3, "build", "failure")),
     DEFAULT, Done, {"tests": "passed"}),
    ("same workflow name twice told apart", facts(run(1, "CI"), run(2, "CI", status="queued")), DEFAULT,
     Wait, {"pending": ("CI (run 2)",)}),
    ("no CI, required", facts(), DEFAULT,
     Wait, {"pending": (), "reason": f"no CI has reported on {SHORT} yet"}),
    ("no CI, optional", facts(), CiPolicy(require_ci=False),
     Done, {"tests": "none", "failed": (), "flaky": ()}),
]


@pytest.mark.parametrize(("ci_facts", "policy", "kind", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_decide_ci(ci_facts, policy, kind, expected):
    decision = decide_ci(ci_facts, policy)
    assert isinstance(decision, kind), decision
    for name, value in expected.items():
        assert getattr(decision, name) == value, (name, decision)


def test_rerun_then_checkpoint_then_flaky_end_to_end():
    first = decide_ci(facts(run(1, "CI", "failure"), run(2, "Lint")), DEFAULT)
    assert isinstance(first, Rerun)
    checkpoint = record_reruns({}, first)
    assert checkpoint == {"1": "failure"}
    assert isinstance(decide_ci(facts(run(1, "CI", status="queued", attempt=2), reruns=checkpoint), DEFAULT),
                      Wait)
    done = decide_ci(facts(run(1, "CI", "success", attempt=2), run(2, "Lint"), reruns=checkpoint), DEFAULT)
    assert isinstance(done, Done) and done.tests == "flaky"
    assert done.summary_lines == ("🔁 CI: failure, then success on attempt 2", "✅ Lint: success")
    outcome = tests_outcome(done, DEFAULT)
    assert outcome == "flaky"
    result = verdict(outcome, None, None, done.flaky)
    assert result.approve and "CI" in result.summary_markdown


def test_record_reruns_keeps_existing_first_conclusion():
    decision = Rerun((1, 2), {"1": "timed_out", "2": "failure"}, "")
    assert record_reruns({"1": "failure"}, decision) == {"1": "failure", "2": "failure"}


def test_summary_lists_failures_first():
    done = decide_ci(facts(check(1, "b", "success"), check(2, "a", "success"), check(3, "z", "failure"),
                           status_item(4, "ci/x", "pending"), status_item(5, "ci/x", "failure")), DEFAULT)
    assert isinstance(done, Done)
    assert done.summary_lines == (
        "❌ ci/x: status failure", "❌ z: failure", "✅ a: success", "✅ b: success",
    )


def test_wait_reason_names_what_is_pending():
    ci_facts = facts(run(1, "CI", status="in_progress"), check(2, "lint", status="queued"))
    decision = decide_ci(ci_facts, DEFAULT)
    assert decision == Wait(("CI", "lint"), f"waiting for CI on {SHORT}: CI, lint")


def test_hostile_names_are_neutralised():
    name = "@admin <img src=x> | `rm`"
    for decision in (decide_ci(facts(check(1, name, status="queued")), DEFAULT),
                     decide_ci(facts(check(1, name, "failure")), DEFAULT),
                     decide_ci(facts(run(1, name, "failure")), DEFAULT)):
        text = repr(decision)
        assert "@admin" not in text and "<img" not in text and "|" not in text and "`" not in text


def test_many_items_are_capped_in_the_summary():
    done = decide_ci(facts(*(check(index, f"c{index:03d}") for index in range(80))), DEFAULT)
    assert isinstance(done, Done) and len(done.summary_lines) == 51
    assert done.summary_lines[-1] == "… and 30 more"


@pytest.mark.parametrize(("tests", "require_ci", "expected"), [
    ("passed", True, "passed"), ("failed", True, "failed"), ("flaky", False, "flaky"),
    ("none", False, "passed"), ("none", True, "pending"),
])
def test_tests_outcome(tests, require_ci, expected):
    outcome = tests_outcome(Done(tests, (), (), ()), CiPolicy(require_ci=require_ci))
    assert outcome == expected and outcome in TEST_OUTCOMES


def test_no_ci_when_required_never_approves():
    result = verdict(tests_outcome(Done("none", (), (), ()), DEFAULT), None, None, [])
    assert not result.approve and result.check_conclusion == "neutral"


def test_wait_keys_match_the_orchestrator_formats():
    assert wait_keys("o/r", SHA, ["7", 3, 3]) == [
        f"check_suite:o/r@{SHA}",
        f"check_run:o/r@{SHA}",
        f"workflow:o/r@{SHA}",
        f"status:o/r@{SHA}",
        "workflow_run:o/r#3",
        "workflow_run:o/r#7",
    ]


def test_wait_keys_are_those_the_orchestrator_wakes():
    events = [
        ("check_suite", {"check_suite": {"head_sha": SHA}}),
        ("check_run", {"check_run": {"head_sha": SHA}}),
        ("workflow_run", {"workflow_run": {"id": 3, "head_sha": SHA}}),
        ("status", {"sha": SHA}),
    ]
    woken: set[str] = set()
    for event, payload in events:
        woken.update(wake_keys_of(EventFacts(event=event, action="", delivery_id="d", repository="o/r",
                                             installation_id=1, payload=payload)))
    assert set(wait_keys("o/r", SHA, [3])) == woken


def test_status_conclusion_mapping():
    assert [status_conclusion(state) for state in ("success", "failure", "error", "pending")] == \
        ["success", "failure", "failure", ""]


def test_unknown_item_kind_is_refused():
    with pytest.raises(InvalidInput):
        CiItem("deployment", 1, "x", "completed", "success")  # type: ignore[arg-type]
