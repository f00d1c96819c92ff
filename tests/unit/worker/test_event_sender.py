"""Kubernetes Events go out in the background: a slow or failing API server never holds up the
task that recorded one, a full queue drops (and counts) instead of blocking, and flush waits
for what was queued. (The post into a real API server: the Event assertions of
tests/integration/live_bots/test_reconcile.py.)"""

from __future__ import annotations

import threading
import time
from typing import Any

from worker.adapters.event_sender import EventSender


def test_send_returns_at_once_while_the_post_is_slow_and_flush_waits_for_it() -> None:
    posted: list[dict[str, Any]] = []
    release = threading.Event()

    def slow_post(body: dict[str, Any]) -> None:
        release.wait(5)
        posted.append(body)

    sender = EventSender(slow_post, threads=1)
    started = time.monotonic()
    for number in range(3):
        sender.send({"n": number})
    assert time.monotonic() - started < 0.5
    assert not sender.flush(0.2) and posted == []
    release.set()
    assert sender.flush(5)
    assert posted == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_full_queue_drops_the_newest_and_counts_it() -> None:
    release = threading.Event()
    posted: list[dict[str, Any]] = []

    def stuck_post(body: dict[str, Any]) -> None:
        release.wait(5)
        posted.append(body)

    sender = EventSender(stuck_post, capacity=2, threads=1)
    sender.send({"n": 0})
    deadline = time.monotonic() + 5  # the thread takes the first: the queue is empty again
    while sender._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.01)
    for number in range(1, 6):
        sender.send({"n": number})
    assert sender.dropped == 3
    release.set()
    assert sender.flush(5)
    assert posted == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_failing_post_does_not_stop_the_sender() -> None:
    posted: list[int] = []

    def flaky_post(body: dict[str, Any]) -> None:
        if body["n"] % 2:
            raise RuntimeError("refused")
        posted.append(body["n"])

    sender = EventSender(flaky_post, threads=1)
    for number in range(6):
        sender.send({"n": number})
    assert sender.flush(5)
    assert posted == [0, 2, 4]
