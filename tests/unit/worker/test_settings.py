"""Settings: seed names and defaults, durations, and ONE message listing every problem."""

from __future__ import annotations

import pytest

from worker.settings import SettingsError, load_api_settings, load_settings, parse_duration

REQUIRED = {"MONGO_URI": "mongodb://m/", "MINIO_ENDPOINT": "s3:9000",
            "MINIO_ACCESS_KEY": "AK", "MINIO_SECRET_KEY": "SK-VERY-SECRET"}


def test_defaults_match_the_seed_controller() -> None:
    s = load_settings(env=REQUIRED)
    assert s.NAMESPACE == "the0" and s.MINIO_BUCKET == "the0-custom-bots"
    assert s.RECONCILE_INTERVAL == 30.0
    assert s.RUNTIME_IMAGES["cpp-gcc13"] == "gcc:13-bookworm"
    assert s.resource_policy.defaults.memory_limit == "512Mi"


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("2m", 120.0), ("1.5h", 5400.0),
                                                ("500ms", 0.5), ("45", 45.0), (7, 7.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "-1s", "0", "10 parsecs"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_every_problem_is_listed_in_one_message() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env={"RECONCILE_INTERVAL": "sometimes", "MAX_DELETE_FRACTION": "2",
                           "MINIO_SECRET_KEY": "SK-VERY-SECRET"})
    message = str(info.value)
    for name in ("MONGO_URI", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "RECONCILE_INTERVAL",
                 "MAX_DELETE_FRACTION"):
        assert name in message
    assert "SK-VERY-SECRET" not in message


def test_runtime_images_merge_over_the_defaults() -> None:
    s = load_settings(env={**REQUIRED, "RUNTIME_IMAGES": '{"python3.11": "acme/py:3.11"}'})
    assert s.RUNTIME_IMAGES["python3.11"] == "acme/py:3.11"
    assert s.RUNTIME_IMAGES["nodejs20"] == "node:20-bookworm-slim"


def test_flags_override_the_environment() -> None:
    assert load_settings(env={**REQUIRED, "NAMESPACE": "a"}, NAMESPACE="b").NAMESPACE == "b"


def test_secrets_are_not_shown_in_the_settings_repr() -> None:
    assert "SK-VERY-SECRET" not in repr(load_settings(env=REQUIRED))


def test_heartbeat_settings_and_their_rule() -> None:
    settings = load_settings(env=REQUIRED)
    assert (settings.HEARTBEAT_INTERVAL, settings.HEARTBEAT_TTL) == (10.0, 30.0)
    assert settings.METRICS_FLUSH_INTERVAL == 5.0
    with pytest.raises(SettingsError, match="HEARTBEAT_TTL must be greater"):
        load_settings(env={**REQUIRED, "HEARTBEAT_INTERVAL": "30s", "HEARTBEAT_TTL": "30s"})


def test_api_settings_need_only_redis() -> None:
    settings = load_api_settings(env={})
    assert settings.REDIS_URL == "redis://localhost:6379/0"
    assert (settings.API_REDIS_TIMEOUT, settings.READY_RECONCILE_INTERVALS) == (0.5, 3.0)
    tuned = load_api_settings(env={"RECONCILE_INTERVAL": "2s", "HEARTBEAT_TTL": "3s",
                                   "API_REDIS_TIMEOUT": "250ms", "MONGO_URI": "ignored"})
    assert (tuned.RECONCILE_INTERVAL, tuned.HEARTBEAT_TTL, tuned.API_REDIS_TIMEOUT) == (
        2.0, 3.0, 0.25)
    with pytest.raises(SettingsError, match="API_REDIS_TIMEOUT"):
        load_api_settings(env={"API_REDIS_TIMEOUT": "soon"})


def test_log_collection_defaults() -> None:
    s = load_settings(env=REQUIRED)
    assert s.LOG_INTERVAL == 30.0 and s.LOG_BUCKET == "bot-logs"
    assert s.LOG_CHUNK_SIZE == 100 and s.LOG_READ_CONCURRENCY == 8
    assert s.LOG_LOCK_TTL == 60.0 and s.LOG_CURSOR_TTL == 7 * 86400.0
    assert load_settings(env={**REQUIRED, "LOG_INTERVAL": "10s"}).LOG_INTERVAL == 10.0


def test_bot_placement_settings_are_json() -> None:
    s = load_settings(env={**REQUIRED,
                           "BOT_TOLERATIONS": '[{"key": "dedicated", "operator": "Exists"}]',
                           "BOT_NODE_SELECTOR": '{"pool": "bots"}'})
    assert s.pod_template.tolerations == ({"key": "dedicated", "operator": "Exists"},)
    assert s.pod_template.node_selector == {"pool": "bots"}
    empty = load_settings(env={**REQUIRED, "BOT_TOLERATIONS": "", "BOT_NODE_SELECTOR": " "})
    assert empty.pod_template.tolerations == () and empty.pod_template.node_selector == {}


def test_each_role_names_every_credential_it_lacks_and_no_other() -> None:
    base = {"REDIS_URL": "redis://r:6379/0"}
    with pytest.raises(SettingsError) as caught:
        load_settings(env=base)  # a worker
    message = str(caught.value)
    for name in ("MONGO_URI", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        assert f"{name}: missing (required by the worker role)" in message
    with pytest.raises(SettingsError) as caught:
        load_settings(env=base, role="events")
    assert "MONGO_URI" in str(caught.value) and "MINIO" not in str(caught.value)
    broker = load_settings(env=base, role="broker")
    assert broker.MONGO_URI is None and broker.MINIO_SECRET_KEY is None


def test_a_missing_credential_stops_whoever_reaches_for_it() -> None:
    broker = load_settings(env={"REDIS_URL": "redis://r:6379/0"}, role="broker")
    with pytest.raises(SettingsError, match="MONGO_URI is not set"):
        broker.required("MONGO_URI")
