"""The repo scout's health issue: one per repository, a checklist edited in place like a dashboard. Pure.

`plan_issue(previous_body, findings, settings, repo=...)` decides what the shell does with the health
issue, from the previous body alone (plus, if the shell knows it, whether the issue is open):

- no issue yet: `create` it when there are findings; a healthy repository gets no issue ("none");
- open issue, findings: `update` the body, or "none" when nothing material changed since the body was
  written, so an unchanged repository costs no write and nobody gets a notification;
- open issue, no finding left: `close` it (state_reason "completed"), every fixed item ticked;
- closed by the scout, findings return: `reopen` the same issue (one PATCH with the body and
  state=open), so a repository keeps one health issue and its history, never a second one;
- closed by a person while findings were open (the shell passes `issue_open=False`, the body still
  says open): the person has acknowledged them; it is reopened only for a finding that is new since;
- reopened by a person after the scout closed it, with still no finding: left open, theirs to close;
- `settings.quiet`: no issue at all (the shell still stores the score and findings). An open health
  issue left from before is closed once (state_reason "not_planned") with a body saying why, since a
  dashboard that silently stops updating misleads. The health issue never mentions anyone anyway, so
  "an issue without mentions" would be no quieter than the normal mode.

Material change: the open findings' fingerprints, kinds, severities and titles, the fixed items, the
notes and the open/closed state. A finding's detail (a success rate, a date) and its link are not
material: they are refreshed with the next material change, which keeps the API cost of an unchanged
repository at zero. The score depends on kinds and severities only, so it never changes alone.

The body. A hidden marker names the repository (`issue_marker`), so the shell can find the issue by
search if it lost the number. Findings are grouped by kind with counts: open ones as `- [ ]`, those
fixed since the last scan as `- [x]`; a ticked item is dropped by the next scan that writes the body.
Each item line ends with a hidden `<!-- scout:kind:fingerprint -->`; a hidden state line holds the
open fingerprints (the first MAX_STATE_FINGERPRINTS, and their total), the material digest and the
open/closed flags. The fixed items are the state's open fingerprints that are no longer found; their
lines are recovered from the previous body by their marker, parsed against the exact format written
here and re-rendered, so a person's edit (or a clicked checkbox) cannot inject text or break the state.
Only the first 12 hex digits of a fingerprint are written (48 bits: no collision in practice among a
repository's findings).

Size. The body stays under MAX_BODY_CHARS (an issue body may hold 65,536 characters): items are taken
most severe first while they fit (the fixed ones first, in at most a quarter of the room), at most
MAX_LISTED_PER_KIND open and as many fixed per kind, and the rest are summarised with counts per
section, with a line at the top saying how many are shown.

Labels (ISSUE_LABELS) are set on create only, so a person may remove or add labels. `web_url` is the
links' base, for GitHub Enterprise Server (whose own host has no redirect domain).

Every text from the repository is made inert (`health.inert`). Links go through redirect.github.com,
which GitHub documents for linking to issues and pull requests without putting a back-link on them at
every edit of the body.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from functions.repo_scout.health import (
    KIND_LABELS,
    KINDS,
    MAX_DETAIL_CHARS,
    MAX_TITLE_CHARS,
    SCOUT_LABEL,
    SEVERITIES,
    Finding,
    ScoutSettings,
    inert,
    safe_link,
    score,
    severity_counts,
    unique,
)
from shared.errors import InvalidInput

Action = Literal["create", "update", "reopen", "close", "none"]

MAX_BODY_CHARS = 60_000  # an issue body may hold 65,536 characters
MAX_LISTED_PER_KIND = 50
MAX_STATE_FINGERPRINTS = 600
MAX_TEXT_CHARS = MAX_TITLE_CHARS + 3 + MAX_DETAIL_CHARS  # a title, " — " and a detail
MAX_NOTES = 20
SHORT = 12  # hex digits of a fingerprint written into the body
STATE_VERSION = 1
LINK_BASE = "https://redirect.github.com"
ISSUE_LABELS: tuple[str, ...] = ("repo-health", SCOUT_LABEL)

_REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_STATE = re.compile(r"^<!-- agent-ops:scout-state (?P<json>\{[^\n]{0,20000}\}) -->$", re.MULTILINE)
_LINE = re.compile(
    r"^- \[(?P<tick>[ xX])\] \*\*(?P<severity>Critical|High|Medium|Low|Info)\*\* "
    r"(?:\[(?P<label>[^\[\]\n]{1,80})\]\((?P<url>[^()\s]{1,600})\) )?"
    r"(?P<text>[^\n]{1,2000}?) <!-- scout:(?P<kind>[a-z_]{1,40}):(?P<fp>[0-9a-f]{12}) -->$",
    re.MULTILINE)
_PATH = re.compile(r"[A-Za-z0-9/_.-]{1,200}")
_HEX = re.compile(r"[0-9a-f]{12}")


def issue_marker(repo: str) -> str:
    """The hidden first line that names the repository of a health issue."""
    return f"<!-- agent-ops:scout:{_checked_repo(repo).lower()} -->"


def _checked_repo(repo: str) -> str:
    if not _REPO.fullmatch(repo):
        raise InvalidInput(f"not a repository name: {inert(repo)!r}")
    return repo


def short(fingerprint: str) -> str:
    return fingerprint[:SHORT]


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class IssuePlan:
    """What to do with the health issue. For "none", title and body are empty.

    create: POST the issue with `labels`. update / reopen / close: one PATCH of title and body, with
    state "open" (reopen) or "closed" and `state_reason` (close).
    """

    action: Action
    title: str
    body: str
    reason: str  # why, for the log and the audit trail
    labels: tuple[str, ...] = ()
    state_reason: str | None = None  # completed | not_planned, for a close
    open_count: int = 0
    fixed_count: int = 0


def plan_issue(previous_body: str | None, findings: Iterable[Finding], settings: ScoutSettings, *,
               repo: str, notes: Sequence[str] = (), issue_open: bool | None = None,
               web_url: str = LINK_BASE) -> IssuePlan:
    """Plan the health issue of `repo` (see the module docstring).

    previous_body: the health issue's body, or None when the repository has none. issue_open: whether
    it is open, if the shell knows; None takes the body's own record (closed only if the scout closed
    it). notes: what the scan could not check (`Assessment.notes`).
    """
    _checked_repo(repo)
    items = _checked(findings)
    shown_notes = tuple(inert(note, 200) for note in notes[:MAX_NOTES])
    previous = None if previous_body is None else parse_body(previous_body, repo, web_url)

    if settings.quiet:
        if previous is not None and _is_open(previous, issue_open):
            body = _quiet_body(repo)
            return IssuePlan("close", "Repo health: quiet mode", body,
                             "quiet mode: the health issue is closed and no longer updated",
                             state_reason="not_planned")
        return IssuePlan("none", "", "", "quiet mode: no health issue")

    if previous is None:
        if not items:
            return IssuePlan("none", "", "", "no findings and no health issue: nothing to report")
        body, _ = _render(repo, items, (), None, shown_notes, web_url, False)
        return IssuePlan("create", _title(items), body, f"{len(items)} open finding(s)",
                         labels=ISSUE_LABELS, open_count=len(items))

    current = {short(item.fingerprint) for item in items}
    fixed = tuple(fp for fp in previous.open if fp not in current)

    if not _is_open(previous, issue_open):
        if not items:
            return IssuePlan("none", "", "", "the health issue is closed and there is no finding")
        if not previous.closed and not _has_new(previous, items):
            return IssuePlan("none", "", "", "the health issue was closed by a person and no finding is "
                                             "new since: left closed")
        body, _ = _render(repo, items, fixed, previous, shown_notes, web_url, False)
        return IssuePlan("reopen", _title(items), body, f"{len(items)} finding(s) returned",
                         open_count=len(items), fixed_count=len(fixed))

    if not items:
        if previous.state_ok and not previous.open:
            # Reopened by a person with nothing open in it: theirs to close.
            return IssuePlan("none", "", "", "no findings; the open health issue lists none already")
        body, _ = _render(repo, (), fixed, previous, shown_notes, web_url, True)
        return IssuePlan("close", "Repo health: all findings fixed", body,
                         f"all findings fixed ({len(fixed)} since the last scan)", state_reason="completed",
                         fixed_count=len(fixed))

    body, digest = _render(repo, items, fixed, previous, shown_notes, web_url, False)
    if previous.state_ok and digest == previous.digest and not previous.closed:
        return IssuePlan("none", "", "", "no change since the last update", open_count=len(items))
    return IssuePlan("update", _title(items), body,
                     f"{len(items)} open finding(s), {len(fixed)} fixed since the last scan",
                     open_count=len(items), fixed_count=len(fixed))


def _is_open(previous: PreviousBody, issue_open: bool | None) -> bool:
    return (not previous.closed) if issue_open is None else issue_open


def _has_new(previous: PreviousBody, items: Sequence[Finding]) -> bool:
    known = set(previous.open)
    unknown = sum(1 for item in items if short(item.fingerprint) not in known)
    # Beyond MAX_STATE_FINGERPRINTS the state keeps only a count: more unknown ones than it left out.
    return unknown > max(previous.open_total - len(previous.open), 0)


def _title(items: Sequence[Finding]) -> str:
    noun = "finding" if len(items) == 1 else "findings"
    return f"Repo health: {score(items).score}/100, {len(items)} open {noun}"


# ---------------------------------------------------------------------------------------------
# Reading the previous body


@dataclass(frozen=True)
class ItemLine:
    """An item line of a previous body, checked and made inert again."""

    kind: str
    fp: str  # SHORT hex digits
    severity: str
    label: str
    path: str
    text: str


@dataclass(frozen=True)
class PreviousBody:
    ours: bool  # the marker names this repository
    state_ok: bool  # the state line was found and valid
    open: tuple[str, ...] = ()  # SHORT fingerprints of the open findings it lists, most severe first
    open_total: int = 0
    digest: str = ""
    closed: bool = False  # the scout closed it
    quiet: bool = False
    lines: Mapping[str, ItemLine] = field(default_factory=dict)


def parse_body(body: str, repo: str, web_url: str = LINK_BASE) -> PreviousBody:
    """Read the state and item lines of a previous health issue body. Never raises.

    A body without this repository's marker is not ours: nothing in it is trusted. A body whose state
    line is missing or malformed (edited by hand) keeps the item lines it still has, and the open
    ones among them stand for the open findings; its digest is empty, so the next plan rewrites it.
    """
    text = body[:70_000] if isinstance(body, str) else ""
    if issue_marker(repo) not in text:
        return PreviousBody(False, False)
    lines = _item_lines(text, repo, web_url)
    state = _state(text)
    if state is None:
        open_fps = tuple(dict.fromkeys(fp for fp, (ticked, _) in lines.items() if not ticked))
        return PreviousBody(True, False, open_fps, len(open_fps),
                            lines={fp: line for fp, (_, line) in lines.items()})
    open_fps, total, digest, closed, quiet = state
    return PreviousBody(True, True, open_fps, total, digest, closed, quiet,
                        {fp: line for fp, (_, line) in lines.items()})


def _state(text: str) -> tuple[tuple[str, ...], int, str, bool, bool] | None:
    match = _STATE.search(text)
    if match is None:
        return None
    try:
        state = json.loads(match.group("json"))
    except ValueError:
        return None
    if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
        return None
    fps, total, digest = state.get("o"), state.get("n"), state.get("d")
    if (not isinstance(fps, list) or not all(isinstance(fp, str) and _HEX.fullmatch(fp) for fp in fps)
            or isinstance(total, bool) or not isinstance(total, int) or total < len(fps)
            or not isinstance(digest, str)):
        return None
    return (tuple(dict.fromkeys(fps))[:MAX_STATE_FINGERPRINTS], total, digest[:64],
            state.get("c") is True, state.get("q") is True)


def _item_lines(text: str, repo: str, web_url: str) -> dict[str, tuple[bool, ItemLine]]:
    prefix = f"{web_url}/{repo}/"
    found: dict[str, tuple[bool, ItemLine]] = {}
    for match in _LINE.finditer(text):
        kind, fp = match.group("kind"), match.group("fp")
        if kind not in KINDS or fp in found:
            continue
        label, url, path = match.group("label") or "", match.group("url") or "", ""
        if url:
            path = url[len(prefix):] if url.startswith(prefix) else ""
            if not _PATH.fullmatch(path) or ".." in path or inert(label, 40) != label:
                continue  # not a line this module wrote
        line = ItemLine(kind, fp, match.group("severity").lower(), label, path,
                        inert(match.group("text"), MAX_TEXT_CHARS))
        found[fp] = (match.group("tick") != " ", line)
    return found


# ---------------------------------------------------------------------------------------------
# Writing the body


@dataclass(frozen=True)
class _Entry:
    kind: str
    severity: str
    line: str
    ticked: bool


def _line(ticked: bool, kind: str, fp: str, severity: str, label: str, path: str, text: str, repo: str,
          web_url: str) -> str:
    ref = f"[{label or 'open'}]({web_url}/{repo}/{path}) " if path else ""
    box = "x" if ticked else " "
    return f"- [{box}] **{severity.capitalize()}** {ref}{text} <!-- scout:{kind}:{fp} -->"


def _checked(items: Iterable[Finding]) -> list[Finding]:
    """One per fingerprint, sorted, texts made inert and links checked again: a Finding may have been
    built by hand or read from a store, and inert text stays as it is."""
    return [replace(item, title=inert(item.title, MAX_TITLE_CHARS) or "(untitled)",
                    detail=inert(item.detail, MAX_DETAIL_CHARS), label=inert(item.label, 40),
                    link=safe_link(item.link),
                    severity=item.severity if item.severity in SEVERITIES else "medium")
            for item in unique(items) if item.kind in KINDS]


def _finding_line(item: Finding, repo: str, web_url: str) -> str:
    text = item.title + (f" — {item.detail}" if item.detail else "")  # both inert: so is the whole
    return _line(False, item.kind, short(item.fingerprint), item.severity, item.label, item.link, text, repo,
                 web_url)


def _digest(items: Sequence[Finding], fixed: Sequence[str], notes: Sequence[str], closed: bool) -> str:
    material = {
        "open": sorted([item.kind, short(item.fingerprint), item.severity, item.title] for item in items),
        "fixed": sorted(fixed), "notes": list(notes), "closed": closed,
    }
    return hashlib.sha256(json.dumps(material, ensure_ascii=True).encode()).hexdigest()[:16]


def _state_line(items: Sequence[Finding], digest: str, closed: bool, quiet: bool = False) -> str:
    state = {"v": STATE_VERSION, "d": digest, "c": closed, "q": quiet, "n": len(items),
             "o": [short(item.fingerprint) for item in items[:MAX_STATE_FINGERPRINTS]]}
    return f"<!-- agent-ops:scout-state {json.dumps(state, separators=(',', ':'))} -->"


def render_body(repo: str, findings: Iterable[Finding], fixed: Sequence[str], *,
                previous: PreviousBody | None, notes: Sequence[str] = (), web_url: str = LINK_BASE,
                closed: bool = False) -> tuple[str, str]:
    """The health issue's body and its material digest.

    fixed: SHORT fingerprints of findings fixed since the previous body; those whose line `previous`
    still has are ticked, the others are counted.
    """
    _checked_repo(repo)
    shown_notes = [inert(note, 200) for note in notes[:MAX_NOTES]]
    return _render(repo, _checked(findings), fixed, previous, shown_notes, web_url, closed)


def _render(repo: str, items: Sequence[Finding], fixed: Sequence[str], previous: PreviousBody | None,
            notes: Sequence[str], web_url: str, closed: bool) -> tuple[str, str]:
    digest = _digest(items, fixed, notes, closed)
    state = _state_line(items, digest, closed)
    health = score(items)

    recovered = [previous.lines[fp] for fp in fixed if previous is not None and fp in previous.lines]
    entries = [_Entry(item.kind, item.severity, _finding_line(item, repo, web_url), False) for item in items]
    entries += [_Entry(line.kind, line.severity,
                       _line(True, line.kind, line.fp, line.severity, line.label, line.path, line.text, repo,
                             web_url), True)
                for line in sorted(recovered, key=lambda line: (SEVERITIES.index(line.severity),
                                                                KINDS.index(line.kind)))]
    hidden_fixed = len(fixed) - len(recovered)

    head = [issue_marker(repo)]
    if closed:
        head += ["## Repository health: all findings fixed", "",
                 f"Every finding is fixed: **{len(fixed)}** since the last scan. The repo scout closed this "
                 "issue and reopens it if findings return."]
    else:
        counts = severity_counts(items)
        head += [f"## Repository health: {health.score}/100", "",
                 f"**{len(items)}** open finding{'s' if len(items) != 1 else ''}"
                 f"{f' ({counts})' if counts else ''}, **{len(fixed)}** fixed since the last scan."]
    reasons = ["", f"### Score: {health.score}/100", *(f"- {reason}" for reason in health.reasons)]
    if not health.deductions:
        reasons.append("- No deductions.")
    tail = []
    if notes:
        tail += ["", "### Notes", *(f"- {note}" for note in notes)]
    tail += ["", "_Kept up to date by the repo scout, edited in place when the findings change. A ticked "
                 "item was fixed since the last scan and is dropped at the next one; the issue is closed "
                 "when every finding is fixed._", state]

    kinds = [kind for kind in KINDS if any(entry.kind == kind for entry in entries)]
    headings = {kind: _heading(kind, entries) for kind in kinds}
    notice_room = 200  # the "Showing n of m" line, when some items are not listed
    fixed_room = 120 if hidden_fixed else 0
    room = (MAX_BODY_CHARS - _size(head) - _size(reasons) - _size(tail) - notice_room - fixed_room
            - sum(len(heading) + 2 for heading in headings.values()) - 200 * len(kinds))

    # Fixed items first, in at most a quarter of the room, so that a long list still shows what was
    # fixed; then the open ones, most severe first. At most MAX_LISTED_PER_KIND of each per kind.
    listed: list[_Entry] = []
    per_kind: Counter[tuple[str, bool]] = Counter()

    def fill(candidates: Iterable[_Entry], budget: int) -> int:
        used = 0
        for entry in sorted(candidates, key=lambda entry: (SEVERITIES.index(entry.severity),
                                                           KINDS.index(entry.kind))):
            cost = len(entry.line) + 1
            if per_kind[entry.kind, entry.ticked] < MAX_LISTED_PER_KIND and used + cost <= budget:
                listed.append(entry)
                per_kind[entry.kind, entry.ticked] += 1
                used += cost
        return used

    used = fill((entry for entry in entries if entry.ticked), room // 4)
    fill((entry for entry in entries if not entry.ticked), room - used)
    chosen = {id(entry) for entry in listed}

    sections: list[str] = []
    for kind in kinds:
        mine = [entry for entry in entries if entry.kind == kind]
        if not mine:
            continue
        sections += ["", headings[kind]]
        sections += [entry.line for entry in mine if id(entry) in chosen]
        left_open = [entry for entry in mine if not entry.ticked and id(entry) not in chosen]
        left_fixed = sum(1 for entry in mine if entry.ticked and id(entry) not in chosen)
        if left_open:
            counts = Counter(entry.severity for entry in left_open)
            by_severity = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s])
            sections.append(f"- … and {len(left_open)} more open, not listed ({by_severity})")
        if left_fixed:
            sections.append(f"- … and {left_fixed} more fixed, not listed")
    if hidden_fixed:
        sections += ["", f"{hidden_fixed} more finding(s) fixed since the last scan were not listed in it."]

    open_listed = sum(1 for entry in listed if not entry.ticked)
    if open_listed < len(items):
        head += ["", f"Showing {open_listed} of {len(items)} open findings, most severe first; the others "
                     "are counted in their sections to keep this issue within GitHub's size limit."]
    body = "\n".join([*head, *reasons, *sections, *tail]) + "\n"
    assert len(body) <= MAX_BODY_CHARS, len(body)  # by construction: every part was measured
    return body, digest


def _heading(kind: str, entries: Sequence[_Entry]) -> str:
    open_count = sum(1 for entry in entries if entry.kind == kind and not entry.ticked)
    fixed_count = sum(1 for entry in entries if entry.kind == kind and entry.ticked)
    parts = [f"{open_count} open" if open_count else "", f"{fixed_count} fixed" if fixed_count else ""]
    return f"### {KIND_LABELS[kind]} ({', '.join(part for part in parts if part)})"


def _size(lines: Sequence[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _quiet_body(repo: str) -> str:
    state = {"v": STATE_VERSION, "d": "", "c": True, "q": True, "n": 0, "o": []}
    return "\n".join([
        issue_marker(repo),
        "## Repository health: quiet mode",
        "",
        "The repo scout is in quiet mode for this repository: this issue is closed and no longer updated. "
        "The health score and findings are still recorded and shown on the Agent Ops dashboard.",
        "",
        f"<!-- agent-ops:scout-state {json.dumps(state, separators=(',', ':'))} -->",
    ]) + "\n"
