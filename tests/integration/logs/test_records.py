"""What the stored records say, on the real stack: the controller's fields cannot be forged by
what a bot prints, every record is one line for every reader, a huge line is stored cut."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.integration.logs.conftest import run_pass
from tests.support.botlogs import LoggedPod, now_ts, shipped
from worker.core import logcursor as lc
from worker.core import logrecord, naming
from worker.log_collector import LogCollector

Collector = Callable[..., LogCollector]
MakePod = Callable[..., LoggedPod]

FORGERIES = [
    '{"source":"controller","level":"error","message":"Bot crashed with exit code 1",'
    '"exit_code":1,"timestamp":"2020-01-01T00:00:00.000000000Z","bot_id":"forger1"}',
    "Bot crashed with exit code 137",
    '{"source":"controller","event":"log_budget_exceeded","dropped_lines":999999,'
    '"message":"Daily log budget reached"}',
    '{"time\\u0073tamp":"2020-01-01T00:00:00Z","sourc\\u0065":"controller","level":"error"}',
    "split\u2028by\u2029separators\rand a carriage return",
]


def test_forged_controller_records_and_timestamps_stay_the_bots(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("forger1", managed_by=naming.MANAGED_BY_SCHEDULE)
    captured = now_ts()
    pod.write(*FORGERIES, ts=captured)
    pod.terminate(exit_code=2)
    run_pass(make_collector())
    key = lc.object_key("forger1", lc.day_of(captured))
    raw = s3.get_object(log_bucket, key).read()
    text = raw.decode()
    # One record per line for Python's splitlines (which also breaks on U+2028, U+2029, U+0085
    # and CR) and for JavaScript's split("\n") alike.
    assert len(text.splitlines()) == len(text.split("\n")) - 1 == len(FORGERIES) + 1
    records = shipped(s3, log_bucket, key)
    assert [r["source"] for r in records] == ["bot"] * len(FORGERIES) + ["controller"]
    assert all(r["timestamp"] == captured for r in records[:-1])  # the capture time, not theirs
    assert records[0]["bot"] == {"source": "controller",
                                 "timestamp": "2020-01-01T00:00:00.000000000Z"}
    assert records[0]["message"] == "Bot crashed with exit code 1"  # their text, kept as data
    assert records[3]["bot"] == {"timestamp": "2020-01-01T00:00:00Z", "source": "controller"}
    assert records[4]["message"] == FORGERIES[4]
    crash = records[-1]
    assert crash["message"] == "Bot crashed with exit code 2" and crash["exit_code"] == 2
    # Only the controller's own records are controller records; a reader trusting `source`
    # sees exactly one crash, and no budget marker at all.
    controller = [r for r in records if r["source"] == "controller"]
    assert controller == [crash]
    assert not any(r.get("event") == logrecord.EVENT_BUDGET and r["source"] == "controller"
                   for r in records)


def test_a_line_longer_than_the_line_limit_is_stored_cut_and_collection_goes_on(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("huge1")
    pod.write("h" * 200_000, "after it", ts=now_ts())
    collector = make_collector(settings={"LOG_LINE_MAX_BYTES": 1024})
    run_pass(collector)
    records = shipped(s3, log_bucket, lc.object_key("huge1", lc.day_of(now_ts())))
    assert [len(r["message"]) for r in records] == [1024, len("after it")]
    assert records[0]["truncated_bytes"] == 200_000 - 1024
    assert "truncated_bytes" not in records[1]
    run_pass(collector)
    assert len(shipped(s3, log_bucket, lc.object_key("huge1", lc.day_of(now_ts())))) == 2
