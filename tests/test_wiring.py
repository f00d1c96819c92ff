"""The pieces fit: layering contracts, stable task names, beat entries naming real tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from beat.schedule import beat_schedule
from worker.app import create_app
from worker.settings import load_settings

ENV = {"MONGO_URI": "mongodb://127.0.0.1:1/", "MINIO_ENDPOINT": "127.0.0.1:1",
       "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s"}
STABLE_TASK_NAMES = {"reconcile.bots", "reconcile.bot", "bots.create", "bots.delete",
                     "bots.replace", "bots.recreate", "reconcile.schedules",
                     "reconcile.schedule", "schedules.create", "schedules.update",
                     "schedules.delete"}


def test_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_task_names_are_stable_and_routed_to_their_queues() -> None:
    app = create_app(load_settings(env=ENV))
    app.loader.import_default_modules()
    registered = {name for name in app.tasks if not name.startswith("celery.")}
    assert registered >= STABLE_TASK_NAMES
    for name in STABLE_TASK_NAMES:
        queue = app.amqp.router.route({}, name)["queue"].name
        assert queue == ("reconcile" if name.startswith("reconcile.") else "bots")


def test_every_beat_entry_names_a_registered_task_and_expires_within_its_interval() -> None:
    settings = load_settings(env={**ENV, "RECONCILE_INTERVAL": "45s"})
    app = create_app(settings)
    app.loader.import_default_modules()
    for entry in beat_schedule(settings).values():
        assert entry["task"] in app.tasks
        assert entry["options"]["expires"] <= entry["schedule"]
    assert beat_schedule(settings)["reconcile-live-bots"]["schedule"] == 45.0
    assert beat_schedule(settings)["reconcile-scheduled-bots"]["task"] == "reconcile.schedules"


def test_the_celery_app_is_at_least_once() -> None:
    conf = create_app(load_settings(env=ENV)).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.task_ignore_result
    assert conf.beat_scheduler == "beat.scheduler:LeaderScheduler"


def test_log_collection_tasks_run_on_the_logs_queue_every_log_interval() -> None:
    settings = load_settings(env={**ENV, "LOG_INTERVAL": "20s"})
    app = create_app(settings)
    app.loader.import_default_modules()
    for name in ("logs.collect", "logs.collect_chunk"):
        assert name in app.tasks
        assert app.amqp.router.route({}, name)["queue"].name == "logs"
    entry = beat_schedule(settings)["collect-logs"]
    assert entry["task"] == "logs.collect" and entry["schedule"] == 20.0
    assert entry["options"]["expires"] == 20.0
