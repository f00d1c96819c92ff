"""Beat entries, by task-name string (beat never imports task code).

`expires` = the interval: a tick that waited longer than one interval in the queue is dropped
by the worker, because a newer tick is already on its way.
"""

from __future__ import annotations

from typing import Any

from worker.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    interval = settings.RECONCILE_INTERVAL
    schedule = {
        "reconcile-live-bots": {
            "task": "reconcile.bots",
            "schedule": interval,
            "options": {"expires": interval},
        },
        "reconcile-scheduled-bots": {
            "task": "reconcile.schedules",
            "schedule": interval,
            "options": {"expires": interval},
        },
    }
    schedule["collect-logs"] = {
        "task": "logs.collect",
        "schedule": settings.LOG_INTERVAL,
        "options": {"expires": settings.LOG_INTERVAL},
    }
    return schedule
