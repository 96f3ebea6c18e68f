"""The test agent's Firestore store on the emulator: flaky counts, measurements and baselines."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from functions.test_agent.artifacts import baseline_doc, baseline_from_doc
from functions.test_agent.gates import Benchmark, Coverage
from functions.test_agent.store import TestStore, flaky_doc_id, ref_doc_id

pytestmark = pytest.mark.emulators

REPO = "octo/widgets"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
SHA = "a" * 40


@pytest.fixture
def store(services) -> TestStore:
    return TestStore(services.firestore())


def test_a_flaky_item_is_counted_once_per_commit(store, services):
    store.record_flaky(REPO, ["ci", "lint / unit"], SHA, 7, NOW)
    store.record_flaky(REPO, ["ci"], SHA, 7, NOW + timedelta(minutes=1))  # a retried turn
    store.record_flaky(REPO, ["ci"], "b" * 40, 8, NOW + timedelta(hours=1))

    by_name = {doc["name"]: doc for doc in store.flaky(REPO)}
    assert by_name["ci"]["count"] == 2 and by_name["lint / unit"]["count"] == 1
    assert (by_name["ci"]["last_sha"], by_name["ci"]["last_pull"]) == ("b" * 40, 8)
    assert by_name["ci"]["first_seen"] == NOW and by_name["ci"]["last_seen"] == NOW + timedelta(hours=1)
    assert [doc["name"] for doc in store.flaky(REPO)] == ["ci", "lint / unit"]
    raw = services.firestore().document(f"repos/octo:widgets/flaky/{flaky_doc_id('lint / unit')}").get()
    assert raw.to_dict()["name"] == "lint / unit"
    assert store.flaky("octo/gadgets") == []


def test_concurrent_flaky_reports_of_different_commits_all_count(store):
    shas = [f"{index:040x}" for index in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda sha: store.record_flaky(REPO, ["ci"], sha, 1, NOW), shas))
    [doc] = store.flaky(REPO)
    assert doc["count"] == 6 and sorted(doc["recent_shas"]) == shas


def test_a_measurement_round_trips_and_is_promoted_to_the_baseline(store):
    coverage = Coverage(80.0, 80, 100, {"app/a.py": (40, 50), "app/b.py": (40, 50)}, "cobertura")
    benchmarks = {"t::render": Benchmark("t::render", 0.1, 0.005, 20)}
    assert store.measurement(REPO, SHA) is None and store.baseline(REPO, "main") is None

    store.save_measurement(REPO, SHA, 7, baseline_doc(coverage, benchmarks), NOW)
    measured = store.measurement(REPO, SHA)
    assert (measured["sha"], measured["pull_number"], measured["measured_at"]) == (SHA, 7, NOW)
    assert baseline_from_doc(measured) == (coverage, benchmarks)

    written = store.save_baseline(REPO, "main", measured, sha="f" * 40, head_sha=SHA, pull_number=7, now=NOW)
    assert written["kept"] == []
    stored = store.baseline(REPO, "main")
    assert (stored["sha"], stored["head_sha"], stored["ref"]) == ("f" * 40, SHA, "main")
    assert stored["updated_at"] == NOW
    assert baseline_from_doc(stored) == (coverage, benchmarks)


def test_a_partial_measurement_keeps_the_rest_of_the_baseline(store):
    benchmarks = {"t::render": Benchmark("t::render", 0.1, 0.005, 20)}
    store.save_baseline(REPO, "release/1.0", baseline_doc(Coverage(70.0, 70, 100, {}, "lcov"), benchmarks),
                        sha="1" * 40, now=NOW)
    newer = baseline_doc(Coverage(75.0, 75, 100, {}, "lcov"), None)

    written = store.save_baseline(REPO, "release/1.0", newer, sha="2" * 40, now=NOW)

    assert written["kept"] == ["benchmarks"]
    coverage, kept = baseline_from_doc(store.baseline(REPO, "release/1.0"))
    assert coverage.lines_covered == 75 and kept == benchmarks
    assert ref_doc_id("release/1.0") == "release:1.0"
    assert store.baseline(REPO, "release") is None
