"""End-to-end fixtures: REAL `celery -A worker worker|beat` processes against the real stack.

Isolation per test as in tests/integration/live_bots: a restricted namespace with the
controller's Role, per-test databases and bucket, Redis flushed first. The processes run as the
restricted controller identity (its kubeconfig); the test itself looks at the cluster as admin.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kubernetes import client

from tests.support.api import BROKER_ROLE_LACKS
from tests.support.bots import upload_code
from tests.support.procs import Proc, Procs
from tests.support.procs_watch import PodCensus, TaskEvents
from tools.stack.supervisor import Stack, StackEnv

REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


# --------------------------------------------------------------------------- test outcome
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(node: pytest.Item) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False)
               for when in ("setup", "call"))


# --------------------------------------------------------------------------- environment
@pytest.fixture
def restricted_namespace(stack: Stack, namespace: str) -> str:
    stack.kubectl("label", "--overwrite", "namespace", namespace,
                  "pod-security.kubernetes.io/enforce=restricted")
    return namespace


@pytest.fixture
def settings_env(stack_env: StackEnv, restricted_namespace: str, db_names: dict[str, str],
                 bucket: str, redis_client: Any, test_id: str) -> dict[str, str]:
    """The controller's environment, as in tests/integration/live_bots/conftest.py."""
    redis_client.flushdb()  # queues, locks, dedup keys, leader lease: all start empty
    return {
        **stack_env.as_env(),
        "KUBECONFIG": stack_env.controller_kubeconfig,
        "KUBE_MODE": "kubeconfig",
        "NAMESPACE": restricted_namespace,
        "BOT_RUNNER_DB": db_names["bot_runner"],
        "BOT_SCHEDULER_DB": db_names["bot_scheduler"],
        "MINIO_BUCKET": bucket,
        # One durable consumer per test: a message a killed consumer left unacknowledged in the
        # stack's stream is never delivered to the next test's consumer (and database).
        "EVENTS_DURABLE": f"t-{test_id}",
        "RECONCILE_INTERVAL": "2s",
        # Tests change Mongo directly (not through events) and expect the next pass to see it.
        "MAX_CREATES_PER_SECOND": "200",
        "CRASH_BACKOFF_BASE": "2s",
        "WORKER_CONCURRENCY": "8",
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def code(s3: Any, bucket: str) -> str:
    """The demo code zip, uploaded to the test's bucket; returns its key."""
    return upload_code(s3, bucket)


@pytest.fixture
def procs(request: pytest.FixtureRequest, settings_env: dict[str, str],
          tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path / "logs", env=settings_env, cwd=tmp_path)
    yield started
    started.stop_all(show_logs=_failed(request.node))


@pytest.fixture
def start_worker(procs: Procs) -> Callable[..., Proc]:
    def start(name: str = "w1", **env: str) -> Proc:
        return procs.start(f"worker-{name}", [CELERY, "-A", "worker", "worker", "--loglevel=INFO",
                                              "-n", f"{name}@%h"], **env)
    return start


@pytest.fixture
def start_beat(procs: Procs) -> Callable[..., Proc]:
    def start(**env: str) -> Proc:
        # As k8s/beat.yaml runs it: the broker-only app, without Mongo or storage credentials.
        return procs.start("beat", [CELERY, "-A", "worker.broker_app", "beat", "--loglevel=INFO"],
                           without=BROKER_ROLE_LACKS, **env)
    return start


# --------------------------------------------------------------------------- celery client
@pytest.fixture
def celery_client(settings_env: dict[str, str]) -> Iterator[Celery]:
    """A plain Celery client on the same broker, routing like the product's app."""
    app = Celery("the0-e2e-client", broker=settings_env["REDIS_URL"], set_as_current=False)
    app.conf.update(task_routes={"reconcile.*": {"queue": "reconcile"},
                                 "bots.*": {"queue": "bots"}},
                    task_serializer="json", accept_content=["json"],
                    broker_connection_retry_on_startup=True, task_ignore_result=True)
    yield app
    app.close()


@pytest.fixture
def task_events(celery_client: Celery) -> Iterator[TaskEvents]:
    events = TaskEvents(celery_client).start()
    yield events
    events.stop()


# --------------------------------------------------------------------------- kubernetes
@pytest.fixture
def core(admin_api: Any) -> Any:
    return client.CoreV1Api(admin_api)


@pytest.fixture
def bots(mongo: Any, db_names: dict[str, str]) -> Any:
    return mongo[db_names["bot_runner"]]["bots"]


@pytest.fixture
def statuses(mongo: Any, db_names: dict[str, str]) -> Any:
    return mongo[db_names["bot_runner"]]["bot_status"]


@pytest.fixture
def census(admin_api: Any, restricted_namespace: str) -> Iterator[Callable[[], PodCensus]]:
    started: list[PodCensus] = []

    def start() -> PodCensus:
        started.append(PodCensus(admin_api, restricted_namespace).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture
def start_events(procs: Procs) -> Callable[..., Proc]:
    """The NATS consumer, `python -m worker events`, as its own process."""
    def start(name: str = "events", **env: str) -> Proc:
        env = {"HEARTBEAT_INTERVAL": "1s", "HEARTBEAT_TTL": "3s", **env}
        return procs.start(name, [sys.executable, "-m", "worker", "events"], **env)
    return start
