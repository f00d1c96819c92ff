"""Pinned config hashes of one reference bot per runtime, as a live pod and as a CronJob, built
with the deployment's default settings.

Why pinned: the hash annotation on each running pod (CronJob) is compared with the hash of what
we would build now; any difference is a REPLACE. A refactor that changes the built pod — a
reordered env list, a new default, a renamed volume — changes every bot's hash, so the first
pass after an upgrade replaces EVERY running pod (and updates every CronJob) at once: every
bot stops and restarts, the API server takes the whole fleet's deletes and creates in one go.
That must only ever happen on purpose.
"""

from __future__ import annotations

from typing import Any

import pytest

from worker.core.bot import BotKind, parse_bot
from worker.core.cronspec import cronjob_hash
from worker.core.podspec import config_hash
from worker.settings import Settings, load_settings

# Only the servers' addresses, which no pod or CronJob carries: every other setting is its
# default, as in a deployment that sets nothing else.
FIXED_ENV = {"MONGO_URI": "mongodb://mongo:27017/", "MINIO_ENDPOINT": "minio:9000",
             "MINIO_ACCESS_KEY": "access", "MINIO_SECRET_KEY": "secret"}

FILE = "tests/unit/core/test_pinned_hash.py"
# runtime → (live pod hash, CronJob hash). See BUMP below before changing a value.
PINNED = {
    "python3.11": ("70a4656a401ec17c", "2060753bda41cdac"),
    "nodejs20": ("eede7a21d9133aa0", "0f987355f567efc2"),
    "rust-stable": ("a5c6ad44fe3cdacb", "ef55c2e4031eeaad"),
    "dotnet8": ("9f9fe47c7dc27470", "f0ab9a5ee916d29c"),
    "gcc13": ("579936c0f3798011", "1ee9ec438e00a952"),
    "cpp-gcc13": ("71ec3d3e09f659f2", "278c55ae3fd8a74b"),
    "scala3": ("5ec75d81b974e3d7", "64cb6f02e30f8f1e"),
    "ghc96": ("d3de046201f8f652", "bd8926ae39644561"),
}

BUMP = """\
The config hash of the reference {runtime} bot changed ({what}): pinned {pinned}, now {now}.

Every running pod (or CronJob) carries the hash it was built from; after an upgrade that
changes the hash, the first pass REPLACES EVERY POD of the fleet (and updates every CronJob)
at once: all bots stop and restart together. If that is not what you meant, the pod spec
changed by accident (a reordered list, a new default, a renamed key): undo it.

If it is deliberate (the pods really must change):
  1. set PINNED["{runtime}"] in {file} to the new values
     (`pytest {file} -q -rA` prints them all);
  2. say in the commit message and the release notes that upgrading replaces every bot's
     pod (and CronJob) once, and why.
"""


def reference_doc(runtime: str, *, scheduled: bool) -> dict[str, Any]:
    """A bot as the platform stores it: doubles for numbers, a `$schema` key, nested params."""
    config: dict[str, Any] = {
        "name": "reference", "type": "scheduled" if scheduled else "realtime",
        "version": "1.2.3", "$schema": "https://the0.dev/schema.json",
        "symbol": "BTC/USDT", "amount": 250.0, "risk": 0.015, "levels": [1.0, 2.5, 4.0],
        "exchange": {"name": "binance", "testnet": True}, "timezone": "Europe/London",
    }
    if scheduled:
        config["schedule"] = "*/15 9-17 * * 1-5"
    entrypoint = {"python3.11": "main.py", "nodejs20": "index.js"}.get(runtime, "main")
    return {"id": "clx0reference0bot0000000a", "config": config,
            "custom": {"version": "1.2.3", "filePath": "bots/reference/1.2.3.zip",
                       "config": {"runtime": runtime, "name": "reference",
                                  "entrypoints": {"bot": entrypoint}}}}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(env=FIXED_ENV)


def hashes(settings: Settings, runtime: str) -> tuple[str, str]:
    live = parse_bot(reference_doc(runtime, scheduled=False), kind=BotKind.LIVE,
                     resources=settings.resource_policy)
    scheduled = parse_bot(reference_doc(runtime, scheduled=True), kind=BotKind.SCHEDULED,
                          resources=settings.resource_policy)
    return (config_hash(live, settings.pod_template),
            cronjob_hash(scheduled, settings.pod_template, settings.cronjob_settings))


@pytest.mark.parametrize("runtime", sorted(PINNED))
def test_the_config_hash_of_the_reference_bot_is_pinned(settings: Settings,
                                                        runtime: str) -> None:
    live, cron = hashes(settings, runtime)
    print(f'    "{runtime}": ("{live}", "{cron}"),')
    pinned_live, pinned_cron = PINNED[runtime]
    assert live == pinned_live, BUMP.format(runtime=runtime, what="live pod", pinned=pinned_live,
                                            now=live, file=FILE)
    assert cron == pinned_cron, BUMP.format(runtime=runtime, what="CronJob", pinned=pinned_cron,
                                            now=cron, file=FILE)


def test_every_runtime_is_pinned() -> None:
    from worker.core.bot import DEFAULT_IMAGES

    assert sorted(PINNED) == sorted(DEFAULT_IMAGES), (
        "a runtime was added or removed: pin its reference hashes here too")
