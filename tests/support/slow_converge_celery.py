"""`python -m tests.support.slow_converge_celery <celery args>`: the real Celery CLI, where a
live bot whose id starts with "slow-" takes THE0_TEST_SLOW_CONVERGE seconds (default 20) before
its converge begins — a task that is surely running, its message unacknowledged (acks_late),
when a test takes the broker away. Test-only: the product code is untouched."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from worker.reconcile.controller import LiveBotController

_converge = LiveBotController.converge
_pause = float(os.environ.get("THE0_TEST_SLOW_CONVERGE", "20"))


def _slow_converge(self: LiveBotController, bot_id: str, *args: Any, **kwargs: Any) -> str:
    if bot_id.startswith("slow-"):
        print(f"slow converge of {bot_id}: {_pause:.0f} s", flush=True)
        time.sleep(_pause)
    return _converge(self, bot_id, *args, **kwargs)


LiveBotController.converge = _slow_converge  # type: ignore[method-assign]

if __name__ == "__main__":
    from celery.__main__ import main

    sys.argv[0] = "celery"
    main()
