"""Shared fixtures: the real stack (started once per session) and per-test isolation.

The stack is started lazily: unit tests never start it. If a server cannot start, the
`stack` fixture raises and every test that needs it ERRORS with the server's log tail —
it is never skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.stack.supervisor import Stack, StackEnv

# A test marked `slow` without `seconds=` is assumed to take this long.
SLOW_TEST_DEFAULT_SECONDS = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding the longest tests first, each file's own order kept.

    `make test` deals whole files out to its workers in collection order
    (`--dist loadfile --no-loadscope-reorder`): a 100 s test dealt out last is the suite's
    tail, dealt out first it runs beside everything else.
    """
    def expected_seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return marker.kwargs.get("seconds", SLOW_TEST_DEFAULT_SECONDS) if marker else 0

    longest: dict[Path, float] = {}
    for item in items:
        longest[item.path] = max(longest.get(item.path, 0), expected_seconds(item))
    items.sort(key=lambda item: -longest[item.path])  # stable: files keep their order


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = Path(os.environ.get("THE0_TEST_STACK_DIR") or tmp_path_factory.mktemp("stack"))
    the_stack = Stack(workdir, progress=lambda msg: print(f"[stack] {msg}", flush=True))
    the_stack.start()  # raises ServerFailed (name + log tail) → every dependent test errors
    try:
        yield the_stack
    finally:
        the_stack.stop()


@pytest.fixture(scope="session")
def stack_env(stack: Stack) -> StackEnv:
    assert stack.env is not None
    return stack.env


@pytest.fixture
def test_id() -> str:
    """A short random id that keeps one test's names apart from every other test's."""
    return secrets.token_hex(4)


@pytest.fixture
def namespace(stack: Stack, test_id: str) -> Iterator[str]:
    """A fresh namespace with the controller's Role and RoleBinding from k8s/ applied in it."""
    name = f"t-{test_id}"
    stack.kubectl("create", "namespace", name)
    stack.grant_controller(name)
    yield name
    stack.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def admin_api(stack_env: StackEnv) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=stack_env.admin_kubeconfig)


@pytest.fixture(scope="session")
def controller_api(stack_env: StackEnv) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=stack_env.controller_kubeconfig)


@pytest.fixture
def mongo(stack_env: StackEnv) -> Iterator[Any]:
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        stack_env.mongo_uri, serverSelectionTimeoutMS=5000
    )
    yield client
    client.close()


@pytest.fixture
def db_names(test_id: str, mongo: Any) -> Iterator[dict[str, str]]:
    """Per-test database names standing in for `bot_runner` and `bot_scheduler`."""
    names = {"bot_runner": f"t_{test_id}_bot_runner", "bot_scheduler": f"t_{test_id}_bot_scheduler"}
    yield names
    for name in names.values():
        mongo.drop_database(name)


@pytest.fixture
def s3(stack_env: StackEnv) -> Any:
    from minio import Minio

    return Minio(stack_env.s3_endpoint, access_key=stack_env.s3_access_key,
                 secret_key=stack_env.s3_secret_key, secure=False)


@pytest.fixture
def bucket(s3: Any, test_id: str) -> Iterator[str]:
    """A fresh bucket; emptied and removed afterwards."""
    name = f"t-{test_id}-code"
    s3.make_bucket(name)
    yield name
    for obj in s3.list_objects(name, recursive=True):
        s3.remove_object(name, obj.object_name)
    s3.remove_bucket(name)


@pytest.fixture
def log_bucket(s3: Any, test_id: str) -> Iterator[str]:
    """Stands in for `bot-logs`; created by the collector itself, emptied afterwards."""
    name = f"t-{test_id}-logs"
    yield name
    if s3.bucket_exists(name):
        for obj in s3.list_objects(name, recursive=True):
            s3.remove_object(name, obj.object_name)
        s3.remove_bucket(name)


@pytest.fixture
def redis_client(stack_env: StackEnv) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(stack_env.redis_url)
    yield client
    client.close()
