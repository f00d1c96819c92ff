"""Scheduled bots run as CronJobs: what the pass and converge need that is particular to them.

A CronJob is observed like a pod (bot id and config hash from its annotations; terminating
while deleting), so the planner's rules apply unchanged; a REPLACE of a CronJob is an update
in place (same uid: a running Job is not killed). Deleting it lets the garbage collector take
its Jobs, their pods and its Secret. A failed run is never retried behind the user's back
(backoffLimit 0). The code URL in a CronJob's Secret is re-signed by an update the kind plans
itself once half the URL's lifetime has passed.

Cut-over: a pass also reads the CronJobs of the0's original runtime (worker/core/legacy.py),
and a task also reads the original's name for its bot. Such a CronJob is never updated: a
takeover deletes it with foreground propagation (it is gone only once its Jobs and their pods
are), waits until it is gone, then creates ours — never two runs of one bot; a disabled or
removed bot's is deleted the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from worker.adapters.kube import Conflict
from worker.core.bot import Bot, BotId, BotKind
from worker.core.cronspec import build_cronjob, build_cronjob_secret
from worker.core.errors import InvalidBot, TemporaryError
from worker.core.legacy import CRONJOB_SELECTOR as LEGACY_SELECTOR
from worker.core.legacy import (
    WATCHED_AS_CRONJOBS,
    legacy_cronjob_name,
    note_cutover,
    observe_legacy_cronjob,
    observe_named,
    partition,
)
from worker.core.naming import LABEL_MANAGED_BY, MANAGED_BY_SCHEDULE, cronjob_name
from worker.core.planner import Action, ActionKind, ForeignObject, ObservedPod, Plan, observed_pod
from worker.core.podspec import SignedUrls
from worker.core.status import observed_schedule_status
from worker.reconcile.kind import Actual, Observation, Steps
from worker.reconcile.waiting import Resume
from worker.runtime import Runtime

REASON_REFRESH = "code URL re-signed"
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_SCHEDULE}"
# When the code URL in the CronJob's Secret was signed (epoch s). A run long after that would
# fail to fetch its code, so the URL is re-signed once half its lifetime has passed.
ANNOTATION_URL_SIGNED_AT = "the0.dev/code-url-signed-at"


@dataclass(frozen=True)
class CronJobDetail:
    """What a schedule observation holds besides the planner's view."""

    cronjobs: dict[BotId, dict[str, Any]]   # bot id → its CronJob (slim JSON)
    jobs: dict[str, list[dict[str, Any]]]   # CronJob name → its Jobs (slim JSON)


class CronJobKind:
    bot_kind = BotKind.SCHEDULED
    component = MANAGED_BY_SCHEDULE
    object_kind = ("batch/v1", "CronJob")

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings

    # ------------------------------------------------------------------ reading
    def observe(self) -> Actual:
        with ThreadPoolExecutor(max_workers=1) as pool:
            jobs_future = pool.submit(self.rt.read_objects, "jobs", SELECTOR, slim_job)
            cronjobs = self.rt.read_objects("cronjobs", SELECTOR, slim_cronjob)
            # The original runtime's CronJobs, from a cache of their own (see pods.py).
            legacy, foreign = partition(self.rt.read_objects(
                "cronjobs", LEGACY_SELECTOR, _observe_legacy, written_as=WATCHED_AS_CRONJOBS))
            jobs = jobs_future.result()
        return _actual(cronjobs, jobs, legacy=legacy, foreign=foreign)

    def object_names(self, bot_id: BotId, planned: str | None) -> list[str]:
        legacy = legacy_cronjob_name(bot_id)
        return sorted({cronjob_name(bot_id)} | ({legacy} if legacy else set()))

    def observe_one(self, bot_id: BotId, *, object_names: Sequence[str],
                    trust_cache: bool) -> Actual:
        # Always by GET: CronJobs are few and their creates not a cold start's bulk.
        raw = [slim_cronjob(c) for c in map(self.rt.kube.get_cronjob, object_names)
               if c is not None]
        seen = [(c, observe_named(c, bot_id, managed_by=MANAGED_BY_SCHEDULE,
                                  legacy=observe_legacy_cronjob)) for c in raw]
        ours = [c for c, s in seen if isinstance(s, ObservedPod) and not s.legacy]
        # The rest: the original runtime's CronJob of this bot, or one that holds a name of it.
        legacy, foreign = partition(s for c, s in seen if c not in ours)
        return _actual(ours, [], legacy=legacy, foreign=foreign)

    def extra_actions(self, observation: Observation, the_plan: Plan, *,
                      now: float) -> tuple[Action, ...]:
        """An update of each desired schedule whose Secret's code URL is past half its
        lifetime."""
        detail: CronJobDetail = observation.detail
        limit = self.settings.CODE_URL_TTL / 2
        stale = []
        for bot_id, cronjob in detail.cronjobs.items():
            annotations = (cronjob.get("metadata") or {}).get("annotations") or {}
            try:
                signed_at = float(annotations.get(ANNOTATION_URL_SIGNED_AT, "0"))
            except ValueError:
                signed_at = 0.0
            if bot_id in observation.state.desired and now - signed_at > limit:
                stale.append(Action(kind=ActionKind.REPLACE, bot_id=bot_id,
                                    pod_name=cronjob_name(bot_id), reason=REASON_REFRESH))
        return tuple(stale)

    # ------------------------------------------------------------------ acting
    def act(self, action: Action, observation: Observation, steps: Steps) -> str:
        detail: CronJobDetail = observation.detail
        current = detail.cronjobs.get(action.bot_id)  # ours only: the original's never updated
        if action.kind in (ActionKind.DELETE, ActionKind.TAKEOVER):
            return self._delete(action, observation, steps)
        bot = observation.state.bots.get(action.bot_id)
        assert bot is not None
        result = self._apply(bot, current)
        if (resumed := steps.resumes) is not None and current is None:
            return _took_over(result, resumed.old, steps)  # the second half of a takeover
        verb = "Created" if current is None else "Updated"
        steps.event(_ref(result), verb, f"{verb} CronJob ({action.reason})")
        return verb.lower()

    def _delete(self, action: Action, observation: Observation, steps: Steps) -> str:
        """DELETE, or TAKEOVER of the original runtime's CronJob: delete (uid precondition;
        the original's in the foreground, so it is gone only when its Jobs' pods are), then
        for a takeover wait until it is gone and create ours."""
        cronjob = next((o for o in observation.objects if o.name == action.pod_name), None)
        if cronjob is None:  # the planner only names objects it observed
            raise TemporaryError(f"cronjob {action.pod_name} was not observed; planning again")
        bot = observation.state.bots.get(action.bot_id)
        # A takeover checks the code BEFORE it deletes: a bot we cannot start keeps its runs.
        urls = self._prepare(bot) if action.kind is ActionKind.TAKEOVER and bot else None
        # The original's CronJob: gone only with its Jobs' pods; its cache is its own.
        self.rt.kube.delete_cronjob(cronjob.name, uid=cronjob.uid or None,
                                    propagation="Foreground" if cronjob.legacy else "Background",
                                    watched_as=(WATCHED_AS_CRONJOBS if cronjob.legacy
                                                else "cronjobs"))
        if action.kind is ActionKind.DELETE:
            origin = " of the0's original runtime" if cronjob.legacy else ""
            steps.event(_observed_ref(cronjob), "Deleted",
                        f"Deleted CronJob{origin} ({action.reason})")
            return "deleted"
        steps.await_gone([cronjob], resumes=Resume(action.kind, action.reason, cronjob.name))
        assert bot is not None
        steps.renew_lock()
        return _took_over(self._apply(bot, None, urls=urls), cronjob.name, steps)

    def _prepare(self, bot: Bot) -> SignedUrls:
        """What a create needs before it may touch anything: the code exists, URLs signed."""
        if not self.rt.code.code_exists(bot.code_path):
            raise InvalidBot(bot.id, "code_not_found",
                             "the code object custom.filePath does not exist in the bucket")
        return self.rt.code.sign_urls(bot_id=bot.id, code_path=bot.code_path,
                                      ttl_seconds=self.settings.CODE_URL_TTL,
                                      now=self.rt.clock())

    def _apply(self, bot: Bot, current: dict[str, Any] | None, *,
               urls: SignedUrls | None = None) -> dict[str, Any]:
        """Creates the CronJob, or updates it in place (same uid), then its Secret."""
        s = self.settings
        urls = urls if urls is not None else self._prepare(bot)
        body = build_cronjob(bot, s.pod_template, s.cronjob_settings)
        body["metadata"]["annotations"][ANNOTATION_URL_SIGNED_AT] = f"{urls.signed_at:.0f}"
        if current is None:
            try:
                result = self.rt.kube.create_cronjob(body)
            except Conflict:
                raise TemporaryError("cronjob created concurrently; re-planning") from None
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            result = self.rt.kube.replace_cronjob(body)
        self.rt.kube.put_secret(build_cronjob_secret(
            bot, cronjob_name=result["metadata"]["name"], cronjob_uid=result["metadata"]["uid"],
            namespace=s.NAMESPACE, urls=urls))
        return result

    def get_object(self, name: str) -> dict[str, Any] | None:
        return self.rt.kube.get_cronjob(name)

    # ------------------------------------------------------------------ status and upkeep
    def statuses(self, observation: Observation, *, now: float) -> dict[str, dict[str, Any]]:
        state = observation.state
        detail: CronJobDetail = observation.detail
        result: dict[str, dict[str, Any]] = {}
        with_objects = detail.cronjobs.keys() | {o.bot_id for o in observation.objects}
        for bot_id in state.known | with_objects:
            cronjob = detail.cronjobs.get(bot_id)
            spec = (cronjob or {}).get("spec") or {}
            backoff = observation.backoff.get(bot_id)
            result[bot_id] = observed_schedule_status(
                bot_id=bot_id, namespace=self.settings.NAMESPACE, cronjob=cronjob,
                jobs=detail.jobs.get(cronjob_name(bot_id), []),
                want=state.desired.get(bot_id), invalid=state.invalid.get(bot_id),
                disabled=bot_id in state.disabled,
                backing_off=backoff is not None and backoff.not_before > now,
                next_run_time=next_run_time(spec.get("schedule", ""),
                                            spec.get("timeZone", "UTC"), now=now)
                if cronjob else None)
        return note_cutover(result, objects=observation.objects, foreign=observation.foreign,
                            desired=state.desired)

    def healthy(self, observation: Observation) -> Collection[BotId]:
        """Schedules whose CronJob is in place as desired."""
        desired = observation.state.desired
        return {o.bot_id for o in observation.objects
                if not o.legacy and (want := desired.get(o.bot_id)) is not None
                and want.config_hash == o.config_hash}

    def upkeep(self, observation: Observation, *, now: float) -> int:
        return 0  # a CronJob's URLs are re-signed by its own planned update


def _observe_legacy(raw: dict[str, Any]) -> ObservedPod | ForeignObject | None:
    return observe_legacy_cronjob(slim_cronjob(raw))  # never keeps a job template's env


def _actual(cronjobs: list[dict[str, Any]], jobs: list[dict[str, Any]], *,
            legacy: Sequence[ObservedPod] = (), foreign: Sequence[ForeignObject] = ()) -> Actual:
    objects: list[ObservedPod] = []
    by_bot: dict[BotId, dict[str, Any]] = {}
    for raw in cronjobs:
        observed = observed_pod(raw)
        if observed is not None:
            objects.append(observed)
            by_bot[observed.bot_id] = raw
    jobs_by_cronjob: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        for owner in (job.get("metadata") or {}).get("ownerReferences") or []:
            if owner.get("kind") == "CronJob":
                jobs_by_cronjob.setdefault(str(owner.get("name")), []).append(job)
    return Actual(objects + list(legacy), CronJobDetail(cronjobs=by_bot, jobs=jobs_by_cronjob),
                  foreign=tuple(foreign))


def slim_cronjob(raw: dict[str, Any]) -> dict[str, Any]:
    """What a pass reads of a CronJob (metadata, schedule, time zone, status): the cache keeps
    2,000 of them, so their job template (a whole pod spec) and managedFields stay out."""
    spec = raw.get("spec") or {}
    return {"metadata": _slim_metadata(raw),
            "spec": {k: spec[k] for k in ("schedule", "timeZone", "suspend") if k in spec},
            "status": raw.get("status") or {}}


def slim_job(raw: dict[str, Any]) -> dict[str, Any]:
    """What a pass reads of a Job: its owner (metadata) and its outcome (status)."""
    return {"metadata": _slim_metadata(raw), "status": raw.get("status") or {}}


def _slim_metadata(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (raw.get("metadata") or {}).items() if k != "managedFields"}


def _observed_ref(cronjob: ObservedPod) -> dict[str, Any]:
    return {"metadata": {"name": cronjob.name, "uid": cronjob.uid}}


def _ref(cronjob: dict[str, Any]) -> dict[str, Any]:
    metadata = cronjob.get("metadata") or {}
    return {"metadata": {"name": metadata.get("name"), "uid": metadata.get("uid")}}


# (schedule, time zone) → (computed at, next firing, its RFC 3339 text). croniter takes ~0.5 ms,
# and every pass asks for every schedule: 1 s of a 2,000-schedule pass before this memo.
_NEXT_RUNS: dict[tuple[str, str], tuple[float, float, str]] = {}
_NEXT_RUNS_LIMIT = 100_000


def next_run_time(schedule: str, timezone: str, *, now: float) -> str | None:
    """Next firing time (UTC, RFC 3339) of a normalized schedule in its time zone. Memoized:
    the next firing after any moment in [computed at, next firing) is that same firing."""
    key = (schedule, timezone)
    cached = _NEXT_RUNS.get(key)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached[2]
    try:
        start = datetime.fromtimestamp(now, ZoneInfo(timezone or "UTC"))
        times = croniter(schedule, start)
        following = times.get_next(datetime)
        # A firing in a spring-forward gap (02:30 on the night clocks jump from 02:00 to
        # 03:00): croniter answers the first moment after the gap, Kubernetes's CronJob
        # controller (robfig/cron v3) skips that firing (robfig/cron#541). Say what will run.
        minutes, hours = times.expanded[0], times.expanded[1]
        for _gap in range(3):
            if (minutes == ["*"] or following.minute in minutes) and (
                    hours == ["*"] or following.hour in hours):
                break
            following = times.get_next(datetime)
    except (ValueError, KeyError):
        return None
    text = str(following.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if len(_NEXT_RUNS) >= _NEXT_RUNS_LIMIT:
        _NEXT_RUNS.clear()
    _NEXT_RUNS[key] = (now, following.timestamp(), text)
    return text


def _took_over(result: dict[str, Any], old: str, steps: Steps) -> str:
    steps.event(_ref(result), "TookOver",
                f"Took over from the0's original runtime (deleted its CronJob {old})")
    return "replaced"  # a takeover replaces the original's CronJob (counted as done)
