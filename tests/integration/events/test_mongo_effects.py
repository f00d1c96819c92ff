"""BotStore on the real test database: the platform's event effects, reads by `id`, the `id`
index the controller adds when missing, and status documents upserted in place."""

from __future__ import annotations

import threading
from typing import Any

import pytest

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


def test_created_updated_deleted_as_the_platform_does(store: BotStore) -> None:
    assert store.apply_event(event(EventOp.CREATED, "a", v=1)) == "inserted"
    assert store.apply_event(event(EventOp.CREATED, "a", v=2)) == "already present"
    assert docs(store, "a") == [{"id": "a", "config": {"v": 1}, "custom": {"version": "1"}}]
    assert store.apply_event(event(EventOp.UPDATED, "a", v=3)) == "updated"
    assert docs(store, "a")[0]["config"] == {"v": 3}
    assert store.load_one("a") == docs(store, "a")
    assert store.apply_event(event(EventOp.DELETED, "a")) == "deleted"
    assert docs(store, "a") == []
    assert store.apply_event(event(EventOp.DELETED, "a")) == "already absent"
    assert store.load_one("a") == []
    # updated for an unknown id inserts it (the platform's upsert).
    assert store.apply_event(event(EventOp.UPDATED, "c", v=1)) == "inserted"
    assert docs(store, "c")[0]["config"] == {"v": 1}


def test_one_bots_read_sees_only_its_documents_and_every_duplicate(store: BotStore) -> None:
    store.desired.insert_many([{"id": "dup", "config": {"n": 1}},
                               {"id": "dup", "config": {"n": 2}},
                               {"id": "other", "config": {"n": 3}}])
    assert sorted(d["config"]["n"] for d in store.load_one("dup")) == [1, 2]
    assert all("_id" not in d for d in store.load_all())
    assert {d["id"] for d in store.load_all()} == {"dup", "other"}


def test_the_id_index_is_created_when_missing_and_left_alone_when_present(
        store: BotStore) -> None:
    def id_indexes() -> list[str]:
        return [ix["name"] for ix in store.desired.list_indexes()
                if next(iter(ix["key"])) == "id"]

    assert id_indexes() == []
    store.ensure_indexes()
    assert id_indexes() == ["id_1"]
    store.desired.drop_index("id_1")
    store.desired.create_index("id", name="platform_id")  # the operator's own, any name
    store.ensure_indexes()
    assert id_indexes() == ["platform_id"]


def test_statuses_are_upserted_in_place_and_never_missing(store: BotStore) -> None:
    store.write_statuses([{"id": "a", "phase": "Pending"}, {"id": "b", "phase": "Pending"}])
    assert store.read_status("a") == {"id": "a", "phase": "Pending"}
    # A reader polling while the status is rewritten many times never finds it missing.
    missing: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if store.read_status("a") is None:
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(30):
            store.write_statuses([{"id": "a", "phase": "Running", "restarts": n}])
    finally:
        stop.set()
        reader.join()
    assert missing == []
    assert store.read_status("a") == {"id": "a", "phase": "Running", "restarts": 29}
    assert store.status.count_documents({}) == 2
    assert store.delete_statuses(["a"]) == 1
    assert store.read_status("a") is None and store.read_status("b") is not None
