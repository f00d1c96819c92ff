"""Waiting for terminating objects to be gone: nothing is created beside one (never two pods)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from worker.core.errors import TemporaryError
from worker.core.planner import ObservedPod


def wait_until_gone(get: Callable[[str], dict[str, Any] | None], objects: Sequence[ObservedPod],
                    renew: Callable[[], None], *, timeout: float, what: str) -> None:
    """Returns once each object is gone (or replaced by one with another uid); renews the
    caller's lock while it waits; TemporaryError after `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    for obj in objects:
        while True:
            renew()
            current = get(obj.name)
            if current is None or current["metadata"].get("uid") != obj.uid:
                break
            if time.monotonic() > deadline:
                raise TemporaryError(f"{what} {obj.name} still terminating after "
                                     f"{timeout:.0f} s")
            time.sleep(0.2)
