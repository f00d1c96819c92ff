"""Text for records and messages: safe excerpts of untrusted text, timestamps.

Pure: no I/O, no clock reads. Must NOT be used on secret values: an excerpt is still a copy
of the text.
"""

from datetime import UTC, datetime

_ELLIPSIS = "…"


def iso(epoch: float) -> str:
    """Epoch seconds as the RFC 3339 UTC text our records and status documents carry."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def excerpt(text: str, *, limit: int) -> str:
    """Return `text` cut to at most `limit` characters, with unprintable characters as "?".

    Ids and Kubernetes status messages can contain newlines or terminal escapes; replacing them
    keeps one log line one line and stops log injection.
    """
    printable = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    if len(printable) <= limit:
        return printable
    return printable[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def printable(text: str) -> str:
    """`text` for a terminal: every unprintable character (control, format — e.g. a bidi
    override — line separators, lone surrogates) as its escape (`\\x1b`, `\\u202e`), so an id
    can neither move the cursor, clear the screen nor hide what follows it."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
