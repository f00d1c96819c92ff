"""Per-bot tasks: `bots.create|delete|replace|recreate` (from the reconcile) and
`reconcile.bot` (from NATS events). Each re-reads the bot and acts on the world as it is."""

from __future__ import annotations

from celery import shared_task

from worker.core.errors import TemporaryError
from worker.live_bots import KIND, LiveBotController
from worker.tasks.base import RuntimeTask
from worker.telemetry import counted_action


def converge(task: RuntimeTask, bot_id: str, intent: str, as_of: float | None,
             pod: str | None = None) -> str:
    release = True
    try:
        return counted_action(task.rt.metrics, KIND.value, intent, lambda: LiveBotController(
            task.rt).converge(bot_id, intent=intent, pod=pod))
    except TemporaryError as exc:
        if task.request.retries < task.settings.TASK_MAX_RETRIES:
            release = False  # still in flight: the retry is queued
        raise task.retry_later(exc) from None
    finally:
        if release:
            task.rt.redis.release_inflight(KIND.value, bot_id)


@shared_task(name="bots.create", base=RuntimeTask, bind=True, ignore_result=True)
def create(self: RuntimeTask, bot_id: str, reason: str = "",
           as_of: float | None = None, pod: str | None = None) -> str:
    return converge(self, bot_id, "create", as_of, pod)


@shared_task(name="bots.delete", base=RuntimeTask, bind=True, ignore_result=True)
def delete(self: RuntimeTask, bot_id: str, reason: str = "",
           as_of: float | None = None, pod: str | None = None) -> str:
    return converge(self, bot_id, "delete", as_of, pod)


@shared_task(name="bots.replace", base=RuntimeTask, bind=True, ignore_result=True)
def replace(self: RuntimeTask, bot_id: str, reason: str = "",
            as_of: float | None = None, pod: str | None = None) -> str:
    return converge(self, bot_id, "replace", as_of, pod)


@shared_task(name="bots.recreate", base=RuntimeTask, bind=True, ignore_result=True)
def recreate(self: RuntimeTask, bot_id: str, reason: str = "",
             as_of: float | None = None, pod: str | None = None) -> str:
    return converge(self, bot_id, "recreate", as_of, pod)


@shared_task(name="reconcile.bot", base=RuntimeTask, bind=True, ignore_result=True)
def reconcile_bot(self: RuntimeTask, bot_id: str) -> str:
    """One bot, now (sent by the NATS consumer after it wrote the event to Mongo)."""
    # Cleared before the read: an event written after this point queues a new task.
    try:
        self.rt.redis.clear_event_pending(KIND.value, bot_id)
        return LiveBotController(self.rt).converge(bot_id, intent="event")
    except TemporaryError as exc:
        raise self.retry_later(exc) from None
