"""`reconcile.bots`: the periodic full pass over live bots (fired by beat)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task

from worker.core.errors import TemporaryError
from worker.core.planner import Action
from worker.live_bots import KIND, LiveBotController
from worker.tasks.base import RuntimeTask
from worker.telemetry import record_failed_pass

log = logging.getLogger("the0.tasks.reconcile")

# Per-bot task for each planned action (names are stable: they are the wire contract).
TASK_FOR_ACTION = {"create": "bots.create", "delete": "bots.delete",
                   "replace": "bots.replace", "recreate": "bots.recreate"}


def send_action(task: RuntimeTask, action: Action, as_of: float) -> None:
    task.app.send_task(TASK_FOR_ACTION[action.kind.value], args=(action.bot_id,),
                       kwargs={"reason": action.reason, "as_of": as_of,
                               "pod": action.pod_name})


@shared_task(name="reconcile.bots", base=RuntimeTask, bind=True, ignore_result=True)
def reconcile_bots(self: RuntimeTask) -> dict[str, Any]:
    started = time.monotonic()
    try:
        report = LiveBotController(self.rt).reconcile(
            enqueue=lambda action, as_of: send_action(self, action, as_of))
    except TemporaryError as exc:
        # A failed read ends the pass with no writes; the next tick tries again.
        log.error("reconcile failed, nothing written: %s", exc)
        record_failed_pass(self.rt, KIND.value, exc, started)
        raise
    except Exception as exc:
        record_failed_pass(self.rt, KIND.value, exc, started)
        raise
    return report.summary()
