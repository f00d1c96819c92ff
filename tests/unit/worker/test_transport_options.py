"""The broker's transport options: a vanished worker's messages come back promptly after the
visibility timeout (the real-broker behaviour: tests/e2e/test_celery_live_bots.py, kill -9)."""

from __future__ import annotations

import pytest

from worker.app import transport_options
from worker.settings import load_settings

ENV = {"MONGO_URI": "mongodb://127.0.0.1:1/", "MINIO_ENDPOINT": "127.0.0.1:1",
       "MINIO_ACCESS_KEY": "k", "MINIO_SECRET_KEY": "s" * 16}


@pytest.mark.parametrize(("visibility", "sweep"), [("10s", 1), ("60s", 6), ("5m", 10),
                                                    ("1h", 10), ("2s", 1)])
def test_unacked_messages_are_swept_every_tenth_of_the_timeout_between_1_and_10_s(
        visibility: str, sweep: int) -> None:
    options = transport_options(load_settings({**ENV, "TASK_VISIBILITY_TIMEOUT": visibility}))
    assert options["unacked_restore_interval"] == sweep
    # Every tick scans (kombu's default scans every 10th: a 100 s wait at 10 s ticks).
    assert options["unacked_restore_throttle"] == 1
    assert options["unacked_mutex_expire"] == 60
