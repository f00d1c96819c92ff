"""One bot, converged: the per-bot task of both kinds, written once.

    1. take the bot's lock (short, renewed while waiting: a killed worker blocks it briefly);
    2. read the bot's documents (Mongo, by `id`, now) and its objects (Kubernetes, by name;
       a bot that wants an object and has none may take "none" from the watched cache, and
       reads again by name if its create then finds the name taken);
    3. plan with the pass's rules (one bot: no mass-deletion guard) plus the kind's own;
    4. an object of the bot is still terminating: if the bot wants an object, wait until it
       is gone, then plan again (a task waits briefly, then hands its thread back and
       continues later: waiting.py); if it wants none, nothing is left to do;
    5. act — one action; bad input found while acting (InvalidBot) or a refusal
       (PermanentError) backs the bot off and is recorded for its status; a temporary error
       propagates (the task retries);
    6. record the outcome (its error, or none) for the next pass's status.

Ids in, re-read, act: a duplicated, late or concurrent task does the right thing for the world
as it is now. Never two pods for one bot: objects have a fixed name per bot, nothing is created
beside a terminating object, and a replace waits until the old pod is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker import keys
from worker.adapters.redis import Held
from worker.core.bot import BotId, BotKind
from worker.core.desired import desired_state
from worker.core.errors import InvalidBot, PermanentError, TemporaryError
from worker.core.planner import (
    REASON_REMOVED,
    Action,
    ActionKind,
    ObservedPod,
    next_backoff,
    plan,
    with_extra_actions,
)
from worker.core.podstatus import PodHealth
from worker.reconcile.kind import Kind, Observation, StaleObservation
from worker.reconcile.statuses import record_outcome
from worker.reconcile.waiting import Resume, StillTerminating, wait_until_gone
from worker.runtime import Runtime

log = logging.getLogger("the0.reconcile")


class BotBusy(TemporaryError):
    """Another task holds this bot's lock; try again shortly."""


@dataclass(frozen=True)
class Call:
    """How converge is called, besides the bot. `planned_object`: the object the pass planned
    for, when it is not the bot's own fixed name (an extra or legacy one to delete).
    `inline_wait`: how long to wait for a terminating object before raising StillTerminating
    (a task, which then continues later); None waits the whole POD_GONE_TIMEOUT inline.
    `resumes`: the replace an earlier run of the task began (waiting.py)."""

    planned_object: str | None = None
    inline_wait: float | None = None
    resumes: Resume | None = None


class _Steps:
    """The helpers a kind uses while it acts on one bot (the `Steps` protocol)."""

    def __init__(self, rt: Runtime, kind: Kind, held: Held, observation: Observation,
                 bot_id: BotId, call: Call) -> None:
        self._rt, self._kind, self._held = rt, kind, held
        self._observation, self._bot_id, self._call = observation, bot_id, call

    @property
    def resumes(self) -> Resume | None:
        return self._call.resumes

    def renew_lock(self) -> None:
        self._held.renew()

    def await_gone(self, objects: Sequence[ObservedPod], *, resumes: Resume | None) -> None:
        await_gone(self._rt, self._kind, self._held, objects, self._call.inline_wait,
                   resumes=resumes)

    def bump_backoff(self) -> None:
        bump_backoff(self._rt, self._kind, self._observation, self._bot_id)

    def event(self, involved: dict[str, Any], reason: str, message: str,
              event_type: str = "Normal") -> None:
        api_version, object_kind = self._kind.object_kind
        self._rt.kube.record_event(involved={"apiVersion": api_version, "kind": object_kind,
                                             **involved}, reason=reason, message=message,
                                   event_type=event_type, component=self._kind.component)


def converge(rt: Runtime, kind: Kind, bot_id: str, *, intent: str, call: Call = Call()) -> str:
    """Returns what it did ("created", "deleted", "replaced", "updated", "nothing",
    "backing off", "failed: <reason>", …); StillTerminating when `call.inline_wait` ran out
    while an old object terminates (see Call)."""
    settings, bot_kind = rt.settings, kind.bot_kind
    # 1. the bot's lock
    with rt.redis.hold(keys.lock(bot_kind.value, bot_id), ttl=settings.BOT_LOCK_TTL) as held:
        if held is None:
            raise BotBusy(f"another task is acting on {bot_kind.value} bot {bot_id!r}")
        the_id = BotId(bot_id)
        names = kind.object_names(the_id, call.planned_object)
        trust_cache = True
        for _attempt in range(3):
            # 2. read
            observation = observe_one(rt, kind, the_id, names, trust_cache=trust_cache)
            # 3. plan
            now = rt.clock()
            the_plan = plan(desired=observation.state.desired, actual=observation.objects,
                            backoff=observation.backoff, now=now, max_delete_fraction=1.0,
                            max_delete_min=1, untouchable=observation.state.invalid.keys(),
                            foreign=observation.foreign)
            the_plan = with_extra_actions(
                the_plan, kind.extra_actions(observation, the_plan, now=now))
            # 4. wait for a terminating object, then plan again (once) — only if something
            # is to be created after it: a bot removed or disabled has nothing to wait for
            # (the chaos run's deletes re-sent by a pass spent ~260 continuations on that).
            # An event that wants the bot back queues its own task, which waits.
            if the_plan.waiting and the_id not in observation.state.desired:
                record_outcome(rt, bot_kind, the_id, last_error=None)
                return "nothing"
            if the_plan.waiting:
                await_gone(rt, kind, held, [o for o in observation.objects
                                            if o.assessment.health is PodHealth.TERMINATING],
                           call.inline_wait, resumes=call.resumes)
                continue
            if the_plan.name_taken:
                return name_taken(rt, kind, observation, the_id)
            if not the_plan.actions:
                record_outcome(rt, bot_kind, the_id, last_error=None)
                return "backing off" if the_plan.backing_off else "nothing"
            # 5. act (a removal only with a token of the global deletion budget)
            action = the_plan.actions[0]
            if is_removal(action) and not take_deletion_token(rt, bot_kind, the_id):
                return "held: deletion budget spent"
            if action.kind is not ActionKind.CREATE and intent == "create":
                log.info("%s bot %r: queued as create, now needs %s", bot_kind.value, bot_id,
                         action.kind.value)
            steps = _Steps(rt, kind, held, observation, the_id, call)
            try:
                outcome = kind.act(action, observation, steps)
            except StaleObservation as stale:
                log.info("%s bot %r: %s; reading afresh", bot_kind.value, bot_id, stale)
                trust_cache = False
                continue
            except InvalidBot as error:
                failed(rt, kind, action, observation, steps, str(error))
                return f"failed: {error.reason}"
            except PermanentError as error:
                failed(rt, kind, action, observation, steps, str(error))
                raise
            # 6. record
            record_outcome(rt, bot_kind, the_id, last_error="")
            return outcome
        return "waiting for a terminating object"


def await_gone(rt: Runtime, kind: Kind, held: Held, objects: Sequence[ObservedPod],
               inline_wait: float | None, *, resumes: Resume | None) -> None:
    """Returns once `objects` are gone; see Steps.await_gone."""
    timeout = rt.settings.POD_GONE_TIMEOUT
    if inline_wait is not None:
        timeout = min(inline_wait, timeout)
    if wait_until_gone(kind.get_object, objects, held.renew, timeout=timeout):
        return
    what = f"{kind.object_kind[1]} {', '.join(o.name for o in objects)}"
    if inline_wait is None:
        raise TemporaryError(f"{what} still terminating after {timeout:.0f} s")
    raise StillTerminating(f"{what} still terminating: continued once it is gone",
                           resumes=resumes)


def observe_one(rt: Runtime, kind: Kind, bot_id: BotId, names: list[str], *,
                trust_cache: bool) -> Observation:
    """The bot's documents, then its objects: by GET, or — when the bot wants an object and
    `trust_cache` — "none" from the watched cache (a GET per create, beside its two writes,
    in a cold start). Only a create follows from that "none", and a stale one ends in a 409
    and a fresh read (StaleObservation), never a second object. A bot not wanted is always
    read by GET: its delete must see the pod as it is now."""
    settings, bot_kind = rt.settings, kind.bot_kind
    docs = rt.store(bot_kind).load_one(bot_id)
    state = desired_state(docs, kind=bot_kind, template=settings.pod_template,
                          resources=settings.resource_policy,
                          parse=rt.parse_memo(bot_kind))
    actual = kind.observe_one(bot_id, object_names=names,
                              trust_cache=trust_cache and bot_id in state.desired)
    backoff = rt.redis.get_backoff(bot_kind.value, bot_id)
    return Observation(state=state, objects=actual.objects,
                       backoff={bot_id: backoff} if backoff else {}, detail=actual.detail,
                       foreign=actual.foreign, from_cache=actual.from_cache)


def is_removal(action: Action) -> bool:
    """A deletion of a bot that should not run (what the mass-deletion guard counts), not the
    first half of a replace."""
    return action.kind is ActionKind.DELETE and action.reason == REASON_REMOVED


def take_deletion_token(rt: Runtime, bot_kind: BotKind, bot_id: BotId) -> bool:
    """The global deletion budget, shared by every path to a removal (passes, platform events,
    single-bot tasks): a runaway — a wiped collection, a flood of delete events — removes at
    most DELETE_BUDGET bots at once, then DELETE_BUDGET_PER_MINUTE. Held: logged, counted
    (outcome "held"), recorded for /status; the next pass plans it again."""
    s = rt.settings
    if rt.redis.take_delete_token(per_minute=s.DELETE_BUDGET_PER_MINUTE, burst=s.DELETE_BUDGET):
        return True
    log.warning("%s bot %r: removal held: the deletion budget (DELETE_BUDGET %d, then %g a "
                "minute) is spent", bot_kind.value, bot_id, s.DELETE_BUDGET,
                s.DELETE_BUDGET_PER_MINUTE)
    rt.redis.note_deletion_held(bot_kind.value, bot_id, now=rt.clock(), ttl=3600)
    return False


def bump_backoff(rt: Runtime, kind: Kind, observation: Observation, bot_id: BotId) -> None:
    s = rt.settings
    backoff = next_backoff(observation.backoff.get(bot_id), now=rt.clock(),
                           base_s=s.CRASH_BACKOFF_BASE, cap_s=s.CRASH_BACKOFF_CAP,
                           jitter=rt.jitter())
    rt.redis.save_backoff(kind.bot_kind.value, bot_id, backoff)
    observation.backoff[bot_id] = backoff


def name_taken(rt: Runtime, kind: Kind, observation: Observation, bot_id: BotId) -> str:
    """The bot's object name is held by an object that is not its own (the original runtime's
    object of another bot, one whose labels and name disagree, a stranger's): it is never
    adopted or deleted, so nothing is created. Backed off (a pass that cannot see the holder
    plans a create again) and recorded for the bot's status."""
    want = observation.state.desired[bot_id]
    holder = next((o for o in observation.foreign if o.name == want.pod_name), None)
    why = holder.why if holder else "another bot's object"
    message = (f"{kind.object_kind[1]} name {want.pod_name} is held by an object that is not "
               f"this bot's ({why}); not created")
    log.warning("%s bot %r: %s", kind.bot_kind.value, bot_id, message)
    bump_backoff(rt, kind, observation, bot_id)
    record_outcome(rt, kind.bot_kind, bot_id, last_error=message)
    return "failed: name_taken"


def failed(rt: Runtime, kind: Kind, action: Action, observation: Observation, steps: _Steps,
           message: str) -> None:
    """One bot's action failed for good (until its input changes): back it off, say why in
    an Event and in its status. Never a config value in `message` (errors carry none)."""
    log.warning("%s bot %r: %s failed: %s", kind.bot_kind.value, action.bot_id,
                action.kind.value, message)
    bump_backoff(rt, kind, observation, action.bot_id)
    steps.event({"metadata": {"name": action.pod_name}}, "Failed",
                f"{action.kind.value} failed: {message}", event_type="Warning")
    record_outcome(rt, kind.bot_kind, action.bot_id, last_error=message)
