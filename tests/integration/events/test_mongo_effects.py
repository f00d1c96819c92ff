"""BotStore on the real test database: the platform's event effects, reads by `id`, the `id`
index the controller adds when missing, status documents upserted in place, and the
classification of a failed event write — a document the server refuses (never retried) or an
outage (retried) — against the real server's answers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pymongo
import pymongo.monitoring
import pytest

from tests.support.bots import wait_for
from tools.stack.supervisor import Stack, StackEnv
from worker.adapters.mongo import STATUS_WRITERS, BotStore, collections_for
from worker.core.bot import BotKind
from worker.core.errors import TemporaryError
from worker.core.events import PHASE_REFUSED, BotEvent, DocumentRefused, EventOp


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


# --------------------------------------------------------------------------- refusals
def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


# Documents the test server (FerretDB v1.24.2 on PostgreSQL 15) or the driver refuses, and
# the code our classification must report (0: the driver, before sending). MongoDB 7 stores
# the first four; nothing here may be retried.
REFUSED = [
    pytest.param({"a.b": 1}, 2, id="dotted key (FerretDB)"),
    pytest.param({"x": {"$schema": "s"}}, 2, id="nested $schema (FerretDB)"),
    pytest.param({"m": [[1, 2]]}, 2, id="nested array (FerretDB)"),
    pytest.param({"s": "a\x00b"}, 1, id="NUL in a string (FerretDB: SQLSTATE 22P05)"),
    pytest.param({"f": float("inf")}, 2, id="infinity (FerretDB)"),
    pytest.param({"a\x00b": 1}, 0, id="NUL in a key (driver)"),
    pytest.param({"n": 2**64}, 0, id="integer beyond 64 bits (driver)"),
    pytest.param({"s": "\ud800"}, 0, id="lone surrogate (driver)"),
    pytest.param({"k": nested(5000)}, 0, id="nesting the driver cannot encode"),
]


@pytest.mark.parametrize(("config", "code"), REFUSED)
@pytest.mark.parametrize("op", [EventOp.CREATED, EventOp.UPDATED])
def test_a_document_the_server_refuses_is_a_refusal_and_writes_nothing(
        store: BotStore, op: EventOp, config: dict[str, Any], code: int) -> None:
    poison = BotEvent(kind=BotKind.LIVE, op=op, bot_id="p", config=config, custom=None)
    with pytest.raises(DocumentRefused) as refused:
        store.apply_event(poison)
    assert refused.value.code == code
    assert docs(store, "p") == []
    # The next event is applied as usual.
    assert store.apply_event(event(op, "p", v=1)) == "inserted"


@pytest.mark.parametrize("config", [{"x": {"$schema": 1}}, {"m": [[1, 2]]}, {"s": "a\x00b"},
                                    {"n": 2**64}])
def test_an_update_refused_leaves_the_document_as_it_was(store: BotStore,
                                                         config: dict[str, Any]) -> None:
    # (Not a dotted key: FerretDB refuses one on insert, but an update of an existing
    # document with one answers "matched 1, modified 0" and writes nothing — a quirk of the
    # test server, see docs/architecture.md; MongoDB stores it.)
    assert store.apply_event(event(EventOp.CREATED, "u", v=1)) == "inserted"
    before = docs(store, "u")
    with pytest.raises(DocumentRefused):
        store.apply_event(BotEvent(kind=BotKind.LIVE, op=EventOp.UPDATED, bot_id="u",
                                   config=config, custom={"version": "2"}))
    assert docs(store, "u") == before


class UpsertsInFlight(pymongo.monitoring.CommandListener):
    """Counts the update commands sent and not yet answered, and the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update":
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        self.ended(event.command_name)

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        self.ended(event.command_name)

    def ended(self, command: str) -> None:
        if command == "update":
            with self.lock:
                self.now -= 1


def test_status_documents_are_written_several_at_once(stack_env: StackEnv,
                                                      db_names: dict[str, str]) -> None:
    # A loaded database answers each write slowly but takes several at once: the writes of a
    # batch overlap, never more than STATUS_WRITERS of them.
    listener = UpsertsInFlight()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        stack_env.mongo_uri, serverSelectionTimeoutMS=5000, event_listeners=[listener])
    try:
        store = BotStore(client, collections_for(BotKind.LIVE,
                                                 bot_runner_db=db_names["bot_runner"],
                                                 bot_scheduler_db=db_names["bot_scheduler"]))
        batch = [{"id": f"b{n:02}", "phase": "Pending", "n": n} for n in range(40)]
        assert store.write_statuses(batch) == 40
        assert sorted(store.status.find({}, {"_id": True, "n": True}),
                      key=lambda d: d["n"]) == [{"_id": d["id"], "n": d["n"]} for d in batch]
        assert 1 < listener.peak <= STATUS_WRITERS
    finally:
        client.close()


def test_an_outage_is_temporary_not_a_refusal(stack: Stack, stack_env: StackEnv,
                                              db_names: dict[str, str]) -> None:
    # A client of its own with short timeouts, as the controller's are.
    client = BotStore.connect(stack_env.mongo_uri, timeout=1.0)
    try:
        store = BotStore(client, collections_for(BotKind.LIVE,
                                                 bot_runner_db=db_names["bot_runner"],
                                                 bot_scheduler_db=db_names["bot_scheduler"]))
        with stack.stopped("ferretdb"):
            with pytest.raises(TemporaryError) as failed:
                store.apply_event(event(EventOp.UPDATED, "o", v=1))
            assert not isinstance(failed.value, DocumentRefused)
        with stack.paused("ferretdb"):  # nothing answers: every write waits for its timeouts
            # 40 status writes fail as one would (3.4 s here: a 1 s connect timeout, then the
            # retry's): the first is tried alone and nothing follows its failure. Eight at
            # once on the cold pool queued behind pymongo's two connection attempts at a time
            # and took 8.8 s; all 40, 12 s.
            started = time.monotonic()
            with pytest.raises(TemporaryError, match="1 of 40 documents"):
                store.write_statuses([{"id": f"s{n}", "phase": "Pending"} for n in range(40)])
            assert time.monotonic() - started < 6.0
        with stack.stopped("postgres"):  # FerretDB answers, with code 1: still an outage
            with pytest.raises(TemporaryError) as failed:
                store.apply_event(event(EventOp.UPDATED, "o", v=1))
            assert not isinstance(failed.value, DocumentRefused)
        # Back: the same write goes through once the servers answer again (as the consumer
        # retries it; FerretDB's first query after PostgreSQL's restart may still fail).
        assert wait_for(lambda: applied(store, event(EventOp.UPDATED, "o", v=1)),
                        "the write to go through again", timeout=30) == "inserted"
    finally:
        client.close()


def applied(store: BotStore, change: BotEvent) -> str | None:
    try:
        return store.apply_event(change)
    except DocumentRefused:
        raise
    except TemporaryError:
        return None


def test_a_refused_event_is_recorded_in_the_bots_status(store: BotStore) -> None:
    # A bot the platform has: its last_error is set at once, the rest of the pass's status
    # is left alone (no status yet: none is made up).
    store.apply_event(event(EventOp.CREATED, "known", v=1))
    store.write_statuses([{"id": "known", "phase": "Running", "last_error": ""}])
    assert store.record_refused_event("known", kind=BotKind.LIVE, reason="refused",
                                      message="event refused: x", at="T1") is True
    status = store.read_status("known")
    assert status is not None
    assert (status["phase"], status["last_error"]) == ("Running", "event refused: x")
    assert status["last_event_error"] == {"reason": "refused", "message": "event refused: x",
                                          "at": "T1"}
    store.apply_event(event(EventOp.CREATED, "no-status-yet", v=1))
    assert store.record_refused_event("no-status-yet", kind=BotKind.LIVE, reason="too_deep",
                                      message="m", at="T1") is True
    assert store.read_status("no-status-yet") is None
    # A bot that only exists as a refused create: a status of its own, phase Refused ...
    assert store.record_refused_event("ghost", kind=BotKind.LIVE, reason="too_deep",
                                      message="event refused: deep", at="T2") is False
    assert store.read_status("ghost") == {
        "id": "ghost", "kind": "live", "phase": PHASE_REFUSED, "reason": "too_deep",
        "message": "event refused: deep", "last_error": "event refused: deep",
        "last_event_error": {"reason": "too_deep", "message": "event refused: deep",
                             "at": "T2"}, "updated_at": "T2"}
    # ... which its delete removes; a pass-written status is never removed by a delete.
    store.apply_event(event(EventOp.DELETED, "ghost"))
    assert store.read_status("ghost") is None
    store.apply_event(event(EventOp.DELETED, "known"))
    assert store.read_status("known") is not None
