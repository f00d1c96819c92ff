"""Parsed documents, re-used while a document is unchanged: a pass reads every document every
interval, and building a bot's spec and hash costs far more than serialising its document."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import orjson

from worker.core.bot import Bot
from worker.core.planner import DesiredBot


class ParseMemo:
    """Re-uses the parsed Bot and its config hash while a document is byte-for-byte unchanged:
    a no-op pass over 10,000 bots then costs one orjson dump and a digest per bot instead of a
    full spec build and hash (~50 µs each). Only the digest of the document is kept, not its
    text: a worker's memory does not grow with what bot authors put in their documents beyond
    the parsed bot (whose config MAX_CONFIG_BYTES bounds). Invalid documents are parsed again
    each time (rare)."""

    def __init__(self, parse: Callable[[Mapping[str, Any]], tuple[Bot, DesiredBot]]) -> None:
        self._parse = parse
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[bytes, Bot, DesiredBot]] = {}

    def __call__(self, doc: Mapping[str, Any]) -> tuple[Bot, DesiredBot]:
        try:
            key = hashlib.blake2b(orjson.dumps(
                doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS), digest_size=20
            ).digest()
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

    def retain(self, bot_ids: AbstractSet[str]) -> None:
        """Forgets bots no longer in the collection (called after each full read)."""
        with self._lock:
            for bot_id in self._memo.keys() - bot_ids:
                del self._memo[bot_id]
