"""The test agent's pure gates: coverage and benchmark parsing, the gates, reruns and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from functions.test_agent.gates import (
    COBERTURA,
    COVERAGE_PY,
    LCOV,
    MAX_INPUT_BYTES,
    MAX_NAME_CHARS,
    Benchmark,
    BenchmarkFormatError,
    Coverage,
    CoverageFormatError,
    GateResult,
    classify_rerun,
    coverage_gate,
    neutralise,
    parse_benchmarks,
    parse_coverage,
    performance_gate,
    verdict,
)
from shared.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "test_agent"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def coverage(rate: float, files: dict[str, tuple[int, int]] | None = None) -> Coverage:
    return Coverage(rate, 0, 0, files or {}, COBERTURA)


def bench(name: str, mean: float) -> Benchmark:
    return Benchmark(name, mean, mean / 100, 10)


# ---------------------------------------------------------------------------------------------
# Coverage parsing: real reports

SHAPES = {"sample/__init__.py": (0, 0), "sample/shapes.py": (8, 11)}

REAL = [
    ("cobertura", "coverage.xml", COBERTURA, 8, 11, SHAPES),
    ("coverage.py json", "coverage.json", COVERAGE_PY, 8, 11, SHAPES),
    ("lcov", "coverage.lcov", LCOV, 11, 15, {"sample/shapes.py": (8, 11), "sample/units.py": (3, 4)}),
]


@pytest.mark.parametrize(("name", "source_format", "covered", "valid", "files"),
                         [case[1:] for case in REAL], ids=[case[0] for case in REAL])
def test_parses_real_reports(name, source_format, covered, valid, files):
    report = parse_coverage(name, fixture(name))
    assert report == Coverage(100.0 * covered / valid, covered, valid, files, source_format)


def test_format_is_detected_from_content_not_name():
    assert parse_coverage("report.txt", fixture("coverage.xml")).source_format == COBERTURA
    assert parse_coverage("coverage.xml", fixture("coverage.json")).source_format == COVERAGE_PY
    assert parse_coverage("coverage.json", fixture("coverage.lcov")).source_format == LCOV


def test_cobertura_without_totals_counts_lines_and_merges_classes_of_one_file():
    xml = b"""<?xml version="1.0"?><coverage line-rate="0.5"><packages><package><classes>
      <class filename="A.java"><lines><line number="1" hits="3"/><line number="2" hits="0"/></lines></class>
      <class filename="A.java"><lines><line number="2" hits="1"/><line number="3" hits="0"/></lines></class>
    </classes></package></packages></coverage>"""
    assert parse_coverage("jacoco.xml", xml) == Coverage(200 / 3, 2, 3, {"A.java": (2, 3)}, COBERTURA)


def test_lcov_without_lf_lh_counts_da_lines():
    report = parse_coverage("lcov.info", b"SF:a.c\nDA:1,0\nDA:2,5,abc\nend_of_record\n")
    assert report == Coverage(50.0, 1, 2, {"a.c": (1, 2)}, LCOV)


# ---------------------------------------------------------------------------------------------
# Coverage parsing: malformed and hostile reports

COBERTURA_HEAD = b'<?xml version="1.0"?>\n'
BOMB = COBERTURA_HEAD + (
    b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>'
    b'<coverage line-rate="&lol2;" lines-covered="1" lines-valid="1"/>'
)
TOTALS = {"covered_lines": 8, "num_statements": 11, "percent_covered": 72.7}


def coverage_py(**changes) -> bytes:
    document = {"meta": {"format": 3}, "files": {"a.py": {"summary": dict(TOTALS)}}, "totals": dict(TOTALS)}
    document.update(changes)
    return json.dumps(document).encode()


MALFORMED = [
    ("truncated xml", fixture("coverage.xml")[:400], "invalid XML"),
    ("entity bomb", BOMB, "DOCTYPE and ENTITY"),
    ("lowercase doctype", b'<!doctype coverage SYSTEM "http://evil/x.dtd"><coverage/>', "DOCTYPE and ENTITY"),
    ("entity without doctype", b'<coverage><!ENTITY x "y"></coverage>', "DOCTYPE and ENTITY"),
    ("xml not coverage", b"<testsuites/>", "expected <coverage>"),
    ("cobertura without totals or classes", b"<coverage/>", "no totals"),
    ("cobertura negative total", b'<coverage lines-covered="-1" lines-valid="3"/>', "negative"),
    ("cobertura covered above valid", b'<coverage lines-covered="4" lines-valid="3"/>',
     "covers 4 lines of only 3"),
    ("cobertura bad hits", b'<coverage line-rate="1"><class filename="a"><lines><line number="1" hits="x"/>'
     b"</lines></class></coverage>", "not an integer"),
    ("cobertura class without filename", b'<coverage line-rate="1"><class/></coverage>', "no filename"),
    ("lcov da before sf", b"DA:1,1\nSF:a.c\nend_of_record\n", "DA before SF"),
    ("lcov truncated", b"SF:a.c\nDA:1,1\n", "no end_of_record"),
    ("lcov nested sf", b"SF:a.c\nSF:b.c\nend_of_record\n", "SF before end_of_record"),
    ("lcov negative hits", b"SF:a.c\nDA:1,-2\nend_of_record\n", "negative"),
    ("lcov lh above lf", b"SF:a.c\nDA:1,1\nLF:1\nLH:2\nend_of_record\n", "covers 2 lines of only 1"),
    ("lcov lf disagrees with da", b"SF:a.c\nDA:1,1\nLF:3\nend_of_record\n", "LF says 3"),
    ("lcov garbage line", b"SF:a.c\nnonsense\nend_of_record\n", "not a tracefile record"),
    ("json without totals", coverage_py(totals=None), "no totals"),
    ("json without meta", json.dumps({"benchmarks": []}).encode(), "no meta"),
    ("json truncated", coverage_py()[:40], "invalid JSON"),
    ("json covered above valid", coverage_py(totals={"covered_lines": 12, "num_statements": 11}),
     "covers 12 lines of only 11"),
    ("json negative file count",
     coverage_py(files={"a.py": {"summary": {"covered_lines": -1, "num_statements": 2}}}), "negative"),
    ("json float count", coverage_py(totals={"covered_lines": 1.5, "num_statements": 2}), "not an integer"),
    ("empty", b"  \n", "empty"),
    ("not utf-8", b"\xff\xfe<\x00c\x00", "not UTF-8"),
    ("unknown format", b"hello world", "unknown format"),
]


@pytest.mark.parametrize(("data", "message"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_reports_raise_with_file_name(data, message):
    with pytest.raises(CoverageFormatError, match="artifacts/coverage-report") as raised:
        parse_coverage("artifacts/coverage-report", data)
    assert message in str(raised.value)
    assert isinstance(raised.value, InvalidInput)


def test_oversized_report_is_refused_before_parsing():
    with pytest.raises(CoverageFormatError, match="exceeds"):
        parse_coverage("big.xml", b"<" + b" " * MAX_INPUT_BYTES)


def test_hostile_file_name_in_error_is_neutralised():
    with pytest.raises(CoverageFormatError) as raised:
        parse_coverage("@octocat `<img>`", b"<coverage/>")
    message = str(raised.value)
    assert "@octocat" not in message and "`" not in message and "<img" not in message


# ---------------------------------------------------------------------------------------------
# Coverage gate

GATE = [
    # id, current, baseline, minimum, max_drop, passed, summary fragment
    ("exactly at minimum", 80.0, None, 80.0, 0.5, True, "80.00% (no baseline)"),
    ("below minimum", 79.99, None, 80.0, 0.5, False, "Coverage failed"),
    ("no minimum no baseline", 10.0, None, None, 0.5, True, "no baseline"),
    ("drop exactly max_drop", 79.75, 80.0, None, 0.25, True, "-0.25 vs base 80.00%"),
    ("drop over max_drop", 79.74, 80.0, None, 0.25, False, "-0.26 vs base"),
    ("rise", 81.5, 80.0, 70.0, 0.0, True, "+1.50 vs base"),
    ("unchanged shows plus zero", 80.0, 80.0, None, 0.0, True, "+0.00 vs base"),
    ("tiny float drop rounds to plus zero", 80.0 - 1e-12, 80.0, None, 0.0, True, "+0.00 vs base"),
    ("above minimum but dropped too far", 90.0, 95.0, 80.0, 1.0, False, "-5.00 vs base"),
]


@pytest.mark.parametrize(("current", "baseline", "minimum", "max_drop", "passed", "fragment"),
                         [case[1:] for case in GATE], ids=[case[0] for case in GATE])
def test_coverage_gate(current, baseline, minimum, max_drop, passed, fragment):
    base = None if baseline is None else coverage(baseline)
    result = coverage_gate(coverage(current), base, minimum, max_drop)
    assert result.passed is passed
    assert fragment in result.summary
    assert any(detail.startswith("Failed:") for detail in result.details) is not passed


def test_coverage_gate_minimum_from_another_float_path_passes_at_equality():
    seven_of_nine = parse_coverage("lcov.info", b"SF:a.c\n" + b"".join(
        f"DA:{line},{int(line <= 7)}\n".encode() for line in range(1, 10)
    ) + b"end_of_record\n")
    assert seven_of_nine.line_rate < 7 / 9 * 100  # the same ratio, one ulp apart
    assert coverage_gate(seven_of_nine, None, 7 / 9 * 100, 0.0).passed


def test_coverage_gate_without_baseline_says_so():
    result = coverage_gate(coverage(50.0), None, 40.0, 0.1)
    assert "No baseline for the base branch: only the minimum applies." in result.details


def test_coverage_gate_drop_from_real_ratios_is_exact_at_threshold():
    before = parse_coverage("coverage.xml", fixture("coverage.xml"))  # 8/11
    after = Coverage(700 / 11, 7, 11, {}, COBERTURA)  # one line less: 9.0909... points
    assert coverage_gate(after, before, None, 100 / 11).passed
    assert not coverage_gate(after, before, None, 9.09).passed


def test_coverage_gate_lists_the_five_files_that_fell_most():
    baseline = coverage(90.0, {f"f{index}.py": (10, 10) for index in range(8)} | {"gone.py": (1, 1)})
    current_files = {f"f{index}.py": (10 - index, 10) for index in range(8)} | {"new.py": (0, 10)}
    result = coverage_gate(coverage(80.0, current_files), baseline, None, 100.0)
    dropped = [detail for detail in result.details if "→" in detail]
    assert dropped == [
        "f7.py: 100.00% → 30.00% (-70.00)",
        "f6.py: 100.00% → 40.00% (-60.00)",
        "f5.py: 100.00% → 50.00% (-50.00)",
        "f4.py: 100.00% → 60.00% (-40.00)",
        "f3.py: 100.00% → 70.00% (-30.00)",
    ]


# ---------------------------------------------------------------------------------------------
# Benchmarks


def test_parses_real_benchmark_report():
    benchmarks = parse_benchmarks(fixture("benchmarks.json"))
    assert sorted(benchmarks) == ["test_shapes.py::test_area_speed", "test_shapes.py::test_describe_speed"]
    area = benchmarks["test_shapes.py::test_area_speed"]
    assert area == Benchmark(
        "test_shapes.py::test_area_speed", 1.0116250125845129e-07, 2.934514641383203e-09, 8
    )


def benchmarks_json(*entries) -> bytes:
    return json.dumps({"benchmarks": list(entries)}).encode()


STATS = {"mean": 0.5, "stddev": 0.1, "rounds": 5}
BAD_BENCHMARKS = [
    ("not json", b"{", "invalid JSON"),
    ("no list", b"{}", "no benchmarks list"),
    ("no fullname", benchmarks_json({"stats": STATS}), "no fullname"),
    ("no stats", benchmarks_json({"fullname": "t"}), "no stats"),
    ("negative mean", benchmarks_json({"fullname": "t", "stats": STATS | {"mean": -1}}), "stats.mean"),
    ("string stddev", benchmarks_json({"fullname": "t", "stats": STATS | {"stddev": "x"}}), "stats.stddev"),
    ("zero rounds", benchmarks_json({"fullname": "t", "stats": STATS | {"rounds": 0}}), "stats.rounds"),
    ("duplicate", benchmarks_json({"fullname": "t", "stats": STATS}, {"fullname": "t", "stats": STATS}),
     "appears twice"),
]


@pytest.mark.parametrize(("data", "message"), [case[1:] for case in BAD_BENCHMARKS],
                         ids=[case[0] for case in BAD_BENCHMARKS])
def test_malformed_benchmark_reports_raise(data, message):
    with pytest.raises(BenchmarkFormatError, match=message):
        parse_benchmarks(data)


def test_empty_benchmark_list_parses_to_nothing():
    assert parse_benchmarks(benchmarks_json()) == {}


PERFORMANCE = [
    # id, current means, baseline means, passed, summary fragment, detail fragments
    ("exactly at tolerance", {"a": 1.05}, {"a": 1.0}, True, "worst +5.00% (a)", []),
    ("over tolerance", {"a": 1.06}, {"a": 1.0}, False, "1 slower than 5% tolerance", ["Slower: a +6.00%"]),
    ("faster", {"a": 0.5}, {"a": 1.0}, True, "worst -50.00% (a)", []),
    ("new is listed not failed", {"a": 1.0, "b": 9.0}, {"a": 1.0}, True, "1 compared",
     ["New (no baseline): b"]),
    ("removed is listed not failed", {"a": 1.0}, {"a": 1.0, "c": 1.0}, True, "passed", ["Removed: c"]),
    ("only new", {"b": 1.0}, {}, True, "1 new, none with a baseline", ["New (no baseline): b"]),
    ("none ran", {}, {"a": 1.0, "b": 1.0}, False, "no benchmarks ran, but the base branch has 2", []),
    ("none at all", {}, {}, True, "no benchmarks", []),
    ("zero baseline mean", {"a": 1.0}, {"a": 0.0}, False, "slower", []),
]


@pytest.mark.parametrize(("current", "baseline", "passed", "fragment", "details"),
                         [case[1:] for case in PERFORMANCE], ids=[case[0] for case in PERFORMANCE])
def test_performance_gate(current, baseline, passed, fragment, details):
    result = performance_gate({name: bench(name, mean) for name, mean in current.items()},
                              {name: bench(name, mean) for name, mean in baseline.items()}, 5.0)
    assert result.passed is passed
    assert fragment in result.summary
    for detail in details:
        assert any(line.startswith(detail) for line in result.details), result.details


def test_performance_gate_without_stored_baseline_lists_all_as_new():
    result = performance_gate({"a": bench("a", 1.0)}, None, 5.0)
    assert result == GateResult(
        True, "Performance passed: 1 new, none with a baseline", ["New (no baseline): a"]
    )


def test_performance_gate_caps_details():
    current = {f"b{index:02}": bench(f"b{index:02}", 1.0) for index in range(30)}
    result = performance_gate(current, {}, 5.0)
    assert len(result.details) == 21 and result.details[-1] == "… and 10 more"


# ---------------------------------------------------------------------------------------------
# Reruns

RERUNS = [
    ("passed first time", "success", None, "passed"),
    ("skipped counts as passed", "skipped", None, "passed"),
    ("failure then success is flaky", "failure", "success", "flaky"),
    ("timeout then success is flaky", "timed_out", "success", "flaky"),
    ("failure twice", "failure", "failure", "failed"),
    ("failure, rerun not finished", "failure", "in_progress", "pending"),
    ("failure, no rerun yet", "failure", None, "pending"),
    ("still running", "in_progress", None, "pending"),
    ("cancelled then cancelled", "cancelled", "cancelled", "failed"),
]


@pytest.mark.parametrize(("first", "rerun", "expected"), [case[1:] for case in RERUNS],
                         ids=[case[0] for case in RERUNS])
def test_classify_rerun(first, rerun, expected):
    assert classify_rerun(first, rerun) == expected


def test_classify_rerun_refuses_unknown_conclusions():
    with pytest.raises(InvalidInput, match="unknown check conclusion"):
        classify_rerun("exploded", None)


# ---------------------------------------------------------------------------------------------
# Verdict

COVERAGE_OK = GateResult(True, "Coverage passed: 81.00% (+1.00 vs base 80.00%)", ["Line coverage 81.00%"])
COVERAGE_BAD = GateResult(False, "Coverage failed: 70.00% (-10.00 vs base 80.00%)", ["Failed: fell"])
PERF_OK = GateResult(True, "Performance passed: worst +1.00% (a), 1 compared", [])
PERF_BAD = GateResult(False, "Performance failed: 1 slower than 5% tolerance", ["Slower: a +9.00%"])

VERDICTS = [
    # id, tests, coverage, performance, flaky, approve, conclusion, reasons
    ("all good", "passed", COVERAGE_OK, PERF_OK, [], True, "success", []),
    ("flaky does not block", "flaky", COVERAGE_OK, PERF_OK, ["t1"], True, "success", []),
    ("gates not measured", "passed", None, None, [], True, "success", []),
    ("tests failed", "failed", COVERAGE_OK, PERF_OK, [], False, "failure", ["Tests failed"]),
    ("coverage failed", "passed", COVERAGE_BAD, PERF_OK, [], False, "failure", [COVERAGE_BAD.summary]),
    ("performance failed", "passed", COVERAGE_OK, PERF_BAD, [], False, "failure", [PERF_BAD.summary]),
    ("everything failed", "failed", COVERAGE_BAD, PERF_BAD, [], False, "failure",
     ["Tests failed", COVERAGE_BAD.summary, PERF_BAD.summary]),
    ("ci running", "pending", COVERAGE_OK, PERF_OK, [], False, "neutral",
     ["CI is still running: no verdict yet"]),
    ("ci running with failing gate", "pending", COVERAGE_BAD, None, [], False, "neutral",
     ["CI is still running: no verdict yet"]),
]


@pytest.mark.parametrize(("tests", "coverage_result", "performance_result", "flaky", "approve", "conclusion",
                          "reasons"), [case[1:] for case in VERDICTS], ids=[case[0] for case in VERDICTS])
def test_verdict(tests, coverage_result, performance_result, flaky, approve, conclusion, reasons):
    result = verdict(tests, coverage_result, performance_result, flaky)
    assert (result.approve, result.check_conclusion, result.reasons) == (approve, conclusion, reasons)
    for reason in reasons:
        assert f"- {reason}" in result.summary_markdown


def test_verdict_summary_table():
    markdown = verdict("flaky", COVERAGE_OK, None, ["tests/test_a.py::test_x"]).summary_markdown
    assert markdown.splitlines()[:8] == [
        "## ✅ Test agent: approved",
        "",
        "| Check | Result |",
        "| --- | --- |",
        "| Tests | flaky |",
        "| Coverage | Coverage passed: 81.00% (+1.00 vs base 80.00%) |",
        "| Performance | not measured |",
        "| Flaky | 1 |",
    ]
    assert "- tests/test_a.py::test_x" in markdown


def test_verdict_refuses_unknown_tests_conclusion():
    with pytest.raises(InvalidInput, match="unknown tests conclusion"):
        verdict("success", None, None, [])


HOSTILE = [
    ("mention", "test_x[@octocat]"),
    ("team mention", "@octo-org/admins"),
    ("code span", "`rm -rf`"),
    ("html", "<img src=x onerror=alert(1)>"),
    ("table break", "a | b\n| c"),
    ("link", "[click](https://evil.example)"),
    ("long", "x" * 5000 + "@octocat"),
]


def assert_inert(text: str) -> None:
    assert "`" not in text and "<" not in text and ">" not in text and "|" not in text
    assert "\n" not in text and "](" not in text
    assert all(part.startswith("\u200b") for part in text.split("@")[1:])


@pytest.mark.parametrize("name", [case[1] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_names_are_neutralised_everywhere(name):
    assert_inert(neutralise(name))
    assert len(neutralise(name)) <= MAX_NAME_CHARS
    assert neutralise(neutralise(name)) == neutralise(name)

    files = coverage_gate(coverage(50.0, {name: (1, 2)}), coverage(60.0, {name: (2, 2)}), None, 100.0)
    slower = performance_gate({name: bench(name, 2.0)}, {name: bench(name, 1.0)}, 5.0)
    added = performance_gate({name: bench(name, 2.0)}, {}, 5.0)
    markdown = verdict("flaky", files, slower, [name]).summary_markdown
    added_markdown = verdict("passed", None, added, [name]).summary_markdown
    for line in [*files.details, *slower.details, slower.summary, *added.details]:
        assert_inert(line)
    for row in [*markdown.splitlines(), *added_markdown.splitlines()]:
        if row.startswith("| "):
            assert row.count("|") == 3, row
        else:
            assert_inert(row.replace("->", ""))


def test_neutralise_keeps_the_head_and_tail_of_long_paths():
    path = "src/" + "deep/" * 50 + "module.py"
    shown = neutralise(path)
    assert len(shown) == MAX_NAME_CHARS and shown.startswith("src/deep/") and shown.endswith("deep/module.py")
