"""The Celery consumer bootstep that runs the worker's heartbeat (`worker.telemetry.Heartbeat`).

It lives exactly as long as the worker's task consumer: it starts after the consumer does and
stops (removing the heartbeat key) when the consumer stops — at shutdown or when the broker
connection is lost — so a fresh heartbeat means "this worker is taking tasks".
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from worker.telemetry import Heartbeat

log = logging.getLogger("the0.telemetry")


class WorkerTelemetry(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: the worker's heartbeat lives exactly as long as its task consumer."""

    label = "the0 heartbeat"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.heartbeat: Heartbeat | None = None

    def start(self, parent: Any) -> None:
        from worker.runtime import process_runtime

        rt = process_runtime(parent.app.the0_settings)
        # The queues this worker consumes (-Q; add_consumer / cancel_consumer change them),
        # read at every beat, so /readyz can tell a log worker alone from a worker that
        # reconciles.
        def queues() -> list[str]:
            return [str(q.name) for q in getattr(parent.task_consumer, "queues", None) or []]

        self.heartbeat = Heartbeat(rt, str(parent.hostname), queues=queues)
        self.heartbeat.start()
        log.info("heartbeat started for %s", parent.hostname)

    def stop(self, parent: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
