"""A kind of bot with its pass and its converge: what tasks, the CLI and tests hold."""

from __future__ import annotations

from worker.core.planner import Plan
from worker.reconcile.converge import Call, converge
from worker.reconcile.cronjobs import CronJobKind
from worker.reconcile.kind import Kind, Observation
from worker.reconcile.passes import Enqueue, PassReport, observe, plan_pass, run_pass
from worker.reconcile.pods import PodKind
from worker.runtime import Runtime


class Controller:
    def __init__(self, rt: Runtime, kind: Kind) -> None:
        self.rt = rt
        self.kind = kind

    def observe(self) -> Observation:
        """What a pass would read (nothing is written)."""
        return observe(self.rt, self.kind)

    def plan(self, observation: Observation, *, now: float) -> Plan:
        """What a pass would do with that observation (nothing is done)."""
        return plan_pass(self.rt, self.kind, observation, now=now)

    def reconcile(self, *, enqueue: Enqueue) -> PassReport:
        """One full pass (see passes.py)."""
        return run_pass(self.rt, self.kind, enqueue)

    def converge(self, bot_id: str, *, intent: str, pod: str | None = None,
                 call: Call | None = None) -> str:
        """One bot, now (see converge.py). `pod`: the object the pass planned for (a shorthand
        for `call`, which says how a task calls it)."""
        return converge(self.rt, self.kind, bot_id, intent=intent,
                        call=call or Call(planned_object=pod))


class LiveBotController(Controller):
    """Live bots → Pods."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt, PodKind(rt))


class ScheduleController(Controller):
    """Scheduled bots → CronJobs."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt, CronJobKind(rt))
