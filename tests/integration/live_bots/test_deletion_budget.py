"""The global deletion budget on the real stack: removals from passes and from single-bot
tasks (what a platform "delete"/"disable" event runs) take tokens from ONE Redis bucket; once it
is spent, removals are held (outcome "held", logged, counted, in /status's record), the pods
stay, and they go when the budget refills. Replaces do not spend it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.support.bots import bot_doc, run_pass, wait_for
from worker import keys
from worker.reconcile.controller import LiveBotController

SELECTOR = "managed-by=the0-bot-controller"


def _pods(core: Any, namespace: str) -> set[str]:
    return {p.metadata.name for p in core.list_namespaced_pod(
        namespace, label_selector=SELECTOR).items if p.metadata.deletion_timestamp is None}


def test_removals_share_one_budget_across_passes_and_single_bot_tasks(
        make_controller: Any, bots: Any, core: Any, restricted_namespace: str,
        redis_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    # A guard that never trips (so only the budget holds), a budget of 3, no refill to speak of.
    controller: LiveBotController = make_controller(
        MAX_DELETE_FRACTION="1.0", MAX_DELETE_MIN="100", DELETE_BUDGET="3",
        DELETE_BUDGET_PER_MINUTE="0.001")
    ids = [f"budget-{i}" for i in range(6)]
    bots.insert_many([bot_doc(bot_id) for bot_id in ids])
    _, outcomes = run_pass(controller)
    assert outcomes == ["created"] * 6
    caplog.set_level(logging.WARNING, logger="the0")

    # Four bots are disabled: the pass removes three, the fourth is held.
    bots.update_many({"id": {"$in": ids[:4]}}, {"$set": {"enabled": False}})
    _, outcomes = run_pass(controller)
    assert sorted(outcomes) == ["deleted"] * 3 + ["held: deletion budget spent"]
    wait_for(lambda: len(_pods(core, restricted_namespace)) == 3, "three pods left")

    # A platform event's task (one bot, no pass) meets the same spent budget.
    bots.delete_one({"id": ids[4]})
    assert controller.converge(ids[4], intent="delete", pod=None) == (
        "held: deletion budget spent")
    assert len(_pods(core, restricted_namespace)) == 3
    record = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.DELETIONS_HELD).items()}
    assert record["count"] == "2" and record["kind"] == "live"
    held_logs = [r.getMessage() for r in caplog.records if "removal held" in r.getMessage()]
    assert len(held_logs) == 2, held_logs

    # A replace (config change) is not a removal: it does not need the budget.
    bots.update_one({"id": ids[5]}, {"$set": {"config.symbol": "ETH-USD"}})
    assert controller.converge(ids[5], intent="replace", pod=None) == "replaced"

    # The budget refills (here: its bucket is reset, as time would): the held removals go.
    redis_client.delete(keys.DELETE_BUCKET)
    _, outcomes = run_pass(controller)
    assert sorted(outcomes) == ["deleted", "deleted"]
    wait_for(lambda: _pods(core, restricted_namespace) == {"bot-budget-5"}, "one pod left")
