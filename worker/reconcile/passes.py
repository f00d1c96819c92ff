"""The reconcile pass, written once for both kinds of bot (live → Pods, scheduled → CronJobs).

    1. take the pass lock (one pass per kind at a time, across every worker);
    2. read the desired documents (Mongo), the actual objects (Kubernetes) and the memo of
       what our status documents hold, all before any write — a failed read raises
       ReadFailed and the pass ends with nothing sent or written;
    3. parse the documents into desired state (pure, memoized per document);
    4. plan (pure) — plus the kind's own actions;
    5. enqueue one per-bot task per action, skipping bots with an action in flight — first,
       while the plan is fresh;
    6. record: status documents that changed (bounded), crash backoffs that may be reset —
       the memo rebuilt from the status documents first if Redis lost it;
    7. upkeep of the kind (bounded): re-sign the presigned URLs of running pods;
    8. report: the pass record and metrics (telemetry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from worker import keys
from worker.core.bot import BotId
from worker.core.census import census
from worker.core.desired import desired_state
from worker.core.metrics import PLANNED_ACTIONS
from worker.core.planner import Action, ActionKind, Plan, plan, with_extra_actions
from worker.core.resources import WARNING_REASON as RESOURCES_IGNORED
from worker.core.status import with_warnings
from worker.reconcile.kind import Kind, Observation
from worker.reconcile.statuses import record_statuses, stored_fingerprints
from worker.runtime import Runtime
from worker.telemetry import ACTION_KINDS, record_pass

log = logging.getLogger("the0.reconcile")

# `enqueue(action, as_of)` sends one per-bot task; `as_of` (epoch s) is when the pass's reads
# started (the task reads its bot afresh: it is for the log and the message's reader).
Enqueue = Callable[[Action, float], None]


@dataclass
class PassReport:
    skipped: bool = False
    duration_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    enqueued: int = 0
    already_in_flight: int = 0
    status_writes: int = 0
    urls_resigned: int = 0
    invalid: int = 0
    unidentifiable: int = 0
    foreign: int = 0  # objects that are no bot's as labelled (left alone, reported)
    guard_message: str = ""
    plan: Plan | None = None
    bots: dict[str, int] = field(default_factory=dict)  # bots by state (worker.core.census)
    steps_s: dict[str, float] = field(default_factory=dict)  # seconds per step (read, plan, …)

    def summary(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "duration_s": round(self.duration_s, 3),
                "counts": self.counts, "enqueued": self.enqueued,
                "already_in_flight": self.already_in_flight,
                "status_writes": self.status_writes, "urls_resigned": self.urls_resigned,
                "invalid": self.invalid,
                "unidentifiable": self.unidentifiable, "foreign": self.foreign,
                "guard": self.guard_message,
                "bots": self.bots, "steps_s": self.steps_s}


def run_pass(rt: Runtime, kind: Kind, enqueue: Enqueue) -> PassReport:
    started = time.monotonic()
    settings = rt.settings
    bot_kind = kind.bot_kind
    # 1. one pass at a time
    lock_ttl = max(60.0, 4 * settings.RECONCILE_INTERVAL)
    with rt.redis.hold(keys.reconcile_lock(bot_kind.value), ttl=lock_ttl) as held:
        if held is None:
            log.info("%s reconcile skipped: the previous pass is still running", bot_kind.value)
            return PassReport(skipped=True)
        steps: dict[str, float] = {}
        mark = time.monotonic()

        def step_done(name: str) -> None:
            nonlocal mark
            steps[name] = round(time.monotonic() - mark, 3)
            mark = time.monotonic()

        # 2.-3. read desired and actual, parse; meanwhile the memo of what our status
        # documents hold (rebuilt at step 6 if Redis lost it)
        as_of = rt.clock()
        with ThreadPoolExecutor(max_workers=1) as pool:
            stored_memo = pool.submit(rt.redis.load_status_memo, bot_kind.value)
            observation = observe(rt, kind)
            memo, memo_complete = stored_memo.result()
        state = observation.state
        warnings: dict[str, tuple[str, ...]] = {
            bot_id: bot.warnings for bot_id, bot in state.bots.items() if bot.warnings}
        step_done("read")
        # 4. plan
        now = rt.clock()
        the_plan = plan_pass(rt, kind, observation, now=now)
        if the_plan.guard_tripped:
            log.error("%s", the_plan.guard_message)
        report_cutover(kind, the_plan)
        report = PassReport(plan=the_plan, counts=the_plan.counts(), invalid=len(state.invalid),
                            unidentifiable=state.unidentifiable,
                            foreign=len(the_plan.foreign),
                            guard_message=the_plan.guard_message,
                            bots=census(desired=state.desired.keys(), objects=observation.objects,
                                        backoff=observation.backoff, invalid=len(state.invalid),
                                        disabled=len(state.disabled), now=now,
                                        warned=len(warnings)))
        step_done("plan")
        # 5. enqueue
        report.enqueued, report.already_in_flight = enqueue_actions(
            rt, kind, the_plan.actions, lambda action: enqueue(action, as_of))
        step_done("enqueue")
        # 6. record
        stored = stored_fingerprints(rt, bot_kind, memo, memo_complete)
        report.status_writes = record_statuses(
            rt, bot_kind, with_warnings(kind.statuses(observation, now=now), warnings,
                                        reason=RESOURCES_IGNORED),
            stored=stored, now=now)
        reset_recovered_backoff(rt, kind, observation, now=now)
        step_done("record")
        # 7. upkeep
        report.urls_resigned = kind.upkeep(observation, now=now)
        step_done("upkeep")
        report.steps_s = steps
    # 8. report
    report.duration_s = time.monotonic() - started
    for action, count in report.counts.items():
        # Action kinds telemetry does not count itself (a takeover) are counted here.
        if count and action in _ACTION_NAMES and action not in ACTION_KINDS:
            rt.metrics.inc(PLANNED_ACTIONS, float(count), kind=bot_kind.value, action=action)
    record_pass(rt, bot_kind.value, ok=True, duration_s=report.duration_s,
                summary=report.summary())
    log.info("%s reconcile done: %s", bot_kind.value, report.summary())
    return report


def observe(rt: Runtime, kind: Kind) -> Observation:
    """Steps 2 and 3: the desired documents and the actual objects (each waits on another
    server: both at once), parsed. Reads only; ReadFailed rather than a partial answer."""
    settings, bot_kind = rt.settings, kind.bot_kind
    memo = rt.parse_memo(bot_kind)
    with ThreadPoolExecutor(max_workers=1) as pool:
        actual_future = pool.submit(kind.observe)
        # Parsed as they are read: the documents are never all in memory at once.
        state = desired_state(rt.store(bot_kind).iter_all(), kind=bot_kind,
                              template=settings.pod_template,
                              resources=settings.resource_policy, parse=memo)
        actual = actual_future.result()
    memo.retain(state.known)
    return Observation(state=state, objects=actual.objects,
                       backoff=rt.redis.load_backoff(bot_kind.value), detail=actual.detail,
                       foreign=actual.foreign)


def plan_pass(rt: Runtime, kind: Kind, observation: Observation, *, now: float) -> Plan:
    """Step 4 (pure but for the kind's extra actions' reading of the observation)."""
    settings = rt.settings
    the_plan = plan(desired=observation.state.desired, actual=observation.objects,
                    backoff=observation.backoff, now=now,
                    max_delete_fraction=settings.MAX_DELETE_FRACTION,
                    max_delete_min=settings.MAX_DELETE_MIN,
                    untouchable=observation.state.invalid.keys(),
                    foreign=observation.foreign)
    return with_extra_actions(the_plan, kind.extra_actions(observation, the_plan, now=now))


def report_cutover(kind: Kind, the_plan: Plan) -> None:
    """Warns about what the cut-over leaves to an operator: objects that are no bot's as
    labelled (never touched), and bots not created because such an object holds their name."""
    what = kind.object_kind[1]
    if the_plan.foreign:
        shown = ", ".join(f"{o.name} ({o.why})" for o in the_plan.foreign[:5])
        log.warning("%s: %d %s object(s) are no bot's as labelled and are left alone: %s%s",
                    kind.bot_kind.value, len(the_plan.foreign), what, shown,
                    ", …" if len(the_plan.foreign) > 5 else "")
    if the_plan.name_taken:
        log.warning("%s: %d bot(s) not created, their %s name is held by an object that is "
                    "not theirs: %s%s", kind.bot_kind.value, len(the_plan.name_taken), what,
                    ", ".join(repr(b) for b in the_plan.name_taken[:5]),
                    ", …" if len(the_plan.name_taken) > 5 else "")


def enqueue_actions(rt: Runtime, kind: Kind, actions: tuple[Action, ...],
                    send: Callable[[Action], None]) -> tuple[int, int]:
    """Sends one task per bot not already in flight; (sent, already in flight). A send that
    fails gives its bot's in-flight mark back, so the next pass plans it again."""
    by_id = {action.bot_id: action for action in actions}
    claimed = rt.redis.claim_inflight(kind.bot_kind.value, list(by_id),
                                      ttl=rt.settings.INFLIGHT_TTL)
    for index, bot_id in enumerate(claimed):
        try:
            send(on_the_wire(by_id[BotId(bot_id)]))
        except Exception:
            # This bot's mark and those of every bot not sent yet: none of them is queued.
            for unsent in claimed[index:]:
                rt.redis.release_inflight(kind.bot_kind.value, unsent)
            raise
    return len(claimed), len(by_id) - len(claimed)


def on_the_wire(action: Action) -> Action:
    """The action as a task carries it. A takeover travels as the kind's replace task
    (`bots.replace`, `schedules.update`): the task plans again from what it reads and finds
    the takeover itself, and a worker of the previous release (a rolling upgrade) knows that
    task name. The plan, the CLI and the metrics of planned actions still say `takeover`."""
    if action.kind is ActionKind.TAKEOVER:
        return replace(action, kind=ActionKind.REPLACE)
    return action


_ACTION_NAMES = frozenset(kind.value for kind in ActionKind)


def reset_recovered_backoff(rt: Runtime, kind: Kind, observation: Observation, *,
                            now: float) -> None:
    """A bot whose object has been healthy for CRASH_BACKOFF_RESET since its backoff ended
    starts again from the first step."""
    healthy = kind.healthy(observation)
    reset_after = rt.settings.CRASH_BACKOFF_RESET
    recovered = [bot_id for bot_id, backoff in observation.backoff.items()
                 if bot_id in healthy and now - backoff.not_before > reset_after]
    rt.redis.clear_backoff(kind.bot_kind.value, recovered)
