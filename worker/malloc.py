"""Fewer malloc arenas for a process that runs a thread pool.

glibc gives threads that contend for the heap arenas of their own, up to 8 per core, and
memory freed in one arena is not reused by another: with 16 task threads each parsing
Kubernetes and Mongo responses, a worker's resident memory grows with its threads rather
than with its work. Two arenas keep that contention low and the heap shared. An operator's
own MALLOC_ARENA_MAX (read by glibc itself at start) is left as it is; on a C library other
than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's <malloc.h>
ARENAS = 2


def limit_arenas(arenas: int = ARENAS, *, environ: dict[str, str] | None = None) -> bool:
    """Caps glibc's malloc arenas; call before the process starts its threads. Returns whether
    the cap was set by this call."""
    if "MALLOC_ARENA_MAX" in (os.environ if environ is None else environ):
        return False
    try:
        # The process's own symbols, libc's among them: find_library("c") would run ldconfig
        # at every start.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
