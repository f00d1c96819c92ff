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
from pathlib import Path
from typing import Any

from celery import Celery

from tests.support.bots import wait_for
from tests.support.procs import Procs
from tools.stack.paths import binaries
from tools.stack.process import free_port


def test_a_worker_busy_when_redis_dies_lives_on_and_takes_tasks_again(
        procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_argv = [str(binaries().redis_server), "--bind", "127.0.0.1", "--port", str(port),
                  "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    redis = procs.start("redis-private", redis_argv)
    worker = procs.start("worker-slow", [
        sys.executable, "-m", "tests.support.slow_converge_celery", "-A", "worker", "worker",
        "--loglevel=INFO", "-n", "w1@%h"], REDIS_URL=url, THE0_TEST_SLOW_CONVERGE="90")
    wait_for(lambda: redis.assert_alive() or worker.assert_alive() or " ready." in worker.output(),
             "the worker ready", timeout=60, interval=0.2)
    client: Any = Celery(broker=url)
    try:
        client.send_task("reconcile.bot", args=("slow-1",), queue="reconcile")
        wait_for(lambda: worker.assert_alive() or "slow converge of slow-1" in worker.output(),
                 "the slow task running", timeout=30, interval=0.1)

        redis.kill9()
        wait_for(lambda: "Connection to broker lost" in worker.output(),
                 "the worker saw the broker go", timeout=15, interval=0.1)
        time.sleep(2)  # Celery drops the lost connection right after saying so
        assert "Unrecoverable error" not in worker.output(), worker.output()[-3000:]
        worker.assert_alive()

        procs.start("redis-private-again", redis_argv)
        wait_for(lambda: worker.assert_alive() or worker.output().count("Connected to redis") >= 2,
                 "the worker connected to the restarted Redis", timeout=15, interval=0.1)
        client.send_task("reconcile.bot", args=("quick-1",), queue="reconcile")

        def since_restart() -> str:
            return worker.output().split("Connected to redis")[-1]

        # slow-1 sleeps 90 s: a task that succeeds now is the one sent after the restart.
        wait_for(lambda: worker.assert_alive() or ("succeeded" in since_restart()),
                 "a task taken after the restart", timeout=30, interval=0.2)
    finally:
        client.close()


def test_a_task_ending_while_redis_is_gone_does_not_bring_the_worker_down_after_reconnecting(
        procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_argv = [str(binaries().redis_server), "--bind", "127.0.0.1", "--port", str(port),
                  "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    redis = procs.start("redis-private", redis_argv)
    worker = procs.start("worker-slow", [
        sys.executable, "-m", "tests.support.slow_converge_celery", "-A", "worker", "worker",
        "--loglevel=INFO", "-n", "w1@%h"], REDIS_URL=url, THE0_TEST_SLOW_CONVERGE="3")
    wait_for(lambda: redis.assert_alive() or worker.assert_alive() or " ready." in worker.output(),
             "the worker ready", timeout=60, interval=0.2)
    client: Any = Celery(broker=url)
    try:
        client.send_task("reconcile.bot", args=("slow-2",), queue="reconcile")
        wait_for(lambda: worker.assert_alive() or "slow converge of slow-2" in worker.output(),
                 "the slow task running", timeout=30, interval=0.1)
        redis.kill9()
        # The task wakes up with Redis gone: its converge and its retry fail, and its ack or
        # reject waits for the consumer to reconnect.
        wait_for(lambda: worker.assert_alive() or "reject" in worker.output()
                 or "raised unexpected" in worker.output(),
                 "the slow task to end while Redis is gone", timeout=20, interval=0.1)
        procs.start("redis-private-again", redis_argv)
        wait_for(lambda: worker.assert_alive() or worker.output().count("Connected to redis") >= 2,
                 "the worker connected to the restarted Redis", timeout=15, interval=0.1)
        client.send_task("reconcile.bot", args=("quick-2",), queue="reconcile")

        def since_restart() -> str:
            return worker.output().split("Connected to redis")[-1]

        wait_for(lambda: worker.assert_alive() or ("succeeded" in since_restart()),
                 "a task taken after the restart", timeout=30, interval=0.2)
        assert "Unrecoverable error" not in worker.output(), worker.output()[-3000:]
        worker.assert_alive()
    finally:
        client.close()
