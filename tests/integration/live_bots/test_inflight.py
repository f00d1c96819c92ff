"""In-flight dedup on the real stack: a bot whose action is queued or running (its mark in
Redis) is not sent again by any worker's pass — sequential or concurrent — until that action
ends, its send fails, or the mark outlives INFLIGHT_TTL (a task lost for good)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.bots import bot_doc, pass_without_actions, run_action, run_pass, wait_for
from worker import keys
from worker.core.planner import Action
from worker.reconcile.controller import LiveBotController

IDS = ["f1", "f2", "f3"]


def test_a_queued_action_is_not_sent_again_by_another_workers_pass(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        redis_client: Any, restricted_namespace: str) -> None:
    bots.insert_many([bot_doc(bot_id) for bot_id in IDS])
    first, second = make_controller(), make_controller()  # two workers' runtimes
    report, queued = pass_without_actions(first)
    assert sorted(a.bot_id for a in queued) == IDS and report.enqueued == 3
    ttl = redis_client.pttl(keys.inflight("live", "f1")) / 1000
    assert first.rt.settings.INFLIGHT_TTL - 5 < ttl <= first.rt.settings.INFLIGHT_TTL

    report, again = pass_without_actions(second)  # the tasks still wait in the queue
    assert again == [] and report.enqueued == 0 and report.already_in_flight == 3
    assert report.counts["create"] == 3  # planned, but not sent

    assert [run_action(first, action) for action in queued] == ["created"] * 3
    assert redis_client.keys("the0:inflight:*") == []  # released as each task ended
    report, outcomes = run_pass(second)
    assert outcomes == [] and report.enqueued == 0 and report.already_in_flight == 0
    assert len(core.list_namespaced_pod(restricted_namespace).items) == 3


def test_concurrent_passes_of_many_workers_send_each_bot_once(
        make_controller: Callable[..., LiveBotController], bots: Any,
        redis_client: Any) -> None:
    bots.insert_many([bot_doc(bot_id) for bot_id in IDS])
    controllers = [make_controller() for _ in range(4)]
    sent: list[Action] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(len(controllers))

    def passes(controller: LiveBotController) -> None:
        gate.wait()
        try:
            for _ in range(3):  # a pass that finds the pass lock taken is skipped
                sent.extend(pass_without_actions(controller)[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=passes, args=(c,)) for c in controllers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(a.bot_id for a in sent) == IDS  # twelve passes, each bot sent once
    assert sorted(redis_client.keys("the0:inflight:*")) == sorted(
        keys.inflight("live", bot_id).encode() for bot_id in IDS)


def test_a_failed_send_gives_the_mark_back(
        make_controller: Callable[..., LiveBotController], bots: Any,
        redis_client: Any) -> None:
    bots.insert_many([bot_doc(bot_id) for bot_id in IDS])
    controller = make_controller()

    def broker_down(action: Action, _as_of: float) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        controller.reconcile(enqueue=broker_down)
    held = sorted(redis_client.keys("the0:inflight:*"))
    assert held == [], (f"marks of bots that were never sent: {held}; they hold their bots "
                        "back until INFLIGHT_TTL (15 min by default)")
    report, queued = pass_without_actions(controller)  # nothing was sent: all planned again
    assert sorted(a.bot_id for a in queued) == IDS and report.already_in_flight == 0


def test_a_mark_whose_task_never_ends_expires_after_inflight_ttl(
        make_controller: Callable[..., LiveBotController], bots: Any) -> None:
    bots.insert_many([bot_doc(bot_id) for bot_id in IDS])
    controller = make_controller(INFLIGHT_TTL="2s")
    _, lost = pass_without_actions(controller)  # sent, then lost with its worker
    assert len(lost) == 3
    report, queued = pass_without_actions(controller)
    assert queued == [] and report.already_in_flight == 3
    resent = wait_for(lambda: pass_without_actions(controller)[1], "the bots sent again",
                      timeout=10, interval=0.25)
    assert sorted(a.bot_id for a in resent) == IDS
