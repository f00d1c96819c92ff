"""Log collection, the shell: list bot pods → chunks; per bot, per stream: read, store, commit.

A pass (`collect`) lists our pods (live bots and scheduled-job pods), and hands chunks of them
to tasks. A chunk (`collect_chunk`) takes each bot in turn under that bot's writer lock, and each
of the bot's streams (a pod's `bot` container, oldest pod first) in turn:

1. the stream's cursor comes from Redis (loaded once per bot);
2. what is new in the stream is read AS IT ARRIVES (previous instance first after a restart): at
   most LOG_READ_CONCURRENCY streams at once per process, each holding one line (at most
   LOG_LINE_MAX_BYTES) and one batch of records (at most `write_bytes`), never a whole read —
   so a chunk's memory does not depend on how the bot shapes its output;
3. records are batched per UTC day; a batch's first record looks at the day's current object
   (HEAD): a high-water mark there AHEAD of Redis means an earlier writer wrote and died before
   committing — adopt it, and read that stream again from there (those lines are never re-sent);
4. the batch applies the bot's daily budget (LOG_BOT_DAILY_BYTES) as records arrive, then is
   written conditionally on the ETag seen in 3 (a concurrent writer makes it fail, not clobber),
   carrying in the same request the stream's new position (the high-water mark) and the day's
   ledger (budget spent, lines dropped, parts rotated out: worker/core/logday.py);
5. right after each write the position is committed to Redis, fenced by the lock token (a writer
   that lost its lock commits nothing; S3 still says what it wrote).

Every line is therefore written at most once (3 and 4) and at least once (a cursor only moves
after its lines are in S3), across any number of writes per pass.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.adapters.kube import BadRequest, NotFound
from worker.adapters.kubelog import LogReadFailed, LogReadRefused, open_log
from worker.adapters.s3 import ObjectState
from worker.core import logcursor as lc
from worker.core import logday, logrecord, naming
from worker.core.errors import PermanentError, TemporaryError
from worker.core.metrics import LOG_BYTES, LOG_LINES
from worker.runtime import Runtime

log = logging.getLogger("the0.logs")

POD_SELECTOR = (f"{naming.LABEL_MANAGED_BY} in "
                f"({naming.MANAGED_BY_BOT},{naming.MANAGED_BY_SCHEDULE})")
MAX_ADOPTIONS = 3  # rounds of "adopt a dead writer's mark, re-read" per stream before giving up
MAX_WRITE_BYTES = 1024 * 1024  # records per write (and held per stream) at most


class LostLock(TemporaryError):
    """The bot's writer lock expired while we worked: stop writing, commit nothing."""


class _Restart(Exception):  # control flow, not an error
    """The stream's own high-water mark was adopted: read it again from there."""


@dataclass
class BotResult:
    bot_id: str
    lines: int = 0     # bot lines stored
    dropped: int = 0   # bot lines dropped: the day's budget was spent
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
    dropped: int = 0
    writes: int = 0
    errors: int = 0
    busy: int = 0
    adopted: int = 0
    lag: float = 0.0

    def add(self, bot: BotResult) -> None:
        self.bots += 1
        self.lines += bot.lines
        self.dropped += bot.dropped
        self.writes += bot.writes
        self.errors += bot.errors
        self.busy += int(bot.busy)
        self.adopted += bot.adopted
        self.lag = max(self.lag, bot.lag)

    def summary(self) -> dict[str, Any]:
        return {"bots": self.bots, "lines": self.lines, "dropped": self.dropped,
                "writes": self.writes, "errors": self.errors, "busy": self.busy,
                "adopted": self.adopted, "lag_s": round(self.lag, 3)}


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts[:26] + "+00:00").timestamp()


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _moved(before: lc.Position | None, after: lc.Position) -> bool:
    return before is None or replace(before, at=0.0, seq=0) != replace(after, at=0.0, seq=0)


@dataclass
class _Bot:
    """One bot's collection in progress, under its writer lock."""

    bot_id: str
    token: str
    cursors: dict[str, lc.Position]
    result: BotResult
    written: bool = False  # a write was made (the after_read seam fires before the first)


class LogCollector:
    def __init__(self, rt: Runtime, *,
                 after_read: Callable[[str], None] | None = None,
                 before_commit: Callable[[str], None] | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        # Test seams: called with the bot id once its first lines were read, just before its
        # first write / before each cursor commit that follows a write, to inject a crash at
        # exactly that point in a real run.
        self.after_read = after_read
        self.before_commit = before_commit
        part = self.settings.LOG_PART_BYTES
        self.write_bytes = min(MAX_WRITE_BYTES, max(16 * 1024, part // 4))

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
            bot = _Bot(bot_id, token, {stream: lc.Position.loads(raw)
                                       for stream, raw in state.load_cursors(bot_id).items()},
                       BotResult(bot_id))
            for pod in sorted(pods, key=lambda p: (p.started, p.name)):  # oldest first
                for _ in range(MAX_ADOPTIONS):
                    try:
                        self._collect_stream(bot, pod)
                        break
                    except _Restart:
                        continue
                else:
                    raise TemporaryError("high-water marks kept moving; retrying next pass")
            # Forget the streams of pods long gone (and refresh the cursors' time-to-live).
            forget = lc.forgotten_streams(bot.cursors, [p.stream for p in pods],
                                          now=self.rt.clock(), keep_for=s.LOG_STREAM_FORGET)
            if not state.commit(bot_id, token, {}, forget, ttl=s.LOG_CURSOR_TTL):
                raise LostLock("log lock lost before committing cursors (S3 holds the marks)")
            return bot.result
        finally:
            state.release(bot_id, token)

    def _collect_stream(self, bot: _Bot, pod: lc.LogPod) -> None:
        position = bot.cursors.get(pod.stream)
        steps = lc.plan_steps(position, pod)
        if isinstance(steps, lc.Stale):
            bot.result.notes.append(f"{pod.name}: status older than cursor, waiting")
            return
        if not steps:
            return
        observed = _rfc3339(self.rt.clock())
        # One stream in flight per read slot, from its first read to its last write: what a
        # stream holds (a line, a batch, an S3 write) is bounded per slot.
        with self.rt.log_reads():
            writer = _StreamWriter(self, bot, pod.stream, position or steps[0].start)
            for step in steps:
                finish = self._read_step(writer, pod, step, observed)
                if finish is None:
                    break
                if finish.crash is not None:
                    ts, text = finish.crash
                    writer.add(logday.Entry(ts, (text + "\n").encode(), bot=False),
                               after=finish.position)
                else:
                    writer.pending = finish.position
                if not finish.position.done:
                    break  # an instance not finished (or cut by the read limit): later ones wait
            writer.close()

    def _read_step(self, writer: _StreamWriter, pod: lc.LogPod, step: lc.Step,
                   observed: str) -> lc.Finish | None:
        """Reads one instance from its start position, handing each new line to `writer` as it
        arrives. None: nothing more to do for this stream this pass."""
        s = self.settings
        result = writer.bot.result
        reader = lc.StreamRead(step, line_max=s.LOG_LINE_MAX_BYTES)
        truncated = partial = False
        try:
            with open_log(self.rt.kube, pod.name, container=lc.CONTAINER,
                          previous=step.instance.previous, since=step.start.since,
                          limit_bytes=s.LOG_READ_LIMIT) as body:
                try:
                    for raw, cut, ended in lc.split_lines(body.chunks(), keep=reader.keep):
                        line = reader.parse(raw, cut)
                        if not ended and not reader.take_tail(line, truncated=body.truncated):
                            partial = True
                            break
                        if not reader.shipping:
                            mismatch = reader.feed(line)
                            if mismatch is not None:
                                result.notes.append(f"{pod.name}: {mismatch.reason}")
                                log.info("log of %s not shipped this pass: %s", pod.name,
                                         mismatch.reason)
                                return None
                            continue
                        writer.add_line(reader, line)
                        if reader.full:
                            truncated = True  # the rest of this read follows next pass
                            break
                except LogReadFailed as exc:
                    # Cut mid-body: what arrived whole is stored; the rest next pass.
                    result.errors += 1
                    log.warning("reading log of %s failed: %s", pod.name, exc)
                    truncated = True
                truncated = truncated or body.truncated
        except NotFound:
            return None  # the pod is gone: nothing more can be read from it
        except BadRequest as exc:
            if not (step.instance.previous or step.instance.terminated is not None):
                # A running instance is never given up: try again next pass.
                result.errors += 1
                log.warning("reading log of %s refused: %s", pod.name, exc)
                return None
            # This finished instance's log is gone (e.g. no previous container any more): only
            # its crash line can still be written.
            log.info("log of %s (%s) unavailable: %s", pod.name, step.instance.key, exc)
            return lc.give_up(step, bot_id=pod.bot_id, pod=pod.name, observed_at=observed)
        except LogReadRefused as exc:
            # 401/403 (an RBAC or token change) and the like: an error, not a lost log.
            result.errors += 1
            log.warning("reading log of %s refused: %s", pod.name, exc)
            return None
        except LogReadFailed as exc:
            result.errors += 1
            log.warning("reading log of %s failed: %s", pod.name, exc)
            return None
        finish = reader.finish(truncated=truncated, partial=partial, bot_id=pod.bot_id,
                               pod=pod.name, observed_at=observed)
        if isinstance(finish, lc.Mismatch):
            result.notes.append(f"{pod.name}: {finish.reason}")
            log.info("log of %s not shipped this pass: %s", pod.name, finish.reason)
            return None
        return finish


class _StreamWriter:
    """One stream's records, batched per UTC day and written (steps 3 to 5 of the module doc).
    Holds at most one batch (`write_bytes` of records) at a time."""

    def __init__(self, collector: LogCollector, bot: _Bot, stream: str,
                 start: lc.Position) -> None:
        self.collector = collector
        self.rt = collector.rt
        self.settings = collector.settings
        self.bot = bot
        self.stream = stream
        self.committed = start      # the position Redis holds for this stream
        self.seq = start.seq
        self.batch: logday.Batch | None = None
        self.seen: ObjectState | None = None  # the batch's current part, as its first record saw it
        # Where the stream stands after the last record added (a reader's position is computed
        # when a write needs it, not per line).
        self._pending: Callable[[], lc.Position] = lambda: start

    @property
    def pending(self) -> lc.Position:
        return self._pending()

    @pending.setter
    def pending(self, position: lc.Position) -> None:
        self._pending = lambda: position

    def add_line(self, reader: lc.StreamRead, line: lc.Line) -> None:
        text = (logrecord.bot_record(line.ts, line.content, cut=line.cut) + "\n").encode()
        entry = logday.Entry(line.ts, text, bot=True, output=line.size + 1, cut=line.cut > 0)
        self._make_room(entry)
        reader.feed(line)
        self._take(entry, reader.position)

    def add(self, entry: logday.Entry, *, after: lc.Position) -> None:
        self._make_room(entry)
        self._take(entry, lambda: after)

    def _make_room(self, entry: logday.Entry) -> None:
        """Writes the batch first when `entry` belongs to another day or would overflow it."""
        batch = self.batch
        if batch is not None and (batch.day != lc.day_of(entry.ts)
                                  or batch.size + len(entry.text) > self.collector.write_bytes):
            self.flush()
        if self.batch is None:
            self._open(lc.day_of(entry.ts))

    def _take(self, entry: logday.Entry, after: Callable[[], lc.Position]) -> None:
        assert self.batch is not None
        self.batch.add(entry)
        self._pending = after

    def _open(self, day: str) -> None:
        """Starts a batch for `day`: looks at the day's current part (ETag, marks, ledger) and
        adopts a mark an interrupted writer left ahead of Redis."""
        bot = self.bot
        store, state = self.rt.log_store, self.rt.log_state
        seen = store.head(lc.object_key(bot.bot_id, day))
        adopted = {stream: mark for stream, mark in
                   lc.decode_hwm(seen.hwm if seen else None).items()
                   if lc.ahead(mark, bot.cursors.get(stream))}
        if adopted:
            log.warning("bot %r: adopting high-water marks of an interrupted write for %d "
                        "stream(s)", bot.bot_id[:64], len(adopted))
            now = self.rt.clock()
            marks = {stream: replace(mark, at=now) for stream, mark in adopted.items()}
            if not state.commit(bot.bot_id, bot.token, {k: p.dumps() for k, p in marks.items()},
                                [], ttl=self.settings.LOG_CURSOR_TTL):
                raise LostLock("log lock lost before adopting marks")
            bot.cursors.update(marks)
            bot.result.adopted += len(marks)
            if self.stream in marks:
                raise _Restart  # what we read is already written: read again from the mark
        self.seen = seen
        ledger = logday.Ledger.decode(seen.ledger if seen else None,
                                      size=seen.size if seen else 0)
        self.batch = logday.Batch(day=day, before=ledger,
                                  budget=self.settings.LOG_BOT_DAILY_BYTES)

    def flush(self) -> None:
        """Writes the batch (one conditional S3 write, maybe preceded by a rotation) with the
        stream's new position and the day's ledger, then commits the position."""
        batch, seen = self.batch, self.seen
        self.batch = self.seen = None
        if batch is None or batch.empty:
            return
        bot, s = self.bot, self.settings
        store, state = self.rt.log_store, self.rt.log_state
        if not bot.written and self.collector.after_read is not None:
            self.collector.after_read(bot.bot_id)
        bot.written = True
        self.seq += 1
        position = replace(self.pending, seq=self.seq)
        plan = logday.plan_write(bot_id=bot.bot_id, batch=batch,
                                 current_size=seen.size if seen else None,
                                 part_bytes=s.LOG_PART_BYTES)
        if not state.renew(bot.bot_id, bot.token, ttl=s.LOG_LOCK_TTL):
            raise LostLock("log lock lost before writing")
        hwm = lc.encode_hwm({self.stream: position})
        ledger = plan.ledger.encode()
        if plan.archive_to is not None:
            store.archive(plan.key, plan.archive_to, expected=seen, extra=plan.archive_extra)
        if plan.replace is not None:
            store.put(plan.key, plan.replace, expected=seen, hwm=hwm, ledger=ledger)
        elif plan.append is not None:
            store.append(plan.key, plan.append, expected=seen, hwm=hwm, ledger=ledger)
        elif plan.reseal is not None:
            existing = store.read(plan.key, expected=seen) or b""
            store.put(plan.key, logday.resealed(existing, plan.marker, plan.reseal),
                      expected=seen, hwm=hwm, ledger=ledger)
        self._count(batch, plan.ledger)
        if self.collector.before_commit is not None:
            self.collector.before_commit(bot.bot_id)
        self._commit(position)

    def _count(self, batch: logday.Batch, after: logday.Ledger) -> None:
        result, metrics = self.bot.result, self.rt.metrics
        result.writes += 1
        result.lines += batch.lines
        result.dropped += batch.dropped
        if batch.oldest:
            result.lag = max(result.lag, self.rt.clock() - _epoch(batch.oldest))
        metrics.inc(LOG_LINES, float(batch.lines), outcome="stored")
        metrics.inc(LOG_BYTES, float(after.written - batch.before.written), outcome="stored")
        if batch.truncated:
            metrics.inc(LOG_LINES, float(batch.truncated), outcome="truncated")
        if batch.dropped:
            metrics.inc(LOG_LINES, float(batch.dropped), outcome="dropped")
            metrics.inc(LOG_BYTES, float(after.dropped_bytes - batch.before.dropped_bytes),
                        outcome="dropped")
            if not batch.before.sealed:
                log.warning("bot %r: daily log budget of %d bytes spent for %s; its further "
                            "lines of that day are dropped", self.bot.bot_id[:64],
                            batch.budget, batch.day)

    def _commit(self, position: lc.Position) -> None:
        bot = self.bot
        position = replace(position, at=self.rt.clock())
        if not self.rt.log_state.commit(bot.bot_id, bot.token, {self.stream: position.dumps()},
                                        [], ttl=self.settings.LOG_CURSOR_TTL):
            raise LostLock("log lock lost before committing cursors (S3 holds the marks)")
        bot.cursors[self.stream] = self.committed = position

    def close(self) -> None:
        """Writes what is batched; a stream that moved without records (an instance finished,
        a jump past a cut line) moves in Redis alone."""
        if self.batch is not None:
            self.flush()
        final = self.pending
        if _moved(self.committed, final):
            self.seq += 1
            self._commit(replace(final, seq=self.seq))
