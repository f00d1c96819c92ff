"""What processes tell the api about themselves: the worker heartbeat, metric flushes, and the
record of each reconcile pass.

- `Heartbeat` (run by the Celery bootstep in `worker.bootstep`) refreshes ONE heartbeat per
  worker process every HEARTBEAT_INTERVAL (TTL HEARTBEAT_TTL) and flushes buffered metrics
  every METRICS_FLUSH_INTERVAL — in the same pipeline.
- `record_pass` writes the last-pass record of a kind (time, duration, result, counts by action,
  bots by state) together with the pass's metrics.
- `counted_action` counts per-bot task outcomes in the process's buffer.

Nothing here decides anything; the heartbeat thread never raises (Redis errors are logged and
the increments kept for the next flush).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from worker.core.buckets import BucketCheck
from worker.core.buckets import problems as bucket_problems
from worker.core.errors import TemporaryError
from worker.core.metrics import (
    ACTIONS,
    PLANNED_ACTIONS,
    RECONCILE_DURATION,
    RECONCILES,
    MetricBuffer,
    action_outcome,
)
from worker.core.text import iso
from worker.runtime import Runtime

log = logging.getLogger("the0.telemetry")
ACTION_KINDS = ("create", "delete", "replace", "recreate")


# ================================================================== passes and tasks
def record_pass(rt: Runtime, kind: str, *, ok: bool, duration_s: float,
                summary: Mapping[str, Any] | None = None, error: str = "") -> None:
    """The last-pass record of `kind` and the pass's metrics (plus anything else buffered in
    this process), in one Redis round trip. A failed pass keeps the previous success time
    (`last_ok_at`) and bot counts, so /readyz tolerates one failed pass but not three
    intervals without a success."""
    now = rt.clock()
    summary = dict(summary or {})
    previous = {} if ok else (rt.telemetry.previous_record(kind) or {})
    record: dict[str, Any] = {
        "at": now, "at_iso": iso(now), "ok": ok,
        "last_ok_at": now if ok else previous.get("last_ok_at"),
        **summary,
        "duration_s": round(duration_s, 3),
    }
    if not ok:
        record["error"] = error[:500]
        if "bots" not in record and "bots" in previous:
            record["bots"] = previous["bots"]
    metrics = rt.metrics
    metrics.inc(RECONCILES, kind=kind, result="ok" if ok else "error")
    metrics.observe(RECONCILE_DURATION, duration_s, kind=kind)
    counts = summary.get("counts") or {}
    for action in ACTION_KINDS:
        if counts.get(action):
            metrics.inc(PLANNED_ACTIONS, float(counts[action]), kind=kind, action=action)
    increments = metrics.drain()
    try:
        rt.telemetry.record_pass(kind, record, increments)
    except TemporaryError:
        metrics.restore(increments)
        raise


def record_failed_pass(rt: Runtime, kind: str, exc: BaseException, started: float) -> None:
    """For a task whose pass raised: never lets a Redis error hide the original one."""
    detail = str(exc) if isinstance(exc, TemporaryError) else type(exc).__name__
    try:
        record_pass(rt, kind, ok=False, duration_s=time.monotonic() - started,
                    error=detail)
    except TemporaryError as redis_error:
        log.warning("cannot record the failed pass: %s", redis_error)


def record_action(metrics: MetricBuffer, kind: str, action: str, outcome: str) -> None:
    metrics.inc(ACTIONS, kind=kind, action=action, outcome=outcome)


def counted_action(metrics: MetricBuffer, kind: str, action: str,
                   run: Callable[[], str]) -> str:
    """Runs a per-bot action and counts its outcome (done / noop / failed / retry / error)."""
    try:
        result = run()
    except TemporaryError:
        record_action(metrics, kind, action, "retry")
        raise
    except Exception:
        record_action(metrics, kind, action, "error")
        raise
    record_action(metrics, kind, action, action_outcome(result))
    return result


# ================================================================== heartbeats
def heartbeat_payload(who: str, *, now: float, started_at: float,
                      buckets: Mapping[str, BucketCheck] | None = None,
                      queues: Sequence[str] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"who": who, "at": now, "pid": os.getpid(),
                               "host": socket.gethostname(), "started_at": started_at}
    if queues is not None:  # a worker's: which queues it takes tasks from (/readyz: workers)
        payload["queues"] = sorted(queues)
    if buckets is not None:
        payload["buckets"] = {role: check.as_json() for role, check in buckets.items()}
    return payload


BUCKET_CHECK_INTERVAL = 60.0  # a bucket made or removed by hand shows in /readyz within this


class BucketWatch:
    """Checks the code and state buckets every BUCKET_CHECK_INTERVAL in its own thread (a slow
    S3 must never delay the heartbeat), keeps the latest answer, and logs each new problem
    once — at start first, so an operator sees a wrong MINIO_BUCKET before any bot fails."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.latest: dict[str, BucketCheck] | None = None
        self._said: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="the0-buckets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> dict[str, BucketCheck]:
        checks = self.rt.code.bucket_checks()
        found = bucket_problems(checks)
        for role, text in found.items():
            if self._said.get(role) != text:
                log.error("%s", text)
        for role in self._said.keys() - found.keys():
            log.info("%s bucket %r: found", role, checks[role].name)
        self._said = found
        self.latest = checks
        return checks

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # the thread must outlive a bad answer
                log.exception("bucket check failed")
            self._stop.wait(BUCKET_CHECK_INTERVAL)


class Heartbeat:
    """A daemon thread that refreshes a worker's heartbeat and flushes metrics."""

    def __init__(self, rt: Runtime, hostname: str, *,
                 queues: Callable[[], Sequence[str]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.rt = rt
        self.hostname = hostname
        self.queues = queues
        self.clock = clock
        self.started_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_warning = 0.0
        self.buckets = BucketWatch(rt)

    def start(self) -> None:
        self._stop.clear()
        self.buckets.start()
        self._thread = threading.Thread(target=self._run, name="the0-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, *, remove: bool = True) -> None:
        self._stop.set()
        self.buckets.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.rt.telemetry.flush(self.rt.metrics.drain())
            if remove:
                self.rt.telemetry.worker_gone(self.hostname)
        except TemporaryError as exc:
            log.warning("heartbeat: cannot say goodbye: %s", exc)

    def beat(self) -> None:
        s = self.rt.settings
        now = self.clock()
        increments = self.rt.metrics.drain()
        try:
            self.rt.telemetry.worker_beat(
                self.hostname, heartbeat_payload(self.hostname, now=now,
                                                 started_at=self.started_at,
                                                 buckets=self.buckets.latest,
                                                 queues=self.queues() if self.queues
                                                 else None),
                ttl=s.HEARTBEAT_TTL, now=now, increments=increments)
        except TemporaryError:
            self.rt.metrics.restore(increments)
            raise

    def flush(self) -> None:
        increments = self.rt.metrics.drain()
        try:
            self.rt.telemetry.flush(increments)
        except TemporaryError:
            self.rt.metrics.restore(increments)
            raise

    def _run(self) -> None:
        s = self.rt.settings
        next_beat = 0.0
        step = min(s.HEARTBEAT_INTERVAL, s.METRICS_FLUSH_INTERVAL)
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_beat:
                    self.beat()
                    next_beat = time.monotonic() + s.HEARTBEAT_INTERVAL
                else:
                    self.flush()
            except TemporaryError as exc:
                if time.monotonic() - self._last_warning > 60:
                    self._last_warning = time.monotonic()
                    log.warning("heartbeat: %s", exc)
            except Exception:  # never let the thread die: a dead thread is a false "dead"
                log.exception("heartbeat failed")
            self._stop.wait(step)
