"""worker/malloc.py: a threaded process keeps to two glibc malloc arenas.

Each case runs in a fresh interpreter (arenas are per process): eight threads allocate and free
at once, then glibc's own malloc_stats() lists the arenas on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from worker.malloc import limit_arenas

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = """
import ctypes, ctypes.util, sys, threading
sys.path.insert(0, {root!r})
from worker.malloc import limit_arenas
if {limit}:
    assert limit_arenas()
start = threading.Barrier(8)
def churn():
    start.wait()
    for _ in range(2000):
        blocks = [bytearray(4096) for _ in range(16)]  # above pymalloc's 512 bytes: malloc
        del blocks
threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
"""


def arenas_used(*, limit: bool) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(root=str(ROOT), limit=limit)],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


def test_a_threaded_process_keeps_to_two_arenas() -> None:
    assert arenas_used(limit=False) > 2  # what the cap is for: threads take arenas of their own
    assert arenas_used(limit=True) <= 2


def test_an_operators_own_setting_is_left_alone() -> None:
    assert limit_arenas(environ={"MALLOC_ARENA_MAX": "8"}) is False
