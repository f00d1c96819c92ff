"""Waiting for terminating objects to be gone: nothing is created beside one (never two pods).

A replace deletes the old pod, then must wait until it is gone before it creates the new one.
Under load that wait is most of the replace (kwok took ~9 s to finish a deletion in the
10,000-bot chaos run; a real bot's grace period can be longer): a Celery task that waited it
out held one of the worker's threads doing nothing while hundreds of other actions queued.
So a task waits only briefly (`pace`), then raises StillTerminating: the task hands its
thread back and sends its own continuation, which re-reads, finds the old object gone and
completes the create as the second half of the same replace (`resumes`). Callers that want
the old behaviour (the CLI, tests) wait the whole POD_GONE_TIMEOUT inline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.core.errors import TemporaryError
from worker.core.planner import ActionKind, ObservedPod


@dataclass(frozen=True)
class Resume:
    """The first half of a replace, done by an earlier run of a task: `action` (replace,
    recreate, takeover) deleted the object `old` for `reason`; the create is still to come.
    Travels in the continuation's message (plain strings: a planner reason and an object
    name, never a config value)."""

    action: ActionKind
    reason: str
    old: str

    def as_message(self) -> dict[str, str]:
        return {"action": self.action.value, "reason": self.reason, "old": self.old}

    @classmethod
    def from_message(cls, raw: object) -> Resume | None:
        """None for anything but what `as_message` wrote (a continuation is only a label)."""
        if not isinstance(raw, Mapping):
            return None
        action, reason, old = raw.get("action"), raw.get("reason"), raw.get("old")
        if not (isinstance(reason, str) and isinstance(old, str)) or action not in (
                ActionKind.REPLACE, ActionKind.RECREATE, ActionKind.TAKEOVER):
            return None
        return cls(ActionKind(action), reason[:200], old[:253])


class StillTerminating(TemporaryError):
    """A bot's old object is still terminating after the inline wait. `resumes`: the replace
    whose delete is done and whose create is still to come, if any — the continuation
    reports and announces its create as that replace."""

    def __init__(self, message: str, *, resumes: Resume | None = None) -> None:
        super().__init__(message, retry_after=None)
        self.resumes = resumes

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (str(self), self.resumes))


def _rebuild(message: str, resumes: Resume | None) -> StillTerminating:
    return StillTerminating(message, resumes=resumes)


# The first run of a task waits this long inline (most deletions on a quiet cluster end within
# it); a continuation only checks once. Continuations come 1, 2, 4, 4, … s apart: under load a
# deletion took ~9 s (kwok) and each check costs a read of the bot (lock, Mongo, GETs).
FIRST_INLINE_WAIT = 1.0
RECHECK_FIRST = 1.0
RECHECK_MAX = 4.0


def pace(waits: int) -> tuple[float, float]:
    """(how long a run waits inline, its continuation's countdown should it need one), for a
    run that follows `waits` continuations."""
    inline = FIRST_INLINE_WAIT if waits <= 0 else 0.0
    return inline, min(RECHECK_MAX, RECHECK_FIRST * 2 ** max(0, min(waits, 8)))


def wait_until_gone(get: Callable[[str], dict[str, Any] | None], objects: Sequence[ObservedPod],
                    renew: Callable[[], None], *, timeout: float) -> bool:
    """True once each object is gone (or replaced by one with another uid); renews the
    caller's lock while it waits; False if some object is still there after `timeout`
    seconds in all (checked at least once each, even with a timeout of 0)."""
    deadline = time.monotonic() + timeout
    for obj in objects:
        while True:
            renew()
            current = get(obj.name)
            if current is None or current["metadata"].get("uid") != obj.uid:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return True
