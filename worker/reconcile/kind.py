"""What differs between the two kinds of bot, behind one small protocol.

A live bot runs as a Pod (pods.py), a scheduled bot as a CronJob (cronjobs.py). The pass
(passes.py) and the per-bot converge (converge.py) are written once against `Kind`; a kind
keeps only what truly differs: how its objects are read, how an action is carried out (a Pod
is replaced by delete → wait until gone → create; a CronJob is updated in place), what its
status says, and its upkeep (re-signing the URLs of running pods; CronJobs get theirs through
an update the kind plans itself).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.core.bot import BotId, BotKind
from worker.core.desired import DesiredState
from worker.core.errors import TemporaryError
from worker.core.planner import Action, Backoff, ForeignObject, ObservedPod, Plan
from worker.reconcile.waiting import Resume


@dataclass(frozen=True)
class Observation:
    """Everything one pass (or one converge) read, all before its first write."""

    state: DesiredState
    objects: list[ObservedPod]         # the planner's view of our Pods / CronJobs and of
                                       # the original runtime's (legacy=True)
    backoff: dict[BotId, Backoff]
    detail: Any = None                 # what the kind read besides (a CronJob's JSON, Jobs)
    foreign: tuple[ForeignObject, ...] = ()  # no bot's as labelled: never touched, reported
    from_cache: bool = False           # "no object" taken from the watched cache (no GET)


@dataclass(frozen=True)
class Actual:
    """A kind's read of Kubernetes: the planner's view and the kind's own detail."""

    objects: list[ObservedPod]
    detail: Any = None
    foreign: tuple[ForeignObject, ...] = ()
    from_cache: bool = False


class StaleObservation(TemporaryError):
    """A create found its name taken although the watched cache said no object had it (the
    cache was behind, or the holder is not ours): converge reads the objects afresh and plans
    again. Never two objects: the API server refused the second."""


class Steps(Protocol):
    """What converge lends a kind while it acts on one bot."""

    @property
    def resumes(self) -> Resume | None:
        """The replace whose delete an earlier run of this task did (waiting.py): a create
        now is its second half, reported and announced as that replace."""

    def renew_lock(self) -> None:
        """Keep the bot's lock while waiting (a replace waits for the old pod)."""

    def await_gone(self, objects: Sequence[ObservedPod], *, resumes: Resume | None) -> None:
        """Returns once these objects are gone. Waits inline only as long as the caller
        allows (waiting.py), then raises StillTerminating carrying `resumes`; TemporaryError
        once POD_GONE_TIMEOUT has passed."""

    def bump_backoff(self) -> None:
        """The bot's object was broken and is being recreated: hold the next recreate back."""

    def event(self, involved: dict[str, Any], reason: str, message: str,
              event_type: str = "Normal") -> None:
        """A Kubernetes Event on the object acted on (`involved`: its metadata part)."""


class Kind(Protocol):
    bot_kind: BotKind
    component: str  # reportingComponent of our Events, and the managed-by label value
    object_kind: tuple[str, str]  # (apiVersion, kind) of the object a bot runs as

    def observe(self) -> Actual:
        """Every object of this kind we manage, and the original runtime's (for a pass);
        ReadFailed, never a partial answer."""

    def observe_one(self, bot_id: BotId, *, object_names: Sequence[str],
                    trust_cache: bool) -> Actual:
        """The objects of one bot, by name (a GET each: O(1) on the API server); whatever
        holds one of those names without being the bot's is returned as foreign.
        `trust_cache`: the bot wants an object, so "none" may come from the watched cache
        (from_cache=True; a create then raises StaleObservation on 409)."""

    def object_names(self, bot_id: BotId, planned: str | None) -> list[str]:
        """The names to read for one bot: its own fixed name, the original runtime's name for
        it, and the one a pass planned for when it differs (an extra object to delete)."""

    def extra_actions(self, observation: Observation, the_plan: Plan, *,
                      now: float) -> tuple[Action, ...]:
        """Actions of the kind's own besides the planner's (none for bots that have one)."""

    def act(self, action: Action, observation: Observation, steps: Steps) -> str:
        """Carries out one action; returns what happened ("created", "deleted", …)."""

    def get_object(self, name: str) -> dict[str, Any] | None:
        """One object by name, as the API server has it now (None: there is none)."""

    def statuses(self, observation: Observation, *, now: float) -> dict[str, dict[str, Any]]:
        """Each bot's status document as observed (without last_error and updated_at): every
        bot with a document or an object."""

    def healthy(self, observation: Observation) -> Collection[BotId]:
        """Bots whose object is in good shape: their crash backoff may be reset."""

    def upkeep(self, observation: Observation, *, now: float) -> int:
        """A pass's last step (bounded work on healthy objects); returns how many it did."""
