"""A beat scheduler that fires only while it holds the leader lease in Redis.

Start two beats: one fires, the other waits. When the leader dies, its lease (LEADER_TTL)
runs out and the other takes over at its next check (≤ LEADER_TTL + CHECK_EVERY ≈ 35 s).
A leader that stops cleanly gives the lease up at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import Any

import redis
from celery.beat import Scheduler

from worker import keys

log = logging.getLogger("the0.beat")
LEADER_TTL = 30  # seconds
CHECK_EVERY = 5.0  # seconds between lease checks while not leading

# Renew only our own lease: compare-and-expire, atomically.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderScheduler(Scheduler):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = False
        self._redis: redis.Redis | None = None
        super().__init__(*args, **kwargs)

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            settings = self.app.the0_settings
            self._redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3,
                                               socket_connect_timeout=3)
        return self._redis

    def _hold_lease(self) -> bool:
        try:
            # Renew whenever the lease is still ours — also after a Redis blip made us stand
            # down for a tick (otherwise our own lease would lock us out for LEADER_TTL).
            if self.redis.eval(_RENEW, 1, keys.BEAT_LEADER, self.identity, LEADER_TTL):
                return True
            acquired = bool(self.redis.set(keys.BEAT_LEADER, self.identity, nx=True,
                                           ex=LEADER_TTL))
        except redis.RedisError as exc:
            log.warning("beat: cannot reach Redis (%s); not firing", type(exc).__name__)
            return False
        if acquired and not self.leading:
            log.info("beat %s: now the leader", self.identity)
            # A new leader fires every entry once at once (the world may have drifted while no
            # beat ran), then keeps the intervals; it never fires a backlog of missed ticks.
            for entry in self.schedule.values():
                entry.last_run_at = self.app.now() - entry.schedule.run_every
        return acquired

    def tick(self, *args: Any, **kwargs: Any) -> float:
        was_leading = self.leading
        self.leading = self._hold_lease()
        if was_leading and not self.leading:
            log.warning("beat %s: lost the leader lease; standing by", self.identity)
        if not self.leading:
            return CHECK_EVERY
        settings = self.app.the0_settings
        try:  # the active beat's heartbeat, for /readyz (JSON: who, at, pid)
            self.redis.set(keys.HEARTBEAT_BEAT, json.dumps(
                {"who": self.identity, "at": time.time(), "pid": os.getpid()}),
                px=int(settings.HEARTBEAT_TTL * 1000))
        except redis.RedisError:
            pass
        return float(min(super().tick(*args, **kwargs), CHECK_EVERY,
                         settings.HEARTBEAT_INTERVAL))

    def close(self) -> None:
        if self.leading:
            try:
                self.redis.eval(_RELEASE, 1, keys.BEAT_LEADER, self.identity)
            except redis.RedisError:
                pass
        super().close()
