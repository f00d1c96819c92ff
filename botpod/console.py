"""Progress and error lines, one per event, flushed at once (the kubelet collects them).

Must NOT: be handed a secret — callers pass text built from names and numbers only.
"""

import sys

_command = "botpod"


def set_command(name: str) -> None:
    """Prefix every following line with `botpod <name>:`."""
    global _command
    _command = f"botpod {name}"


def say(message: str) -> None:
    """A progress line on stdout."""
    print(f"{_command}: {message}", file=sys.stdout, flush=True)


def warn(message: str) -> None:
    """An error or warning line on stderr."""
    print(f"{_command}: {message}", file=sys.stderr, flush=True)


def shown(text: str, limit: int = 200) -> str:
    """User-supplied text (a file name, an entrypoint) made safe for one log line."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[:limit] + "…"


def count(n: int, noun: str) -> str:
    """`1 file`, `3 files`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def size(n: int) -> str:
    """Bytes in the largest unit that keeps a number ≥ 1 (`12 KiB`)."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{n} bytes" if unit == "bytes" else f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
