"""The repo scout's findings and health score, from facts a shell gathered from GitHub. Pure.

The shell fills a `RepoFacts` per repository (the default branch's workflow runs, Dependabot and
code-scanning alerts, branch protection, open issues and pull requests, the coverage history) and calls
`assess(facts, settings, now)`. It gets the findings, a 0-100 score with the reason of every deduction,
the kinds it could not check, and notes for the health issue. `issue.plan_issue` turns the findings into
the health issue; each finding is stored as `findings/{fingerprint}` (`Finding.to_doc`).

Fingerprints. `fingerprint(repo_key, kind, identity)` is the sha256 of the repository's stable key (its
id, so a rename keeps them), the kind and a stable identity: an alert's number, a pull request's number,
a workflow's id, or a fixed word for repository-wide findings. Never of text (a title, a rate, a date),
so a finding keeps its fingerprint while its text changes, and two kinds never share one.

Rules (thresholds in `ScoutSettings`):

- CI, from the runs on the default branch. Only decisive conclusions count: `success` is green;
  `failure`, `timed_out` and `startup_failure` are red; `cancelled` (superseded by a newer push or a
  concurrency group), `skipped`, `neutral`, `action_required`, `stale` and unfinished runs are ignored.
  `ci_failing`: per workflow, its latest decisive run is red (one finding per workflow, by workflow id).
  `ci_unhealthy`: fewer than `ci_min_success_rate` of the decisive runs of the last `ci_window_days` are
  green (judged only from `ci_min_runs` runs). `ci_stale_green`: no green run for `ci_green_days`,
  while the runs show CI has existed that long (a repository new to CI is not stale yet).
- `dependabot_alert`: one finding per open alert (grouped in the issue), severity as GitHub gives it.
- `code_scanning_alert`: one per open alert where code scanning is enabled; the security severity
  when the rule has one, else error → medium, warning → low, note → info.
- `no_branch_protection`: the default branch is not protected (high), or protected without required
  status checks (low). Rulesets protect branches too: the shell reports "present" when either does.
- `stale_issue` / `stale_pr`: no activity (`updated_at`) for `stale_issue_days` / `stale_pr_days`.
  Items by bots are left out (their bots manage them, as Dependabot closes superseded PRs), and so
  are items labelled with one of `stale_exempt_labels` or with the scout's own label (the health issue).
- `pr_waiting_review`: a ready (not draft) pull request without a first review `first_review_hours`
  after it was opened (or marked ready). Bots' PRs count: they need a human review too. A pull request
  yields one finding at most: waiting for review wins over stale, as it is the more actionable.
- `coverage_dropping`: the newest coverage of the default branch is `coverage_drop_points` or more
  below where it stood at the start of the last `coverage_window_days` (the newest point before the
  window, or else the first one inside it).

A source that is not enabled (Dependabot, code scanning) is checked and has no findings, and a note
says so. A source the app could not read ("unknown": forbidden, not visible) is unchecked: its kinds
are listed in `Assessment.unchecked`, and `merge_unchecked` carries the previously stored findings of
those kinds forward, so a permission problem never ticks real alerts as fixed.

Score: 100 minus, per kind, the sum of `SEVERITY_POINTS` of its findings, capped at `KIND_CAPS[kind]`
so that no single noisy source sinks the score alone; never below 0. It depends on the findings alone
(kinds and severities), so the same findings always give the same score and reasons.

Every text from the repository (workflow, branch and package names, titles, summaries) is untrusted
and goes through `inert`: no mentions, HTML, links, code spans, emphasis or issue references.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared import markdown
from shared.errors import ConfigError

Kind = Literal["ci_failing", "ci_stale_green", "ci_unhealthy", "dependabot_alert", "code_scanning_alert",
               "no_branch_protection", "coverage_dropping", "pr_waiting_review", "stale_pr", "stale_issue"]
Severity = Literal["critical", "high", "medium", "low", "info"]
SourceStatus = Literal["enabled", "not_enabled", "unknown"]
ProtectionStatus = Literal["present", "absent", "unknown"]

# The order of kinds in reasons and in the health issue.
KINDS: tuple[str, ...] = ("ci_failing", "ci_stale_green", "ci_unhealthy", "dependabot_alert",
                          "code_scanning_alert", "no_branch_protection", "coverage_dropping",
                          "pr_waiting_review", "stale_pr", "stale_issue")
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")  # most severe first
KIND_LABELS: Mapping[str, str] = {
    "ci_failing": "CI failing", "ci_stale_green": "No recent green build", "ci_unhealthy": "CI unhealthy",
    "dependabot_alert": "Dependabot alerts", "code_scanning_alert": "Code scanning alerts",
    "no_branch_protection": "Branch protection", "coverage_dropping": "Coverage dropping",
    "pr_waiting_review": "Pull requests waiting for a first review", "stale_pr": "Stale pull requests",
    "stale_issue": "Stale issues",
}
SEVERITY_POINTS: Mapping[str, int] = {"critical": 20, "high": 10, "medium": 4, "low": 1, "info": 0}
KIND_CAPS: Mapping[str, int] = {
    "ci_failing": 25, "ci_stale_green": 15, "ci_unhealthy": 10, "dependabot_alert": 30,
    "code_scanning_alert": 20, "no_branch_protection": 10, "coverage_dropping": 5,
    "pr_waiting_review": 8, "stale_pr": 4, "stale_issue": 3,
}
CI_KINDS = ("ci_failing", "ci_stale_green", "ci_unhealthy")
PULL_KINDS = ("pr_waiting_review", "stale_pr")

SCOUT_LABEL = "agent-ops:scout"  # on the health issue; items with it are never stale
FINGERPRINT_VERSION = "agent-ops/scout/v1"
MAX_TITLE_CHARS = 200
MAX_DETAIL_CHARS = 300
MAX_NAME_CHARS = 100

GREEN_CONCLUSIONS = frozenset({"success"})
RED_CONCLUSIONS = frozenset({"failure", "timed_out", "startup_failure"})

_REFERENCE = re.compile(r"(?i)(#|\bgh-)(?=\d)")
_EXTRA = str.maketrans({"*": "∗", "~": "∼"})
_LINK_PATH = re.compile(r"[A-Za-z0-9/_.-]*")


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class ScoutSettings:
    """The scout's thresholds for one repository (to be read from `.github/agent-ops.yml`)."""

    stale_issue_days: int = 60
    stale_pr_days: int = 30
    first_review_hours: int = 48
    ci_window_days: int = 30
    ci_min_success_rate: float = 0.8  # in (0, 1]
    ci_min_runs: int = 5  # fewer decisive runs in the window: the rate is not judged
    ci_green_days: int = 7
    coverage_window_days: int = 30
    coverage_drop_points: float = 2.0  # percentage points
    stale_exempt_labels: tuple[str, ...] = ("pinned", "security")
    quiet: bool = False  # no health issue at all; the score and findings are still stored

    def __post_init__(self) -> None:
        for name in ("stale_issue_days", "stale_pr_days", "first_review_hours", "ci_window_days",
                     "ci_min_runs", "ci_green_days", "coverage_window_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"scout {name} {value!r} must be a whole number of at least 1")
        if not 0 < self.ci_min_success_rate <= 1:
            raise ConfigError(f"scout ci_min_success_rate {self.ci_min_success_rate!r} must be in (0, 1]")
        if not math.isfinite(self.coverage_drop_points) or self.coverage_drop_points <= 0:
            raise ConfigError(f"scout coverage_drop_points {self.coverage_drop_points!r} must be positive")


# ---------------------------------------------------------------------------------------------
# Facts (filled by the shell from GitHub)


@dataclass(frozen=True)
class WorkflowRun:
    """A workflow run on the default branch. conclusion: None or "" while it runs."""

    id: int
    workflow_id: int
    workflow_name: str
    conclusion: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DependabotAlert:
    number: int
    severity: str  # critical | high | medium (or moderate) | low
    state: str  # open | dismissed | fixed | auto_dismissed
    package: str
    summary: str = ""
    ecosystem: str = ""


@dataclass(frozen=True)
class Dependabot:
    status: SourceStatus  # not_enabled: alerts are off; unknown: the app may not read them
    alerts: tuple[DependabotAlert, ...] = ()


@dataclass(frozen=True)
class CodeScanningAlert:
    number: int
    rule: str  # the rule's id or name
    severity: str  # the rule's severity: error | warning | note | none
    state: str  # open | dismissed | fixed | closed
    security_severity: str | None = None  # critical | high | medium | low, for security rules
    tool: str = ""


@dataclass(frozen=True)
class CodeScanning:
    status: SourceStatus  # not_enabled: no analysis at all, which is not the same as no alerts
    alerts: tuple[CodeScanningAlert, ...] = ()


@dataclass(frozen=True)
class BranchProtection:
    status: ProtectionStatus  # unknown: forbidden (no permission, or a plan without protection)
    required_checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class IssueItem:
    number: int
    title: str
    created_at: datetime
    updated_at: datetime
    author_type: str = "User"  # User | Bot | Organization
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class PullItem:
    number: int
    title: str
    created_at: datetime
    updated_at: datetime
    draft: bool = False
    first_review_at: datetime | None = None  # None: nobody has reviewed it yet
    author_type: str = "User"
    labels: tuple[str, ...] = ()
    ready_at: datetime | None = None  # when a draft was marked ready, if known


@dataclass(frozen=True)
class CoveragePoint:
    at: datetime
    line_rate: float  # percent, 0-100
    sha: str = ""


@dataclass(frozen=True)
class RepoFacts:
    """Everything the scout knows of one repository. None: that source could not be read."""

    repo: str  # owner/name, for text
    default_branch: str
    repo_key: str = ""  # the repository's id, for fingerprints; "" uses the lower-cased name
    runs: tuple[WorkflowRun, ...] | None = ()
    # Unknown unless the shell says otherwise: a source it forgot is reported as not checked.
    dependabot: Dependabot = Dependabot("unknown")
    code_scanning: CodeScanning = CodeScanning("unknown")
    branch_protection: BranchProtection = BranchProtection("unknown")
    issues: tuple[IssueItem, ...] | None = ()
    pulls: tuple[PullItem, ...] | None = ()
    coverage: tuple[CoveragePoint, ...] | None = ()

    @property
    def key(self) -> str:
        return self.repo_key or self.repo.lower()


# ---------------------------------------------------------------------------------------------
# Findings


def inert(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """Repository text made inert in Markdown, at most `limit` characters. Idempotent.

    `shared.markdown.neutralise`, and also no issue references (`#12`, `GH-12`: each would put a
    back-link on that issue or PR at every edit) and no emphasis or strike-through breaking a line.
    """
    keep = 2 * limit + 16
    if len(text) > 2 * keep:  # only the head and the tail can be shown: never process megabytes
        text = text[:keep] + "…" + text[-keep:]
    return markdown.neutralise(_REFERENCE.sub(lambda m: m.group(1) + "\u200b", text).translate(_EXTRA), limit)


def fingerprint(repo_key: str, kind: str, identity: str) -> str:
    """The finding's stable id: sha256 of the repository's key, the kind and a stable identity."""
    if kind not in KINDS:
        raise ValueError(f"unknown finding kind {kind!r}")
    data = "\x00".join((FINGERPRINT_VERSION, repo_key, kind, identity)).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Finding:
    """One problem. title and detail are inert; link is a path inside the repository on GitHub."""

    kind: str
    identity: str
    fingerprint: str
    severity: str
    title: str
    detail: str = ""
    link: str = ""  # "pull/12", "security/dependabot/3", "" for none
    label: str = ""  # the link's text, e.g. "PR 12"

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.kind, "identity": self.identity, "fingerprint": self.fingerprint,
                "severity": self.severity, "title": self.title, "detail": self.detail,
                "link": self.link, "label": self.label}

    @classmethod
    def from_doc(cls, value: Any) -> Finding | None:
        """A stored finding, re-checked and made inert again; None when it is not one."""
        if not isinstance(value, Mapping) or value.get("kind") not in KINDS:
            return None
        fp = str(value.get("fingerprint") or "")
        if not re.fullmatch(r"[0-9a-f]{64}", fp):
            return None
        severity = value.get("severity")
        return cls(str(value["kind"]), str(value.get("identity") or ""), fp,
                   severity if severity in SEVERITIES else "medium",
                   inert(str(value.get("title") or ""), MAX_TITLE_CHARS),
                   inert(str(value.get("detail") or ""), MAX_DETAIL_CHARS),
                   safe_link(str(value.get("link") or "")), inert(str(value.get("label") or ""), 40))


def finding(repo_key: str, kind: str, identity: str, severity: str, title: str, detail: str = "",
            link: str = "", label: str = "") -> Finding:
    """A Finding with its fingerprint, its texts made inert and its link checked."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    return Finding(kind, identity, fingerprint(repo_key, kind, identity), severity,
                   inert(title, MAX_TITLE_CHARS), inert(detail, MAX_DETAIL_CHARS), safe_link(link),
                   inert(label, 40))


def safe_link(link: str) -> str:
    """`link` when it is a plain relative path inside the repository, else "" (no link)."""
    return link if _LINK_PATH.fullmatch(link) and ".." not in link and not link.startswith("/") else ""


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _natural(identity: str) -> tuple[int, str]:
    number = identity.rsplit(":", 1)[-1]
    return (int(number), identity) if number.isascii() and number.isdigit() else (-1, identity)


def sort_key(item: Finding) -> tuple[Any, ...]:
    """Most severe first, then by kind, then by identity (alert and PR numbers in numeric order)."""
    kind = KINDS.index(item.kind) if item.kind in KINDS else len(KINDS)
    return severity_rank(item.severity), kind, _natural(item.identity), item.fingerprint


def _utc(moment: datetime) -> datetime:
    # A naive time is taken as UTC, never as the machine's local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day(moment: datetime) -> str:
    return f"{_utc(moment):%Y-%m-%d}"


# ---- CI ---------------------------------------------------------------------------------------


def _decisive(run: WorkflowRun) -> str | None:
    conclusion = (run.conclusion or "").lower()
    if conclusion in GREEN_CONCLUSIONS:
        return "green"
    if conclusion in RED_CONCLUSIONS:
        return "red"
    return None


def ci_findings(repo_key: str, branch: str, runs: Sequence[WorkflowRun], settings: ScoutSettings,
                now: datetime) -> list[Finding]:
    """ci_failing (per workflow), ci_unhealthy and ci_stale_green from the default branch's runs."""
    now = _utc(now)
    shown_branch = inert(branch)
    decided = sorted(((run, verdict) for run in runs if (verdict := _decisive(run)) is not None),
                     key=lambda pair: (_utc(pair[0].created_at), pair[0].id))
    found: list[Finding] = []

    latest: dict[str, tuple[WorkflowRun, str]] = {}
    for run, verdict in decided:
        key = f"workflow:{run.workflow_id}" if run.workflow_id else f"name:{run.workflow_name}"
        latest[key] = (run, verdict)
    for key, (run, verdict) in sorted(latest.items(), key=lambda item: _natural(item[0])):
        if verdict == "red":
            name = inert(run.workflow_name or f"workflow {run.workflow_id}")
            found.append(finding(
                repo_key, "ci_failing", key, "high", f"Workflow '{name}' fails on {shown_branch}",
                f"its latest run concluded {inert(run.conclusion or '', 30)} on {_day(run.updated_at)}",
                f"actions/runs/{run.id}", f"run {run.id}"))

    since = now - timedelta(settings.ci_window_days)
    window = [verdict for run, verdict in decided if _utc(run.created_at) >= since]
    if len(window) >= settings.ci_min_runs:
        rate = window.count("green") / len(window)
        if rate < settings.ci_min_success_rate:
            found.append(finding(
                repo_key, "ci_unhealthy", "default", "medium",
                f"CI on {shown_branch} succeeds in under {settings.ci_min_success_rate:.0%} of runs",
                f"{rate:.0%} of {len(window)} decisive runs in the last {settings.ci_window_days} days "
                f"were green", "actions", "Actions"))

    greens = [_utc(run.updated_at) for run, verdict in decided if verdict == "green"]
    limit = now - timedelta(settings.ci_green_days)
    if decided:
        if greens and max(greens) < limit:
            detail = f"the last green run finished on {_day(max(greens))}"
        elif not greens and _utc(decided[0][0].created_at) < limit:
            detail = (f"none of the {len(decided)} decisive runs since {_day(decided[0][0].created_at)} "
                      "was green")
        else:
            detail = ""
        if detail:
            found.append(finding(
                repo_key, "ci_stale_green", "default", "high",
                f"No green CI run on {shown_branch} for more than {settings.ci_green_days} days",
                detail, "actions", "Actions"))
    return found


# ---- alerts -----------------------------------------------------------------------------------

_DEPENDABOT_SEVERITY = {"critical": "critical", "high": "high", "medium": "medium", "moderate": "medium",
                        "low": "low"}
_RULE_SEVERITY = {"error": "medium", "warning": "low", "note": "info", "none": "info"}


def dependabot_findings(repo_key: str, alerts: Iterable[DependabotAlert]) -> list[Finding]:
    found = []
    for alert in alerts:
        if alert.state.lower() != "open":
            continue
        severity = _DEPENDABOT_SEVERITY.get(alert.severity.lower(), "medium")
        package = inert(alert.package or "a dependency")
        if alert.ecosystem:
            package += f" ({inert(alert.ecosystem, 30)})"
        found.append(finding(repo_key, "dependabot_alert", f"alert:{alert.number}", severity,
                             f"{package}: {alert.summary or 'vulnerable dependency'}", "",
                             f"security/dependabot/{alert.number}", f"alert {alert.number}"))
    return found


def code_scanning_findings(repo_key: str, alerts: Iterable[CodeScanningAlert]) -> list[Finding]:
    found = []
    for alert in alerts:
        if alert.state.lower() != "open":
            continue
        security = (alert.security_severity or "").lower()
        severity = (_DEPENDABOT_SEVERITY.get(security)
                    or _RULE_SEVERITY.get(alert.severity.lower(), "medium"))
        tool = f" ({inert(alert.tool, 40)})" if alert.tool else ""
        found.append(finding(repo_key, "code_scanning_alert", f"alert:{alert.number}", severity,
                             f"{inert(alert.rule or 'a rule')}{tool}", "",
                             f"security/code-scanning/{alert.number}", f"alert {alert.number}"))
    return found


def protection_findings(repo_key: str, branch: str, protection: BranchProtection) -> list[Finding]:
    shown = inert(branch)
    if protection.status == "absent":
        return [finding(repo_key, "no_branch_protection", "protection", "high",
                        f"The default branch {shown} is not protected",
                        "anyone with write access can push to it or force-push", "settings/branches",
                        "Branches")]
    if protection.status == "present" and not protection.required_checks:
        return [finding(repo_key, "no_branch_protection", "required-checks", "low",
                        f"The default branch {shown} requires no status checks",
                        "a pull request can merge while CI fails", "settings/branches", "Branches")]
    return []


# ---- issues and pull requests -----------------------------------------------------------------


def _exempt(author_type: str, labels: Sequence[str], settings: ScoutSettings) -> bool:
    exempt = {label.lower() for label in (*settings.stale_exempt_labels, SCOUT_LABEL)}
    return author_type.lower() == "bot" or any(label.lower() in exempt for label in labels)


def issue_findings(repo_key: str, issues: Iterable[IssueItem], settings: ScoutSettings,
                   now: datetime) -> list[Finding]:
    limit = _utc(now) - timedelta(settings.stale_issue_days)
    return [finding(repo_key, "stale_issue", f"issue:{issue.number}", "low", issue.title or "(untitled)",
                    f"no activity since {_day(issue.updated_at)}", f"issues/{issue.number}",
                    f"issue {issue.number}")
            for issue in issues
            if _utc(issue.updated_at) < limit and not _exempt(issue.author_type, issue.labels, settings)]


def pull_findings(repo_key: str, pulls: Iterable[PullItem], settings: ScoutSettings,
                  now: datetime) -> list[Finding]:
    now = _utc(now)
    found = []
    for pull in pulls:
        ready = _utc(pull.ready_at or pull.created_at)
        link, label = f"pull/{pull.number}", f"PR {pull.number}"
        title = pull.title or "(untitled)"
        if (not pull.draft and pull.first_review_at is None
                and now - ready >= timedelta(hours=settings.first_review_hours)):
            found.append(finding(repo_key, "pr_waiting_review", f"pull:{pull.number}", "medium", title,
                                 f"no review since it was opened for review on {_day(ready)}", link, label))
        elif (_utc(pull.updated_at) < now - timedelta(settings.stale_pr_days)
              and not _exempt(pull.author_type, pull.labels, settings)):
            found.append(finding(repo_key, "stale_pr", f"pull:{pull.number}", "low", title,
                                 f"no activity since {_day(pull.updated_at)}", link, label))
    return found


# ---- coverage ---------------------------------------------------------------------------------


def coverage_findings(repo_key: str, branch: str, points: Iterable[CoveragePoint], settings: ScoutSettings,
                      now: datetime) -> list[Finding]:
    history = sorted((point for point in points if math.isfinite(point.line_rate)),
                     key=lambda point: _utc(point.at))
    if len(history) < 2:
        return []
    start = _utc(now) - timedelta(settings.coverage_window_days)
    before = [point for point in history if _utc(point.at) < start]
    inside = [point for point in history if _utc(point.at) >= start]
    if not inside:
        return []
    reference = before[-1] if before else inside[0]
    newest = history[-1]
    drop = reference.line_rate - newest.line_rate
    if newest is reference or drop < settings.coverage_drop_points - 1e-9:
        return []
    return [finding(repo_key, "coverage_dropping", "default", "medium",
                    f"Coverage on {inert(branch)} is dropping",
                    f"from {reference.line_rate:.2f}% ({_day(reference.at)}) to {newest.line_rate:.2f}% "
                    f"({_day(newest.at)}), {drop:.2f} points", "", "")]


# ---------------------------------------------------------------------------------------------
# Score


@dataclass(frozen=True)
class Deduction:
    kind: str
    points: int
    reason: str


@dataclass(frozen=True)
class HealthScore:
    score: int  # 0-100
    deductions: tuple[Deduction, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"−{deduction.points}: {deduction.reason}" for deduction in self.deductions)

    def to_doc(self) -> dict[str, Any]:
        return {"score": self.score, "deductions": [
            {"kind": d.kind, "points": d.points, "reason": d.reason} for d in self.deductions]}


def severity_counts(findings: Iterable[Finding]) -> str:
    """"2 critical, 1 low": how many of each severity, most severe first."""
    counts = Counter(item.severity for item in findings)
    return ", ".join(f"{counts[severity]} {severity}" for severity in SEVERITIES if counts[severity])


def score(findings: Iterable[Finding]) -> HealthScore:
    """100 minus the capped deductions of each kind (see the module docstring). Deterministic."""
    by_kind: dict[str, list[Finding]] = {}
    for item in unique(findings):
        by_kind.setdefault(item.kind, []).append(item)
    deductions = []
    for kind in KINDS:
        items = by_kind.get(kind)
        if not items:
            continue
        raw = sum(SEVERITY_POINTS.get(item.severity, 0) for item in items)
        points = min(raw, KIND_CAPS[kind])
        if points <= 0:
            continue
        noun = "finding" if len(items) == 1 else "findings"
        reason = f"{KIND_LABELS[kind]}: {len(items)} {noun} ({severity_counts(items)})"
        if raw > points:
            reason += f", capped at {KIND_CAPS[kind]}"
        deductions.append(Deduction(kind, points, reason))
    return HealthScore(max(0, 100 - sum(d.points for d in deductions)), tuple(deductions))


# ---------------------------------------------------------------------------------------------
# The assessment


@dataclass(frozen=True)
class Assessment:
    findings: tuple[Finding, ...]  # sorted by `sort_key`, one per fingerprint
    score: HealthScore
    unchecked: tuple[str, ...]  # kinds that could not be checked this scan
    notes: tuple[str, ...] = field(default=())  # safe text for the health issue: what was not checked


def unique(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per fingerprint (the first), sorted by `sort_key`."""
    seen: dict[str, Finding] = {}
    for item in findings:
        seen.setdefault(item.fingerprint, item)
    return sorted(seen.values(), key=sort_key)


def assess(facts: RepoFacts, settings: ScoutSettings, now: datetime) -> Assessment:
    """The findings, score, unchecked kinds and notes of one repository (see the module docstring)."""
    key, branch = facts.key, facts.default_branch
    found: list[Finding] = []
    unchecked: list[str] = []
    notes: list[str] = []

    if facts.runs is None:
        unchecked += CI_KINDS
        notes.append("CI: the workflow runs could not be read.")
    else:
        if not facts.runs:
            notes.append("CI: no workflow runs on the default branch.")
        found += ci_findings(key, branch, facts.runs, settings, now)

    for label, kind, source in (("Dependabot alerts", "dependabot_alert", facts.dependabot),
                                ("Code scanning", "code_scanning_alert", facts.code_scanning)):
        if source.status == "unknown":
            unchecked.append(kind)
            notes.append(f"{label}: not visible to the app (forbidden or not available).")
        elif source.status == "not_enabled":
            notes.append(f"{label}: not enabled.")
    if facts.dependabot.status == "enabled":
        found += dependabot_findings(key, facts.dependabot.alerts)
    if facts.code_scanning.status == "enabled":
        found += code_scanning_findings(key, facts.code_scanning.alerts)

    if facts.branch_protection.status == "unknown":
        unchecked.append("no_branch_protection")
        notes.append("Branch protection: not visible to the app (forbidden).")
    found += protection_findings(key, branch, facts.branch_protection)

    if facts.issues is None:
        unchecked.append("stale_issue")
        notes.append("Issues: could not be read.")
    else:
        found += issue_findings(key, facts.issues, settings, now)
    if facts.pulls is None:
        unchecked += PULL_KINDS
        notes.append("Pull requests: could not be read.")
    else:
        found += pull_findings(key, facts.pulls, settings, now)
    if facts.coverage is None:
        unchecked.append("coverage_dropping")
        notes.append("Coverage: the history could not be read.")
    else:
        found += coverage_findings(key, branch, facts.coverage, settings, now)

    findings = tuple(unique(found))
    return Assessment(findings, score(findings), tuple(unchecked), tuple(notes))


def merge_unchecked(current: Iterable[Finding], previous: Iterable[Finding],
                    unchecked: Collection[str]) -> tuple[Finding, ...]:
    """`current` plus the previously stored findings of the kinds not checked this scan.

    A source the app could not read says nothing about its alerts: they stay open until it can.
    """
    kept = [item for item in previous if item.kind in unchecked]
    return tuple(unique([*current, *kept]))


def with_findings(assessment: Assessment, findings: Iterable[Finding]) -> Assessment:
    """The assessment with other findings (e.g. after `merge_unchecked`) and their score."""
    items = tuple(unique(findings))
    return Assessment(items, score(items), assessment.unchecked, assessment.notes)
