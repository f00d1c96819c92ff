"""Log collection, the pure part: cursors over kubelet log streams, read line by line.

No I/O, no clock reads: the shell hands in pod status mappings and, line by line, the bytes the
kubelet logs API streams (`timestamps=true`), and gets back the lines to store and cursor
positions. Nothing here holds a whole read: one line (at most the line limit) and one count per
distinct second of the read. Records: worker/core/logrecord.py; day objects: logday.py.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from worker.core import logrecord, naming

CONTAINER = "bot"
OBJECT_PREFIX = "logs"
# S3 user metadata key (sent as x-amz-meta-the0-hwm) carrying the high-water marks of a write.
META_HWM = "the0-hwm"
_FINGERPRINT_CHARS = 64
# S3 allows 2 KB of user metadata; stay below it with room for the key name.
META_BUDGET = 1800
# Distinct seconds one read may span before it stops (the rest follows next pass): bounds the
# per-second line counts a read keeps to compute its cursor (~100 bytes each).
MAX_READ_SECONDS = 20_000
_PREFIX_MAX = 64  # bytes a line's timestamp prefix may take ("2026-11-28T10:00:00.123456789Z ")

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
# The NDJSON records themselves are written by worker/core/logrecord.py.
crash_record = logrecord.crash_record


def fingerprint(ts: str, content: str) -> str:
    """Identifies a shipped line on re-read: its timestamp and the start of its text (a line
    cut by the read limit and later read whole keeps the same fingerprint)."""
    digest = hashlib.blake2b(f"{ts} {content[:_FINGERPRINT_CHARS]}".encode("utf-8", "replace"),
                             digest_size=8)
    return digest.hexdigest()


def object_key(bot_id: str, day: str) -> str:
    """logs/<bot id>/<YYYYMMDD>.log. An id that would not be one plain path segment (a "/",
    "." or "..", spaces, control characters, very long) uses its stable label form instead,
    and so does one that ends like a hashed label (else it could name another id's logs)."""
    readable = _SAFE_ID.fullmatch(bot_id) and not naming.ends_like_a_hash(bot_id)
    segment = bot_id if readable else naming.label_value(bot_id)
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
    started: str = ""          # the pod's status.startTime (a bot's pods are read oldest first)

    @property
    def stream(self) -> str:
        return f"{self.uid}/{CONTAINER}"

    def to_message(self) -> dict[str, Any]:
        return {"bot_id": self.bot_id, "name": self.name, "uid": self.uid,
                "last": _instance_to_message(self.last),
                "current": _instance_to_message(self.current), "started": self.started}

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> LogPod:
        return cls(bot_id=str(data["bot_id"]), name=str(data["name"]), uid=str(data["uid"]),
                   last=_instance_from_message(data.get("last")),
                   current=_instance_from_message(data.get("current")),
                   started=str(data.get("started") or ""))


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
                          current=current, started=str(status.get("startTime") or ""))
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
    """One line of a read: its timestamp and (at most the line limit of) its text."""

    ts: str
    content: str
    cut: int = 0   # bytes of the line not kept (longer than the line limit)
    size: int = 0  # bytes the bot printed on it (without the newline), cut ones included


@dataclass(frozen=True)
class Mismatch:
    """The read does not continue the cursor: the instance changed or its file was rotated."""

    reason: str


@dataclass(frozen=True)
class Finish:
    """Where a read leaves its stream, and the crash line to store when the instance ended
    non-zero (timestamp, record)."""

    position: Position
    crash: tuple[str, str] | None = None


def split_lines(chunks: Iterable[bytes], *, keep: int) -> Iterator[tuple[bytes, int, bool]]:
    """The lines of a byte stream, in order: (the line's first `keep` bytes, how many more it
    had, whether it ended with a newline). Holds at most one chunk and `keep` bytes of one line,
    however the stream is shaped (one 8 MiB line, or millions of empty ones)."""
    pending = bytearray()
    over = 0
    for chunk in chunks:
        parts = chunk.split(b"\n")
        last = parts.pop()
        for index, part in enumerate(parts):
            if index == 0 and (pending or over):
                room = keep - len(pending)
                pending += part[:room]
                yield bytes(pending), over + max(0, len(part) - room), True
                pending.clear()
                over = 0
            elif len(part) <= keep:
                yield part, 0, True
            else:
                yield part[:keep], len(part) - keep, True
        room = keep - len(pending)  # pending is empty here unless the line goes on
        pending += last[:room]
        over += max(0, len(last) - room)
    if pending or over:
        yield bytes(pending), over, False


def _utf8_prefix(data: bytes) -> bytes:
    """`data` without a multi-byte character cut in two at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the start of the last character
            width = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else \
                3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return data if width <= back else data[:-back]
    return data


class StreamRead:
    """One read of one container instance (one `Step`), consumed line by line.

    The shell hands in the lines as they arrive (`parse`, then `feed`); lines already shipped
    (the cursor's `skip`) are checked, not shipped; `position()` is where the stream stands after
    the last line fed, as a cursor a later read can resume from. Memory: one line and a count per
    distinct second of the read (a read spanning more than `max_seconds` seconds stops there; the
    rest follows next pass)."""

    def __init__(self, step: Step, *, line_max: int, max_seconds: int = MAX_READ_SECONDS) -> None:
        self.step = step
        self.start = step.start
        self.line_max = line_max
        self.max_seconds = max_seconds
        self.count = 0       # lines fed (the `since` sequence so far)
        self.shipped = 0     # of which new (past the cursor's skip)
        self.seconds: dict[str, int] = {}
        self.last: Line | None = None
        self.previous_ts = "1970-01-01T00:00:00.000000000Z"
        self.jump: Position | None = None

    @property
    def keep(self) -> int:
        """Bytes of a raw line worth holding: the line limit plus a timestamp prefix."""
        return self.line_max + _PREFIX_MAX

    @property
    def shipping(self) -> bool:
        """Whether the next line fed is a new one (to store) rather than one already shipped."""
        return self.count >= self.start.skip

    @property
    def full(self) -> bool:
        """The read has spanned as many distinct seconds as one read may: stop it here."""
        return self.shipping and len(self.seconds) >= self.max_seconds

    def parse(self, raw: bytes, cut: int = 0) -> Line:
        """A raw line of the logs API (`timestamps=true`): "<RFC 3339 nano> <text>". A line
        without a valid prefix (the kubelet always writes one) is kept whole, dated like the line
        before it."""
        space = raw.find(b" ", 0, _PREFIX_MAX)
        ts = canonical_ts(raw[:space].decode("ascii", "replace")) if space > 0 else None
        body = raw
        if ts is None:
            ts = self.previous_ts
        else:
            body = raw[space + 1:]
        if len(body) > self.line_max:
            kept = _utf8_prefix(body[:self.line_max])
            cut += len(body) - len(kept)
            body = kept
        self.previous_ts = ts
        return Line(ts, body.decode("utf-8", "replace"), cut, len(body) + cut)

    def feed(self, line: Line) -> Mismatch | None:
        """Takes the next line of the read (complete, or a tail `take_tail` accepted)."""
        index = self.count
        self.count += 1
        second = line.ts[:19]
        self.seconds[second] = self.seconds.get(second, 0) + 1
        if index < self.start.skip:
            if index == self.start.skip - 1 and self.start.fp \
                    and fingerprint(line.ts, line.content) != self.start.fp:
                return Mismatch("the last shipped line is not where the cursor says")
            return None
        self.last = line
        self.shipped += 1
        return None

    def take_tail(self, line: Line, *, truncated: bool) -> bool:
        """Whether the unterminated last line of the read is a line to feed: yes when the
        instance ended and the read was not cut; yes when it is a line longer than what the read
        limit leaves (ship what fits, skip the rest of it). When we are just past such a line and
        nothing after it fits in one read from this second, the stream jumps to the next second
        (the rest of this second is lost: the only way forward through the API)."""
        finished = self.step.instance.terminated is not None
        if finished and not truncated:
            return True
        if truncated and self.count == self.start.skip and len(line.content) >= _FINGERPRINT_CHARS:
            return True
        if truncated and self.start.since and self.count + 1 == self.start.skip \
                and fingerprint(line.ts, line.content) == self.start.fp:
            self.jump = replace(self.start, since=_next_second(self.start.since), skip=0)
        return False

    def position(self) -> Position:
        """Where the stream stands after the lines fed so far: sinceTime = the second of the last
        new line, skip = lines of the read at or after that second."""
        if self.jump is not None:
            return self.jump
        last = self.last
        if last is None:
            return self.start
        since = second_of(last.ts)
        floor = since[:19]
        skip = sum(count for second, count in self.seconds.items() if second >= floor)
        return replace(self.start, since=since, skip=skip, lines=self.start.lines + self.shipped,
                       fp=fingerprint(last.ts, last.content), done=False)

    def finish(self, *, truncated: bool, partial: bool, bot_id: str, pod: str,
               observed_at: str) -> Finish | Mismatch:
        """The end of the read. `truncated`: cut by the read limit (or stopped early);
        `partial`: an unterminated last line was left unshipped. An instance that ended and was
        read completely is done; ended non-zero, it gets its crash line (dated by its
        finishedAt, or when it was observed, never before its last line)."""
        if self.jump is not None:
            return Finish(self.jump)
        if self.count < self.start.skip:
            return Mismatch(f"expected at least {self.start.skip} lines since "
                            f"{self.start.since}, got {self.count}")
        position = self.position()
        term = self.step.instance.terminated
        complete = term is not None and not truncated and not partial
        crash = None
        if complete and term is not None and term.exit_code != 0 and not position.crash:
            ts = term.finished_at or observed_at
            if self.last is not None and position.lines and self.last.ts > ts:
                ts = self.last.ts  # the crash line ends the instance's log
            position = replace(position, crash=True)
            crash = (ts, crash_record(exit_code=term.exit_code, ts=ts, bot_id=bot_id, pod=pod))
        if complete:
            position = replace(position, done=True)
        return Finish(position, crash)


def give_up(step: Step, *, bot_id: str, pod: str, observed_at: str) -> Finish:
    """The instance's log can no longer be read (gone from the node): ship nothing more from it,
    but still write its crash line, and move past it."""
    position = step.start
    term = step.instance.terminated
    crash = None
    if term is not None and term.exit_code != 0 and not position.crash:
        ts = term.finished_at or observed_at
        position = replace(position, crash=True)
        crash = (ts, crash_record(exit_code=term.exit_code, ts=ts, bot_id=bot_id, pod=pod))
    return Finish(replace(position, done=True), crash)


def _next_second(since: str) -> str:
    when = datetime.strptime(since[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return datetime.fromtimestamp(when.timestamp() + 1, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- fan-out
def chunk_pods(pods: Iterable[LogPod], size: int) -> list[list[LogPod]]:
    """Chunks of about `size` pods that never split one bot's pods (one writer per bot)."""
    by_bot: dict[str, list[LogPod]] = {}
    for pod in pods:
        by_bot.setdefault(pod.bot_id, []).append(pod)
    chunks: list[list[LogPod]] = []
    current: list[LogPod] = []
    for bot_id in sorted(by_bot):
        group = sorted(by_bot[bot_id], key=lambda p: (p.started, p.name))  # oldest first
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
