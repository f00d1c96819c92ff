"""Scheduled bots → CronJobs: the same pass and per-bot shape as live bots.

The pure planner is shared: a CronJob is observed like a pod (bot id and config hash from its
annotations; terminating when deleting), so the rules are the live bots' rules: create missing,
delete removed/disabled (the garbage collector takes its Jobs, their pods and its Secret),
REPLACE when the hash differs — which for a CronJob is an update in place (same uid; a running
Job is not killed). A failed run is never retried behind the user's back (backoffLimit 0).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from worker import keys
from worker.adapters.kube import Conflict
from worker.core.bot import Bot, BotId, BotKind
from worker.core.census import census
from worker.core.cronspec import build_cronjob, build_cronjob_secret
from worker.core.desired import DesiredState, desired_state
from worker.core.errors import InvalidBot, PermanentError, TemporaryError
from worker.core.naming import LABEL_MANAGED_BY, MANAGED_BY_SCHEDULE, cronjob_name
from worker.core.planner import (
    Action,
    ActionKind,
    Backoff,
    ObservedPod,
    Plan,
    next_backoff,
    observed_pod,
    plan,
)
from worker.core.status import fingerprint, observed_schedule_status
from worker.live_bots import BotBusy, PassReport, _iso, record_outcome, write_changed_statuses
from worker.runtime import Runtime
from worker.telemetry import record_pass

log = logging.getLogger("the0.schedules")
REASON_REFRESH = "code URL re-signed"
KIND = BotKind.SCHEDULED
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_SCHEDULE}"
# When the code URL in the CronJob's Secret was signed (epoch s). A run long after that would
# fail to fetch its code, so the URL is re-signed once half its lifetime has passed.
ANNOTATION_URL_SIGNED_AT = "the0.dev/code-url-signed-at"


@dataclass(frozen=True)
class ScheduleObservation:
    state: DesiredState
    cronjobs: dict[BotId, dict[str, Any]]    # bot id → CronJob JSON
    objects: list[ObservedPod]                # the planner's view of the CronJobs
    jobs: dict[str, list[dict[str, Any]]]     # cronjob name → its Jobs
    backoff: dict[BotId, Backoff]


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
        following = croniter(schedule, start).get_next(datetime)
    except (ValueError, KeyError):
        return None
    text = str(following.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if len(_NEXT_RUNS) >= _NEXT_RUNS_LIMIT:
        _NEXT_RUNS.clear()
    _NEXT_RUNS[key] = (now, following.timestamp(), text)
    return text


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


class ScheduleController:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.desired_read_at = 0.0  # when the desired documents observe used were read

    # ================================================================== the whole pass
    def observe(self, *, with_jobs: bool = True) -> ScheduleObservation:
        with ThreadPoolExecutor(max_workers=2) as pool:
            cronjobs_future = pool.submit(self.rt.read_objects, "cronjobs", SELECTOR,
                                          slim_cronjob)
            jobs_future = (pool.submit(self.rt.read_objects, "jobs", SELECTOR, slim_job)
                           if with_jobs else None)
            self.desired_read_at = self.rt.clock()
            docs = self.rt.store(KIND).load_all()
            raw_cronjobs = cronjobs_future.result()
            raw_jobs = jobs_future.result() if jobs_future else []
        return self._observation(docs, raw_cronjobs, raw_jobs,
                                 self.rt.redis.load_backoff(KIND.value))

    def _observation(self, docs: list[dict[str, Any]], raw_cronjobs: list[dict[str, Any]],
                     raw_jobs: list[dict[str, Any]], backoff: dict[BotId, Backoff]
                     ) -> ScheduleObservation:
        s = self.settings
        memo = self.rt.parse_memo(KIND)
        state = desired_state(docs, kind=KIND, template=s.pod_template,
                              default_resources=s.default_resources, parse=memo)
        objects = [o for o in map(observed_pod, raw_cronjobs) if o is not None]
        by_bot = {o.bot_id: raw for o, raw in zip(map(observed_pod, raw_cronjobs), raw_cronjobs,
                                                  strict=True) if o is not None}
        jobs: dict[str, list[dict[str, Any]]] = {}
        for job in raw_jobs:
            for owner in (job.get("metadata") or {}).get("ownerReferences") or []:
                if owner.get("kind") == "CronJob":
                    jobs.setdefault(str(owner.get("name")), []).append(job)
        return ScheduleObservation(state=state, cronjobs=by_bot, objects=objects, jobs=jobs,
                                   backoff=backoff)

    def plan(self, observation: ScheduleObservation, *, now: float) -> Plan:
        return plan(desired=observation.state.desired, actual=observation.objects,
                    backoff=observation.backoff, now=now,
                    max_delete_fraction=self.settings.MAX_DELETE_FRACTION,
                    max_delete_min=self.settings.MAX_DELETE_MIN,
                    untouchable=observation.state.invalid.keys())

    def stale_code_urls(self, observation: ScheduleObservation, *, now: float) -> list[BotId]:
        """Desired schedules whose Secret's code URL is past half its lifetime."""
        limit = self.settings.CODE_URL_TTL / 2
        stale = []
        for bot_id, cronjob in observation.cronjobs.items():
            annotations = (cronjob.get("metadata") or {}).get("annotations") or {}
            try:
                signed_at = float(annotations.get(ANNOTATION_URL_SIGNED_AT, "0"))
            except ValueError:
                signed_at = 0.0
            if bot_id in observation.state.desired and now - signed_at > limit:
                stale.append(bot_id)
        return stale

    def plan_with_refresh(self, observation: ScheduleObservation, *, now: float) -> Plan:
        """The planner's plan, plus an update for each schedule whose code URL needs
        re-signing (when the planner has nothing else to do for it)."""
        the_plan = self.plan(observation, now=now)
        planned = {a.bot_id for a in the_plan.actions}
        refresh = tuple(Action(kind=ActionKind.REPLACE, bot_id=bot_id,
                               pod_name=cronjob_name(bot_id), reason=REASON_REFRESH)
                        for bot_id in self.stale_code_urls(observation, now=now)
                        if bot_id not in planned)
        return replace(the_plan, actions=tuple(sorted(the_plan.actions + refresh,
                                                      key=lambda a: a.bot_id)))

    def reconcile(self, *, enqueue: Callable[[Action, float], None]) -> PassReport:
        started = time.monotonic()
        lock_ttl = max(60.0, 4 * self.settings.RECONCILE_INTERVAL)
        with self.rt.redis.hold(keys.reconcile_lock(KIND.value), ttl=lock_ttl) as held:
            if held is None:
                return PassReport(skipped=True)
            observation = self.observe()
            as_of = self.desired_read_at  # when the plan's reads started (tasks read afresh)
            now = self.rt.clock()
            the_plan = self.plan_with_refresh(observation, now=now)
            report = PassReport(plan=the_plan, counts=the_plan.counts(),
                                invalid=len(observation.state.invalid),
                                unidentifiable=observation.state.unidentifiable,
                                guard_message=the_plan.guard_message,
                                bots=census(desired=observation.state.desired.keys(),
                                            objects=observation.objects,
                                            backoff=observation.backoff,
                                            invalid=len(observation.state.invalid),
                                            disabled=len(observation.state.disabled), now=now))
            if the_plan.guard_tripped:
                log.error("%s", the_plan.guard_message)
            by_id = {a.bot_id: a for a in the_plan.actions}
            claimed = self.rt.redis.claim_inflight(KIND.value, list(by_id),
                                                   ttl=self.settings.INFLIGHT_TTL)
            for bot_id in claimed:
                enqueue(by_id[BotId(bot_id)], as_of)
            report.enqueued, report.already_in_flight = len(claimed), len(by_id) - len(claimed)
            report.status_writes = self.record_statuses(observation, now=now)
        report.duration_s = time.monotonic() - started
        record_pass(self.rt, KIND.value, ok=True, duration_s=report.duration_s,
                    summary=report.summary())
        return report

    def status_of(self, bot_id: BotId, observation: ScheduleObservation, *, now: float
                  ) -> dict[str, Any]:
        state = observation.state
        cronjob = observation.cronjobs.get(bot_id)
        spec = (cronjob or {}).get("spec") or {}
        backoff = observation.backoff.get(bot_id)
        return observed_schedule_status(
            bot_id=bot_id, namespace=self.settings.NAMESPACE, cronjob=cronjob,
            jobs=observation.jobs.get(cronjob_name(bot_id), []),
            want=state.desired.get(bot_id), invalid=state.invalid.get(bot_id),
            disabled=bot_id in state.disabled,
            backing_off=backoff is not None and backoff.not_before > now,
            next_run_time=next_run_time(spec.get("schedule", ""), spec.get("timeZone", "UTC"),
                                        now=now) if cronjob else None)

    def record_statuses(self, observation: ScheduleObservation, *, now: float) -> int:
        memo = self.rt.redis.load_status_fingerprints(KIND.value)
        last_errors = self.rt.redis.load_last_errors(KIND.value)
        present = observation.state.known | observation.cronjobs.keys()
        changed: list[dict[str, Any]] = []
        new_memo: dict[str, str] = {}
        for bot_id in sorted(present):
            doc = self.status_of(BotId(bot_id), observation, now=now)
            doc.setdefault("last_error", last_errors.get(bot_id, ""))
            mark = fingerprint(doc)
            if memo.get(bot_id) != mark:
                doc["updated_at"] = _iso(now)
                changed.append(doc)
                new_memo[bot_id] = mark
        gone = [bot_id for bot_id in memo if bot_id not in present]
        return write_changed_statuses(self.rt, KIND, changed, new_memo, gone)

    # ================================================================== one schedule
    def converge(self, bot_id: str, *, intent: str) -> str:
        """As LiveBotController.converge, for one schedule and its CronJob."""
        with self.rt.redis.hold(keys.lock(KIND.value, bot_id),
                                ttl=self.settings.BOT_LOCK_TTL) as held:
            if held is None:
                raise BotBusy("another task is acting on this schedule")
            docs = self.rt.store(KIND).load_one(bot_id)
            raw = self.rt.kube.get_cronjob(cronjob_name(bot_id))
            backoff = self.rt.redis.get_backoff(KIND.value, bot_id)
            observation = self._observation(docs, [raw] if raw else [], [],
                                            {BotId(bot_id): backoff} if backoff else {})
            now = self.rt.clock()
            the_plan = plan(desired=observation.state.desired, actual=observation.objects,
                            backoff=observation.backoff, now=now, max_delete_fraction=1.0,
                            max_delete_min=1, untouchable=observation.state.invalid.keys())
            if not the_plan.actions and BotId(bot_id) in self.stale_code_urls(observation,
                                                                              now=now):
                the_plan = self.plan_with_refresh(observation, now=now)
            if not the_plan.actions:
                self._record_outcome(BotId(bot_id), last_error=None)
                return "nothing"
            return self._act(the_plan.actions[0], observation, now=now)

    def _act(self, action: Action, observation: ScheduleObservation, *, now: float) -> str:
        bot_id = action.bot_id
        bot = observation.state.bots.get(bot_id)
        current = observation.cronjobs.get(bot_id)
        try:
            if action.kind is ActionKind.DELETE:
                assert current is not None
                self.rt.kube.delete_cronjob(action.pod_name,
                                            uid=current["metadata"].get("uid"))
                self._event(current, "Deleted", f"Deleted CronJob ({action.reason})")
                observation.cronjobs.pop(bot_id, None)
                self._record_outcome(bot_id, last_error="")
                return "deleted"
            assert bot is not None
            result = self._apply(bot, current)
            verb = "Created" if current is None else "Updated"
            self._event(result, verb, f"{verb} CronJob ({action.reason})")
            observation.cronjobs[bot_id] = result
            self._record_outcome(bot_id, last_error="")
            return verb.lower()
        except (InvalidBot, PermanentError) as error:
            log.warning("schedule %r: %s failed: %s", bot_id, action.kind.value, error)
            s = self.settings
            backoff = next_backoff(observation.backoff.get(bot_id), now=now,
                                   base_s=s.CRASH_BACKOFF_BASE, cap_s=s.CRASH_BACKOFF_CAP,
                                   jitter=self.rt.jitter())
            self.rt.redis.save_backoff(KIND.value, bot_id, backoff)
            observation.backoff[bot_id] = backoff
            self._record_outcome(bot_id, last_error=str(error))
            if isinstance(error, InvalidBot):
                return f"failed: {error.reason}"
            raise

    def _apply(self, bot: Bot, current: dict[str, Any] | None) -> dict[str, Any]:
        """Creates the CronJob, or updates it in place (same uid), then its Secret."""
        s = self.settings
        if not self.rt.code.code_exists(bot.code_path):
            raise InvalidBot(bot.id, "code_not_found",
                             "the code object custom.filePath does not exist in the bucket")
        urls = self.rt.code.sign_urls(bot_id=bot.id, code_path=bot.code_path,
                                      ttl_seconds=s.CODE_URL_TTL, now=self.rt.clock())
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

    def _event(self, involved: dict[str, Any], reason: str, message: str) -> None:
        self.rt.kube.record_event(involved={"apiVersion": "batch/v1", "kind": "CronJob",
                                            **involved}, reason=reason, message=message,
                                  component=MANAGED_BY_SCHEDULE)

    def _record_outcome(self, bot_id: BotId, *, last_error: str | None) -> None:
        record_outcome(self.rt, KIND, bot_id, last_error=last_error)

