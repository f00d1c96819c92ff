"""Safe excerpts of untrusted text for error and status messages.

Pure: no I/O. Must NOT be used on secret values: an excerpt is still a copy of the text.
"""

_ELLIPSIS = "…"


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
