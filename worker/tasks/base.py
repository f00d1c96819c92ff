"""The base of every task, and the one place that owns what tasks have in common.

`RuntimeTask`: the process's Runtime; TemporaryError (and 409/429/5xx from Kubernetes) → retry
with exponential backoff and jitter, honouring Retry-After; PermanentError / InvalidBot → no
retry (the status says why). The decorators below own counting, retries, in-flight release and
the record of a failed pass, so each task's body is one call.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from celery import Task, shared_task

from worker.core.bot import BotKind
from worker.core.errors import TemporaryError
from worker.core.metrics import TASK_RETRIES
from worker.core.planner import Action
from worker.core.text import excerpt
from worker.reconcile.converge import Call
from worker.reconcile.passes import Enqueue, PassReport
from worker.reconcile.waiting import Resume, StillTerminating, pace
from worker.runtime import Runtime, process_runtime
from worker.settings import Settings
from worker.telemetry import counted_action, record_failed_pass

log = logging.getLogger("the0.tasks")
# A per-bot task waits only briefly for a terminating object (a replace's old pod) in its
# thread, then hands the thread back and sends its continuation (worker/reconcile/waiting.py:
# `pace`). Under load that wait was most of a replace, with a thread held for it.
CONTINUED = "continued: the old object is still terminating"
# A continuation's message headers (not arguments: a worker of the previous release, in a
# rolling upgrade, ignores them and runs the task as any other, which re-plans and creates).
HEADER_RESUMES = "the0_resumes"
HEADER_GONE_BY = "the0_gone_by"
HEADER_WAITS = "the0_waits"


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

    def converge(self, body: ConvergeBot, bot_id: str, pod: str | None, *,
                 resend: dict[str, Any]) -> str:
        """Runs `body` for one bot, waiting only briefly for a terminating object (`pace`);
        if that is not enough, sends this task again (its continuation, `resend` its keyword
        arguments) and returns CONTINUED. Past POD_GONE_TIMEOUT since the first such wait,
        StillTerminating propagates as the temporary error it is (retried with backoff)."""
        resumes = getattr(self.request, HEADER_RESUMES, None)
        gone_by = getattr(self.request, HEADER_GONE_BY, None)
        waits = getattr(self.request, HEADER_WAITS, None)
        waits = waits if isinstance(waits, int) else 0
        inline_wait, countdown = pace(waits)
        call = Call(planned_object=pod, inline_wait=inline_wait,
                    resumes=Resume.from_message(resumes))
        try:
            return body(self.rt, bot_id, call)
        except StillTerminating as waiting:
            now = self.rt.clock()
            deadline = (float(gone_by) if isinstance(gone_by, int | float)
                        else now + self.settings.POD_GONE_TIMEOUT)
            if now >= deadline:
                raise
            self.apply_async(args=(bot_id,), kwargs=resend, countdown=countdown,
                             headers={HEADER_RESUMES: (waiting.resumes.as_message()
                                                       if waiting.resumes else None),
                                      HEADER_GONE_BY: deadline, HEADER_WAITS: waits + 1})
            log.info("%s %r: %s", self.name, excerpt(bot_id, limit=64), waiting)
            return CONTINUED


# ------------------------------------------------------------------ task decorators
ConvergeBot = Callable[[Runtime, str, Call], str]  # (rt, bot id, how converge is called)


def action_task(name: str, *, kind: BotKind, intent: str) -> Callable[[ConvergeBot], Any]:
    """A per-bot action the pass fanned out (`bots.*`, `schedules.*`): its outcome counted,
    temporary errors retried with backoff (the bot stays "in flight" meanwhile), and its
    in-flight mark released once it ends for good (not when it continues: its continuation
    holds it). `reason` and `as_of` are in the message for the log and Flower; the body reads
    its bot afresh (a continuation's headers: RuntimeTask.converge)."""
    def register(body: ConvergeBot) -> Any:
        @shared_task(name=name, base=RuntimeTask, bind=True, ignore_result=True)
        def task(self: RuntimeTask, bot_id: str, reason: str = "", as_of: float | None = None,
                 pod: str | None = None) -> str:
            release = True
            try:
                outcome = counted_action(self.rt.metrics, kind.value, intent, lambda: (
                    self.converge(body, bot_id, pod,
                                  resend={"reason": reason, "as_of": as_of, "pod": pod})))
                release = outcome != CONTINUED
                return outcome
            except TemporaryError as exc:
                if self.request.retries < self.settings.TASK_MAX_RETRIES:
                    release = False  # still in flight: the retry is queued
                raise self.retry_later(exc) from None
            finally:
                if release:
                    self.rt.redis.release_inflight(kind.value, bot_id)

        return task

    return register


def event_task(name: str, *, kind: BotKind) -> Callable[[ConvergeBot], Any]:
    """One bot, now (`reconcile.bot`, `reconcile.schedule`: sent by the NATS consumer after it
    wrote the event to Mongo, or when someone else deleted a bot's pod). The burst mark is
    cleared BEFORE the read, so an event written after this point queues a new task."""
    def register(body: ConvergeBot) -> Any:
        @shared_task(name=name, base=RuntimeTask, bind=True, ignore_result=True)
        def task(self: RuntimeTask, bot_id: str) -> str:
            try:
                self.rt.redis.clear_event_pending(kind.value, bot_id)
                return counted_action(self.rt.metrics, kind.value, "event", lambda: (
                    self.converge(body, bot_id, None, resend={})))
            except TemporaryError as exc:
                raise self.retry_later(exc) from None

        return task

    return register


RunPass = Callable[[Runtime, Enqueue], PassReport]


def pass_task(name: str, *, kind: BotKind, send: Callable[[Any, Action, float], None]
              ) -> Callable[[RunPass], Any]:
    """A full reconcile pass (fired by beat). A failed one (a failed read: nothing was
    written) is recorded for /readyz and metrics, and raised; the next tick tries again."""
    def register(body: RunPass) -> Any:
        @shared_task(name=name, base=RuntimeTask, bind=True, ignore_result=True)
        def task(self: RuntimeTask) -> dict[str, Any]:
            started = time.monotonic()
            try:
                report = body(self.rt, lambda action, as_of: send(self.app, action, as_of))
            except Exception as exc:
                if isinstance(exc, TemporaryError):
                    log.error("%s reconcile failed, nothing written: %s", kind.value, exc)
                record_failed_pass(self.rt, kind.value, exc, started)
                raise
            return report.summary()

        return task

    return register
