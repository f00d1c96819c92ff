"""The base of every task: the process's Runtime, and errors mapped to retry or give up.

TemporaryError (and 409/429/5xx from Kubernetes) → retry with exponential backoff and jitter,
honouring Retry-After; PermanentError / InvalidBot → no retry (the status says why).
"""

from __future__ import annotations

import logging
import random
import threading
from functools import partial
from typing import Any

from celery import Task

from worker.core.bot import BotKind
from worker.core.errors import TemporaryError
from worker.core.metrics import TASK_RETRIES
from worker.core.text import excerpt
from worker.runtime import Runtime
from worker.settings import Settings

log = logging.getLogger("the0.tasks")
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def process_runtime(settings: Settings) -> Runtime:
    """One Runtime per process, built on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(settings)
        return _runtime


def reconcile_bot_soon(app: Any, rt: Runtime, bot_id: str) -> None:
    """Queues `reconcile.bot` for a bot whose pod someone else deleted, once per burst (the
    NATS consumer's Redis mark): its replacement need not wait for the next pass. If Redis
    cannot say whether one is queued, queue anyway (tasks are idempotent)."""
    try:
        first = rt.redis.mark_event_pending(BotKind.LIVE.value, bot_id,
                                            ttl=rt.settings.INFLIGHT_TTL)
    except TemporaryError:
        first = True
    if first:
        log.info("a pod of bot %r was deleted by someone else: reconciling it now",
                 excerpt(bot_id, limit=64))
        app.send_task("reconcile.bot", args=(bot_id,))


def retry_delay(retries: int, *, base: float, cap: float, retry_after: float | None) -> float:
    delay = min(cap, base * (2 ** min(retries, 32)))
    delay = delay / 2 + random.random() * delay / 2  # jitter: spread a herd of retries
    return max(delay, retry_after or 0.0)


class RuntimeTask(Task):  # type: ignore[misc]
    abstract = True

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.the0_settings
        return settings

    @property
    def rt(self) -> Runtime:
        rt = process_runtime(self.settings)
        if rt.on_foreign_pod_delete is None:
            rt.on_foreign_pod_delete = partial(reconcile_bot_soon, self.app, rt)
        return rt

    def retry_later(self, exc: TemporaryError) -> Any:
        s = self.settings
        delay = retry_delay(self.request.retries, base=s.TASK_RETRY_BASE, cap=s.TASK_RETRY_CAP,
                            retry_after=exc.retry_after)
        log.info("%s: retry %d in %.1f s: %s", self.name, self.request.retries + 1, delay, exc)
        if self.request.retries < s.TASK_MAX_RETRIES:
            self.rt.metrics.inc(TASK_RETRIES, task=self.name)
        return self.retry(exc=exc, countdown=delay, max_retries=s.TASK_MAX_RETRIES)
