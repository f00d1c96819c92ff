"""The pass's check for pods left without their Secret costs nothing for pods whose create task
recorded the Secret as made: in a 10,000-bot cold start thousands of pods wait minutes for a
node, and one GET for each of 200 of them every pass made passes last 100-180 s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.bots import CountedRequests, bot_doc, run_pass, wait_for
from worker import keys
from worker.reconcile.controller import LiveBotController
from worker.runtime import Runtime
from worker.settings import load_settings


@pytest.fixture
def counted_controller(settings_env: dict[str, str], bucket_code: str
                       ) -> Iterator[tuple[LiveBotController, CountedRequests]]:
    # No node matches: the pods stay Pending, as a cold start's wait for a node.
    gets = CountedRequests("get", "secrets")
    rt = Runtime(load_settings(env={**settings_env, "SECRET_REPAIR_AFTER": "1s",
                                    "BOT_NODE_SELECTOR": '{"the0.dev/test": "no-such-node"}'}),
                 kube_observer=gets)
    yield LiveBotController(rt), gets
    rt.close()


def test_pending_pods_with_a_recorded_secret_are_not_checked_every_pass(
        counted_controller: tuple[LiveBotController, CountedRequests], bots: Any, core: Any,
        restricted_namespace: str, redis_client: Any) -> None:
    controller, gets = counted_controller
    bots.insert_many([bot_doc(f"p{i}") for i in range(3)])
    _report, outcomes = run_pass(controller)
    assert outcomes == ["created"] * 3
    pods = {p.metadata.name: p for p in core.list_namespaced_pod(restricted_namespace).items}
    assert {p.status.phase for p in pods.values()} == {"Pending"}
    time.sleep(1.5)  # past SECRET_REPAIR_AFTER
    gets.taken()

    # Each create task recorded its Secret: none is checked.
    wait_for(lambda: run_pass(controller)[1] == [], "a pass with nothing to do")
    assert gets.taken() == 0
    # A pod with no record (its create task killed before the Secret, or an older
    # controller's): checked, one GET, every pass until it runs.
    redis_client.hdel(keys.URLS_SIGNED, pods["bot-p1"].metadata.uid)
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.urls_resigned == 0  # its Secret exists: nothing made
    assert gets.taken() == 1
    run_pass(controller)
    assert gets.taken() == 1
