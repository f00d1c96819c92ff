"""The log worker's settings role: storage credentials, and never a Mongo URI."""

from __future__ import annotations

import pytest

from worker.app import QUEUE_LOGS, create_app
from worker.settings import ROLE_REQUIRES, SettingsError, load_settings

STORAGE = {"MINIO_ENDPOINT": "s3:9000", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s"}


def test_the_logs_role_needs_storage_and_no_mongo() -> None:
    assert set(ROLE_REQUIRES["logs"]) == set(STORAGE)
    settings = load_settings(env={"REDIS_URL": "redis://r:6379/0", **STORAGE}, role="logs")
    assert settings.MONGO_URI is None
    with pytest.raises(SettingsError) as caught:
        load_settings(env={"REDIS_URL": "redis://r:6379/0"}, role="logs")
    message = str(caught.value)
    assert "MINIO_SECRET_KEY: missing (required by the logs role)" in message
    assert "MONGO_URI" not in message


def test_the_log_workers_app_routes_log_tasks_to_the_logs_queue() -> None:
    app = create_app(load_settings(env={"REDIS_URL": "redis://r:6379/0", **STORAGE},
                                   role="logs"))
    for name in ("logs.collect", "logs.collect_chunk"):
        assert app.amqp.router.route({}, name)["queue"].name == QUEUE_LOGS
