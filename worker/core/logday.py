"""Day objects, the pure part: where one bot's lines of one UTC day are stored, the day's ledger
(budget spent, lines dropped, parts rotated out) and what one write to a day does.

PURE: no I/O, no clock. Layout in the log bucket, per bot and UTC day (the line's own day):

    logs/<bot id>/<YYYYMMDD>.log          the CURRENT part: the day's latest lines. This is the
                                           key the0's API and UI read, as they always have.
    logs/<bot id>/<YYYYMMDD>.log.00001    earlier parts, oldest first, each ≤ LOG_PART_BYTES
    logs/<bot id>/<YYYYMMDD>.log.00002    (plus at most one write)
    …

S3 has no append: an append rewrites the object it appends to. So the current part is rotated
before a write would take it past `part_bytes`: copied (server-side) to the next part number,
then replaced by the new lines headed by a controller record naming the earlier parts. An append
therefore moves at most one part, never the whole day, and the copy happens once per part.

The day's ledger travels in the current part's metadata (`x-amz-meta-the0-day`), written by the
same request as the lines it counts: parts rotated out, bytes of bot records written (the budget's
count) and lines dropped. A reader wanting the whole day reads parts 1 … `parts` (the ledger's
count; a higher-numbered leftover of an interrupted rotation is rewritten by the next one), then
the current part. Budget: once a day's bot records would pass `budget` bytes, the day is sealed:
the current part is rotated out (with the records that still fit) and replaced by ONE controller
marker saying how many lines were dropped; later drops rewrite that marker (a few hundred bytes),
later controller records (crash lines) follow it. The next UTC day starts afresh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from worker.core import logrecord
from worker.core.logcursor import object_key

PART_DIGITS = 5
META_DAY = "the0-day"  # S3 user metadata key (x-amz-meta-the0-day): the day's ledger
_LEDGER_VERSION = 1


def part_key(bot_id: str, day: str, part: int) -> str:
    """Key of the day's `part`-th rotated-out part (1 is the oldest)."""
    return f"{object_key(bot_id, day)}.{part:0{PART_DIGITS}d}"


def day_keys(bot_id: str, day: str, parts: int) -> list[str]:
    """Every object of a day in reading order: parts 1 … `parts`, then the current one."""
    return [*(part_key(bot_id, day, n) for n in range(1, parts + 1)), object_key(bot_id, day)]


def earlier_parts(bot_id: str, day: str, parts: int) -> str:
    """The objects holding a day's rotated-out lines, for a human ("" when there are none)."""
    if parts <= 0:
        return ""
    first = part_key(bot_id, day, 1)
    return first if parts == 1 else f"{first} to .{parts:0{PART_DIGITS}d}"


@dataclass(frozen=True)
class Ledger:
    """What one day of one bot holds so far (carried in the current part's metadata)."""

    parts: int = 0          # parts rotated out (<day>.log.00001 … .<parts>)
    written: int = 0        # bytes of bot records stored this day: the budget's count
    dropped_lines: int = 0  # bot lines not stored: the day's budget was spent
    dropped_bytes: int = 0  # bytes of output those lines held (line + newline)
    first_drop: str = ""    # timestamp of the first dropped line
    last_drop: str = ""     # timestamp of the latest dropped line

    @property
    def sealed(self) -> bool:
        """The budget is spent: every further bot line of this day is dropped."""
        return self.dropped_lines > 0

    def encode(self) -> str:
        """ASCII (S3 metadata): timestamps are canonical, the rest are numbers."""
        return json.dumps([_LEDGER_VERSION, self.parts, self.written, self.dropped_lines,
                           self.dropped_bytes, self.first_drop, self.last_drop],
                          separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | None, *, size: int = 0) -> Ledger:
        """The ledger of a current part whose metadata is `raw`. An object written without one
        (by an earlier version) has its `size` counted as spent budget and no parts."""
        try:
            value = json.loads(raw) if raw else None
            if isinstance(value, list) and len(value) >= 7 and value[0] == _LEDGER_VERSION:
                return cls(parts=int(value[1]), written=int(value[2]),
                           dropped_lines=int(value[3]), dropped_bytes=int(value[4]),
                           first_drop=str(value[5]), last_drop=str(value[6]))
        except (ValueError, TypeError):
            pass
        return cls(written=size)


@dataclass(frozen=True)
class Entry:
    """One record to store: its NDJSON line (with the newline) and what it counts for."""

    ts: str
    text: bytes
    bot: bool = True   # a line the bot printed (counts toward the budget), else the controller's
    output: int = 0    # bytes the bot printed for it (line + newline); 0 for controller records
    cut: bool = False  # the line was longer than the line limit and is stored cut


@dataclass
class Batch:
    """The records of one write to one day, sorted into what is stored and what is dropped as
    they arrive (the budget decision is made here, once, in arrival order)."""

    day: str
    before: Ledger
    budget: int                                        # bytes per day; 0 = no budget
    head: list[Entry] = field(default_factory=list)    # stored before the budget ran out
    tail: list[Entry] = field(default_factory=list)    # controller records after it ran out
    ledger: Ledger = field(init=False)
    size: int = 0                                      # bytes held by head and tail
    lines: int = 0                                     # bot lines stored
    truncated: int = 0                                 # of which stored cut
    dropped: int = 0                                   # bot lines dropped by this batch

    def __post_init__(self) -> None:
        self.ledger = self.before

    def add(self, entry: Entry) -> bool:
        """Takes one record; False when it is a bot line dropped for the budget."""
        ledger = self.ledger
        if entry.bot:
            fits = not ledger.sealed and (
                self.budget <= 0 or ledger.written + len(entry.text) <= self.budget)
            if not fits:
                self.ledger = replace(
                    ledger, dropped_lines=ledger.dropped_lines + 1,
                    dropped_bytes=ledger.dropped_bytes + entry.output,
                    first_drop=ledger.first_drop or entry.ts,
                    last_drop=max(ledger.last_drop, entry.ts))
                self.dropped += 1
                return False
            self.ledger = replace(ledger, written=ledger.written + len(entry.text))
            self.lines += 1
            self.truncated += int(entry.cut)
        (self.tail if self.ledger.sealed else self.head).append(entry)
        self.size += len(entry.text)
        return True

    @property
    def empty(self) -> bool:
        """Nothing to store and nothing dropped: the write would change nothing."""
        return not self.head and not self.tail and not self.dropped

    @property
    def oldest(self) -> str:
        """The earliest timestamp among the bot lines stored (for the lag figure)."""
        return min((e.ts for e in (*self.head, *self.tail) if e.bot), default="")


@dataclass(frozen=True)
class DayWrite:
    """What one batch does to its day's objects, in this order:

    1. `archive_to`: copy the current part, followed by `archive_extra`, to this part key;
    2. then exactly one of: `replace` the current part's whole content; `append` to it;
       `reseal`: rewrite its first line (the budget marker) as `marker` and append `reseal`.
    Every step is conditional on the current part being what was seen before step 1."""

    key: str
    ledger: Ledger
    archive_to: str | None = None
    archive_extra: bytes = b""
    replace: bytes | None = None
    append: bytes | None = None
    reseal: bytes | None = None
    marker: bytes = b""


def _joined(entries: Sequence[Entry]) -> bytes:
    return b"".join(e.text for e in entries)


def plan_write(*, bot_id: str, batch: Batch, current_size: int | None,
               part_bytes: int) -> DayWrite:
    """The write that stores `batch`, given the current part's size (None: it does not exist)."""
    key = object_key(bot_id, batch.day)
    ledger = batch.ledger
    size = current_size or 0
    if ledger.sealed:
        parts = ledger.parts
        archive_to = None
        extra = _joined(batch.head)
        if not batch.before.sealed and size + len(extra) > 0:
            parts += 1  # sealing now: the day's lines so far go to a part of their own
            archive_to = part_key(bot_id, batch.day, parts)
        ledger = replace(ledger, parts=parts)
        marker = (logrecord.budget_record(
            ts=ledger.first_drop, bot_id=bot_id, budget=batch.budget,
            lines=ledger.dropped_lines, size=ledger.dropped_bytes, last=ledger.last_drop,
            parts=parts, earlier=earlier_parts(bot_id, batch.day, parts)) + "\n").encode()
        tail = _joined(batch.tail)
        if batch.before.sealed and current_size is not None:
            return DayWrite(key=key, ledger=ledger, reseal=tail, marker=marker)
        return DayWrite(key=key, ledger=ledger, archive_to=archive_to, archive_extra=extra,
                        replace=marker + tail)
    data = _joined(batch.head)
    if size and size + len(data) > part_bytes:
        ledger = replace(ledger, parts=ledger.parts + 1)
        first = batch.head[0].ts if batch.head else ""
        header = (logrecord.continued_record(
            ts=first, bot_id=bot_id, parts=ledger.parts,
            earlier=earlier_parts(bot_id, batch.day, ledger.parts)) + "\n").encode()
        return DayWrite(key=key, ledger=ledger,
                        archive_to=part_key(bot_id, batch.day, ledger.parts),
                        replace=header + data)
    return DayWrite(key=key, ledger=ledger, append=data)


def resealed(existing: bytes, marker: bytes, extra: bytes) -> bytes:
    """A sealed current part with its marker (first line) replaced and `extra` appended."""
    first, _, rest = existing.partition(b"\n")
    if logrecord.is_budget_record(first):
        return marker + rest + extra
    return marker + existing + extra  # not ours any more (edited by hand): keep it all
