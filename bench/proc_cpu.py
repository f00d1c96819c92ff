"""CPU a process has used, read from /proc: the one reader the benchmarks share."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | str) -> tuple[str, float] | None:
    """(its name, /proc/<pid>/comm as the kernel keeps it; user + system CPU seconds so far),
    or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        return (text[text.index("(") + 1:text.rindex(")")],
                (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far; 0.0 once it is gone."""
    read = process_cpu(pid)
    return read[1] if read else 0.0


def all_pids() -> list[str]:
    return [name for name in os.listdir("/proc") if name.isdigit()]
