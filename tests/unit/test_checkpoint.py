"""An agent's checkpoint between turns: merged across concurrent turns, bounded in size."""

from __future__ import annotations

from datetime import date

import pytest

from shared.task_store import MAX_CHECKPOINT_BYTES, checkpoint, merge_checkpoint

MERGES = [
    ("new-key", {"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
    ("newer-value-wins", {"a": 1}, {"a": 2}, {"a": 2}),
    ("maps-merge-deeply", {"reruns": {"7": "failure"}}, {"reruns": {"9": "timed_out"}},
     {"reruns": {"7": "failure", "9": "timed_out"}}),
    ("a-turn-that-knew-less-erases-nothing", {"reruns": {"7": "failure"}, "check_run_id": 5},
     {"check_run_id": 5}, {"reruns": {"7": "failure"}, "check_run_id": 5}),
    ("none-removes", {"a": 1, "b": 2}, {"a": None}, {"b": 2}),
    ("lists-are-replaced", {"refused": [1, 2]}, {"refused": [3]}, {"refused": [3]}),
    ("a-map-replaces-a-scalar", {"a": 1}, {"a": {"x": 1}}, {"a": {"x": 1}}),
]


@pytest.mark.parametrize("old,new,expected", [c[1:] for c in MERGES], ids=[c[0] for c in MERGES])
def test_merge_checkpoint(old, new, expected):
    assert merge_checkpoint(old, new) == expected
    assert old == dict(old)  # the inputs are not changed


def test_an_oversized_checkpoint_is_replaced_by_a_note_not_stored():
    stored = checkpoint({"blob": "x" * (MAX_CHECKPOINT_BYTES + 1)})
    assert list(stored) == ["dropped"] and str(MAX_CHECKPOINT_BYTES) in stored["dropped"]
    assert checkpoint({"when": date(2026, 12, 1)}) == {"when": "2026-12-01"}  # plain data only
