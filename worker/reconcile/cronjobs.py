"""Scheduled bots run as CronJobs: what the pass and converge need that is particular to them.

A CronJob is observed like a pod (bot id and config hash from its annotations; terminating
while deleting), so the planner's rules apply unchanged; a REPLACE of a CronJob is an update
in place (same uid: a running Job is not killed). Deleting it lets the garbage collector take
its Jobs, their pods and its Secret. A failed run is never retried behind the user's back
(backoffLimit 0). The code URL in a CronJob's Secret is re-signed by an update the kind plans
itself once half the URL's lifetime has passed.
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
from worker.core.naming import LABEL_MANAGED_BY, MANAGED_BY_SCHEDULE, cronjob_name
from worker.core.planner import Action, ActionKind, ObservedPod, Plan, observed_pod
from worker.core.status import observed_schedule_status
from worker.reconcile.kind import Actual, Observation, Steps
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
            jobs = jobs_future.result()
        return _actual(cronjobs, jobs)

    def object_names(self, bot_id: BotId, planned: str | None) -> list[str]:
        return [cronjob_name(bot_id)]

    def observe_one(self, bot_id: BotId, *, object_names: Sequence[str]) -> Actual:
        raw = [c for c in map(self.rt.kube.get_cronjob, object_names) if c is not None]
        return _actual([slim_cronjob(c) for c in raw], [])

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
        current = detail.cronjobs.get(action.bot_id)
        if action.kind is ActionKind.DELETE:
            assert current is not None
            self.rt.kube.delete_cronjob(action.pod_name, uid=current["metadata"].get("uid"))
            steps.event(_ref(current), "Deleted", f"Deleted CronJob ({action.reason})")
            return "deleted"
        bot = observation.state.bots.get(action.bot_id)
        assert bot is not None
        result = self._apply(bot, current)
        verb = "Created" if current is None else "Updated"
        steps.event(_ref(result), verb, f"{verb} CronJob ({action.reason})")
        return verb.lower()

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

    def get_object(self, name: str) -> dict[str, Any] | None:
        return self.rt.kube.get_cronjob(name)

    # ------------------------------------------------------------------ status and upkeep
    def statuses(self, observation: Observation, *, now: float) -> dict[str, dict[str, Any]]:
        state = observation.state
        detail: CronJobDetail = observation.detail
        result: dict[str, dict[str, Any]] = {}
        for bot_id in state.known | detail.cronjobs.keys():
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
        return result

    def healthy(self, observation: Observation) -> Collection[BotId]:
        """Schedules whose CronJob is in place as desired."""
        desired = observation.state.desired
        return {o.bot_id for o in observation.objects
                if (want := desired.get(o.bot_id)) is not None
                and want.config_hash == o.config_hash}

    def upkeep(self, observation: Observation, *, now: float) -> int:
        return 0  # a CronJob's URLs are re-signed by its own planned update


def _actual(cronjobs: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> Actual:
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
    return Actual(objects, CronJobDetail(cronjobs=by_bot, jobs=jobs_by_cronjob))


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
        following = croniter(schedule, start).get_next(datetime)
    except (ValueError, KeyError):
        return None
    text = str(following.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if len(_NEXT_RUNS) >= _NEXT_RUNS_LIMIT:
        _NEXT_RUNS.clear()
    _NEXT_RUNS[key] = (now, following.timestamp(), text)
    return text
