"""CronJob generation: cron and time zone validation, shape, secrecy, and the config hash."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.core.bot import DEFAULT_IMAGES, Bot, BotKind, parse_bot
from worker.core.cronspec import (
    MACROS,
    CronJobSettings,
    build_cronjob,
    build_cronjob_secret,
    cronjob_hash,
    cronjob_secret_name,
    normalize_schedule,
)
from worker.core.errors import InvalidBot
from worker.core.naming import MAX_CRONJOB_NAME, cronjob_name, label_value, pod_name, secret_name
from worker.core.podspec import PodTemplateSettings, SignedUrls, build_config_secret, build_pod

SECRETS = ["sk-live-SECRET-0123456789", "PASSPHRASE-correct-horse", "wallet-seed-abandon-abandon"]

TEMPLATE = PodTemplateSettings(
    namespace="the0",
    image_map=DEFAULT_IMAGES,
    image_tag="latest",
    init_image="python:3.11-alpine",
    pull_policy="IfNotPresent",
)
URLS = SignedUrls(code="https://s3/code?sig=1", state_get="https://s3/state?sig=2",
                  state_put="https://s3/state?sig=3", signed_at=1700000000.4)
CRON = CronJobSettings()


def make_bot(
    bot_id: str = "clx0abc123def456ghi789jk",
    *,
    schedule: str = "0 9 * * MON-FRI",
    timezone: str | None = None,
    **config: Any,
) -> Bot:
    doc = {
        "id": bot_id,
        "config": {
            "name": "dca bot",
            "schedule": schedule,
            "api_key": SECRETS[0],
            "exchange": {"passphrase": SECRETS[1], "seed": [SECRETS[2]]},
            **({} if timezone is None else {"timezone": timezone}),
            **config,
        },
        "custom": {
            "version": "1.0.0",
            "filePath": "bots/abc/1.0.0.zip",
            "config": {"runtime": "python3.11"},
        },
    }
    return parse_bot(doc, kind=BotKind.SCHEDULED)


def pod_template(cronjob: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    return template


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec["initContainers"], *pod_spec["containers"]]


def secret_refs(pod_spec: dict[str, Any]) -> list[dict[str, str]]:
    """Every reference to a Secret: env keys, and each Secret volume (as key "URLS")."""
    return [
        e["valueFrom"]["secretKeyRef"]
        for c in containers(pod_spec)
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    ] + [{"name": v["secret"]["secretName"], "key": "URLS"}
         for v in pod_spec["volumes"] if "secret" in v]


def strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def schedule_error(expression: object) -> InvalidBot:
    with pytest.raises(InvalidBot) as caught:
        normalize_schedule("bot-1", expression)
    return caught.value


# --- cron expressions ------------------------------------------------------------------------


VALID_SCHEDULES: list[tuple[str, str]] = [
    ("* * * * *", "* * * * *"),
    ("*/5 * * * *", "*/5 * * * *"),
    ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
    ("0 9 * * mon-fri", "0 9 * * mon-fri"),
    ("0 0 1 JAN *", "0 0 1 JAN *"),
    ("0 0 1 jan-mar,JUL *", "0 0 1 jan-mar,JUL *"),
    ("30 2 * * SUN", "30 2 * * SUN"),
    ("0 12 * * sat", "0 12 * * sat"),
    ("15,45 8-17 * * 1-5", "15,45 8-17 * * 1-5"),
    ("0 0-23/2 * * *", "0 0-23/2 * * *"),
    ("10-50/10 * * * *", "10-50/10 * * * *"),
    ("0 0 1/5 * *", "0 0 1/5 * *"),  # "a/n": a to the end of the range, as the apiserver reads it
    ("0 0 28-31 * *", "0 0 28-31 * *"),
    ("59 23 31 12 6", "59 23 31 12 6"),
    ("0 0 1 1 0", "0 0 1 1 0"),
    ("00 09 01 01 *", "00 09 01 01 *"),
    ("0 0 ? * MON", "0 0 ? * MON"),
    ("0 0 1 * ?", "0 0 1 * ?"),
    ("0 0 * * MON-FRI/2", "0 0 * * MON-FRI/2"),
    ("*/100 * * * *", "*/100 * * * *"),
    ("0 0 29 2 *", "0 0 29 2 *"),  # leap days exist
    ("0 0 31 2 MON", "0 0 31 2 MON"),  # day-of-month OR day-of-week: runs on Mondays
    ("  0   9 *\t* *  ", "0 9 * * *"),  # whitespace is normalised, nothing else
    # Day-of-week 7 is Sunday in cron, but the apiserver only knows 0-6: rewritten, same days.
    ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 * * 5-7", "0 0 * * 0,5,6"),
    ("0 0 * * 1-7", "0 0 * * 0-6"),
    ("0 0 * * 0-7", "0 0 * * 0-6"),
    ("0 0 * * 1,3,7", "0 0 * * 0,1,3"),
    ("0 0 * * 1-7/2", "0 0 * * 0,1,3,5"),
    ("0 0 * * */2,7", "0 0 * * 0,2,4,6"),
    ("0 0 * * 7,SUN", "0 0 * * 0"),
    # Macros are kept, in the lowercase spelling the apiserver accepts.
    ("@yearly", "@yearly"),
    ("@annually", "@annually"),
    ("@monthly", "@monthly"),
    ("@weekly", "@weekly"),
    ("@daily", "@daily"),
    ("@midnight", "@midnight"),
    ("@hourly", "@hourly"),
    ("@DAILY", "@daily"),
    (" @Hourly\n", "@hourly"),
    # 6 fields, seconds first (upstream the0): a seconds field of 0 is dropped without loss.
    ("0 * * * * *", "* * * * *"),
    ("0 0 9 * * MON-FRI", "0 9 * * MON-FRI"),
    ("00 30 2 * * *", "30 2 * * *"),
    ("0 */15 * * * *", "*/15 * * * *"),
    ("0 0 0 * * 7", "0 0 * * 0"),
    ("0-0 0 12 * * *", "0 12 * * *"),  # still exactly second 0
]


@pytest.mark.parametrize(("expression", "expected"), VALID_SCHEDULES)
def test_valid_schedules(expression: str, expected: str) -> None:
    assert normalize_schedule("bot-1", expression) == expected


@pytest.mark.parametrize(("expression", "expected"), VALID_SCHEDULES)
def test_normalising_is_idempotent(expression: str, expected: str) -> None:
    assert normalize_schedule("bot-1", expected) == expected


def test_every_macro_is_accepted() -> None:
    assert {normalize_schedule("b", macro) for macro in MACROS} == MACROS


SUB_MINUTE_SCHEDULES = [
    "* * * * * *",
    "*/10 * * * * *",
    "30 * * * * *",
    "0,30 * * * * *",
    "1 0 9 * * *",
    "0-59 * * * * *",
    "*/30 0 9 * * MON",
    "59 59 23 31 12 *",
]


@pytest.mark.parametrize("expression", SUB_MINUTE_SCHEDULES)
def test_seconds_other_than_zero_are_refused(expression: str) -> None:
    error = schedule_error(expression)
    assert error.reason == "sub_minute_schedule"
    assert error.detail == "sub-minute schedules are not supported in Kubernetes mode"
    assert error.bot_id == "bot-1"


INVALID_SCHEDULES: list[tuple[object, str]] = [
    # (expression, a word the detail must contain)
    (None, "not a string"),
    (5, "not a string"),
    (["0", "*", "*", "*", "*"], "not a string"),
    (b"* * * * *", "not a string"),
    ("", "empty"),
    ("   \n", "empty"),
    ("*", "field(s)"),
    ("* * * *", "field(s)"),
    ("0 0 0 * * * 2024", "field(s)"),  # Quartz year field
    ("every day", "field(s)"),
    ("TZ=Europe/London 0 9 * * *", "UTC"),
    ("CRON_TZ=UTC 0 9 * * *", "UTC"),
    ("cron_tz=UTC 0 9 * * *", "UTC"),
    ("@every 1h", "@every"),
    ("@reboot", "unknown macro"),
    ("@daily 0", "unknown macro"),
    ("60 * * * *", "minute"),
    ("-1 * * * *", "minute"),
    ("0 24 * * *", "hour"),
    ("0 0 0 * *", "day-of-month"),
    ("0 0 32 * *", "day-of-month"),
    ("0 0 * 0 *", "month"),
    ("0 0 * 13 *", "month"),
    ("0 0 * * 8", "day-of-week"),
    ("0 0 * JANUARY *", "month"),
    ("0 0 * * MONDAY", "day-of-week"),
    ("0 0 * MON *", "month"),  # a weekday name in the month field
    ("0 0 * * JAN", "day-of-week"),
    ("0 0 JAN * *", "day-of-month"),  # names only where cron has them
    ("*/0 * * * *", "minute"),
    ("0 */0 * * *", "hour"),
    ("*/x * * * *", "minute"),
    ("*/-1 * * * *", "minute"),
    ("5-3 * * * *", "minute"),
    ("0 0 * * SAT-SUN", "day-of-week"),
    ("0 0 * DEC-JAN *", "month"),
    ("1,,2 * * * *", "minute"),
    ("1, * * * *", "minute"),
    ("*,5 * * * *", "minute"),
    ("1-2-3 * * * *", "minute"),
    ("1/2/3 * * * *", "minute"),
    ("? * * * *", "minute"),  # `?` only stands for a day
    ("0 0 L * *", "day-of-month"),  # Quartz extensions are not cron
    ("0 0 * * 5#3", "day-of-week"),
    ("0 0 15W * *", "day-of-month"),
    ("+5 * * * *", "minute"),
    ("٣ * * * *", "minute"),  # a non-ASCII digit
    ("1_0 * * * *", "minute"),
    ("0 0 30 2 *", "never runs"),
    ("0 0 31 4,6,9,11 *", "never runs"),
    ("0 0 31 2 ?", "never runs"),
    ("x * * * * *", "second"),  # not a seconds field at all: invalid, not sub-minute
    ("60 0 * * * *", "second"),
    ("0 0 0 0 * *", "day-of-month"),  # 6 fields, second 0, but a bad day
]


@pytest.mark.parametrize(("expression", "word"), INVALID_SCHEDULES)
def test_invalid_schedules(expression: object, word: str) -> None:
    error = schedule_error(expression)
    assert error.reason == "invalid_schedule"
    assert word in error.detail
    assert error.bot_id == "bot-1"


def test_the_corpus_is_large() -> None:
    assert len(VALID_SCHEDULES) + len(SUB_MINUTE_SCHEDULES) + len(INVALID_SCHEDULES) >= 100


@pytest.mark.parametrize(
    "expression",
    [
        "1," * 400 + "x * * * *",
        "0 0 * * " + "MON," * 200 + "XYZ",
        "@" + "q" * 500,
        "0 0 " + "7" * 900 + " * *",
        "x" * 2000,
    ],
)
def test_an_error_never_quotes_more_than_sixty_characters_of_the_input(expression: str) -> None:
    error = schedule_error(expression)
    for text in (error.detail, str(error)):
        assert not any(expression[i : i + 61] in text for i in range(len(expression) - 60))


def test_an_error_shows_unprintable_characters_as_question_marks() -> None:
    error = schedule_error("0 0 * * 1\x1b[2J,x")
    assert "\x1b" not in error.detail and "?" in error.detail


def test_a_long_expression_is_refused_never_truncated() -> None:
    every_minute = ",".join(str(m) for m in range(60))
    assert normalize_schedule("b", f"{every_minute} * * * *") == f"{every_minute} * * * *"
    error = schedule_error(f"{every_minute} * * * *" + " " * 5 + "*" * 1000)
    assert "longer than 1000" in error.detail


# --- CronJob settings --------------------------------------------------------------------------


def test_cronjob_settings_defaults() -> None:
    assert dataclasses.asdict(CronJobSettings()) == {
        "starting_deadline_seconds": 300,
        "successful_jobs_history_limit": 3,
        "failed_jobs_history_limit": 3,
        "ttl_seconds_after_finished": 86400,
        "active_deadline_seconds": None,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"starting_deadline_seconds": -1},
        {"successful_jobs_history_limit": -1},
        {"failed_jobs_history_limit": 1.5},
        {"ttl_seconds_after_finished": True},
        {"active_deadline_seconds": 0},
        {"active_deadline_seconds": -5},
    ],
)
def test_cronjob_settings_refuse_what_the_apiserver_would(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CronJobSettings(**change)


# --- the CronJob -----------------------------------------------------------------------------


def expected_labels(bot_id: str) -> dict[str, str]:
    return {
        "app": "the0-bot",
        "bot-id": label_value(bot_id),
        "managed-by": "the0-schedule-controller",
        "app.kubernetes.io/name": "the0-bot",
        "app.kubernetes.io/instance": cronjob_name(bot_id),
        "app.kubernetes.io/managed-by": "the0-schedule-controller",
        "app.kubernetes.io/component": "scheduled-bot",
    }


@pytest.mark.parametrize("bot_id", ["clx0abc123def456ghi789jk", "My_Bot.v2 (test)", "x" * 200])
def test_cronjob_metadata(bot_id: str) -> None:
    bot = make_bot(bot_id)
    cronjob = build_cronjob(bot, TEMPLATE, CRON)
    digest = cronjob_hash(bot, TEMPLATE, CRON)
    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    assert cronjob["metadata"] == {
        "name": cronjob_name(bot_id),
        "namespace": "the0",
        "labels": expected_labels(bot_id),
        "annotations": {"the0.dev/bot-id": bot_id, "the0.dev/config-hash": digest},
    }
    assert len(cronjob["metadata"]["name"]) <= MAX_CRONJOB_NAME
    job_template = cronjob["spec"]["jobTemplate"]
    assert job_template["metadata"] == {
        "labels": expected_labels(bot_id),
        "annotations": {"the0.dev/bot-id": bot_id, "the0.dev/config-hash": digest},
    }
    assert pod_template(cronjob)["metadata"] == {
        "labels": expected_labels(bot_id),
        "annotations": {"the0.dev/bot-id": bot_id, "the0.dev/config-hash": digest},
    }


def test_cronjob_spec() -> None:
    bot = make_bot(schedule="0 0 9 * * 1-5", timezone="Europe/London")
    spec = build_cronjob(bot, TEMPLATE, CRON)["spec"]
    assert {key: value for key, value in spec.items() if key != "jobTemplate"} == {
        "schedule": "0 9 * * 1-5",
        "timeZone": "UTC",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 300,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "suspend": False,
    }
    job_spec = spec["jobTemplate"]["spec"]
    assert set(job_spec) == {"backoffLimit", "ttlSecondsAfterFinished", "template"}
    assert job_spec["backoffLimit"] == 0
    assert job_spec["ttlSecondsAfterFinished"] == 86400


@pytest.mark.parametrize("timezone", [None, "", "America/New_York", "UTC+8", "Mars/Olympus"])
def test_schedules_run_in_utc_whatever_the_bots_own_timezone_parameter_says(
        timezone: str | None) -> None:
    # As in the0: `config.timezone` is the bot's own parameter, passed to it in BOT_CONFIG.
    assert build_cronjob(make_bot(timezone=timezone), TEMPLATE, CRON)["spec"]["timeZone"] == "UTC"


def test_cronjob_settings_are_applied() -> None:
    cron = CronJobSettings(
        starting_deadline_seconds=60,
        successful_jobs_history_limit=1,
        failed_jobs_history_limit=5,
        ttl_seconds_after_finished=600,
        active_deadline_seconds=3600,
    )
    spec = build_cronjob(make_bot(), TEMPLATE, cron)["spec"]
    assert spec["startingDeadlineSeconds"] == 60
    assert spec["successfulJobsHistoryLimit"] == 1
    assert spec["failedJobsHistoryLimit"] == 5
    job_spec = spec["jobTemplate"]["spec"]
    assert job_spec["ttlSecondsAfterFinished"] == 600
    assert job_spec["activeDeadlineSeconds"] == 3600


def test_the_job_pod_is_the_live_bot_pod_with_restart_policy_never() -> None:
    bot = make_bot("Odd Id_1")
    pod = build_pod(bot, TEMPLATE, restart_policy="Never")
    spec = pod_template(build_cronjob(bot, TEMPLATE, CRON))["spec"]
    assert spec["restartPolicy"] == "Never"
    # Identical but for the Secret it reads from.
    expected = json.dumps(pod["spec"]).replace(
        json.dumps(secret_name(pod_name(bot.id))),
        json.dumps(cronjob_secret_name(cronjob_name(bot.id))),
    )
    assert json.dumps(spec) == expected
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False


def test_every_secret_reference_points_at_the_cronjob_secret() -> None:
    bot = make_bot("Odd Id_1")
    cronjob = build_cronjob(bot, TEMPLATE, CRON)
    refs = secret_refs(pod_template(cronjob)["spec"])
    assert len(refs) == 2  # BOT_CONFIG (env) and the URLs volume
    assert {r["name"] for r in refs} == {cronjob_secret_name(cronjob["metadata"]["name"])}
    assert {r["key"] for r in refs} == {"BOT_CONFIG", "URLS"}
    # Nothing of the live bot's names survives: no pod name, no per-pod Secret.
    text = json.dumps(cronjob)
    assert pod_name(bot.id) not in text
    assert secret_name(pod_name(bot.id)) not in text
    assert "the0-bot-controller" not in text
    assert "live-bot" not in text


def test_cronjob_secret_name() -> None:
    assert cronjob_secret_name("schedule-abc") == "schedule-abc-config"
    longest = cronjob_name("z" * 200)
    assert len(cronjob_secret_name(longest)) <= 63


def test_the_cronjob_does_not_share_objects_with_later_builds() -> None:
    bot = make_bot()
    first = build_cronjob(bot, TEMPLATE, CRON)
    first["metadata"]["labels"]["x"] = "y"
    pod_template(first)["metadata"]["labels"]["z"] = "w"
    assert build_cronjob(bot, TEMPLATE, CRON) == build_cronjob(make_bot(), TEMPLATE, CRON)
    labels = build_cronjob(bot, TEMPLATE, CRON)["metadata"]["labels"]
    assert "x" not in labels and "z" not in labels


@pytest.mark.parametrize(
    ("schedule", "timezone", "reason"),
    [
        ("*/10 * * * * *", None, "sub_minute_schedule"),
        ("0 25 * * *", None, "invalid_schedule"),
        ("TZ=UTC 0 9 * * *", None, "invalid_schedule"),
    ],
)
def test_a_bad_schedule_is_an_invalid_bot(
    schedule: str, timezone: str | None, reason: str
) -> None:
    bot = make_bot(schedule=schedule, timezone=timezone)
    for build in (build_cronjob, cronjob_hash):
        with pytest.raises(InvalidBot) as caught:
            build(bot, TEMPLATE, CRON)
        assert caught.value.reason == reason
        assert caught.value.bot_id == bot.id
        assert not any(secret in str(caught.value) for secret in SECRETS)


def test_a_runtime_without_an_image_is_an_invalid_bot() -> None:
    template = dataclasses.replace(TEMPLATE, image_map={"nodejs20": "the0/nodejs20"})
    with pytest.raises(InvalidBot) as caught:
        build_cronjob(make_bot(), template, CRON)
    assert caught.value.reason == "no_image_for_runtime"


# --- secrecy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bot_id", ["clx0abc123def456ghi789jk", "Odd Id_1", "y" * 120])
def test_no_config_value_appears_anywhere_in_the_cronjob(bot_id: str) -> None:
    cronjob = build_cronjob(make_bot(bot_id, symbol="UNIQUE-SYMBOL-XYZ"), TEMPLATE, CRON)
    text = json.dumps(cronjob)
    for secret in [*SECRETS, "UNIQUE"]:
        assert secret not in text
        assert not any(secret in s for s in strings_in(cronjob))


# --- the config secret -----------------------------------------------------------------------


def test_cronjob_secret() -> None:
    bot = make_bot()
    name = cronjob_name(bot.id)
    secret = build_cronjob_secret(
        bot, cronjob_name=name, cronjob_uid="uid-123", namespace="the0", urls=URLS
    )
    assert (secret["apiVersion"], secret["kind"], secret["type"]) == ("v1", "Secret", "Opaque")
    # It outlives many runs: the shell updates it when the config changes or URLs are re-signed.
    assert "immutable" not in secret
    assert secret["metadata"] == {
        "name": f"{name}-config",
        "namespace": "the0",
        "labels": expected_labels(bot.id),
        "annotations": {"the0.dev/bot-id": bot.id, "the0.dev/urls-signed-at": "1700000000"},
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": name,
                "uid": "uid-123",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ],
    }
    assert secret["stringData"] == {
        "BOT_CONFIG": json.dumps(bot.config, sort_keys=True, separators=(",", ":")),
        "CODE_URL": "https://s3/code?sig=1",
        "STATE_GET_URL": "https://s3/state?sig=2",
        "STATE_PUT_URL": "https://s3/state?sig=3",
    }
    # Same content as a live bot's Secret, only named, labelled and owned differently.
    live = build_config_secret(bot, pod_name=name, pod_uid="u", namespace="the0", urls=URLS)
    assert live["stringData"]["BOT_CONFIG"] == secret["stringData"]["BOT_CONFIG"]


def test_the_secret_is_what_the_cronjob_references() -> None:
    bot = make_bot("Odd Id_1")
    cronjob = build_cronjob(bot, TEMPLATE, CRON)
    secret = build_cronjob_secret(
        bot,
        cronjob_name=cronjob["metadata"]["name"],
        cronjob_uid="u",
        namespace="the0",
        urls=URLS,
    )
    spec = pod_template(cronjob)["spec"]
    refs = secret_refs(spec)
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
    items = {i["key"] for v in spec["volumes"] if "secret" in v for i in v["secret"]["items"]}
    assert ({r["key"] for r in refs} - {"URLS"}) | items == set(secret["stringData"])


# --- the config hash -------------------------------------------------------------------------


def test_the_hash_is_sixteen_hex_characters_and_stable() -> None:
    digest = cronjob_hash(make_bot(), TEMPLATE, CRON)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert cronjob_hash(make_bot(), TEMPLATE, CRON) == digest
    assert build_cronjob(make_bot(), TEMPLATE, CRON) == build_cronjob(make_bot(), TEMPLATE, CRON)


def test_the_hash_is_not_the_live_pods_hash() -> None:
    bot = make_bot()
    pod = build_pod(bot, TEMPLATE, restart_policy="Never")
    assert pod["metadata"]["annotations"]["the0.dev/config-hash"] != cronjob_hash(
        bot, TEMPLATE, CRON
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("0 0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("@DAILY", "@daily"),
        ("0  9 * * *", "0 9 * * *"),
        ("0 0 * * 7", "0 0 * * 0"),
    ],
)
def test_equivalent_spellings_of_a_schedule_build_the_same_cronjob(first: str, second: str) -> None:
    # Only the normalised schedule reaches the CronJob. (The hash still sees the spelling through
    # config, which is hashed whole, so editing config.schedule always updates the CronJob.)
    bot = make_bot()
    one = build_cronjob(dataclasses.replace(bot, schedule=first), TEMPLATE, CRON)
    other = build_cronjob(dataclasses.replace(bot, schedule=second), TEMPLATE, CRON)
    assert one == other


def test_editing_the_schedule_in_config_changes_the_hash_even_when_equivalent() -> None:
    one = cronjob_hash(make_bot(schedule="0 0 9 * * *"), TEMPLATE, CRON)
    assert one != cronjob_hash(make_bot(schedule="0 9 * * *"), TEMPLATE, CRON)


def _with_config(bot: Bot, **changes: Any) -> Bot:
    return dataclasses.replace(bot, config={**bot.config, **changes})


BOT_CHANGES: dict[str, Callable[[Bot], Bot]] = {
    "schedule": lambda b: dataclasses.replace(b, schedule="0 10 * * MON-FRI"),
    "timezone parameter": lambda b: _with_config(b, timezone="America/New_York"),
    "config value": lambda b: _with_config(b, api_key="other"),
    "nested config value": lambda b: _with_config(b, exchange={"passphrase": "x"}),
    "config key added": lambda b: _with_config(b, new=None),
    "code version": lambda b: dataclasses.replace(b, code_version="1.0.1"),
    "code path": lambda b: dataclasses.replace(b, code_path="bots/abc/1.0.1.zip"),
    "runtime": lambda b: dataclasses.replace(b, runtime="nodejs20"),
    "entrypoint": lambda b: dataclasses.replace(b, entrypoint="bot.py"),
    "memory limit": lambda b: dataclasses.replace(
        b, resources=dataclasses.replace(b.resources, memory_limit="1Gi")
    ),
}


@pytest.mark.parametrize("change", BOT_CHANGES.values(), ids=BOT_CHANGES.keys())
def test_the_hash_changes_with_every_bot_input(change: Callable[[Bot], Bot]) -> None:
    bot = make_bot()
    assert cronjob_hash(change(bot), TEMPLATE, CRON) != cronjob_hash(bot, TEMPLATE, CRON)


CRON_CHANGES: dict[str, dict[str, Any]] = {
    "starting deadline": {"starting_deadline_seconds": 60},
    "successful history": {"successful_jobs_history_limit": 1},
    "failed history": {"failed_jobs_history_limit": 10},
    "ttl": {"ttl_seconds_after_finished": 3600},
    "active deadline": {"active_deadline_seconds": 600},
}


@pytest.mark.parametrize("change", CRON_CHANGES.values(), ids=CRON_CHANGES.keys())
def test_the_hash_changes_with_every_cron_setting(change: dict[str, Any]) -> None:
    bot = make_bot()
    changed = CronJobSettings(**change)
    assert cronjob_hash(bot, TEMPLATE, changed) != cronjob_hash(bot, TEMPLATE, CRON)


TEMPLATE_CHANGES: dict[str, dict[str, Any]] = {
    "init image": {"init_image": "the0/the0-k8s:0.2.0"},
    "state sync interval": {"state_sync_interval_s": 5},
    "pull policy": {"pull_policy": "Always"},
    "namespace": {"namespace": "the0-staging"},
}


@pytest.mark.parametrize("change", TEMPLATE_CHANGES.values(), ids=TEMPLATE_CHANGES.keys())
def test_the_hash_changes_with_every_template_setting(change: dict[str, Any]) -> None:
    bot = make_bot()
    template = dataclasses.replace(TEMPLATE, **change)
    assert cronjob_hash(bot, template, CRON) != cronjob_hash(bot, TEMPLATE, CRON)


def test_the_urls_do_not_change_the_hash() -> None:
    bot = make_bot()
    before = cronjob_hash(bot, TEMPLATE, CRON)
    name = cronjob_name(bot.id)
    build_cronjob_secret(bot, cronjob_name=name, cronjob_uid="u", namespace="n", urls=URLS)
    assert cronjob_hash(bot, TEMPLATE, CRON) == before


def test_the_hash_is_the_same_in_another_process() -> None:
    # Guards against Python's salted hash() creeping in: PYTHONHASHSEED differs per process.
    program = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.unit.core.test_cronspec import make_bot, TEMPLATE, CRON;"
        "from worker.core.cronspec import cronjob_hash;"
        "print(cronjob_hash(make_bot(), TEMPLATE, CRON))"
    )
    root = str(Path(__file__).resolve().parents[3])
    digests = {
        subprocess.run(
            [sys.executable, "-c", program, root],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert digests == {cronjob_hash(make_bot(), TEMPLATE, CRON)}


def test_renaming_reaches_every_kind_of_secret_reference() -> None:
    # The generic rename, on a spec holding each kind of reference the pod API has (today's
    # pod uses two of them; a pod spec change must not leave a job reading the live Secret).
    from worker.core.cronspec import _rename_secret_refs

    def env(name: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": "old", "key": name}}}

    spec: dict[str, Any] = {
        "initContainers": [{"env": [env("A"), {"name": "PLAIN", "value": "old"}],
                            "envFrom": [{"secretRef": {"name": "old"}},
                                        {"configMapRef": {"name": "old"}}]}],
        "containers": [{"env": [env("B"), {"name": "F", "valueFrom": {"fieldRef": {}}}],
                        "envFrom": [{"secretRef": {"name": "old"}}]},
                       {"name": "bare"}],
        "volumes": [{"name": "s", "secret": {"secretName": "old"}},
                    {"name": "c", "configMap": {"name": "old"}}],
    }
    _rename_secret_refs(spec, "new")
    assert spec == {
        "initContainers": [{"env": [{"name": "A", "valueFrom": {"secretKeyRef": {
                                        "name": "new", "key": "A"}}},
                                    {"name": "PLAIN", "value": "old"}],
                            "envFrom": [{"secretRef": {"name": "new"}},
                                        {"configMapRef": {"name": "old"}}]}],
        "containers": [{"env": [{"name": "B", "valueFrom": {"secretKeyRef": {
                                    "name": "new", "key": "B"}}},
                                {"name": "F", "valueFrom": {"fieldRef": {}}}],
                        "envFrom": [{"secretRef": {"name": "new"}}]},
                       {"name": "bare"}],
        "volumes": [{"name": "s", "secret": {"secretName": "new"}},
                    {"name": "c", "configMap": {"name": "old"}}],
    }
    empty: dict[str, Any] = {}
    _rename_secret_refs(empty, "new")
    assert empty == {}
