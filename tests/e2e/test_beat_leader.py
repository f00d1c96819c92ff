"""Two REAL `celery -A worker beat` processes: only the lease holder fires; when it is killed
(-9: no clean release of the lease) the other takes over within 90 s.

No worker runs here, so every `reconcile.bots` message a beat publishes stays in the broker's
`reconcile` list, and its `origin` header (gen<pid>@host) says exactly which beat sent it: a
doubled reconcile cannot hide.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.bots import wait_for
from tests.support.procs import Proc
from tests.support.procs_watch import queued_messages
from worker import keys

Start = Callable[..., Proc]
INTERVAL = 2.0  # RECONCILE_INTERVAL of settings_env
_ORIGIN = re.compile(r"^gen(\d+)@")
QUEUES = ("reconcile", "bots", "logs")


def lease_holder_pid(redis_client: Any) -> int | None:
    """PID in the leader lease value "<host>:<pid>:<nonce>", or None when nobody holds it."""
    raw = redis_client.get(keys.BEAT_LEADER)
    return int(raw.decode().rsplit(":", 2)[1]) if raw else None


def fired_by(redis_client: Any, task: str | None = "reconcile.bots") -> list[int]:
    """PID of the beat that published each queued message of `task` (None: of any task in any
    of our queues), oldest first."""
    pids = []
    for queue in QUEUES:
        for message in reversed(queued_messages(redis_client, queue)):  # LPUSH: newest first
            headers = message["headers"]
            if task is not None and headers["task"] != task:
                continue
            match = _ORIGIN.match(headers["origin"])
            assert match, headers["origin"]
            pids.append(int(match.group(1)))
    return pids


@pytest.mark.slow(seconds=52)
def test_two_beats_only_one_fires_and_the_other_takes_over_within_90_s(
        start_beat: Start, redis_client: Any) -> None:
    beats = [start_beat(), start_beat()]
    by_pid = {beat.pid: beat for beat in beats}

    def elected() -> int | None:
        for beat in beats:
            beat.assert_alive()
        return lease_holder_pid(redis_client)
    leader_pid = wait_for(elected, "a beat to take the leader lease", timeout=30, interval=0.1)
    assert leader_pid in by_pid, (leader_pid, list(by_pid))
    leader = by_pid[leader_pid]
    (follower,) = (beat for beat in beats if beat is not leader)

    # A window of firing with both beats alive: every message from the leader, one per interval.
    wait_for(lambda: fired_by(redis_client), "the first reconcile tick", timeout=20)
    window_start, fired_before = time.monotonic(), len(fired_by(redis_client))
    window = 12.0
    time.sleep(window)
    fired = fired_by(redis_client)
    in_window = len(fired) - fired_before
    elapsed = time.monotonic() - window_start
    print(f"both beats alive: {in_window} reconciles in {elapsed:.1f} s "
          f"(interval {INTERVAL:.0f} s), senders {sorted(set(fired))}")
    assert set(fired) == {leader.pid}, f"the follower fired too: {fired}"
    assert set(fired_by(redis_client, None)) == {leader.pid}  # any other entry, too
    # Doubled firing would give ~2x; allow a slow tick or two below the nominal count.
    assert elapsed / INTERVAL / 2 <= in_window <= elapsed / INTERVAL + 1, in_window
    assert lease_holder_pid(redis_client) == leader.pid
    assert 0 < redis_client.ttl(keys.BEAT_LEADER) <= 30
    follower.assert_alive()

    # kill -9: the lease is not released; the follower must take over when it lapses.
    leader.kill9()
    killed = time.monotonic()
    fired_at_kill = len(fired_by(redis_client))
    takeover = wait_for(lambda: (lease_holder_pid(redis_client) == follower.pid
                                 and time.monotonic() - killed),
                        "the follower to take the lease", timeout=90, interval=0.2)

    def follower_fired() -> float | bool:
        follower.assert_alive()
        return follower.pid in fired_by(redis_client) and time.monotonic() - killed
    first_fire = wait_for(follower_fired, "the follower's first reconcile",
                          timeout=max(1.0, 90 - (time.monotonic() - killed)), interval=0.2)
    print(f"takeover after kill -9: lease taken in {takeover:.1f} s, "
          f"first reconcile fired {first_fire:.1f} s after the kill")
    assert first_fire <= 90

    # The new leader keeps firing at the interval, and nobody else fires.
    wait_for(lambda: fired_by(redis_client).count(follower.pid) >= 3,
             "the new leader to keep firing", timeout=4 * INTERVAL + 5, interval=0.2)
    after = fired_by(redis_client)[fired_at_kill:]
    assert set(after) == {follower.pid}, after
    assert set(fired_by(redis_client, None)) == {leader.pid, follower.pid}
    beat = json.loads(redis_client.get(keys.HEARTBEAT_BEAT))
    assert beat["who"].rsplit(":", 2)[1] == str(follower.pid)
