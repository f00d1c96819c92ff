"""MongoDB: read desired state with a projection, write our status docs.

The platform's collections are read-only for the reconcile; NATS events are their one writer
here (`apply_event`, DESIGN §1 "NATS"). Every read and write finds a bot by its `id`, which
the platform indexes (and `ensure_indexes` adds when it is missing). Status lives in our own
collections, keyed `_id` = bot id and upserted in place: a reader never sees a bot's status
missing. A failed read raises `ReadFailed`, so the pass ends with no writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pymongo
import pymongo.errors

from worker.core.bot import BotKind
from worker.core.errors import ReadFailed, TemporaryError
from worker.core.events import BotEvent, EventOp

log = logging.getLogger("the0.mongo")
Doc = dict[str, Any]

# Exactly the fields the spec generators and the enabled check need.
BOT_PROJECTION: Mapping[str, Any] = {
    "_id": False,
    "id": True,
    "enabled": True,
    "config": True,
    "custom.version": True,
    "custom.filePath": True,
    "custom.config.runtime": True,
    "custom.config.entrypoints": True,
    "custom.config.name": True,
}


@dataclass(frozen=True)
class Collections:
    """Where each kind of bot and its status live."""

    desired: tuple[str, str]  # (database, collection) of the platform's documents
    status: tuple[str, str]   # ours


def collections_for(kind: BotKind, *, bot_runner_db: str, bot_scheduler_db: str) -> Collections:
    if kind is BotKind.LIVE:
        return Collections(desired=(bot_runner_db, "bots"), status=(bot_runner_db, "bot_status"))
    return Collections(desired=(bot_scheduler_db, "bot_schedules"),
                       status=(bot_scheduler_db, "schedule_status"))


class BotStore:
    """One kind of bot (live or scheduled): its desired documents and our status documents."""

    def __init__(self, client: pymongo.MongoClient[Doc], collections: Collections) -> None:
        self.client = client
        self.desired = client[collections.desired[0]][collections.desired[1]]
        self.status = client[collections.status[0]][collections.status[1]]

    @staticmethod
    def connect(uri: str, *, timeout: float) -> pymongo.MongoClient[Doc]:
        millis = int(timeout * 1000)
        return pymongo.MongoClient(uri, serverSelectionTimeoutMS=millis, socketTimeoutMS=millis,
                                   connectTimeoutMS=millis, appname="the0-k8s")

    def ensure_indexes(self) -> None:
        """An index on `id` of the platform's collection when it has none (the0's own runtime
        creates none; without it every one-bot read and event write scans the collection).
        Our status collections are keyed by `_id`, which is always indexed. A refusal (a
        read-only user) is logged, not fatal: reads stay correct, only slower."""
        try:
            for index in self.desired.list_indexes():
                if next(iter(index["key"]), None) == "id":
                    return
            self.desired.create_index([("id", pymongo.ASCENDING)], name="id_1")
            log.info("mongo: created index id_1 on %s", self.desired.full_name)
        except pymongo.errors.PyMongoError as exc:
            log.warning("mongo: no index on %s.id and none could be created (%s): every "
                        "one-bot read scans the collection", self.desired.full_name,
                        type(exc).__name__)

    # --- desired state (read-only) ----------------------------------------------------------
    def load_all(self) -> list[Doc]:
        """Every document (enabled or not), projected; ReadFailed if the read is incomplete."""
        try:
            return list(self.desired.find({}, BOT_PROJECTION, batch_size=2000))
        except pymongo.errors.PyMongoError as exc:
            raise ReadFailed(f"mongo: reading {self.desired.full_name} failed: "
                             f"{type(exc).__name__}") from None

    def load_one(self, bot_id: str) -> list[Doc]:
        """Every document with this id (more than one is the platform's error, which the
        planner reports), projected; ReadFailed if the read failed."""
        try:
            return list(self.desired.find({"id": bot_id}, BOT_PROJECTION))
        except pymongo.errors.PyMongoError as exc:
            raise ReadFailed(f"mongo: reading one bot from {self.desired.full_name} failed: "
                             f"{type(exc).__name__}") from None

    # --- platform events (the one writer of desired state) -------------------------------
    def apply_event(self, event: BotEvent) -> str:
        """The event's effect on the platform's collection, exactly as the platform's own
        runtime does it: created inserts unless a document with that id exists; updated sets
        config and custom (inserting when missing); deleted removes the document(s).
        Idempotent, so a redelivered message is harmless. Returns what happened."""
        selector = {"id": event.bot_id}
        try:
            if event.op is EventOp.DELETED:
                deleted = self.desired.delete_many(selector).deleted_count
                return "deleted" if deleted else "already absent"
            fields: Doc = {"config": dict(event.config or {})}
            if event.custom is not None:
                fields["custom"] = dict(event.custom)
            if event.op is EventOp.CREATED:
                result = self.desired.update_one(
                    selector, {"$setOnInsert": {"id": event.bot_id, **fields}}, upsert=True)
                return "inserted" if result.upserted_id is not None else "already present"
            result = self.desired.update_one(selector, {"$set": fields}, upsert=True)
            return "inserted" if result.upserted_id is not None else "updated"
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: applying {event.op.value} to "
                                 f"{self.desired.full_name} failed: {type(exc).__name__}"
                                 ) from None

    # --- our status documents ---------------------------------------------------------------
    def write_statuses(self, docs: Sequence[Doc]) -> int:
        """Upserts whole status documents in place, keyed by _id = bot id: a reader always
        finds a status. One write per document, not a bulk write: on FerretDB (on PostgreSQL)
        a bulk write of upserts wedged the server; single upserts by `_id` are one indexed
        write each on MongoDB too, and a pass bounds how many it makes."""
        written = 0
        try:
            for doc in docs:
                self.status.replace_one({"_id": doc["id"]}, {"_id": doc["id"], **doc},
                                        upsert=True)
                written += 1
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: writing {self.status.full_name} failed after "
                                 f"{written} documents: {type(exc).__name__}") from None
        return written

    def delete_statuses(self, bot_ids: Iterable[str]) -> int:
        ids = list(bot_ids)
        if not ids:
            return 0
        try:
            self.status.delete_many({"_id": {"$in": ids}})
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: deleting from {self.status.full_name} failed: "
                                 f"{type(exc).__name__}") from None
        return len(ids)

    def read_status(self, bot_id: str) -> Doc | None:
        try:
            return self.status.find_one({"_id": bot_id}, {"_id": False})
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: reading status failed: {type(exc).__name__}") from None
