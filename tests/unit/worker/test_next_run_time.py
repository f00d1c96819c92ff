"""The schedule status's next run time, memoized per (schedule, time zone): the memo must
give exactly what croniter gives, on both sides of a firing and across a DST change."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from worker.reconcile.cronjobs import _NEXT_RUNS, next_run_time


def direct(schedule: str, timezone: str, now: float) -> str:
    start = datetime.fromtimestamp(now, ZoneInfo(timezone))
    following = croniter(schedule, start).get_next(datetime)
    return following.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_memo_agrees_with_croniter_at_every_step() -> None:
    _NEXT_RUNS.clear()
    start = datetime(2026, 3, 28, 22, 0, tzinfo=UTC).timestamp()  # London springs forward
    for schedule, timezone in [("30 1 * * *", "Europe/London"), ("*/7 * * * *", "UTC"),
                               ("0 9 * * 1-5", "America/New_York")]:
        for step in range(0, 3 * 24 * 3600, 397):  # odd steps land on and around firings
            now = start + step
            assert next_run_time(schedule, timezone, now=now) == direct(schedule, timezone, now)


def test_exactly_at_a_firing_the_next_one_is_given() -> None:
    _NEXT_RUNS.clear()
    firing = datetime(2026, 6, 1, 3, 0, tzinfo=UTC).timestamp()
    assert next_run_time("0 3 * * *", "UTC", now=firing - 1) == "2026-06-01T03:00:00Z"
    assert next_run_time("0 3 * * *", "UTC", now=firing) == "2026-06-02T03:00:00Z"


def test_a_bad_schedule_or_zone_gives_none() -> None:
    assert next_run_time("not a cron", "UTC", now=0) is None
    assert next_run_time("0 3 * * *", "Mars/Olympus", now=0) is None
