"""Publishing to the real NATS from synchronous tests, as the platform does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import nats
import orjson


def publish(url: str, messages: Iterable[tuple[str, Any]]) -> int:
    """Publishes (subject, body) pairs in order — body: bytes as is, else JSON — and flushes.
    Returns the server's max_payload."""

    async def send() -> int:
        client = await nats.connect(servers=[url], connect_timeout=5,
                                    max_reconnect_attempts=1)
        try:
            for subject, body in messages:
                data = body if isinstance(body, bytes) else orjson.dumps(body)
                await client.publish(subject, data)
            await client.flush(timeout=10)
            return int(client.max_payload)
        finally:
            await client.close()

    return asyncio.run(send())
