"""A per-process snapshot of one kind's desired documents, shared by the task threads.

Why: FerretDB (and MongoDB without an index on `id`) answers `find_one({"id": …})` by scanning
the collection — ~0.2 s per bot at 10,000 bots. A per-bot task instead asks for the bot "as of
no earlier than T" (T = when the pass that planned it started, or when its event arrived): the
snapshot is reused while it is at least that fresh, otherwise ONE full read is made and shared
by every thread waiting for it. A task therefore never acts on state older than the decision
that spawned it.

The pass itself may reuse the last full read (`reusable`) while the desired-state generation
is unchanged and the read is younger than DESIRED_FULL_READ_INTERVAL: the generation (a Redis
counter) is bumped by the NATS consumer after every write it makes, and the consumer is the
platform's only writer of these collections. FerretDB needs ~2 s to read 10,000 documents;
the interval bounds how late a write made around the consumer is seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from worker.core.bot import Bot, BotKind
from worker.core.planner import DesiredBot

if TYPE_CHECKING:
    from worker.runtime import Runtime
    from worker.settings import Settings

Doc = dict[str, Any]


class ParseMemo:
    """Re-uses the parsed Bot and its config hash while a document is byte-for-byte unchanged:
    a no-op pass over 10,000 bots then costs one orjson dump per bot instead of a full spec
    build and hash (~50 µs each). Invalid documents are parsed again each time (rare)."""

    def __init__(self, parse: Callable[[Mapping[str, Any]], tuple[Bot, DesiredBot]]) -> None:
        self._parse = parse
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[bytes, Bot, DesiredBot]] = {}

    def __call__(self, doc: Mapping[str, Any]) -> tuple[Bot, DesiredBot]:
        try:
            key = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        except TypeError:
            key = b""
        bot_id = str(doc.get("id"))
        with self._lock:
            cached = self._memo.get(bot_id)
        if key and cached is not None and cached[0] == key:
            return cached[1], cached[2]
        bot, want = self._parse(doc)
        if key:
            with self._lock:
                self._memo[bot_id] = (key, bot, want)
        return bot, want

    def retain(self, bot_ids: set[str]) -> None:
        """Forgets bots no longer in the collection (called after each full read)."""
        with self._lock:
            for bot_id in self._memo.keys() - bot_ids:
                del self._memo[bot_id]


class DesiredSnapshot:
    def __init__(self, load_all: Callable[[], list[Doc]], clock: Callable[[], float]) -> None:
        self._load_all = load_all
        self._clock = clock
        self._lock = threading.Lock()
        self._docs: list[Doc] = []
        self._by_id: dict[str, list[Doc]] = {}
        self._read_started_at = float("-inf")
        self._generation: int | None = None  # the desired-state generation it was read at
        self.full_reads = 0

    def offer(self, docs: Sequence[Doc], *, read_started_at: float,
              generation: int | None = None) -> None:
        """A full read made elsewhere in this process (the reconcile pass) refreshes us too.
        `generation`: the desired-state generation read (in Redis) BEFORE the documents."""
        with self._lock:
            if read_started_at > self._read_started_at:
                self._store(docs, read_started_at)
                self._generation = generation

    def reusable(self, *, generation: int, now: float, max_age: float
                 ) -> tuple[list[Doc], float] | None:
        """The last full read and when it started, if nothing was written through events
        since (same generation) and it is at most `max_age` old; else None (read again)."""
        with self._lock:
            if (self._generation is None or self._generation != generation
                    or now - self._read_started_at > max_age):
                return None
            return self._docs, self._read_started_at

    def docs_for(self, bot_id: str, *, not_before: float) -> list[Doc]:
        """Every document with this id, read no earlier than `not_before` (epoch seconds)."""
        with self._lock:
            if self._read_started_at < not_before:
                started = self._clock()
                self._store(self._load_all(), started)
                self._generation = None  # not tagged: the pass will not reuse it
                self.full_reads += 1
            return list(self._by_id.get(bot_id, []))

    def _store(self, docs: Sequence[Doc], read_started_at: float) -> None:
        by_id: dict[str, list[Doc]] = {}
        for doc in docs:
            raw_id = doc.get("id")
            if isinstance(raw_id, str):
                by_id.setdefault(raw_id, []).append(doc)
        self._docs = list(docs)
        self._by_id = by_id
        self._read_started_at = read_started_at


class DesiredReader(Protocol):
    """What `read_desired` needs of a controller (live bots or schedules)."""

    rt: Runtime
    object_ids: dict[str, str] | None
    desired_read_at: float


def read_desired(controller: DesiredReader, kind: BotKind) -> list[Doc]:
    """A pass's desired documents: the process's last full read when still valid (see the
    module docstring), else a full read — which also yields the id → _id index, left in
    `controller.object_ids` for the pass to publish (None when nothing was read)."""
    rt = controller.rt
    snapshot = rt.snapshot(kind)
    generation = rt.redis.desired_generation(kind.value)  # BEFORE the documents
    now = rt.clock()
    reused = snapshot.reusable(generation=generation, now=now,
                               max_age=rt.settings.DESIRED_FULL_READ_INTERVAL)
    if reused is not None:
        docs, controller.desired_read_at = reused
        controller.object_ids = None
        return docs
    object_ids: dict[str, str] = {}
    docs = rt.store(kind).load_all(object_ids)
    snapshot.offer(docs, read_started_at=now, generation=generation)
    controller.object_ids, controller.desired_read_at = object_ids, now
    return docs


def read_one_bot(rt: Runtime, kind: BotKind, bot_id: str) -> list[Doc]:
    """One bot's documents, now, for an event's reconcile: by `_id` through the id → _id
    index when it names a document; none at all when a fresh index does not know the id
    (the consumer removed it after deleting the document — this spares FerretDB's scan for
    every `deleted` event); else a filter on `id`."""
    known, object_id, synced_at = rt.redis.lookup_object_id(kind.value, bot_id)
    if not known and index_is_fresh(rt.settings, synced_at=synced_at, now=rt.clock()):
        return []
    return rt.store(kind).load_one(bot_id, object_id=object_id)


def index_is_fresh(settings: Settings, *, synced_at: float, now: float) -> bool:
    """The id → _id index is complete as of its last rebuild (every full read, at least every
    DESIRED_FULL_READ_INTERVAL) plus the consumer's writes since: within this window, an id it
    does not know has no document (only a write made around the consumer could say otherwise,
    and the next full read corrects it)."""
    return now - synced_at <= settings.DESIRED_FULL_READ_INTERVAL + 2 * settings.RECONCILE_INTERVAL
