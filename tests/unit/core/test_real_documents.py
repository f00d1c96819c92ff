"""Documents shaped as the0's platform really stores them: keys MongoDB 7 accepts (a nested
`$schema`, `$ref`, dotted keys, keys with spaces and unicode), doubles for every number, a
`timezone` parameter, resource values the0 ignores. Parser, hash, pod, CronJob and Secret take
them as they are; BOT_CONFIG is the0's text of them."""

from __future__ import annotations

import copy
import json
from typing import Any

from worker.core.bot import DEFAULT_IMAGES, BotKind, parse_bot
from worker.core.cronspec import CronJobSettings, build_cronjob, build_cronjob_secret, cronjob_hash
from worker.core.podspec import (
    SECRET_KEY_CONFIG,
    PodTemplateSettings,
    SignedUrls,
    build_config_secret,
    build_pod,
    config_hash,
)

TEMPLATE = PodTemplateSettings(namespace="the0", image_map=DEFAULT_IMAGES,
                               init_image="the0/the0-k8s:latest")
URLS = SignedUrls(code="https://s3/c", state_get="https://s3/g", state_put="https://s3/p",
                  signed_at=1_700_000_000.0)

# As the0's API writes a bot from a form built from the bot's JSON schema: the schema itself
# rides along under "$schema", user numbers are doubles, and users choose key names freely.
PLATFORM_CONFIG: dict[str, Any] = {
    "name": "grid bot",
    "$schema": {"$id": "https://the0.dev/schemas/grid.json", "type": "object",
                "properties": {"levels": {"type": "integer", "$ref": "#/defs/levels"}}},
    "symbol": "BTC/USDT",
    "levels": 5.0,
    "spread": 0.0025,
    "max.position": 1e21,
    "min.step": 1e-7,
    "exchange.keys": {"api.key": "sk-live-SECRET", "passphrase": "<&>"},
    "notes": "température ✓ \u2028",
    "timezone": "America/New_York",
    "memory_limit": 1024.0,
    "schedule": "0 9 * * 1-5",
}
GO_TEXT = (  # what the0's Go runtime puts in BOT_CONFIG for it (json.Marshal)
    '{"$schema":{"$id":"https://the0.dev/schemas/grid.json","properties":{"levels":'
    '{"$ref":"#/defs/levels","type":"integer"}},"type":"object"},'
    '"exchange.keys":{"api.key":"sk-live-SECRET","passphrase":"\\u003c\\u0026\\u003e"},'
    '"levels":5,"max.position":1e+21,"memory_limit":1024,"min.step":1e-7,"name":"grid bot",'
    '"notes":"température ✓ \\u2028","schedule":"0 9 * * 1-5","spread":0.0025,'
    '"symbol":"BTC/USDT","timezone":"America/New_York"}')


def platform_doc() -> dict[str, Any]:
    return {"id": "clx0grid000000000000000001", "config": copy.deepcopy(PLATFORM_CONFIG),
            "custom": {"version": "1.2.0", "filePath": "grid-bot/1.2.0/code.zip",
                       "config": {"name": "grid-bot", "runtime": "python3.11",
                                  "entrypoints": {"bot": "main.py"}}},
            "enabled": True}


def test_a_live_bot_document_as_the_platform_stores_it_runs_with_the0s_bot_config() -> None:
    bot = parse_bot(platform_doc(), kind=BotKind.LIVE)
    assert bot.config == PLATFORM_CONFIG  # every key kept, none reinterpreted
    assert build_config_secret(bot, pod_name="bot-x", pod_uid="u", namespace="the0",
                               urls=URLS)["stringData"][SECRET_KEY_CONFIG] == GO_TEXT
    assert json.loads(GO_TEXT) == PLATFORM_CONFIG
    pod = build_pod(bot, TEMPLATE)
    assert "sk-live-SECRET" not in json.dumps(pod)
    # the0 reads only string quantities: the number 1024 keeps the default (with a warning).
    (bot_container,) = [c for c in pod["spec"]["containers"] if c["name"] == "bot"]
    assert bot_container["resources"]["limits"]["memory"] == "512Mi"
    assert [w.split(" ")[0] for w in bot.warnings] == ["config.memory_limit"]
    assert config_hash(bot, TEMPLATE) == config_hash(
        parse_bot(platform_doc(), kind=BotKind.LIVE), TEMPLATE)


def test_a_scheduled_bot_document_as_the_platform_stores_it_runs_in_utc() -> None:
    bot = parse_bot(platform_doc(), kind=BotKind.SCHEDULED)
    cronjob = build_cronjob(bot, TEMPLATE, CronJobSettings())
    assert cronjob["spec"]["timeZone"] == "UTC" and cronjob["spec"]["schedule"] == "0 9 * * 1-5"
    secret = build_cronjob_secret(bot, cronjob_name="schedule-x", cronjob_uid="u",
                                  namespace="the0", urls=URLS)
    assert secret["stringData"][SECRET_KEY_CONFIG] == GO_TEXT
    assert cronjob_hash(bot, TEMPLATE, CronJobSettings())


def test_a_change_inside_a_dotted_or_dollar_key_changes_the_hash() -> None:
    before = parse_bot(platform_doc(), kind=BotKind.LIVE)
    doc = platform_doc()
    doc["config"]["$schema"]["type"] = "array"
    after = parse_bot(doc, kind=BotKind.LIVE)
    doc2 = platform_doc()
    doc2["config"]["exchange.keys"]["api.key"] = "sk-live-OTHER"
    rotated = parse_bot(doc2, kind=BotKind.LIVE)
    hashes = {config_hash(b, TEMPLATE) for b in (before, after, rotated)}
    assert len(hashes) == 3
