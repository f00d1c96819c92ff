"""worker.core.events: NATS payloads → BotEvent or Rejected (no secrets in reasons)."""

from __future__ import annotations

import json
import pickle
import random

import orjson
import pytest

from worker.core.bot import BotKind
from worker.core.events import (
    MAX_DEPTH,
    AppliedSequences,
    BotEvent,
    DocumentRefused,
    EventOp,
    Rejected,
    nesting_depth,
    parse_event,
    scan_id,
    subjects,
)

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
        "bad_wrapper", "legacy `data` must be an object, not list", "x", BotKind.LIVE)


@pytest.mark.parametrize("op", list(EventOp))
def test_legacy_wrapper_whose_ids_disagree_is_refused_for_its_entity(op: EventOp) -> None:
    # Applied to data.id, an event about one bot would change another bot's document.
    rejected = parse(f"the0.bot.{op.value}", {"type": f"bot.{op.value}", "entity_id": "mine",
                                              "data": {"id": "victim", "config": {"k": SECRET}}})
    assert rejected == Rejected("ids_disagree", "legacy `entity_id` and `data.id` name "
                                                "different bots", "mine", BotKind.LIVE)
    # Not the same string is not the same bot, whatever its type.
    rejected = parse("the0.bot.deleted", {"entity_id": "7", "data": {"id": 7}})
    assert isinstance(rejected, Rejected) and rejected.reason == "ids_disagree"
    # When they agree, or only one is given, the event stands.
    for body in ({"entity_id": "b", "data": {"id": "b", "config": {}}},
                 {"entity_id": "b", "data": {"config": {}}},
                 {"data": {"id": "b", "config": {}}}):
        event = parse("the0.bot.updated", body)
        assert isinstance(event, BotEvent) and event.bot_id == "b", body


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


def test_too_large_is_rejected_before_parsing_and_names_its_bot() -> None:
    payload = orjson.dumps({"id": "b", "config": {"blob": SECRET * 10_000}})
    rejected = parse_event("the0.bot.created", payload, max_bytes=LIMIT)
    assert isinstance(rejected, Rejected) and rejected.reason == "too_large"
    assert (rejected.bot_id, rejected.kind) == ("b", BotKind.LIVE)
    assert SECRET not in rejected.detail
    # At the limit it is read.
    exact = orjson.dumps({"id": "b", "config": {"blob": "x" * 10}})
    event = parse_event("the0.bot.created", exact, max_bytes=len(exact))
    assert isinstance(event, BotEvent)


def nested(levels: int, *, leaf: object = 1, array: bool = False) -> object:
    value = leaf
    for _ in range(levels):
        value = [value] if array else {"a": value}
    return value


@pytest.mark.parametrize("array", [False, True])
def test_depth_is_that_of_the_stored_document_and_the_limit_is_inclusive(array: bool) -> None:
    # {"id", "config": <99 levels>} is a document of 100 levels: accepted; one more is not.
    ok = parse("the0.bot.updated", {"id": "d", "config": {"k": nested(98, array=array)}})
    assert isinstance(ok, BotEvent)
    deep = parse("the0.bot.updated", {"id": "d", "config": {"k": nested(99, array=array)}})
    assert deep == Rejected("too_deep", f"the document would be nested more than {MAX_DEPTH} "
                                        "levels deep (EVENT_MAX_DEPTH)", "d", BotKind.LIVE)
    # custom counts as much as config; the limit is a parameter.
    deep_custom = parse("the0.bot.created", {"id": "d", "config": {},
                                             "custom": nested(MAX_DEPTH)})
    assert isinstance(deep_custom, Rejected) and deep_custom.reason == "too_deep"
    payload = orjson.dumps({"id": "d", "config": nested(3)})
    assert isinstance(parse_event("the0.bot.created", payload, max_bytes=LIMIT, max_depth=4),
                      BotEvent)
    refused = parse_event("the0.bot.created", payload, max_bytes=LIMIT, max_depth=3)
    assert isinstance(refused, Rejected) and refused.reason == "too_deep"


def test_the_issues_749_byte_payload_is_refused_before_any_write() -> None:
    # 120 levels of arrays: what MongoDB refuses and the old consumer retried for a minute.
    payload = b'{"id":"poison","config":{"k":' + b"[" * 120 + b"]" * 120 + b"}}"
    rejected = parse_event("the0.bot.updated", payload, max_bytes=LIMIT)
    assert isinstance(rejected, Rejected) and rejected.reason == "too_deep"
    assert rejected.bot_id == "poison"


def test_a_payload_too_deep_for_the_parser_is_refused_with_its_bot_named() -> None:
    # Python's parser gives up near 1,000 levels (RecursionError): still that bot's refusal.
    payload = b'{"id":"abyss","config":{"k":' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    rejected = parse_event("the0.bot-schedule.created", payload, max_bytes=len(payload))
    assert isinstance(rejected, Rejected) and rejected.reason == "too_deep"
    assert (rejected.bot_id, rejected.kind) == ("abyss", BotKind.SCHEDULED)
    # Deletes are parsed too: a delete that cannot be read is refused, not crashed on.
    payload = b'{"id":"abyss","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    rejected = parse_event("the0.bot.deleted", payload, max_bytes=len(payload))
    assert isinstance(rejected, Rejected) and rejected.reason == "too_deep"


def test_nesting_depth_counts_levels_without_recursion() -> None:
    assert nesting_depth([1, "x", None], limit=10) == 0
    assert nesting_depth([{}], limit=10) == 1
    assert nesting_depth([{"a": [1, {"b": {}}]}, [[]]], limit=10) == 4
    assert nesting_depth([nested(5000)], limit=10) == 11  # stops one past the limit


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(constant: bytes) -> None:
    # Python's parser accepts them; FerretDB drops the connection on NaN (an "outage").
    payload = b'{"id":"n","config":{"x":' + constant + b"}}"
    rejected = parse_event("the0.bot.created", payload, max_bytes=LIMIT)
    assert isinstance(rejected, Rejected) and rejected.reason == "not_json"
    assert rejected.bot_id == "n"  # that bot's event failed: its status says so


@pytest.mark.parametrize(("payload", "expected"), [
    (b'{"id":"a","config":{}}', "a"),
    (b'{"config":{"id":"victim"},"id":"me"}', "me"),   # nested ids never count
    (b'{"config":{"id":"victim"}}', ""),
    (b'{"config":{"a":1,"id":"victim"}}', ""),
    (b'{"data":{"a":1,"entity_id":"victim"}}', ""),
    (b'{"k":[{"id":"victim"}],"x":1}', ""),
    (b'[{"id":"x"}]', ""),                               # not an object
    (b'{"type":"bot.updated","entity_id":"e1","data":{"id":"zz"}}', "e1"),
    (b'{"id":5,"entity_id":"e"}', ""),                   # a top-level id makes it plain
    (b'{"id":"x","id":"y"}', "y"),                       # the last one, as json.loads reads
    (rb'{"id":"caf\u00e9"}', "caf\u00e9"),
    (b'{"id":"cut', ""),
    (b'{"id":"  "}', ""),
    (rb'{"a":"\"}[","id":"q"}', "q"),                   # brackets and quotes in strings
])
def test_scan_id_reads_only_the_top_level_id(payload: bytes, expected: str) -> None:
    assert scan_id(payload) == expected


def test_scan_id_looks_only_at_the_start_and_in_linear_time() -> None:
    late = b'{"config":{"k":"' + b"x" * 5000 + b'"},"id":"late"}'
    assert scan_id(late) == "" and scan_id(late, window=len(late)) == "late"
    # An unterminated string of escaped quotes is scanned once, not once per quote.
    assert scan_id(b'{"id":"' + rb'\"' * 200_000, window=400_000) == ""


def test_document_refused_says_what_in_our_words_and_pickles() -> None:
    refused = DocumentRefused(15, "nested deeper than the server stores (Overflow)")
    assert str(refused) == ("the database refused the document: nested deeper than the server "
                            "stores (Overflow) (code 15)")
    again = pickle.loads(pickle.dumps(refused))
    assert (type(again), again.code, again.what) == (DocumentRefused, 15, refused.what)


def test_long_id_is_rejected() -> None:
    rejected = parse("the0.bot.deleted", {"id": "x" * 300})
    assert isinstance(rejected, Rejected) and rejected.reason == "bad_id"


@pytest.mark.parametrize("body", [
    {"id": "b", "config": SECRET},
    {"id": "b", "config": {"k": SECRET}, "custom": SECRET},
    {"id": 1, "config": {"k": SECRET}},
    {"entity_id": "b", "data": SECRET},
    {"entity_id": "b", "data": {"id": "c", "config": {"k": SECRET}}},
    {"id": "b", "config": {"k": nested(200, leaf=SECRET)}},
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


# --------------------------------------------------------------------------- redelivered copies
def test_a_copy_of_an_older_message_is_not_new_once_a_later_one_was_applied() -> None:
    applied = AppliedSequences()
    assert applied.is_new("live", "a", 5)
    applied.record("live", "a", 5)
    applied.record("live", "a", 9)  # the bot's `deleted`, after its `created` (5)
    assert not applied.is_new("live", "a", 5), "a redelivered `created` would bring it back"
    assert not applied.is_new("live", "a", 9), "the same message delivered twice"
    assert applied.is_new("live", "a", 10)
    # Per bot and per kind: another bot's later sequence says nothing about this one.
    assert applied.is_new("live", "b", 3)
    assert applied.is_new("scheduled", "a", 6)


def test_the_record_is_bounded_and_forgets_the_least_recently_applied_bot() -> None:
    applied = AppliedSequences(limit=2)
    applied.record("live", "a", 1)
    applied.record("live", "b", 2)
    applied.record("live", "a", 3)  # a is now the most recent
    applied.record("live", "c", 4)  # b goes
    assert not applied.is_new("live", "a", 3)
    assert not applied.is_new("live", "c", 4)
    assert applied.is_new("live", "b", 2), "forgotten: a copy would be applied again"


@pytest.mark.parametrize(("subject", "payload", "expected"), [
    ("x" * 100, b"{}", Rejected("unknown_subject", f"subject {'x' * 79 + '…'!r} is not ours")),
    ("the0.bot.created", b"{", Rejected("not_json", "payload of 1 bytes is not JSON", "",
                                        BotKind.LIVE)),
    ("the0.bot-schedule.created", b"[1]",
     Rejected("not_object", "payload is a JSON list, not an object", "", BotKind.SCHEDULED)),
    ("the0.bot.created", b'{"config": {}}',
     Rejected("no_id", "payload has no string `id`", "", BotKind.LIVE)),
    ("the0.bot.created", b'{"id": "b", "config": null}',
     Rejected("bad_config", "`config` must be an object, not null", "b", BotKind.LIVE)),
    ("the0.bot.created", b'{"id": "b", "config": [1]}',
     Rejected("bad_config", "`config` must be an object, not list", "b", BotKind.LIVE)),
    ("the0.bot.updated", b'{"id": "b", "config": {}, "custom": "s"}',
     Rejected("bad_custom", "`custom` must be an object, not str", "b", BotKind.LIVE)),
    ("the0.bot-schedule.created", b'{"id": "s", "config": {"schedule": 5}}',
     Rejected("no_schedule", "a scheduled bot needs a string config.schedule", "s",
              BotKind.SCHEDULED)),
    ("the0.bot.created", b'{"id": "b", "config": {"a": 1, "b": 2}}' + b" " * 30,
     Rejected("too_large", "payload of 69 bytes exceeds 64 (EVENT_MAX_BYTES)", "b",
              BotKind.LIVE)),
])
def test_each_rejection_in_full(subject: str, payload: bytes, expected: Rejected) -> None:
    assert parse_event(subject, payload, max_bytes=64) == expected


def test_an_id_of_exactly_the_limit_is_accepted_and_one_more_is_not() -> None:
    assert parse("the0.bot.deleted", {"id": "x" * 254}) == Rejected(
        "bad_id", "`id` is 254 characters long (limit 253)", "", BotKind.LIVE)
    event = parse("the0.bot.deleted", {"id": "x" * 253})
    assert isinstance(event, BotEvent) and event.bot_id == "x" * 253


def test_too_deep_for_the_parser_and_too_deep_to_store_say_so_in_full() -> None:
    unparseable = b'{"id":"b","config":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert parse_event("the0.bot.created", unparseable, max_bytes=10**6) == Rejected(
        "too_deep", "the payload is nested far more than 100 levels deep (EVENT_MAX_DEPTH)",
        "b", BotKind.LIVE)
    deep = orjson.dumps({"id": "b", "config": nested(5)})
    assert parse_event("the0.bot.created", deep, max_bytes=LIMIT, max_depth=3) == Rejected(
        "too_deep", "the document would be nested more than 3 levels deep (EVENT_MAX_DEPTH)",
        "b", BotKind.LIVE)


def _random_json(rng: random.Random, depth: int) -> object:
    choice = rng.randrange(9 if depth < 4 else 5)
    if choice == 0:
        return rng.choice(["id", "entity_id", "", "  ", 'a"}]{[', "é\\", "x" * 300])
    if choice == 1:
        return rng.choice([0, -1.5, True, None])
    if choice in (2, 3, 4):
        return rng.choice(["victim", "id", "b1"])
    if choice in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["id", "entity_id", "config", "data", "k"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def _top_level_id(body: object) -> str:
    """The oracle: what parse_event's json.loads reads, under scan_id's rules."""
    if not isinstance(body, dict):
        return ""
    value = body["id"] if "id" in body else body.get("entity_id", "")
    if not isinstance(value, str) or not value.strip() or len(value) > 253:
        return ""
    return value


@pytest.mark.parametrize("seed", range(5))
def test_scan_id_agrees_with_a_full_parse_on_random_documents(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        body: object = {rng.choice(["id", "entity_id", "config", "data"]): _random_json(rng, 1)
                        for _ in range(rng.randrange(6))}
        if rng.random() < 0.1:
            body = _random_json(rng, 0)
        separators = rng.choice([(",", ":"), (", ", ": "), (" ,", " : ")])
        payload = json.dumps(body, separators=separators,
                             ensure_ascii=rng.random() < 0.5).encode()
        assert scan_id(payload, window=len(payload)) == _top_level_id(json.loads(payload)), \
            payload
