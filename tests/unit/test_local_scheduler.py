"""The local stand-in for Cloud Scheduler fires each job on the minutes its cron schedule names."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared import topology
from shared.errors import ConfigError, RetryableError
from shared.local import scheduler

MONDAY_9 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)  # a Monday


def test_each_declared_job_fires_when_its_schedule_says():
    assert scheduler.due(topology.SCHEDULER_JOBS, MONDAY_9) == [
        "weekly_report", "monitor", "redelivery_sweep", "task_sweep"]
    assert scheduler.due(topology.SCHEDULER_JOBS, MONDAY_9 + timedelta(minutes=1)) == ["monitor"]
    five_past = MONDAY_9 + timedelta(minutes=5)
    assert scheduler.due(topology.SCHEDULER_JOBS, five_past) == ["monitor", "task_sweep"]
    assert "repo_scout" in scheduler.due(topology.SCHEDULER_JOBS, MONDAY_9.replace(hour=8))
    assert "weekly_report" not in scheduler.due(topology.SCHEDULER_JOBS, MONDAY_9 + timedelta(days=1))
    quarter_past_midnight = MONDAY_9.replace(hour=0, minute=15)
    assert scheduler.due(topology.SCHEDULER_JOBS, quarter_past_midnight) == [
        "daily_metrics", "monitor", "redelivery_sweep", "task_sweep"]
    assert "daily_metrics" not in scheduler.due(topology.SCHEDULER_JOBS, MONDAY_9)


@pytest.mark.parametrize("schedule", ["* * * *", "61 * * * *", "*/0 * * * *", "5-1 * * * *"])
def test_a_bad_schedule_is_refused_clearly(schedule):
    with pytest.raises(ConfigError):
        scheduler.matches(schedule, MONDAY_9)


def test_run_publishes_once_per_minute_and_survives_a_failed_publish():
    times = iter([MONDAY_9, MONDAY_9 + timedelta(seconds=30), MONDAY_9 + timedelta(seconds=30),
                  MONDAY_9 + timedelta(minutes=1), MONDAY_9 + timedelta(minutes=1, seconds=1)])
    current = {"at": MONDAY_9}
    published: list[str] = []

    def clock():
        return current["at"]

    def sleep(_seconds):
        current["at"] = next(times, current["at"])

    def publish(job):
        if job == "redelivery_sweep":
            raise RetryableError("emulator away")
        published.append(job)

    rounds = {"n": 0}

    def stop():
        rounds["n"] += 1
        return rounds["n"] > 5

    scheduler.run(publish, clock=clock, sleep=sleep, stop=stop)
    assert published.count("monitor") == 2 and published.count("weekly_report") == 1
    assert "redelivery_sweep" not in published
