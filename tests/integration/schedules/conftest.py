"""Schedule tests reuse the live-bot wiring (same stack, identity, isolation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker.reconcile.controller import ScheduleController
from worker.runtime import Runtime
from worker.settings import load_settings


@pytest.fixture
def make_schedule_controller(settings_env: dict[str, str], bucket_code: str
                             ) -> Iterator[Callable[..., ScheduleController]]:
    runtimes: list[Runtime] = []

    def build(**overrides: Any) -> ScheduleController:
        env = {**settings_env, **{k: str(v) for k, v in overrides.items()}}
        runtimes.append(Runtime(load_settings(env=env)))
        return ScheduleController(runtimes[-1])

    yield build
    for rt in runtimes:
        rt.close()  # their watches end with the test


@pytest.fixture
def schedule_controller(make_schedule_controller: Callable[..., ScheduleController]
                        ) -> ScheduleController:
    return make_schedule_controller()


@pytest.fixture
def schedules(mongo: Any, db_names: dict[str, str]) -> Any:
    return mongo[db_names["bot_scheduler"]]["bot_schedules"]


@pytest.fixture
def schedule_statuses(mongo: Any, db_names: dict[str, str]) -> Any:
    return mongo[db_names["bot_scheduler"]]["schedule_status"]


@pytest.fixture
def batch(admin_api: Any) -> Any:
    from kubernetes import client

    return client.BatchV1Api(admin_api)
