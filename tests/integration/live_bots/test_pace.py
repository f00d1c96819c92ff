"""Pace on the real stack: the create-rate limit is one budget shared by every worker (a token
bucket in Redis), and a recreated bot's crash backoff starts again from its first step once its
pod has been healthy for CRASH_BACKOFF_RESET."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.support.bots import bot_doc, cache_sees, run_pass, wait_for
from worker.core.podstatus import PodHealth
from worker.reconcile.controller import LiveBotController

RATE = 2.0  # creates per second, burst 2 (MAX_CREATES_PER_SECOND, burst = max(1, rate))


def test_the_create_rate_limit_is_shared_by_every_worker(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    ids = [f"r{i}" for i in range(10)]
    bots.insert_many([bot_doc(bot_id) for bot_id in ids])
    workers = [make_controller(MAX_CREATES_PER_SECOND=str(RATE)) for _ in range(2)]
    for worker in workers:
        worker.rt.store(worker.kind.bot_kind)  # connected before the clock starts
    outcomes: list[str] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(len(workers))

    def create(worker: LiveBotController, mine: list[str]) -> None:
        gate.wait()
        try:
            outcomes.extend(worker.converge(bot_id, intent="create") for bot_id in mine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(w, ids[i::2]))
               for i, w in enumerate(workers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    assert errors == [] and outcomes == ["created"] * len(ids)
    # Two tokens at once, then one every 1/RATE s for the other eight, whoever asks.
    least = (len(ids) - 2) / RATE
    print(f"{len(ids)} creates by two workers at {RATE}/s took {elapsed:.2f} s "
          f"(at least {least:.1f} s)")
    assert elapsed >= least - 0.2
    # The API server's own clock agrees (creation times have whole seconds).
    created = sorted(datetime.timestamp(p.metadata.creation_timestamp)
                     for p in core.list_namespaced_pod(restricted_namespace).items)
    assert len(created) == len(ids) and created[-1] - created[0] >= least - 1


def crash_loop(core: Any, namespace: str, name: str) -> None:
    core.patch_namespaced_pod_status(name, namespace, {"status": {
        "containerStatuses": [{"name": "bot", "image": "python:3.11-slim-bookworm",
                               "imageID": "", "ready": False, "restartCount": 5,
                               "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                     "message": "back-off 5m0s"}}}]}})


def test_a_crash_backoff_starts_over_after_a_healthy_period(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    reset_s = 3.0
    controller = make_controller(CRASH_BACKOFF_BASE="2s", CRASH_BACKOFF_RESET=f"{reset_s}s")
    redis = controller.rt.redis
    bots.insert_one(bot_doc("phoenix"))
    run_pass(controller)

    def running() -> Any:
        pod = core.read_namespaced_pod("bot-phoenix", restricted_namespace)
        return pod.status.phase == "Running" and pod

    def crashes_and_is_recreated() -> Any:
        first = wait_for(running, "the pod Running")
        crash_loop(core, restricted_namespace, "bot-phoenix")
        cache_sees(controller, lambda pods: pods["bot-phoenix"].assessment.health
                   is PodHealth.BROKEN, "the crash loop")
        _, outcomes = run_pass(controller)
        assert outcomes == ["recreated"]
        return first

    crashes_and_is_recreated()
    backoff = redis.get_backoff("live", "phoenix")
    assert backoff is not None and backoff.failures == 1
    wait_for(running, "the recreated pod Running")
    run_pass(controller)  # healthy, but not for long enough yet
    assert redis.get_backoff("live", "phoenix") == backoff

    wait_for(lambda: run_pass(controller) and redis.get_backoff("live", "phoenix") is None,
             "the backoff reset", timeout=15, interval=0.25)
    assert time.time() >= backoff.not_before + reset_s  # not before it was due

    # It crashes again: recreated at once, from the first step (a second step would wait).
    crashes_and_is_recreated()
    again = redis.get_backoff("live", "phoenix")
    assert again is not None and again.failures == 1
