"""Approval gates: which reviews and /approve comments count toward a step."""

from __future__ import annotations

import pytest

from functions.orchestrator import approvals
from functions.orchestrator.approvals import COMMENT, REVIEW, Approval, ApprovalCount
from shared.policy import ApprovalRule

HEAD = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"
OLD = "1234567abcdef0123456789abcdef0123456789a"
APP_LOGIN = "agent-ops[bot]"
AUTHOR = "carol"
ROLES = {"alice": "write", "bob": "maintain", "dave": "admin", "erin": "read", "frank": "triage",
         "carol": "admin"}
TEAMS = {"bob": frozenset({"octo-org/release"}), "dave": frozenset({"octo-org/platform"})}

WRITER = ApprovalRule()
MAINTAINER = ApprovalRule(permission="maintain")
NAMED_USER = ApprovalRule(users=("Alice",))
NAMED_TEAM = ApprovalRule(teams=("octo-org/release",))
TWO = ApprovalRule(count=2)


def approval(login: str, sha: str = HEAD, via: str = REVIEW, user_type: str = "User") -> Approval:
    return Approval(login, via, sha, user_type)


COUNT_CASES = [
    # (id, approvals, rule, counted, ignored)
    ("human-writer-at-head", [approval("alice")], WRITER, ["alice"], []),
    ("comment-counts-like-a-review", [approval("alice", via=COMMENT)], WRITER, ["alice"], []),
    ("the-app", [approval(APP_LOGIN, user_type="Bot")], WRITER, [],
     [(APP_LOGIN, "the App cannot approve its own work")]),
    ("the-app-any-case", [approval("Agent-Ops[Bot]")], WRITER, [],
     [("Agent-Ops[Bot]", "the App cannot approve its own work")]),
    ("a-bot-by-type", [approval("helper", user_type="Bot")], WRITER, [], [("helper", "bots cannot approve")]),
    ("dependabot", [approval("dependabot[bot]")], WRITER, [], [("dependabot[bot]", "bots cannot approve")]),
    ("the-author", [approval("carol")], WRITER, [],
     [("carol", "the author cannot approve their own change")]),
    ("the-author-any-case", [approval("Carol")], WRITER, [],
     [("Carol", "the author cannot approve their own change")]),
    ("stale-sha", [approval("alice", sha=OLD)], WRITER, [],
     [("alice", "approved 1234567, not the current head 9f8e7d6")]),
    ("unknown-sha", [approval("alice", sha="")], WRITER, [],
     [("alice", "approved an unknown commit, not the current head 9f8e7d6")]),
    ("read-below-write", [approval("erin")], WRITER, [], [("erin", "has the read role; write is needed")]),
    ("triage-below-write", [approval("frank")], WRITER, [],
     [("frank", "has the triage role; write is needed")]),
    ("no-role-at-all", [approval("mallory")], WRITER, [],
     [("mallory", "has the none role; write is needed")]),
    ("write-below-maintain", [approval("alice"), approval("bob"), approval("dave")], MAINTAINER,
     ["bob", "dave"], [("alice", "has the write role; maintain is needed")]),
    ("named-user-in-any-case", [approval("alice")], NAMED_USER, ["alice"], []),
    ("named-user-out", [approval("dave")], NAMED_USER, [],
     [("dave", "is not among the approvers this step names")]),
    ("named-team-in", [approval("bob")], NAMED_TEAM, ["bob"], []),
    ("named-team-out", [approval("dave"), approval("alice")], NAMED_TEAM, [],
     [("dave", "is not among the approvers this step names"),
      ("alice", "is not among the approvers this step names")]),
    ("named-but-role-too-low", [approval("erin")], ApprovalRule(users=("erin",)), [],
     [("erin", "has the read role; write is needed")]),
    ("same-login-twice-counts-once", [approval("alice"), approval("alice", via=COMMENT)], TWO, ["alice"], []),
    ("stale-then-current", [approval("alice", sha=OLD), approval("alice")], WRITER, ["alice"],
     [("alice", "approved 1234567, not the current head 9f8e7d6")]),
    ("two-of-two", [approval("alice"), approval("bob")], TWO, ["alice", "bob"], []),
    ("none", [], WRITER, [], []),
]


@pytest.mark.parametrize("given,rule,counted,ignored", [c[1:] for c in COUNT_CASES],
                         ids=[c[0] for c in COUNT_CASES])
def test_count_approvals(given, rule, counted, ignored):
    count = approvals.count_approvals(given, rule, HEAD, APP_LOGIN, AUTHOR, ROLES, TEAMS)
    assert count.counted == tuple(counted)
    assert count.ignored == tuple(ignored)
    assert count.required == rule.count


SATISFIED_CASES = [
    ("none-of-one", 0, 1, False, 1),
    ("one-of-one", 1, 1, True, 0),
    ("one-of-two", 1, 2, False, 1),
    ("three-of-two", 3, 2, True, 0),
    ("none-needed", 0, 0, True, 0),
]


@pytest.mark.parametrize("counted,required,satisfied,missing", [c[1:] for c in SATISFIED_CASES],
                         ids=[c[0] for c in SATISFIED_CASES])
def test_satisfied_and_missing(counted, required, satisfied, missing):
    count = ApprovalCount(tuple(f"user{n}" for n in range(counted)), (), required)
    assert (count.satisfied, count.missing) == (satisfied, missing)


def review(login: str, state: str, sha: str = HEAD, user_type: str = "User") -> dict:
    return {"user": {"login": login, "type": user_type}, "state": state, "commit_id": sha}


REVIEW_CASES = [
    # (id, reviews in order, expected approvals)
    ("approved", [review("alice", "APPROVED")], [approval("alice")]),
    ("lower-case-state", [review("alice", "approved")], [approval("alice")]),
    ("changes-requested-withdraws", [review("alice", "APPROVED"), review("alice", "CHANGES_REQUESTED")], []),
    ("commented-keeps-it", [review("alice", "APPROVED", OLD), review("alice", "COMMENTED")],
     [approval("alice", sha=OLD)]),
    ("pending-keeps-it", [review("alice", "APPROVED"), review("alice", "PENDING")], [approval("alice")]),
    ("dismissed-withdraws", [review("alice", "APPROVED"), review("alice", "DISMISSED")], []),
    ("approved-again-after-changes", [review("alice", "CHANGES_REQUESTED"), review("alice", "APPROVED")],
     [approval("alice")]),
    ("latest-sha-wins", [review("alice", "APPROVED", OLD), review("alice", "APPROVED")], [approval("alice")]),
    ("per-reviewer",
     [review("alice", "APPROVED"), review("bob", "CHANGES_REQUESTED"), review("bob", "COMMENTED")],
     [approval("alice")]),
    ("bot-type-carried", [review("helper", "APPROVED", user_type="Bot")],
     [approval("helper", user_type="Bot")]),
    ("missing-user-type", [{"user": {"login": "alice"}, "state": "APPROVED", "commit_id": HEAD}],
     [approval("alice")]),
    ("ghost-reviewer", [{"user": None, "state": "APPROVED", "commit_id": HEAD}], []),
    ("missing-commit", [{"user": {"login": "alice"}, "state": "APPROVED"}], [approval("alice", sha="")]),
]


@pytest.mark.parametrize("reviews,expected", [c[1:] for c in REVIEW_CASES], ids=[c[0] for c in REVIEW_CASES])
def test_approvals_from_reviews(reviews, expected):
    assert approvals.approvals_from_reviews(reviews) == expected


def test_candidates_are_the_humans_to_look_up():
    given = [approval("bob"), approval("alice"), approval("bob", via=COMMENT),
             approval("dependabot[bot]"), approval("helper", user_type="Bot")]
    assert approvals.candidates(given) == ["alice", "bob"]


SUMMARY_CASES = [
    ("none", ApprovalCount((), (("erin", "has the read role; write is needed"),), 1),
     "deploy: 0 of 1 approvals"),
    ("some", ApprovalCount(("alice", "bob"), (), 2), "deploy: 2 of 2 approvals (alice, bob)"),
]


@pytest.mark.parametrize("count,text", [c[1:] for c in SUMMARY_CASES], ids=[c[0] for c in SUMMARY_CASES])
def test_summary(count, text):
    assert approvals.summary(count, "deploy") == text
