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
