"""Flower (`celery -A worker.flower_app flower`) with basic auth from FLOWER_BASIC_AUTH, as a
REAL process: its API lists the running worker only with the right credentials; /metrics is
Prometheus text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.api import samples, start_flower
from tests.support.bots import bot_doc, wait_for
from tests.support.procs import Proc, Procs

Start = Callable[..., Proc]
AUTH = ("operator", "s3cret-flower-pw")


def test_flower_lists_the_running_worker_with_auth_only(
        procs: Procs, start_worker: Start, start_beat: Start, code: str, bots: Any) -> None:
    bots.insert_one(bot_doc("flower-1"))
    worker = start_worker("w1")
    start_beat()
    flower = start_flower(procs, basic_auth=":".join(AUTH))

    assert flower.get("/api/workers").status_code == 401
    assert flower.get("/api/workers", auth=("operator", "wrong")).status_code == 401
    assert flower.get("/", auth=("nobody", AUTH[1])).status_code == 401

    def listed() -> dict[str, Any] | None:
        worker.assert_alive()
        flower.proc.assert_alive()
        response = flower.get("/api/workers?refresh=1", auth=AUTH)
        assert response.status_code == 200, response.text[:300]
        workers = response.json()
        return workers if any(name.startswith("w1@") for name in workers) else None

    workers = wait_for(listed, "Flower to list worker w1", timeout=60, interval=1.0)
    info = next(v for k, v in workers.items() if k.startswith("w1@"))
    queues = {q["name"] for q in info.get("active_queues") or []}
    assert {"reconcile", "bots"} <= queues

    # Task events reach Flower (reconcile passes fired by beat); nothing secret is shown.
    def tasks_seen() -> Any:
        response = flower.get("/api/tasks", auth=AUTH)
        return response.json() if response.status_code == 200 and response.json() else None

    tasks = wait_for(tasks_seen, "Flower to see tasks", timeout=60, interval=1.0)
    assert any(t.get("name") == "reconcile.bots" for t in tasks.values())
    everything = flower.get("/api/workers", auth=AUTH).text + flower.get(
        "/api/tasks", auth=AUTH).text
    assert "SECRET-" not in everything
    assert procs.env["MINIO_SECRET_KEY"] not in everything

    # Flower's own Prometheus metrics (no auth: Flower serves /metrics and /healthcheck open).
    page = samples(flower.get("/metrics").text)
    assert any(name.startswith("flower_") for name, _ in page)
