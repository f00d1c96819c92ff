"""The events consumer's handling of events the database refuses, on the real stack (FerretDB,
Redis, a real Celery client): no retry, counted, logged with the bot id, and visible in that
bot's status — at once, and still after the next pass rebuilds the status. The consumer is
driven in-process (`handle`, as NATS calls it); tests/e2e/test_events.py runs the real process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from celery import Celery

from tests.support.bots import bot_doc, cache_sees, run_pass
from worker.adapters.nats import Delivery
from worker.core.events import PHASE_REFUSED
from worker.core.podstatus import PodHealth
from worker.events import EventConsumer
from worker.reconcile.controller import LiveBotController
from worker.runtime import Runtime

SECRET = "SECRET-REFUSED-4e1d"


@pytest.fixture
def consumer(controller: LiveBotController) -> Iterator[tuple[EventConsumer, list[float]]]:
    rt: Runtime = controller.rt
    celery = Celery("the0-test-client", broker=rt.settings.REDIS_URL, set_as_current=False)
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:  # a retry would show up here
        sleeps.append(seconds)

    consumer = EventConsumer(rt, celery, name="events-test", sleep=no_sleep)
    yield consumer, sleeps
    celery.close()


def handle(consumer: EventConsumer, subject: str, body: Any) -> float:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    settled: list[bool] = []

    async def settle() -> None:
        settled.append(True)

    started = time.monotonic()
    asyncio.run(consumer.handle(Delivery(subject, payload, None, settle)))
    assert settled == [True], "a refused event is settled (acknowledged), never left for redelivery"
    return time.monotonic() - started


def pass_once(controller: LiveBotController) -> None:
    """A pass (it writes the statuses); its actions are not run: none is needed here."""
    controller.reconcile(enqueue=lambda _action, _as_of: None)


@pytest.fixture
def status_of(statuses: Any) -> Callable[[str], dict[str, Any] | None]:
    def read(bot_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = statuses.find_one({"id": bot_id}, {"_id": False})
        return found
    return read


def test_a_known_bots_refused_update_is_in_its_status_at_once_and_after_the_next_pass(
        consumer: tuple[EventConsumer, list[float]], controller: LiveBotController, bots: Any,
        status_of: Callable[[str], dict[str, Any] | None],
        caplog: pytest.LogCaptureFixture) -> None:
    events, sleeps = consumer
    doc = bot_doc("known")
    bots.insert_one(dict(doc))
    run_pass(controller)  # its status (Creating), and its pod created
    before = status_of("known")
    assert before is not None and before["last_error"] == ""
    cache_sees(controller, lambda pods: any(p.assessment.health is PodHealth.RUNNING
                                            for p in pods.values()), "the bot's pod running")

    # A nested "$schema": MongoDB stores it, the test server (FerretDB) refuses it.
    poison = {**doc["config"], "x": {"$schema": SECRET}}
    took = handle(events, "the0.bot.updated", {"id": "known", "config": poison,
                                               "custom": doc["custom"]})
    assert sleeps == [] and took < 1.0  # refused at once, never retried
    assert dict(events.counts) == {"failed:refused": 1}
    assert bots.find_one({"id": "known"}, {"_id": False}) == doc  # nothing written
    now = status_of("known")
    assert now is not None and now["phase"] == before["phase"]
    assert now["last_error"].startswith("event the0.bot.updated refused: the database refused")
    assert "(code 2)" in now["last_error"]
    # The next pass sees the pod running and rebuilds the status whole: the error is carried
    # (Redis) into it.
    pass_once(controller)
    rebuilt = status_of("known")
    assert rebuilt is not None and rebuilt["phase"] != before["phase"]
    assert rebuilt["last_error"] == now["last_error"]
    assert "REFUSED live updated for bot 'known'" in caplog.text
    assert SECRET not in caplog.text and SECRET not in str(rebuilt)


def test_a_refused_create_gets_a_status_until_an_accepted_event_or_a_delete(
        consumer: tuple[EventConsumer, list[float]], controller: LiveBotController, bots: Any,
        status_of: Callable[[str], dict[str, Any] | None]) -> None:
    events, sleeps = consumer
    doc = bot_doc("ghost")
    deep = (b'{"id":"ghost","config":{"k":' + b"[" * 120 + b"]" * 120 + b"}}")
    handle(events, "the0.bot.created", deep)
    refused = status_of("ghost")
    assert refused is not None
    assert (refused["phase"], refused["reason"]) == (PHASE_REFUSED, "too_deep")
    assert "nested more than 100 levels" in refused["last_error"]
    pass_once(controller)  # the pass knows no such bot, and leaves its status alone
    assert status_of("ghost") == refused
    # An accepted create: the pass's status replaces it.
    handle(events, "the0.bot.created", {"id": "ghost", "config": doc["config"],
                                        "custom": doc["custom"]})
    pass_once(controller)
    accepted = status_of("ghost")
    assert accepted is not None and accepted["phase"] != PHASE_REFUSED
    assert "last_event_error" not in accepted and accepted["last_error"] == ""
    # A refused create whose bot is then deleted leaves no status behind.
    # 1e400 reads as infinity, which the test server cannot store (MongoDB can).
    handle(events, "the0.bot.created", b'{"id": "gone", "config": {"n": 1e400}}')
    assert (status_of("gone") or {}).get("phase") == PHASE_REFUSED
    handle(events, "the0.bot.deleted", {"id": "gone"})
    assert status_of("gone") is None
    assert sleeps == []
    assert events.counts["rejected:too_deep"] == 1 and events.counts["failed:refused"] == 1


def test_a_wrapper_whose_ids_disagree_is_refused_and_never_touches_either_bot(
        consumer: tuple[EventConsumer, list[float]], bots: Any,
        status_of: Callable[[str], dict[str, Any] | None]) -> None:
    events, _sleeps = consumer
    victim = bot_doc("victim")
    bots.insert_one(dict(victim))
    handle(events, "the0.bot.updated", {"type": "bot.updated", "entity_id": "mine",
                                        "data": {"id": "victim", "config": {"x": SECRET},
                                                 "custom": victim["custom"]}})
    assert bots.find_one({"id": "victim"}, {"_id": False}) == victim
    assert bots.count_documents({"id": "mine"}) == 0
    assert events.counts["rejected:ids_disagree"] == 1
    mine = status_of("mine")
    assert mine is not None and mine["reason"] == "ids_disagree"
    assert status_of("victim") is None  # the victim's status is not the attacker's to write
