"""Kubernetes Events sent in the background, as client-go's event broadcaster does.

An Event only tells an operator what happened (`kubectl get events`); the action it describes
has happened already. Posting it inside the task made every create wait for a fourth request
(a fifth of a create task's time under a loaded API server, py-spy, 10,000-bot cold start).
Here a task hands the body over and goes on; a sender thread posts it. When the queue is full
(the API server far behind) the newest event is dropped and counted, never the action blocked:
client-go drops too. Best effort, as before: a failed post is not retried.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("the0.kube.events")

CAPACITY = 1000
SENDER_THREADS = 2
EXIT_FLUSH_S = 5.0


class EventSender:
    def __init__(self, post: Callable[[dict[str, Any]], None], *, capacity: int = CAPACITY,
                 threads: int = SENDER_THREADS) -> None:
        self._post = post
        self._capacity, self._threads = capacity, threads
        self._lock = threading.Lock()
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self._started_in: int | None = None  # the pid whose threads drain the queue
        self.dropped = 0

    def send(self, body: dict[str, Any]) -> None:
        self._ensure_started()
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            if dropped == 1 or dropped % 100 == 0:
                log.warning("kubernetes events: %d dropped so far (the API server is behind; "
                            "the actions themselves are not affected)", dropped)

    def flush(self, timeout: float) -> bool:
        """Waits until every queued event has been posted (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _ensure_started(self) -> None:
        if self._started_in == os.getpid():
            return
        with self._lock:
            if self._started_in == os.getpid():
                return
            if self._started_in is not None:  # forked: the parent's threads are not here
                self._queue = queue.Queue(maxsize=self._capacity)
            for number in range(self._threads):
                threading.Thread(target=self._drain, args=(self._queue,), daemon=True,
                                 name=f"kube-events-{number}").start()
            self._started_in = os.getpid()
            # A worker's warm shutdown posts what its last tasks recorded (bounded).
            atexit.register(self.flush, EXIT_FLUSH_S)

    def _drain(self, events: queue.Queue[dict[str, Any]]) -> None:
        while True:
            body = events.get()
            try:
                self._post(body)
            except Exception:  # a sender thread must outlive any one event
                log.debug("kubernetes event not posted", exc_info=True)
            finally:
                events.task_done()
