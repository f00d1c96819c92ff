"""Log-collection tests: the controller's identity, real kwok pod logs, real S3 (versitygw)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.botlogs import LoggedPod
from worker.log_collector import LogCollector
from worker.runtime import Runtime
from worker.settings import load_settings


@pytest.fixture
def log_env(settings_env: dict[str, str], log_bucket: str) -> dict[str, str]:
    return {**settings_env, "LOG_BUCKET": log_bucket, "LOG_CHUNK_SIZE": "2"}


@pytest.fixture
def make_collector(log_env: dict[str, str]) -> Iterator[Callable[..., LogCollector]]:
    runtimes: list[Runtime] = []

    def build(**hooks: Any) -> LogCollector:
        overrides = {k: str(v) for k, v in hooks.pop("settings", {}).items()}
        runtimes.append(Runtime(load_settings(env={**log_env, **overrides})))
        return LogCollector(runtimes[-1], **hooks)

    yield build
    for rt in runtimes:
        rt.close()  # their watches end with the test


@pytest.fixture
def make_pod(admin_api: Any, restricted_namespace: str, tmp_path: Path
             ) -> Callable[..., LoggedPod]:
    def build(bot_id: str, **kwargs: Any) -> LoggedPod:
        return LoggedPod(admin_api, restricted_namespace, tmp_path, bot_id, **kwargs).create()

    return build


def run_pass(collector: LogCollector) -> list[Any]:
    """One pass whose chunks run right here; returns the chunk results."""
    chunks: list[tuple[str, list[dict[str, Any]]]] = []
    collector.collect(send=lambda pass_id, pods: chunks.append((pass_id, pods)))
    from worker.core.logcursor import LogPod

    return [collector.collect_chunk([LogPod.from_message(p) for p in pods], pass_id=pass_id)
            for pass_id, pods in chunks]


def day_objects(s3: Any, bucket: str, bot_id: str, day: str) -> list[tuple[str, bytes]]:
    """A day's objects in reading order, as a reader of the layout gets them: parts 1 … N
    (N from the current part's ledger), then the current part. Missing day: []."""
    from worker.core import logcursor as lc
    from worker.core import logday

    current = lc.object_key(bot_id, day)
    try:
        stat = s3.stat_object(bucket, current)
    except Exception as exc:
        if getattr(exc, "code", "") in ("NoSuchKey", "NoSuchObject", "NotFound"):
            return []
        raise
    meta = {str(k).lower(): str(v) for k, v in (stat.metadata or {}).items()}
    parts = logday.Ledger.decode(meta.get("x-amz-meta-" + logday.META_DAY)).parts
    found = []
    for key in logday.day_keys(bot_id, day, parts):
        response = s3.get_object(bucket, key)
        try:
            found.append((key, bytes(response.read())))
        finally:
            response.close()
            response.release_conn()
    return found


def day_records(s3: Any, bucket: str, bot_id: str, day: str) -> list[dict[str, Any]]:
    """Every record of a bot's day, across its parts, in order."""
    import json

    return [json.loads(line) for _, data in day_objects(s3, bucket, bot_id, day)
            for line in data.decode().splitlines()]


def bot_messages(records: list[dict[str, Any]]) -> list[str]:
    """The messages of the bot's own records (controller records left out)."""
    return [str(r.get("message")) for r in records if r.get("source") == "bot"]
