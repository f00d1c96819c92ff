"""`logs.collect` (beat, every LOG_INTERVAL) and `logs.collect_chunk` (one per chunk of pods).

Messages carry pod names, uids, bot ids and container status — never a bot's config. A chunk
message expires after one interval: the next pass covers the same pods with fresher status.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from worker.core.errors import TemporaryError
from worker.core.logcursor import LogPod
from worker.log_collector import LogCollector
from worker.tasks.base import RuntimeTask

log = logging.getLogger("the0.tasks.logs")


@shared_task(name="logs.collect", base=RuntimeTask, bind=True, ignore_result=True)
def collect(self: RuntimeTask) -> dict[str, Any]:
    interval = self.settings.LOG_INTERVAL

    def send(pass_id: str, pods: list[dict[str, Any]]) -> None:
        self.app.send_task("logs.collect_chunk", args=(pass_id, pods), expires=interval)

    try:
        return LogCollector(self.rt).collect(send=send)
    except TemporaryError as exc:
        # A failed pod list sends nothing; the next tick tries again.
        log.error("log collection pass failed, nothing sent: %s", exc)
        raise


@shared_task(name="logs.collect_chunk", base=RuntimeTask, bind=True, ignore_result=True)
def collect_chunk(self: RuntimeTask, pass_id: str, pods: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    result = LogCollector(self.rt).collect_chunk([LogPod.from_message(p) for p in pods],
                                                 pass_id=pass_id)
    return result.summary()
