"""NATS (core, queue group): connect with backoff, subscribe, report connection state.

I/O only. Connecting retries forever with capped exponential backoff (nats-py gives up on the
first connect when the server is down); once connected, nats-py reconnects by itself, and
every subscription is re-established on the new connection. `connected` is what readiness
reports. Messages are handed to the caller's coroutine unparsed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

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
                 reconnect_wait_cap: float, ping_interval: float) -> None:
        self.url = url
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
        delay = self.reconnect_wait
        while not stop.is_set():
            try:
                self.client = await nats.connect(
                    servers=[self.url], name=self.name, connect_timeout=2,
                    allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=self.reconnect_wait,
                    ping_interval=int(self.ping_interval), max_outstanding_pings=3,
                    error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected)
                log.info("nats: connected to %s", redact_url(self.url))
                return True
            except Exception as exc:  # nats-py raises several unrelated types here
                log.warning("nats: cannot connect to %s (%s); retrying in %.1f s",
                            redact_url(self.url), type(exc).__name__, delay)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
                delay = min(self.reconnect_wait_cap, delay * 2)
        return False

    async def subscribe(self, subjects: Sequence[str], *, queue: str, handler: Handler,
                        pending_msgs_limit: int) -> None:
        assert self.client is not None, "connect() first"

        async def deliver(msg: Msg) -> None:
            await handler(msg.subject, msg.data)

        for subject in subjects:
            await self.client.subscribe(subject, queue=queue, cb=deliver,
                                        pending_msgs_limit=pending_msgs_limit)
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
        log.warning("nats: %s", type(exc).__name__)

    async def _on_disconnected(self) -> None:
        self.disconnects += 1
        log.warning("nats: disconnected from %s; reconnecting", redact_url(self.url))

    async def _on_reconnected(self) -> None:
        log.info("nats: reconnected to %s", redact_url(self.url))
