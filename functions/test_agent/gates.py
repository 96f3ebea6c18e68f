"""The test agent's gates: parse CI artifacts, compare them with thresholds and the base baseline. Pure.

Everything here takes plain values (bytes read from artifacts, stored baselines, policy numbers) and
returns data; the handler downloads artifacts and publishes the verdict.

Coverage reports come in three formats, detected from their content (the file name is only a hint):
Cobertura XML, lcov tracefiles and coverage.py JSON. Line coverage is always computed from the line
counts, so reports of different formats, or with rounded rate attributes, compare exactly.

Artifact text (file and benchmark names) is attacker-controlled: a pull request chooses it. Every such
text is neutralised before it reaches Markdown, so it cannot mention people, inject HTML or break a
table.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared import markdown
from shared.errors import InvalidInput

MAX_INPUT_BYTES = 20 * 1024 * 1024
MAX_NAME_CHARS = 100
MAX_DETAIL_LINES = 20
MAX_FLAKY_LISTED = 10
MAX_SUMMARY_CHARS = 60_000  # a check run summary may hold 65,535 characters
TOP_DROPPED_FILES = 5
# Percentages come from ratios of counts; an edge exactly at a threshold must not fail on float noise.
EPSILON = 1e-9

COBERTURA = "cobertura"
LCOV = "lcov"
COVERAGE_PY = "coverage.py"

RerunClass = Literal["passed", "failed", "flaky", "pending"]
CheckConclusion = Literal["success", "failure", "neutral"]

PASSING_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
FAILING_CONCLUSIONS = frozenset(
    {"failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale"}
)
PENDING_CONCLUSIONS = frozenset({"", "queued", "in_progress", "pending", "waiting", "requested"})
TEST_OUTCOMES = ("passed", "failed", "flaky", "pending")


class CoverageFormatError(InvalidInput):
    """A coverage report is malformed, unsafe or of an unknown format. The message names the file."""


class BenchmarkFormatError(InvalidInput):
    """A pytest-benchmark report is malformed."""


@dataclass(frozen=True)
class Coverage:
    line_rate: float  # percent, 0-100
    lines_covered: int
    lines_valid: int
    files: dict[str, tuple[int, int]]  # path -> (lines covered, lines valid)
    source_format: str  # COBERTURA, LCOV or COVERAGE_PY


@dataclass(frozen=True)
class Benchmark:
    name: str
    mean_s: float
    stddev_s: float
    rounds: int


@dataclass(frozen=True)
class GateResult:
    passed: bool
    summary: str
    details: list[str]


@dataclass(frozen=True)
class Verdict:
    approve: bool
    check_conclusion: CheckConclusion
    summary_markdown: str
    reasons: list[str]


# ---------------------------------------------------------------------------------------------
# Neutralising artifact text

def neutralise(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """Make artifact text inert in Markdown (see `shared.markdown.neutralise`)."""
    return markdown.neutralise(text, limit)


def _percent(covered: int, valid: int) -> float:
    # coverage.py's convention: nothing to cover is fully covered.
    return 100.0 * covered / valid if valid else 100.0


def _signed(value: float) -> str:
    rounded = round(value, 2)
    return f"{rounded:+.2f}" if rounded != 0 else "+0.00"


# ---------------------------------------------------------------------------------------------
# Coverage parsing


def parse_coverage(name: str, data: bytes) -> Coverage:
    """Parse a Cobertura XML, lcov or coverage.py JSON report; raise CoverageFormatError if malformed."""
    shown = neutralise(name)
    if len(data) > MAX_INPUT_BYTES:
        raise CoverageFormatError(f"coverage report {shown}: {len(data)} bytes exceeds {MAX_INPUT_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CoverageFormatError(f"coverage report {shown}: not UTF-8 text") from exc
    stripped = text.lstrip()
    if not stripped:
        raise CoverageFormatError(f"coverage report {shown}: empty")
    if stripped.startswith("<"):
        return _parse_cobertura(shown, text)
    if stripped.startswith("{"):
        return _parse_coverage_py(shown, text)
    if _looks_like_lcov(name, stripped):
        return _parse_lcov(shown, text)
    raise CoverageFormatError(
        f"coverage report {shown}: unknown format (expected Cobertura XML, lcov or coverage.py JSON)"
    )


_LCOV_RECORD = re.compile(r"^(?:[A-Z]{2,4}:|end_of_record\b)")


def _looks_like_lcov(name: str, stripped: str) -> bool:
    return name.lower().endswith((".info", ".lcov")) or bool(_LCOV_RECORD.match(stripped))


def _coverage(files: dict[str, tuple[int, int]], source_format: str) -> Coverage:
    covered = sum(pair[0] for pair in files.values())
    valid = sum(pair[1] for pair in files.values())
    return Coverage(_percent(covered, valid), covered, valid, files, source_format)


def _count(shown: str, what: str, raw: Any) -> int:
    """A non-negative integer count from XML text or JSON; bools and floats are not counts."""
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError as exc:
            raise CoverageFormatError(f"coverage report {shown}: {what} is not an integer: {raw!r}") from exc
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise CoverageFormatError(f"coverage report {shown}: {what} is not an integer: {raw!r}")
    if raw < 0:
        raise CoverageFormatError(f"coverage report {shown}: {what} is negative: {raw}")
    return raw


def _checked(shown: str, where: str, covered: int, valid: int) -> tuple[int, int]:
    if covered > valid:
        raise CoverageFormatError(
            f"coverage report {shown}: {where} covers {covered} lines of only {valid}"
        )
    return covered, valid


def _parse_cobertura(shown: str, text: str) -> Coverage:
    # ElementTree cannot be told to refuse entities, so no document type may reach it at all.
    lowered = text.lower()
    if "<!doctype" in lowered or "<!entity" in lowered:
        raise CoverageFormatError(f"coverage report {shown}: DOCTYPE and ENTITY declarations are refused")
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - no DTD or entity can be declared, see above
    except ElementTree.ParseError as exc:
        raise CoverageFormatError(f"coverage report {shown}: invalid XML: {exc}") from exc
    if root.tag != "coverage":
        raise CoverageFormatError(f"coverage report {shown}: root element is <{neutralise(root.tag)}>, "
                                  "expected <coverage>")

    hits_by_file: dict[str, dict[int, int]] = {}
    for klass in root.iter("class"):
        filename = klass.get("filename")
        if not filename:
            raise CoverageFormatError(f"coverage report {shown}: a <class> has no filename")
        lines = hits_by_file.setdefault(filename, {})
        for line in klass.iterfind("lines/line"):
            number = _count(shown, f"line number in {neutralise(filename)}", line.get("number"))
            hits = _count(shown, f"hits of line {number} in {neutralise(filename)}", line.get("hits"))
            # Several classes (inner classes, JaCoCo conversions) may list the same line of one file.
            lines[number] = max(hits, lines.get(number, 0))
    files = {
        path: (sum(1 for hits in lines.values() if hits > 0), len(lines))
        for path, lines in hits_by_file.items()
    }

    raw_covered, raw_valid = root.get("lines-covered"), root.get("lines-valid")
    if raw_covered is None or raw_valid is None:
        if root.get("line-rate") is None and not hits_by_file:
            raise CoverageFormatError(
                f"coverage report {shown}: no totals (lines-covered, lines-valid) and no classes"
            )
        # Some converters write only rates; the per-line hits are then the totals.
        return _coverage(files, COBERTURA)
    covered, valid = _checked(
        shown,
        "the report",
        _count(shown, "lines-covered", raw_covered),
        _count(shown, "lines-valid", raw_valid),
    )
    return Coverage(_percent(covered, valid), covered, valid, files, COBERTURA)


def _parse_lcov(shown: str, text: str) -> Coverage:
    hits_by_file: dict[str, dict[int, int]] = {}
    current: str | None = None
    found: int | None = None
    hit: int | None = None
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        where = f"line {number}"
        if line == "end_of_record":
            if current is None:
                raise CoverageFormatError(f"coverage report {shown}: {where}: end_of_record before SF")
            _check_lcov_totals(shown, current, hits_by_file[current], found, hit)
            current, found, hit = None, None, None
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise CoverageFormatError(f"coverage report {shown}: {where} is not a tracefile record")
        if key == "SF":
            if current is not None:
                raise CoverageFormatError(f"coverage report {shown}: {where}: SF before end_of_record")
            if not value:
                raise CoverageFormatError(f"coverage report {shown}: {where}: SF without a path")
            current = value
            hits_by_file.setdefault(current, {})
        elif key in ("DA", "LF", "LH"):
            if current is None:
                raise CoverageFormatError(f"coverage report {shown}: {where}: {key} before SF")
            if key == "DA":
                fields = value.split(",")
                if len(fields) < 2:
                    raise CoverageFormatError(f"coverage report {shown}: {where}: DA needs line,hits")
                line_number = _count(shown, f"{where}: DA line", fields[0])
                hits = _count(shown, f"{where}: DA hits", fields[1])
                lines = hits_by_file[current]
                lines[line_number] = max(hits, lines.get(line_number, 0))
            elif key == "LF":
                found = _count(shown, f"{where}: LF", value)
            else:
                hit = _count(shown, f"{where}: LH", value)
        # TN, FN, FNDA, FNF, FNH, BRDA, BRF, BRH and newer records do not affect line coverage.
    if current is not None:
        raise CoverageFormatError(f"coverage report {shown}: record for {neutralise(current)} has no "
                                  "end_of_record (truncated?)")
    if not hits_by_file:
        raise CoverageFormatError(f"coverage report {shown}: no SF records")
    files = {
        path: (sum(1 for hits in lines.values() if hits > 0), len(lines))
        for path, lines in hits_by_file.items()
    }
    return _coverage(files, LCOV)


def _check_lcov_totals(shown: str, path: str, lines: dict[int, int], found: int | None,
                       hit: int | None) -> None:
    where = neutralise(path)
    if found is not None and hit is not None:
        _checked(shown, where, hit, found)
    if lines and found is not None and found != len(lines):
        raise CoverageFormatError(
            f"coverage report {shown}: {where}: LF says {found} lines but DA lists {len(lines)}"
        )
    if not lines and found:
        # Totals without per-line data cannot be merged with other records; refuse rather than guess.
        raise CoverageFormatError(f"coverage report {shown}: {where}: LF without DA records")


def _parse_coverage_py(shown: str, text: str) -> Coverage:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CoverageFormatError(f"coverage report {shown}: invalid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("meta"), dict):
        raise CoverageFormatError(f"coverage report {shown}: not a coverage.py JSON report (no meta)")
    totals = document.get("totals")
    if not isinstance(totals, dict) or "covered_lines" not in totals or "num_statements" not in totals:
        raise CoverageFormatError(
            f"coverage report {shown}: no totals (totals.covered_lines, totals.num_statements)"
        )
    raw_files = document.get("files", {})
    if not isinstance(raw_files, dict):
        raise CoverageFormatError(f"coverage report {shown}: files is not an object")
    files: dict[str, tuple[int, int]] = {}
    for path, entry in raw_files.items():
        where = neutralise(path)
        summary = entry.get("summary") if isinstance(entry, dict) else None
        if not isinstance(summary, dict):
            raise CoverageFormatError(f"coverage report {shown}: {where} has no summary")
        files[path] = _checked(
            shown,
            where,
            _count(shown, f"covered_lines of {where}", summary.get("covered_lines")),
            _count(shown, f"num_statements of {where}", summary.get("num_statements")),
        )
    covered, valid = _checked(
        shown,
        "the report",
        _count(shown, "totals.covered_lines", totals["covered_lines"]),
        _count(shown, "totals.num_statements", totals["num_statements"]),
    )
    # percent_covered also counts branches when branch coverage is on; line coverage is comparable.
    return Coverage(_percent(covered, valid), covered, valid, files, COVERAGE_PY)


# ---------------------------------------------------------------------------------------------
# Coverage gate


def coverage_gate(current: Coverage, baseline: Coverage | None, minimum: float | None,
                  max_drop: float) -> GateResult:
    """Fail below `minimum` percent, or when coverage fell more than `max_drop` points under the baseline.

    Exactly at the minimum, or a drop of exactly `max_drop`, passes.
    """
    failures: list[str] = []
    details = [
        f"Line coverage {current.line_rate:.2f}% ({current.lines_covered}/{current.lines_valid} lines)"
    ]
    if minimum is not None and current.line_rate < minimum - EPSILON:
        failures.append(f"coverage {current.line_rate:.2f}% is below the minimum {minimum:.2f}%")

    if baseline is None:
        details.append("No baseline for the base branch: only the minimum applies.")
        head = f"{current.line_rate:.2f}% (no baseline)"
    else:
        delta = current.line_rate - baseline.line_rate
        head = f"{current.line_rate:.2f}% ({_signed(delta)} vs base {baseline.line_rate:.2f}%)"
        if -delta > max_drop + EPSILON:
            failures.append(f"coverage fell {-delta:.2f} points, more than the allowed {max_drop:.2f}")
        details.extend(_dropped_files(current, baseline))

    details.extend(f"Failed: {failure}" for failure in failures)
    verdict = "failed" if failures else "passed"
    return GateResult(not failures, f"Coverage {verdict}: {head}", details)


def _dropped_files(current: Coverage, baseline: Coverage) -> list[str]:
    drops = []
    for path, (covered, valid) in current.files.items():
        if path not in baseline.files:
            continue
        before, after = _percent(*baseline.files[path]), _percent(covered, valid)
        if before - after > EPSILON:
            drops.append((before - after, path, before, after))
    drops.sort(key=lambda drop: (-drop[0], drop[1]))
    return [
        f"{neutralise(path)}: {before:.2f}% → {after:.2f}% ({_signed(after - before)})"
        for _, path, before, after in drops[:TOP_DROPPED_FILES]
    ]


# ---------------------------------------------------------------------------------------------
# Benchmarks


def parse_benchmarks(data: bytes) -> dict[str, Benchmark]:
    """Parse a pytest-benchmark JSON report into benchmarks by full name."""
    if len(data) > MAX_INPUT_BYTES:
        raise BenchmarkFormatError(f"benchmark report: {len(data)} bytes exceeds {MAX_INPUT_BYTES}")
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchmarkFormatError(f"benchmark report: invalid JSON: {exc}") from exc
    entries = document.get("benchmarks") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise BenchmarkFormatError("benchmark report: no benchmarks list")
    benchmarks: dict[str, Benchmark] = {}
    for index, entry in enumerate(entries):
        name = entry.get("fullname") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise BenchmarkFormatError(f"benchmark report: benchmarks[{index}] has no fullname")
        shown = neutralise(name)
        if name in benchmarks:
            raise BenchmarkFormatError(f"benchmark report: {shown} appears twice")
        stats = entry.get("stats")
        if not isinstance(stats, dict):
            raise BenchmarkFormatError(f"benchmark report: {shown} has no stats")
        mean, stddev, rounds = stats.get("mean"), stats.get("stddev"), stats.get("rounds")
        for field, value in (("mean", mean), ("stddev", stddev)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value < 0:
                raise BenchmarkFormatError(f"benchmark report: {shown} stats.{field} is invalid: {value!r}")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise BenchmarkFormatError(f"benchmark report: {shown} stats.rounds is invalid: {rounds!r}")
        benchmarks[name] = Benchmark(name, float(mean), float(stddev), rounds)
    return benchmarks


def _change_percent(current: Benchmark, baseline: Benchmark) -> float:
    if baseline.mean_s == 0:
        return 0.0 if current.mean_s == 0 else math.inf
    return 100.0 * (current.mean_s - baseline.mean_s) / baseline.mean_s


def _capped(lines: Sequence[str]) -> list[str]:
    if len(lines) <= MAX_DETAIL_LINES:
        return list(lines)
    return [*lines[:MAX_DETAIL_LINES], f"… and {len(lines) - MAX_DETAIL_LINES} more"]


def performance_gate(current: Mapping[str, Benchmark], baseline: Mapping[str, Benchmark] | None,
                     tolerance_percent: float) -> GateResult:
    """Fail when a benchmark's mean is slower than its baseline mean by more than the tolerance.

    New benchmarks (no baseline) and removed ones are listed, not failed. No benchmarks at all while
    the baseline has some means they did not run, which fails.
    """
    baseline = baseline or {}
    if not current:
        if baseline:
            reason = f"no benchmarks ran, but the base branch has {len(baseline)}"
            return GateResult(False, f"Performance failed: {reason}", [f"Failed: {reason}"])
        return GateResult(True, "Performance passed: no benchmarks", [])

    compared = sorted(
        ((_change_percent(current[name], baseline[name]), name) for name in current if name in baseline),
        key=lambda change: (-change[0], change[1]),
    )
    slower = [(change, name) for change, name in compared if change > tolerance_percent + EPSILON]
    details = [
        f"Slower: {neutralise(name)} {_signed(change)}% (mean {baseline[name].mean_s:.3g}s → "
        f"{current[name].mean_s:.3g}s)"
        for change, name in slower
    ]
    details += [f"New (no baseline): {neutralise(name)}" for name in sorted(set(current) - set(baseline))]
    details += [f"Removed: {neutralise(name)}" for name in sorted(set(baseline) - set(current))]

    if compared:
        worst_change, worst_name = compared[0]
        head = f"worst {_signed(worst_change)}% ({neutralise(worst_name)}), {len(compared)} compared"
    else:
        head = f"{len(current)} new, none with a baseline"
    if slower:
        head = f"{len(slower)} slower than {tolerance_percent:g}% tolerance; {head}"
    return GateResult(not slower, f"Performance {'failed' if slower else 'passed'}: {head}", _capped(details))


# ---------------------------------------------------------------------------------------------
# Flaky tests and the verdict


def classify_rerun(first_conclusion: str, rerun_conclusion: str | None) -> RerunClass:
    """Classify a test run and its rerun by their check conclusions: failure then success is flaky."""
    first = conclusion_class(first_conclusion)
    if first != "failed":
        return first
    if rerun_conclusion is None:
        return "pending"
    rerun = conclusion_class(rerun_conclusion)
    if rerun == "passed":
        return "flaky"
    return rerun


def conclusion_class(conclusion: str, unknown: RerunClass | None = None) -> RerunClass:
    """passed, failed or pending; an unknown conclusion is `unknown`, or an error when that is None."""
    if conclusion in PASSING_CONCLUSIONS:
        return "passed"
    if conclusion in FAILING_CONCLUSIONS:
        return "failed"
    if conclusion in PENDING_CONCLUSIONS:
        return "pending"
    if unknown is not None:
        return unknown
    raise InvalidInput(f"unknown check conclusion {neutralise(conclusion)!r}")



def verdict(tests_conclusion: str, coverage_result: GateResult | None,
            performance_result: GateResult | None, flaky: Sequence[str]) -> Verdict:
    """Combine the test outcome (a classify_rerun value) and the gates into the check run's verdict.

    A gate given as None was not measured and is shown as such. While CI runs the verdict is neutral
    and never an approval; a failed test run or any failed gate requests changes.
    """
    if tests_conclusion not in TEST_OUTCOMES:
        raise InvalidInput(f"unknown tests conclusion {neutralise(tests_conclusion)!r}")
    reasons: list[str] = []
    if tests_conclusion == "pending":
        conclusion: CheckConclusion = "neutral"
        reasons.append("CI is still running: no verdict yet")
    else:
        if tests_conclusion == "failed":
            reasons.append("Tests failed")
        reasons += [neutralise(gate.summary, MAX_SUMMARY_CHARS)
                    for gate in (coverage_result, performance_result) if gate is not None and not gate.passed]
        conclusion = "failure" if reasons else "success"
    approve = conclusion == "success"
    markdown = _markdown(conclusion, tests_conclusion, coverage_result, performance_result, flaky, reasons)
    return Verdict(approve, conclusion, markdown, reasons)


_HEADINGS = {
    "success": "✅ Test agent: approved",
    "failure": "❌ Test agent: changes requested",
    "neutral": "⏳ Test agent: waiting for CI",
}


def _gate_cell(gate: GateResult | None) -> str:
    return "not measured" if gate is None else neutralise(gate.summary, 200)


def _markdown(conclusion: CheckConclusion, tests_conclusion: str, coverage_result: GateResult | None,
              performance_result: GateResult | None, flaky: Sequence[str], reasons: list[str]) -> str:
    flaky_names = [neutralise(name) for name in flaky[:MAX_FLAKY_LISTED]]
    if len(flaky) > MAX_FLAKY_LISTED:
        flaky_names.append(f"… and {len(flaky) - MAX_FLAKY_LISTED} more")
    lines = [
        f"## {_HEADINGS[conclusion]}",
        "",
        "| Check | Result |",
        "| --- | --- |",
        f"| Tests | {tests_conclusion} |",
        f"| Coverage | {_gate_cell(coverage_result)} |",
        f"| Performance | {_gate_cell(performance_result)} |",
        f"| Flaky | {len(flaky)} |",
    ]
    if reasons:
        lines += ["", "### Reasons", *(f"- {reason}" for reason in reasons)]
    for title, gate in (("Coverage", coverage_result), ("Performance", performance_result)):
        if gate is not None and gate.details:
            lines += ["", f"### {title}"]
            lines += [f"- {neutralise(detail, 300)}" for detail in _capped(gate.details)]
    if flaky_names:
        lines += ["", "### Flaky tests (failed, then passed on rerun)"]
        lines += [f"- {name}" for name in flaky_names]
    markdown = "\n".join(lines) + "\n"
    if len(markdown) > MAX_SUMMARY_CHARS:
        markdown = markdown[:MAX_SUMMARY_CHARS - 2] + "…\n"
    return markdown
