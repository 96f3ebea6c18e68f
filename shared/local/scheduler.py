"""Cloud Scheduler for `agentops local up`: each job of `topology.SCHEDULER_JOBS` publishes its tick.

Runs as a child of the local runner, with the functions' environment (the Pub/Sub emulator). At the
start of every minute it publishes `{"job": ...}` to `schedule-ticks` for each job whose unix-cron
schedule matches that minute, in UTC, as the Terraform-declared jobs do in Google Cloud.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

from shared import topology
from shared.errors import ConfigError, RetryableError

log = logging.getLogger("agentops.scheduler")

# unix-cron fields: minute, hour, day of month, month, day of week (0 = Sunday).
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ConfigError(f"cron step {part!r} must be at least 1")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(value) for value in base.split("-", 1))
        else:
            start = end = int(base)
        if not low <= start <= end <= high:
            raise ConfigError(f"cron field {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def matches(schedule: str, at: datetime) -> bool:
    """Whether a five-field unix-cron schedule fires at the minute `at`."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ConfigError(f"cron schedule {schedule!r} must have five fields")
    minute, hour, day, month, weekday = (_field(text, *bounds) for text, bounds in zip(fields, _RANGES,
                                                                                        strict=True))
    return (at.minute in minute and at.hour in hour and at.month in month
            and at.day in day and (at.isoweekday() % 7) in weekday)


def due(jobs: Iterable[topology.SchedulerJob], at: datetime) -> list[str]:
    return [job.job for job in jobs if matches(job.schedule, at)]


def run(publish: Callable[[str], None], clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        sleep: Callable[[float], None] = time.sleep, stop: Callable[[], bool] = lambda: False) -> None:
    """Publish each minute's due ticks until `stop()`; a failed publish is logged and retried next minute."""
    last = None
    while not stop():
        now = clock().replace(second=0, microsecond=0)
        if now != last:
            last = now
            for job in due(topology.SCHEDULER_JOBS, now):
                try:
                    publish(job)
                except RetryableError as exc:
                    log.error("could not publish the %s tick: %s", job, exc)
        following = now + timedelta(minutes=1)
        sleep(max(0.5, min(5.0, (following - clock()).total_seconds())))


def main() -> int:
    from shared.bootstrap import Services
    from shared.config import Config
    from shared.messages import ScheduleTick

    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    publisher = Services(Config.from_env()).publisher()
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stopping.update(now=True))

    def publish(job: str) -> None:
        tick = ScheduleTick(job)
        publisher.publish(topology.SCHEDULE_TICKS, tick.encode(), {"job": job})
        log.info("published the %s tick", job)

    run(publish, stop=lambda: stopping["now"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
