"""Reading reports out of hostile artifact zips, merging artifacts, and storing baselines for Firestore."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest

from functions.test_agent.artifacts import (
    MAX_BASELINE_FILE_BYTES,
    MAX_BASELINE_FILES,
    MAX_ENTRIES,
    ArtifactContents,
    BaselineFormatError,
    baseline_doc,
    baseline_from_doc,
    merge_artifacts,
    read_artifact,
)
from functions.test_agent.gates import (
    COBERTURA,
    COVERAGE_PY,
    LCOV,
    MAX_INPUT_BYTES,
    Benchmark,
    Coverage,
    coverage_gate,
    parse_benchmarks,
    parse_coverage,
    performance_gate,
)
from shared.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "test_agent"
BENCH_NAMES = {"test_shapes.py::test_area_speed", "test_shapes.py::test_describe_speed"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Real reports in real zips

REPORTS = [
    ("cobertura", "coverage.xml", "coverage.xml", COBERTURA, 8, 11),
    ("cobertura named cobertura", "reports/cobertura.xml", "coverage.xml", COBERTURA, 8, 11),
    ("coverage.py json", "coverage.json", "coverage.json", COVERAGE_PY, 8, 11),
    ("lcov.info", "coverage/lcov.info", "coverage.lcov", LCOV, 11, 15),
    ("*.lcov", "out/Unit.LCOV", "coverage.lcov", LCOV, 11, 15),
]


@pytest.mark.parametrize(("entry", "source", "source_format", "covered", "valid"),
                         [case[1:] for case in REPORTS], ids=[case[0] for case in REPORTS])
def test_reads_coverage_reports(entry, source, source_format, covered, valid):
    contents = read_artifact(make_zip({entry: fixture(source), "README.md": b"hello"}))
    assert contents.problems == ()
    assert contents.benchmarks is None
    assert contents.coverage == parse_coverage(entry, fixture(source))
    assert (contents.coverage.source_format, contents.coverage.lines_covered,
            contents.coverage.lines_valid) == (source_format, covered, valid)


def test_reads_coverage_and_benchmarks_together_in_nested_directories():
    contents = read_artifact(make_zip({
        "a/b/c/coverage.xml": fixture("coverage.xml"),
        "deep/er/benchmark-results.json": fixture("benchmarks.json"),
        "htmlcov/index.html": b"<html/>",
        "dir/": b"",
    }))
    assert contents.problems == ()
    assert contents.coverage is not None and contents.coverage.source_format == COBERTURA
    assert contents.benchmarks == parse_benchmarks(fixture("benchmarks.json"))
    assert set(contents.benchmarks) == BENCH_NAMES


def test_stored_uncompressed_entries_are_read():
    contents = read_artifact(make_zip({"coverage.json": fixture("coverage.json")}, zipfile.ZIP_STORED))
    assert contents.coverage is not None and contents.coverage.source_format == COVERAGE_PY


def test_nothing_matching_is_empty_without_problems():
    assert read_artifact(make_zip({"logs/out.txt": b"x"})) == ArtifactContents(None, None, ())


def test_custom_names():
    contents = read_artifact(make_zip({"cov/report.xml": fixture("coverage.xml"),
                                       "perf.json": fixture("benchmarks.json")}),
                             coverage_names=("report.xml",), benchmark_names=("perf.json",))
    assert contents.coverage is not None and set(contents.benchmarks or {}) == BENCH_NAMES


def test_several_coverage_reports_use_the_first_by_sorted_name():
    contents = read_artifact(make_zip({
        "z/coverage.xml": fixture("coverage.xml"),
        "a/lcov.info": fixture("coverage.lcov"),
    }), name="coverage-3.11")
    assert contents.coverage is not None and contents.coverage.source_format == LCOV
    assert contents.problems == (
        "artifact coverage-3.11: 2 coverage reports; used a/lcov.info, ignored z/coverage.xml",
    )


def test_several_benchmark_reports_are_merged_first_wins():
    other = json.dumps({"benchmarks": [
        {"fullname": "test_shapes.py::test_area_speed", "stats": {"mean": 9.0, "stddev": 0.1, "rounds": 3}},
        {"fullname": "t.py::test_new", "stats": {"mean": 1.0, "stddev": 0.1, "rounds": 3}},
    ]}).encode()
    contents = read_artifact(make_zip({"a/benchmark.json": fixture("benchmarks.json"),
                                       "b/my-benchmarks.json": other}))
    assert contents.benchmarks is not None
    assert set(contents.benchmarks) == BENCH_NAMES | {"t.py::test_new"}
    assert contents.benchmarks["test_shapes.py::test_area_speed"].mean_s != 9.0
    assert len(contents.problems) == 1 and "already reported" in contents.problems[0]


# ---------------------------------------------------------------------------------------------
# Hostile zips


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04garbage", fixture("coverage.xml")],
                         ids=["empty", "text", "zip magic only", "xml"])
def test_not_a_zip_is_a_problem_not_an_exception(data):
    contents = read_artifact(data)
    assert contents.coverage is None and contents.benchmarks is None
    assert len(contents.problems) == 1 and "not a readable zip" in contents.problems[0]


def test_truncated_zip_is_a_problem():
    contents = read_artifact(make_zip({"coverage.xml": fixture("coverage.xml")})[:-30])
    assert contents.coverage is None and contents.problems


def test_bomb_is_rejected_from_its_declared_size_without_reading(monkeypatch):
    bomb = make_zip({"coverage.xml": b"<" + b" " * (50 * 1024 * 1024)})
    assert len(bomb) < 200_000
    opened: list[str] = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *args, **kwargs: opened.append(str(name)) or original(
                            self, name, *args, **kwargs))
    started = time.monotonic()
    contents = read_artifact(bomb)
    assert time.monotonic() - started < 5.0
    assert opened == []
    assert contents.coverage is None
    assert len(contents.problems) == 1 and "over the" in contents.problems[0]


def _lie_about_size(data: bytes, size: int) -> bytes:
    """Patch the central directory so every entry claims `size` uncompressed bytes."""
    patched = bytearray(data)
    start = 0
    while (index := patched.find(b"PK\x01\x02", start)) >= 0:
        patched[index + 24:index + 28] = size.to_bytes(4, "little")
        start = index + 4
    return bytes(patched)


def test_bomb_lying_about_its_size_stops_at_the_declared_size():
    bomb = _lie_about_size(make_zip({"coverage.xml": b"<" + b" " * (50 * 1024 * 1024)}), 1000)
    started = time.monotonic()
    contents = read_artifact(bomb)
    assert time.monotonic() - started < 5.0
    assert contents.coverage is None
    assert len(contents.problems) == 1 and "cannot be read" in contents.problems[0]


def test_total_read_across_entries_is_capped():
    # Each entry fits alone; together they exceed the artifact's budget, so the later ones are not read.
    chunk = b" " * (MAX_INPUT_BYTES // 2 + 1)
    contents = read_artifact(make_zip({
        "a/coverage.xml": fixture("coverage.xml"),
        "b/benchmark-1.json": chunk,
        "c/benchmark-2.json": chunk,
    }))
    assert contents.coverage is not None
    assert len(contents.problems) == 2
    assert contents.problems[0].startswith("artifact: b/benchmark-1.json: benchmark report: invalid JSON")
    assert contents.problems[1].startswith("artifact: c/benchmark-2.json declares")


def test_too_many_entries_are_refused():
    entries = {f"f{index}.txt": b"" for index in range(MAX_ENTRIES + 1)}
    entries["coverage.xml"] = fixture("coverage.xml")
    contents = read_artifact(make_zip(entries, zipfile.ZIP_STORED))
    assert contents.coverage is None
    assert contents.problems == (f"artifact: {MAX_ENTRIES + 2} entries, more than {MAX_ENTRIES}: not read",)


def test_path_traversal_names_are_only_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    contents = read_artifact(make_zip({
        "../../etc/coverage.xml": fixture("coverage.xml"),
        "/abs/benchmark.json": fixture("benchmarks.json"),
    }))
    assert contents.coverage is not None and contents.benchmarks is not None
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent.parent / "etc" / "coverage.xml").exists()


def test_parse_failure_is_reported_neutralised_and_short():
    hostile = "@admin/<b>" + "x" * 500 + "/coverage.xml"
    contents = read_artifact(make_zip({hostile: b"<coverage", "benchmark.json": b"[" * 100_000}))
    assert contents.coverage is None and contents.benchmarks is None
    assert len(contents.problems) == 2
    for problem in contents.problems:
        assert len(problem) <= 240
        assert "@admin" not in problem and "<b>" not in problem
    assert "invalid XML" in contents.problems[0]
    assert contents.problems[1] == "artifact: benchmark.json: nested too deeply to parse"


def test_benchmark_with_huge_integer_is_a_problem():
    contents = read_artifact(make_zip({"benchmark.json": b'{"benchmarks": [' + b"1" * 5000 + b"]}"}))
    assert contents.benchmarks is None
    assert len(contents.problems) == 1 and "cannot be parsed" in contents.problems[0]


def test_encrypted_entry_is_not_read():
    data = bytearray(make_zip({"coverage.xml": fixture("coverage.xml")}, zipfile.ZIP_STORED))
    index = data.find(b"PK\x01\x02")
    data[index + 8] |= 0x1  # the central directory's general purpose flag: encrypted
    contents = read_artifact(bytes(data))
    assert contents.coverage is None and "encrypted" in contents.problems[0]


# ---------------------------------------------------------------------------------------------
# Merging artifacts


def test_merge_artifacts():
    first = read_artifact(make_zip({"coverage.xml": fixture("coverage.xml")}))
    second = read_artifact(make_zip({"lcov.info": fixture("coverage.lcov"),
                                     "benchmark.json": fixture("benchmarks.json")}))
    broken = read_artifact(b"nope", name="broken")
    merged = merge_artifacts([first, broken, second])
    assert merged.coverage == first.coverage
    assert merged.benchmarks == second.benchmarks
    assert merged.problems[0].startswith("artifact broken: not a readable zip")
    assert merged.problems[1] == "2 artifacts have coverage reports; used the first"


def test_merge_nothing():
    assert merge_artifacts([]) == ArtifactContents(None, None, ())


def test_merge_benchmarks_from_several_artifacts_first_wins():
    a = ArtifactContents(None, {"x": Benchmark("x", 1.0, 0.1, 5)}, ())
    b = ArtifactContents(None, {"x": Benchmark("x", 2.0, 0.1, 5), "y": Benchmark("y", 3.0, 0.1, 5)}, ())
    merged = merge_artifacts([a, b])
    assert merged.benchmarks == {"x": Benchmark("x", 1.0, 0.1, 5), "y": Benchmark("y", 3.0, 0.1, 5)}
    assert merged.problems == ("artifact 2: 1 benchmarks already reported, kept the first: x",)


# ---------------------------------------------------------------------------------------------
# Baselines


def _firestore_friendly(value, depth=0) -> None:
    assert depth < 20
    if isinstance(value, dict):
        for key, inner in value.items():
            assert isinstance(key, str) and key.islower() and key.replace("_", "").isalpha()
            _firestore_friendly(inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            assert not isinstance(inner, list)  # Firestore refuses arrays directly inside arrays
            _firestore_friendly(inner, depth + 1)
    else:
        assert value is None or isinstance(value, bool | int | float | str)
        if isinstance(value, str):
            assert not value.lstrip().startswith(("{", "["))


@pytest.mark.parametrize("source", ["coverage.xml", "coverage.json", "coverage.lcov"])
def test_baseline_round_trip(source):
    coverage = parse_coverage(source, fixture(source))
    benchmarks = parse_benchmarks(fixture("benchmarks.json"))
    doc = baseline_doc(coverage, benchmarks)
    _firestore_friendly(doc)
    json.dumps(doc)
    assert baseline_from_doc(doc) == (coverage, benchmarks)
    assert coverage_gate(coverage, baseline_from_doc(doc)[0], None, 0.0).passed
    assert performance_gate(benchmarks, baseline_from_doc(doc)[1], 5.0).passed


@pytest.mark.parametrize(("coverage", "benchmarks"), [(None, None), (None, {}),
                                                      (Coverage(100.0, 0, 0, {}, LCOV), None)])
def test_baseline_round_trip_of_empty_parts(coverage, benchmarks):
    assert baseline_from_doc(baseline_doc(coverage, benchmarks)) == (coverage, benchmarks)


def test_no_baseline():
    assert baseline_from_doc(None) == (None, None)


def test_baseline_keeps_the_largest_files_and_whole_totals():
    files = {f"src/pkg.{index}/mod.py": (index // 2, index) for index in range(1, 3001)}
    covered, valid = sum(c for c, _ in files.values()), sum(v for _, v in files.values())
    coverage = Coverage(100.0 * covered / valid, covered, valid, files, COBERTURA)
    doc = baseline_doc(coverage, None)
    stored = doc["coverage"]["files"]
    assert len(stored) == MAX_BASELINE_FILES and doc["coverage"]["files_total"] == 3000
    assert min(entry["valid"] for entry in stored) == 1001
    restored, _ = baseline_from_doc(doc)
    assert (restored.line_rate, restored.lines_covered, restored.lines_valid) == (
        coverage.line_rate, covered, valid)
    assert restored.files["src/pkg.3000/mod.py"] == (1500, 3000)
    assert "src/pkg.1/mod.py" not in restored.files


def test_baseline_document_stays_far_below_one_mebibyte():
    files = {f"{index:05d}/" + "p" * 4000: (1, 2) for index in range(MAX_BASELINE_FILES)}
    benchmarks = {f"{index:05d}" + "b" * 4000: Benchmark("x", 1.0, 0.1, 3) for index in range(1500)}
    doc = baseline_doc(Coverage(50.0, 2000, 4000, files, LCOV), benchmarks)
    size = len(json.dumps(doc).encode())
    assert size < 700_000
    assert sum(len(entry["path"]) for entry in doc["coverage"]["files"]) <= MAX_BASELINE_FILE_BYTES
    assert doc["benchmarks"]["total"] == 1500 and 0 < len(doc["benchmarks"]["items"]) < 1500


@pytest.mark.parametrize("doc", [
    {"version": 2, "coverage": None, "benchmarks": None},
    {"coverage": None},
    {"version": 1, "coverage": "{\"line_rate\": 1}", "benchmarks": None},
    {"version": 1, "coverage": {"lines_covered": -1, "lines_valid": 2, "files": [], "source_format": "lcov"}},
    {"version": 1, "coverage": {"lines_covered": 1, "lines_valid": 2, "files": [{"path": "a"}],
                                "source_format": "lcov"}},
    {"version": 1, "coverage": {"lines_covered": True, "lines_valid": 2, "files": [], "source_format": "x"}},
    {"version": 1,
     "benchmarks": {"items": [{"name": "a", "mean_s": float("nan"), "stddev_s": 0, "rounds": 1}]}},
    {"version": 1, "benchmarks": {"items": [{"name": "a", "mean_s": 1.0, "stddev_s": 0}]}},
    {"version": 1, "benchmarks": {"items": "a"}},
], ids=["version", "no version", "json string", "negative", "file without counts", "bool count", "nan mean",
        "no rounds", "items not a list"])
def test_malformed_baseline_is_refused(doc):
    with pytest.raises(BaselineFormatError) as raised:
        baseline_from_doc(doc)
    assert isinstance(raised.value, InvalidInput)
