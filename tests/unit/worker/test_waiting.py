"""The wait for a terminating object and what a continuation carries (reconcile/waiting.py)."""

from __future__ import annotations

import pickle
import time
from typing import Any

import pytest

from worker.core.bot import BotId
from worker.core.errors import TemporaryError
from worker.core.planner import ActionKind, ObservedPod
from worker.core.podstatus import PodAssessment, PodHealth
from worker.reconcile.waiting import Resume, StillTerminating, pace, wait_until_gone
from worker.tasks.base import CONTINUED


def pod(name: str, uid: str) -> ObservedPod:
    return ObservedPod(name=name, bot_id=BotId(name), uid=uid, config_hash="h",
                       assessment=PodAssessment(health=PodHealth.TERMINATING, reason="terminating",
                                                message="", restarts=0, phase="Running"))


def test_gone_at_once_and_replaced_by_another_uid_both_count_as_gone() -> None:
    world: dict[str, dict[str, Any]] = {"b": {"metadata": {"uid": "new"}}}
    renewals: list[int] = []
    assert wait_until_gone(world.get, [pod("a", "1"), pod("b", "old")],
                           lambda: renewals.append(1), timeout=0)
    assert len(renewals) == 2  # the lock renewed before each check


def test_still_there_after_the_timeout_is_false_and_checked_even_with_no_time() -> None:
    gets: list[str] = []

    def get(name: str) -> dict[str, Any]:
        gets.append(name)
        return {"metadata": {"uid": "1"}}

    assert not wait_until_gone(get, [pod("a", "1")], lambda: None, timeout=0)
    assert gets == ["a"]
    started = time.monotonic()
    assert not wait_until_gone(get, [pod("a", "1")], lambda: None, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5


def test_gone_during_the_wait_is_true() -> None:
    answers = iter([{"metadata": {"uid": "1"}}, {"metadata": {"uid": "1"}}, None])
    assert wait_until_gone(lambda _name: next(answers), [pod("a", "1")], lambda: None,
                           timeout=5)


def test_a_resume_round_trips_through_its_message() -> None:
    began = Resume(ActionKind.RECREATE, "crash-looping", "bot-x")
    assert Resume.from_message(began.as_message()) == began


@pytest.mark.parametrize("raw", [
    None, "replace", [], {}, {"action": "create", "reason": "r", "old": "p"},
    {"action": "delete", "reason": "r", "old": "p"}, {"action": "replace", "reason": 3, "old": "p"},
    {"action": "replace", "reason": "r"}, {"action": "nonsense", "reason": "r", "old": "p"}])
def test_anything_else_in_a_message_resumes_nothing(raw: object) -> None:
    assert Resume.from_message(raw) is None


def test_a_huge_resume_is_cut_to_bounded_strings() -> None:
    resumed = Resume.from_message({"action": "takeover", "reason": "r" * 10_000,
                                   "old": "p" * 10_000})
    assert resumed is not None and len(resumed.reason) == 200 and len(resumed.old) == 253


def test_still_terminating_is_a_temporary_error_that_survives_pickling() -> None:
    began = Resume(ActionKind.REPLACE, "config changed", "bot-y")
    error = pickle.loads(pickle.dumps(StillTerminating("pod bot-y still terminating",
                                                       resumes=began)))
    assert isinstance(error, TemporaryError) and error.resumes == began
    assert str(error) == "pod bot-y still terminating"


def test_the_continued_outcome_is_counted_as_its_own() -> None:
    from worker.core.metrics import action_outcome

    assert action_outcome(CONTINUED) == "continued"


def test_the_first_run_waits_a_second_and_continuations_only_check_ever_less_often() -> None:
    assert [pace(waits) for waits in range(5)] == [
        (1.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0)]
    assert pace(-3) == (1.0, 1.0) and pace(10**9) == (0.0, 4.0)  # a bad header is harmless
