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
