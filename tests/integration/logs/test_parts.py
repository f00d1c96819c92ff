"""Day objects rotate into parts on the real stack: every object stays ≤ LOG_PART_BYTES, no write
moves more than about one part (never the whole day), every line is stored exactly once across
parts and passes — also when the worker dies between any write and its cursor commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.logs.conftest import bot_messages, day_objects, day_records, run_pass
from tests.support.botlogs import LoggedPod, now_ts, shipped
from worker import keys
from worker.adapters.s3 import LogStore
from worker.core import logcursor as lc
from worker.core import logrecord
from worker.log_collector import LogCollector

Collector = Callable[..., LogCollector]
MakePod = Callable[..., LoggedPod]
PART = 64 * 1024


class Killed(BaseException):
    """Stands in for kill -9 at an exact point: nothing after it runs (not even `except`)."""


def watch_writes(store: LogStore) -> list[tuple[str, int]]:
    """Records (operation, bytes moved) for every read and write the collector makes, as the
    store reports them to its observer (the requests go to the real S3 server)."""
    calls: list[tuple[str, int]] = []
    store.observer = lambda operation, moved: calls.append((operation, moved))
    return calls


def test_parts_rotate_and_no_write_recopies_the_day(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    collector = make_collector(settings={"LOG_PART_BYTES": PART})
    calls = watch_writes(collector.rt.log_store)
    pod = make_pod("parts1")
    day = lc.day_of(now_ts())
    sent: list[str] = []
    for round_ in range(6):
        sent += pod.write(*(f"r{round_}-{i:04d} " + "p" * 80 for i in range(500)), ts=now_ts())
        run_pass(collector)
    objects = day_objects(s3, log_bucket, "parts1", day)
    total = sum(len(data) for _, data in objects)
    assert total > 6 * PART and len(objects) >= 6
    assert max(len(data) for _, data in objects) <= PART  # every object bounded
    records = day_records(s3, log_bucket, "parts1", day)
    assert bot_messages(records) == sent  # every line once, in order, across the parts
    # Each rotated-out part was copied once, server-side; no append moved more than the
    # current part twice plus the batch (a GET and a PUT) — while the day grew to 6+ parts.
    archives = [size for name, size in calls if name == "archive"]
    assert len(archives) == len(objects) - 1 and max(archives) <= PART
    appends = [size for name, size in calls if name != "archive"]
    assert max(appends) <= 2 * PART + collector.write_bytes < total
    # Linear in the day (about PART / write_bytes times it), not quadratic: rewriting the whole
    # day at each of these ~30 writes would have moved ~30 times the day.
    assert sum(size for _, size in calls) < 8 * total
    # The current part says where the earlier ones are (what the0's UI shows first).
    head = shipped(s3, log_bucket, lc.object_key("parts1", day))[0]
    assert head["source"] == "controller" and head["event"] == logrecord.EVENT_CONTINUED
    assert head["parts"] == len(objects) - 1


@pytest.mark.parametrize("kill_at", [1, 2, 4, 7])
def test_killed_between_any_write_and_its_commit_loses_and_duplicates_nothing(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str,
        redis_client: Any, kill_at: int) -> None:
    bot_id = f"partkill{kill_at}"
    pod = make_pod(bot_id)
    day = lc.day_of(now_ts())
    sent = pod.write(*(f"a{i:04d} " + "k" * 100 for i in range(1200)), ts=now_ts())
    commits = 0

    def die(_bot_id: str) -> None:
        nonlocal commits
        commits += 1
        if commits == kill_at:
            raise Killed

    with pytest.raises(Killed):
        run_pass(make_collector(before_commit=die, settings={"LOG_PART_BYTES": PART}))
    redis_client.delete(keys.log_lock(bot_id))  # as if its TTL ran out
    sent += pod.write(*(f"b{i:04d}" for i in range(300)), ts=now_ts())
    after = make_collector(settings={"LOG_PART_BYTES": PART})
    results = run_pass(after)
    assert sum(r.adopted for r in results) == 1
    run_pass(after)
    assert bot_messages(day_records(s3, log_bucket, bot_id, day)) == sent
    assert len(day_objects(s3, log_bucket, bot_id, day)) > 2
