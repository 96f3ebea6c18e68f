"""Approval gates: which approvals count toward a step. Pure.

An approval is an approving review or an `/approve` comment. It counts only when it was given for
the subject as it is now (the same head SHA: a new push expires it), by a human who is neither the
App, nor a bot, nor the author of the change, who holds the rule's minimum repository role, and who
is among the rule's users or teams when the rule names any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.policy import ROLES, ApprovalRule, role_at_least

REVIEW = "review"
COMMENT = "comment"


@dataclass(frozen=True)
class Approval:
    login: str
    via: str  # REVIEW or COMMENT
    sha: str  # the head SHA it approves
    user_type: str = "User"


@dataclass(frozen=True)
class ApprovalCount:
    counted: tuple[str, ...]
    ignored: tuple[tuple[str, str], ...]  # (login, why it does not count)
    required: int

    @property
    def satisfied(self) -> bool:
        return len(self.counted) >= self.required

    @property
    def missing(self) -> int:
        return max(self.required - len(self.counted), 0)


def approvals_from_reviews(reviews: Iterable[Mapping[str, Any]]) -> list[Approval]:
    """Each reviewer's latest verdict; only an APPROVED one is an approval.

    A later "changes requested" or a dismissal by the same reviewer withdraws the approval.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for review in reviews:
        user = review.get("user") or {}
        state = str(review.get("state") or "").upper()
        if not user.get("login") or state not in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            continue  # COMMENTED and PENDING reviews leave an earlier verdict standing
        latest[str(user["login"])] = review
    return [
        Approval(login, REVIEW, str(review.get("commit_id") or ""), str((review.get("user") or {}).get("type")
                                                                        or "User"))
        for login, review in latest.items()
        if str(review.get("state")).upper() == "APPROVED"
    ]


def candidates(approvals: Sequence[Approval]) -> list[str]:
    """Logins whose role or team membership must be looked up to count these approvals."""
    return sorted({a.login for a in approvals if a.user_type != "Bot" and not a.login.endswith("[bot]")})


def count_approvals(
    approvals: Sequence[Approval],
    rule: ApprovalRule,
    head_sha: str,
    app_login: str,
    author: str,
    roles: Mapping[str, str],
    teams_of: Mapping[str, frozenset[str]],
) -> ApprovalCount:
    """Count the approvals for `rule` at `head_sha`. `roles` and `teams_of` come from the API."""
    counted: list[str] = []
    ignored: list[tuple[str, str]] = []
    for approval in approvals:
        login = approval.login
        why = _why_not(approval, rule, head_sha, app_login, author, roles.get(login, "none"),
                       teams_of.get(login, frozenset()))
        if why:
            ignored.append((login, why))
        elif login not in counted:
            counted.append(login)
    return ApprovalCount(tuple(counted), tuple(ignored), rule.count)


def _why_not(approval: Approval, rule: ApprovalRule, head_sha: str, app_login: str, author: str,
             role: str, teams: frozenset[str]) -> str:
    login = approval.login
    if app_login and login.lower() == app_login.lower():
        return "the App cannot approve its own work"
    if approval.user_type == "Bot" or login.endswith("[bot]"):
        return "bots cannot approve"
    if author and login.lower() == author.lower():
        return "the author cannot approve their own change"
    if approval.sha != head_sha:
        return f"approved {approval.sha[:7] or 'an unknown commit'}, not the current head {head_sha[:7]}"
    if not role_at_least(role, rule.permission):
        return f"has the {role} role; {rule.permission} is needed"
    named = bool(rule.users or rule.teams)
    if named and login.lower() not in {u.lower() for u in rule.users} and not (teams & set(rule.teams)):
        return "is not among the approvers this step names"
    return ""


def summary(count: ApprovalCount, step: str) -> str:
    text = f"{step}: {len(count.counted)} of {count.required} approvals"
    if count.counted:
        text += f" ({', '.join(count.counted)})"
    return text


__all__ = ["ROLES", "Approval", "ApprovalCount", "approvals_from_reviews", "candidates",
           "count_approvals", "summary"]
