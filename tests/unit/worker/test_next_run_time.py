"""The schedule status's next run time (schedules run in UTC, as in the0), memoized per
(schedule, time zone). Every expected time below is worked out by hand from a calendar, not
computed by croniter: 2026-01-01 is a Thursday, 2026 and 2027 are common years, 2028 and 2032
are leap years. Each row is asked with the memo cold, again with it warm, and walked firing
after firing where the row lists several."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.reconcile.cronjobs import _NEXT_RUNS, next_run_time


def at(text: str) -> float:
    """An RFC 3339 UTC time as epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


# (schedule, asked at, the next firings in order: each one is asked at the one before it)
TABLE = [
    # a plain daily run, just before and exactly at its firing (exactly at: the next one)
    ("0 3 * * *", "2026-06-01T02:59:59Z", ["2026-06-01T03:00:00Z", "2026-06-02T03:00:00Z"]),
    # steps within the hour, and across midnight
    ("*/15 * * * *", "2026-06-01T10:07:00Z", ["2026-06-01T10:15:00Z", "2026-06-01T10:30:00Z",
                                               "2026-06-01T10:45:00Z", "2026-06-01T11:00:00Z"]),
    ("0 */6 * * *", "2026-06-01T23:00:00Z", ["2026-06-02T00:00:00Z", "2026-06-02T06:00:00Z"]),
    # month ends: the 31st skips the 30-day months (and February)
    ("0 0 31 * *", "2026-01-31T00:00:00Z", ["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z",
                                            "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z",
                                            "2026-10-31T00:00:00Z", "2026-12-31T00:00:00Z",
                                            "2027-01-31T00:00:00Z"]),
    ("0 0 30 * *", "2026-01-30T00:00:00Z", ["2026-03-30T00:00:00Z", "2026-04-30T00:00:00Z"]),
    # the 29th: February has one only in a leap year
    ("0 0 29 * *", "2027-01-29T00:00:00Z", ["2027-03-29T00:00:00Z"]),
    ("0 0 29 * *", "2028-01-29T00:00:00Z", ["2028-02-29T00:00:00Z", "2028-03-29T00:00:00Z"]),
    # the leap day itself: every four years (2100 is far enough away)
    ("0 12 29 2 *", "2026-03-01T00:00:00Z", ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z",
                                             "2036-02-29T12:00:00Z"]),
    # year end and new year
    ("30 23 31 12 *", "2026-12-31T23:30:00Z", ["2027-12-31T23:30:00Z"]),
    ("0 0 1 1 *", "2026-12-31T23:59:59Z", ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    # a month step: quarters
    ("0 0 1 */3 *", "2026-05-15T00:00:00Z", ["2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z",
                                             "2027-01-01T00:00:00Z"]),
    # day of week alone (day of month *): Mondays; weekdays skip the weekend; Sunday is 0
    ("0 9 * * 1", "2026-04-13T09:00:00Z", ["2026-04-20T09:00:00Z", "2026-04-27T09:00:00Z"]),
    ("0 9 * * 1-5", "2026-04-17T09:00:00Z", ["2026-04-20T09:00:00Z", "2026-04-21T09:00:00Z"]),
    ("0 0 * * 0", "2026-04-13T00:00:00Z", ["2026-04-19T00:00:00Z", "2026-04-26T00:00:00Z"]),
    # day of month alone (day of week *): only the 13th
    ("0 9 13 * *", "2026-04-10T09:00:00Z", ["2026-04-13T09:00:00Z", "2026-05-13T09:00:00Z"]),
    # both restricted: EITHER matches (cron's OR), not both. April 2026: Fridays 10, 17, 24;
    # the 13th is a Monday. AND would wait for a Friday the 13th (November 2026).
    ("0 9 13 * 5", "2026-04-10T09:00:00Z", ["2026-04-13T09:00:00Z", "2026-04-17T09:00:00Z",
                                            "2026-04-24T09:00:00Z", "2026-05-01T09:00:00Z"]),
    # February 2026: Fridays 6, 13, 20, 27 — the 13th is one of them, fired once
    ("0 9 13 * 5", "2026-02-01T00:00:00Z", ["2026-02-06T09:00:00Z", "2026-02-13T09:00:00Z",
                                            "2026-02-20T09:00:00Z"]),
]


@pytest.mark.parametrize(("schedule", "asked", "firings"), TABLE,
                         ids=[f"{s}@{a}" for s, a, _ in TABLE])
def test_next_run_times_from_a_hand_computed_table(schedule: str, asked: str,
                                                   firings: list[str]) -> None:
    _NEXT_RUNS.clear()
    now = at(asked)
    for expected in firings:
        assert next_run_time(schedule, "UTC", now=now) == expected  # memo cold (or moved on)
        assert next_run_time(schedule, "UTC", now=now) == expected  # memo warm
        _NEXT_RUNS.clear()
        assert next_run_time(schedule, "UTC", now=now) == expected  # cold again
        now = at(expected)


# Across the 2026 clock changes, in two zones (a cut-over CronJob of the original runtime may
# carry its own timeZone). America/New_York: EST (UTC-5) → EDT (UTC-4) on Sunday 8 March at
# 02:00 (the second Sunday: 1 March is a Sunday), back on Sunday 1 November at 02:00 EDT.
# Europe/Berlin: CET (UTC+1) → CEST (UTC+2) on Sunday 29 March at 02:00 (the last Sunday),
# back on Sunday 25 October at 03:00 CEST. A firing inside the skipped hour does not happen
# (Kubernetes's CronJob controller, robfig/cron v3, skips it); one inside the repeated hour
# happens twice.
DST_TABLE = [
    # noon in New York: 17:00Z in winter, 16:00Z in summer, the day of each change included
    ("0 12 * * *", "America/New_York", "2026-03-06T17:00:00Z",
     ["2026-03-07T17:00:00Z", "2026-03-08T16:00:00Z", "2026-03-09T16:00:00Z"]),
    ("0 12 * * *", "America/New_York", "2026-10-30T16:00:00Z",
     ["2026-10-31T16:00:00Z", "2026-11-01T17:00:00Z", "2026-11-02T17:00:00Z"]),
    # hourly through the skipped hour: 01:00 EST (06:00Z), then 03:00 EDT (07:00Z)
    ("0 * * * *", "America/New_York", "2026-03-08T05:00:00Z",
     ["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"]),
    # hourly through the repeated hour: 01:00 EDT (05:00Z) and 01:00 EST (06:00Z)
    ("0 * * * *", "America/New_York", "2026-11-01T04:00:00Z",
     ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"]),
    # 02:30 does not exist on 8 March: the next run is 9 March, 02:30 EDT
    ("30 2 * * *", "America/New_York", "2026-03-07T07:30:00Z",
     ["2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"]),
    # 01:30 happens twice on 1 November
    ("30 1 * * *", "America/New_York", "2026-10-31T05:30:00Z",
     ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z"]),
    # nine in Berlin: 08:00Z in winter, 07:00Z in summer
    ("0 9 * * *", "Europe/Berlin", "2026-03-28T08:00:00Z",
     ["2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"]),
    ("0 9 * * *", "Europe/Berlin", "2026-10-24T07:00:00Z",
     ["2026-10-25T08:00:00Z", "2026-10-26T08:00:00Z"]),
    # 02:30 does not exist in Berlin on 29 March: 30 March, 02:30 CEST
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T01:30:00Z",
     ["2026-03-30T00:30:00Z"]),
    # every 20 minutes of the 02:00 hour: none on 8 March in New York
    ("*/20 2 * * *", "America/New_York", "2026-03-07T07:40:00Z",
     ["2026-03-09T06:00:00Z", "2026-03-09T06:20:00Z", "2026-03-09T06:40:00Z"]),
]


@pytest.mark.parametrize(("schedule", "zone", "asked", "firings"), DST_TABLE,
                         ids=[f"{s}@{z}@{a}" for s, z, a, _ in DST_TABLE])
def test_next_run_times_across_clock_changes_from_a_hand_computed_table(
        schedule: str, zone: str, asked: str, firings: list[str]) -> None:
    _NEXT_RUNS.clear()
    now = at(asked)
    for expected in firings:
        assert next_run_time(schedule, zone, now=now) == expected
        _NEXT_RUNS.clear()
        now = at(expected)


def test_the_memo_answers_every_moment_before_a_firing_and_moves_on_at_it() -> None:
    _NEXT_RUNS.clear()
    firing = "2026-06-01T03:00:00Z"
    for asked in ("2026-05-31T03:00:00Z", "2026-05-31T03:00:01Z", "2026-05-31T15:00:00Z",
                  "2026-06-01T02:59:59Z"):
        assert next_run_time("0 3 * * *", "UTC", now=at(asked)) == firing
    assert next_run_time("0 3 * * *", "UTC", now=at(firing)) == "2026-06-02T03:00:00Z"
    # Asked for an earlier moment than the memo's (a pass with an older clock): still right.
    assert next_run_time("0 3 * * *", "UTC", now=at("2026-05-30T12:00:00Z")) == (
        "2026-05-31T03:00:00Z")


def test_the_memo_keeps_schedules_apart() -> None:
    _NEXT_RUNS.clear()
    now = at("2026-06-01T10:07:00Z")
    assert next_run_time("0 3 * * *", "UTC", now=now) == "2026-06-02T03:00:00Z"
    assert next_run_time("0 4 * * *", "UTC", now=now) == "2026-06-02T04:00:00Z"
    assert next_run_time("0 3 * * *", "UTC", now=now) == "2026-06-02T03:00:00Z"


def test_a_bad_schedule_or_zone_gives_none() -> None:
    assert next_run_time("not a cron", "UTC", now=0) is None
    assert next_run_time("0 3 * * *", "Mars/Olympus", now=0) is None
