"""Bots by state from one pass's observation."""

from __future__ import annotations

from worker.core.bot import BotId
from worker.core.census import STATES, census
from worker.core.planner import Backoff, ObservedPod
from worker.core.podstatus import PodAssessment, PodHealth

NOW = 1_800_000_000.0


def pod(bot_id: str, health: PodHealth, name: str | None = None) -> ObservedPod:
    return ObservedPod(name=name or f"bot-{bot_id}", bot_id=BotId(bot_id), config_hash="h",
                       assessment=PodAssessment(health=health, reason="", message="",
                                                restarts=0, phase=""), uid="u")


def test_census_counts_each_state() -> None:
    desired = [BotId(i) for i in ("a", "b", "c", "d", "e")]
    objects = [pod("a", PodHealth.RUNNING), pod("b", PodHealth.PENDING),
               pod("c", PodHealth.BROKEN), pod("e", PodHealth.TERMINATING),
               pod("e", PodHealth.RUNNING, name="bot-e-2"), pod("zz", PodHealth.BROKEN)]
    backoff = {BotId("c"): Backoff(failures=2, not_before=NOW + 10),
               BotId("x"): Backoff(failures=1, not_before=NOW - 10)}
    counts = census(desired=desired, objects=objects, backoff=backoff, invalid=3, disabled=4,
                    now=NOW, warned=2)
    assert list(counts) == list(STATES)
    assert counts == {"desired": 5, "running": 2, "pending": 1, "missing": 1,
                      "unhealthy": 2, "backoff": 1, "invalid": 3, "disabled": 4, "warned": 2}


def test_census_of_nothing_is_all_zero() -> None:
    assert set(census(desired=[], objects=[], backoff={}, invalid=0, disabled=0,
                      now=NOW).values()) == {0}
