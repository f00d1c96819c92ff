"""Redis: per-bot dedup keys and locks, the shared create-rate bucket, backoff and status memo.

Every key name comes from `worker.keys`. Redis errors become `TemporaryError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis as redis_lib

from worker import keys
from worker.core.bot import BotId
from worker.core.errors import TemporaryError
from worker.core.planner import Backoff

# Token bucket evaluated atomically in Redis, on Redis's clock, so every worker shares one pace.
# Returns "0" when a token was taken, else the seconds to wait before one is available.
_TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 5)
return tostring(wait)
"""


@contextmanager
def _temporary_on_redis_error() -> Iterator[None]:
    try:
        yield
    except redis_lib.RedisError as exc:
        raise TemporaryError(f"redis: {type(exc).__name__}: {exc}") from exc


class Held:
    """A lock we hold; `renew()` resets its time-to-live (call it while waiting)."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def renew(self) -> None:
        with _temporary_on_redis_error():
            self._lock.reacquire()


class RedisState:
    """Coordination state shared by beat and every worker."""

    def __init__(self, client: redis_lib.Redis) -> None:
        self.client = client
        self._take_token = client.register_script(_TAKE_TOKEN)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0) -> RedisState:
        return cls(redis_lib.Redis.from_url(url, socket_timeout=timeout,
                                            socket_connect_timeout=timeout,
                                            health_check_interval=30))

    # --- dedup of queued actions ------------------------------------------------------------
    def claim_inflight(self, kind: str, bot_ids: Sequence[str], *, ttl: float) -> list[str]:
        """Marks each bot as having an action in flight; returns the ids that were NOT already."""
        if not bot_ids:
            return []
        with _temporary_on_redis_error():
            pipe = self.client.pipeline(transaction=False)
            for bot_id in bot_ids:
                pipe.set(keys.inflight(kind, bot_id), "1", nx=True, px=int(ttl * 1000))
            results = pipe.execute()
        return [bot_id for bot_id, claimed in zip(bot_ids, results, strict=True) if claimed]

    def release_inflight(self, kind: str, bot_id: str) -> None:
        with _temporary_on_redis_error():
            self.client.delete(keys.inflight(kind, bot_id))

    # --- events: bursts for one bot collapse into one queued reconcile ---------------------
    def mark_event_pending(self, kind: str, bot_id: str, *, ttl: float) -> bool:
        """True when no reconcile for this bot's events is queued yet (the caller sends one).
        The task clears the mark BEFORE it reads Mongo, so an event written after that read
        started always finds the mark gone and sends a new task."""
        with _temporary_on_redis_error():
            return bool(self.client.set(keys.event_pending(kind, bot_id), "1", nx=True,
                                        px=int(ttl * 1000)))

    def clear_event_pending(self, kind: str, bot_id: str) -> None:
        with _temporary_on_redis_error():
            self.client.delete(keys.event_pending(kind, bot_id))

    def mark_pod_deleted(self, uid: str, *, ttl: float) -> None:
        """Before the controller deletes a pod: any worker process's watch that sees it go
        can tell it from a deletion by someone else."""
        with _temporary_on_redis_error():
            self.client.set(keys.deleted_pod(uid), "1", px=int(ttl * 1000))

    def pod_deleted_by_controller(self, uid: str) -> bool:
        with _temporary_on_redis_error():
            return bool(self.client.exists(keys.deleted_pod(uid)))

    # --- mutual exclusion -------------------------------------------------------------------
    @contextmanager
    def hold(self, name: str, *, ttl: float) -> Iterator[Held | None]:
        """Non-blocking lock: yields a `Held` (released after) or None when taken elsewhere.
        A short `ttl` plus `Held.renew()` during long waits means a killed holder blocks the
        next one for at most `ttl`."""
        with _temporary_on_redis_error():
            lock = self.client.lock(name, timeout=ttl, blocking=False)
            acquired = bool(lock.acquire(blocking=False))
        try:
            yield Held(lock) if acquired else None
        finally:
            if acquired:
                with _temporary_on_redis_error():
                    try:
                        lock.release()
                    except redis_lib.exceptions.LockNotOwnedError:
                        pass  # expired while we worked; nothing to release

    # --- pace -------------------------------------------------------------------------------
    def take_create_token(self, *, rate: float, burst: float) -> float:
        """0.0 when the caller may create now, else the seconds until a token is available."""
        with _temporary_on_redis_error():
            return float(self._take_token(keys=[keys.CREATE_BUCKET], args=[rate, burst]))

    def take_delete_token(self, *, per_minute: float, burst: float) -> bool:
        """True when a removal may go ahead now (the global deletion budget had a token)."""
        with _temporary_on_redis_error():
            wait = float(self._take_token(keys=[keys.DELETE_BUCKET],
                                          args=[per_minute / 60.0, burst]))
        return wait == 0.0

    def note_deletion_held(self, kind: str, bot_id: str, *, now: float, ttl: float) -> None:
        """The last removal the budget held and how many since the record appeared (/status)."""
        with _temporary_on_redis_error():
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(keys.DELETIONS_HELD, "count", 1)
            pipe.hset(keys.DELETIONS_HELD, mapping={"at": now, "kind": kind, "bot_id": bot_id})
            pipe.expire(keys.DELETIONS_HELD, int(ttl))
            pipe.execute()

    # --- crash backoff ----------------------------------------------------------------------
    def load_backoff(self, kind: str) -> dict[BotId, Backoff]:
        with _temporary_on_redis_error():
            raw = self.client.hgetall(keys.backoff(kind))
        result: dict[BotId, Backoff] = {}
        for bot_id, value in raw.items():
            data = json.loads(value)
            result[BotId(bot_id.decode())] = Backoff(failures=int(data["failures"]),
                                                     not_before=float(data["not_before"]))
        return result

    def get_backoff(self, kind: str, bot_id: str) -> Backoff | None:
        with _temporary_on_redis_error():
            raw = self.client.hget(keys.backoff(kind), bot_id)
        if raw is None:
            return None
        data = json.loads(raw)
        return Backoff(failures=int(data["failures"]), not_before=float(data["not_before"]))

    def save_backoff(self, kind: str, bot_id: str, backoff: Backoff) -> None:
        value = json.dumps({"failures": backoff.failures, "not_before": backoff.not_before})
        with _temporary_on_redis_error():
            self.client.hset(keys.backoff(kind), bot_id, value)

    def clear_backoff(self, kind: str, bot_ids: Sequence[str]) -> None:
        if bot_ids:
            with _temporary_on_redis_error():
                self.client.hdel(keys.backoff(kind), *bot_ids)

    # --- when each pod's presigned URLs were signed (re-signed at half their lifetime) --------
    def mark_urls_signed(self, pod_uid: str, signed_at: float) -> None:
        with _temporary_on_redis_error():
            self.client.hset(keys.URLS_SIGNED, pod_uid, f"{signed_at:.0f}")

    def load_urls_signed(self, live_uids: Sequence[str]) -> dict[str, float]:
        """Signing times of the pods in `live_uids`; entries of pods gone are dropped here."""
        with _temporary_on_redis_error():
            raw = self.client.hgetall(keys.URLS_SIGNED)
            signed = {k.decode(): float(v) for k, v in raw.items()}
            live = set(live_uids)
            gone = [uid for uid in signed if uid not in live]
            if gone:
                self.client.hdel(keys.URLS_SIGNED, *gone)
        return {uid: at for uid, at in signed.items() if uid in live}

    # --- memo of what status we last wrote (so a no-op pass writes nothing) -----------------
    def load_status_memo(self, kind: str) -> tuple[dict[str, str], bool]:
        """(bot id → fingerprint, whether a pass built this memo since Redis last lost it)."""
        with _temporary_on_redis_error():
            raw = self.client.hgetall(keys.status_fingerprints(kind))
        memo = {k.decode(): v.decode() for k, v in raw.items()}
        complete = memo.pop(keys.STATUS_MEMO_COMPLETE, None) is not None
        return memo, complete

    def save_status_fingerprints(self, kind: str, fingerprints: Mapping[str, str], *,
                                 complete: bool = False) -> None:
        """`complete`: these are the whole memo, built by a pass (marks it so, atomically)."""
        mapping = {**fingerprints, **({keys.STATUS_MEMO_COMPLETE: "1"} if complete else {})}
        if mapping:
            with _temporary_on_redis_error():
                self.client.hset(keys.status_fingerprints(kind), mapping=mapping)

    def forget_status_fingerprints(self, kind: str, bot_ids: Sequence[str]) -> None:
        if bot_ids:
            with _temporary_on_redis_error():
                self.client.hdel(keys.status_fingerprints(kind), *bot_ids)

    # --- the last error of each bot's tasks (shown in its status until a success clears it) ---
    def load_last_errors(self, kind: str) -> dict[str, str]:
        with _temporary_on_redis_error():
            raw = self.client.hgetall(keys.last_errors(kind))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def set_last_error(self, kind: str, bot_id: str, message: str) -> None:
        """"" records a success: kept (not deleted) so that restoring the errors after a Redis
        restart cannot bring back one a task has cleared since."""
        with _temporary_on_redis_error():
            self.client.hset(keys.last_errors(kind), bot_id, message)

    def restore_last_errors(self, kind: str, errors: Mapping[str, str]) -> None:
        """Errors read back from the status documents, for bots no task has reported on since
        Redis lost the hash (HSETNX: a newer outcome wins)."""
        if errors:
            with _temporary_on_redis_error():
                pipe = self.client.pipeline(transaction=False)
                for bot_id, message in errors.items():
                    pipe.hsetnx(keys.last_errors(kind), bot_id, message)
                pipe.execute()

    def forget_last_errors(self, kind: str, bot_ids: Sequence[str]) -> None:
        if bot_ids:
            with _temporary_on_redis_error():
                self.client.hdel(keys.last_errors(kind), *bot_ids)

    # --- health -----------------------------------------------------------------------------


# ============================================================================ log collection
# The per-bot log lock carries a fencing token (a fresh number from a counter); cursor commits
# are accepted only while the committer's token still holds the lock, so a worker that lost
# its lock (paused past the TTL) can never move a cursor.
_LOG_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[3])
for i = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i]) end
for j = 4 + 2 * n, #ARGV do redis.call('HDEL', KEYS[2], ARGV[j]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
"""
_LOG_ACQUIRE = """
local token = redis.call('INCR', KEYS[2])
if redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[1]) then return token end
return false
"""
_LOG_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_LOG_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# A chunk reports; the last chunk of a pass writes the summary the api reads.
_LOG_CHUNK_DONE = """
local done = redis.call('HINCRBY', KEYS[1], 'done', 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('HINCRBY', KEYS[1], 'lines', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'errors', ARGV[2])
local lag = tonumber(ARGV[3])
local seen = tonumber(redis.call('HGET', KEYS[1], 'lag') or '0')
if lag > seen then redis.call('HSET', KEYS[1], 'lag', ARGV[3]) end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '-1')
if done ~= total then return 0 end
local t = redis.call('HMGET', KEYS[1], 'start', 'pods', 'lines', 'errors', 'lag')
local now = tonumber(ARGV[4])
local summary = cjson.encode({at = now, duration_s = now - tonumber(t[1]),
  ok = tonumber(t[4]) == 0, pods = tonumber(t[2]), lines = tonumber(t[3]),
  lag_s = tonumber(t[5] or '0'), errors = tonumber(t[4])})
redis.call('SET', KEYS[2], summary, 'EX', ARGV[5])
redis.call('DEL', KEYS[1])
return 1
"""


class LogState:
    """Cursors, per-bot writer locks and pass summaries of the log collector."""

    def __init__(self, client: redis_lib.Redis) -> None:
        self.client = client
        self._acquire = client.register_script(_LOG_ACQUIRE)
        self._commit = client.register_script(_LOG_COMMIT)
        self._renew = client.register_script(_LOG_RENEW)
        self._release = client.register_script(_LOG_RELEASE)
        self._chunk_done = client.register_script(_LOG_CHUNK_DONE)

    def acquire(self, bot_id: str, *, ttl: float) -> str | None:
        """The bot's writer lock (non-blocking): its fencing token, or None when held."""
        with _temporary_on_redis_error():
            token = self._acquire(keys=[keys.log_lock(bot_id), keys.LOG_FENCE],
                                  args=[int(ttl * 1000)])
        return None if token is None else str(int(token))

    def renew(self, bot_id: str, token: str, *, ttl: float) -> bool:
        with _temporary_on_redis_error():
            return bool(self._renew(keys=[keys.log_lock(bot_id)], args=[token, int(ttl * 1000)]))

    def release(self, bot_id: str, token: str) -> None:
        with _temporary_on_redis_error():
            self._release(keys=[keys.log_lock(bot_id)], args=[token])

    def load_cursors(self, bot_id: str) -> dict[str, bytes]:
        with _temporary_on_redis_error():
            raw = self.client.hgetall(keys.log_cursors(bot_id))
        return {k.decode(): v for k, v in raw.items()}

    def commit(self, bot_id: str, token: str, updates: Mapping[str, str],
               deletes: Sequence[str], *, ttl: float) -> bool:
        """Stores cursor positions (and drops forgotten streams) if `token` still holds the
        bot's lock; refreshes the cursors' time-to-live. False: the lock was lost, nothing
        stored."""
        args: list[Any] = [token, int(ttl * 1000), len(updates)]
        for stream, value in updates.items():
            args += [stream, value]
        args += list(deletes)
        with _temporary_on_redis_error():
            return bool(self._commit(keys=[keys.log_lock(bot_id), keys.log_cursors(bot_id)],
                                     args=args))

    def start_pass(self, pass_id: str, *, chunks: int, pods: int, now: float,
                   ttl: float) -> None:
        with _temporary_on_redis_error():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(keys.log_pass(pass_id), mapping={"total": chunks, "pods": pods,
                                                       "start": repr(now), "done": 0,
                                                       "lines": 0, "errors": 0, "lag": 0})
            pipe.expire(keys.log_pass(pass_id), int(ttl))
            pipe.execute()

    def chunk_done(self, pass_id: str, *, lines: int, errors: int, lag: float, now: float,
                   ttl: float) -> bool:
        """Counts one finished chunk; True when it was the pass's last (summary written)."""
        with _temporary_on_redis_error():
            return bool(self._chunk_done(keys=[keys.log_pass(pass_id), keys.LAST_LOGS],
                                         args=[lines, errors, repr(round(lag, 3)), repr(now),
                                               int(ttl)]))

    def record_summary(self, summary: Mapping[str, Any], *, ttl: float) -> None:
        with _temporary_on_redis_error():
            self.client.set(keys.LAST_LOGS, json.dumps(summary), ex=int(ttl))
