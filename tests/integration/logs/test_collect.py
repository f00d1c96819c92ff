"""Log collection on the real stack: kwok serves the pod logs (files the test appends to), the
collector runs as the controller's restricted identity, and writes to versitygw."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.logs.conftest import run_pass
from tests.support.botlogs import LoggedPod, messages, now_ts, shipped
from worker import keys
from worker.core import logcursor as lc
from worker.core import naming
from worker.log_collector import LogCollector

Collector = Callable[..., LogCollector]
MakePod = Callable[..., LoggedPod]


def key_of(bot_id: str, ts: str | None = None) -> str:
    return lc.object_key(bot_id, lc.day_of(ts or now_ts()))


class Killed(BaseException):
    """Stands in for kill -9 at an exact point: nothing after it runs (not even `except`)."""


def test_new_lines_are_shipped_once_across_passes(make_collector: Collector, make_pod: MakePod,
                                                  s3: Any, log_bucket: str) -> None:
    pod = make_pod("alpha1")
    same = now_ts()
    sent = pod.write("first", "second", "third", ts=same)  # identical timestamps
    collector = make_collector()
    run_pass(collector)
    assert messages(shipped(s3, log_bucket, key_of("alpha1"))) == sent
    sent += pod.write("fourth", ts=same) + pod.write("fifth")  # same second again, then later
    run_pass(collector)
    run_pass(make_collector())  # a fresh process: the cursor is in Redis, not in memory
    records = shipped(s3, log_bucket, key_of("alpha1"))
    assert messages(records) == sent
    assert all(r["timestamp"].endswith("Z") for r in records)
    assert records[0]["timestamp"] == same


def test_lines_split_by_utc_day_and_json_lines_keep_fields(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("beta1")
    pod.write("late on the first day", ts="2026-11-27T23:59:59.999999999Z")
    pod.write('{"level":"info","price":1.10}', ts="2026-11-28T00:00:00.000000001Z")
    pod.write('{"timestamp":"mine","message":"kept as is"}', ts="2026-11-28T00:00:01.0Z")
    run_pass(make_collector())
    assert shipped(s3, log_bucket, "logs/beta1/20261127.log") == [
        {"source": "bot", "timestamp": "2026-11-27T23:59:59.999999999Z",
         "message": "late on the first day"}]
    second = shipped(s3, log_bucket, "logs/beta1/20261128.log")
    assert second == [{"source": "bot", "timestamp": "2026-11-28T00:00:00.000000001Z",
                       "level": "info", "price": 1.10},
                      {"source": "bot", "timestamp": "2026-11-28T00:00:01.000000000Z",
                       "message": "kept as is", "bot": {"timestamp": "mine"}}]
    raw = s3.get_object(log_bucket, "logs/beta1/20261128.log").read().decode()
    assert '"price":1.10' in raw  # the bot's own text, not a re-serialisation


def test_restart_ships_the_crashed_instance_tail_then_a_crash_line(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("gamma1")
    sent = pod.write("before 1", "before 2")
    collector = make_collector()
    run_pass(collector)
    sent += pod.write("last words")  # written after our read, before the crash
    pod.restart(exit_code=3)
    sent += pod.write("after restart")
    run_pass(collector)
    run_pass(collector)
    records = shipped(s3, log_bucket, key_of("gamma1"))
    assert messages(records) == [*sent[:3], "Bot crashed with exit code 3", "after restart"]
    crash = records[3]
    assert crash["level"] == "error" and crash["exit_code"] == 3
    assert crash["bot_id"] == "gamma1" and crash["pod"] == pod.name


def test_crash_line_even_when_the_bot_printed_nothing(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("delta1", managed_by=naming.MANAGED_BY_SCHEDULE)  # a scheduled-job pod
    pod.terminate(exit_code=2)
    collector = make_collector()
    run_pass(collector)
    run_pass(collector)  # completion is not re-sent
    records = shipped(s3, log_bucket, key_of("delta1"))
    assert [(r["message"], r["exit_code"]) for r in records] == [
        ("Bot crashed with exit code 2", 2)]


def test_completed_job_is_shipped_once_and_not_read_again(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("eps1", managed_by=naming.MANAGED_BY_SCHEDULE)
    sent = pod.write("run", "done")
    pod.terminate(exit_code=0)
    collector = make_collector()
    run_pass(collector)
    reads_before = collector.rt.kube.log_requests
    run_pass(collector)
    assert messages(shipped(s3, log_bucket, key_of("eps1"))) == sent
    assert collector.rt.kube.log_requests == reads_before  # finished and fully shipped


def test_worker_killed_after_reading_loses_nothing(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pod = make_pod("zeta1")
    sent = pod.write("a", "b", "c")

    def die(bot_id: str) -> None:
        raise Killed

    with pytest.raises(Killed):
        run_pass(make_collector(after_read=die))
    assert shipped(s3, log_bucket, key_of("zeta1")) == []
    sent += pod.write("d")
    run_pass(make_collector())  # lock expired or released: the next worker does it all
    assert messages(shipped(s3, log_bucket, key_of("zeta1"))) == sent


def test_worker_killed_between_write_and_cursor_commit_duplicates_nothing(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str,
        redis_client: Any) -> None:
    pod = make_pod("eta1")
    sent = pod.write("one", "two", ts=now_ts())

    def die(bot_id: str) -> None:
        raise Killed

    with pytest.raises(Killed):
        run_pass(make_collector(before_commit=die))
    assert messages(shipped(s3, log_bucket, key_of("eta1"))) == sent  # written ...
    assert redis_client.hgetall(keys.log_cursors("eta1")) == {}      # ... but not committed
    redis_client.delete(keys.log_lock("eta1"))  # as if its TTL ran out
    sent += pod.write("three")
    results = run_pass(make_collector())
    assert sum(r.adopted for r in results) == 1
    run_pass(make_collector())
    assert messages(shipped(s3, log_bucket, key_of("eta1"))) == sent


def test_writer_that_lost_its_lock_cannot_overwrite_or_commit(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str,
        redis_client: Any) -> None:
    pod = make_pod("theta1")
    sent = pod.write("x1", "x2")
    run_pass(make_collector())
    sent += pod.write("x3")
    other = make_collector()

    def paused_past_ttl(bot_id: str) -> None:
        # Our lock expires while we are paused; another worker collects the same lines.
        redis_client.delete(keys.log_lock(bot_id))
        run_pass(other)

    zombie = make_collector(after_read=paused_past_ttl)
    results = run_pass(zombie)
    assert sum(r.errors for r in results) == 1  # lost lock / conflict: it wrote nothing
    run_pass(make_collector())
    assert messages(shipped(s3, log_bucket, key_of("theta1"))) == sent


def test_two_collectors_racing_write_every_line_exactly_once(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    pods = [make_pod(f"race{i}") for i in range(4)]
    sent: dict[str, list[str]] = {p.bot_id: [] for p in pods}
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            for p in pods:
                sent[p.bot_id] += p.write(f"{p.bot_id}-{n}", f"{p.bot_id}-{n}b", ts=now_ts())
            n += 1
            stop.wait(0.02)

    errors: list[BaseException] = []

    def collector_loop(collector: LogCollector) -> None:
        try:
            for _ in range(12):
                run_pass(collector)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    racers = [threading.Thread(target=collector_loop, args=(make_collector(),))
              for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=240)
    stop.set()
    thread.join()
    assert not errors
    final = make_collector()
    for _ in range(3):
        run_pass(final)
    for p in pods:
        assert messages(shipped(s3, log_bucket, key_of(p.bot_id))) == sent[p.bot_id]


def test_last_collection_summary_for_the_api(make_collector: Collector, make_pod: MakePod,
                                             redis_client: Any) -> None:
    pod = make_pod("iota1")
    pod.write("hello", "world")
    run_pass(make_collector())
    summary = json.loads(redis_client.get(keys.LAST_LOGS))
    assert summary["ok"] is True and summary["pods"] == 1 and summary["lines"] == 2
    assert summary["duration_s"] >= 0 and summary["lag_s"] >= 0 and summary["at"] > 0
    assert 0 < redis_client.ttl(keys.LAST_LOGS) <= 600


def test_pods_of_other_controllers_are_not_collected(
        make_collector: Collector, make_pod: MakePod, s3: Any, log_bucket: str) -> None:
    stranger = make_pod("kappa1", managed_by="someone-else")
    stranger.write("not ours")
    run_pass(make_collector())
    assert shipped(s3, log_bucket, key_of("kappa1")) == []


def test_a_pod_the_controller_deletes_gets_its_last_lines_shipped_first(
        log_env: dict[str, str], make_pod: MakePod, s3: Any, log_bucket: str,
        admin_api: Any, restricted_namespace: str) -> None:
    """No log pass runs at all: the delete path itself ships what the pod wrote."""
    from kubernetes import client

    from worker.reconcile.controller import LiveBotController
    from worker.runtime import Runtime
    from worker.settings import load_settings

    pod = make_pod("stopped1")
    pod.wait_running()
    sent = pod.write("bought 1 BTC", "placing stop order", "last words")
    controller = LiveBotController(Runtime(load_settings(env=log_env)))
    # Its document is gone (the per-test database is empty): the plan deletes the pod.
    assert controller.converge("stopped1", intent="delete") == "deleted"
    assert messages(shipped(s3, log_bucket, key_of("stopped1"))) == sent
    core = client.CoreV1Api(admin_api)
    names = [p.metadata.name for p in core.list_namespaced_pod(restricted_namespace).items
             if p.metadata.deletion_timestamp is None]
    assert pod.name not in names
