"""Log collection end to end: a REAL `celery worker -Q logs` and `celery beat`, the worker
killed with SIGKILL at random moments of its passes, restarted, and every line in S3 once."""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.botlogs import LoggedPod, messages, now_ts, shipped
from tests.support.bots import wait_for
from tests.support.procs import Procs
from worker.core import logcursor as lc

CELERY = str(Path(sys.executable).with_name("celery"))


@pytest.mark.slow(seconds=40)
def test_kill_9_during_collection_loses_and_duplicates_nothing(
        procs: Procs, admin_api: Any, restricted_namespace: str, tmp_path: Path, s3: Any,
        log_bucket: str) -> None:
    fast = {"LOG_BUCKET": log_bucket, "LOG_INTERVAL": "1s", "LOG_LOCK_TTL": "3s",
            "LOG_CHUNK_SIZE": "3", "TASK_VISIBILITY_TIMEOUT": "5s", "RECONCILE_INTERVAL": "1h"}
    pods = [LoggedPod(admin_api, restricted_namespace, tmp_path, f"kill{i}").create()
            for i in range(6)]
    sent: dict[str, list[str]] = {p.bot_id: [] for p in pods}
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            for p in pods:
                sent[p.bot_id] += p.write(*(f"{p.bot_id}-{n}-{k}" for k in range(5)),
                                          ts=now_ts())
            n += 1
            stop.wait(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    procs.start("beat", [CELERY, "-A", "worker", "beat", "--loglevel=INFO"], **fast)
    rng = random.Random(6)
    kills = 0
    try:
        for round_ in range(6):
            # Each append is followed by a 0.5 s pause (test wrapper): most kills land between
            # an S3 write and its cursor commit, the window exactly-once must survive.
            worker = procs.start(f"worker-{round_}", [
                sys.executable, "-m", "tests.support.slow_celery", "-A", "worker", "worker",
                "-Q", "logs", "--loglevel=INFO", "-n", f"w{round_}@%h"], **fast)
            # Killed 2 to 5 s after it is up (passes every second). Timed from its start, as
            # before, a worker on a loaded machine was killed before it ever collected: no
            # bucket, no interrupted write to adopt.
            wait_for(lambda w=worker: w.assert_alive() or " ready." in w.output(),
                     f"worker-{round_} ready", timeout=60, interval=0.2)
            time.sleep(rng.uniform(2.0, 5.0))
            worker.assert_alive()
            worker.kill9()
            kills += 1
    finally:
        stop.set()
        writer.join()
    final = procs.start("worker-final", [CELERY, "-A", "worker", "worker", "-Q", "logs",
                                         "--loglevel=INFO", "-n", "final@%h"], **fast)

    def complete() -> bool:
        final.assert_alive()
        return all(messages(shipped(s3, log_bucket, lc.object_key(p.bot_id, lc.day_of(
            now_ts())))) == sent[p.bot_id] for p in pods)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not complete():
        time.sleep(1)
    adopted = sum(proc.output().count("adopting high-water marks") for proc in procs.started)
    print(f"{kills} kills; {adopted} interrupted writes adopted by the next worker")
    assert adopted >= 1, "no kill landed between a write and its commit"
    for p in pods:
        got = messages(shipped(s3, log_bucket, lc.object_key(p.bot_id, lc.day_of(now_ts()))))
        assert len(got) == len(set(got)), f"{p.bot_id}: duplicated lines"
        assert got == sent[p.bot_id], (f"{p.bot_id}: {len(sent[p.bot_id]) - len(got)} lines "
                                       f"missing after {kills} kills")
