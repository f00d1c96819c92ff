"""Scheduled bots: `reconcile.schedules` (beat), `schedules.create|update|delete` (fan-out)
and `reconcile.schedule` (NATS events)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task

from worker.core.errors import TemporaryError
from worker.core.planner import Action
from worker.schedules import KIND, ScheduleController
from worker.tasks.base import RuntimeTask
from worker.telemetry import counted_action, record_failed_pass

log = logging.getLogger("the0.tasks.schedules")

# A REPLACE of a CronJob is an update in place.
TASK_FOR_ACTION = {"create": "schedules.create", "delete": "schedules.delete",
                   "replace": "schedules.update", "recreate": "schedules.update"}


def send_action(task: RuntimeTask, action: Action, as_of: float) -> None:
    task.app.send_task(TASK_FOR_ACTION[action.kind.value], args=(action.bot_id,),
                       kwargs={"reason": action.reason, "as_of": as_of})


@shared_task(name="reconcile.schedules", base=RuntimeTask, bind=True, ignore_result=True)
def reconcile_schedules(self: RuntimeTask) -> dict[str, Any]:
    started = time.monotonic()
    try:
        report = ScheduleController(self.rt).reconcile(
            enqueue=lambda action, as_of: send_action(self, action, as_of))
    except TemporaryError as exc:
        log.error("schedule reconcile failed, nothing written: %s", exc)
        record_failed_pass(self.rt, KIND.value, exc, started)
        raise
    except Exception as exc:
        record_failed_pass(self.rt, KIND.value, exc, started)
        raise
    return report.summary()


def converge(task: RuntimeTask, bot_id: str, intent: str, as_of: float | None) -> str:
    release = True
    try:
        return counted_action(task.rt.metrics, KIND.value, intent, lambda: ScheduleController(
            task.rt).converge(bot_id, intent=intent))
    except TemporaryError as exc:
        if task.request.retries < task.settings.TASK_MAX_RETRIES:
            release = False
        raise task.retry_later(exc) from None
    finally:
        if release:
            task.rt.redis.release_inflight(KIND.value, bot_id)


@shared_task(name="schedules.create", base=RuntimeTask, bind=True, ignore_result=True)
def create(self: RuntimeTask, bot_id: str, reason: str = "", as_of: float | None = None) -> str:
    return converge(self, bot_id, "create", as_of)


@shared_task(name="schedules.update", base=RuntimeTask, bind=True, ignore_result=True)
def update(self: RuntimeTask, bot_id: str, reason: str = "", as_of: float | None = None) -> str:
    return converge(self, bot_id, "update", as_of)


@shared_task(name="schedules.delete", base=RuntimeTask, bind=True, ignore_result=True)
def delete(self: RuntimeTask, bot_id: str, reason: str = "", as_of: float | None = None) -> str:
    return converge(self, bot_id, "delete", as_of)


@shared_task(name="reconcile.schedule", base=RuntimeTask, bind=True, ignore_result=True)
def reconcile_schedule(self: RuntimeTask, bot_id: str) -> str:
    """One schedule, now (sent by the NATS consumer after it wrote the event to Mongo)."""
    try:
        self.rt.redis.clear_event_pending(KIND.value, bot_id)
        return ScheduleController(self.rt).converge(bot_id, intent="event")
    except TemporaryError as exc:
        raise self.retry_later(exc) from None
