"""worker.events._BotLock: one bot's events in arrival order, others in parallel, no leak."""

from __future__ import annotations

import asyncio

from worker.core.bot import BotKind
from worker.events import _BotLock


def test_one_bots_events_run_in_order_and_other_bots_run_alongside() -> None:
    table: dict[tuple[BotKind, str], tuple[asyncio.Lock, int]] = {}
    trace: list[str] = []

    async def handle(bot: str, n: int, delay: float) -> None:
        async with _BotLock(table, (BotKind.LIVE, bot)):
            trace.append(f"{bot}{n}+")
            await asyncio.sleep(delay)
            trace.append(f"{bot}{n}-")

    async def main() -> None:
        # a1 is slow; a2 and a3 must wait for it, b1 must not.
        tasks = [asyncio.create_task(handle("a", 1, 0.05)),
                 asyncio.create_task(handle("a", 2, 0.0)),
                 asyncio.create_task(handle("b", 1, 0.0)),
                 asyncio.create_task(handle("a", 3, 0.0))]
        await asyncio.gather(*tasks)

    asyncio.run(main())
    a_events = [e for e in trace if e.startswith("a")]
    assert a_events == ["a1+", "a1-", "a2+", "a2-", "a3+", "a3-"]
    assert trace.index("b1-") < trace.index("a1-")  # b did not wait for a
    assert table == {}  # nothing kept once nobody waits
