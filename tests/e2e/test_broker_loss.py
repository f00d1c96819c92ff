"""A worker busy with a task when Redis goes away lives on and takes tasks again once Redis is
back (REAL worker and redis-server processes).

With a message unacknowledged (acks_late: the running task's), kombu 5.7 raised AttributeError
while Celery dropped the lost connection, and Celery exited the worker ("Unrecoverable error")
— found by the 10,000-bot chaos run (worker/consumer.py). Likewise when a task ENDED while Redis
was gone: its ack (or reject) waited for the reconnection and then failed the same way on the
dropped channel (chaos run of 2026-12-02)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from tests.support.bots import wait_for
from tests.support.procs import Proc, Procs
from tools.stack.paths import binaries
from tools.stack.process import free_port


@dataclass
class BrokerAndWorker:
    redis: Proc
    redis_argv: list[str]
    worker: Proc
    client: Any

    def take_a_task_after_restarting_redis(self, procs: Procs, bot_id: str) -> None:
        procs.start("redis-private-again", self.redis_argv)
        wait_for(lambda: self.worker.assert_alive()
                 or self.worker.output().count("Connected to redis") >= 2,
                 "the worker connected to the restarted Redis", timeout=15, interval=0.1)
        self.client.send_task("reconcile.bot", args=(bot_id,), queue="reconcile")
        # The slow task is still asleep or over: a success now is this one's.
        wait_for(lambda: self.worker.assert_alive()
                 or "succeeded" in self.worker.output().split("Connected to redis")[-1],
                 "a task taken after the restart", timeout=30, interval=0.2)


def private_redis_and_slow_worker(procs: Procs, tmp_path: Path, *, slow_s: int,
                                  slow_bot: str) -> BrokerAndWorker:
    """A Redis of the test's own and a worker on it whose converge of `slow-*` bots sleeps
    `slow_s` first; `slow_bot`'s task is sent and running when this returns."""
    port = free_port()
    redis_argv = [str(binaries().redis_server), "--bind", "127.0.0.1", "--port", str(port),
                  "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    redis = procs.start("redis-private", redis_argv)
    worker = procs.start("worker-slow", [
        sys.executable, "-m", "tests.support.slow_converge_celery", "-A", "worker", "worker",
        "--loglevel=INFO", "-n", "w1@%h"], REDIS_URL=f"redis://127.0.0.1:{port}/0",
        THE0_TEST_SLOW_CONVERGE=str(slow_s))
    wait_for(lambda: redis.assert_alive() or worker.assert_alive() or " ready." in worker.output(),
             "the worker ready", timeout=60, interval=0.2)
    client: Any = Celery(broker=f"redis://127.0.0.1:{port}/0")
    client.send_task("reconcile.bot", args=(slow_bot,), queue="reconcile")
    wait_for(lambda: worker.assert_alive() or f"slow converge of {slow_bot}" in worker.output(),
             "the slow task running", timeout=30, interval=0.1)
    return BrokerAndWorker(redis, redis_argv, worker, client)


def test_a_worker_busy_when_redis_dies_lives_on_and_takes_tasks_again(
        procs: Procs, tmp_path: Path) -> None:
    it = private_redis_and_slow_worker(procs, tmp_path, slow_s=90, slow_bot="slow-1")
    try:
        it.redis.kill9()
        wait_for(lambda: "Connection to broker lost" in it.worker.output(),
                 "the worker saw the broker go", timeout=15, interval=0.1)
        time.sleep(2)  # Celery drops the lost connection right after saying so
        assert "Unrecoverable error" not in it.worker.output(), it.worker.output()[-3000:]
        it.worker.assert_alive()
        it.take_a_task_after_restarting_redis(procs, "quick-1")  # slow-1 sleeps on (90 s)
    finally:
        it.client.close()


def test_a_task_ending_while_redis_is_gone_does_not_bring_the_worker_down_after_reconnecting(
        procs: Procs, tmp_path: Path) -> None:
    it = private_redis_and_slow_worker(procs, tmp_path, slow_s=3, slow_bot="slow-2")
    output = it.worker.output
    try:
        it.redis.kill9()
        # The task wakes up with Redis gone: its converge and its retry fail, and its ack or
        # reject waits for the consumer to reconnect.
        wait_for(lambda: it.worker.assert_alive() or "reject" in output()
                 or "raised unexpected" in output(),
                 "the slow task to end while Redis is gone", timeout=20, interval=0.1)
        it.take_a_task_after_restarting_redis(procs, "quick-2")
        assert "Unrecoverable error" not in output(), output()[-3000:]
        it.worker.assert_alive()
    finally:
        it.client.close()
