"""The environment contract of `botpod init` and `botpod sync`, read once into frozen settings.

Must NOT: be read from anywhere else (every other module gets its settings passed in); echo a
value in an error (a misplaced secret in a numeric variable would be printed).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from botpod.codezip import ZipLimits
from botpod.errors import BotpodError
from botpod.statetar import StateLimits

MiB = 2**20

DEFAULT_CODE_DIR = "/bot"
DEFAULT_STATE_DIR = "/state/.the0-state"
DEFAULT_DOWNLOAD_DIR = "/bot-tmp"
DEFAULT_URLS_DIR = "/etc/the0/urls"
DEFAULT_MAX_ARCHIVE_BYTES = 256 * MiB
DEFAULT_MAX_UNPACKED_BYTES = 480 * MiB
DEFAULT_MAX_ARCHIVE_ENTRIES = 100_000
DEFAULT_STATE_MAX_BYTES = 64 * MiB
STATE_UNPACKED_FACTOR = 4  # default decompressed cap: this many times STATE_MAX_BYTES
DEFAULT_STATE_MAX_ENTRIES = 20_000
DEFAULT_SYNC_INTERVAL = 60.0
DEFAULT_FINAL_SYNC_SECONDS = 15.0


@dataclass(frozen=True, kw_only=True)
class InitSettings:
    """What `botpod init` needs; botpod/README.md describes each variable."""

    code_dir: str
    state_dir: str
    download_dir: str
    urls_dir: str
    runtime: str
    entrypoint: str  # "" = the runtime's default entry file
    zip_limits: ZipLimits
    state_limits: StateLimits


@dataclass(frozen=True, kw_only=True)
class SyncSettings:
    """What `botpod sync` needs."""

    state_dir: str
    urls_dir: str
    scratch_dir: str
    interval: float
    final_sync_seconds: float  # the last upload's budget after SIGTERM: inside the grace
    state_limits: StateLimits


def init_settings(env: Mapping[str, str] = os.environ) -> InitSettings:
    """Settings of `botpod init` from the environment; BotpodError names a bad variable."""
    runtime = env.get("RUNTIME", "").strip()
    if not runtime:
        raise BotpodError("RUNTIME is not set")
    return InitSettings(
        code_dir=_path(env, "CODE_DIR", DEFAULT_CODE_DIR),
        state_dir=_path(env, "STATE_DIR", DEFAULT_STATE_DIR),
        download_dir=_path(env, "DOWNLOAD_DIR", DEFAULT_DOWNLOAD_DIR),
        urls_dir=_path(env, "URLS_DIR", DEFAULT_URLS_DIR),
        runtime=runtime,
        entrypoint=env.get("ENTRYPOINT", "").strip(),
        zip_limits=ZipLimits(
            max_archive_bytes=_positive_int(env, "MAX_ARCHIVE_BYTES", DEFAULT_MAX_ARCHIVE_BYTES),
            max_unpacked_bytes=_positive_int(env, "MAX_UNPACKED_BYTES", DEFAULT_MAX_UNPACKED_BYTES),
            max_entries=_positive_int(env, "MAX_ARCHIVE_ENTRIES", DEFAULT_MAX_ARCHIVE_ENTRIES),
        ),
        state_limits=_state_limits(env),
    )


def sync_settings(env: Mapping[str, str] = os.environ) -> SyncSettings:
    """Settings of `botpod sync` from the environment; BotpodError names a bad variable."""
    interval = _positive_float(env, "STATE_SYNC_INTERVAL", DEFAULT_SYNC_INTERVAL)
    return SyncSettings(
        state_dir=_path(env, "STATE_DIR", DEFAULT_STATE_DIR),
        urls_dir=_path(env, "URLS_DIR", DEFAULT_URLS_DIR),
        scratch_dir=_path(env, "SCRATCH_DIR", env.get("TMPDIR") or "/tmp"),
        interval=interval,
        final_sync_seconds=_positive_float(
            env, "STATE_FINAL_SYNC_SECONDS", DEFAULT_FINAL_SYNC_SECONDS
        ),
        state_limits=_state_limits(env),
    )


def _state_limits(env: Mapping[str, str]) -> StateLimits:
    # init and sync read the same variables, so the sidecar never uploads a state that init
    # would then refuse to restore.
    max_bytes = _positive_int(env, "STATE_MAX_BYTES", DEFAULT_STATE_MAX_BYTES)
    return StateLimits(
        max_bytes=max_bytes,
        max_unpacked_bytes=_positive_int(
            env, "STATE_MAX_UNPACKED_BYTES", STATE_UNPACKED_FACTOR * max_bytes
        ),
        max_entries=_positive_int(env, "STATE_MAX_ENTRIES", DEFAULT_STATE_MAX_ENTRIES),
    )


def _path(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not os.path.isabs(value) or "\0" in value:
        raise BotpodError(f"{name} must be an absolute path")
    return os.path.normpath(value)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BotpodError(f"{name} must be a positive integer") from None
    if value <= 0:
        raise BotpodError(f"{name} must be a positive integer")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise BotpodError(f"{name} must be a positive number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise BotpodError(f"{name} must be a positive number of seconds")
    return value
