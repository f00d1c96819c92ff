"""Celery's task consumer, finding a broker that came back within seconds.

kombu's reconnect loop waits 2, 4, 6, … up to 30 s between attempts, and Celery's consumer
uses those defaults with no setting to change them: after a Redis restart a worker took tasks
again up to 30 s late (16 s in the 10,000-bot chaos run, most of the time the bots waited).
One TCP connect every BROKER_RECONNECT_WAIT_MAX_S is cheap, even from many workers.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

BROKER_RECONNECT_WAIT_MAX_S = 2.0


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=1, interval_step=1,
            interval_max=BROKER_RECONNECT_WAIT_MAX_S)
        return super().ensure_connected(conn)
