"""The NATS consumer: platform events → Mongo (the platform's documents) → a reconcile of that
one bot, at once. Run ONE: `python -m worker events`. A bot's events must be applied in the
order they were sent, and several consumers share messages without regard to the bot
(k8s/events.yaml deploys one replica with Recreate).

Delivery (worker.adapters.nats): from the platform's JetStream stream (`EVENTS_STREAM`, the0's
`THE0_EVENTS`) through a durable consumer, so no event is lost while this consumer is down or
restarting; a message is acknowledged once its effect is in Mongo and its reconcile queued (or
it was refused). Core NATS when the server has no JetStream or `EVENTS_STREAM` is empty.

Steps per message (DESIGN §1 "NATS"):
1. parse (pure, worker.core.events), size and depth limits included; a bad message is logged
   by reason — never its content — counted, and dropped; the consumer goes on. When its bot
   is known, the refusal is also written to that bot's status (in its turn, like its events);
2. apply its effect to Mongo (created / updated / deleted), retried with backoff while Mongo is
   down — until it works from the stream (the message is kept alive meanwhile; a stopping
   consumer leaves it unacknowledged, for the next one), for up to EVENT_APPLY_DEADLINE on core
   NATS, which does not redeliver. A copy older than what was already applied for that bot
   (a redelivery after a lost ack) is acknowledged and skipped, so it cannot undo a later
   event. A document Mongo refuses is NOT retried: that event fails at once (logged, counted
   `failed:refused`, in the bot's status), so it holds its slot for milliseconds;
3. queue `reconcile.bot` / `reconcile.schedule` for that id — unless one is already queued
   and not yet started: it will read the latest document, so a burst for one bot collapses
   into one action on its latest state.

Messages for one bot are applied in arrival order; different bots in parallel (bounded).
The periodic reconcile stays the safety net: with NATS down, the system still converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from celery import Celery

from worker.adapters.nats import Delivery, EventSource, StreamSpec, redact_url
from worker.core.bot import BotKind
from worker.core.errors import TemporaryError
from worker.core.events import (
    PLATFORM_STREAM_MAX_AGE_S,
    QUEUE_GROUP,
    AppliedSequences,
    BotEvent,
    DocumentRefused,
    Rejected,
    parse_event,
    subjects,
    subscriptions,
)
from worker.core.metrics import EVENTS
from worker.core.text import excerpt, iso
from worker.reconcile.statuses import record_outcome
from worker.runtime import Runtime

log = logging.getLogger("the0.events")

T = TypeVar("T")
RECONCILE_TASK = {BotKind.LIVE: "reconcile.bot", BotKind.SCHEDULED: "reconcile.schedule"}


NATS_UNSET = ("NATS_URL is not set: platform events are off (the seed makes NATS optional); the "
              "periodic reconcile alone converges. Set NATS_URL to run the events consumer.")


class EventsOff(RuntimeError):
    """The events consumer was started without NATS_URL."""


def consumer_name() -> str:
    return f"events@{socket.gethostname()}:{os.getpid()}"


class EventConsumer:
    def __init__(self, rt: Runtime, celery: Celery, *, name: str | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.celery = celery
        self.name = name or consumer_name()
        self._sleep = sleep
        s = self.settings
        if s.NATS_URL is None:
            raise EventsOff(NATS_UNSET)
        self.nats_url = s.NATS_URL.get_secret_value()
        self.source = EventSource(self.nats_url, name=self.name,
                                  reconnect_wait=s.NATS_RECONNECT_WAIT,
                                  reconnect_wait_cap=s.NATS_RECONNECT_WAIT_CAP,
                                  ping_interval=s.NATS_PING_INTERVAL,
                                  on_dropped=lambda: self._count("failed:dropped"),
                                  on_closed=self._connection_closed)
        # Mongo writes and task sends wait on servers: their own threads, so a hung Mongo
        # can neither starve the heartbeat (default pool) nor cap EVENT_CONCURRENCY.
        self._io = ThreadPoolExecutor(max_workers=s.EVENT_CONCURRENCY,
                                      thread_name_prefix="events-io")
        self.failed = False  # the NATS connection closed for good: exit non-zero
        self.counts: Counter[str] = Counter()   # since start (reported in the heartbeat)
        self.delivery = "none"  # "stream" (JetStream, durable) or "core", once subscribed
        self.stream = (StreamSpec(stream=s.EVENTS_STREAM, subjects=subjects(),
                                  max_age_s=PLATFORM_STREAM_MAX_AGE_S,
                                  durable=s.EVENTS_DURABLE, ack_wait_s=s.EVENTS_ACK_WAIT)
                       if s.EVENTS_STREAM else None)
        self._applied = AppliedSequences()
        self._slots = asyncio.Semaphore(s.EVENT_CONCURRENCY)
        self._bot_locks: dict[tuple[BotKind, str], tuple[asyncio.Lock, int]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat_forever())
        try:
            if await self.source.connect(self.stop):
                durable = await self._stream_available()
                if durable is None:
                    pass  # stopped before NATS answered
                elif durable and self.stream is not None:
                    await self._consume_stream(self.stream)
                else:
                    await self._subscribe_core()
                    await self.stop.wait()
        finally:
            if self.delivery == "stream" and self._running:
                # Fetching has stopped; let delivered messages finish while their acks can
                # still reach the server (what does not finish is delivered again later).
                await asyncio.wait(self._running, timeout=self.settings.EVENT_APPLY_DEADLINE)
            await self.source.close()
            if self._running:
                await asyncio.wait(self._running, timeout=self.settings.EVENT_APPLY_DEADLINE)
            self._io.shutdown(wait=False, cancel_futures=True)
            heartbeat.cancel()
            await self._beat()  # last counts; state "stopped"
            log.info("events: %s stopped (%s)", self.name, dict(self.counts))

    async def _stream_available(self) -> bool | None:
        """Whether to read from the stream (it and the durable consumer exist now); None if
        stopped meanwhile. A JetStream that answers with an error (e.g. NATS restarting) is
        asked again with backoff: falling back to core NATS then would lose events."""
        if self.stream is None:
            return False
        failures = 0
        while not self.stop.is_set():
            try:
                return await self.source.durable_available(self.stream)
            except Exception as exc:  # nats-py raises several unrelated types here
                delay = self.source.backoff(failures)
                failures += 1
                log.warning("events: stream %s not usable yet (%s: %s); asking again in %.1f s",
                            self.stream.stream, type(exc).__name__, excerpt(str(exc), limit=200),
                            delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
        return None

    async def _consume_stream(self, spec: StreamSpec) -> None:
        self.delivery = "stream"
        log.info("events: %s subscribed to %s through the durable consumer %s (JetStream) on %s",
                 self.name, spec.stream, spec.durable, redact_url(self.nats_url))
        await self.source.consume_durable(spec, handler=self.on_message, slots=self._slots,
                                          batch=self.settings.EVENT_CONCURRENCY, stop=self.stop)

    async def _subscribe_core(self) -> None:
        s = self.settings
        await self.source.subscribe(subscriptions(), queue=QUEUE_GROUP, handler=self.on_message,
                                    slots=self._slots, pending_msgs_limit=s.EVENT_PENDING_LIMIT,
                                    pending_bytes_limit=s.EVENT_PENDING_BYTES)
        self.delivery = "core"
        why = ("EVENTS_STREAM is empty" if self.stream is None
               else "the server has no JetStream")
        log.warning("events: %s subscribed to %s (queue group %r, core NATS: %s) on %s; events "
                    "published while no consumer is subscribed are LOST", self.name,
                    ", ".join(subscriptions()), QUEUE_GROUP, why, redact_url(self.nats_url))

    def _connection_closed(self) -> None:
        if not self.stop.is_set():
            log.error("events: %s lost NATS for good; exiting so it is restarted", self.name)
            self.failed = True
            self.stop.set()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def on_message(self, delivery: Delivery) -> None:
        """Called for each message, in order, with a slot already taken for it (the source
        takes it: that is the back-pressure). Starts its handler; the slot is freed when it
        ends. Handlers start in arrival order and take their bot's lock before any await, so
        one bot's events are applied in that order."""
        task = asyncio.create_task(self.handle(delivery))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            # Left unacknowledged: redelivered after EVENTS_ACK_WAIT, and dropped then if a
            # later event of that bot was applied meanwhile.
            log.error("events: handler crashed: %s", type(task.exception()).__name__)
            self._count("crashed")

    # ------------------------------------------------------------------ one message
    async def handle(self, delivery: Delivery) -> None:
        """One message, to its end: settled (acknowledged) unless the consumer is stopping
        with its Mongo write still failing — then it stays in the stream for the next one."""
        if await self._handle(delivery.subject, delivery.data, delivery.sequence):
            await delivery.settle()

    async def _handle(self, subject: str, payload: bytes, sequence: int | None) -> bool:
        s = self.settings
        event = parse_event(subject, payload, max_bytes=s.EVENT_MAX_BYTES,
                            max_depth=s.EVENT_MAX_DEPTH)
        if isinstance(event, Rejected):
            log.warning("events: rejected message on %s: %s (%s)%s", excerpt(subject, limit=80),
                        event.detail, event.reason,
                        f" bot {excerpt(event.bot_id, limit=64)!r}" if event.bot_id else "")
            self._count(f"rejected:{event.reason}")
            if event.bot_id and event.kind is not None:
                async with self._bot_lock(event.kind, event.bot_id):
                    await self._record_refused(
                        event.kind, event.bot_id, event.reason,
                        f"event {excerpt(subject, limit=80)} refused: {event.detail} "
                        f"({event.reason})")
            return True
        async with self._bot_lock(event.kind, event.bot_id):
            if sequence is not None and not self._applied.is_new(event.kind.value, event.bot_id,
                                                                 sequence):
                log.info("events: %s %s %r: skipped, a copy of stream message %d delivered "
                         "again after a later event of this bot was applied", event.kind.value,
                         event.op.value, excerpt(event.bot_id, limit=64), sequence)
                self._count("skipped:redelivered")
                return True
            applied = await self._apply(event, subject)
            if applied is None:
                return False  # stopping with Mongo down: left in the stream
            if applied:
                if sequence is not None:
                    self._applied.record(event.kind.value, event.bot_id, sequence)
                await self._in_thread(self.trigger, event)
            return True

    async def _apply(self, event: BotEvent, subject: str) -> bool | None:
        """True: applied. False: this event failed for good (refused, or Mongo down past the
        deadline on core NATS). None: not applied, the consumer is stopping — from the stream,
        where a message is never given up while Mongo is down."""
        durable = self.delivery == "stream"
        deadline = time.monotonic() + self.settings.EVENT_APPLY_DEADLINE
        delay = 0.2
        while True:
            try:
                outcome = await self._in_thread(self.apply, event)
                log.info("events: %s %s %r: %s", event.kind.value, event.op.value,
                         excerpt(event.bot_id, limit=64), outcome)
                self._count(f"applied:{event.op.value}")
                return True
            except DocumentRefused as refused:
                # This document can never be stored: fail this event now (a retry would hold
                # a slot, and so delay other bots' events, for the whole deadline).
                log.error("events: REFUSED %s %s for bot %r: %s", event.kind.value,
                          event.op.value, excerpt(event.bot_id, limit=64), refused)
                self._count("failed:refused")
                await self._record_refused(
                    event.kind, event.bot_id, "refused",
                    f"event {excerpt(subject, limit=80)} refused: {refused}")
                return False
            except TemporaryError as exc:
                if durable and self.stop.is_set():
                    log.warning("events: stopping with %s %s for bot %r not applied (Mongo: "
                                "%s); it stays in the stream for the next consumer",
                                event.kind.value, event.op.value,
                                excerpt(event.bot_id, limit=64), exc)
                    return None
                if not durable and time.monotonic() + delay > deadline:
                    log.error("events: LOST %s %s for bot %r: Mongo unavailable for %.0f s (%s)",
                              event.kind.value, event.op.value, excerpt(event.bot_id, limit=64),
                              self.settings.EVENT_APPLY_DEADLINE, exc)
                    self._count("failed:mongo")
                    return False
                log.warning("events: Mongo write failed (%s); retrying in %.1f s", exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)

    def apply(self, event: BotEvent) -> str:
        """The event's effect in Mongo (the platform's own semantics, see BotStore)."""
        return self.rt.store(event.kind).apply_event(event)

    async def _record_refused(self, kind: BotKind, bot_id: str, reason: str,
                              message: str) -> None:
        """Best effort, once: a failure to record is logged, never retried (it must not hold
        the slot longer than the refusal itself)."""
        try:
            await self._in_thread(self.record_refused, kind, bot_id, reason, message)
        except TemporaryError as exc:
            log.warning("events: bot %r's refused event is not in its status: %s",
                        excerpt(bot_id, limit=64), exc)

    def record_refused(self, kind: BotKind, bot_id: str, reason: str, message: str) -> None:
        """The refusal in the bot's status now; for a bot the platform has, also as its last
        error, which the next pass writes into the status it rebuilds (until a later action
        of that bot succeeds)."""
        known = self.rt.store(kind).record_refused_event(
            bot_id, kind=kind, reason=reason, message=message, at=iso(self.rt.clock()))
        if known:
            record_outcome(self.rt, kind, bot_id, last_error=message)

    def trigger(self, event: BotEvent) -> None:
        """Queues the single-bot reconcile, once per burst. If Redis cannot say whether one is
        queued, queue anyway: a duplicate reconcile is harmless (tasks are idempotent)."""
        kind, bot_id = event.kind.value, event.bot_id
        try:
            first = self.rt.redis.mark_event_pending(kind, bot_id,
                                                     ttl=self.settings.INFLIGHT_TTL)
        except TemporaryError:
            first = True
        if not first:
            self._count("collapsed")
            return
        try:
            self.celery.send_task(RECONCILE_TASK[event.kind], args=(bot_id,))
        except Exception as exc:
            # The pass will converge this bot within an interval; don't block later events.
            log.error("events: could not queue %s for %r: %s", RECONCILE_TASK[event.kind],
                      excerpt(bot_id, limit=64), type(exc).__name__)
            self._count("failed:enqueue")
            try:
                self.rt.redis.clear_event_pending(kind, bot_id)
            except TemporaryError:
                pass
            return
        self._count("enqueued")

    # ------------------------------------------------------------------ helpers
    def _bot_lock(self, kind: BotKind, bot_id: str) -> _BotLock:
        return _BotLock(self._bot_locks, (kind, bot_id))

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self.rt.metrics.inc(EVENTS, outcome=outcome)  # flushed with the heartbeat

    async def _heartbeat_forever(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(self.settings.HEARTBEAT_INTERVAL)

    async def _beat(self) -> None:
        # Asked every beat, so a server that stops answering is in the heartbeat within one
        # interval (plus this wait) instead of after nats-py's 3 missed keep-alive pings.
        await self.source.probe(timeout=min(max(round(self.settings.HEARTBEAT_INTERVAL), 1), 3))
        state = {"at": time.time(), "name": self.name, "connected": self.source.connected,
                 "delivery": self.delivery,
                 "stopping": self.stop.is_set(), "disconnects": self.source.disconnects,
                 "in_progress": len(self._running), "counts": dict(self.counts)}
        increments = self.rt.metrics.drain()
        try:
            # `self.rt.telemetry` is read in the thread too: the first read builds it.
            await asyncio.to_thread(lambda: self.rt.telemetry.events_consumer_beat(
                self.name, state, ttl=self.settings.HEARTBEAT_TTL, increments=increments))
        except TemporaryError as exc:
            self.rt.metrics.restore(increments)  # counted again at the next beat
            log.warning("events: heartbeat not written: %s", exc)


class _BotLock:
    """Serialises one bot's messages in arrival order; forgets the lock when nobody waits."""

    def __init__(self, table: dict[tuple[BotKind, str], tuple[asyncio.Lock, int]],
                 key: tuple[BotKind, str]) -> None:
        self.table = table
        self.key = key

    async def __aenter__(self) -> None:
        lock, users = self.table.get(self.key, (asyncio.Lock(), 0))
        self.table[self.key] = (lock, users + 1)
        await lock.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        lock, users = self.table[self.key]
        lock.release()
        if users <= 1:
            del self.table[self.key]
        else:
            self.table[self.key] = (lock, users - 1)


def run_consumer(rt: Runtime, celery: Celery) -> int:
    """Runs until SIGTERM / SIGINT, then drains: delivered messages are finished first.
    Without NATS_URL there is nothing to consume: it says so and exits 2."""
    if rt.settings.NATS_URL is None:
        log.error("events: %s", NATS_UNSET)
        return 2

    async def main() -> bool:
        consumer = EventConsumer(rt, celery)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop.set)
        await consumer.run()
        return consumer.failed

    return 1 if asyncio.run(main()) else 0
