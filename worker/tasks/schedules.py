"""Scheduled bots: `reconcile.schedules` (beat), `schedules.create|update|delete` (fan-out)
and `reconcile.schedule` (NATS events)."""

from __future__ import annotations

from typing import Any

from worker.core.bot import BotKind
from worker.core.planner import Action
from worker.reconcile.controller import ScheduleController
from worker.reconcile.converge import Call
from worker.reconcile.passes import Enqueue, PassReport
from worker.runtime import Runtime
from worker.tasks.base import action_task, event_task, pass_task

SCHEDULED = BotKind.SCHEDULED
# A REPLACE of a CronJob is an update in place.
TASK_FOR_ACTION = {"create": "schedules.create", "delete": "schedules.delete",
                   "replace": "schedules.update", "recreate": "schedules.update"}


def send_action(app: Any, action: Action, as_of: float) -> None:
    app.send_task(TASK_FOR_ACTION[action.kind.value], args=(action.bot_id,),
                  kwargs={"reason": action.reason, "as_of": as_of})


@pass_task("reconcile.schedules", kind=SCHEDULED, send=send_action)
def reconcile_schedules(rt: Runtime, enqueue: Enqueue) -> PassReport:
    return ScheduleController(rt).reconcile(enqueue=enqueue)


@action_task("schedules.create", kind=SCHEDULED, intent="create")
def create(rt: Runtime, bot_id: str, call: Call) -> str:
    return ScheduleController(rt).converge(bot_id, intent="create", call=call)


@action_task("schedules.update", kind=SCHEDULED, intent="update")
def update(rt: Runtime, bot_id: str, call: Call) -> str:
    return ScheduleController(rt).converge(bot_id, intent="update", call=call)


@action_task("schedules.delete", kind=SCHEDULED, intent="delete")
def delete(rt: Runtime, bot_id: str, call: Call) -> str:
    return ScheduleController(rt).converge(bot_id, intent="delete", call=call)


@event_task("reconcile.schedule", kind=SCHEDULED)
def reconcile_schedule(rt: Runtime, bot_id: str, call: Call) -> str:
    return ScheduleController(rt).converge(bot_id, intent="event", call=call)
