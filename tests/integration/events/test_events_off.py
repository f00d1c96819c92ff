"""Without NATS_URL (optional, as in the seed) the events consumer says events are off and
exits non-zero at once: it never waits on a default address."""

from __future__ import annotations

import os
import subprocess
import sys
import time

ENV = {"MONGO_URI": "mongodb://127.0.0.1:1/", "MINIO_ENDPOINT": "127.0.0.1:1",
       "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s", "REDIS_URL": "redis://127.0.0.1:1/0"}


def test_the_events_consumer_without_nats_url_says_events_are_off_and_exits() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"} | ENV
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "worker", "events"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "NATS_URL is not set: platform events are off" in done.stdout + done.stderr
    assert time.monotonic() - started < 30
