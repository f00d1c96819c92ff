"""How many bots are in which state, from one pass's observation (for `the0_bots` and /status).

PURE: plain values in, counts out. States (a bot counts once in each that applies):
desired — enabled and valid; running — desired with a running pod (a CronJob in place for a
scheduled bot); pending — desired with a pod not yet running; missing — desired with nothing;
unhealthy — a broken pod (crash loop, image pull error, failed); backoff — a recreate held back
until its backoff ends; invalid — a document we cannot run; disabled; warned — desired, but
running without something its config asked for (e.g. resources ignored or clamped).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from worker.core.bot import BotId
from worker.core.planner import Backoff, ObservedPod
from worker.core.podstatus import PodHealth

STATES = ("desired", "running", "pending", "missing", "unhealthy", "backoff", "invalid",
          "disabled", "warned")


def census(*, desired: Collection[BotId], objects: Iterable[ObservedPod],
           backoff: Mapping[BotId, Backoff], invalid: int, disabled: int,
           now: float, warned: int = 0) -> dict[str, int]:
    health_by_bot: dict[BotId, set[PodHealth]] = {}
    for obj in objects:
        health_by_bot.setdefault(obj.bot_id, set()).add(obj.assessment.health)
    counts = dict.fromkeys(STATES, 0)
    counts["desired"] = len(desired)
    counts["invalid"] = invalid
    counts["disabled"] = disabled
    counts["warned"] = warned
    for bot_id in desired:
        health = health_by_bot.get(bot_id, set())
        if PodHealth.RUNNING in health:
            counts["running"] += 1
        elif PodHealth.PENDING in health:
            counts["pending"] += 1
        elif not health:
            counts["missing"] += 1
    counts["unhealthy"] = sum(1 for h in health_by_bot.values() if PodHealth.BROKEN in h)
    counts["backoff"] = sum(1 for b in backoff.values() if b.not_before > now)
    return counts
