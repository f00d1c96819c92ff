"""NATS: connect with backoff, receive the platform's events, report connection state.

I/O only. The first connection is retried here, forever, with capped exponential backoff and
jitter; once connected, nats-py reconnects by itself — with the same backoff, through its
`reconnect_to_server_handler` — and re-establishes every subscription on the new connection.
`connected` is what readiness reports. Messages go to the caller's coroutine unparsed, as a
`Delivery` it settles when done.

Two ways to receive (`consume`):
- **From the JetStream stream** the platform publishes into (the0's API creates `THE0_EVENTS`
  on the six subjects and publishes with JetStream): a durable pull consumer, so events sent
  while no consumer runs wait in the stream, and one this consumer was handling when it died
  is delivered again. A message is acknowledged only when the caller settles it; until then a
  keep-alive (`in_progress`) stops the server from redelivering it, however long Mongo is down.
  The stream is created with the platform's own settings when absent (never changed when
  present); the durable consumer when absent, delivering only messages newer than itself.
- **Core NATS** (queue group), when the server has no JetStream or no stream is configured:
  what the seed describes, and what the0's original runtime did. Messages published while no
  consumer is subscribed are lost there; the consumer says so when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError
from nats.js import api as js_api

log = logging.getLogger("the0.adapters.nats")

STREAM_EXISTS = 10058  # JetStream's error code for "stream name already in use"
CONSUMER_CHECK_S = 10.0  # how often an idle durable reader checks its consumer still exists


@dataclass(frozen=True)
class Delivery:
    """One message handed to the caller. `sequence` is its place in the stream (None on core
    NATS); `settle()` says the caller is done with it — acknowledged, never delivered again
    (a no-op on core NATS). A message never settled (the process died, or was stopping) is
    delivered again after `ack_wait`."""

    subject: str
    data: bytes
    sequence: int | None
    settle: Callable[[], Awaitable[None]]


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True)
class StreamSpec:
    """Where durable delivery comes from: the stream (and how to create it if absent) and the
    durable consumer's name and redelivery timing."""

    stream: str
    subjects: Sequence[str]
    max_age_s: float
    durable: str
    ack_wait_s: float


async def _no_op() -> None:
    return None


def redact_url(url: str) -> str:
    """The URL without user:password (for logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class EventSource:
    def __init__(self, url: str, *, name: str, reconnect_wait: float,
                 reconnect_wait_cap: float, ping_interval: float,
                 on_dropped: Callable[[], None] = lambda: None,
                 on_closed: Callable[[], None] = lambda: None) -> None:
        self.url = url
        self.on_dropped = on_dropped  # messages dropped by the client (slow consumer)
        self.on_closed = on_closed    # the connection is closed for good
        self.name = name
        self.reconnect_wait = reconnect_wait
        self.reconnect_wait_cap = reconnect_wait_cap
        self.ping_interval = ping_interval
        self.client: Client | None = None
        self.disconnects = 0
        self.fetch_failing = False  # the stream answers fetches with errors (not a timeout)
        self.silent = False  # the server left the last PING unanswered (see `probe`)

    @property
    def connected(self) -> bool:
        """Connected, answering pings, and — reading from the stream — its fetches work:
        readiness must not say yes while events cannot be read (a paused server, a deleted
        consumer, a refused permission)."""
        return (self.client is not None and self.client.is_connected and not self.silent
                and not self.fetch_failing)

    async def probe(self, timeout: int) -> None:
        """One PING → PONG round trip, noted in `silent`. A paused or cut-off server keeps
        the TCP connection open and answers nothing; nats-py gives up only after 3 missed
        keep-alive pings (NATS_PING_INTERVAL each), and a durable fetch's timeout looks like
        an idle stream."""
        if self.client is None or not self.client.is_connected:
            return
        try:
            await self.client.flush(timeout=timeout)
        except Exception as exc:  # nats-py's TimeoutError, or the connection going meanwhile
            if not self.silent:
                log.warning("nats: %s left a ping unanswered for %d s (%s)",
                            redact_url(self.url), timeout, type(exc).__name__)
            self.silent = True
        else:
            self.silent = False

    async def connect(self, stop: asyncio.Event) -> bool:
        """Connects, retrying with backoff until it works or `stop` is set (→ False)."""
        failures = 0
        while not stop.is_set():
            try:
                # Few attempts per call: nats-py would otherwise retry the first connect
                # itself, forever, at a fixed interval, inside this call.
                self.client = await nats.connect(
                    servers=[self.url], name=self.name, connect_timeout=2,
                    allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0,
                    reconnect_to_server_handler=self._next_attempt,
                    ping_interval=max(1, round(self.ping_interval)), max_outstanding_pings=3,
                    error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected, closed_cb=self._on_closed)
                # From now on a lost connection is re-established by nats-py (read at
                # disconnect time from the client's public `options`).
                self.client.options["allow_reconnect"] = True
                self.client.options["max_reconnect_attempts"] = -1
                log.info("nats: connected to %s", redact_url(self.url))
                return True
            except Exception as exc:  # nats-py raises several unrelated types here
                delay = self.backoff(failures)
                failures += 1
                log.warning("nats: cannot connect to %s (%s); retrying in %.1f s",
                            redact_url(self.url), type(exc).__name__, delay)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        return False

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt after `failures` failed ones (jittered)."""
        delay: float = min(self.reconnect_wait_cap, self.reconnect_wait * 2.0 ** min(failures, 16))
        return delay * (0.5 + random.random() / 2)

    def _next_attempt(self, servers: list[Server], _info: dict[str, Any]
                      ) -> tuple[Server | None, float]:
        server = servers[0]
        return server, self.backoff(server.reconnects)

    async def durable_available(self, spec: StreamSpec) -> bool:
        """Makes sure the stream and the durable consumer exist; False when the server has no
        JetStream (then only core NATS is possible)."""
        assert self.client is not None, "connect() first"
        jsm = self.client.jsm()
        try:
            info = await jsm.stream_info(spec.stream)
        except nats.js.errors.NotFoundError:
            try:
                info = await jsm.add_stream(js_api.StreamConfig(
                    name=spec.stream, subjects=list(spec.subjects),
                    retention=js_api.RetentionPolicy.LIMITS,
                    storage=js_api.StorageType.FILE, max_age=spec.max_age_s))
                log.info("nats: created the stream %s on %s (as the platform's API does)",
                         spec.stream, ", ".join(spec.subjects))
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != STREAM_EXISTS:
                    raise
                info = await jsm.stream_info(spec.stream)  # created meanwhile by the platform
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError,
                nats.errors.TimeoutError):
            return False
        missing = sorted(set(spec.subjects) - set(info.config.subjects or ()))
        if missing:
            log.error("nats: the stream %s does not hold %s: those events are not kept while "
                      "no consumer runs", spec.stream, ", ".join(missing))
        try:
            await jsm.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            await jsm.add_consumer(spec.stream, js_api.ConsumerConfig(
                name=spec.durable, durable_name=spec.durable,
                ack_policy=js_api.AckPolicy.EXPLICIT,
                # A new durable starts at the present: the stream's past (7 days of it on the
                # platform) was applied by whoever consumed it then.
                deliver_policy=js_api.DeliverPolicy.NEW,
                ack_wait=spec.ack_wait_s, max_deliver=-1))
            log.info("nats: created the durable consumer %s on %s", spec.durable, spec.stream)
        return True

    async def consume_durable(self, spec: StreamSpec, *, handler: Handler,
                              slots: asyncio.Semaphore, batch: int,
                              stop: asyncio.Event) -> None:
        """Fetches from the durable consumer until `stop`. A slot of `slots` is taken for each
        message BEFORE it is fetched (the handler's caller releases it): a message is never
        in our hands without a handler able to keep it alive, so no message's ack_wait runs
        out while it waits for one."""
        assert self.client is not None, "connect() first"
        js = self.client.jetstream()
        # The inbox subscription is the client's: nats-py re-creates it after a reconnect.
        sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        keep_alive = max(spec.ack_wait_s / 3, 0.5)
        checked = time.monotonic()
        try:
            while not stop.is_set():
                taken = await _take_slots(slots, batch, stop)
                if not taken:
                    break
                try:
                    msgs = await sub.fetch(taken, timeout=1.0)
                    self.fetch_failing = False
                except TimeoutError:  # nats-py's and asyncio's: nothing came in time
                    msgs = []
                    self.fetch_failing = False
                    # A deleted durable consumer looks like silence to a fetch (nats-py drops
                    # the server's status): while idle, check it still exists (it is created
                    # again if not) every CONSUMER_CHECK_S.
                    if time.monotonic() - checked > CONSUMER_CHECK_S:
                        checked = time.monotonic()
                        await self._recheck(spec)
                except Exception as exc:  # disconnected, consumer gone with a wiped server...
                    if not self.fetch_failing:
                        log.warning("nats: fetch from %s/%s failed (%s); trying again every "
                                    "second", spec.stream, spec.durable, type(exc).__name__)
                    self.fetch_failing = True
                    msgs = []
                    await _pause(stop, 1.0)
                    await self._recheck(spec)
                for _ in range(taken - len(msgs)):
                    slots.release()
                for msg in msgs:
                    await handler(self._held(msg, keep_alive))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _recheck(self, spec: StreamSpec) -> None:
        """The stream and the durable consumer once more (created again if gone); while
        disconnected there is nothing to ask, and a failure only waits for the next check.
        (The connection itself, not `connected`: that one is false while fetches fail, which
        is when this is needed most.)"""
        if self.client is None or not self.client.is_connected:
            return
        try:
            await self.durable_available(spec)
        except Exception as exc:  # nats-py raises several unrelated types here
            log.warning("nats: checking %s/%s failed (%s)", spec.stream, spec.durable,
                        type(exc).__name__)

    def _held(self, msg: Msg, keep_alive: float) -> Delivery:
        async def refresh() -> None:
            while True:
                await asyncio.sleep(keep_alive)
                try:
                    await msg.in_progress()
                except Exception as exc:  # disconnected: the server may redeliver it; the
                    # caller drops a copy older than what it applied for that bot
                    log.info("nats: keep-alive of stream message %s failed (%s)",
                             msg.metadata.sequence.stream, type(exc).__name__)

        refresher = asyncio.create_task(refresh())

        async def settle() -> None:
            refresher.cancel()
            try:
                await msg.ack()
            except Exception as exc:
                log.warning("nats: ack of stream message %s failed (%s); it will be delivered "
                            "again and dropped as already applied",
                            msg.metadata.sequence.stream, type(exc).__name__)

        return Delivery(msg.subject, msg.data, msg.metadata.sequence.stream, settle)

    async def subscribe(self, subjects: Sequence[str], *, queue: str, handler: Handler,
                        slots: asyncio.Semaphore, pending_msgs_limit: int,
                        pending_bytes_limit: int) -> None:
        """Core NATS: a queue subscription per subject. Waiting for a slot in the callback is
        the back-pressure: undelivered messages stay in the client's bounded pending queue."""
        assert self.client is not None, "connect() first"

        async def deliver(msg: Msg) -> None:
            await slots.acquire()
            await handler(Delivery(msg.subject, msg.data, None, _no_op))

        for subject in subjects:
            await self.client.subscribe(subject, queue=queue, cb=deliver,
                                        pending_msgs_limit=pending_msgs_limit,
                                        pending_bytes_limit=pending_bytes_limit)
        await self.client.flush(timeout=5)

    async def close(self) -> None:
        """Stops delivery, lets handlers of delivered messages finish, disconnects."""
        if self.client is not None and not self.client.is_closed:
            try:
                await self.client.drain()
            except Exception as exc:  # closing a broken connection must not fail shutdown
                log.info("nats: drain failed (%s); closing", type(exc).__name__)
                await self.client.close()

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            # The pending buffer was full: NATS core drops the message (no redelivery).
            log.error("nats: slow consumer, a message on %s was DROPPED", exc.subject)
            self.on_dropped()
            return
        log.warning("nats: %s (reconnecting with backoff)", type(exc).__name__)

    async def _on_closed(self) -> None:
        if self.client is not None and not self.client.is_draining:
            log.error("nats: connection closed for good")
        self.on_closed()

    async def _on_disconnected(self) -> None:
        if self.client is not None and (self.client.is_closed or self.client.is_draining):
            log.info("nats: disconnected (closing)")
            return
        self.disconnects += 1
        log.warning("nats: disconnected from %s; reconnecting", redact_url(self.url))

    async def _on_reconnected(self) -> None:
        self.silent = False  # a new connection: the old one's silence says nothing of it
        log.info("nats: reconnected to %s", redact_url(self.url))


async def _take_slots(slots: asyncio.Semaphore, most: int, stop: asyncio.Event) -> int:
    """Waits for one free slot (or `stop` → 0), then takes up to `most` without waiting."""
    acquire = asyncio.ensure_future(slots.acquire())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not acquire.done():
        acquire.cancel()
        return 0
    taken = 1
    while taken < most and not slots.locked():
        await slots.acquire()
        taken += 1
    return taken


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
