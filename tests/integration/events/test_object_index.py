"""The id → _id index in real Redis: a full read rebuilds it, but never over what the events
consumer wrote after that read began."""

from __future__ import annotations

import time
from typing import Any

from worker.adapters.redis import RedisState


def index(redis_client: Any) -> dict[str, str]:
    raw = redis_client.hgetall("the0:object-ids:live")
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_a_full_read_rebuilds_the_index_around_the_consumers_newer_writes(
        stack_env: Any, redis_client: Any) -> None:
    redis_client.delete("the0:object-ids:live", "the0:object-ids-touched:live",
                        "the0:object-ids-synced:live")
    state = RedisState.from_url(stack_env.redis_url)
    now = time.time()
    state.sync_object_ids("live", {"a": "oa", "dup": "", "c": "oc"}, read_started_at=now - 60,
                          now=now - 59)
    assert index(redis_client) == {"a": "oa", "dup": "", "c": "oc"}
    assert state.lookup_object_id("live", "a") == (True, "oa", now - 59)
    assert state.lookup_object_id("live", "dup")[:2] == (True, None)
    assert state.lookup_object_id("live", "zzz")[:2] == (False, None)

    # The consumer inserts b and deletes a, after the next full read began.
    read_started = time.time()
    state.set_object_id("live", "b", "ob", now=read_started + 1)
    state.set_object_id("live", "a", None, now=read_started + 1)
    # That read (it saw a, not b; c is gone) must not undo the consumer's writes.
    state.sync_object_ids("live", {"a": "oa", "dup": ""}, read_started_at=read_started,
                          now=read_started + 2)
    assert index(redis_client) == {"b": "ob", "dup": ""}
    # A later read that saw them both settles it.
    state.sync_object_ids("live", {"b": "ob", "dup": ""}, read_started_at=time.time() + 10,
                          now=time.time() + 11)
    assert index(redis_client) == {"b": "ob", "dup": ""}


def test_an_event_reconcile_skips_the_scan_only_while_the_index_is_fresh(
        settings_env: dict[str, str], redis_client: Any, mongo: Any,
        db_names: dict[str, str]) -> None:
    from worker.core.bot import BotKind
    from worker.runtime import Runtime
    from worker.settings import load_settings
    from worker.snapshot import read_one_bot

    rt = Runtime(load_settings(env={**settings_env, "DESIRED_FULL_READ_INTERVAL": "10s",
                                    "RECONCILE_INTERVAL": "2s"}))
    mongo[db_names["bot_runner"]]["bots"].insert_one({"id": "out-of-band", "config": {}})
    scans: list[str] = []
    store = rt.store(BotKind.LIVE)
    original = store.load_one
    store.load_one = lambda bot_id, **kw: scans.append(bot_id) or original(bot_id, **kw)  # type: ignore[method-assign]
    rt.redis.sync_object_ids("live", {}, read_started_at=time.time(), now=time.time())
    # Fresh index, id unknown: no document, no read (the consumer deleted it).
    assert read_one_bot(rt, BotKind.LIVE, "out-of-band") == [] and scans == []
    # An index older than DESIRED_FULL_READ_INTERVAL + 2 intervals is not trusted: read.
    rt.redis.sync_object_ids("live", {}, read_started_at=time.time() - 20, now=time.time() - 20)
    assert [d["id"] for d in read_one_bot(rt, BotKind.LIVE, "out-of-band")] == ["out-of-band"]
    assert scans == ["out-of-band"]
