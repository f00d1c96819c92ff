"""BotStore.apply_event / load_one on real FerretDB: the platform's effects, with and without
the id → _id hint the passes keep (a wrong or stale hint must never change the outcome)."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from worker.adapters.mongo import BotStore, collections_for
from worker.core.bot import BotKind
from worker.core.events import BotEvent, EventOp


@pytest.fixture
def store(mongo: Any, db_names: dict[str, str]) -> BotStore:
    return BotStore(mongo, collections_for(BotKind.LIVE, bot_runner_db=db_names["bot_runner"],
                                           bot_scheduler_db=db_names["bot_scheduler"]))


def event(op: EventOp, bot_id: str, **config: Any) -> BotEvent:
    return BotEvent(kind=BotKind.LIVE, op=op, bot_id=bot_id,
                    config=None if op is EventOp.DELETED else config,
                    custom=None if op is EventOp.DELETED else {"version": "1"})


def docs(store: BotStore, bot_id: str) -> list[dict[str, Any]]:
    return list(store.desired.find({"id": bot_id}, {"_id": False}))


@pytest.mark.parametrize("hinted", [False, True])
def test_created_updated_deleted_with_and_without_the_hint(store: BotStore,
                                                           hinted: bool) -> None:
    outcome, oid = store.apply_event(event(EventOp.CREATED, "a", v=1))
    assert outcome == "inserted" and oid is not None
    hint = oid if hinted else None
    assert store.apply_event(event(EventOp.CREATED, "a", v=2), object_id=hint)[0] == \
        "already present"
    assert docs(store, "a") == [{"id": "a", "config": {"v": 1}, "custom": {"version": "1"}}]
    assert store.apply_event(event(EventOp.UPDATED, "a", v=3), object_id=hint)[0] == "updated"
    assert docs(store, "a")[0]["config"] == {"v": 3}
    assert store.load_one("a", object_id=hint) == docs(store, "a")
    assert store.apply_event(event(EventOp.DELETED, "a"), object_id=hint) == ("deleted", None)
    assert docs(store, "a") == []
    assert store.apply_event(event(EventOp.DELETED, "a"), object_id=hint) == \
        ("already absent", None)
    assert store.load_one("a", object_id=hint) == []


def test_a_stale_or_foreign_hint_falls_back_to_the_id(store: BotStore) -> None:
    _, a_oid = store.apply_event(event(EventOp.CREATED, "a", v=1))
    _, b_oid = store.apply_event(event(EventOp.CREATED, "b", v=1))
    assert a_oid and b_oid
    # A hint naming ANOTHER bot's document: never touches it.
    assert store.load_one("a", object_id=b_oid)[0]["id"] == "a"
    assert store.apply_event(event(EventOp.CREATED, "a", v=9), object_id=b_oid)[0] == \
        "already present"
    for op in (EventOp.UPDATED, EventOp.DELETED):
        store.apply_event(event(op, "a", v=7), object_id=b_oid)
        assert docs(store, "b")[0]["config"] == {"v": 1}  # b untouched
    # A hint to a document that is gone (re-created out of band with a new _id).
    store.desired.delete_many({"id": "a"})
    store.desired.insert_one({"id": "a", "config": {"v": 5}})
    gone = str(ObjectId())
    assert store.load_one("a", object_id=gone)[0]["config"] == {"v": 5}
    outcome, _ = store.apply_event(event(EventOp.UPDATED, "a", v=6), object_id=gone)
    assert outcome == "updated" and docs(store, "a")[0]["config"] == {"v": 6}
    assert store.apply_event(event(EventOp.DELETED, "a"), object_id=gone)[0] == "deleted"
    assert docs(store, "a") == [] and len(docs(store, "b")) == 1
    # updated for an unknown id inserts it (the platform's upsert).
    outcome, c_oid = store.apply_event(event(EventOp.UPDATED, "c", v=1))
    assert outcome == "inserted" and c_oid


def test_the_full_read_reports_each_ids_object_id(store: BotStore) -> None:
    _, a_oid = store.apply_event(event(EventOp.CREATED, "a"))
    store.desired.insert_many([{"id": "dup"}, {"id": "dup"}])
    found: dict[str, str] = {}
    loaded = store.load_all(found)
    assert found == {"a": a_oid, "dup": ""}  # an id on two documents has no hint
    assert all("_id" not in doc for doc in loaded)


def test_created_for_an_id_the_index_knows_is_absent_inserts_without_a_scan(
        store: BotStore) -> None:
    outcome, oid = store.apply_event(event(EventOp.CREATED, "n", v=1), known_absent=True)
    assert outcome == "inserted" and oid
    assert docs(store, "n") == [{"id": "n", "config": {"v": 1}, "custom": {"version": "1"}}]
    # With its _id known, a repeated created is found present (no second document).
    assert store.apply_event(event(EventOp.CREATED, "n", v=2), object_id=oid)[0] == \
        "already present"
    assert len(docs(store, "n")) == 1
