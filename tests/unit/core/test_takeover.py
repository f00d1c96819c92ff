"""Cut-over from the0's original runtime: recognising its objects (worker/core/legacy.py) and
planning their takeover or deletion (worker/core/planner.py). Pure: no servers."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from tests.support.legacy import (
    job_from_cronjob,
    legacy_cronjob,
    legacy_pod,
)
from tests.support.legacy import (
    legacy_cronjob_name as go_cronjob_name,
)
from worker.core.bot import BotId
from worker.core.legacy import (
    CRONJOB_SELECTOR,
    POD_SELECTOR,
    REASON_LEGACY,
    REASON_NAME_TAKEN,
    legacy_cronjob_name,
    legacy_pod_name,
    note_cutover,
    observe_legacy_cronjob,
    observe_legacy_pod,
    observe_named,
    partition,
)
from worker.core.naming import cronjob_name, pod_name
from worker.core.planner import (
    REASON_DUPLICATE,
    REASON_REMOVED,
    REASON_TAKEOVER,
    Action,
    ActionKind,
    Backoff,
    DesiredBot,
    ForeignObject,
    ObservedPod,
    Plan,
    plan,
)
from worker.core.podstatus import PodAssessment, PodHealth

NOW = 1_700_000_000.0
HASH = "a1b2c3d4e5f60718"
MINIO = {"endpoint": "minio:9000", "access_key": "AKIA-LEGACY", "secret_key": "SECRET-LEGACY"}
NS = "the0"


# --- helpers ------------------------------------------------------------------------------------


def desired(*ids: str, names: Any = pod_name) -> dict[BotId, DesiredBot]:
    return {BotId(i): DesiredBot(bot_id=BotId(i), config_hash=HASH, pod_name=names(i))
            for i in ids}


def assessment(health: PodHealth = PodHealth.RUNNING) -> PodAssessment:
    return PodAssessment(health=health, reason=health.value, message="", restarts=0,
                         phase="Running")


def ours(bot_id: str, *, name: str | None = None,
         health: PodHealth = PodHealth.RUNNING) -> ObservedPod:
    return ObservedPod(name=name or pod_name(bot_id), bot_id=BotId(bot_id), config_hash=HASH,
                       assessment=assessment(health), uid=f"uid-ours-{bot_id}")


def legacy(bot_id: str, *, name: str | None = None,
           health: PodHealth = PodHealth.RUNNING) -> ObservedPod:
    return ObservedPod(name=name or f"bot-{bot_id}", bot_id=BotId(bot_id), config_hash="",
                       assessment=assessment(health), uid=f"uid-legacy-{bot_id}", legacy=True)


def foreign(name: str, claimed: str = "") -> ForeignObject:
    return ForeignObject(name=name, claimed_id=claimed, uid=f"uid-{name}", why="test")


def make_plan(want: dict[BotId, DesiredBot], objects: list[ObservedPod], *,
              strangers: list[ForeignObject] | None = None,
              backoff: dict[BotId, Backoff] | None = None, fraction: float = 1.0,
              minimum: int = 1_000_000, untouchable: frozenset[BotId] = frozenset()) -> Plan:
    return plan(desired=want, actual=objects, backoff=backoff or {}, now=NOW,
                max_delete_fraction=fraction, max_delete_min=minimum,
                untouchable=untouchable, foreign=strangers or [])


def bot_doc(bot_id: str, **config: Any) -> dict[str, Any]:
    return {"id": bot_id,
            "config": {"name": f"bot {bot_id}", "api_key": f"KEY-{bot_id}", **config},
            "custom": {"version": "1.0.0", "filePath": "bots/demo/v1.zip",
                       "config": {"runtime": "python3.11", "name": "demo",
                                  "entrypoints": {"bot": "main.py"}}}}


def with_uid(obj: dict[str, Any], uid: str = "u-1", **status: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["uid"] = uid
    if status:
        obj["status"] = status
    return obj


# --- planning: takeover, delete, guard ----------------------------------------------------------


def test_an_enabled_bot_with_an_original_pod_is_taken_over() -> None:
    result = make_plan(desired("abc"), [legacy("abc")])
    assert result.actions == (Action(kind=ActionKind.TAKEOVER, bot_id=BotId("abc"),
                                     pod_name="bot-abc", reason=REASON_TAKEOVER),)
    assert result.counts()["takeover"] == 1


@pytest.mark.parametrize("health", [PodHealth.PENDING, PodHealth.BROKEN])
def test_an_original_pod_in_any_live_state_is_taken_over(health: PodHealth) -> None:
    action = make_plan(desired("abc"), [legacy("abc", health=health)]).actions[0]
    assert action.kind is ActionKind.TAKEOVER


def test_a_disabled_or_removed_bots_original_pod_is_deleted() -> None:
    result = make_plan({}, [legacy("gone")])
    assert result.actions == (Action(kind=ActionKind.DELETE, bot_id=BotId("gone"),
                                     pod_name="bot-gone", reason=REASON_REMOVED),)


def test_nothing_is_created_beside_a_terminating_original_pod() -> None:
    result = make_plan(desired("abc"), [legacy("abc", health=PodHealth.TERMINATING)])
    assert (result.actions, result.waiting) == ((), (BotId("abc"),))


def test_an_original_pod_beside_ours_is_deleted_and_ours_kept() -> None:
    # e.g. id "a.b": the original's pod is bot-a.b, ours bot-a-b-<hash>.
    objects = [legacy("a.b"), ours("a.b")]
    action = make_plan(desired("a.b"), objects).actions[0]
    assert (action.kind, action.pod_name, action.reason) == (
        ActionKind.DELETE, "bot-a.b", REASON_DUPLICATE)
    assert make_plan(desired("a.b"), list(reversed(objects))).actions[0] == action


def test_a_failed_takeover_waits_for_its_backoff_and_the_original_keeps_running() -> None:
    backoff = {BotId("abc"): Backoff(failures=1, not_before=NOW + 30)}
    result = make_plan(desired("abc"), [legacy("abc")], backoff=backoff)
    assert (result.actions, result.backing_off) == ((), (BotId("abc"),))
    for not_before in (NOW - 1, NOW):  # a backoff ends at not_before itself
        expired = {BotId("abc"): Backoff(failures=1, not_before=not_before)}
        assert make_plan(desired("abc"), [legacy("abc")], backoff=expired).actions[0].kind is \
            ActionKind.TAKEOVER


def test_the_original_pod_of_an_invalid_bot_is_left_running() -> None:
    result = make_plan({}, [legacy("bad")], untouchable=frozenset({BotId("bad")}))
    assert result.actions == ()


def test_the_guard_counts_deletes_of_original_objects_and_lets_takeovers_through() -> None:
    objects = ([ours(f"keep{i}") for i in range(5)] + [legacy(f"take{i}") for i in range(5)]
               + [legacy(f"gone{i}") for i in range(10)])
    want = desired(*[f"keep{i}" for i in range(5)], *[f"take{i}" for i in range(5)])
    result = make_plan(want, objects, fraction=0.2, minimum=2)
    assert result.guard_tripped
    assert [a.bot_id for a in result.blocked_deletions] == [f"gone{i}" for i in range(10)]
    assert "10 of 20 pods" in result.guard_message
    assert [a.kind for a in result.actions] == [ActionKind.TAKEOVER] * 5
    # Under the limit the same deletes go through.
    relaxed = make_plan(want, objects, fraction=0.5, minimum=2)
    assert not relaxed.guard_tripped
    assert sum(a.kind is ActionKind.DELETE for a in relaxed.actions) == 10


# --- planning: objects that are no bot's as labelled ------------------------------------------


def test_a_foreign_object_is_never_acted_on_and_blocks_the_bot_whose_name_it_holds() -> None:
    strangers = [foreign("bot-mine", claimed="someone-else"), foreign("bot-x", claimed="x")]
    result = make_plan(desired("mine", "free"), [], strangers=strangers)
    assert [(a.kind, a.bot_id) for a in result.actions] == [(ActionKind.CREATE, "free")]
    assert result.name_taken == (BotId("mine"),)
    assert result.foreign == tuple(sorted(strangers, key=lambda o: o.name))
    assert result.counts()["name_taken"] == 1
    # The bots the foreign objects name are not desired: still nothing is deleted.
    assert make_plan({}, [], strangers=strangers).actions == ()


def test_an_original_object_of_another_bot_at_our_name_blocks_this_bot_only() -> None:
    # The original cuts CronJob names to 52 characters: schedule-<43 chars>. A 44-character
    # id's CronJob takes the name our 43-character prefix id gets.
    long_id, short_id = "a" * 43 + "b", "a" * 43
    assert go_cronjob_name(long_id) == cronjob_name(short_id) == legacy_cronjob_name(long_id)
    theirs = legacy(long_id, name=go_cronjob_name(long_id))
    result = make_plan(desired(long_id, short_id, names=cronjob_name), [theirs])
    assert [(a.kind, a.bot_id) for a in result.actions] == [(ActionKind.TAKEOVER, long_id)]
    assert result.name_taken == (BotId(short_id),)


def test_a_takeover_whose_new_name_is_held_leaves_the_original_running() -> None:
    result = make_plan(desired("a.b"), [legacy("a.b")],
                       strangers=[foreign(pod_name("a.b"))])
    assert (result.actions, result.name_taken) == ((), (BotId("a.b"),))


def _random_world(seed: int) -> tuple[dict[BotId, DesiredBot], list[ObservedPod],
                                      list[ForeignObject]]:
    rng = random.Random(seed)
    want: dict[BotId, DesiredBot] = {}
    objects: list[ObservedPod] = []
    strangers: list[ForeignObject] = []
    for i in range(200):
        bot_id = f"b{i:03d}"
        if rng.random() < 0.7:
            want.update(desired(bot_id))
        health = rng.choice(list(PodHealth))
        roll = rng.random()
        if roll < 0.3:
            objects.append(legacy(bot_id, health=health))
        elif roll < 0.5:
            objects.append(ours(bot_id, health=health))
        elif roll < 0.6:
            objects += [legacy(bot_id, name=f"bot-{bot_id}-old", health=health), ours(bot_id)]
        elif roll < 0.7:
            strangers.append(foreign(pod_name(bot_id), claimed=rng.choice(["", "zzz", bot_id])))
    return want, objects, strangers


@pytest.mark.parametrize("seed", range(10))
def test_never_an_action_on_a_foreign_object_nor_a_create_beside_an_object(seed: int) -> None:
    want, objects, strangers = _random_world(seed)
    result = make_plan(want, objects, strangers=strangers)
    foreign_names = {o.name for o in strangers}
    with_objects = {o.bot_id for o in objects}
    for action in result.actions:
        if action.kind is ActionKind.CREATE:
            assert action.bot_id not in with_objects
            assert action.pod_name not in foreign_names
        if action.kind is ActionKind.TAKEOVER:
            taken = next(o for o in objects if o.name == action.pod_name)
            assert taken.legacy and taken.bot_id == action.bot_id
            assert not any(o.bot_id == action.bot_id and not o.legacy for o in objects)
    acted = [a.bot_id for a in result.actions] + list(result.name_taken)
    assert len(acted) == len(set(acted))
    assert make_plan(want, list(reversed(objects)), strangers=strangers[::-1]) == result


# --- the original's names ------------------------------------------------------------------------


@pytest.mark.parametrize(("bot_id", "pod", "cronjob"), [
    ("abc", "bot-abc", "schedule-abc"),
    ("a.b", "bot-a.b", "schedule-a.b"),
    ("x" * 43 + "-yz", "bot-" + "x" * 43 + "-yz", "schedule-" + "x" * 43),
    ("x" * 42 + "--y", "bot-" + "x" * 42 + "--y", "schedule-" + "x" * 42),
    ("Odd", None, None),          # capitals: no DNS name, the original could make none
    ("a_b", None, None),
    ("x" * 64, None, None),       # no label value
    ("", None, None),
])
def test_the_names_the_original_gives(bot_id: str, pod: str | None,
                                      cronjob: str | None) -> None:
    assert legacy_pod_name(bot_id) == pod
    assert legacy_cronjob_name(bot_id) == cronjob
    if cronjob is not None:
        assert go_cronjob_name(bot_id) == cronjob


# --- recognising the original's objects ---------------------------------------------------------


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """The existence / non-existence terms our selectors use."""
    for term in selector.split(","):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def test_an_original_pod_is_recognised_and_nothing_secret_is_kept() -> None:
    raw = with_uid(legacy_pod(bot_doc("abc"), namespace=NS, minio=MINIO), phase="Running")
    seen = observe_legacy_pod(raw)
    assert isinstance(seen, ObservedPod)
    assert (seen.name, seen.bot_id, seen.uid, seen.legacy, seen.config_hash) == (
        "bot-abc", "abc", "u-1", True, "")
    assert seen.assessment.health is PodHealth.RUNNING
    assert "SECRET" not in repr(seen) and "KEY-abc" not in repr(seen)
    assert _selector_matches(POD_SELECTOR, raw["metadata"]["labels"])


def test_an_original_pod_under_another_controller_name_is_recognised() -> None:
    raw = with_uid(legacy_pod(bot_doc("abc"), namespace=NS, minio=MINIO, controller="mine"))
    assert isinstance(observe_legacy_pod(raw), ObservedPod)


def test_an_original_pod_whose_name_and_label_disagree_is_foreign() -> None:
    raw = with_uid(legacy_pod(bot_doc("abc"), namespace=NS, minio=MINIO))
    raw["metadata"]["labels"]["the0.dev/bot-id"] = "other"
    seen = observe_legacy_pod(raw)
    assert isinstance(seen, ForeignObject)
    assert (seen.name, seen.claimed_id) == ("bot-abc", "other")


def test_job_pods_and_our_pods_are_not_original_live_pods() -> None:
    cronjob = legacy_cronjob(bot_doc("s1", schedule="0 3 * * *"), namespace=NS, minio=MINIO)
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    job_pod = {"metadata": {"name": "schedule-s1-28001-abcde", "uid": "u-job",
                            "labels": {**template["metadata"]["labels"], "job-name": "x"},
                            "ownerReferences": [{"kind": "Job", "name": "x", "uid": "j"}]},
               "spec": template["spec"]}
    assert observe_legacy_pod(job_pod) is None
    assert not _selector_matches(POD_SELECTOR, job_pod["metadata"]["labels"])
    unlabelled_owner = copy.deepcopy(job_pod)
    del unlabelled_owner["metadata"]["labels"]["the0.dev/schedule-id"]
    assert observe_legacy_pod(unlabelled_owner) is None  # owned by a Job: never a live bot
    our_pod = {"metadata": {"name": "bot-abc", "uid": "u", "labels": {
        "managed-by": "the0-bot-controller", "bot-id": "abc", "the0.dev/managed-by": "x",
        "the0.dev/bot-id": "abc"}, "annotations": {"the0.dev/bot-id": "abc"}}}
    assert observe_legacy_pod(our_pod) is None
    assert not _selector_matches(POD_SELECTOR, our_pod["metadata"]["labels"])


def test_an_original_cronjob_is_recognised_also_when_its_name_was_cut() -> None:
    for bot_id in ("s1", "s" * 60):
        raw = with_uid(legacy_cronjob(bot_doc(bot_id, schedule="0 0 3 * * *"), namespace=NS,
                                      minio=MINIO))
        assert raw["spec"]["schedule"] == "0 3 * * *"  # 6 fields → seconds stripped
        seen = observe_legacy_cronjob(raw)
        assert isinstance(seen, ObservedPod) and seen.legacy
        assert (seen.bot_id, seen.name) == (bot_id, go_cronjob_name(bot_id))
        assert _selector_matches(CRONJOB_SELECTOR, raw["metadata"]["labels"])
    renamed = with_uid(legacy_cronjob(bot_doc("s1", schedule="0 3 * * *"), namespace=NS,
                                      minio=MINIO))
    renamed["metadata"]["name"] = "schedule-s2"
    assert isinstance(observe_legacy_cronjob(renamed), ForeignObject)


def test_a_job_of_an_original_cronjob_is_owned_by_it() -> None:
    cronjob = legacy_cronjob(bot_doc("s1", schedule="0 3 * * *"), namespace=NS, minio=MINIO)
    job = job_from_cronjob(cronjob, uid="cj-uid")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["blockOwnerDeletion"]) == ("CronJob", "cj-uid", True)


# --- what a task reads by name ------------------------------------------------------------------


def _named(raw: dict[str, Any], bot_id: str) -> ObservedPod | ForeignObject:
    return observe_named(raw, BotId(bot_id), managed_by="the0-bot-controller",
                         legacy=observe_legacy_pod)


def test_a_get_of_bot_id_returning_the_originals_pod_is_legacy_never_ours() -> None:
    raw = with_uid(legacy_pod(bot_doc("abc"), namespace=NS, minio=MINIO))
    seen = _named(raw, "abc")
    assert isinstance(seen, ObservedPod) and seen.legacy
    # Even with the0.dev/bot-id copied into an annotation (our key for the real id).
    raw["metadata"]["annotations"]["the0.dev/bot-id"] = "abc"
    seen = _named(raw, "abc")
    assert isinstance(seen, ObservedPod) and seen.legacy


def test_a_get_returning_what_is_not_this_bots_is_foreign() -> None:
    theirs = with_uid(legacy_pod(bot_doc("abc"), namespace=NS, minio=MINIO))
    theirs["metadata"]["labels"]["the0.dev/bot-id"] = "zzz"
    stranger = {"metadata": {"name": "bot-abc", "uid": "u-2", "labels": {"app": "nginx"}}}
    other_ours = {"metadata": {"name": "bot-abc", "uid": "u-3", "labels": {
        "managed-by": "the0-bot-controller"}, "annotations": {"the0.dev/bot-id": "zzz"}}}
    for raw, claimed, why in (
            (theirs, "zzz", "its name is not the one the0's original runtime gives its "
                            "labelled id 'zzz'"),
            (stranger, "", "neither ours nor the0's original runtime's"),
            (other_ours, "zzz", "it is bot 'zzz''s")):
        seen = _named(raw, "abc")
        assert seen == ForeignObject(name="bot-abc", claimed_id=claimed,
                                     uid=raw["metadata"]["uid"], why=why), raw


def test_a_get_returning_our_own_pod_is_ours() -> None:
    raw = {"metadata": {"name": "bot-abc", "uid": "u", "labels": {
        "managed-by": "the0-bot-controller", "bot-id": "abc"},
        "annotations": {"the0.dev/bot-id": "abc", "the0.dev/config-hash": HASH}}}
    seen = _named(raw, "abc")
    assert isinstance(seen, ObservedPod) and not seen.legacy and seen.config_hash == HASH


def test_partition_splits_and_drops_nothing_else() -> None:
    a, f = legacy("a"), foreign("x")
    assert partition([a, None, f]) == ([a], [f])


# --- statuses ------------------------------------------------------------------------------------


def test_statuses_say_original_runtime_and_name_taken_but_never_hide_invalid() -> None:
    statuses = {bot: {"id": bot, "phase": phase, "reason": "", "message": ""}
                for bot, phase in (("old", "Running"), ("blocked", "Creating"),
                                   ("bad", "Invalid"), ("fine", "Running"))}
    note_cutover(statuses, objects=[legacy("old"), legacy("bad"), ours("fine")],
                 foreign=[foreign("bot-blocked", claimed="q")],
                 desired=desired("old", "blocked", "fine"))
    assert (statuses["old"]["reason"], statuses["old"]["message"]) == (
        REASON_LEGACY, "bot-old was made by the0's original runtime; this controller replaces "
                       "or deletes it")
    assert (statuses["blocked"]["reason"], statuses["blocked"]["message"]) == (
        REASON_NAME_TAKEN, "bot-blocked is held by an object that is not this bot's (test); "
                           "nothing is created until it is gone")
    assert statuses["bad"]["reason"] == "" and statuses["fine"]["reason"] == ""


def test_a_bots_name_held_by_another_bots_object_names_that_bot() -> None:
    statuses = {bot: {"id": bot, "phase": "Creating", "reason": "", "message": ""}
                for bot in ("mine", "theirs")}
    note_cutover(statuses, objects=[ours("theirs", name="bot-mine")], foreign=[],
                 desired=desired("mine"))
    assert (statuses["mine"]["reason"], statuses["mine"]["message"]) == (
        REASON_NAME_TAKEN, "bot-mine is held by an object that is not this bot's (it is bot "
                           "'theirs''s); nothing is created until it is gone")
    assert statuses["theirs"]["reason"] == ""


def test_a_bot_whose_name_is_held_says_so_even_while_backing_off() -> None:
    backoff = {BotId("mine"): Backoff(failures=2, not_before=NOW + 60)}
    result = make_plan(desired("mine"), [], strangers=[foreign("bot-mine")], backoff=backoff)
    assert (result.name_taken, result.backing_off) == ((BotId("mine"),), ())
