"""Celery's task consumer, finding a broker that came back within seconds, and surviving the
loss of a broker while it holds unacknowledged messages, or acknowledges them.

kombu's reconnect loop waits 2, 4, 6, … up to 30 s between attempts, and Celery's consumer
uses those defaults with no setting to change them: after a Redis restart a worker took tasks
again up to 30 s late (16 s in the 10,000-bot chaos run, most of the time the bots waited).
One TCP connect every BROKER_RECONNECT_WAIT_MAX_S is cheap, even from many workers.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

BROKER_RECONNECT_WAIT_MAX_S = 2.0

log = logging.getLogger("the0.consumer")


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=1, interval_step=1,
            interval_max=BROKER_RECONNECT_WAIT_MAX_S)
        return super().ensure_connected(conn)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        """Celery drops the lost connection (`collect()`, then `close()`). With a message
        unacknowledged — any task running under acks_late — kombu 5.7's Redis channel, closed
        after `collect()` detached its transport, reads the broker's address from that
        transport to give the message back and raises AttributeError ('NoneType' object has no
        attribute 'hostname'), which Celery takes for an unrecoverable error: the worker
        exited whenever Redis went away while it was busy (10,000-bot chaos run, 2026-12-01).
        The connection is already dropped when that happens; the message stays in Redis's
        unacked set and comes back after TASK_VISIBILITY_TIMEOUT, as a killed worker's does
        (with Redis itself gone, the next pass plans the bot again)."""
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:
            log.warning("broker connection lost with messages unacknowledged; dropped it "
                        "without giving them back (kombu: %s); they return after the "
                        "visibility timeout", error)
            self.connection = None

    def call_soon_ack(self, p: Any, *args: Any, **kwargs: Any) -> Any:
        """The ack or reject of a task message runs later, in the event loop. A task that
        ended while Redis was gone (its retry could not be sent either: Celery rejects it)
        leaves that call queued; it runs once the consumer has reconnected, on the channel of
        the dropped connection, where kombu 5.7 raises the same AttributeError as above — and
        Celery exited the worker ("Unrecoverable error", 10,000-bot chaos run, 2026-12-02).
        That message is in Redis's unacked set of the lost connection (it comes back after
        TASK_VISIBILITY_TIMEOUT) or went with Redis; either way the worker goes on."""
        return super().call_soon_ack(_tolerating_a_dropped_channel(p), *args, **kwargs)


def _tolerating_a_dropped_channel(ack: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return ack(*args, **kwargs)
        except AttributeError as error:
            log.warning("acknowledging a message of a lost broker connection failed (kombu: "
                        "%s); it returns after the visibility timeout", error)
            return None

    return run
