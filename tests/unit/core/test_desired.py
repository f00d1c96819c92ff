"""Bot documents → desired state: every document lands in exactly one bucket.

The desired hashes are checked against the objects the generators build (the hash annotation
the built Pod or CronJob carries), not recomputed the way desired.py computes them.
"""

from typing import Any

import pytest

from worker.core.bot import Bot, BotId, BotKind
from worker.core.cronspec import CronJobSettings, build_cronjob
from worker.core.desired import (
    DesiredState,
    desired_bot,
    desired_state,
    parse_desired,
    parse_desired_schedule,
)
from worker.core.errors import InvalidBot
from worker.core.planner import DesiredBot
from worker.core.podspec import PodTemplateSettings, build_pod
from worker.core.resources import ResourcePolicy, Resources

TEMPLATE = PodTemplateSettings(namespace="the0", image_map={"python3.11": "the0/python311"},
                               init_image="the0/k8s:1", hash_key=b"k" * 32)
HASH = "the0.dev/config-hash"
# Every resource below the shipped defaults: a bot parsed under it shows the policy was used.
SMALL = Resources(memory_limit="64Mi", cpu_limit="100m", memory_request="32Mi",
                  cpu_request="50m")
SMALL_POLICY = ResourcePolicy(defaults=SMALL, ceilings=SMALL)


def doc(bot_id: Any = "b1", **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": bot_id,
        "config": {"symbol": "BTC-USD", "schedule": "*/5 * * * *"},
        "custom": {"version": "1.0.0", "filePath": f"bots/{bot_id}/1.0.0.zip",
                   "config": {"runtime": "python3.11", "name": "momentum"}},
    }
    document.update(overrides)
    return document


def disabled(bot_id: str) -> dict[str, Any]:
    return doc(bot_id, enabled=False)


def invalid(bot_id: str) -> dict[str, Any]:
    document = doc(bot_id)
    document["custom"]["config"]["runtime"] = "cobol"
    return document


def live_state(docs: list[dict[str, Any]]) -> DesiredState:
    return desired_state(docs, kind=BotKind.LIVE, template=TEMPLATE)


def test_the_desired_bot_is_the_pod_the_generator_builds() -> None:
    bot, want = parse_desired(doc(), kind=BotKind.LIVE, template=TEMPLATE)
    pod = build_pod(bot, TEMPLATE)
    assert bot.id == "b1" and bot.kind is BotKind.LIVE and bot.runtime == "python3.11"
    assert want == DesiredBot(bot_id=BotId("b1"), config_hash=pod["metadata"]["annotations"][HASH],
                              pod_name=pod["metadata"]["name"])
    assert desired_bot(bot, TEMPLATE) == want


def test_parse_desired_takes_the_kind_the_resource_policy_and_the_config_limit() -> None:
    bot, _ = parse_desired(doc(), kind=BotKind.SCHEDULED, template=TEMPLATE,
                           resources=SMALL_POLICY)
    assert bot.kind is BotKind.SCHEDULED and bot.resources == SMALL
    with pytest.raises(InvalidBot) as caught:
        parse_desired(doc(), kind=BotKind.LIVE, template=TEMPLATE, max_config_bytes=10)
    assert caught.value.reason == "config_too_large"


def test_the_desired_schedule_is_the_cronjob_the_generator_builds() -> None:
    cron = CronJobSettings(starting_deadline_seconds=60)
    bot, want = parse_desired_schedule(doc(), template=TEMPLATE, cron=cron)
    cronjob = build_cronjob(bot, TEMPLATE, cron)
    assert bot.kind is BotKind.SCHEDULED and bot.schedule == "*/5 * * * *"
    assert want == DesiredBot(bot_id=BotId("b1"),
                              config_hash=cronjob["metadata"]["annotations"][HASH],
                              pod_name=cronjob["metadata"]["name"])
    # The CronJob knobs are part of what the hash covers.
    _, default_want = parse_desired_schedule(doc(), template=TEMPLATE, cron=CronJobSettings())
    assert default_want.config_hash != want.config_hash


def test_parse_desired_schedule_takes_the_resource_policy_and_the_config_limit() -> None:
    bot, _ = parse_desired_schedule(doc(), template=TEMPLATE, cron=CronJobSettings(),
                                    resources=SMALL_POLICY)
    assert bot.resources == SMALL
    with pytest.raises(InvalidBot) as caught:
        parse_desired_schedule(doc(), template=TEMPLATE, cron=CronJobSettings(),
                               max_config_bytes=10)
    assert caught.value.reason == "config_too_large"
    no_schedule = doc()
    del no_schedule["config"]["schedule"]
    with pytest.raises(InvalidBot) as caught:
        parse_desired_schedule(no_schedule, template=TEMPLATE, cron=CronJobSettings())
    assert caught.value.reason == "missing_schedule"


def test_each_document_lands_in_exactly_one_bucket() -> None:
    state = live_state([doc("a"), disabled("off"), invalid("bad"), doc("c")])
    assert set(state.desired) == {"a", "c"} and set(state.bots) == {"a", "c"}
    built = build_pod(state.bots[BotId("a")], TEMPLATE)
    assert state.desired[BotId("a")].pod_name == built["metadata"]["name"]
    assert state.disabled == frozenset({"off"})
    assert set(state.invalid) == {"bad"} and state.invalid[BotId("bad")].reason == "unknown_runtime"
    assert state.unidentifiable == 0 and state.duplicates == frozenset()
    assert state.known == frozenset({"a", "c", "off", "bad"})


@pytest.mark.parametrize("bad_id", [None, "", 7, ["b1"], {"$oid": "x"}])
def test_a_document_without_a_usable_id_is_only_counted(bad_id: Any) -> None:
    state = live_state([doc(bad_id), doc("a"), doc(bad_id)])
    assert state.unidentifiable == 2
    assert set(state.desired) == {"a"} and state.known == frozenset({"a"})
    without = doc("x")
    del without["id"]
    assert live_state([without]).unidentifiable == 1


@pytest.mark.parametrize("second", [doc("dup"), disabled("dup"), invalid("dup")])
def test_two_documents_with_one_id_are_neither_acted_on(second: dict[str, Any]) -> None:
    state = live_state([doc("dup"), doc("other"), second])
    assert set(state.desired) == {"other"} and set(state.bots) == {"other"}
    assert state.disabled == frozenset() and state.duplicates == frozenset({"dup"})
    error = state.invalid[BotId("dup")]
    assert (error.bot_id, error.reason, error.detail) == (
        "dup", "duplicate_id", "several documents share this id")
    assert state.known == frozenset({"dup", "other"})


def test_a_disabled_document_is_never_parsed() -> None:
    seen: list[str] = []

    def parse(document: Any) -> tuple[Bot, DesiredBot]:
        seen.append(document["id"])
        return parse_desired(document, kind=BotKind.LIVE, template=TEMPLATE)

    state = desired_state([doc("a"), disabled("off"), doc("b", config={"enabled": False})],
                          kind=BotKind.LIVE, template=TEMPLATE, parse=parse)
    assert seen == ["a"] and state.disabled == frozenset({"off", "b"})


def test_the_default_parse_uses_the_kind_and_resource_policy_given() -> None:
    state = desired_state([doc("a")], kind=BotKind.SCHEDULED, template=TEMPLATE,
                          resources=SMALL_POLICY)
    bot = state.bots[BotId("a")]
    assert bot.kind is BotKind.SCHEDULED and bot.resources == SMALL


def test_an_empty_read_is_an_empty_state() -> None:
    assert live_state([]) == DesiredState()
    assert DesiredState().known == frozenset()
