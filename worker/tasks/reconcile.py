"""`reconcile.bots`: the periodic full pass over live bots (fired by beat)."""

from __future__ import annotations

from typing import Any

from worker.core.bot import BotKind
from worker.core.planner import Action
from worker.reconcile.controller import LiveBotController
from worker.reconcile.passes import Enqueue, PassReport
from worker.runtime import Runtime
from worker.tasks.base import pass_task

# Per-bot task for each planned action (names are stable: they are the wire contract).
TASK_FOR_ACTION = {"create": "bots.create", "delete": "bots.delete",
                   "replace": "bots.replace", "recreate": "bots.recreate"}


def send_action(app: Any, action: Action, as_of: float) -> None:
    app.send_task(TASK_FOR_ACTION[action.kind.value], args=(action.bot_id,),
                  kwargs={"reason": action.reason, "as_of": as_of, "pod": action.pod_name})


@pass_task("reconcile.bots", kind=BotKind.LIVE, send=send_action)
def reconcile_bots(rt: Runtime, enqueue: Enqueue) -> PassReport:
    return LiveBotController(rt).reconcile(enqueue=enqueue)
