"""Platform events from NATS → validated `BotEvent` values, or a `Rejected` with a reason.

Pure: no I/O. The platform announces every change of a bot on `the0.bot.<op>` and every change
of a scheduled bot on `the0.bot-schedule.<op>` (op = created | updated | deleted). The payload
is `{id, config, custom}`, or the legacy wrapper `{type, entity_id, data: {...}, timestamp}`.

`config` is SECRET (exchange API keys): a `Rejected` reason never quotes the payload, and a
`BotEvent`'s repr hides config and custom.

Limits checked here, before any write (DESIGN §1 "NATS": an event Mongo would refuse is that
event's permanent failure, never a retry): the payload's size (`max_bytes`); the nesting depth
of the document it would become (`max_depth`, counted as MongoDB counts it — `{"config":
{"a": 1}}` is 2 levels — except that an empty object or array counts too); JSON's own grammar
(`NaN` and `Infinity` are not JSON: Python's parser accepts them, and FerretDB drops the
connection on NaN, which looks like an outage and would be retried); and the legacy wrapper's
two ids, which must agree.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from worker.core.bot import BotKind
from worker.core.errors import PermanentError
from worker.core.text import excerpt

SUBJECT_PREFIXES: Mapping[str, BotKind] = {
    "the0.bot.": BotKind.LIVE,
    "the0.bot-schedule.": BotKind.SCHEDULED,
}
QUEUE_GROUP = "runtime"
MAX_EVENT_ID_LENGTH = 253
# MongoDB documents 100 levels as its nesting limit (mongod enforces 180 = maxBSONDepth 200 less
# 20 kept for its own wrapping; FerretDB v1.24 has none). Our default is the documented one.
MAX_DEPTH = 100
# Where the id of a payload refused unread (too large, too deep to parse) is looked for: the
# platform writes it first; a payload that hides it further on is counted without an id.
ID_SCAN_BYTES = 4096
# The status phase of a bot that only exists as a refused event (its create was refused).
PHASE_REFUSED = "Refused"


# The stream the0's API keeps the platform's events in (api/src/nats/nats.service.ts: name
# THE0_EVENTS, the six subjects, limits retention, file storage, 7 days).
PLATFORM_STREAM = "THE0_EVENTS"
PLATFORM_STREAM_MAX_AGE_S = 7 * 24 * 3600.0


class EventOp(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


def subjects() -> list[str]:
    """Every subject the platform publishes on."""
    return [f"{prefix}{op.value}" for prefix in SUBJECT_PREFIXES for op in EventOp]


def subscriptions() -> list[str]:
    """What the consumer subscribes to: ONE wildcard per kind, so all of a bot's events come
    through one ordered delivery queue (six subscriptions would each have their own, and a
    `deleted` could overtake the `updated` sent before it). Unknown operations matched by the
    wildcard are rejected by `parse_event`."""
    return [f"{prefix}*" for prefix in SUBJECT_PREFIXES]


@dataclass(frozen=True)
class BotEvent:
    kind: BotKind
    op: EventOp
    bot_id: str
    # None when the payload did not carry the field (an update then leaves it as it is).
    config: Mapping[str, Any] | None = field(default=None, repr=False)
    custom: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Rejected:
    """A message we cannot act on. `reason` is a short code for metrics, `detail` a sentence
    written by us (never payload content); `bot_id` is set when the id itself was readable
    (then the failure is that bot's, and recorded in its status); `kind` when the subject was
    ours."""

    reason: str
    detail: str
    bot_id: str = ""
    kind: BotKind | None = None


class DocumentRefused(PermanentError):
    """The database refused the event's document (too deep, too large, a key or value it cannot
    store): that event's permanent failure; retrying cannot help. `code` is the server's error
    code (0 when the driver refused it before sending), `what` our own words for it — never the
    server's message, which quotes the document."""

    def __init__(self, code: int, what: str) -> None:
        self.code = code
        self.what = what
        super().__init__(f"the database refused the document: {what} (code {code})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.what))


def parse_event(subject: str, payload: bytes, *, max_bytes: int,
                max_depth: int = MAX_DEPTH) -> BotEvent | Rejected:
    kind_op = _subject(subject)
    if kind_op is None:
        return Rejected("unknown_subject", f"subject {excerpt(subject, limit=80)!r} is not ours")
    kind, op = kind_op
    rejected = _RejectedOf(kind)
    if len(payload) > max_bytes:
        return rejected("too_large", f"payload of {len(payload)} bytes exceeds {max_bytes} "
                                     "(EVENT_MAX_BYTES)", scan_id(payload))
    try:
        body = json.loads(payload, parse_constant=_not_json)
    except RecursionError:  # nested ~1000 levels: far beyond any limit, unparseable here
        return rejected("too_deep", f"the payload is nested far more than {max_depth} "
                                    "levels deep (EVENT_MAX_DEPTH)", scan_id(payload))
    except ValueError:  # not UTF-8 or not JSON (NaN and Infinity included)
        return rejected("not_json", f"payload of {len(payload)} bytes is not JSON",
                        scan_id(payload))
    if not isinstance(body, dict):
        return rejected("not_object", f"payload is a JSON {type(body).__name__}, not an object")
    body = _unwrap_legacy(body, rejected)
    if isinstance(body, Rejected):
        return body
    bot_id = body.get("id")
    if not isinstance(bot_id, str) or not bot_id.strip():
        return rejected("no_id", "payload has no string `id`")
    if len(bot_id) > MAX_EVENT_ID_LENGTH:
        return rejected("bad_id", f"`id` is {len(bot_id)} characters long "
                                  f"(limit {MAX_EVENT_ID_LENGTH})")
    if op is EventOp.DELETED:
        return BotEvent(kind=kind, op=op, bot_id=bot_id)
    config, custom = body.get("config"), body.get("custom")
    if not isinstance(config, dict):
        return rejected("bad_config", f"`config` must be an object, not {_type(config)}", bot_id)
    if custom is not None and not isinstance(custom, dict):
        return rejected("bad_custom", f"`custom` must be an object, not {_type(custom)}", bot_id)
    depth = 1 + nesting_depth([config, custom], limit=max_depth)
    if depth > max_depth:
        return rejected("too_deep", f"the document would be nested more than {max_depth} "
                                    "levels deep (EVENT_MAX_DEPTH)", bot_id)
    if kind is BotKind.SCHEDULED:
        schedule = config.get("schedule")
        if not isinstance(schedule, str) or not schedule.strip():
            return rejected("no_schedule", "a scheduled bot needs a string config.schedule",
                            bot_id)
    return BotEvent(kind=kind, op=op, bot_id=bot_id, config=config, custom=custom)


def nesting_depth(values: list[Any], *, limit: int) -> int:
    """Levels of objects and arrays among `values` (scalars: 0; `[{}]`: 2), counted level by
    level with no recursion, and no further than `limit` + 1."""
    level = [v for v in values if isinstance(v, dict | list)]
    depth = 0
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for container in level:
            items = container.values() if isinstance(container, dict) else container
            below.extend(v for v in items if isinstance(v, dict | list))
        level = below
    return depth


# One JSON token the id scan cares about: a string, a bracket, a colon or a comma. A string
# cut by the window's end still matches (so no start is ever scanned twice: linear time).
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[][{}:,]')


def scan_id(payload: bytes, *, window: int = ID_SCAN_BYTES) -> str:
    """The top-level `id` (else `entity_id`, the legacy wrapper's) of a payload that is not
    parsed (too large, or too deep for the parser), read from its first `window` bytes; "" when
    it is not a string there. Nested keys never count: a config holding `"id": "victim"` must
    not make another bot's status carry this event's failure."""
    found: dict[str, str] = {}  # top-level key → its value when that is a string, else ""
    depth, key, expect = 0, "", ""  # expect: "key" | "colon" | "value" | ""
    for match in _TOKEN.finditer(payload, 0, min(len(payload), window)):
        token = match.group()
        if token in (b"{", b"["):
            if depth == 0 and token != b"{":
                return ""
            depth += 1
            expect = "key" if depth == 1 else ("" if depth == 2 else expect)
        elif token in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                break
        elif depth != 1:
            continue
        elif token == b",":
            expect = "key"
        elif token == b":":
            expect = "value" if expect == "colon" else ""
        elif expect == "key":
            key, expect = _string(token), "colon"
            if key in ("id", "entity_id"):
                found[key] = ""  # stays "" unless its value is a string; the last key wins,
        elif expect == "value":  # as it does for json.loads
            if key in ("id", "entity_id"):
                found[key] = _string(token)
            expect = ""
    # As parse_event reads it: a top-level `id` makes the payload plain, not a wrapper.
    bot_id = found["id"] if "id" in found else found.get("entity_id", "")
    return bot_id if len(bot_id) <= MAX_EVENT_ID_LENGTH and bot_id.strip() else ""


def _string(token: bytes) -> str:
    try:
        value = json.loads(token)
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


class _RejectedOf:
    """Makes the `Rejected` of one kind of bot (its subject's)."""

    def __init__(self, kind: BotKind) -> None:
        self.kind = kind

    def __call__(self, reason: str, detail: str, bot_id: str = "") -> Rejected:
        return Rejected(reason, detail, bot_id, self.kind)


def _subject(subject: str) -> tuple[BotKind, EventOp] | None:
    for prefix, kind in SUBJECT_PREFIXES.items():
        if subject.startswith(prefix):
            try:
                return kind, EventOp(subject[len(prefix):])
            except ValueError:
                return None
    return None


def _unwrap_legacy(body: dict[str, Any], rejected: _RejectedOf) -> dict[str, Any] | Rejected:
    """`{type, entity_id, data: {...}, timestamp}` → the inner `{id, config, custom}`. When
    both `entity_id` and `data.id` are given they must be the same string: an event about one
    bot that carries another's document is refused, never applied to either."""
    if "data" not in body or "id" in body:
        return body
    data = body["data"]
    entity_id = body.get("entity_id")
    named = entity_id if isinstance(entity_id, str) and entity_id.strip() else ""
    if len(named) > MAX_EVENT_ID_LENGTH:
        named = ""
    if data is None and "entity_id" in body:
        data = {}  # a legacy delete may carry no data
    if not isinstance(data, dict):
        return rejected("bad_wrapper", f"legacy `data` must be an object, not {_type(data)}",
                        named)
    inner = dict(data)
    if "entity_id" in body:
        if "id" not in inner:
            inner["id"] = entity_id
        elif inner["id"] != entity_id:
            return rejected("ids_disagree", "legacy `entity_id` and `data.id` name different "
                                            "bots", named)
    return inner


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class AppliedSequences:
    """The stream sequence of the latest event applied per bot, so a redelivered copy of an
    older message (its ack was lost, or the consumer stalled past ack_wait) is recognised and
    not applied over a newer event: a `created` delivered again after the `deleted` that
    followed it would bring the bot back. Bounded: the oldest bots are forgotten first (a copy
    arrives within seconds of its original, not after `limit` other bots' events)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._latest: dict[tuple[str, str], int] = {}

    def is_new(self, kind: str, bot_id: str, sequence: int) -> bool:
        return sequence > self._latest.get((kind, bot_id), 0)

    def record(self, kind: str, bot_id: str, sequence: int) -> None:
        key = (kind, bot_id)
        self._latest.pop(key, None)  # re-inserted last: dicts keep insertion order
        self._latest[key] = sequence
        while len(self._latest) > self.limit:
            del self._latest[next(iter(self._latest))]
