"""The api in-process (FastAPI TestClient, lifespan included) against a REAL private
redis-server, written to by the worker side's real telemetry code (no Celery, no stack); the
workers' bucket check asks a REAL private versitygw."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import urllib3
from fastapi.testclient import TestClient
from minio import Minio

from api.main import create_app
from tests.support.procs import Proc
from tools.stack.paths import binaries
from tools.stack.process import free_port
from worker.runtime import Runtime
from worker.settings import load_api_settings, load_settings

ENV = {"MONGO_URI": "mongodb://127.0.0.1:1/", "MINIO_ACCESS_KEY": "api-tests",
       "MINIO_SECRET_KEY": "api-tests-secret", "RECONCILE_INTERVAL": "2s",
       "HEARTBEAT_INTERVAL": "500ms", "HEARTBEAT_TTL": "1s",
       # Set: the events consumer is expected (its heartbeat is a readiness check). The api
       # never connects to it.
       "NATS_URL": "nats://127.0.0.1:1"}
CODE_BUCKET = "the0-custom-bots"  # the code default


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[str]:
    """A private versitygw with the code bucket, as the platform leaves it."""
    port = free_port()
    (tmp_path / "s3-meta").mkdir()
    (tmp_path / "s3-data").mkdir()
    proc = Proc("versitygw", [str(binaries().versitygw), "--port", f"127.0.0.1:{port}", "posix",
                              "--sidecar", str(tmp_path / "s3-meta"), str(tmp_path / "s3-data")],
                tmp_path / "versitygw.log",
                env={"ROOT_ACCESS_KEY": ENV["MINIO_ACCESS_KEY"],
                     "ROOT_SECRET_KEY": ENV["MINIO_SECRET_KEY"]}).start()
    client = Minio(f"127.0.0.1:{port}", access_key=ENV["MINIO_ACCESS_KEY"],
                   secret_key=ENV["MINIO_SECRET_KEY"], secure=False, region="us-east-1")
    deadline = time.monotonic() + 20
    while True:
        try:
            client.make_bucket(CODE_BUCKET)
            break
        except (OSError, urllib3.exceptions.HTTPError):
            proc.assert_alive()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[Proc, str]]:
    port = free_port()
    proc = Proc("redis", [str(binaries().redis_server), "--bind", "127.0.0.1", "--port",
                          str(port), "--save", "", "--appendonly", "no", "--dir",
                          str(tmp_path)], tmp_path / "redis.log").start()
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            proc.assert_alive()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    yield proc, url
    proc.stop()


@pytest.fixture
def env(redis_server: tuple[Proc, str], s3_server: str) -> dict[str, str]:
    return {**ENV, "REDIS_URL": redis_server[1], "MINIO_ENDPOINT": s3_server}


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    return Runtime(load_settings(env=env))


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(load_api_settings(env=env))) as test_client:
        yield test_client


@pytest.fixture
def raw_redis(env: dict[str, str]) -> Iterator[Any]:
    client = redis.Redis.from_url(env["REDIS_URL"])
    yield client
    client.close()
