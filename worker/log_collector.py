"""Log collection, the shell: list bot pods → chunks; per bot: read, dedup, append, commit.

A pass (`collect`) lists our pods (live bots and scheduled-job pods), and hands chunks of them
to tasks. A chunk (`collect_chunk`) takes each bot in turn under that bot's writer lock:

1. load the bot's stream cursors from Redis;
2. read what is new in each pod's `bot` container (previous instance first after a restart),
   at most LOG_READ_CONCURRENCY reads at once per process;
3. plan the appends (one per day object) — each carries, in its S3 metadata, the position its
   streams reach once it has landed (the high-water mark, with a per-stream sequence number);
4. look at the target objects: a high-water mark AHEAD of Redis means an earlier writer wrote
   and died before committing — adopt it, and go back to 1 (those lines are never re-sent);
5. append conditionally on the ETag seen in 4 (a concurrent writer makes it fail, not clobber);
6. commit the new positions to Redis, fenced by the lock token (a writer that lost its lock
   commits nothing; S3 still says what it wrote).

Every line is therefore written at most once (steps 4 and 5) and at least once (a cursor only moves
after its lines are in S3).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.adapters.kube import BadRequest, NotFound
from worker.adapters.s3 import ObjectState
from worker.core import logcursor as lc
from worker.core import naming
from worker.core.errors import PermanentError, TemporaryError
from worker.runtime import Runtime

log = logging.getLogger("the0.logs")

POD_SELECTOR = (f"{naming.LABEL_MANAGED_BY} in "
                f"({naming.MANAGED_BY_BOT},{naming.MANAGED_BY_SCHEDULE})")
MAX_ADOPTIONS = 3  # rounds of "adopt a dead writer's marks, re-read" before giving up a pass


class LostLock(TemporaryError):
    """The bot's writer lock expired while we worked: stop writing, commit nothing."""


@dataclass
class BotResult:
    bot_id: str
    lines: int = 0
    writes: int = 0
    errors: int = 0
    busy: bool = False
    adopted: int = 0
    lag: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class ChunkResult:
    bots: int = 0
    lines: int = 0
    writes: int = 0
    errors: int = 0
    busy: int = 0
    adopted: int = 0
    lag: float = 0.0

    def add(self, bot: BotResult) -> None:
        self.bots += 1
        self.lines += bot.lines
        self.writes += bot.writes
        self.errors += bot.errors
        self.busy += int(bot.busy)
        self.adopted += bot.adopted
        self.lag = max(self.lag, bot.lag)

    def summary(self) -> dict[str, Any]:
        return {"bots": self.bots, "lines": self.lines, "writes": self.writes,
                "errors": self.errors, "busy": self.busy, "adopted": self.adopted,
                "lag_s": round(self.lag, 3)}


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts[:26] + "+00:00").timestamp()


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class LogCollector:
    def __init__(self, rt: Runtime, *,
                 after_read: Callable[[str], None] | None = None,
                 before_commit: Callable[[str], None] | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        # Test seams: called with the bot id after its logs were read / before its cursor
        # commit, to inject a crash at exactly that point in a real run.
        self.after_read = after_read
        self.before_commit = before_commit

    # ------------------------------------------------------------------ the pass
    def list_pods(self) -> list[lc.LogPod]:
        # A list each pass, not the reconcile's watched cache: the log protocol (which
        # container instance to read, from each pod's restart count) is proven on lists only.
        pods: list[lc.LogPod] = self.rt.kube.list_pods(POD_SELECTOR, keep=lc.log_pod)
        return pods

    def collect(self, *, send: Callable[[str, list[dict[str, Any]]], None]) -> dict[str, Any]:
        """One pass: list pods (a failed list sends nothing), sweep stale uploads, fan out."""
        s = self.settings
        started = self.rt.clock()
        pods = self.list_pods()
        chunks = lc.chunk_pods(pods, s.LOG_CHUNK_SIZE)
        pass_id = uuid.uuid4().hex
        state = self.rt.log_state
        store = self.rt.log_store
        store.ensure_bucket()
        swept = 0
        try:
            swept = store.abort_stale_uploads(
                f"{lc.OBJECT_PREFIX}/",
                older_than=datetime.now(UTC) - timedelta(seconds=s.LOG_UPLOAD_MAX_AGE))
        except TemporaryError as exc:
            log.warning("sweeping stale log uploads failed: %s", exc)
        if chunks:
            state.start_pass(pass_id, chunks=len(chunks), pods=len(pods), now=started,
                             ttl=max(s.LOG_SUMMARY_TTL, 10 * s.LOG_INTERVAL))
            for chunk in chunks:
                send(pass_id, [pod.to_message() for pod in chunk])
        else:
            state.record_summary({"at": started, "duration_s": 0.0, "ok": True, "pods": 0,
                                  "lines": 0, "lag_s": 0.0}, ttl=s.LOG_SUMMARY_TTL)
        return {"pods": len(pods), "chunks": len(chunks), "swept_uploads": swept,
                "pass": pass_id}

    def collect_chunk(self, pods: Sequence[lc.LogPod], *, pass_id: str | None = None
                      ) -> ChunkResult:
        result = ChunkResult()
        by_bot: dict[str, list[lc.LogPod]] = {}
        for pod in pods:
            by_bot.setdefault(pod.bot_id, []).append(pod)
        for bot_id, bot_pods in by_bot.items():
            try:
                result.add(self.collect_bot(bot_id, bot_pods))
            except TemporaryError as exc:
                log.warning("logs of bot %r: %s", bot_id[:64], exc)
                result.add(BotResult(bot_id, errors=1))
        if pass_id is not None:
            s = self.settings
            try:
                self.rt.log_state.chunk_done(pass_id, lines=result.lines, errors=result.errors,
                                             lag=result.lag, now=self.rt.clock(),
                                             ttl=s.LOG_SUMMARY_TTL)
            except TemporaryError as exc:
                log.warning("recording the log pass failed: %s", exc)
        return result

    def collect_before_delete(self, pod_name: str) -> BotResult | None:
        """Ships what a pod wrote since the last pass, just before the controller deletes it
        (its log goes with it). Best effort and never raises: stopping a bot must not wait
        on its logs. None when there was nothing to read or the read failed."""
        try:
            raw = self.rt.kube.get_pod(pod_name)
            pod = lc.log_pod(raw) if raw is not None else None
            if pod is None:
                return None
            self.rt.log_store.ensure_bucket_once()  # no log pass may have run yet
            return self.collect_bot(pod.bot_id, [pod])
        except (TemporaryError, PermanentError) as exc:
            log.warning("final log read of pod %s before its deletion failed: %s",
                        pod_name, exc)
            return None
        except Exception as exc:  # whatever breaks here, the bot must still be stopped
            log.warning("final log read of pod %s before its deletion failed: %s",
                        pod_name, type(exc).__name__)
            return None

    # ------------------------------------------------------------------ one bot
    def collect_bot(self, bot_id: str, pods: Sequence[lc.LogPod]) -> BotResult:
        s = self.settings
        state = self.rt.log_state
        token = state.acquire(bot_id, ttl=s.LOG_LOCK_TTL)
        if token is None:
            return BotResult(bot_id, busy=True)  # another worker has this bot right now
        try:
            result = BotResult(bot_id)
            for _ in range(MAX_ADOPTIONS):
                if self._collect_locked(bot_id, pods, token, result):
                    return result
            raise TemporaryError("high-water marks kept moving; retrying next pass")
        finally:
            state.release(bot_id, token)

    def _collect_locked(self, bot_id: str, pods: Sequence[lc.LogPod], token: str,
                        result: BotResult) -> bool:
        """One attempt; False when marks were adopted and the bot must be read again."""
        s = self.settings
        state, store = self.rt.log_state, self.rt.log_store
        cursors = {stream: lc.Position.loads(raw)
                   for stream, raw in state.load_cursors(bot_id).items()}
        batches = [b for pod in pods
                   if (b := self._read_pod(pod, cursors.get(pod.stream), result)) is not None]
        if self.after_read is not None:
            self.after_read(bot_id)
        writes, finals = lc.plan_writes(bot_id, batches)

        # 4. what do the target objects already hold?
        objects: dict[str, ObjectState | None] = {}
        adopted: dict[str, lc.Position] = {}
        for write in writes:
            if write.key in objects:
                continue
            objects[write.key] = current = store.head(write.key)
            for stream, mark in lc.decode_hwm(current.hwm if current else None).items():
                best = adopted.get(stream) or cursors.get(stream)
                if lc.ahead(mark, best):
                    adopted[stream] = mark
        now = self.rt.clock()
        if adopted:
            log.warning("bot %r: adopting high-water marks of an interrupted write for %d "
                        "stream(s)", bot_id[:64], len(adopted))
            result.adopted += len(adopted)
            if not state.commit(bot_id, token, {k: replace(p, at=now).dumps()
                                                for k, p in adopted.items()}, [],
                                ttl=s.LOG_CURSOR_TTL):
                raise LostLock("log lock lost before adopting marks")
            return False

        # 5. append, day by day
        last_key = ""
        for write in writes:
            if last_key == write.key:  # a second write to one object: its ETag moved
                objects[write.key] = store.head(write.key)
            if not state.renew(bot_id, token, ttl=s.LOG_LOCK_TTL):
                raise LostLock("log lock lost before writing")
            store.append(write.key, write.data, expected=objects[write.key],
                         hwm=lc.encode_hwm(write.hwm))
            last_key = write.key
            result.writes += 1
            result.lines += write.lines
            if write.oldest:
                result.lag = max(result.lag, now - _epoch(write.oldest))

        # 6. commit (fenced); forget streams of pods long gone
        updates = {stream: replace(final, at=now).dumps() for stream, final in finals.items()
                   if _moved(cursors.get(stream), final)}
        forget = lc.forgotten_streams(cursors, [p.stream for p in pods], now=now,
                                      keep_for=s.LOG_STREAM_FORGET)
        if self.before_commit is not None:
            self.before_commit(bot_id)
        if not state.commit(bot_id, token, updates, forget, ttl=s.LOG_CURSOR_TTL):
            raise LostLock("log lock lost before committing cursors (S3 holds the marks)")
        return True

    def _read_pod(self, pod: lc.LogPod, position: lc.Position | None,
                  result: BotResult) -> lc.StreamBatch | None:
        steps = lc.plan_steps(position, pod)
        if isinstance(steps, lc.Stale):
            result.notes.append(f"{pod.name}: status older than cursor, waiting")
            return None
        if not steps:
            return None
        batch = lc.StreamBatch(pod.stream, start=position or steps[0].start)
        observed = _rfc3339(self.rt.clock())
        for step in steps:
            try:
                with self.rt.log_reads():
                    body, truncated = self.rt.kube.read_log(
                        pod.name, container=lc.CONTAINER, previous=step.instance.previous,
                        since=step.start.since, limit_bytes=self.settings.LOG_READ_LIMIT)
            except NotFound:
                break  # the pod is gone: nothing more can be read from it
            except BadRequest as exc:
                if not (step.instance.previous or step.instance.terminated is not None):
                    # A running instance is never given up: try again next pass.
                    result.errors += 1
                    log.warning("reading log of %s refused: %s", pod.name, exc)
                    break
                # This finished instance's log is gone (e.g. no previous container any more):
                # only its crash line can still be written.
                log.info("log of %s (%s) unavailable: %s", pod.name, step.instance.key, exc)
                lc.give_up(batch, step, bot_id=pod.bot_id, pod=pod.name, observed_at=observed)
                continue
            except PermanentError as exc:
                # 401/403 (an RBAC or token change) and the like: an error, not a lost log.
                result.errors += 1
                log.warning("reading log of %s refused: %s", pod.name, exc)
                break
            except TemporaryError as exc:
                result.errors += 1
                log.warning("reading log of %s failed: %s", pod.name, exc)
                break
            outcome = lc.consume(batch, step, body, truncated=truncated, bot_id=pod.bot_id,
                                 pod=pod.name, observed_at=observed)
            if isinstance(outcome, lc.Mismatch):
                result.notes.append(f"{pod.name}: {outcome.reason}")
                log.info("log of %s not shipped this pass: %s", pod.name, outcome.reason)
                break
            if not outcome.done:
                break  # an instance not finished (or cut by the read limit): later ones wait
        return batch if batch.end is not None else None


def _moved(before: lc.Position | None, after: lc.Position) -> bool:
    return before is None or replace(before, at=0.0) != replace(after, at=0.0)
