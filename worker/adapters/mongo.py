"""MongoDB (FerretDB in tests): read desired state with a projection, write our status docs.

The platform's collections are read-only for the reconcile (NATS events are the one writer,
see worker.adapters.events). Status lives in our own collections keyed by `id`. A failed
read raises `ReadFailed`, so the pass ends with no writes. FerretDB v1 has no transactions,
change streams or projections on findAndModify; nothing here needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pymongo
import pymongo.errors

from worker.core.bot import BotKind
from worker.core.errors import ReadFailed, TemporaryError

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

    # --- desired state (read-only) ----------------------------------------------------------
    def load_all(self) -> list[Doc]:
        """Every document (enabled or not), projected; ReadFailed if the read is incomplete."""
        try:
            return list(self.desired.find({}, BOT_PROJECTION, batch_size=2000))
        except pymongo.errors.PyMongoError as exc:
            raise ReadFailed(f"mongo: reading {self.desired.full_name} failed: "
                             f"{type(exc).__name__}") from None

    # --- our status documents ---------------------------------------------------------------
    def write_statuses(self, docs: Iterable[Doc]) -> int:
        """Upserts each status by _id = bot id. One command per document, on purpose: FerretDB
        v1 only pushes `_id` equality down to SQLite, and a multi-statement update command
        (bulk_write) degrades to minutes for a few hundred documents, while single updates
        take ~2 ms. $set, not replace: a task's last_error survives the reconcile's update."""
        written = 0
        try:
            for doc in docs:
                self.status.update_one({"_id": doc["id"]}, {"$set": doc}, upsert=True)
                written += 1
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: writing {self.status.full_name} failed after "
                                 f"{written} documents: {type(exc).__name__}") from None
        return written

    def delete_statuses(self, bot_ids: Iterable[str]) -> int:
        deleted = 0
        try:
            for bot_id in bot_ids:
                self.status.delete_one({"_id": bot_id})
                deleted += 1
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: deleting from {self.status.full_name} failed: "
                                 f"{type(exc).__name__}") from None
        return deleted

    def read_status(self, bot_id: str) -> Doc | None:
        try:
            return self.status.find_one({"_id": bot_id}, {"_id": False})
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: reading status failed: {type(exc).__name__}") from None
