"""MongoDB: read desired state with a projection, write our status docs.

The platform's collections are read-only for the reconcile; NATS events are their one writer
here (`apply_event`, DESIGN §1 "NATS"). Every read and write finds a bot by its `id`, which
the platform indexes (and `ensure_indexes` adds when it is missing). Status lives in our own
collections, keyed `_id` = bot id and upserted in place: a reader never sees a bot's status
missing. A failed read raises `ReadFailed`, so the pass ends with no writes.

An event's write that fails is classified (`refusal`): a document the database or the driver
refuses is that event's permanent failure (`DocumentRefused`), anything else — connection loss,
timeouts, a server without a primary — a `TemporaryError` worth retrying. The table of codes,
and which server says what, is in docs/architecture.md ("Platform events").
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bson.errors
import pymongo
import pymongo.errors

from worker.core.bot import BotKind
from worker.core.errors import ReadFailed, TemporaryError
from worker.core.events import PHASE_REFUSED, BotEvent, DocumentRefused, EventOp

log = logging.getLogger("the0.mongo")
Doc = dict[str, Any]
# Status documents written at once (see BotStore.write_statuses); well under pymongo's pool of
# 100 connections, which the worker's task threads share.
STATUS_WRITERS = 8

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


# Server answers that mean "this document cannot be stored, ever": the event's permanent
# failure. Codes from mongod's source (error_codes.yml and the checks that raise them); 2 is
# also what FerretDB v1.24 answers for what it cannot store (dotted or `$` keys at any depth,
# nested arrays, ±Infinity). Every other server error is temporary.
REFUSED_CODES: Mapping[int, str] = {
    2: "a key or value the server cannot store (BadValue)",
    15: "nested deeper than the server stores (Overflow)",  # mongod: 180 levels by default
    22: "invalid BSON (InvalidBSON)",
    52: "a $-prefixed field name (DollarPrefixedFieldName)",  # mongod before 5.0
    57: "a dotted field name (DottedFieldName)",  # mongod before 5.0
    121: "refused by the collection's validator (DocumentValidationFailure)",
    10334: "larger than 16 MiB (BSONObjectTooLarge)",
    17280: "an index key too long (KeyTooLong)",
    17419: "larger than 16 MiB once updated",
    17420: "larger than 16 MiB to upsert",
    7655103: "larger than 16 MiB to upsert",
}
# FerretDB (the test server, on PostgreSQL) answers 1 InternalError for everything PostgreSQL
# says, an outage included ("failed to connect"): only PostgreSQL's data-exception (22xxx) and
# program-limit (54xxx) classes are about the document — e.g. a NUL character in a string,
# which MongoDB stores, is "unsupported Unicode escape sequence (SQLSTATE 22P05)".
_FERRETDB_DOCUMENT_SQLSTATE = re.compile(r"\(SQLSTATE (?:22|54)[0-9A-Z]{3}\)")
# What the driver refuses to encode before sending: a key with NUL (InvalidDocument), over
# 16 MiB (DocumentTooLarge), an integer beyond 64 bits (OverflowError), a lone surrogate
# (UnicodeEncodeError), nesting beyond Python's recursion limit (RecursionError).
_DRIVER_REFUSALS = (bson.errors.BSONError, OverflowError, UnicodeEncodeError, RecursionError)


def refusal(exc: BaseException) -> DocumentRefused | None:
    """The refusal `exc` stands for, or None when it is not about the document (retry it)."""
    if isinstance(exc, _DRIVER_REFUSALS):
        return DocumentRefused(0, f"the driver cannot encode it ({type(exc).__name__})")
    if isinstance(exc, pymongo.errors.OperationFailure) and not isinstance(
            exc, pymongo.errors.WriteConcernError):
        code = exc.code or 0
        if code in REFUSED_CODES:
            return DocumentRefused(code, REFUSED_CODES[code])
        message = str((exc.details or {}).get("errmsg", ""))
        if code == 1 and _FERRETDB_DOCUMENT_SQLSTATE.search(message):
            return DocumentRefused(code, "a value the test server (FerretDB on PostgreSQL) "
                                         "cannot store")
    return None


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
        return list(self.iter_all())

    def iter_all(self) -> Iterator[Doc]:
        """Every document, projected, one batch in memory at a time: a pass parses them as
        they come instead of holding 10,000 at once (~23 MB) beside the parsed bots. A read
        that fails midway raises ReadFailed from the iteration: the consumer must not use
        what it took before (the pass builds nothing from a partial read)."""
        try:
            yield from self.desired.find({}, BOT_PROJECTION, batch_size=2000)
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
        Idempotent, so a redelivered message is harmless. Returns what happened.

        Raises DocumentRefused when the database (or the driver) refuses the document — never
        retried — and TemporaryError for anything else. A delete also removes the status an
        earlier refused event left for a bot that never existed (see record_refused_event)."""
        selector = {"id": event.bot_id}
        try:
            if event.op is EventOp.DELETED:
                deleted = self.desired.delete_many(selector).deleted_count
                self.status.delete_one({"_id": event.bot_id, "phase": PHASE_REFUSED})
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
        except (pymongo.errors.PyMongoError, *_DRIVER_REFUSALS) as exc:
            refused = refusal(exc)
            if refused is not None:
                raise refused from None
            raise TemporaryError(f"mongo: applying {event.op.value} to "
                                 f"{self.desired.full_name} failed: {type(exc).__name__}"
                                 ) from None

    def record_refused_event(self, bot_id: str, *, kind: BotKind, reason: str, message: str,
                             at: str) -> bool:
        """Says in the bot's status that one of its events was refused (`message`: our words,
        never the payload's). Returns whether the platform has a document for the bot.

        A known bot's status belongs to the pass, which rewrites it whole: its `last_error` is
        set here so it shows at once, and the caller keeps it for the pass to carry on. A bot
        with no document (its create was refused) gets a status of its own, phase Refused,
        which a later accepted event's pass replaces and a delete removes."""
        error = {"reason": reason, "message": message, "at": at}
        try:
            known = self.desired.find_one({"id": bot_id}, {"_id": True}) is not None
            if known:
                self.status.update_one({"_id": bot_id}, {"$set": {
                    "last_error": message, "last_event_error": error}})
            else:
                self.status.update_one({"_id": bot_id}, {"$set": {
                    "id": bot_id, "kind": kind.value, "phase": PHASE_REFUSED, "reason": reason,
                    "message": message, "last_error": message, "last_event_error": error,
                    "updated_at": at}}, upsert=True)
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: recording a refused event in "
                                 f"{self.status.full_name} failed: {type(exc).__name__}"
                                 ) from None
        return known

    # --- our status documents ---------------------------------------------------------------
    def write_statuses(self, docs: Sequence[Doc]) -> int:
        """Upserts whole status documents in place, keyed by _id = bot id: a reader always
        finds a status. Single-document upserts, the first alone and the rest STATUS_WRITERS
        at a time: each is one indexed write on MongoDB, and a loaded database answers each
        in 50-350 ms (measured on FerretDB during a 10,000-bot chaos run) while taking several
        at once. Not a bulk write: on FerretDB (on PostgreSQL) a bulk write of upserts wedged
        the server. All or TemporaryError: a database that does not answer fails the first
        write, and nothing more is tried (eight writes at once on a cold connection pool
        queue behind pymongo's two connection attempts at a time: 8.8 s instead of 3.4 on a
        paused FerretDB); after a later failure the writes not yet started are skipped. The
        caller rewrites the whole batch."""
        if not docs:
            return 0
        failed = threading.Event()

        def upsert(doc: Doc) -> None:
            if failed.is_set():
                return
            try:
                self.status.replace_one({"_id": doc["id"]}, {"_id": doc["id"], **doc},
                                        upsert=True)
            except BaseException:
                failed.set()
                raise

        def failure(errors: Sequence[BaseException]) -> BaseException:
            if not isinstance(errors[0], pymongo.errors.PyMongoError):
                return errors[0]
            return TemporaryError(f"mongo: writing {self.status.full_name} failed "
                                  f"({len(errors)} of {len(docs)} documents): "
                                  f"{type(errors[0]).__name__}")

        try:
            upsert(docs[0])
        except pymongo.errors.PyMongoError as exc:
            raise failure([exc]) from None
        if len(docs) > 1:
            with ThreadPoolExecutor(max_workers=min(STATUS_WRITERS, len(docs) - 1),
                                    thread_name_prefix="status-write") as pool:
                futures = [pool.submit(upsert, doc) for doc in docs[1:]]
            errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
            if errors:
                raise failure(errors) from None
        return len(docs)

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

    def read_statuses(self) -> list[Doc]:
        """Every status document (without `_id`): TemporaryError if the read is incomplete."""
        try:
            return list(self.status.find({}, {"_id": False}, batch_size=2000))
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: reading {self.status.full_name} failed: "
                                 f"{type(exc).__name__}") from None

    def read_status(self, bot_id: str) -> Doc | None:
        try:
            return self.status.find_one({"_id": bot_id}, {"_id": False})
        except pymongo.errors.PyMongoError as exc:
            raise TemporaryError(f"mongo: reading status failed: {type(exc).__name__}") from None
