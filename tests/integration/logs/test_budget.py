"""The per-bot daily budget on the real stack: lines beyond LOG_BOT_DAILY_BYTES are dropped, ONE
controller marker in the day's current object (the one the0's UI reads) says how many, kept up to
date pass after pass, counted in metrics; the next UTC day starts afresh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.integration.logs.conftest import bot_messages, day_objects, day_records, run_pass
from tests.support.botlogs import LoggedPod, now_ts, shipped
from worker.core import logcursor as lc
from worker.core import logrecord
from worker.core.metrics import LOG_BYTES, LOG_LINES, field_of
from worker.log_collector import LogCollector

Collector = Callable[..., LogCollector]
MakePod = Callable[..., LoggedPod]
BUDGET = 4096


def markers(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == logrecord.EVENT_BUDGET]


def counted(collector: LogCollector) -> dict[tuple[str, str], float]:
    """The log metrics this collector counted since the last call: (family, outcome) → value."""
    increments = collector.rt.metrics.drain()
    return {(family.name, outcome): increments.get(
        (family.name, field_of(family, {"outcome": outcome})), 0.0)
        for family in (LOG_LINES, LOG_BYTES) for outcome in ("stored", "dropped")}


def test_over_budget_lines_are_dropped_with_one_marker_updated_and_counted(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("budget1")
    collector = make_collector(settings={"LOG_BOT_DAILY_BYTES": BUDGET})
    today = lc.day_of(now_ts())
    lines = [f"line {i:03d} " + "x" * 40 for i in range(100)]
    pod.write(*lines, ts=now_ts())
    run_pass(collector)

    records = day_records(s3, log_bucket, "budget1", today)
    stored = bot_messages(records)
    assert 0 < len(stored) < 100 and stored == lines[:len(stored)]
    stored_bytes = sum(len(data) for _, data in day_objects(s3, log_bucket, "budget1", today)
                       if b'"source":"bot"' in data)
    assert stored_bytes <= BUDGET
    [marker] = markers(records)
    dropped = lines[len(stored):]
    assert marker["source"] == "controller" and marker["level"] == "warn"
    assert marker["dropped_lines"] == len(dropped)
    assert marker["dropped_bytes"] == sum(len(text) + 1 for text in dropped)
    assert marker["budget_bytes"] == BUDGET
    # The marker is in the current part: the object the0's API and UI read for the day.
    current = shipped(s3, log_bucket, lc.object_key("budget1", today))
    assert markers(current) == [marker]
    metrics = counted(collector)
    assert metrics[LOG_LINES.name, "dropped"] == len(dropped)
    assert metrics[LOG_LINES.name, "stored"] == len(stored)
    assert metrics[LOG_BYTES.name, "dropped"] == marker["dropped_bytes"]
    assert metrics[LOG_BYTES.name, "stored"] == stored_bytes

    # More lines the same day: dropped too; the ONE marker is rewritten, not repeated.
    more = [f"more {i:03d}" for i in range(50)]
    pod.write(*more, ts=now_ts())
    run_pass(collector)
    run_pass(collector)  # nothing new: nothing changes
    records = day_records(s3, log_bucket, "budget1", today)
    assert bot_messages(records) == stored
    [marker] = markers(records)
    assert marker["dropped_lines"] == len(dropped) + len(more)
    assert marker["dropped_bytes"] == sum(len(t) + 1 for t in dropped + more)
    metrics = counted(collector)
    assert metrics[LOG_LINES.name, "dropped"] == len(more)
    assert metrics[LOG_BYTES.name, "dropped"] == sum(len(t) + 1 for t in more)
    assert metrics[LOG_LINES.name, "stored"] == 0

    # The controller's own records still land that day (after the marker).
    pod.terminate(exit_code=4)
    run_pass(collector)
    records = day_records(s3, log_bucket, "budget1", today)
    assert [r["message"] for r in records if r["source"] == "controller"
            and "exit_code" in r] == ["Bot crashed with exit code 4"]
    assert len(markers(records)) == 1


def test_the_next_utc_day_starts_with_a_fresh_budget(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("budget2")
    collector = make_collector(settings={"LOG_BOT_DAILY_BYTES": BUDGET})
    flood = [f"flood {i:04d} " + "y" * 60 for i in range(200)]
    pod.write(*flood, ts="2026-11-27T23:59:58.000000000Z")
    pod.write("first of the new day", "second of the new day",
              ts="2026-11-28T00:00:01.000000000Z")
    run_pass(collector)
    first_day = day_records(s3, log_bucket, "budget2", "20261127")
    [marker] = markers(first_day)
    assert marker["dropped_lines"] == len(flood) - len(bot_messages(first_day))
    second_day = day_records(s3, log_bucket, "budget2", "20261128")
    assert bot_messages(second_day) == ["first of the new day", "second of the new day"]
    assert markers(second_day) == []


def test_a_budget_of_zero_means_no_limit(make_collector: Collector, make_pod: MakePod, s3: Any,
                                         log_bucket: str) -> None:
    pod = make_pod("budget3")
    lines = [f"z{i} " + "w" * 100 for i in range(300)]  # ~50 KB of records
    pod.write(*lines, ts=now_ts())
    run_pass(make_collector(settings={"LOG_BOT_DAILY_BYTES": 0}))
    records = day_records(s3, log_bucket, "budget3", lc.day_of(now_ts()))
    assert bot_messages(records) == lines and markers(records) == []
