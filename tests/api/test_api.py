"""The api's endpoints over what the worker side really writes to a real Redis: heartbeats
(`worker.telemetry.Heartbeat`), pass records (`record_pass`), flushed metrics."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.support.api import samples, value
from tests.support.bots import wait_for
from tests.support.procs import Proc
from worker import keys
from worker.core.errors import TemporaryError
from worker.core.metrics import KUBE_REQUESTS
from worker.runtime import Runtime
from worker.settings import load_api_settings, load_settings
from worker.telemetry import Heartbeat, counted_action, record_pass

SUMMARY = {"counts": {"create": 2, "delete": 1, "replace": 0, "recreate": 0, "waiting": 0},
           "bots": {"desired": 3, "running": 2, "pending": 1, "missing": 0, "unhealthy": 0,
                    "backoff": 0, "invalid": 1, "disabled": 0}}


def beat_now(rt: Runtime) -> None:
    """The active beat's heartbeat and a connected events consumer's, fresh now (the api's
    HEARTBEAT_TTL here is 1 s)."""
    rt.telemetry.heartbeat(keys.HEARTBEAT_BEAT, {"who": "beat-1", "at": time.time()}, ttl=30)
    rt.telemetry.events_consumer_beat("events-1", {"at": time.time(), "connected": True},
                                      ttl=30, increments={})


def healthy(rt: Runtime) -> Heartbeat:
    """A worker heartbeat thread, a beat heartbeat and a successful pass of each kind."""
    heartbeat = Heartbeat(rt, "w1@test")
    heartbeat.start()
    beat_now(rt)
    for kind in ("live", "scheduled"):
        record_pass(rt, kind, ok=True, duration_s=0.2, summary=SUMMARY)
    return heartbeat


def test_healthz_is_always_200(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_names_every_failing_check_on_an_empty_redis(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["workers", "beat", "events", "reconcile:live",
                                          "reconcile:scheduled"]
    # No worker has checked the buckets yet: said, not failed.
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["code_bucket"] == {"name": "code_bucket", "ok": True,
                                     "detail": "not checked yet by a live worker"}


def test_ready_with_heartbeats_and_recent_passes_then_not_when_the_worker_dies(
        client: TestClient, rt: Runtime) -> None:
    heartbeat = healthy(rt)
    try:
        wait_for(lambda: client.get("/readyz").status_code == 200, "ready", timeout=5)
        status = client.get("/status").json()
        assert [w["hostname"] for w in status["workers"]] == ["w1@test"]
        assert status["workers"][0]["pid"] == os.getpid()
        assert status["heartbeats"]["beat"]["who"] == "beat-1"
        assert status["reconcile"]["live"]["bots"]["running"] == 2
        assert status["reconcile"]["live"]["counts"]["create"] == 2
        assert status["queues"] == {"reconcile": 0, "bots": 0, "logs": 0}
    finally:
        heartbeat._stop.set()  # a "kill": the thread stops, its key is left to expire
    died = time.monotonic()
    wait_for(lambda: client.get("/readyz").status_code == 503, "503", timeout=5)
    assert time.monotonic() - died <= 2 * rt.settings.HEARTBEAT_TTL
    beat_now(rt)
    assert client.get("/readyz").json()["failing"] == ["workers"]


def test_a_clean_stop_removes_the_heartbeat_at_once(client: TestClient, rt: Runtime) -> None:
    heartbeat = healthy(rt)
    wait_for(lambda: client.get("/readyz").status_code == 200, "ready", timeout=5)
    heartbeat.stop()
    beat_now(rt)
    assert client.get("/readyz").json()["failing"] == ["workers"]


def test_a_failed_pass_keeps_the_last_success_and_bot_counts(client: TestClient,
                                                            rt: Runtime) -> None:
    heartbeat = healthy(rt)
    try:
        record_pass(rt, "live", ok=False, duration_s=1.5, error="mongo: ServerSelectionTimeout")
        beat_now(rt)
        body = client.get("/readyz").json()
        assert body["ready"], body
        live = next(c for c in body["checks"] if c["name"] == "reconcile:live")
        assert "last pass failed: mongo: ServerSelectionTimeout" in live["detail"]
        record = client.get("/status").json()["reconcile"]["live"]
        assert record["ok"] is False and record["last_ok_at"] is not None
        assert record["bots"]["running"] == 2
        page = samples(client.get("/metrics").text)
        assert value(page, "the0_reconcile_total", kind="live", result="error") == 1.0
        assert value(page, "the0_reconcile_total", kind="live", result="ok") == 1.0
        assert value(page, "the0_bots", kind="live", state="running") == 2.0
    finally:
        heartbeat.stop()


def test_metrics_render_every_family_and_parse(client: TestClient, rt: Runtime,
                                               raw_redis: Any) -> None:
    heartbeat = healthy(rt)
    try:
        for status in (200, 200, 201, 0):
            rt.metrics.observe_kube_request("create" if status == 201 else "get", "pods",
                                            status)
        counted_action(rt.metrics, "live", "create", lambda: "created")
        counted_action(rt.metrics, "live", "create", lambda: "failed: code_not_found")
        heartbeat.flush()
        raw_redis.set(keys_last_logs(), json.dumps({"at": time.time(), "lag_s": 4.5}))
        raw_redis.rpush("bots", "m1", "m2")
        raw_redis.rpush("bots\x06\x163", "m3")
        beat_now(rt)
        page = samples(client.get("/metrics").text)
    finally:
        heartbeat.stop()
    assert value(page, "the0_kube_requests_total", verb="get", resource="pods",
                 code="200") == 2
    assert value(page, "the0_kube_requests_total", verb="get", resource="pods",
                 code="<error>") == 1
    assert value(page, "the0_actions_total", kind="live", action="create",
                 outcome="done") == 1
    assert value(page, "the0_actions_total", kind="live", action="create",
                 outcome="failed") == 1
    assert value(page, "the0_reconcile_planned_actions_total", kind="live",
                 action="create") == 2
    assert value(page, "the0_reconcile_duration_seconds_count", kind="scheduled") == 1
    assert value(page, "the0_reconcile_duration_seconds_bucket", kind="live", le="0.25") == 1
    assert value(page, "the0_reconcile_duration_seconds_bucket", kind="live", le="0.1") == 0
    assert value(page, "the0_queue_depth", queue="bots") == 3
    assert value(page, "the0_log_lag_seconds") == 4.5
    assert value(page, "the0_bots", kind="scheduled", state="invalid") == 1
    assert value(page, "the0_ready") == 1.0
    assert value(page, "the0_readiness_check", check="beat") == 1.0


def keys_last_logs() -> str:
    return str(getattr(keys, "LAST_LOGS", "the0:last-logs"))


def test_metrics_flush_is_one_round_trip_and_nothing_is_lost_when_redis_is_down(
        rt: Runtime, redis_server: tuple[Proc, str], raw_redis: Any) -> None:
    proc, _url = redis_server
    heartbeat = Heartbeat(rt, "w1@test")
    for _ in range(1000):
        rt.metrics.inc(KUBE_REQUESTS, verb="get", resource="pods", code="200")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TemporaryError, match=r"^redis: "):  # fails if flush succeeds
            heartbeat.flush()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert len(rt.metrics) == 1  # kept for the next flush
    heartbeat.flush()
    assert len(rt.metrics) == 0
    raw = raw_redis.hgetall(keys.metrics(KUBE_REQUESTS.name))
    assert list(raw.values()) == [b"1000"]


def test_without_nats_url_events_are_off_and_not_asked_for(
        env: dict[str, str], rt: Runtime) -> None:
    without_nats = {k: v for k, v in env.items() if k != "NATS_URL"}
    heartbeat = healthy(rt)
    try:
        with TestClient(create_app(load_api_settings(env=without_nats))) as client:
            # Only the beat's heartbeat, no events consumer's: ready all the same.
            rt.telemetry.heartbeat(keys.HEARTBEAT_BEAT, {"who": "beat-1", "at": time.time()},
                                   ttl=30)
            wait_for(lambda: client.get("/readyz").status_code == 200, "ready", timeout=5)
            events = next(c for c in client.get("/readyz").json()["checks"]
                          if c["name"] == "events")
            assert events["ok"] and events["detail"].startswith("off: NATS_URL is not set")
            assert client.get("/status").json()["events"] == "off"
    finally:
        heartbeat.stop()


def test_a_missing_code_bucket_is_named_with_the_hint(
        env: dict[str, str], s3_server: str, raw_redis: Any) -> None:
    # The operator set the bucket the0's API really uses, but it is not there (yet).
    rt = Runtime(load_settings(env={**env, "MINIO_BUCKET": "custom-bots"}))
    heartbeat = healthy(rt)
    try:
        with TestClient(create_app(load_api_settings(env=env))) as client:
            def code_check() -> dict[str, Any]:
                beat_now(rt)
                body = client.get("/readyz").json()
                return next(c for c in body["checks"] if c["name"] == "code_bucket")
            wait_for(lambda: not code_check()["ok"], "code_bucket failing", timeout=5)
            assert code_check()["detail"] == (
                "code bucket 'custom-bots' does not exist (MINIO_BUCKET)")
            assert client.get("/readyz").json()["failing"] == ["code_bucket"]
            state = next(c for c in client.get("/readyz").json()["checks"]
                         if c["name"] == "state_bucket")
            assert state["ok"] and "does not exist" in state["detail"]
    finally:
        heartbeat.stop()


def test_status_says_when_the_deletion_budget_held_a_removal(
        client: TestClient, rt: Runtime) -> None:
    assert client.get("/status").json()["deletions_held"] is None
    for bot_id in ("a", "b"):
        rt.redis.note_deletion_held("live", bot_id, now=time.time(), ttl=60)
    held = client.get("/status").json()["deletions_held"]
    assert held["count"] == 2 and held["kind"] == "live" and 0 <= held["age_s"] < 30
    assert "bot_id" not in json.dumps(held)  # /status names no bot
