"""A per-process snapshot of one kind's desired documents, shared by the task threads.

Why: FerretDB (and MongoDB without an index on `id`) answers `find_one({"id": …})` by scanning
the collection — ~0.2 s per bot at 10,000 bots. A per-bot task instead asks for the bot "as of
no earlier than T" (T = when the pass that planned it started, or when its event arrived): the
snapshot is reused while it is at least that fresh, otherwise ONE full read is made and shared
by every thread waiting for it. A task therefore never acts on state older than the decision
that spawned it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

Doc = dict[str, Any]


class DesiredSnapshot:
    def __init__(self, load_all: Callable[[], list[Doc]], clock: Callable[[], float]) -> None:
        self._load_all = load_all
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, list[Doc]] = {}
        self._read_started_at = float("-inf")
        self.full_reads = 0

    def offer(self, docs: Sequence[Doc], *, read_started_at: float) -> None:
        """A full read made elsewhere in this process (the reconcile pass) refreshes us too."""
        with self._lock:
            if read_started_at > self._read_started_at:
                self._store(docs, read_started_at)

    def docs_for(self, bot_id: str, *, not_before: float) -> list[Doc]:
        """Every document with this id, read no earlier than `not_before` (epoch seconds)."""
        with self._lock:
            if self._read_started_at < not_before:
                started = self._clock()
                self._store(self._load_all(), started)
                self.full_reads += 1
            return list(self._by_id.get(bot_id, []))

    def _store(self, docs: Sequence[Doc], read_started_at: float) -> None:
        by_id: dict[str, list[Doc]] = {}
        for doc in docs:
            raw_id = doc.get("id")
            if isinstance(raw_id, str):
                by_id.setdefault(raw_id, []).append(doc)
        self._by_id = by_id
        self._read_started_at = read_started_at
