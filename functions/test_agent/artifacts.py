"""Read coverage and benchmark reports out of a GitHub Actions artifact zip, and store baselines. Pure.

An artifact is chosen by the pull request, so its zip is hostile until read:

- It is read in memory with the standard library's `zipfile` and never extracted: entry names, with
  `..`, absolute paths or backslashes, are only names. Reports are found anywhere in the tree by their
  base name (case-insensitive fnmatch), directories are skipped.
- Anything wrong is a problem in the result, never an exception: not a zip, more than MAX_ENTRIES
  entries, encrypted or unsupported entries, a report that fails to parse.
- Zip bombs: at most `gates.MAX_INPUT_BYTES` are read from one artifact in all. An entry whose declared
  size does not fit the remaining budget is not opened; others are read in chunks and reading stops
  at the budget whatever the header claimed (zipfile also enforces the declared size and the CRC).
- Several coverage reports in one artifact: the first by sorted entry name is used and the others
  are named in a problem. Several benchmark reports are merged; a benchmark name seen twice keeps its
  first report.
- Problem texts are neutralised and short: entry names are attacker-controlled.

`merge_artifacts` combines several artifacts in the order given (the caller sorts them by artifact
name): the first coverage wins, benchmarks are merged the same way.

A baseline (the base branch's coverage and benchmarks) is stored as a Firestore-friendly map by
`baseline_doc`: snake_case fields, no JSON strings, and per-file coverage and benchmarks as lists of
maps rather than maps keyed by path or name (paths contain dots, which would need quoting in update
paths). It stays far below Firestore's 1 MiB document limit: at most MAX_BASELINE_FILES files, the
largest by lines first, within MAX_BASELINE_FILE_BYTES of paths; at most MAX_BASELINE_BENCHMARKS
benchmarks within MAX_BASELINE_BENCHMARK_BYTES of names. Totals are always those of the whole report.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from functions.test_agent.gates import (
    MAX_INPUT_BYTES,
    Benchmark,
    Coverage,
    CoverageFormatError,
    neutralise,
    parse_benchmarks,
    parse_coverage,
)
from shared.errors import InvalidInput

MAX_ENTRIES = 1000
MAX_PROBLEMS = 20
PROBLEM_CHARS = 240
CHUNK_BYTES = 64 * 1024

COVERAGE_NAMES = ("coverage.xml", "cobertura.xml", "coverage.json", "lcov.info", "*.lcov")
BENCHMARK_NAMES = ("benchmark*.json", "*benchmarks*.json")

BASELINE_VERSION = 1
MAX_BASELINE_FILES = 2000
MAX_BASELINE_FILE_BYTES = 400_000
MAX_BASELINE_BENCHMARKS = 1000
MAX_BASELINE_BENCHMARK_BYTES = 200_000
# Firestore counts a string as its UTF-8 bytes + 1 and a field name likewise; a generous allowance for
# the field names and numbers of one list entry.
ENTRY_OVERHEAD_BYTES = 64


class BaselineFormatError(InvalidInput):
    """A stored baseline document is malformed."""


@dataclass(frozen=True)
class ArtifactContents:
    coverage: Coverage | None
    benchmarks: dict[str, Benchmark] | None  # None: no benchmark report found
    problems: tuple[str, ...]


def _problem(text: str) -> str:
    return neutralise(text, PROBLEM_CHARS)


def _basename(name: str) -> str:
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


def _matches(name: str, patterns: Sequence[str]) -> bool:
    base = _basename(name)
    return any(fnmatchcase(base, pattern.lower()) for pattern in patterns)


def _capped(problems: list[str]) -> tuple[str, ...]:
    if len(problems) <= MAX_PROBLEMS:
        return tuple(problems)
    return (*problems[:MAX_PROBLEMS], f"… and {len(problems) - MAX_PROBLEMS} more problems")


def read_artifact(zip_bytes: bytes, coverage_names: Sequence[str] = COVERAGE_NAMES,
                  benchmark_names: Sequence[str] = BENCHMARK_NAMES, name: str = "") -> ArtifactContents:
    """The coverage and benchmark reports in one artifact zip; `name` (the artifact's) prefixes problems."""
    prefix = f"artifact {name}: " if name else "artifact: "
    problems: list[str] = []

    def note(text: str) -> None:
        problems.append(_problem(prefix + text))

    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError) \
            as exc:
        note(f"not a readable zip file ({exc})")
        return ArtifactContents(None, None, _capped(problems))

    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            note(f"{len(entries)} entries, more than {MAX_ENTRIES}: not read")
            return ArtifactContents(None, None, _capped(problems))
        files = sorted((entry for entry in entries if not entry.is_dir()), key=lambda entry: entry.filename)
        coverage_entries = [entry for entry in files if _matches(entry.filename, coverage_names)]
        benchmark_entries = [
            entry for entry in files
            if entry not in coverage_entries and _matches(entry.filename, benchmark_names)
        ]
        budget = [MAX_INPUT_BYTES]

        coverage: Coverage | None = None
        if len(coverage_entries) > 1:
            ignored = ", ".join(entry.filename for entry in coverage_entries[1:])
            note(f"{len(coverage_entries)} coverage reports; used {coverage_entries[0].filename}, "
                 f"ignored {ignored}")
        if coverage_entries:
            entry = coverage_entries[0]
            data = _read(archive, entry, budget, note)
            if data is not None:
                try:
                    coverage = parse_coverage(entry.filename, data)
                except (InvalidInput, ValueError, RecursionError) as exc:
                    note(_parse_failure(entry.filename, exc))

        benchmarks: dict[str, Benchmark] | None = None
        for entry in benchmark_entries:
            data = _read(archive, entry, budget, note)
            if data is None:
                continue
            try:
                found = parse_benchmarks(data)
            except (InvalidInput, ValueError, RecursionError) as exc:
                note(_parse_failure(entry.filename, exc))
                continue
            benchmarks = _merge_benchmarks(benchmarks, found, entry.filename, note)
    return ArtifactContents(coverage, benchmarks, _capped(problems))


def _parse_failure(filename: str, exc: Exception) -> str:
    if isinstance(exc, CoverageFormatError):
        return str(exc)  # names the report already
    if isinstance(exc, InvalidInput):
        return f"{filename}: {exc}"
    if isinstance(exc, RecursionError):
        return f"{filename}: nested too deeply to parse"
    return f"{filename}: cannot be parsed ({exc})"


Note = Callable[[str], None]


def _read(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, budget: list[int], note: Note) -> bytes | None:
    """The entry's bytes, or None (with a problem noted) when it is encrypted, broken or over budget."""
    if entry.flag_bits & 0x1:
        note(f"{entry.filename} is encrypted: not read")
        return None
    if entry.file_size > budget[0]:
        note(f"{entry.filename} declares {entry.file_size} bytes, over the {MAX_INPUT_BYTES}-byte limit: "
             "not read")
        return None
    limit = budget[0]
    chunks: list[bytes] = []
    total = 0
    try:
        with archive.open(entry) as stream:
            while True:
                chunk = stream.read(min(CHUNK_BYTES, limit - total + 1))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    budget[0] = 0
                    note(f"{entry.filename} is larger than the {MAX_INPUT_BYTES}-byte limit: not read")
                    return None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
            ValueError) as exc:
        note(f"{entry.filename} cannot be read ({exc})")
        return None
    budget[0] -= total
    return b"".join(chunks)


def _merge_benchmarks(into: dict[str, Benchmark] | None, found: Mapping[str, Benchmark], source: str,
                      note: Note) -> dict[str, Benchmark]:
    merged = dict(into or {})
    twice = sorted(name for name in found if name in merged)
    merged.update((name, bench) for name, bench in found.items() if name not in merged)
    if twice:
        shown = ", ".join(twice[:5]) + (f" and {len(twice) - 5} more" if len(twice) > 5 else "")
        note(f"{source}: {len(twice)} benchmarks already reported, kept the first: {shown}")
    return merged


def merge_artifacts(contents: Sequence[ArtifactContents]) -> ArtifactContents:
    """Several artifacts as one, in the order given: the first coverage, all benchmarks, all problems."""
    problems: list[str] = []
    for part in contents:
        problems.extend(part.problems)
    with_coverage = [part.coverage for part in contents if part.coverage is not None]
    if len(with_coverage) > 1:
        problems.append(f"{len(with_coverage)} artifacts have coverage reports; used the first")
    benchmarks: dict[str, Benchmark] | None = None
    for index, part in enumerate(contents):
        if part.benchmarks is not None:
            benchmarks = _merge_benchmarks(benchmarks, part.benchmarks, f"artifact {index + 1}",
                                           lambda text: problems.append(_problem(text)))
    return ArtifactContents(with_coverage[0] if with_coverage else None, benchmarks, _capped(problems))


# ---------------------------------------------------------------------------------------------
# Baselines as Firestore maps


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass")) + 1


def baseline_doc(coverage: Coverage | None, benchmarks: Mapping[str, Benchmark] | None) -> dict[str, Any]:
    """A baseline as a Firestore-friendly map; `baseline_from_doc` restores it."""
    return {
        "version": BASELINE_VERSION,
        "coverage": None if coverage is None else _coverage_doc(coverage),
        "benchmarks": None if benchmarks is None else _benchmarks_doc(benchmarks),
    }


def _coverage_doc(coverage: Coverage) -> dict[str, Any]:
    largest = sorted(coverage.files.items(), key=lambda item: (-item[1][1], item[0]))
    kept: list[dict[str, Any]] = []
    used = 0
    for path, (covered, valid) in largest:
        if len(kept) >= MAX_BASELINE_FILES:
            break
        size = _utf8(path) + ENTRY_OVERHEAD_BYTES
        if used + size > MAX_BASELINE_FILE_BYTES:
            continue  # a very long path; shorter ones may still fit
        used += size
        kept.append({"path": path, "covered": covered, "valid": valid})
    kept.sort(key=lambda entry: entry["path"])
    return {
        "line_rate": coverage.line_rate,
        "lines_covered": coverage.lines_covered,
        "lines_valid": coverage.lines_valid,
        "source_format": coverage.source_format,
        "files": kept,
        "files_total": len(coverage.files),
    }


def _benchmarks_doc(benchmarks: Mapping[str, Benchmark]) -> dict[str, Any]:
    kept: list[dict[str, Any]] = []
    used = 0
    for name in sorted(benchmarks):
        if len(kept) >= MAX_BASELINE_BENCHMARKS:
            break
        size = _utf8(name) + ENTRY_OVERHEAD_BYTES
        if used + size > MAX_BASELINE_BENCHMARK_BYTES:
            continue
        used += size
        bench = benchmarks[name]
        kept.append({"name": name, "mean_s": bench.mean_s, "stddev_s": bench.stddev_s,
                     "rounds": bench.rounds})
    return {"items": kept, "total": len(benchmarks)}


def _field(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BaselineFormatError(f"baseline: {where}{key} is missing or invalid")
    return value


def _count(doc: Mapping[str, Any], key: str, where: str) -> int:
    value = _field(doc, key, int, where)
    if value < 0:
        raise BaselineFormatError(f"baseline: {where}{key} is negative")
    return value


def _number(doc: Mapping[str, Any], key: str, where: str) -> float:
    value = float(_field(doc, key, (int, float), where))
    if not math.isfinite(value) or value < 0:
        raise BaselineFormatError(f"baseline: {where}{key} is invalid")
    return value


def baseline_from_doc(doc: Mapping[str, Any] | None) -> tuple[Coverage | None, dict[str, Benchmark] | None]:
    """Restore `baseline_doc`'s map; raise BaselineFormatError (InvalidInput) if it is malformed.

    The line rate is recomputed from the stored totals, exactly as the parsers compute it.
    """
    if doc is None:
        return None, None
    if not isinstance(doc, Mapping) or doc.get("version") != BASELINE_VERSION:
        version = doc.get("version") if isinstance(doc, Mapping) else None
        raise BaselineFormatError(f"baseline: unsupported version {neutralise(repr(version))}")
    coverage = None
    raw = doc.get("coverage")
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise BaselineFormatError("baseline: coverage is not a map")
        covered, valid = _count(raw, "lines_covered", "coverage."), _count(raw, "lines_valid", "coverage.")
        files: dict[str, tuple[int, int]] = {}
        for entry in _field(raw, "files", list, "coverage."):
            if not isinstance(entry, Mapping):
                raise BaselineFormatError("baseline: coverage.files holds a non-map")
            path = _field(entry, "path", str, "coverage.files[].")
            where = "coverage.files[]."
            files[path] = (_count(entry, "covered", where), _count(entry, "valid", where))
        rate = 100.0 * covered / valid if valid else 100.0
        coverage = Coverage(rate, covered, valid, files, _field(raw, "source_format", str, "coverage."))
    benchmarks = None
    raw = doc.get("benchmarks")
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise BaselineFormatError("baseline: benchmarks is not a map")
        benchmarks = {}
        for entry in _field(raw, "items", list, "benchmarks."):
            if not isinstance(entry, Mapping):
                raise BaselineFormatError("baseline: benchmarks.items holds a non-map")
            where = "benchmarks.items[]."
            name = _field(entry, "name", str, where)
            rounds = _count(entry, "rounds", where)
            mean, stddev = _number(entry, "mean_s", where), _number(entry, "stddev_s", where)
            benchmarks[name] = Benchmark(name, mean, stddev, rounds)
    return coverage, benchmarks
