"""Platform events from NATS → validated `BotEvent` values, or a `Rejected` with a reason.

Pure: no I/O. The platform announces every change of a bot on `the0.bot.<op>` and every change
of a scheduled bot on `the0.bot-schedule.<op>` (op = created | updated | deleted). The payload
is `{id, config, custom}`, or the legacy wrapper `{type, entity_id, data: {...}, timestamp}`.

`config` is SECRET (exchange API keys): a `Rejected` reason never quotes the payload, and a
`BotEvent`'s repr hides config and custom.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.core.bot import BotKind
from worker.core.text import excerpt

SUBJECT_PREFIXES: Mapping[str, BotKind] = {
    "the0.bot.": BotKind.LIVE,
    "the0.bot-schedule.": BotKind.SCHEDULED,
}
QUEUE_GROUP = "runtime"
MAX_EVENT_ID_LENGTH = 253


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
    written by us (never payload content); `bot_id` is set when the id itself was readable."""

    reason: str
    detail: str
    bot_id: str = ""


def parse_event(subject: str, payload: bytes, *, max_bytes: int) -> BotEvent | Rejected:
    kind_op = _subject(subject)
    if kind_op is None:
        return Rejected("unknown_subject", f"subject {excerpt(subject, limit=80)!r} is not ours")
    kind, op = kind_op
    if len(payload) > max_bytes:
        return Rejected("too_large", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        body = json.loads(payload)
    except ValueError:  # not UTF-8 or not JSON
        return Rejected("not_json", f"payload of {len(payload)} bytes is not JSON")
    if not isinstance(body, dict):
        return Rejected("not_object", f"payload is a JSON {type(body).__name__}, not an object")
    body = _unwrap_legacy(body)
    if isinstance(body, Rejected):
        return body
    bot_id = body.get("id")
    if not isinstance(bot_id, str) or not bot_id.strip():
        return Rejected("no_id", "payload has no string `id`")
    if len(bot_id) > MAX_EVENT_ID_LENGTH:
        return Rejected("bad_id", f"`id` is {len(bot_id)} characters long "
                                  f"(limit {MAX_EVENT_ID_LENGTH})")
    if op is EventOp.DELETED:
        return BotEvent(kind=kind, op=op, bot_id=bot_id)
    config, custom = body.get("config"), body.get("custom")
    if not isinstance(config, dict):
        return Rejected("bad_config", f"`config` must be an object, not {_type(config)}", bot_id)
    if custom is not None and not isinstance(custom, dict):
        return Rejected("bad_custom", f"`custom` must be an object, not {_type(custom)}", bot_id)
    if kind is BotKind.SCHEDULED:
        schedule = config.get("schedule")
        if not isinstance(schedule, str) or not schedule.strip():
            return Rejected("no_schedule", "a scheduled bot needs a string config.schedule",
                            bot_id)
    return BotEvent(kind=kind, op=op, bot_id=bot_id, config=config, custom=custom)


def _subject(subject: str) -> tuple[BotKind, EventOp] | None:
    for prefix, kind in SUBJECT_PREFIXES.items():
        if subject.startswith(prefix):
            try:
                return kind, EventOp(subject[len(prefix):])
            except ValueError:
                return None
    return None


def _unwrap_legacy(body: dict[str, Any]) -> dict[str, Any] | Rejected:
    """`{type, entity_id, data: {...}, timestamp}` → the inner `{id, config, custom}`."""
    if "data" not in body or "id" in body:
        return body
    data = body["data"]
    if data is None and "entity_id" in body:
        data = {}  # a legacy delete may carry no data
    if not isinstance(data, dict):
        return Rejected("bad_wrapper", f"legacy `data` must be an object, not {_type(data)}")
    inner = dict(data)
    if "id" not in inner and "entity_id" in body:
        inner["id"] = body["entity_id"]
    return inner


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
