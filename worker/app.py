"""Builds the Celery app from a Settings object (no environment reads here)."""

from __future__ import annotations

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

from worker.keys import QUEUE_BOTS, QUEUE_LOGS, QUEUE_RECONCILE
from worker.settings import Settings

__all__ = ["QUEUE_BOTS", "QUEUE_LOGS", "QUEUE_RECONCILE", "create_app", "transport_options"]


def transport_options(settings: Settings) -> dict[str, float]:
    """Unacked messages come back TASK_VISIBILITY_TIMEOUT after their worker vanished (kill -9)
    — and promptly then: kombu's default sweep for them runs only every 10th tick of 10 s, so a
    message could wait 100 s more (measured: a killed worker's replace came back 89 s late).
    One cheap ZRANGE per tick, a tenth of the timeout, 1 to 10 s. The sweep's mutex expires after
    60 s, not kombu's 300 s: a worker killed while holding it would stop every sweep that
    long."""
    visibility = settings.TASK_VISIBILITY_TIMEOUT
    return {"visibility_timeout": visibility,
            "unacked_restore_interval": max(1, min(10, int(visibility // 10))),
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": 60}


def create_app(settings: Settings) -> Celery:
    from beat.schedule import beat_schedule

    app = Celery("the0-k8s", include=["worker.tasks.reconcile", "worker.tasks.bots",
                                      "worker.tasks.schedules", "worker.tasks.logs"])
    app.conf.update(
        broker_url=settings.REDIS_URL,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings),
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        # At-least-once: ack after the task ran; a worker lost mid-task gives the message back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(QUEUE_RECONCILE), Queue(QUEUE_BOTS), Queue(QUEUE_LOGS)],
        task_default_queue=QUEUE_BOTS,
        task_routes={"reconcile.*": {"queue": QUEUE_RECONCILE},
                     "bots.*": {"queue": QUEUE_BOTS},
                     "schedules.*": {"queue": QUEUE_BOTS},
                     "logs.*": {"queue": QUEUE_LOGS}},
        # The work is network-bound (API server, Mongo, S3): threads, not processes.
        worker_pool="threads",
        worker_concurrency=settings.WORKER_CONCURRENCY,
        # Flower sees each task from its receipt on (task-received, -started, -succeeded…).
        # No task-sent event: it was a second Redis round trip in every send — 45 % of a
        # pass's enqueue (profiled: 1.07 → 0.59 ms a task), which a cold start's first pass
        # pays 12,000 times beside its tasks, and the first pass after an outage hundreds.
        # What waits in the queues: /status and the0_queue_depth.
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        beat_scheduler="beat.scheduler:LeaderScheduler",
        beat_schedule=beat_schedule(settings),
        beat_max_loop_interval=5,
        worker_consumer="worker.consumer:Consumer",
        timezone="UTC",
    )
    # An attribute, not `app.conf`: Celery sends its conf to anyone who asks (`inspect conf`,
    # Flower), masking only keys that look secret, and REDIS_URL may hold a password.
    app.the0_settings = settings
    # One heartbeat per worker process, alive while its task consumer is (worker/bootstep.py).
    from worker.bootstep import WorkerTelemetry

    app.steps["consumer"].add(WorkerTelemetry)
    return app

