"""No platform event is lost while the events consumer is down, restarting, or stuck on Mongo:
REAL `python -m worker events` processes, reading the stack's NATS JetStream stream through a
durable consumer as the0's platform has it (its API publishes into `THE0_EVENTS`), a REAL Celery
worker, FerretDB and the API server. And where the server has no JetStream, the consumer falls
back to core NATS and says that events can then be lost.

Found by bench/chaos.py: with core NATS, 10 of 51 events published while no consumer was
subscribed (killed, or reconnecting after a NATS restart) were lost for good — the consumer is
what writes them to Mongo, so no pass could recover them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from tests.e2e.test_events import (
    Start,
    heartbeats,
    live_pods,
    settled_counts,
    wait_subscribed,
)
from tests.support.bots import bot_doc, wait_for
from tests.support.nats import publish
from tests.support.procs import Procs
from tools.stack.process import free_port
from tools.stack.supervisor import Stack, StackEnv
from worker.core.events import PLATFORM_STREAM


def created(bot_id: str) -> tuple[str, dict[str, Any]]:
    doc = bot_doc(bot_id)
    return "the0.bot.created", {"id": bot_id, "config": doc["config"], "custom": doc["custom"]}


def consumer_state(nats_url: str, durable: str) -> dict[str, int]:
    """The durable consumer as the NATS server sees it."""
    async def read() -> dict[str, int]:
        client = await nats.connect(servers=[nats_url], connect_timeout=5)
        try:
            info = await client.jsm().consumer_info(PLATFORM_STREAM, durable)
            return {"ack_pending": info.num_ack_pending or 0,
                    "redelivered": info.num_redelivered or 0,
                    "pending": info.num_pending or 0}
        finally:
            await client.close()
    return asyncio.run(read())


def test_events_sent_while_no_consumer_runs_are_applied_in_order_when_one_starts(
        start_worker: Start, start_events: Start, stack_env: StackEnv, code: str, bots: Any,
        core: Any, restricted_namespace: str, redis_client: Any,
        settings_env: dict[str, str]) -> None:
    start_worker("w1")
    first = start_events("events-1")
    wait_subscribed(redis_client, [first])
    assert "durable consumer" in first.output(), first.output()[-2000:]
    assert [b["delivery"] for b in heartbeats(redis_client)] == ["stream"]
    assert first.stop() == 0

    # Nobody is subscribed now. A create, then — for bot d-0 — a delete after its create: the
    # order must survive the wait in the stream, or d-0 would come back.
    publish(stack_env.nats_url, [created(f"d-{i}") for i in range(5)]
            + [("the0.bot.deleted", {"id": "d-0"})])
    waiting = consumer_state(stack_env.nats_url, settings_env["EVENTS_DURABLE"])
    assert waiting["pending"] == 6, waiting

    second = start_events("events-2")
    wait_for(lambda: sorted(d["id"] for d in bots.find({}, {"id": True}))
             == ["d-1", "d-2", "d-3", "d-4"], "the 6 events sent while down applied in order",
             timeout=30, interval=0.2)
    for i in range(1, 5):
        wait_for(lambda i=i: live_pods(core, restricted_namespace, f"d-{i}"),
                 f"d-{i}'s pod", timeout=30)
    # d-0's create may have made its pod before its delete was applied (both reconciles queue
    # at once; the second waits for the first's lock): it must be gone in the end.
    wait_for(lambda: not live_pods(core, restricted_namespace, "d-0"), "d-0's pod gone",
             timeout=30, interval=0.2)
    wait_for(lambda: consumer_state(stack_env.nats_url, settings_env["EVENTS_DURABLE"])
             == {"ack_pending": 0, "redelivered": 0, "pending": 0},
             "every message acknowledged", timeout=15, interval=0.2)
    counts = settled_counts(redis_client, lambda c: c.get("applied:deleted") == 1,
                            "the applied counts flushed")
    assert counts.get("applied:created") == 5, counts
    second.assert_alive()


@pytest.mark.slow(seconds=45)
def test_an_event_held_through_a_mongo_outage_and_a_killed_consumer_is_applied_once(
        stack: Stack, start_worker: Start, start_events: Start, stack_env: StackEnv, code: str,
        bots: Any, core: Any, restricted_namespace: str, redis_client: Any,
        settings_env: dict[str, str]) -> None:
    durable = settings_env["EVENTS_DURABLE"]
    # A short ack_wait, and a deadline that would have dropped the event on core NATS.
    # MONGO_TIMEOUT above ack_wait: each failed write (and the Mongo client's first build) takes
    # longer than the server waits for an ack — only the keep-alive prevents a redelivery.
    env = {"EVENTS_ACK_WAIT": "2s", "EVENT_APPLY_DEADLINE": "1s", "MONGO_TIMEOUT": "5s"}
    start_worker("w1")
    holder = start_events("events-holder", **env)
    wait_subscribed(redis_client, [holder])

    with stack.stopped("ferretdb"):
        publish(stack_env.nats_url, [created("m")])
        wait_for(lambda: holder.output().count("Mongo write failed") >= 2,
                 "the consumer retrying the write", timeout=60, interval=0.2)
        # Three ack_waits pass while the consumer holds the message: its keep-alive stops
        # the server from delivering it again (which would be a second copy in flight).
        time.sleep(6)
        held = consumer_state(stack_env.nats_url, durable)
        assert held == {"ack_pending": 1, "redelivered": 0, "pending": 0}, held
        assert "LOST" not in holder.output()
        holder.kill9()
        # Its message was never acknowledged: after ack_wait, the next consumer gets it.
        taker = start_events("events-taker", **env)
        wait_for(lambda: taker.output().count("Mongo write failed") >= 1,
                 "the redelivered event retried by the next consumer", timeout=30,
                 interval=0.2)

    wait_for(lambda: live_pods(core, restricted_namespace, "m"),
             "the event's pod once Mongo is back", timeout=60)
    wait_for(lambda: consumer_state(stack_env.nats_url, durable)["ack_pending"] == 0,
             "the message acknowledged", timeout=15, interval=0.2)
    counts = settled_counts(redis_client, lambda c: c.get("applied:created", 0) >= 1,
                            "the applied count flushed")
    assert counts.get("applied:created") == 1, counts
    assert "failed:mongo" not in counts, counts
    assert bots.count_documents({"id": "m"}) == 1
    taker.assert_alive()


def test_without_jetstream_the_consumer_uses_core_nats_and_says_events_can_be_lost(
        stack: Stack, procs: Procs, start_worker: Start, start_events: Start, code: str,
        core: Any, restricted_namespace: str, redis_client: Any) -> None:
    port = free_port()
    plain = procs.start("nats-plain", [str(stack.bins.nats_server), "-a", "127.0.0.1", "-p",
                                       str(port)])
    url = f"nats://127.0.0.1:{port}"
    start_worker("w1")
    consumer = start_events(NATS_URL=url)
    wait_for(lambda: plain.assert_alive() is None and "subscribed to" in consumer.output(),
             "the consumer subscribed to a NATS without JetStream", timeout=30, interval=0.2)
    assert "core NATS: the server has no JetStream" in consumer.output()
    assert "events published while no consumer is subscribed are LOST" in consumer.output()
    wait_for(lambda: [b.get("delivery") for b in heartbeats(redis_client)] == ["core"],
             "the heartbeat saying core delivery", timeout=10, interval=0.2)
    publish(url, [created("c")])
    wait_for(lambda: live_pods(core, restricted_namespace, "c"), "the event acted on",
             timeout=30)


def test_a_durable_consumer_deleted_under_a_running_consumer_is_created_again(
        start_worker: Start, start_events: Start, stack_env: StackEnv, code: str, core: Any,
        restricted_namespace: str, redis_client: Any, settings_env: dict[str, str]) -> None:
    durable = settings_env["EVENTS_DURABLE"]
    start_worker("w1")
    consumer = start_events()
    wait_subscribed(redis_client, [consumer])

    async def delete() -> None:
        client = await nats.connect(servers=[stack_env.nats_url], connect_timeout=5)
        try:
            await client.jsm().delete_consumer(PLATFORM_STREAM, durable)
        finally:
            await client.close()

    asyncio.run(delete())
    # Fetches see only silence (nats-py drops the server's status); the idle check finds it.
    wait_for(lambda: consumer.output().count(f"created the durable consumer {durable}") == 2,
             "the consumer to create its durable again", timeout=30, interval=0.2)
    publish(stack_env.nats_url, [created("again")])
    wait_for(lambda: live_pods(core, restricted_namespace, "again"),
             "an event after the re-creation acted on", timeout=30)
    consumer.assert_alive()
