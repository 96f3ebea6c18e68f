"""The metrics shell's pure helpers: mapping scans and GitHub's answers, which week, the setting."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from functions.metrics import job, weekly
from functions.metrics.dora import day_window, week_window
from functions.metrics.sources import ci_runs_from_scans, coverage_from_scans, pull_from_github
from shared.config import Config
from shared.errors import ConfigError

T = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


def test_ci_runs_are_one_per_run_id_the_newest_scan_winning_and_unfinished_ones_left_out():
    old = {"scanned_at": T, "ci_runs": [
        {"run_id": 1, "conclusion": None, "created_at": T, "updated_at": T},
        {"run_id": 2, "conclusion": "failure", "created_at": T, "updated_at": "2026-11-24T12:05:00Z"}]}
    new = {"scanned_at": T + timedelta(hours=1), "ci_runs": [
        {"run_id": 1, "conclusion": "success", "created_at": T, "updated_at": T + timedelta(minutes=9),
         "actor": "alice"}]}
    runs = ci_runs_from_scans("o/r", [new, old])
    assert [(run.conclusion, run.finished_at.minute, run.actor) for run in runs] == [
        ("failure", 5, ""), ("success", 9, "alice")]
    assert ci_runs_from_scans("o/r", []) == []


def test_coverage_samples_skip_scans_without_a_usable_rate():
    scans = [{"scanned_at": T, "coverage": {"line_rate": 81.5}}, {"scanned_at": T, "coverage": None},
             {"scanned_at": T, "coverage": {"line_rate": 180.0}},
             {"scanned_at": T, "coverage": {"line_rate": True}}]
    assert [sample.line_rate for sample in coverage_from_scans("o/r", scans)] == [81.5]


def test_a_baseline_seen_by_several_scans_is_one_sample_credited_to_its_merge():
    baseline = {"line_rate": 82.0, "at": T - timedelta(hours=2), "sha": "abc"}
    scans = [{"scanned_at": T, "coverage": baseline},
             {"scanned_at": T + timedelta(hours=4), "coverage": baseline}]
    [sample] = coverage_from_scans("o/r", scans, {"abc": "agentops[bot]"})
    assert (sample.at, sample.actor, sample.sha) == (T - timedelta(hours=2), "agentops[bot]", "abc")


def test_a_pull_request_and_its_reviews_as_github_gives_them():
    pull = {"number": 7, "user": {"login": "agentops[bot]"}, "created_at": "2026-11-24T10:00:00Z",
            "merged_at": "2026-11-24T11:00:00Z", "closed_at": "2026-11-24T11:00:00Z"}
    reviews = [{"user": {"login": "alice"}, "state": "APPROVED", "submitted_at": "2026-11-24T10:30:00Z",
                "commit_id": "abc"}, {"user": {"login": "bob"}, "state": "PENDING"}]
    found = pull_from_github("o/r", pull, reviews)
    assert (found.number, found.author, found.merged_at.hour) == (7, "agentops[bot]", 11)
    assert [(review.reviewer, review.state) for review in found.reviews] == [("alice", "APPROVED")]
    assert pull_from_github("o/r", {"number": 1}, []) is None


def test_a_day_is_as_of_its_end_plus_the_settle_time_then_a_day_later_final_or_now_when_earlier():
    window = day_window(date(2026, 11, 24))
    first_tick = window.end + job.SETTLE
    assert job.as_of(window, first_tick + timedelta(minutes=7)) == first_tick  # provisional
    assert not job.is_final(window, first_tick + timedelta(hours=23))
    final = first_tick + job.FINAL_AFTER
    assert job.is_final(window, final)
    assert job.as_of(window, window.end + timedelta(days=3)) == final
    assert job.as_of(window, T) == T


@pytest.mark.parametrize("now, monday", [
    (datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc), date(2026, 11, 23)),  # the Monday tick
    (datetime(2026, 12, 6, 23, 59, tzinfo=timezone.utc), date(2026, 11, 23)),  # the Sunday after
    (datetime(2026, 12, 7, 0, 0, tzinfo=timezone.utc), date(2026, 11, 30)),
])
def test_the_report_is_of_the_last_full_week(now, monday):
    assert weekly.report_monday(now) == monday


def test_links_point_at_github_a_server_or_the_sandbox():
    assert weekly.link_base("https://api.github.com") == "https://github.com"
    assert weekly.link_base("https://git.example.com/api/v3/") == "https://git.example.com"
    assert weekly.link_base("http://127.0.0.1:8070") == "http://127.0.0.1:8070"


def test_the_week_lists_incidents_opened_in_it_or_still_open_in_it():
    week = week_window(date(2026, 11, 23))
    docs = [{"incident_id": "before-closed", "opened_at": week.start - timedelta(days=2),
             "closed_at": week.start - timedelta(days=1)},
            {"incident_id": "before-open", "opened_at": week.start - timedelta(days=2), "closed_at": None},
            {"incident_id": "inside", "opened_at": T, "closed_at": T + timedelta(hours=1)},
            {"incident_id": "after", "opened_at": week.end, "closed_at": None}]
    assert [doc["incident_id"] for doc in weekly.week_incidents(docs, week)] == ["before-open", "inside"]


def test_the_report_repo_setting_is_owner_name():
    base = {"GOOGLE_CLOUD_PROJECT": "p"}
    assert Config.from_env(base).report_repo == ""
    assert Config.from_env({**base, "AGENTOPS_REPORT_REPO": " octo/reports "}).report_repo == "octo/reports"
    for bad in ("octo", "octo/reports/x", "https://github.com/octo/reports", "octo/re ports"):
        with pytest.raises(ConfigError, match="AGENTOPS_REPORT_REPO"):
            Config.from_env({**base, "AGENTOPS_REPORT_REPO": bad})
