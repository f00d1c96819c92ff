"""Bot documents → Bot: what is accepted, every rejection reason, and that config stays secret."""

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from worker.core.bot import (
    DEFAULT_IMAGES,
    RUNTIMES,
    Bot,
    BotKind,
    is_enabled,
    is_safe_relative_path,
    parse_bot,
)
from worker.core.errors import InvalidBot
from worker.core.resources import DEFAULT_CEILINGS, DEFAULT_RESOURCES, ResourcePolicy, Resources

SECRET = "sk-live-SECRET-0123456789"


def make_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "clx0abc123def456ghi789jk",
        "config": {"name": "my bot", "api_key": SECRET, "symbol": "BTC-USD"},
        "custom": {
            "version": "1.2.0",
            "filePath": "bots/clx0abc/1.2.0.zip",
            "config": {"runtime": "python3.11", "name": "momentum"},
        },
    }
    doc.update(overrides)
    return doc


def parse(doc: dict[str, Any], kind: BotKind = BotKind.LIVE) -> Bot:
    return parse_bot(doc, kind=kind)


def reason_for(doc: dict[str, Any], kind: BotKind = BotKind.LIVE) -> str:
    with pytest.raises(InvalidBot) as caught:
        parse(doc, kind)
    return caught.value.reason


# --- enabled ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [False, "false", "FALSE", " False ", "0", " 0 ", 0, 0.0, "fAlSe"])
@pytest.mark.parametrize("where", ["top", "config"])
def test_disabled_spellings(flag: object, where: str) -> None:
    doc = make_doc()
    if where == "top":
        doc["enabled"] = flag
    else:
        doc["config"]["enabled"] = flag
    assert not is_enabled(doc)


@pytest.mark.parametrize("flag", [True, "true", "1", 1, "yes", "", None, [], {}, "no"])
def test_anything_else_is_enabled(flag: object) -> None:
    doc = make_doc(enabled=flag)
    doc["config"]["enabled"] = flag
    assert is_enabled(doc)


def test_missing_flags_mean_enabled() -> None:
    assert is_enabled(make_doc())
    assert is_enabled({})


@pytest.mark.parametrize("config", [None, "enabled=false", ["false"], 0, False])
def test_a_non_dict_config_does_not_crash_is_enabled(config: object) -> None:
    assert is_enabled({"config": config})


def test_top_level_disable_wins_over_config_enable() -> None:
    doc = make_doc(enabled="false")
    doc["config"]["enabled"] = True
    assert not is_enabled(doc)


# --- valid documents ----------------------------------------------------------------------------


def test_a_valid_live_bot_is_parsed() -> None:
    bot = parse(make_doc())
    assert bot.id == "clx0abc123def456ghi789jk"
    assert bot.kind is BotKind.LIVE
    assert bot.config == {"name": "my bot", "api_key": SECRET, "symbol": "BTC-USD"}
    assert bot.runtime == "python3.11"
    assert bot.entrypoint == "main.py"
    assert bot.code_path == "bots/clx0abc/1.2.0.zip"
    assert bot.code_version == "1.2.0"
    assert bot.resources == DEFAULT_RESOURCES
    assert bot.name == "my bot"
    assert bot.schedule is None and bot.warnings == ()


def test_the_parsed_config_is_a_copy() -> None:
    doc = make_doc()
    bot = parse(doc)
    doc["config"]["symbol"] = "ETH-USD"
    assert bot.config["symbol"] == "BTC-USD"


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_runtime_has_its_default_entrypoint_and_image(runtime: str) -> None:
    doc = make_doc()
    doc["custom"]["config"]["runtime"] = runtime
    bot = parse(doc)
    assert bot.entrypoint == RUNTIMES[runtime]
    # A plain language image with its tag: no the0-specific image is needed.
    repository, _, tag = DEFAULT_IMAGES[runtime].rpartition(":")
    assert repository and tag and not repository.startswith("the0/")


def test_runtime_tables_match_the_design() -> None:
    assert dict(RUNTIMES) == {
        "python3.11": "main.py",
        "nodejs20": "index.js",
        "rust-stable": "main",
        "dotnet8": "main",
        "gcc13": "main",
        "cpp-gcc13": "main",
        "scala3": "main",
        "ghc96": "main",
    }
    assert dict(DEFAULT_IMAGES) == {
        "python3.11": "python:3.11-slim-bookworm",
        "nodejs20": "node:20-bookworm-slim",
        "rust-stable": "rust:1-slim-bookworm",
        "dotnet8": "mcr.microsoft.com/dotnet/runtime:8.0",
        "gcc13": "gcc:13-bookworm",
        "cpp-gcc13": "gcc:13-bookworm",
        "scala3": "eclipse-temurin:21-jre",
        "ghc96": "haskell:9.6-slim",
    }
    with pytest.raises(TypeError):
        RUNTIMES["cobol"] = "main"  # type: ignore[index]


@pytest.mark.parametrize("entrypoint", ["bot.py", "src/main.py", "./run.py", "dist/app.js"])
def test_an_explicit_entrypoint_is_used(entrypoint: str) -> None:
    doc = make_doc()
    doc["custom"]["config"]["entrypoints"] = {"bot": entrypoint, "backtest": "bt.py"}
    assert parse(doc).entrypoint == entrypoint


@pytest.mark.parametrize("entrypoints", [None, {}, {"bot": None}, "main.py", ["main.py"]])
def test_absent_entrypoints_fall_back_to_the_runtime_default(entrypoints: object) -> None:
    doc = make_doc()
    doc["custom"]["config"]["entrypoints"] = entrypoints
    assert parse(doc).entrypoint == "main.py"


@pytest.mark.parametrize(
    ("version", "expected"), [("2.0.0", "2.0.0"), (3, "3"), (1.5, "1.5"), (None, ""), ("", "")]
)
def test_code_version(version: object, expected: str) -> None:
    doc = make_doc()
    doc["custom"]["version"] = version
    assert parse(doc).code_version == expected


def test_missing_code_version_is_empty() -> None:
    doc = make_doc()
    del doc["custom"]["version"]
    assert parse(doc).code_version == ""


@pytest.mark.parametrize(
    ("config_name", "code_name", "expected"),
    [
        ("mine", "pkg", "mine"),
        (None, "pkg", "pkg"),
        ("", "pkg", "pkg"),
        (None, None, ""),
        (5, 6, ""),
    ],
)
def test_display_name(config_name: object, code_name: object, expected: str) -> None:
    doc = make_doc()
    doc["config"]["name"] = config_name
    doc["custom"]["config"]["name"] = code_name
    assert parse(doc).name == expected


@pytest.mark.parametrize(
    "bot_id",
    ["ABC", "with_underscore", "dots.in.id", "has space", "x" * 200, "x" * 253, "ünïcödé", "-"],
)
def test_odd_but_valid_ids_are_accepted(bot_id: str) -> None:
    assert parse(make_doc(id=bot_id)).id == bot_id


# --- resources: as the0 reads them (strings only), never stopping the bot ------------------------


def test_resource_overrides_replace_the_defaults() -> None:
    doc = make_doc()
    doc["config"].update(
        memory_limit="1Gi", cpu_limit="1", memory_request="256Mi", cpu_request="250m"
    )
    bot = parse(doc)
    assert bot.resources == Resources(
        memory_limit="1Gi", cpu_limit="1", memory_request="256Mi", cpu_request="250m"
    )
    assert bot.warnings == ()


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1024, "1024"), (0.5, "0.5"), (True, "(bool)"), ([], "(a list, not shown)"),
     ({}, "(a dict, not shown)"), ("lots", "(a str, not shown)"), ("2GB", "'2GB'"),
     ("-1Gi", "'-1Gi'"), ("0", "'0'"), ("1 Gi", "(a str, not shown)"), ("1.2.3", "'1.2.3'"),
     ("1e99", "(a str, not shown)")],
)
@pytest.mark.parametrize("key", ["memory_limit", "cpu_limit", "memory_request", "cpu_request"])
def test_a_value_that_is_not_a_positive_quantity_string_keeps_the_default(
        key: str, value: object, shown: str) -> None:
    # the0's runtime reads only strings that parse, and uses its default for anything else: a
    # bot written against it ("2GB", a number) must keep running here.
    doc = make_doc()
    doc["config"][key] = value
    bot = parse(doc)
    assert getattr(bot.resources, key) == getattr(DEFAULT_RESOURCES, key)
    assert bot.warnings == (f"config.{key} {shown} is not a positive Kubernetes quantity "
                            f"string; using the default {getattr(DEFAULT_RESOURCES, key)}",)


def test_a_secret_put_where_a_quantity_belongs_is_never_echoed() -> None:
    doc = make_doc()
    doc["config"]["cpu_limit"] = SECRET
    (warning,) = parse(doc).warnings
    assert SECRET not in warning and "not shown" in warning


@pytest.mark.parametrize("unset", [None, ""])
def test_unset_overrides_mean_the_default_without_a_warning(unset: object) -> None:
    doc = make_doc()
    doc["config"]["memory_limit"] = unset
    bot = parse(doc)
    assert (bot.resources.memory_limit, bot.warnings) == (DEFAULT_RESOURCES.memory_limit, ())


def test_surrounding_whitespace_is_trimmed() -> None:
    doc = make_doc()
    doc["config"]["memory_limit"] = " 1Gi "
    assert parse(doc).resources.memory_limit == "1Gi"


def test_a_value_above_its_ceiling_is_clamped_with_a_warning() -> None:
    doc = make_doc()
    doc["config"].update(memory_limit="64Gi", cpu_limit="1000", memory_request="8Gi",
                         cpu_request="3")
    bot = parse(doc)
    assert bot.resources == DEFAULT_CEILINGS
    assert len(bot.warnings) == 4
    assert bot.warnings[0] == "config.memory_limit '64Gi' is above the ceiling 4Gi; using 4Gi"


def test_the_deployments_ceilings_apply() -> None:
    doc = make_doc()
    doc["config"].update(memory_limit="2Gi")
    policy = ResourcePolicy(ceilings=Resources(memory_limit="1Gi", cpu_limit="1",
                                               memory_request="1Gi", cpu_request="1"))
    assert parse_bot(doc, kind=BotKind.LIVE, resources=policy).resources.memory_limit == "1Gi"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"memory_request": "1Gi", "memory_limit": "512Mi"}, ("memory", "512Mi", "512Mi")),
        ({"cpu_request": "1", "cpu_limit": "800m"}, ("cpu", "800m", "800m")),
        ({"memory_request": "1Gi"}, ("memory", "512Mi", "512Mi")),  # above the default limit
        ({"cpu_request": "501m"}, ("cpu", "500m", "500m")),
    ],
)
def test_a_request_above_its_limit_is_lowered_to_the_limit(
        overrides: dict[str, str], expected: tuple[str, str, str]) -> None:
    doc = make_doc()
    doc["config"].update(overrides)
    bot = parse(doc)
    resource, request, limit = expected
    assert (getattr(bot.resources, f"{resource}_request"),
            getattr(bot.resources, f"{resource}_limit")) == (request, limit)
    assert bot.warnings == (f"config.{resource}_request {overrides[f'{resource}_request']!r} is "
                            f"above its limit {limit}; using {limit}",)


def test_equal_request_and_limit_are_fine() -> None:
    doc = make_doc()
    doc["config"].update(memory_request="1024Mi", memory_limit="1Gi")
    assert parse(doc).resources.memory_request == "1024Mi"


def test_a_limit_below_the_default_request_lowers_that_request_silently() -> None:
    doc = make_doc()
    doc["config"].update(memory_limit="64Mi", cpu_limit="50m")
    bot = parse(doc)
    assert (bot.resources.memory_request, bot.resources.memory_limit) == ("64Mi", "64Mi")
    assert (bot.resources.cpu_request, bot.resources.cpu_limit) == ("50m", "50m")
    assert bot.warnings == ()


# --- scheduled bots ----------------------------------------------------------------------------


@pytest.mark.parametrize("timezone", [None, "", "Europe/Paris", "UTC+8", 3])
def test_a_scheduled_bot_keeps_its_schedule_and_its_own_timezone_parameter_is_not_read(
        timezone: object) -> None:
    # the0 runs schedules in UTC: `timezone` is one of the bot's own parameters.
    doc = make_doc()
    doc["config"].update(schedule="*/5 * * * *", timezone=timezone)
    bot = parse(doc, BotKind.SCHEDULED)
    assert (bot.kind, bot.schedule) == (BotKind.SCHEDULED, "*/5 * * * *")
    assert bot.config["timezone"] == timezone and not hasattr(bot, "timezone")


@pytest.mark.parametrize("schedule", [None, "", "   ", 5, ["* * * * *"]])
def test_a_scheduled_bot_needs_a_schedule(schedule: object) -> None:
    doc = make_doc()
    doc["config"]["schedule"] = schedule
    assert reason_for(doc, BotKind.SCHEDULED) == "missing_schedule"


def test_a_live_bot_ignores_schedule_fields() -> None:
    doc = make_doc()
    doc["config"].update(schedule=5, timezone=7)
    assert parse(doc).schedule is None


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets a dotted path in a document (creating nothing on the way)."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


REJECTIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("id missing", _delete("id"), "invalid_id"),
    ("id None", _set("id", None), "invalid_id"),
    ("id int", _set("id", 42), "invalid_id"),
    ("id empty", _set("id", ""), "invalid_id"),
    ("id too long", _set("id", "x" * 254), "invalid_id"),
    ("id newline", _set("id", "abc\ndef"), "invalid_id"),
    ("id NUL", _set("id", "abc\x00"), "invalid_id"),
    ("id escape", _set("id", "\x1b[31mred"), "invalid_id"),
    ("config missing", _delete("config"), "invalid_config"),
    ("config list", _set("config", ["a"]), "invalid_config"),
    ("config string", _set("config", "{}"), "invalid_config"),
    ("config NaN", _set("config", {"x": float("nan")}), "invalid_config"),
    ("config non-JSON", _set("config", {"when": object()}), "invalid_config"),
    ("custom missing", _delete("custom"), "missing_custom"),
    ("custom string", _set("custom", "x"), "missing_custom"),
    ("filePath missing", _delete("custom.filePath"), "missing_code_path"),
    ("filePath empty", _set("custom.filePath", ""), "missing_code_path"),
    ("filePath int", _set("custom.filePath", 7), "missing_code_path"),
    ("filePath absolute", _set("custom.filePath", "/etc/passwd"), "unsafe_code_path"),
    ("filePath dotdot", _set("custom.filePath", "bots/../../x.zip"), "unsafe_code_path"),
    ("filePath leading dotdot", _set("custom.filePath", "../x.zip"), "unsafe_code_path"),
    ("filePath only dotdot", _set("custom.filePath", ".."), "unsafe_code_path"),
    ("filePath backslash", _set("custom.filePath", "bots\\..\\x.zip"), "unsafe_code_path"),
    ("filePath NUL", _set("custom.filePath", "x.zip\x00.png"), "unsafe_code_path"),
    ("filePath newline", _set("custom.filePath", "x\n.zip"), "unsafe_code_path"),
    ("custom.config missing", _delete("custom.config"), "missing_runtime"),
    ("custom.config list", _set("custom.config", []), "missing_runtime"),
    ("runtime missing", _delete("custom.config.runtime"), "missing_runtime"),
    ("runtime empty", _set("custom.config.runtime", ""), "missing_runtime"),
    ("runtime int", _set("custom.config.runtime", 3), "unknown_runtime"),
    ("runtime unknown", _set("custom.config.runtime", "cobol"), "unknown_runtime"),
    ("runtime case", _set("custom.config.runtime", "Python3.11"), "unknown_runtime"),
    ("entrypoint int", _set("custom.config.entrypoints", {"bot": 1}), "invalid_entrypoint"),
    ("entrypoint empty", _set("custom.config.entrypoints", {"bot": ""}), "invalid_entrypoint"),
    ("entrypoint absolute", _set("custom.config.entrypoints", {"bot": "/x"}), "invalid_entrypoint"),
    ("entrypoint dotdot", _set("custom.config.entrypoints", {"bot": "../x"}), "invalid_entrypoint"),
    ("version dict", _set("custom.version", {"v": 1}), "invalid_version"),
    ("version bool", _set("custom.version", True), "invalid_version"),
]


@pytest.mark.parametrize(
    ("mutate", "reason"), [(m, r) for _, m, r in REJECTIONS], ids=[n for n, _, _ in REJECTIONS]
)
def test_each_rejection_has_its_reason(
    mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    doc = make_doc()
    mutate(doc)
    assert reason_for(doc) == reason


# What the bot's owner reads in its status, per rejection above.
REJECTION_DETAILS: dict[str, str] = {
    'id missing': 'id is missing or not a string',
    'id None': 'id is missing or not a string',
    'id int': 'id is missing or not a string',
    'id empty': 'id is empty',
    'id too long': 'id is longer than 253 characters',
    'id newline': 'id contains control characters',
    'id NUL': 'id contains control characters',
    'id escape': 'id contains control characters',
    'config missing': 'config is not an object',
    'config list': 'config is not an object',
    'config string': 'config is not an object',
    'config NaN': 'config is not plain JSON data',
    'config non-JSON': 'config is not plain JSON data',
    'custom missing': 'custom is missing or not an object',
    'custom string': 'custom is missing or not an object',
    'filePath missing': 'custom.filePath is missing or empty',
    'filePath empty': 'custom.filePath is missing or empty',
    'filePath int': 'custom.filePath is missing or empty',
    'filePath absolute': 'custom.filePath is not a safe relative path',
    'filePath dotdot': 'custom.filePath is not a safe relative path',
    'filePath leading dotdot': 'custom.filePath is not a safe relative path',
    'filePath only dotdot': 'custom.filePath is not a safe relative path',
    'filePath backslash': 'custom.filePath is not a safe relative path',
    'filePath NUL': 'custom.filePath is not a safe relative path',
    'filePath newline': 'custom.filePath is not a safe relative path',
    'custom.config missing': 'custom.config.runtime is missing',
    'custom.config list': 'custom.config.runtime is missing',
    'runtime missing': 'custom.config.runtime is missing',
    'runtime empty': 'custom.config.runtime is missing',
    'runtime int': 'custom.config.runtime is not a string',
    'runtime unknown': "unknown runtime 'cobol'",
    'runtime case': "unknown runtime 'Python3.11'",
    'entrypoint int': 'custom.config.entrypoints.bot is not a safe relative path',
    'entrypoint empty': 'custom.config.entrypoints.bot is not a safe relative path',
    'entrypoint absolute': 'custom.config.entrypoints.bot is not a safe relative path',
    'entrypoint dotdot': 'custom.config.entrypoints.bot is not a safe relative path',
    'version dict': 'custom.version is not a string or number',
    'version bool': 'custom.version is not a string or number',
}


@pytest.mark.parametrize("name", [n for n, _, _ in REJECTIONS])
def test_each_rejection_says_what_is_wrong_in_its_own_words(name: str) -> None:
    mutate = next(m for n, m, _ in REJECTIONS if n == name)
    doc = make_doc()
    mutate(doc)
    with pytest.raises(InvalidBot) as caught:
        parse(doc)
    assert caught.value.detail == REJECTION_DETAILS[name]


def test_the_schedule_and_size_rejections_say_what_is_wrong() -> None:
    with pytest.raises(InvalidBot) as caught:
        parse(make_doc(), BotKind.SCHEDULED)
    assert caught.value.detail == "config.schedule is missing or empty"
    with pytest.raises(InvalidBot) as caught:
        parse(make_doc(config={"x": "y" * 70_000}))
    assert caught.value.detail == ("config is 70008 bytes as BOT_CONFIG; at most 65536 "
                                   "(MAX_CONFIG_BYTES)")
    doc = make_doc()
    doc["custom"]["config"]["runtime"] = "evil\n"
    with pytest.raises(InvalidBot) as caught:
        parse(doc)
    assert caught.value.detail == "unknown runtime"


def test_the_first_problem_in_document_order_is_reported() -> None:
    doc = make_doc(custom="nope")
    doc["config"]["memory_limit"] = "lots"
    assert reason_for(doc) == "missing_custom"


def test_invalid_bot_carries_the_id_when_it_is_a_string() -> None:
    with pytest.raises(InvalidBot) as caught:
        parse(make_doc(id="abc", custom=None))
    assert caught.value.bot_id == "abc"
    with pytest.raises(InvalidBot) as caught:
        parse(make_doc(id=12))
    assert caught.value.bot_id == ""


def test_an_unknown_runtime_is_named_but_truncated() -> None:
    doc = make_doc()
    doc["custom"]["config"]["runtime"] = "r" * 100
    with pytest.raises(InvalidBot) as caught:
        parse(doc)
    assert "r" * 39 in str(caught.value)
    assert "r" * 41 not in str(caught.value)


def test_an_unprintable_unknown_runtime_is_not_echoed() -> None:
    doc = make_doc()
    doc["custom"]["config"]["runtime"] = "evil\n\x1b[2Jinjected"
    with pytest.raises(InvalidBot) as caught:
        parse(doc)
    assert caught.value.reason == "unknown_runtime"
    assert "injected" not in str(caught.value)


# --- secrecy -------------------------------------------------------------------------------------


SECRET_VALUES = ["sk-live-SECRET-0123456789", "hunter2-PASSPHRASE"]


def _secret_config() -> dict[str, Any]:
    return {"api_key": SECRET_VALUES[0], "nested": {"passphrase": SECRET_VALUES[1]}}


@pytest.mark.parametrize("mutate", [m for _, m, _ in REJECTIONS], ids=[n for n, _, _ in REJECTIONS])
def test_no_rejection_message_contains_a_config_value(
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    doc = make_doc(config=_secret_config())
    mutate(doc)
    try:
        parse(doc)
    except InvalidBot as error:
        rendered = f"{error} {error!r} {error.detail} {error.reason}"
        assert not any(secret in rendered for secret in SECRET_VALUES)


@pytest.mark.parametrize("secret", [*SECRET_VALUES, "pin-0042", "hunter2"])
@pytest.mark.parametrize("key", ["memory_limit", "cpu_limit", "memory_request", "cpu_request"])
def test_a_bad_quantity_is_not_echoed(key: str, secret: str) -> None:
    config = _secret_config()
    config[key] = secret
    bot = parse(make_doc(config=config))
    (warning,) = bot.warnings
    assert key in warning
    assert secret not in f"{warning} {bot!r}"


def test_bot_repr_and_str_never_show_the_config() -> None:
    bot = parse(make_doc(config=_secret_config()))
    for rendered in (repr(bot), str(bot), f"{bot}", f"{bot!r}"):
        assert not any(secret in rendered for secret in SECRET_VALUES)
        assert "config=" not in rendered


def test_bots_are_hashable_and_comparable_despite_their_config() -> None:
    doc = make_doc()
    assert parse(doc) == parse(copy.deepcopy(doc))
    assert hash(parse(doc)) == hash(parse(copy.deepcopy(doc)))


# --- path safety -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["a.zip", "a/b/c.zip", "./a.zip", "a..b.zip", "..a/b", "a b.zip"])
def test_safe_relative_paths(path: str) -> None:
    assert is_safe_relative_path(path)


@pytest.mark.parametrize(
    "path", ["", "/a", "//a", "..", "a/..", "a/../b", "a\\b", "C:\\a", "a\x00", "a\tb", "a\nb"]
)
def test_unsafe_paths(path: str) -> None:
    assert not is_safe_relative_path(path)


# --- config size -------------------------------------------------------------------------------


def test_a_config_above_max_config_bytes_is_an_invalid_bot() -> None:
    doc = make_doc()
    doc["config"]["blob"] = "x" * 70_000
    assert reason_for(doc) == "config_too_large"
    with pytest.raises(InvalidBot) as caught:
        parse(doc)
    assert "(MAX_CONFIG_BYTES)" in str(caught.value) and SECRET not in str(caught.value)


def test_the_size_is_that_of_bot_config_and_the_limit_is_a_setting() -> None:
    doc = make_doc()
    doc["config"]["blob"] = "é" * 1000  # 2 bytes each in UTF-8
    size = len(json.dumps(doc["config"], ensure_ascii=False, separators=(",", ":")).encode())
    assert parse_bot(doc, kind=BotKind.LIVE, max_config_bytes=size).config == doc["config"]
    with pytest.raises(InvalidBot):
        parse_bot(doc, kind=BotKind.LIVE, max_config_bytes=size - 1)


def test_a_config_nested_beyond_recursion_is_an_invalid_config_not_a_crash() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    doc = make_doc()
    doc["config"]["deep"] = deep
    assert reason_for(doc) == "invalid_config"
