"""Log collection, the pure part: cursors over kubelet log streams, NDJSON records, day split.

No I/O, no clock reads: the shell hands in pod status mappings and the raw bytes the kubelet
logs API returned (`timestamps=true`), and gets back records to append and cursor positions.

The kubelet API (and kwok, which reuses its code) gives a container instance's log filtered by
`sinceTime` (second granularity, inclusive), every line prefixed with its RFC 3339 nano
timestamp. The log file is append-only, so the lines with a timestamp >= S form an append-only
sequence too: a cursor is (S, how many lines of that sequence we already shipped). That count
survives identical timestamps and even out-of-order ones. After shipping, S moves to the second
of the last shipped line and the count is recomputed from the lines just read, so a re-read
costs about one second of log. A fingerprint of the last shipped line guards every re-read:
if the line we expect to have shipped last is not where it should be, the stream is not the one
the cursor describes (the instance restarted under us, or the file was rotated) and nothing is
shipped from it.

A "stream" is one container of one pod (pod uid + container name); its "instances" are the
container's successive runs (the kubelet keeps the current one and, via `previous`, one before).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from worker.core import naming

CONTAINER = "bot"
OBJECT_PREFIX = "logs"
# S3 user metadata key (sent as x-amz-meta-the0-hwm) carrying the high-water marks of a write.
META_HWM = "the0-hwm"
_FINGERPRINT_CHARS = 64
# S3 allows 2 KB of user metadata; stay below it with room for the key name.
META_BUDGET = 1800

_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,199}")


# ---------------------------------------------------------------------------- timestamps
def canonical_ts(raw: str) -> str | None:
    """An RFC 3339 timestamp as fixed-width UTC with 9 fractional digits, or None if invalid.
    The kubelet already writes this form for UTC clocks (the fast path)."""
    if len(raw) == 30 and _CANONICAL.fullmatch(raw):
        return raw
    match = _RFC3339.fullmatch(raw)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        tzinfo=UTC)
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
            when = datetime.fromtimestamp(when.timestamp() - offset, tz=UTC)
    except (ValueError, OverflowError):
        return None
    nanos = (fraction or "").ljust(9, "0")[:9]
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos}Z"


def second_of(ts: str) -> str:
    """The `sinceTime` value covering a canonical timestamp: its whole second, RFC 3339."""
    return ts[:19] + "Z"


def day_of(ts: str) -> str:
    """YYYYMMDD (UTC) of a canonical timestamp: the day object the line belongs to."""
    return ts[0:4] + ts[5:7] + ts[8:10]


# ---------------------------------------------------------------------------- records
def to_record(ts: str, content: str) -> str:
    """One NDJSON line (without newline) for one log line.

    A line that is a JSON object keeps its exact text, with "timestamp" added in front when it
    has none; any other line becomes {"timestamp", "message"}."""
    text = content.strip()
    if text.startswith("{") and text.endswith("}"):
        obj = _json_object(text)
        if obj is not None:
            if "timestamp" in obj:
                return text
            inner = text[1:-1].strip()
            head = '{"timestamp":"' + ts + '"'  # canonical: digits, "-", ":", ".", "T", "Z"
            return head + ("," + text[1:] if inner else "}")
    return '{"timestamp":"' + ts + '","message":' + json.dumps(
        content.rstrip("\r"), ensure_ascii=False) + "}"


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity are not JSON


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def crash_record(*, exit_code: int, ts: str, bot_id: str, pod: str) -> str:
    """The line appended when a bot container ends with a non-zero exit code."""
    return json.dumps({"level": "error", "message": f"Bot crashed with exit code {exit_code}",
                       "exit_code": exit_code, "timestamp": ts, "bot_id": bot_id, "pod": pod},
                      ensure_ascii=False, separators=(",", ":"))


def fingerprint(ts: str, content: str) -> str:
    """Identifies a shipped line on re-read: its timestamp and the start of its text (a line
    cut by the read limit and later read whole keeps the same fingerprint)."""
    digest = hashlib.blake2b(f"{ts} {content[:_FINGERPRINT_CHARS]}".encode("utf-8", "replace"),
                             digest_size=8)
    return digest.hexdigest()


def object_key(bot_id: str, day: str) -> str:
    """logs/<bot id>/<YYYYMMDD>.log. An id that would not be one plain path segment (a "/",
    "." or "..", spaces, control characters, very long) uses its stable label form instead."""
    segment = bot_id if _SAFE_ID.fullmatch(bot_id) else naming.label_value(bot_id)
    return f"{OBJECT_PREFIX}/{segment}/{day}.log"


# ---------------------------------------------------------------------------- positions
@dataclass(frozen=True)
class Position:
    """How far one stream has been shipped.

    `seq` grows by one with every write that moves the stream; it orders positions written by
    different workers (a larger `seq` is further along)."""

    instance: str          # the container instance being read ("" before the first)
    restarts: int          # its restartCount (instances are ordered by it)
    since: str | None      # sinceTime of the next read; None = from the instance's start
    skip: int              # lines of the `since` sequence already shipped
    lines: int = 0         # lines shipped from this instance
    fp: str = ""           # fingerprint of the last shipped line
    crash: bool = False    # crash line written for this instance
    done: bool = False     # instance finished and fully shipped: nothing more to read
    seq: int = 0
    at: float = 0.0        # when this position was stored (epoch s; for garbage collection)

    def encode(self) -> list[Any]:
        return [self.instance, self.restarts, self.since, self.skip, self.lines, self.fp,
                int(self.crash), int(self.done), self.seq, round(self.at, 3)]

    @classmethod
    def decode(cls, raw: Sequence[Any]) -> Position:
        return cls(instance=str(raw[0]), restarts=int(raw[1]),
                   since=None if raw[2] is None else str(raw[2]), skip=int(raw[3]),
                   lines=int(raw[4]), fp=str(raw[5]), crash=bool(raw[6]), done=bool(raw[7]),
                   seq=int(raw[8]), at=float(raw[9]) if len(raw) > 9 else 0.0)

    def dumps(self) -> str:
        return json.dumps(self.encode(), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | bytes) -> Position:
        return cls.decode(json.loads(text))


def fresh(instance: Instance, seq: int) -> Position:
    return Position(instance=instance.key, restarts=instance.restarts, since=None, skip=0,
                    seq=seq)


def encode_hwm(positions: Mapping[str, Position]) -> str:
    """The S3 metadata value: stream → position (without `at`). ASCII only."""
    return json.dumps({k: p.encode()[:9] for k, p in sorted(positions.items())},
                      separators=(",", ":"), ensure_ascii=True)


def decode_hwm(value: str | None) -> dict[str, Position]:
    if not value:
        return {}
    try:
        raw = json.loads(value)
        return {str(k): Position.decode(v) for k, v in raw.items()}
    except (ValueError, TypeError, IndexError, KeyError):
        return {}  # not ours / damaged: it claims nothing


def ahead(candidate: Position, current: Position | None) -> bool:
    """True when `candidate` (from an object's metadata) is further than `current` (Redis)."""
    return current is None or candidate.seq > current.seq


# ---------------------------------------------------------------------------- pods
@dataclass(frozen=True)
class Termination:
    exit_code: int
    finished_at: str | None  # canonical timestamp, if the status has one


@dataclass(frozen=True)
class Instance:
    key: str
    restarts: int
    previous: bool                 # read with previous=true
    terminated: Termination | None  # None while it runs


@dataclass(frozen=True)
class LogPod:
    """What a chunk needs to know about one pod (no secrets: names, uid, status)."""

    bot_id: str
    name: str
    uid: str
    last: Instance | None      # the previous instance (lastState.terminated)
    current: Instance | None   # the running or just-terminated instance

    @property
    def stream(self) -> str:
        return f"{self.uid}/{CONTAINER}"

    def to_message(self) -> dict[str, Any]:
        return {"bot_id": self.bot_id, "name": self.name, "uid": self.uid,
                "last": _instance_to_message(self.last),
                "current": _instance_to_message(self.current)}

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> LogPod:
        return cls(bot_id=str(data["bot_id"]), name=str(data["name"]), uid=str(data["uid"]),
                   last=_instance_from_message(data.get("last")),
                   current=_instance_from_message(data.get("current")))


def _instance_to_message(instance: Instance | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    term = instance.terminated
    return {"key": instance.key, "restarts": instance.restarts, "previous": instance.previous,
            "exit_code": None if term is None else term.exit_code,
            "finished_at": None if term is None else term.finished_at}


def _instance_from_message(data: Mapping[str, Any] | None) -> Instance | None:
    if not data:
        return None
    term = None if data.get("exit_code") is None else Termination(
        int(data["exit_code"]), data.get("finished_at"))
    return Instance(key=str(data["key"]), restarts=int(data["restarts"]),
                    previous=bool(data["previous"]), terminated=term)


def log_pod(pod: Mapping[str, Any]) -> LogPod | None:
    """The loggable view of a raw pod (None when it is not ours or has no bot container yet)."""
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    bot_id = annotations.get(naming.ANNOTATION_BOT_ID) or labels.get(naming.LABEL_BOT_ID)
    name, uid = metadata.get("name"), metadata.get("uid")
    if not (isinstance(bot_id, str) and bot_id and name and uid):
        return None
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or ():
        if container.get("name") == CONTAINER:
            last, current = instances(container)
            if last is None and current is None:
                return None  # never started: nothing to read yet
            return LogPod(bot_id=bot_id, name=str(name), uid=str(uid), last=last,
                          current=current)
    return None


def instances(status: Mapping[str, Any]) -> tuple[Instance | None, Instance | None]:
    """(previous instance, current instance) of a container status, as the kubelet serves them:
    `previous=true` reads lastState.terminated; the plain read serves the running or terminated
    instance, else (waiting to restart) the last terminated one. Instances are identified by
    containerID when the runtime reports one, else by their restart count."""
    restarts = int(status.get("restartCount") or 0)
    state = status.get("state") or {}
    last_state = (status.get("lastState") or {}).get("terminated")
    running, terminated = state.get("running"), state.get("terminated")
    current: Instance | None = None
    if running is not None or terminated is not None:
        cid = (terminated or {}).get("containerID") or status.get("containerID") or ""
        current = Instance(key=cid or f"#{restarts}", restarts=restarts, previous=False,
                           terminated=_termination(terminated))
    last: Instance | None = None
    if last_state is not None:
        last_restarts = restarts - 1 if current is not None else restarts
        last = Instance(key=last_state.get("containerID") or f"#{last_restarts}",
                        restarts=last_restarts, previous=True,
                        terminated=_termination(last_state))
        if current is not None and last.key == current.key:
            last = None  # a runtime reporting the same instance twice: read it once
    return last, current


def _termination(state: Mapping[str, Any] | None) -> Termination | None:
    if state is None:
        return None
    try:
        code = int(state.get("exitCode") or 0)
    except (TypeError, ValueError):
        code = 0
    finished = state.get("finishedAt")
    return Termination(code, canonical_ts(str(finished)) if finished else None)


# ---------------------------------------------------------------------------- planning reads
@dataclass(frozen=True)
class Step:
    """Read one instance of one stream from `start` (then maybe write its crash line)."""

    instance: Instance
    start: Position


@dataclass(frozen=True)
class Stale:
    """The pod status we hold is older than the cursor (another worker saw a newer instance):
    reading now could attribute one instance's lines to another, so this pod waits."""


def plan_steps(position: Position | None, pod: LogPod) -> list[Step] | Stale:
    """The reads that bring a stream up to date, oldest instance first."""
    known = [i for i in (pod.last, pod.current) if i is not None]
    newest = max(i.restarts for i in known)
    seq = position.seq if position is not None else 0
    if position is not None and position.instance:
        if position.restarts > newest:
            return Stale()
        for index, instance in enumerate(known):
            if instance.key == position.instance:
                steps = [] if position.done and _crash_done(instance, position) else [
                    Step(instance, position)]
                steps += [Step(later, fresh(later, seq)) for later in known[index + 1:]]
                return steps
        if position.restarts == newest and not any(
                i.key.startswith("#") for i in known):
            return Stale()  # same run number, different id: not something we can order
    # A stream we never read, or whose instances we missed: everything still available.
    return [Step(instance, fresh(instance, seq)) for instance in known]


def _crash_done(instance: Instance, position: Position) -> bool:
    term = instance.terminated
    return term is None or term.exit_code == 0 or position.crash


# ---------------------------------------------------------------------------- consuming reads
@dataclass(frozen=True)
class Line:
    ts: str
    content: str


@dataclass
class StreamBatch:
    """New lines of one stream from one or more steps, and the positions they lead to."""

    stream: str
    start: Position
    records: list[tuple[str, str]] = field(default_factory=list)  # (ts, NDJSON text)
    # Position after each record, filled lazily for the few records that end a write.
    _positions: list[Position | None] = field(default_factory=list)
    end: Position | None = None

    def position_after(self, count: int) -> Position:
        """Where the stream is after its first `count` records have been written."""
        if count == 0:
            return self.start
        found = self._positions[count - 1]
        assert found is not None
        return found

    @property
    def final(self) -> Position:
        return self.end if self.end is not None else self.start


@dataclass(frozen=True)
class Mismatch:
    """The read does not continue the cursor: the instance changed or its file was rotated."""

    reason: str


def parse_body(body: bytes, *, complete: bool) -> tuple[list[Line], Line | None]:
    """Lines of a logs API response with timestamps. An unterminated last line is a line only
    when `complete` (the instance ended and the response was not cut by limitBytes); otherwise
    it is returned apart as the partial tail."""
    text = body.decode("utf-8", "replace")
    parts = text.split("\n")
    tail = parts.pop()  # "" when the body ends with a newline
    if tail and complete:
        parts.append(tail)
        tail = ""
    lines: list[Line] = []
    previous_ts = "1970-01-01T00:00:00.000000000Z"
    for raw in (*parts, tail) if tail else parts:
        stamp, sep, content = raw.partition(" ")
        ts = canonical_ts(stamp) if sep else None
        if ts is None:  # the kubelet always prefixes; keep the line, dated like its neighbour
            ts, content = previous_ts, raw
        lines.append(Line(ts, content))
        previous_ts = ts
    partial = lines.pop() if tail else None
    return lines, partial


def consume(batch: StreamBatch, step: Step, body: bytes, *, truncated: bool,
            bot_id: str, pod: str, observed_at: str) -> Position | Mismatch:
    """Adds the new lines of one read to `batch`; returns the position after them (with the
    crash line when the instance ended non-zero). `observed_at` dates a crash line whose
    status has no finishedAt."""
    start = step.start
    finished = step.instance.terminated is not None
    lines, partial = parse_body(body, complete=finished and not truncated)
    if truncated and partial is not None and start.skip == len(lines) \
            and len(partial.content) >= _FINGERPRINT_CHARS:
        # A line longer than what the read limit leaves: ship what fits, skip the rest of it.
        lines.append(partial)
        partial = None
    if truncated and partial is not None and start.skip == len(lines) + 1 and start.since \
            and fingerprint(partial.ts, partial.content) == start.fp:
        # We are just past a line cut by the read limit and nothing after it fits in one read
        # from this second: continue at the next second (the rest of this second is lost).
        position = replace(start, since=_next_second(start.since), skip=0)
        batch.end = position
        return position
    if start.skip > len(lines):
        return Mismatch(f"expected at least {start.skip} lines since {start.since}, "
                        f"got {len(lines)}")
    if start.skip and start.fp:
        last = lines[start.skip - 1]
        if fingerprint(last.ts, last.content) != start.fp:
            return Mismatch("the last shipped line is not where the cursor says")
    new = lines[start.skip:]
    position = start
    if new:
        position = _advance(start, lines, len(new))
        for index, line in enumerate(new):
            batch.records.append((line.ts, to_record(line.ts, line.content)))
            is_last = index == len(new) - 1
            batch._positions.append(position if is_last else None)
        # Intermediate positions are computed only if a write boundary needs one.
        _fill_positions(batch, start, lines, len(new))
    complete = finished and not truncated and partial is None
    term = step.instance.terminated
    if complete and term is not None and term.exit_code != 0 and not position.crash:
        ts = term.finished_at or observed_at
        if position.lines and new and new[-1].ts > ts:
            ts = new[-1].ts  # the crash line ends the instance's log
        position = replace(position, crash=True)
        batch.records.append((ts, crash_record(exit_code=term.exit_code, ts=ts, bot_id=bot_id,
                                               pod=pod)))
        batch._positions.append(position)
    if complete:
        position = replace(position, done=True)
    batch.end = position
    return position


def give_up(batch: StreamBatch, step: Step, *, bot_id: str, pod: str,
            observed_at: str) -> Position:
    """The instance's log can no longer be read (gone from the node): ship nothing more from
    it, but still write its crash line, and move past it."""
    position = batch.end if batch.end is not None and batch.end.instance == step.start.instance \
        else step.start
    term = step.instance.terminated
    if term is not None and term.exit_code != 0 and not position.crash:
        ts = term.finished_at or observed_at
        position = replace(position, crash=True)
        batch.records.append((ts, crash_record(exit_code=term.exit_code, ts=ts, bot_id=bot_id,
                                               pod=pod)))
        batch._positions.append(position)
    position = replace(position, done=True)
    batch.end = position
    return position


def _next_second(since: str) -> str:
    when = datetime.strptime(since[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return datetime.fromtimestamp(when.timestamp() + 1, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _advance(start: Position, lines: Sequence[Line], shipped_new: int) -> Position:
    """The position after the first `start.skip + shipped_new` lines of a read from
    `start.since`: sinceTime = second of the last shipped line, skip = shipped lines at or
    after that second."""
    upto = start.skip + shipped_new
    last = lines[upto - 1]
    since = second_of(last.ts)
    floor = since[:19]
    skip = sum(1 for line in lines[:upto] if line.ts[:19] >= floor)
    return replace(start, since=since, skip=skip, lines=start.lines + shipped_new,
                   fp=fingerprint(last.ts, last.content), done=False)


def _fill_positions(batch: StreamBatch, start: Position, lines: Sequence[Line],
                    count: int) -> None:
    # Positions are needed at write boundaries only; computing each is O(lines). Compute the
    # ones missing lazily here for the (rare) batches that span days; one day costs nothing.
    if count <= 1:
        return
    base = len(batch._positions) - count
    days = {day_of(line.ts) for line in lines[start.skip:start.skip + count]}
    if len(days) == 1:
        return
    for index in range(count - 1):
        batch._positions[base + index] = _advance(start, lines, index + 1)


# ---------------------------------------------------------------------------- planning writes
@dataclass(frozen=True)
class Write:
    """One append: the records of one day object, and the high-water marks it carries."""

    key: str
    day: str
    data: bytes
    hwm: dict[str, Position]
    lines: int
    oldest: str  # earliest timestamp among its records (for the lag figure)


def plan_writes(bot_id: str, batches: Iterable[StreamBatch]) -> tuple[list[Write],
                                                                       dict[str, Position]]:
    """Appends in ascending day order, and each stream's final position.

    Each write's metadata holds, for every stream it moves, the position up to which that
    stream is completely written once this write (and the earlier ones) landed, with `seq`
    bumped by one per write. A crash after any write therefore leaves S3 saying exactly what
    is already there."""
    batches = [b for b in batches if b.records or b.end is not None]
    by_day: dict[str, list[tuple[str, int, str]]] = {}
    for order, batch in enumerate(batches):
        for ts, text in batch.records:
            by_day.setdefault(day_of(ts), []).append((ts, order, text))
    writes: list[Write] = []
    seqs = {b.stream: b.start.seq for b in batches}
    finals: dict[str, Position] = {}
    for day in sorted(by_day):
        entries = sorted(by_day[day], key=lambda e: (e[0], e[1]))  # stable by time
        hwm: dict[str, Position] = {}
        for batch in batches:
            done = _written_prefix(batch, day)
            if done == 0:
                continue
            seqs[batch.stream] += 1
            hwm[batch.stream] = replace(batch.position_after(done), seq=seqs[batch.stream])
        data = "".join(text + "\n" for _, _, text in entries).encode("utf-8")
        writes.extend(_split_by_budget(bot_id, day, entries, batches, hwm, data))
    for batch in batches:
        if batch.records:
            seq = seqs[batch.stream]
        elif replace(batch.final, seq=0, at=0.0) != replace(batch.start, seq=0, at=0.0):
            seq = batch.start.seq + 1  # moved without lines (e.g. finished): Redis only
        else:
            seq = batch.start.seq
        finals[batch.stream] = replace(batch.final, seq=seq)
    return writes, finals


def _written_prefix(batch: StreamBatch, day: str) -> int:
    """How many of the batch's records (in stream order) are in days <= `day`, counting only
    the unbroken prefix: that much of the stream is complete once `day` is written."""
    count = 0
    for ts, _ in batch.records:
        if day_of(ts) > day:
            break
        count += 1
    if count and batch._positions[count - 1] is None:
        # A boundary whose position was not computed (records out of day order): stop
        # before it; the last written write carries the full position.
        while count and batch._positions[count - 1] is None:
            count -= 1
    return count


def _split_by_budget(bot_id: str, day: str, entries: list[tuple[str, int, str]],
                     batches: list[StreamBatch], hwm: dict[str, Position],
                     data: bytes) -> list[Write]:
    key = object_key(bot_id, day)
    if len(encode_hwm(hwm)) <= META_BUDGET:
        return [Write(key=key, day=day, data=data, hwm=hwm, lines=len(entries),
                      oldest=entries[0][0])]
    # Too many streams for one metadata header: one write per stream (rare: many job pods).
    writes = []
    for order, batch in enumerate(batches):
        if batch.stream not in hwm:
            continue
        mine = [(ts, text) for ts, o, text in entries if o == order]
        writes.append(Write(key=key, day=day,
                            data="".join(t + "\n" for _, t in mine).encode("utf-8"),
                            hwm={batch.stream: hwm[batch.stream]}, lines=len(mine),
                            oldest=mine[0][0] if mine else ""))
    return writes


# ---------------------------------------------------------------------------- fan-out
def chunk_pods(pods: Iterable[LogPod], size: int) -> list[list[LogPod]]:
    """Chunks of about `size` pods that never split one bot's pods (one writer per bot)."""
    by_bot: dict[str, list[LogPod]] = {}
    for pod in pods:
        by_bot.setdefault(pod.bot_id, []).append(pod)
    chunks: list[list[LogPod]] = []
    current: list[LogPod] = []
    for bot_id in sorted(by_bot):
        group = sorted(by_bot[bot_id], key=lambda p: p.name)
        if current and len(current) + len(group) > size:
            chunks.append(current)
            current = []
        current.extend(group)
    if current:
        chunks.append(current)
    return chunks


def forgotten_streams(cursors: Mapping[str, Position], live: Iterable[str], *, now: float,
                      keep_for: float) -> list[str]:
    """Streams whose pod is gone (absent from `live`) and whose cursor has not moved for
    `keep_for` seconds: their log can never be read again."""
    alive = set(live)
    return sorted(stream for stream, position in cursors.items()
                  if stream not in alive and now - position.at > keep_for)
