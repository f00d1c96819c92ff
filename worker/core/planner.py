"""The reconcile planner: desired bots + observed pods → the actions that make them agree.

Pure: no I/O, no clock (`now` is a parameter), no randomness (jitter is a parameter). The plan
is plain data that the shell turns into per-bot tasks; the same inputs always give the same plan.

Rules, at most ONE action per bot per plan (the next pass picks up the rest):
- a terminating pod is waited for, never deleted again, and nothing is created beside it;
- several live pods for one bot: delete one extra ("duplicate pod"), keep the best (ours
  before the original runtime's);
- a pod whose bot is not desired: DELETE (ours or the original runtime's alike);
  a desired bot without a pod: CREATE;
- a pod of the0's original runtime (cut-over, `legacy`) of a desired bot: TAKEOVER (delete it,
  wait until it is gone, create ours) — never adopted, never updated;
- a pod built from other inputs (config hash differs): REPLACE (delete, wait until gone, create);
- a BROKEN pod: RECREATE, and a missing pod or a takeover: unless the bot's backoff (set when
  its pod broke or its create failed) has not expired yet;
- an object that is no bot's as labelled (`ForeignObject`) is never touched, and a bot whose
  object name another bot's or a foreign object holds is not created ("name taken", reported).
A pass that would delete an unusual share of the pods holds all those deletions back instead.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from worker.core.bot import BotId
from worker.core.naming import ANNOTATION_BOT_ID, ANNOTATION_CONFIG_HASH, LABEL_BOT_ID
from worker.core.podstatus import PodAssessment, PodHealth, assess_pod

REASON_MISSING = "missing"
REASON_REMOVED = "disabled or removed"
REASON_DUPLICATE = "duplicate pod"
REASON_TAKEOVER = "made by the0's original runtime"
_HASH_SHOWN = 8


class ActionKind(StrEnum):
    CREATE = "create"
    DELETE = "delete"
    REPLACE = "replace"
    RECREATE = "recreate"
    TAKEOVER = "takeover"  # delete the original runtime's object, wait until gone, create ours


@dataclass(frozen=True, kw_only=True)
class ObservedPod:
    """The planner's view of one existing pod."""

    name: str
    bot_id: BotId
    config_hash: str  # "" when the pod has no hash annotation
    assessment: PodAssessment
    uid: str
    created_at: float = 0.0  # metadata.creationTimestamp, epoch s (0: unknown)
    # Made by the0's original runtime (worker/core/legacy.py): deleted or taken over, never
    # adopted; its config hash is the original's, so it is left empty here.
    legacy: bool = False


@dataclass(frozen=True, kw_only=True)
class ForeignObject:
    """An object that carries a bot's labels or holds a bot's object name but is not that
    bot's: its labelled id and its name disagree, or it is not ours nor the original
    runtime's. Never adopted, updated or deleted; reported."""

    name: str
    claimed_id: str  # the bot id its labels name ("" when none)
    uid: str
    why: str


@dataclass(frozen=True, kw_only=True)
class DesiredBot:
    """What the spec generator says the bot's pod must be."""

    bot_id: BotId
    config_hash: str
    pod_name: str


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Recreate backoff of one bot: `failures` so far; no recreate before `not_before` (epoch s)."""

    failures: int
    not_before: float


@dataclass(frozen=True, kw_only=True)
class Action:
    """One thing to do for one bot.

    `pod_name` is the pod acted on: the new pod for CREATE, the existing pod for DELETE, REPLACE
    and RECREATE (the task derives the new pod's name from the bot id).
    """

    kind: ActionKind
    bot_id: BotId
    pod_name: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    actions: tuple[Action, ...]
    waiting: tuple[BotId, ...]  # bots whose terminating pod must be gone first
    backing_off: tuple[BotId, ...]  # bots with a broken pod, recreate not due yet
    blocked_deletions: tuple[Action, ...]  # held back by the mass-deletion guard
    guard_tripped: bool
    guard_message: str
    # Desired bots not created because an object that is not theirs holds their name.
    name_taken: tuple[BotId, ...] = ()
    foreign: tuple[ForeignObject, ...] = ()  # never touched; reported

    def counts(self) -> dict[str, int]:
        """Number of actions per kind, then of waiting, backing-off, blocked and name-taken
        bots."""
        counts = {kind.value: 0 for kind in ActionKind}
        for action in self.actions:
            counts[action.kind.value] += 1
        counts["waiting"] = len(self.waiting)
        counts["backing_off"] = len(self.backing_off)
        counts["blocked_deletions"] = len(self.blocked_deletions)
        counts["name_taken"] = len(self.name_taken)
        return counts


def observed_pod(pod: Mapping[str, Any]) -> ObservedPod | None:
    """Build the planner's view of one of OUR pods (or CronJobs); None if it names no bot
    (then it is left alone).

    The bot id comes from our annotation, else from our `bot-id` label (the raw id when it is a
    valid label value). the0's original runtime carries `the0.dev/bot-id` as a LABEL, not as
    this annotation: its objects are recognised by worker/core/legacy.py, never here.
    """
    metadata = _mapping(pod.get("metadata"))
    annotations = _mapping(metadata.get("annotations"))
    bot_id = annotations.get(ANNOTATION_BOT_ID) or _mapping(metadata.get("labels")).get(
        LABEL_BOT_ID
    )
    name = metadata.get("name")
    if not (isinstance(bot_id, str) and bot_id and isinstance(name, str) and name):
        return None
    config_hash = annotations.get(ANNOTATION_CONFIG_HASH)
    uid = metadata.get("uid")
    return ObservedPod(
        name=name,
        bot_id=BotId(bot_id),
        config_hash=config_hash if isinstance(config_hash, str) else "",
        assessment=assess_pod(pod),
        uid=uid if isinstance(uid, str) else "",
        created_at=_epoch(metadata.get("creationTimestamp")),
    )


def _epoch(timestamp: object) -> float:
    """An RFC 3339 time as the API server writes it (e.g. 2026-11-30T17:13:30Z); 0 if not."""
    if not isinstance(timestamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def next_backoff(
    previous: Backoff | None, *, now: float, base_s: float, cap_s: float, jitter: float
) -> Backoff:
    """The backoff after one more failure: base·2^failures, capped, spread by `jitter` ∈ [0, 1).

    "Equal jitter": the delay lands in [capped/2, capped), so it never exceeds the cap and
    never collapses to zero.
    """
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    failures = previous.failures if previous else 0
    # Bounding the exponent keeps the float finite; the cap applies long before anyway.
    capped = min(cap_s, base_s * 2.0 ** min(failures, 64))
    delay = capped / 2 * (1 + jitter)
    return Backoff(failures=failures + 1, not_before=now + delay)


def plan(
    *,
    desired: Mapping[BotId, DesiredBot],
    actual: Sequence[ObservedPod],
    backoff: Mapping[BotId, Backoff],
    now: float,
    max_delete_fraction: float,
    max_delete_min: int,
    untouchable: Collection[BotId] = frozenset(),
    foreign: Sequence[ForeignObject] = (),
) -> Plan:
    """Compare desired bots with observed pods; see the module docstring for the rules.

    `untouchable`: bots that exist and are enabled but whose document is invalid right now.
    Their pods are left exactly as they are (the last valid version keeps trading) until the
    document is fixed, disabled or removed: bad input never stops a running bot.
    `foreign`: objects that are no bot's as labelled; they only block the bot whose name they
    hold, and are carried into the plan to be reported.
    """
    pods_by_bot: dict[BotId, list[ObservedPod]] = {}
    holders: dict[str, BotId | ForeignObject] = {obj.name: obj for obj in foreign}
    for pod in actual:
        pods_by_bot.setdefault(pod.bot_id, []).append(pod)
        holders[pod.name] = pod.bot_id

    actions: list[Action] = []
    waiting: list[BotId] = []
    backing_off: list[BotId] = []
    name_taken: list[BotId] = []
    for bot_id in sorted(desired.keys() | pods_by_bot.keys()):
        if bot_id in untouchable and bot_id not in desired:
            continue
        want = desired.get(bot_id)
        decision = _decide(
            bot_id,
            want=want,
            pods=pods_by_bot.get(bot_id, []),
            backoff=backoff.get(bot_id),
            now=now,
        )
        if (want is not None and _leads_to_create(decision)
                and holders.get(want.pod_name, bot_id) != bot_id):
            # What it would do next creates our object under a name another object holds:
            # never delete the old one with no way to create ours; say why (not "backoff").
            decision = _Wait.NAME_TAKEN
        if decision is _Wait.TERMINATING:
            waiting.append(bot_id)
        elif decision is _Wait.BACKOFF:
            backing_off.append(bot_id)
        elif decision is _Wait.NAME_TAKEN:
            name_taken.append(bot_id)
        elif decision is not None:
            actions.append(decision)

    removals = [a for a in actions if a.kind is ActionKind.DELETE and a.reason == REASON_REMOVED]
    n_pods = sum(1 for pod in actual if pod.assessment.health is not PodHealth.TERMINATING)
    limit = max(max_delete_min, max_delete_fraction * n_pods)
    guard_tripped = len(removals) > limit
    guard_message = ""
    if guard_tripped:
        held = set(removals)
        actions = [action for action in actions if action not in held]
        guard_message = (
            f"mass-deletion guard: {len(removals)} of {n_pods} pods would be deleted, more than "
            f"the limit of {limit:g} (max of {max_delete_min} and {max_delete_fraction:g} * "
            f"{n_pods}); no deletions this pass"
        )
    return Plan(
        actions=tuple(actions),
        waiting=tuple(waiting),
        backing_off=tuple(backing_off),
        blocked_deletions=tuple(removals) if guard_tripped else (),
        guard_tripped=guard_tripped,
        guard_message=guard_message,
        name_taken=tuple(name_taken),
        foreign=tuple(sorted(foreign, key=lambda obj: obj.name)),
    )


def with_extra_actions(the_plan: Plan, extra: tuple[Action, ...]) -> Plan:
    """The plan with a kind's own actions for bots the planner has nothing for."""
    planned = {action.bot_id for action in the_plan.actions}
    added = tuple(action for action in extra if action.bot_id not in planned)
    if not added:
        return the_plan
    return replace(the_plan, actions=tuple(sorted(the_plan.actions + added,
                                                  key=lambda a: a.bot_id)))


class _Wait(Enum):
    TERMINATING = "terminating"
    BACKOFF = "backoff"
    NAME_TAKEN = "name taken"


# Actions that end with our object created under the bot's own name.
_CREATES_OURS = frozenset({ActionKind.CREATE, ActionKind.TAKEOVER, ActionKind.REPLACE,
                           ActionKind.RECREATE})


def _leads_to_create(decision: Action | _Wait | None) -> bool:
    """The decision creates our object now, or once its backoff ends."""
    if isinstance(decision, Action):
        return decision.kind in _CREATES_OURS
    return decision is _Wait.BACKOFF


def _decide(
    bot_id: BotId,
    *,
    want: DesiredBot | None,
    pods: list[ObservedPod],
    backoff: Backoff | None,
    now: float,
) -> Action | _Wait | None:
    """The one action for one bot, or why it waits, or None when it is as desired."""
    live = sorted(
        (p for p in pods if p.assessment.health is not PodHealth.TERMINATING), key=lambda p: p.name
    )
    if want is None:
        if live:
            return _action(ActionKind.DELETE, live[0], REASON_REMOVED)
        return _Wait.TERMINATING
    if len(live) > 1:
        keeper = min(live, key=lambda p: _keeper_rank(p, want))
        extra = next(p for p in live if p is not keeper)
        return _action(ActionKind.DELETE, extra, REASON_DUPLICATE)
    if len(live) < len(pods):
        return _Wait.TERMINATING  # never two pods for one bot: create nothing beside it
    if not live:
        if backoff is not None and backoff.not_before > now:
            return _Wait.BACKOFF  # its last create failed (e.g. code object missing)
        return Action(
            kind=ActionKind.CREATE, bot_id=bot_id, pod_name=want.pod_name, reason=REASON_MISSING
        )
    pod = live[0]
    if pod.legacy:
        if backoff is not None and backoff.not_before > now:
            return _Wait.BACKOFF  # its last takeover failed; the old pod keeps running
        return _action(ActionKind.TAKEOVER, pod, REASON_TAKEOVER)
    if pod.config_hash != want.config_hash:
        # A replace also cures a broken pod, and a fixed config must not wait for backoff.
        return _action(ActionKind.REPLACE, pod, _hash_change(pod, want))
    if pod.assessment.health is PodHealth.BROKEN:
        if backoff is not None and backoff.not_before > now:
            return _Wait.BACKOFF
        return _action(ActionKind.RECREATE, pod, pod.assessment.reason)
    return None


def _keeper_rank(pod: ObservedPod, want: DesiredBot
                 ) -> tuple[bool, bool, bool, bool, bool, str]:
    # False sorts first: ours, current inputs, then healthy, then running, then the expected
    # name.
    health = pod.assessment.health
    return (
        pod.legacy,
        pod.config_hash != want.config_hash,
        health is PodHealth.BROKEN,
        health is not PodHealth.RUNNING,
        pod.name != want.pod_name,
        pod.name,
    )


def _action(kind: ActionKind, pod: ObservedPod, reason: str) -> Action:
    return Action(kind=kind, bot_id=pod.bot_id, pod_name=pod.name, reason=reason)


def _hash_change(pod: ObservedPod, want: DesiredBot) -> str:
    old = pod.config_hash[:_HASH_SHOWN] or "none"
    return f"config changed {old}→{want.config_hash[:_HASH_SHOWN]}"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
