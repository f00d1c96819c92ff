"""NATS (core, queue group): connect with backoff, subscribe, report connection state.

I/O only. The first connection is retried here, forever, with capped exponential backoff and
jitter; once connected, nats-py reconnects by itself — with the same backoff, through its
`reconnect_to_server_handler` — and re-establishes every subscription on the new connection.
`connected` is what readiness reports. Messages go to the caller's coroutine unparsed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError

log = logging.getLogger("the0.adapters.nats")
Handler = Callable[[str, bytes], Awaitable[None]]


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

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected

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

    async def subscribe(self, subjects: Sequence[str], *, queue: str, handler: Handler,
                        pending_msgs_limit: int, pending_bytes_limit: int) -> None:
        assert self.client is not None, "connect() first"

        async def deliver(msg: Msg) -> None:
            await handler(msg.subject, msg.data)

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
        log.info("nats: reconnected to %s", redact_url(self.url))
