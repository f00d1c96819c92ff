"""Bot documents from MongoDB → validated `Bot` values.

Pure: no I/O. Parsing checks everything the pod and cronjob generators rely on, so a bad document
fails here, as `InvalidBot` for that one bot, and never half-way through talking to Kubernetes.

`Bot.config` is SECRET (it holds exchange API keys): it never appears in a repr, a str, an error
message or a generated pod spec.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NewType

from worker.core.canonical import canonical_json
from worker.core.errors import InvalidBot
from worker.core.gojson import go_json
from worker.core.resources import DEFAULT_POLICY, ResourcePolicy, Resources, resolve_resources
from worker.core.text import excerpt

BotId = NewType("BotId", str)


class BotKind(StrEnum):
    LIVE = "live"
    SCHEDULED = "scheduled"


RUNTIMES: Mapping[str, str] = MappingProxyType(
    {
        "python3.11": "main.py",
        "nodejs20": "index.js",
        "rust-stable": "main",
        "dotnet8": "main",
        "gcc13": "main",
        "cpp-gcc13": "main",
        "scala3": "main",
        "ghc96": "main",
    }
)
"""Every known runtime → the entrypoint used when custom.config.entrypoints.bot is unset."""

DEFAULT_IMAGES: Mapping[str, str] = MappingProxyType(
    {
        "python3.11": "python:3.11-slim-bookworm",
        "nodejs20": "node:20-bookworm-slim",
        # Compiled bots are artefacts: the image only needs what they link against.
        "rust-stable": "rust:1-slim-bookworm",
        "dotnet8": "mcr.microsoft.com/dotnet/runtime:8.0",
        "gcc13": "gcc:13-bookworm",
        "cpp-gcc13": "gcc:13-bookworm",
        "scala3": "eclipse-temurin:21-jre",
        "ghc96": "haskell:9.6-slim",
    }
)
"""Runtime → plain language image (with its tag): the bot container runs the wrapper that the
init container wrote into /bot, so no the0-specific image is needed."""

MAX_ID_LENGTH = 253
MAX_CONFIG_BYTES = 64 * 1024
"""Largest BOT_CONFIG (the0's JSON text of `config`, UTF-8): it is an environment variable, and
Linux refuses to exec with one string over 128 KiB (MAX_ARG_STRLEN), so a larger config is a
pod that can never start; half of that leaves room for the name and other variables, and is
far below a Secret's 1 MiB. Platform configs are a few KiB."""
_DISABLED_WORDS = frozenset({"false", "0"})
_RUNTIME_EXCERPT_LIMIT = 40


@dataclass(frozen=True, kw_only=True)
class Bot:
    """One validated bot: everything the spec generators need, nothing else."""

    id: BotId
    kind: BotKind
    # SECRET: hidden from repr/str; excluded from hash() because a dict is unhashable.
    config: Mapping[str, Any] = field(repr=False, hash=False)
    runtime: str
    entrypoint: str
    code_path: str
    code_version: str
    resources: Resources
    name: str
    schedule: str | None = None
    # What the bot asked for that it does not get (resources ignored, clamped, lowered): said
    # in its status; the bot runs.
    warnings: tuple[str, ...] = ()


def is_enabled(doc: Mapping[str, Any]) -> bool:
    """False when top-level `enabled` or `config.enabled` says disabled; missing means enabled."""
    config = doc.get("config")
    config_flag = config.get("enabled") if isinstance(config, Mapping) else None
    return not (_says_disabled(doc.get("enabled")) or _says_disabled(config_flag))


def parse_bot(doc: Mapping[str, Any], *, kind: BotKind,
              resources: ResourcePolicy = DEFAULT_POLICY,
              max_config_bytes: int = MAX_CONFIG_BYTES) -> Bot:
    """Validate one bot document; raise `InvalidBot` (with a short reason code) if unusable."""
    bot_id = _parse_id(doc.get("id"))
    config = doc.get("config")
    if not isinstance(config, Mapping):
        raise InvalidBot(bot_id, "invalid_config", "config is not an object")
    try:
        canonical_json(config)  # hashed: refuse what cannot be
        config_text = go_json(config)  # BOT_CONFIG, byte for byte as the0 writes it
    except (TypeError, ValueError, RecursionError):
        raise InvalidBot(bot_id, "invalid_config", "config is not plain JSON data") from None
    size = len(config_text.encode("utf-8", "surrogatepass"))
    if size > max_config_bytes:
        raise InvalidBot(bot_id, "config_too_large",
                         f"config is {size} bytes as BOT_CONFIG; at most {max_config_bytes} "
                         "(MAX_CONFIG_BYTES)")
    custom = doc.get("custom")
    if not isinstance(custom, Mapping):
        raise InvalidBot(bot_id, "missing_custom", "custom is missing or not an object")
    code_path = _parse_code_path(bot_id, custom.get("filePath"))
    code_config = custom.get("config")
    code_config = code_config if isinstance(code_config, Mapping) else {}
    runtime = _parse_runtime(bot_id, code_config.get("runtime"))
    entrypoint = _parse_entrypoint(bot_id, code_config.get("entrypoints"), runtime)
    code_version = _parse_version(bot_id, custom.get("version"))
    chosen, warnings = resolve_resources(config, resources)
    schedule = _parse_schedule(bot_id, config) if kind is BotKind.SCHEDULED else None
    return Bot(
        id=bot_id,
        kind=kind,
        config=dict(config),
        runtime=runtime,
        entrypoint=entrypoint,
        code_path=code_path,
        code_version=code_version,
        resources=chosen,
        name=_display_name(config, code_config),
        schedule=schedule,
        warnings=warnings,
    )


def is_safe_relative_path(path: str) -> bool:
    """True for a non-empty relative path that cannot escape its base directory or bucket prefix."""
    return (
        bool(path)
        and path.isprintable()  # also rules out NUL and other control characters
        and not path.startswith("/")
        and "\\" not in path
        and ".." not in path.split("/")
    )


def _says_disabled(flag: object) -> bool:
    if isinstance(flag, str):
        return flag.strip().lower() in _DISABLED_WORDS
    # bool is an int: False == 0, True != 0.
    return isinstance(flag, int | float) and flag == 0


def _parse_id(raw: object) -> BotId:
    if not isinstance(raw, str):
        raise InvalidBot("", "invalid_id", "id is missing or not a string")
    if not raw:
        raise InvalidBot(raw, "invalid_id", "id is empty")
    if len(raw) > MAX_ID_LENGTH:
        raise InvalidBot(raw, "invalid_id", f"id is longer than {MAX_ID_LENGTH} characters")
    if not raw.isprintable():
        raise InvalidBot(raw, "invalid_id", "id contains control characters")
    return BotId(raw)


def _parse_code_path(bot_id: BotId, raw: object) -> str:
    if not isinstance(raw, str) or not raw:
        raise InvalidBot(bot_id, "missing_code_path", "custom.filePath is missing or empty")
    if not is_safe_relative_path(raw):
        raise InvalidBot(bot_id, "unsafe_code_path", "custom.filePath is not a safe relative path")
    return raw


def _parse_runtime(bot_id: BotId, raw: object) -> str:
    if raw is None or raw == "":
        raise InvalidBot(bot_id, "missing_runtime", "custom.config.runtime is missing")
    if not isinstance(raw, str):
        raise InvalidBot(bot_id, "unknown_runtime", "custom.config.runtime is not a string")
    if raw not in RUNTIMES:
        shown = repr(excerpt(raw, limit=_RUNTIME_EXCERPT_LIMIT)) if raw.isprintable() else ""
        raise InvalidBot(bot_id, "unknown_runtime", f"unknown runtime {shown}".rstrip())
    return raw


def _parse_entrypoint(bot_id: BotId, entrypoints: object, runtime: str) -> str:
    raw = entrypoints.get("bot") if isinstance(entrypoints, Mapping) else None
    if raw is None:
        return RUNTIMES[runtime]
    if not isinstance(raw, str) or not is_safe_relative_path(raw):
        raise InvalidBot(
            bot_id,
            "invalid_entrypoint",
            "custom.config.entrypoints.bot is not a safe relative path",
        )
    return raw


def _parse_version(bot_id: BotId, raw: object) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise InvalidBot(bot_id, "invalid_version", "custom.version is not a string or number")


def _parse_schedule(bot_id: BotId, config: Mapping[str, Any]) -> str:
    # Only `schedule` is read: the0 runs schedules in UTC, and a bot's other keys (its own
    # `timezone` parameter included) are the bot's business.
    schedule = config.get("schedule")
    if not isinstance(schedule, str) or not schedule.strip():
        raise InvalidBot(bot_id, "missing_schedule", "config.schedule is missing or empty")
    return schedule


def _display_name(config: Mapping[str, Any], code_config: Mapping[str, Any]) -> str:
    for candidate in (config.get("name"), code_config.get("name")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return ""
