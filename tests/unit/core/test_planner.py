"""The planner: every rule, the mass-deletion guard, determinism, and speed at 10,000 bots."""

import random
import time
from typing import Any

import pytest

from worker.core.bot import BotId
from worker.core.naming import pod_name
from worker.core.planner import (
    Action,
    ActionKind,
    Backoff,
    DesiredBot,
    ObservedPod,
    Plan,
    next_backoff,
    observed_pod,
    plan,
)
from worker.core.podstatus import PodAssessment, PodHealth

NOW = 1_700_000_000.0
HASH = "a1b2c3d4e5f60718"
NEW_HASH = "c3d4e5f607182930"


def desired(*ids: str, config_hash: str = HASH) -> dict[BotId, DesiredBot]:
    return {
        BotId(i): DesiredBot(bot_id=BotId(i), config_hash=config_hash, pod_name=pod_name(i))
        for i in ids
    }


def observed(
    bot_id: str,
    *,
    health: PodHealth = PodHealth.RUNNING,
    config_hash: str = HASH,
    name: str | None = None,
    reason: str = "",
) -> ObservedPod:
    return ObservedPod(
        name=name or pod_name(bot_id),
        bot_id=BotId(bot_id),
        config_hash=config_hash,
        assessment=PodAssessment(
            health=health, reason=reason or health.value, message="", restarts=0, phase="Running"
        ),
        uid=f"uid-{bot_id}-{name}",
    )


def make_plan(
    want: dict[BotId, DesiredBot],
    pods: list[ObservedPod],
    *,
    backoff: dict[BotId, Backoff] | None = None,
    max_delete_fraction: float = 1.0,
    max_delete_min: int = 1_000_000,
) -> Plan:
    return plan(
        desired=want,
        actual=pods,
        backoff=backoff or {},
        now=NOW,
        max_delete_fraction=max_delete_fraction,
        max_delete_min=max_delete_min,
    )


def only_action(result: Plan) -> Action:
    assert len(result.actions) == 1, result
    return result.actions[0]


# --- single-bot rules --------------------------------------------------------------------------


def test_empty_inputs_give_an_empty_plan() -> None:
    result = make_plan({}, [])
    assert result == Plan(
        actions=(),
        waiting=(),
        backing_off=(),
        blocked_deletions=(),
        guard_tripped=False,
        guard_message="",
    )


def test_a_bot_in_its_desired_state_needs_nothing() -> None:
    for health in (PodHealth.RUNNING, PodHealth.PENDING):
        assert make_plan(desired("a"), [observed("a", health=health)]).actions == ()


def test_a_missing_pod_is_created() -> None:
    assert only_action(make_plan(desired("Odd Id"), [])) == Action(
        kind=ActionKind.CREATE,
        bot_id=BotId("Odd Id"),
        pod_name=pod_name("Odd Id"),
        reason="missing",
    )


def test_a_pod_of_a_removed_or_disabled_bot_is_deleted() -> None:
    assert only_action(make_plan({}, [observed("a")])) == Action(
        kind=ActionKind.DELETE, bot_id=BotId("a"), pod_name="bot-a", reason="disabled or removed"
    )


def test_a_create_that_failed_waits_for_its_backoff() -> None:
    waiting = make_plan(desired("a"), [], backoff={BotId("a"): Backoff(failures=1,
                                                                       not_before=NOW + 5)})
    assert waiting.actions == () and waiting.backing_off == ("a",)
    expired = make_plan(desired("a"), [], backoff={BotId("a"): Backoff(failures=1,
                                                                       not_before=NOW - 5)})
    assert only_action(expired).kind is ActionKind.CREATE
    due = make_plan(desired("a"), [], backoff={BotId("a"): Backoff(failures=1, not_before=NOW)})
    assert only_action(due).kind is ActionKind.CREATE  # a backoff ends at not_before itself


def test_the_pod_of_an_invalid_enabled_bot_is_left_running() -> None:
    pods = [observed("broken-doc"), observed("gone")]
    result = plan(desired={}, actual=pods, backoff={}, now=NOW, max_delete_fraction=1.0,
                  max_delete_min=1_000_000, untouchable={BotId("broken-doc")})
    assert [(a.kind, a.bot_id) for a in result.actions] == [(ActionKind.DELETE, "gone")]


def test_a_pod_with_another_config_hash_is_replaced_in_one_action() -> None:
    action = only_action(make_plan(desired("a", config_hash=NEW_HASH), [observed("a")]))
    assert action == Action(
        kind=ActionKind.REPLACE,
        bot_id=BotId("a"),
        pod_name="bot-a",
        reason="config changed a1b2c3d4→c3d4e5f6",
    )


def test_a_pod_without_a_hash_is_replaced() -> None:
    action = only_action(make_plan(desired("a"), [observed("a", config_hash="")]))
    assert (action.kind, action.reason) == (ActionKind.REPLACE, "config changed none→a1b2c3d4")


def test_a_broken_pod_is_recreated_with_its_reason() -> None:
    pods = [observed("a", health=PodHealth.BROKEN, reason="CrashLoopBackOff")]
    assert only_action(make_plan(desired("a"), pods)) == Action(
        kind=ActionKind.RECREATE, bot_id=BotId("a"), pod_name="bot-a", reason="CrashLoopBackOff"
    )


def test_a_broken_pod_waits_for_its_backoff() -> None:
    pods = [observed("a", health=PodHealth.BROKEN)]
    backoff = {BotId("a"): Backoff(failures=3, not_before=NOW + 1)}
    result = make_plan(desired("a"), pods, backoff=backoff)
    assert result.actions == ()
    assert result.backing_off == (BotId("a"),)


@pytest.mark.parametrize("not_before", [NOW, NOW - 1])
def test_an_expired_backoff_allows_the_recreate(not_before: float) -> None:
    pods = [observed("a", health=PodHealth.BROKEN)]
    backoff = {BotId("a"): Backoff(failures=3, not_before=not_before)}
    assert only_action(make_plan(desired("a"), pods, backoff=backoff)).kind is ActionKind.RECREATE


def test_a_config_change_on_a_broken_pod_replaces_it_despite_backoff() -> None:
    pods = [observed("a", health=PodHealth.BROKEN)]
    backoff = {BotId("a"): Backoff(failures=9, not_before=NOW + 3600)}
    result = make_plan(desired("a", config_hash=NEW_HASH), pods, backoff=backoff)
    assert only_action(result).kind is ActionKind.REPLACE
    assert result.backing_off == ()


def test_backoff_of_a_healthy_bot_is_ignored() -> None:
    backoff = {BotId("a"): Backoff(failures=3, not_before=NOW + 60)}
    result = make_plan(desired("a"), [observed("a")], backoff=backoff)
    assert (result.actions, result.backing_off) == ((), ())


# --- terminating pods ----------------------------------------------------------------------------


def test_a_terminating_pod_of_a_desired_bot_is_waited_for_not_recreated() -> None:
    result = make_plan(desired("a"), [observed("a", health=PodHealth.TERMINATING)])
    assert result.actions == ()
    assert result.waiting == (BotId("a"),)


def test_a_terminating_pod_of_a_removed_bot_is_not_deleted_again() -> None:
    result = make_plan({}, [observed("a", health=PodHealth.TERMINATING)])
    assert result.actions == ()
    assert result.waiting == (BotId("a"),)


def test_a_terminating_pod_blocks_a_replace_of_its_live_sibling() -> None:
    pods = [
        observed("a", health=PodHealth.TERMINATING, name="bot-a-old"),
        observed("a", config_hash="stale"),
    ]
    result = make_plan(desired("a"), pods)
    assert result.actions == ()
    assert result.waiting == (BotId("a"),)


def test_a_removed_bot_with_live_and_terminating_pods_deletes_the_live_one() -> None:
    pods = [observed("a", health=PodHealth.TERMINATING, name="bot-a-old"), observed("a")]
    action = only_action(make_plan({}, pods))
    assert (action.kind, action.pod_name) == (ActionKind.DELETE, "bot-a")


# --- duplicates ------------------------------------------------------------------------------


def test_a_duplicate_is_deleted_and_the_matching_healthy_pod_kept() -> None:
    pods = [
        observed("a", name="bot-a-0", config_hash="stale"),
        observed("a", name="bot-a"),
        observed("a", name="bot-a-1", health=PodHealth.BROKEN),
    ]
    action = only_action(make_plan(desired("a"), pods))
    assert action.kind is ActionKind.DELETE
    assert action.reason == "duplicate pod"
    assert action.pod_name == "bot-a-0"  # the first extra by name; never the keeper "bot-a"


@pytest.mark.parametrize(
    ("pods", "keeper"),
    [
        ([observed("a", name="x", config_hash="old"), observed("a", name="y")], "y"),
        ([observed("a", name="x", health=PodHealth.BROKEN), observed("a", name="y")], "y"),
        ([observed("a", name="x", health=PodHealth.PENDING), observed("a", name="y")], "y"),
        ([observed("a", name="x"), observed("a", name="bot-a")], "bot-a"),
        ([observed("a", name="y"), observed("a", name="x")], "x"),
    ],
)
def test_the_keeper_preference(pods: list[ObservedPod], keeper: str) -> None:
    action = only_action(make_plan(desired("a"), pods))
    assert action.pod_name != keeper
    assert only_action(make_plan(desired("a"), list(reversed(pods)))) == action


def test_duplicates_are_removed_one_per_pass_until_one_remains() -> None:
    pods = [observed("a", name=f"bot-a-{i}") for i in range(4)]
    passes = 0
    while len(pods) > 1:
        action = only_action(make_plan(desired("a"), pods))
        pods = [p for p in pods if p.name != action.pod_name]
        passes += 1
    assert passes == 3
    assert make_plan(desired("a"), pods).actions == ()


def test_duplicate_deletes_are_never_blocked_by_the_guard() -> None:
    want = desired(*[f"b{i}" for i in range(10)])
    pods = [observed(f"b{i}", name=n) for i in range(10) for n in (f"x{i}", f"y{i}")]
    result = make_plan(want, pods, max_delete_fraction=0.0, max_delete_min=0)
    assert len(result.actions) == 10
    assert all(a.reason == "duplicate pod" for a in result.actions)
    assert not result.guard_tripped


# --- the mass-deletion guard -------------------------------------------------------------------


def _removals(keep: int, remove: int) -> tuple[dict[BotId, DesiredBot], list[ObservedPod]]:
    kept = [f"keep{i:04d}" for i in range(keep)]
    removed = [f"gone{i:04d}" for i in range(remove)]
    return desired(*kept), [observed(i) for i in kept + removed]


@pytest.mark.parametrize(
    ("keep", "remove", "fraction", "minimum", "tripped"),
    [
        (90, 10, 0.1, 5, False),  # 10 of 100 = the limit exactly
        (89, 11, 0.1, 5, True),  # 11 of 100 > 10
        (5, 5, 0.1, 5, False),  # fraction gives 1; the minimum of 5 rules
        (4, 6, 0.1, 5, True),
        (0, 3, 0.5, 3, False),  # deleting every pod is fine under the minimum
        (0, 4, 0.5, 3, True),
        (0, 1, 0.0, 0, True),  # a zero limit blocks every removal
        (100, 0, 0.0, 0, False),  # nothing to delete never trips
    ],
)
def test_guard_threshold(
    keep: int, remove: int, fraction: float, minimum: int, tripped: bool
) -> None:
    want, pods = _removals(keep, remove)
    result = make_plan(want, pods, max_delete_fraction=fraction, max_delete_min=minimum)
    assert result.guard_tripped is tripped
    deletes = [a for a in result.actions if a.kind is ActionKind.DELETE]
    if tripped:
        assert deletes == []
        assert len(result.blocked_deletions) == remove
        assert f"{remove} of {keep + remove} pods" in result.guard_message
    else:
        assert len(deletes) == remove
        assert (result.blocked_deletions, result.guard_message) == ((), "")


def test_a_tripped_guard_still_lets_creates_replaces_and_recreates_through() -> None:
    want = desired("new", "changed", "broken")
    pods = [
        observed("changed", config_hash="old"),
        observed("broken", health=PodHealth.BROKEN),
        *[observed(f"gone{i}") for i in range(5)],
    ]
    result = make_plan(want, pods, max_delete_fraction=0.1, max_delete_min=1)
    assert result.guard_tripped
    assert [a.kind for a in result.actions] == [
        ActionKind.RECREATE,
        ActionKind.REPLACE,
        ActionKind.CREATE,
    ]
    assert [a.bot_id for a in result.blocked_deletions] == [f"gone{i}" for i in range(5)]
    assert all(a.kind is ActionKind.DELETE for a in result.blocked_deletions)


def test_terminating_pods_do_not_count_towards_the_guard_base() -> None:
    want, pods = _removals(keep=8, remove=2)
    pods += [observed(f"dying{i}", health=PodHealth.TERMINATING) for i in range(90)]
    result = make_plan(want, pods, max_delete_fraction=0.1, max_delete_min=1)
    assert result.guard_tripped  # 2 > max(1, 0.1 * 10), not 0.1 * 100


# --- properties ----------------------------------------------------------------------------------


def _random_world(
    seed: int, bots: int
) -> tuple[dict[BotId, DesiredBot], list[ObservedPod], dict[BotId, Backoff]]:
    rng = random.Random(seed)
    want: dict[BotId, DesiredBot] = {}
    pods: list[ObservedPod] = []
    backoff: dict[BotId, Backoff] = {}
    for i in range(bots):
        bot_id = f"bot{i:05d}"
        if rng.random() < 0.8:
            want.update(desired(bot_id, config_hash=rng.choice([HASH, NEW_HASH])))
        for copy in range(rng.choice([0, 1, 1, 1, 2, 3])):
            pods.append(
                observed(
                    bot_id,
                    name=f"{pod_name(bot_id)}-{copy}" if copy else None,
                    health=rng.choice(list(PodHealth)),
                    config_hash=rng.choice([HASH, NEW_HASH, ""]),
                )
            )
        if rng.random() < 0.3:
            backoff[BotId(bot_id)] = Backoff(failures=2, not_before=NOW + rng.uniform(-60, 60))
    return want, pods, backoff


@pytest.mark.parametrize("seed", range(20))
def test_at_most_one_action_per_bot_sorted_by_bot_id(seed: int) -> None:
    want, pods, backoff = _random_world(seed, 300)
    result = make_plan(want, pods, backoff=backoff, max_delete_fraction=0.5, max_delete_min=10)
    acted = [a.bot_id for a in (*result.actions, *result.blocked_deletions)]
    everything = acted + list(result.waiting) + list(result.backing_off)
    assert len(everything) == len(set(everything))
    assert [a.bot_id for a in result.actions] == sorted(a.bot_id for a in result.actions)
    assert list(result.waiting) == sorted(result.waiting)
    known_pods = {(p.bot_id, p.name) for p in pods}
    for action in result.actions:
        if action.kind is not ActionKind.CREATE:
            assert (action.bot_id, action.pod_name) in known_pods


@pytest.mark.parametrize("seed", range(10))
def test_the_plan_does_not_depend_on_input_order(seed: int) -> None:
    want, pods, backoff = _random_world(seed, 200)
    first = make_plan(want, pods, backoff=backoff)
    rng = random.Random(seed)
    shuffled_pods = pods[:]
    rng.shuffle(shuffled_pods)
    shuffled_want = dict(rng.sample(list(want.items()), len(want)))
    assert make_plan(shuffled_want, shuffled_pods, backoff=backoff) == first


@pytest.mark.parametrize("seed", range(10))
def test_nothing_is_ever_created_beside_an_existing_pod(seed: int) -> None:
    want, pods, backoff = _random_world(seed, 300)
    result = make_plan(want, pods, backoff=backoff)
    with_pods = {p.bot_id for p in pods}
    assert not [a for a in result.actions if a.kind is ActionKind.CREATE and a.bot_id in with_pods]


def test_ten_thousand_bots_are_planned_quickly() -> None:
    want, pods, backoff = _random_world(7, 10_000)
    # CPU time of this process, not wall time: a busy machine (CI, the stack) must not fail it,
    # while a quadratic planner (~10^8 steps) still would.
    started = time.process_time()
    result = make_plan(want, pods, backoff=backoff, max_delete_fraction=0.1, max_delete_min=50)
    elapsed = time.process_time() - started
    assert result.actions or result.blocked_deletions
    assert elapsed < 1.0, f"planning 10,000 bots took {elapsed:.3f} s of CPU"


def test_a_converged_world_of_ten_thousand_bots_plans_nothing() -> None:
    ids = [f"bot{i:05d}" for i in range(10_000)]
    result = make_plan(desired(*ids), [observed(i) for i in ids])
    assert result.counts() == {
        "create": 0,
        "delete": 0,
        "replace": 0,
        "recreate": 0,
        "takeover": 0,
        "waiting": 0,
        "backing_off": 0,
        "blocked_deletions": 0,
        "name_taken": 0,
    }


def test_counts() -> None:
    want = desired("new", "changed", "broken", "later", "dying")
    pods = [
        observed("changed", config_hash="old"),
        observed("broken", health=PodHealth.BROKEN),
        observed("later", health=PodHealth.BROKEN),
        observed("dying", health=PodHealth.TERMINATING),
        observed("gone"),
    ]
    backoff = {BotId("later"): Backoff(failures=1, not_before=NOW + 5)}
    assert make_plan(want, pods, backoff=backoff).counts() == {
        "create": 1,
        "delete": 1,
        "replace": 1,
        "recreate": 1,
        "takeover": 0,
        "waiting": 1,
        "backing_off": 1,
        "blocked_deletions": 0,
        "name_taken": 0,
    }


def test_counts_count_every_action_of_a_kind() -> None:
    result = make_plan(desired("a", "b", "c"), [observed("gone1"), observed("gone2")])
    assert (result.counts()["create"], result.counts()["delete"]) == (3, 2)


# --- backoff -------------------------------------------------------------------------------------


def test_the_first_backoff_is_the_base_delay() -> None:
    first = next_backoff(None, now=NOW, base_s=10, cap_s=600, jitter=0.999999)
    assert first.failures == 1
    assert NOW + 5 <= first.not_before < NOW + 10


def test_backoff_doubles_then_stops_at_the_cap() -> None:
    delays, previous = [], None
    for _ in range(12):
        previous = next_backoff(previous, now=NOW, base_s=10, cap_s=600, jitter=0.0)
        delays.append(previous.not_before - NOW)
    # Zero jitter lands on half the capped delay.
    assert delays[:7] == [5, 10, 20, 40, 80, 160, 300]
    assert set(delays[6:]) == {300}
    assert previous is not None and previous.failures == 12


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999])
def test_jitter_spreads_the_delay_but_never_past_the_cap(jitter: float) -> None:
    previous = Backoff(failures=100, not_before=0)
    result = next_backoff(previous, now=NOW, base_s=10, cap_s=600, jitter=jitter)
    assert NOW + 300 <= result.not_before < NOW + 600
    assert result.not_before == NOW + 300 * (1 + jitter)


def test_a_huge_failure_count_does_not_overflow() -> None:
    previous = Backoff(failures=10**6, not_before=0)
    assert next_backoff(previous, now=NOW, base_s=1, cap_s=60, jitter=0).not_before == NOW + 30


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2.0])
def test_jitter_outside_the_unit_interval_is_a_bug(jitter: float) -> None:
    with pytest.raises(ValueError):
        next_backoff(None, now=NOW, base_s=1, cap_s=60, jitter=jitter)


# --- observed_pod --------------------------------------------------------------------------------


def raw_pod(**metadata: Any) -> dict[str, Any]:
    return {"metadata": metadata, "status": {"phase": "Running"}}


def test_observed_pod_reads_our_annotations() -> None:
    result = observed_pod(
        raw_pod(
            name="bot-mybot-khiio5moo3",
            uid="u-1",
            labels={"bot-id": "MyBot-hash"},
            annotations={"the0.dev/bot-id": "MyBot", "the0.dev/config-hash": HASH},
        )
    )
    assert result is not None
    assert (result.name, result.bot_id, result.config_hash, result.uid) == (
        "bot-mybot-khiio5moo3",
        "MyBot",
        HASH,
        "u-1",
    )
    assert result.assessment.health is PodHealth.RUNNING


def test_a_pod_with_only_our_bot_id_label_falls_back_to_it() -> None:
    result = observed_pod(raw_pod(name="bot-abc", uid="u", labels={"bot-id": "abc"}))
    assert result is not None
    assert (result.bot_id, result.config_hash) == ("abc", "")


@pytest.mark.parametrize(
    "metadata",
    [
        {"name": "bot-a"},
        {"name": "bot-a", "annotations": {"the0.dev/bot-id": ""}},
        {"name": "bot-a", "annotations": {"the0.dev/bot-id": 5}},
        {"name": "bot-a", "annotations": None, "labels": None},
        {"annotations": {"the0.dev/bot-id": "a"}},
        {"name": 5, "annotations": {"the0.dev/bot-id": "a"}},
    ],
)
def test_a_pod_that_names_no_bot_is_ignored(metadata: dict[str, Any]) -> None:
    assert observed_pod(raw_pod(**metadata)) is None


def test_observed_pod_tolerates_missing_hash_and_uid() -> None:
    result = observed_pod(raw_pod(name="bot-a", annotations={"the0.dev/bot-id": "a"}))
    assert result is not None
    assert (result.config_hash, result.uid) == ("", "")
    assert observed_pod({}) is None


def test_observed_pod_carries_its_creation_time() -> None:
    pod = {"metadata": {"name": "bot-a", "uid": "u1",
                        "annotations": {"the0.dev/bot-id": "a"},
                        "creationTimestamp": "2026-11-30T17:13:30Z"},
           "status": {"phase": "Running"}}
    observed = observed_pod(pod)
    assert observed is not None and observed.created_at == 1796058810.0
    pod["metadata"]["creationTimestamp"] = "yesterday"
    assert observed_pod(pod).created_at == 0.0  # type: ignore[union-attr]
