"""worker.core.events: NATS payloads → BotEvent or Rejected (no secrets in reasons)."""

from __future__ import annotations

import orjson
import pytest

from worker.core.bot import BotKind
from worker.core.events import BotEvent, EventOp, Rejected, parse_event, subjects

LIMIT = 64 * 1024
SECRET = "sk-live-DO-NOT-LEAK"


def parse(subject: str, body: object) -> BotEvent | Rejected:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    return parse_event(subject, payload, max_bytes=LIMIT)


def test_subjects_are_the_platforms_six() -> None:
    assert sorted(subjects()) == sorted([
        "the0.bot.created", "the0.bot.updated", "the0.bot.deleted",
        "the0.bot-schedule.created", "the0.bot-schedule.updated", "the0.bot-schedule.deleted"])


@pytest.mark.parametrize("op", list(EventOp))
def test_plain_payload_for_live_bots(op: EventOp) -> None:
    event = parse(f"the0.bot.{op.value}",
                  {"id": "b1", "config": {"key": SECRET}, "custom": {"version": "1"}})
    assert isinstance(event, BotEvent)
    assert (event.kind, event.op, event.bot_id) == (BotKind.LIVE, op, "b1")
    if op is EventOp.DELETED:
        assert event.config is None and event.custom is None
    else:
        assert event.config == {"key": SECRET} and event.custom == {"version": "1"}
    assert SECRET not in repr(event)


def test_legacy_wrapper_is_unwrapped() -> None:
    event = parse("the0.bot.updated", {"type": "bot.updated", "entity_id": "b2",
                                       "data": {"id": "b2", "config": {"a": 1}},
                                       "timestamp": "2026-01-01T00:00:00Z"})
    assert isinstance(event, BotEvent)
    assert (event.bot_id, event.config, event.custom) == ("b2", {"a": 1}, None)


def test_legacy_wrapper_takes_the_id_from_entity_id() -> None:
    event = parse("the0.bot.deleted", {"type": "bot.deleted", "entity_id": "b3", "data": None})
    assert isinstance(event, BotEvent) and event.bot_id == "b3"
    event = parse("the0.bot.created", {"entity_id": "b4", "data": {"config": {}}})
    assert isinstance(event, BotEvent) and event.bot_id == "b4"


def test_legacy_wrapper_with_bad_data_is_rejected() -> None:
    assert parse("the0.bot.created", {"entity_id": "x", "data": [1]}) == Rejected(
        "bad_wrapper", "legacy `data` must be an object, not list")


def test_schedules_need_a_schedule() -> None:
    ok = parse("the0.bot-schedule.created", {"id": "s1", "config": {"schedule": "0 * * * *"}})
    assert isinstance(ok, BotEvent) and ok.kind is BotKind.SCHEDULED
    for config in ({}, {"schedule": ""}, {"schedule": 5}, {"schedule": "  "}):
        rejected = parse("the0.bot-schedule.updated", {"id": "s1", "config": config})
        assert isinstance(rejected, Rejected) and rejected.reason == "no_schedule"
        assert rejected.bot_id == "s1"
    # A delete needs no schedule.
    assert isinstance(parse("the0.bot-schedule.deleted", {"id": "s1"}), BotEvent)


@pytest.mark.parametrize(("subject", "payload", "reason"), [
    ("the0.bot.created", b"not json {", "not_json"),
    ("the0.bot.created", b"\xff\xfe", "not_json"),
    ("the0.bot.created", b"[1,2]", "not_object"),
    ("the0.bot.created", b"null", "not_object"),
    ("the0.bot.created", b"{}", "no_id"),
    ("the0.bot.created", b'{"id": 7, "config": {}}', "no_id"),
    ("the0.bot.created", b'{"id": "  ", "config": {}}', "no_id"),
    ("the0.bot.created", b'{"id": "b", "config": "x"}', "bad_config"),
    ("the0.bot.created", b'{"id": "b"}', "bad_config"),
    ("the0.bot.updated", b'{"id": "b", "config": {}, "custom": 3}', "bad_custom"),
    ("the0.bot.renamed", b'{"id": "b"}', "unknown_subject"),
    ("other.subject", b'{"id": "b"}', "unknown_subject"),
])
def test_bad_messages_are_rejected_with_a_reason(subject: str, payload: bytes,
                                                 reason: str) -> None:
    rejected = parse_event(subject, payload, max_bytes=LIMIT)
    assert isinstance(rejected, Rejected) and rejected.reason == reason


def test_too_large_is_rejected_before_parsing() -> None:
    payload = orjson.dumps({"id": "b", "config": {"blob": SECRET * 10_000}})
    rejected = parse_event("the0.bot.created", payload, max_bytes=LIMIT)
    assert isinstance(rejected, Rejected) and rejected.reason == "too_large"


def test_long_id_is_rejected() -> None:
    rejected = parse("the0.bot.deleted", {"id": "x" * 300})
    assert isinstance(rejected, Rejected) and rejected.reason == "bad_id"


@pytest.mark.parametrize("body", [
    {"id": "b", "config": SECRET},
    {"id": "b", "config": {"k": SECRET}, "custom": SECRET},
    {"id": 1, "config": {"k": SECRET}},
    {"entity_id": "b", "data": SECRET},
])
def test_reasons_never_quote_the_payload(body: object) -> None:
    rejected = parse("the0.bot.created", body)
    assert isinstance(rejected, Rejected)
    assert SECRET not in rejected.detail and SECRET not in repr(rejected)


def test_one_wildcard_subscription_per_kind_keeps_a_bots_events_in_one_queue() -> None:
    from worker.core.events import subscriptions

    assert subscriptions() == ["the0.bot.*", "the0.bot-schedule.*"]
    # Every subject the platform uses is matched by exactly one of them.
    for subject in subjects():
        matches = [s for s in subscriptions() if subject.startswith(s[:-1])
                   and "." not in subject[len(s) - 1:]]
        assert len(matches) == 1, subject
