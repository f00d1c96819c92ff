"""Redis: heartbeats, last-pass records and shared metric counters — written by workers and
beat (`TelemetryStore`, sync), read by the api (`HealthReader`, asyncio, bounded in time).

Every key name comes from `worker.keys`. Writes are pipelined: a flush of any number of metric
increments is one round trip. Redis errors become `TemporaryError` on the write side; the
reader lets them through (the api turns them into a failing `redis` check).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
import redis.asyncio as redis_async

from worker import keys
from worker.adapters.redis import _temporary_on_redis_error
from worker.core.metrics import SHARED, Family, Increments, is_integral
from worker.core.readiness import Heartbeat, Observed, parse_heartbeat, parse_record

WORKER_REGISTRY_RETENTION = 86400.0  # forget a worker's registry entry a day after its last beat
# kombu's Redis transport keeps one list per queue and priority step ("<queue>\x06\x16<n>").
PRIORITY_STEPS = ("", "\x06\x163", "\x06\x166", "\x06\x169")
UNACKED = "unacked"  # kombu's hash of delivered, not yet acknowledged messages

LAST_LOGS = keys.LAST_LOGS


def _add_increments(pipe: Any, increments: Increments) -> None:
    for (family, fld), amount in increments.items():
        if is_integral(amount):
            pipe.hincrby(keys.metrics(family), fld, int(amount))
        else:
            pipe.hincrbyfloat(keys.metrics(family), fld, amount)


class TelemetryStore:
    """What processes write about themselves."""

    def __init__(self, client: redis_lib.Redis) -> None:
        self.client = client

    def worker_beat(self, hostname: str, payload: Mapping[str, Any], *, ttl: float,
                    now: float, increments: Increments | None = None) -> None:
        """The worker's heartbeat (a key with a TTL, plus its registry entry so the api can
        find it without scanning the keyspace) and pending metrics — one round trip."""
        with _temporary_on_redis_error():
            pipe = self.client.pipeline(transaction=False)
            pipe.set(keys.worker_heartbeat(hostname), json.dumps(dict(payload)),
                     px=int(ttl * 1000))
            pipe.zadd(keys.HEARTBEAT_WORKERS, {hostname: now})
            pipe.zremrangebyscore(keys.HEARTBEAT_WORKERS, "-inf",
                                  now - WORKER_REGISTRY_RETENTION)
            _add_increments(pipe, increments or {})
            pipe.execute()

    def worker_gone(self, hostname: str) -> None:
        """A worker stopping cleanly removes its heartbeat at once (readiness is honest now,
        not a TTL later)."""
        with _temporary_on_redis_error():
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(keys.worker_heartbeat(hostname))
            pipe.zrem(keys.HEARTBEAT_WORKERS, hostname)
            pipe.execute()

    def heartbeat(self, key: str, payload: Mapping[str, Any], *, ttl: float) -> None:
        """A singleton process's heartbeat (the active beat, the events consumer)."""
        with _temporary_on_redis_error():
            self.client.set(key, json.dumps(dict(payload)), px=int(ttl * 1000))

    def events_consumer_beat(self, name: str, state: Mapping[str, Any], *, ttl: float,
                             increments: Increments) -> None:
        """A NATS consumer's own heartbeat (diagnosis), the shared `events` heartbeat while it
        is connected (what readiness checks), and its pending metrics — one round trip."""
        with _temporary_on_redis_error():
            pipe = self.client.pipeline(transaction=False)
            pipe.set(keys.events_heartbeat(name), json.dumps(dict(state)), px=int(ttl * 1000))
            if state.get("connected"):
                pipe.set(keys.HEARTBEAT_EVENTS,
                         json.dumps({"who": name, "at": state.get("at"), "connected": True}),
                         px=int(ttl * 1000))
            _add_increments(pipe, increments)
            pipe.execute()

    def flush(self, increments: Increments) -> None:
        if increments:
            with _temporary_on_redis_error():
                pipe = self.client.pipeline(transaction=False)
                _add_increments(pipe, increments)
                pipe.execute()

    def previous_record(self, kind: str) -> dict[str, Any] | None:
        with _temporary_on_redis_error():
            raw: Any = self.client.get(keys.last_reconcile(kind))
            return parse_record(raw)

    def record_pass(self, kind: str, record: Mapping[str, Any],
                    increments: Increments) -> None:
        """The last-pass record of a kind and the pass's metrics, in one round trip."""
        with _temporary_on_redis_error():
            pipe = self.client.pipeline(transaction=False)
            pipe.set(keys.last_reconcile(kind), json.dumps(dict(record)))
            _add_increments(pipe, increments)
            pipe.execute()


# =============================================================================== reading
def _str(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)



@dataclass(frozen=True, kw_only=True)
class HealthData:
    """Everything the api shows, read in two round trips."""

    observed: Observed
    queues: dict[str, int] = field(default_factory=dict)
    unacked: int = 0
    metrics: dict[str, dict[bytes, bytes]] = field(default_factory=dict)  # family → hash
    deletions_held: dict[str, str] = field(default_factory=dict)  # the last removal held back


class HealthReader:
    """The api's reads. No timeout handling here: the caller bounds the whole read."""

    def __init__(self, client: redis_async.Redis, *, kinds: Sequence[str],
                 heartbeats: Mapping[str, str], queues: Sequence[str] = keys.QUEUES,
                 families: Sequence[Family] = SHARED) -> None:
        self.client = client
        self.kinds = tuple(kinds)
        self.heartbeats = dict(heartbeats)
        self.queues = tuple(queues)
        self.families = tuple(families)

    async def ping(self) -> None:
        await self.client.ping()  # type: ignore[misc]  # redis-py's sync|async union

    async def read(self, *, with_metrics: bool = False) -> HealthData:
        pipe = self.client.pipeline(transaction=False)
        pipe.zrange(keys.HEARTBEAT_WORKERS, 0, -1)
        for key in self.heartbeats.values():
            pipe.get(key)
        for kind in self.kinds:
            pipe.get(keys.last_reconcile(kind))
        pipe.get(LAST_LOGS)
        for queue in self.queues:
            for step in PRIORITY_STEPS:
                pipe.llen(queue + step)
        pipe.hlen(UNACKED)
        pipe.hgetall(keys.DELETIONS_HELD)
        if with_metrics:
            for family in self.families:
                pipe.hgetall(keys.metrics(family.name))
        results = list(await pipe.execute())

        hostnames = [h.decode() if isinstance(h, bytes) else str(h) for h in results.pop(0)]
        beats = {name: parse_heartbeat(results.pop(0)) for name in self.heartbeats}
        reconciles = {kind: parse_record(results.pop(0)) for kind in self.kinds}
        logs = parse_record(results.pop(0))
        queues = {queue: sum(int(results.pop(0)) for _ in PRIORITY_STEPS)
                  for queue in self.queues}
        unacked = int(results.pop(0))
        deletions_held = {_str(k): _str(v) for k, v in results.pop(0).items()}
        metrics = {family.name: dict(results.pop(0)) for family in self.families
                   } if with_metrics else {}

        workers: dict[str, Heartbeat] = {}
        if hostnames:
            raw = await self.client.mget([keys.worker_heartbeat(h) for h in hostnames])
            for hostname, value in zip(hostnames, raw, strict=True):
                beat = parse_heartbeat(value)
                if beat is not None:  # gone = its TTL ran out: dead
                    workers[hostname] = beat
        return HealthData(observed=Observed(workers=workers, heartbeats=beats,
                                            reconciles=reconciles, logs=logs),
                          queues=queues, unacked=unacked, metrics=metrics,
                          deletions_held=deletions_held)
