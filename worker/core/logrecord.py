"""Log records, the pure part: the one NDJSON line written for each bot line or controller event.

PURE: no I/O, no clock. Every record is one JSON object on one line, and its first two members
are always the controller's:

- `"source"`: `"bot"` (a line the bot printed) or `"controller"` (crash lines, the daily-budget
  marker, the note heading a rotated day object);
- `"timestamp"`: RFC 3339 UTC with nanoseconds. For a bot line it is the container runtime's
  capture time as the kubelet serves it (never a value the bot printed); for a controller record,
  the time of the event.

The bot's line is kept as data. A plain line becomes `"message"` (a JSON string). A line that is a
JSON object keeps its members, byte for byte, after the controller's two (the platform's UI reads
`level`, `message`, `msg`, `_metric` … at the top level); a member whose name is reserved
(`source`, `timestamp`, or `bot` itself) is moved into a nested `"bot"` object, so
`{"source":"controller","timestamp":"…","message":"Bot crashed …"}` printed by a bot is stored as
`{"source":"bot","timestamp":"<capture time>","message":"Bot crashed …","bot":{"source":
"controller","timestamp":"…"}}`. A bot therefore cannot forge a controller record or the
controller's timestamp.

U+2028, U+2029 and U+0085 are escaped and a raw CR never reaches the output, so every reader that
splits text into lines (JavaScript, Python's `str.splitlines`) sees exactly one record per line.
"""

from __future__ import annotations

import json
import json.decoder
import re
from collections.abc import Callable, Mapping
from typing import Any

SOURCE_BOT = "bot"
SOURCE_CONTROLLER = "controller"
BOT_FIELDS = "bot"  # where a bot's members with reserved names go
RESERVED = frozenset({"source", "timestamp", BOT_FIELDS})

EVENT_BUDGET = "log_budget_exceeded"
EVENT_CONTINUED = "log_continued"

_WS = re.compile(r"[ \t\n\r]*")
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"})


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity are not JSON


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The standard decoder's string scanner (not in the type stubs): (text, index after the opening
# quote, strict) → (the string, index after its closing quote).
_scanstring: Callable[[str, int, bool], tuple[str, int]] = (
    json.decoder.scanstring)  # type: ignore[attr-defined]


def one_line(text: str) -> str:
    """A JSON text with the characters some readers take for line breaks escaped. Valid because
    in JSON they can only occur inside strings, where the escape means the same character."""
    return text.translate(_LINE_BREAKS)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _head(source: str, ts: str) -> str:
    # `ts` is canonical (digits, "-", ":", ".", "T", "Z"): no escaping needed.
    return '{"source":"' + source + '","timestamp":"' + ts + '"'


def members(text: str) -> list[tuple[str, str, str]] | None:
    """The top-level members of a JSON object text as (name, name as written, value as written),
    in order and with duplicates; None when `text` is not exactly one JSON object. Values are
    checked by the standard decoder (strict: no raw control characters, no NaN)."""
    if not (text.startswith("{") and text.endswith("}")):
        return None
    found: list[tuple[str, str, str]] = []
    try:
        at = _WS.match(text, 1).end()  # type: ignore[union-attr]
        if text[at] == "}":
            return found if at == len(text) - 1 else None
        while True:
            if text[at] != '"':
                return None
            name, end = _scanstring(text, at + 1, True)
            written = text[at:end]
            at = _WS.match(text, end).end()  # type: ignore[union-attr]
            if text[at] != ":":
                return None
            at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
            _, value_end = _DECODER.raw_decode(text, at)
            found.append((name, written, text[at:value_end]))
            at = _WS.match(text, value_end).end()  # type: ignore[union-attr]
            if text[at] == ",":
                at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
                continue
            return found if text[at] == "}" and at == len(text) - 1 else None
    except (ValueError, IndexError, RecursionError):
        return None


def bot_record(ts: str, content: str, *, cut: int = 0) -> str:
    """The record of one line the bot printed (`content`, without its newline), captured at `ts`.
    `cut`: bytes of the line that were not kept (longer than the line limit); such a line is
    always a plain message, with `"truncated_bytes"`."""
    head = _head(SOURCE_BOT, ts)
    if not cut:
        text = content.strip()
        found = members(text) if text.startswith("{") else None
        if found is not None:
            kept = [f"{written}:{value}" for name, written, value in found
                    if name not in RESERVED]
            moved = [f"{written}:{value}" for name, written, value in found if name in RESERVED]
            body = "".join("," + member for member in kept)
            if moved:
                body += ',"' + BOT_FIELDS + '":{' + ",".join(moved) + "}"
            # Inside values a raw CR can only be whitespace (strict JSON strings cannot hold it).
            return one_line(head + body.replace("\r", " ") + "}")
    message = content[:-1] if content.endswith("\r") else content  # CRLF output
    record = head + ',"message":' + _dumps(message)
    if cut:
        record += f',"truncated_bytes":{int(cut)}'
    return one_line(record + "}")


def controller_record(ts: str, fields: Mapping[str, Any]) -> str:
    """A record the controller writes: `source` and `timestamp` first, then `fields`."""
    body = "".join("," + _dumps(str(key)) + ":" + _dumps(value) for key, value in fields.items()
                   if key not in ("source", "timestamp"))
    return one_line(_head(SOURCE_CONTROLLER, ts) + body + "}")


def crash_record(*, exit_code: int, ts: str, bot_id: str, pod: str) -> str:
    """The line appended when a bot container ends with a non-zero exit code."""
    return controller_record(ts, {"level": "error",
                                  "message": f"Bot crashed with exit code {exit_code}",
                                  "exit_code": exit_code, "bot_id": bot_id, "pod": pod})


def mib(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"


def budget_record(*, ts: str, bot_id: str, budget: int, lines: int, size: int, last: str,
                  parts: int, earlier: str) -> str:
    """The one marker of a day whose budget is spent: how many lines were dropped (kept up to date,
    never repeated). `ts` is the first dropped line's time, `last` the latest one's; `earlier`
    names the objects holding the day's earlier lines ("" when there are none)."""
    where = f"; this day's earlier lines are in {earlier}" if earlier else ""
    return controller_record(ts, {
        "level": "warn", "event": EVENT_BUDGET,
        "message": (f"Daily log budget of {mib(budget)} reached: {lines} lines "
                    f"({mib(size)} of output) dropped so far this day (UTC){where}"),
        "budget_bytes": budget, "dropped_lines": lines, "dropped_bytes": size,
        "last_dropped": last, "parts": parts, "bot_id": bot_id})


def continued_record(*, ts: str, bot_id: str, parts: int, earlier: str) -> str:
    """Heads a day object after a rotation: where the day's earlier lines are."""
    return controller_record(ts, {
        "level": "info", "event": EVENT_CONTINUED,
        "message": f"This day's earlier lines are in {earlier}",
        "parts": parts, "bot_id": bot_id})


def is_budget_record(line: bytes) -> bool:
    """Whether one stored line is the controller's budget marker."""
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return (isinstance(value, dict) and value.get("source") == SOURCE_CONTROLLER
            and value.get("event") == EVENT_BUDGET)
