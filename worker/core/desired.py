"""Bot documents → the desired state the planner needs. Pure: no I/O.

Every document lands in exactly one bucket: desired (valid and enabled), disabled, or invalid
(with its InvalidBot error). A document without a usable id cannot own a pod; it is counted
and reported, never guessed at.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.core.bot import MAX_CONFIG_BYTES, Bot, BotId, BotKind, is_enabled, parse_bot
from worker.core.cronspec import CronJobSettings, cronjob_hash
from worker.core.errors import InvalidBot
from worker.core.naming import cronjob_name, pod_name
from worker.core.planner import DesiredBot
from worker.core.podspec import PodTemplateSettings, config_hash
from worker.core.resources import DEFAULT_POLICY, ResourcePolicy


@dataclass(frozen=True, kw_only=True)
class DesiredState:
    desired: dict[BotId, DesiredBot] = field(default_factory=dict)
    bots: dict[BotId, Bot] = field(default_factory=dict)
    invalid: dict[BotId, InvalidBot] = field(default_factory=dict)
    disabled: frozenset[BotId] = frozenset()
    unidentifiable: int = 0  # documents whose id is missing, empty or not a string
    duplicates: frozenset[BotId] = frozenset()  # ids used by more than one document

    @property
    def known(self) -> frozenset[BotId]:
        return frozenset(self.bots) | frozenset(self.invalid) | self.disabled


def desired_bot(bot: Bot, template: PodTemplateSettings) -> DesiredBot:
    return DesiredBot(bot_id=bot.id, config_hash=config_hash(bot, template),
                      pod_name=pod_name(bot.id))


ParseBot = Callable[[Mapping[str, Any]], tuple[Bot, DesiredBot]]


def parse_desired(doc: Mapping[str, Any], *, kind: BotKind, template: PodTemplateSettings,
                  resources: ResourcePolicy = DEFAULT_POLICY,
                  max_config_bytes: int = MAX_CONFIG_BYTES) -> tuple[Bot, DesiredBot]:
    """One enabled document → its Bot and DesiredBot; raises InvalidBot."""
    bot = parse_bot(doc, kind=kind, resources=resources, max_config_bytes=max_config_bytes)
    return bot, desired_bot(bot, template)


def parse_desired_schedule(doc: Mapping[str, Any], *, template: PodTemplateSettings,
                           cron: CronJobSettings, resources: ResourcePolicy = DEFAULT_POLICY,
                           max_config_bytes: int = MAX_CONFIG_BYTES) -> tuple[Bot, DesiredBot]:
    """One enabled schedule document → its Bot and the CronJob it must have; the schedule is
    validated here (InvalidBot), before any API call."""
    bot = parse_bot(doc, kind=BotKind.SCHEDULED, resources=resources,
                    max_config_bytes=max_config_bytes)
    return bot, DesiredBot(bot_id=bot.id, config_hash=cronjob_hash(bot, template, cron),
                           pod_name=cronjob_name(bot.id))


def desired_state(docs: Iterable[Mapping[str, Any]], *, kind: BotKind,
                  template: PodTemplateSettings, resources: ResourcePolicy = DEFAULT_POLICY,
                  parse: ParseBot | None = None) -> DesiredState:
    """`parse` may replace `parse_desired` (e.g. the shell's memo of unchanged documents)."""
    if parse is None:
        def parse(doc: Mapping[str, Any]) -> tuple[Bot, DesiredBot]:
            return parse_desired(doc, kind=kind, template=template, resources=resources)
    desired: dict[BotId, DesiredBot] = {}
    bots: dict[BotId, Bot] = {}
    invalid: dict[BotId, InvalidBot] = {}
    disabled: set[BotId] = set()
    seen: set[BotId] = set()
    duplicates: set[BotId] = set()
    unidentifiable = 0
    for doc in docs:
        raw_id = doc.get("id")
        if not isinstance(raw_id, str) or not raw_id:
            unidentifiable += 1
            continue
        bot_id = BotId(raw_id)
        if bot_id in seen:
            duplicates.add(bot_id)
        seen.add(bot_id)
        if not is_enabled(doc):
            disabled.add(bot_id)
            continue
        try:
            bot, want = parse(doc)
        except InvalidBot as error:
            invalid[bot_id] = error
            continue
        bots[bot_id] = bot
        desired[bot_id] = want
    # Two documents claim one id: which one is meant is unknowable, so neither is acted on.
    for bot_id in duplicates:
        desired.pop(bot_id, None)
        bots.pop(bot_id, None)
        disabled.discard(bot_id)
        invalid[bot_id] = InvalidBot(bot_id, "duplicate_id", "several documents share this id")
    return DesiredState(desired=desired, bots=bots, invalid=invalid,
                        disabled=frozenset(disabled), unidentifiable=unidentifiable,
                        duplicates=frozenset(duplicates))
