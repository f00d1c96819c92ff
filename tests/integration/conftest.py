"""A controller wired to the real stack, isolated per test (namespace, databases, bucket,
Redis keys), running as the restricted controller identity in a `restricted` namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.bots import upload_code
from tools.stack.supervisor import Stack, StackEnv
from worker.reconcile.controller import LiveBotController
from worker.runtime import Runtime
from worker.settings import Settings, load_settings


@pytest.fixture
def restricted_namespace(stack: Stack, namespace: str) -> str:
    stack.kubectl("label", "--overwrite", "namespace", namespace,
                  "pod-security.kubernetes.io/enforce=restricted")
    return namespace


@pytest.fixture
def settings_env(stack_env: StackEnv, restricted_namespace: str, db_names: dict[str, str],
                 bucket: str, redis_client: Any) -> dict[str, str]:
    redis_client.flushdb()  # Redis keys (locks, dedup, backoff) start empty for each test
    upload_code_target = bucket
    env = {
        **stack_env.as_env(),
        "KUBECONFIG": stack_env.controller_kubeconfig,
        "KUBE_MODE": "kubeconfig",
        "NAMESPACE": restricted_namespace,
        "BOT_RUNNER_DB": db_names["bot_runner"],
        "BOT_SCHEDULER_DB": db_names["bot_scheduler"],
        "MINIO_BUCKET": upload_code_target,
        "RECONCILE_INTERVAL": "2s",
        # Tests change Mongo directly (not through events) and expect the next pass to see it.
        "MAX_CREATES_PER_SECOND": "200",
        "CRASH_BACKOFF_BASE": "2s",
    }
    return env


@pytest.fixture
def bucket_code(s3: Any, bucket: str) -> str:
    """The per-test bucket with the demo code zip in it."""
    return upload_code(s3, bucket)


@pytest.fixture
def make_controller(settings_env: dict[str, str], bucket_code: str
                    ) -> Iterator[Callable[..., LiveBotController]]:
    runtimes: list[Runtime] = []

    def build(**overrides: Any) -> LiveBotController:
        settings: Settings = load_settings(env={**settings_env, **{
            k: str(v) for k, v in overrides.items()}})
        runtimes.append(Runtime(settings))
        return LiveBotController(runtimes[-1])

    yield build
    for rt in runtimes:
        rt.close()  # their watches end with the test


@pytest.fixture
def controller(make_controller: Callable[..., LiveBotController]) -> LiveBotController:
    return make_controller()


@pytest.fixture
def bots(mongo: Any, db_names: dict[str, str]) -> Any:
    return mongo[db_names["bot_runner"]]["bots"]


@pytest.fixture
def statuses(mongo: Any, db_names: dict[str, str]) -> Any:
    return mongo[db_names["bot_runner"]]["bot_status"]


@pytest.fixture
def core(admin_api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(admin_api)
