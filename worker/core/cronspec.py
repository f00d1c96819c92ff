"""Scheduled bot → its CronJob and config Secret, as plain Kubernetes API JSON (camelCase dicts).

Pure: no I/O, no clock, no client models, no third-party cron library. Schedules run in UTC, as
in the0: the CronJob says so (`timeZone: UTC`) rather than inherit the controller-manager's zone.

A schedule is validated here, before any API call, and brought into the exact form the apiserver
accepts (robfig/cron's `ParseStandard`): a 6-field expression whose seconds field can only be 0 is
converted without loss, anything that would fire more often than once a minute is refused, and no
expression is ever cut short. The job's pod is the live bot's pod (same generator, same security
and secret rules) with `restartPolicy: Never`; it reads BOT_CONFIG and its URLs from ONE Secret per
CronJob, which the shell creates with an ownerReference to the CronJob's uid.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from worker.core import naming, podspec
from worker.core.bot import Bot
from worker.core.canonical import canonical_json, keyed_hash_hex
from worker.core.errors import InvalidBot
from worker.core.podspec import PodTemplateSettings
from worker.core.text import excerpt

GENERATOR_VERSION = "1"
"""Bump when the meaning of generated CronJobs changes in a way their JSON does not show."""

COMPONENT = "scheduled-bot"
TIMEZONE = "UTC"
MAX_SCHEDULE_LENGTH = 1000  # a list of all 60 minutes is 170 characters
SUB_MINUTE_DETAIL = "sub-minute schedules are not supported in Kubernetes mode"

MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
"""The descriptors the apiserver accepts, in the only (lowercase) spelling it accepts."""

_EXCERPT_LIMIT = 40  # below the 60 characters of input an error detail may quote
_TZ_PREFIXES = ("TZ=", "CRON_TZ=")
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_NAME = re.compile(r"[A-Za-z]{3}", re.ASCII)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # month 1..12, leap years


@dataclass(frozen=True, kw_only=True)
class CronJobSettings:
    """Deployment-wide CronJob knobs (from settings, never from a bot); all in seconds or counts."""

    starting_deadline_seconds: int = 300  # a run missed by more than this is skipped, not caught up
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 3
    ttl_seconds_after_finished: int = 86400
    active_deadline_seconds: int | None = None  # a run still going after this is failed

    def __post_init__(self) -> None:
        # The apiserver would refuse these; fail at start-up, not once per bot.
        for name in (
            "starting_deadline_seconds",
            "successful_jobs_history_limit",
            "failed_jobs_history_limit",
            "ttl_seconds_after_finished",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0")
        deadline = self.active_deadline_seconds
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, int) or deadline <= 0
        ):
            raise ValueError("active_deadline_seconds must be None or an integer > 0")


@dataclass(frozen=True, kw_only=True)
class _FieldSpec:
    name: str
    low: int
    high: int  # the highest value that may be written
    star_high: int  # what `*` and `a/n` run up to (robfig: day-of-week 7 is not a weekday)
    names: Mapping[str, int]


@dataclass(frozen=True, kw_only=True)
class _Field:
    text: str  # the field as written, or rewritten into a form the apiserver accepts
    values: frozenset[int]
    star: bool  # `*`, `?` or `*/1`: robfig then ANDs day-of-month with day-of-week


def _names(words: str, *, first: int) -> Mapping[str, int]:
    return MappingProxyType({word: number for number, word in enumerate(words.split(), first)})


_SECOND = _FieldSpec(name="second", low=0, high=59, star_high=59, names={})
_MINUTE = _FieldSpec(name="minute", low=0, high=59, star_high=59, names={})
_HOUR = _FieldSpec(name="hour", low=0, high=23, star_high=23, names={})
_DAY_OF_MONTH = _FieldSpec(name="day-of-month", low=1, high=31, star_high=31, names={})
_MONTH = _FieldSpec(
    name="month",
    low=1,
    high=12,
    star_high=12,
    names=_names("jan feb mar apr may jun jul aug sep oct nov dec", first=1),
)
_DAY_OF_WEEK = _FieldSpec(
    name="day-of-week",
    low=0,
    high=7,
    star_high=6,
    names=_names("sun mon tue wed thu fri sat", first=0),
)
_FIELDS = (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)
_QUESTION_MARK_FIELDS = frozenset({_DAY_OF_MONTH.name, _DAY_OF_WEEK.name})


def normalize_schedule(bot_id: str, expression: object) -> str:
    """The 5-field (or macro) form of a cron expression that the apiserver accepts unchanged.

    Raises `InvalidBot` with reason "sub_minute_schedule" for a 6-field expression whose seconds
    field stands for anything but second 0 (Kubernetes has no seconds), and "invalid_schedule" for
    anything else it cannot use.
    """
    if not isinstance(expression, str):
        raise _invalid_schedule(bot_id, "config.schedule is not a string")
    text = expression.strip()
    if not text:
        raise _invalid_schedule(bot_id, "config.schedule is empty")
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise _invalid_schedule(
            bot_id, f"config.schedule is longer than {MAX_SCHEDULE_LENGTH} characters"
        )
    if text.upper().startswith(_TZ_PREFIXES):
        raise _invalid_schedule(
            bot_id, "config.schedule must not start with TZ= or CRON_TZ=: schedules run in UTC"
        )
    if text.startswith("@"):
        return _macro(bot_id, text)
    parts = text.split()
    if len(parts) == 6:
        seconds = _parse_field(bot_id, _SECOND, parts[0])
        if seconds.values != {0}:
            raise InvalidBot(bot_id, "sub_minute_schedule", SUB_MINUTE_DETAIL)
        parts = parts[1:]
    if len(parts) != 5:
        raise _invalid_schedule(
            bot_id,
            f"config.schedule has {len(parts)} field(s); expected 5 "
            "(minute hour day-of-month month day-of-week), or 6 with seconds first",
        )
    fields = [_parse_field(bot_id, spec, part) for spec, part in zip(_FIELDS, parts, strict=True)]
    _check_day_exists(bot_id, day_of_month=fields[2], month=fields[3], day_of_week=fields[4])
    return " ".join(field.text for field in fields)


def cronjob_secret_name(cronjob_name: str) -> str:
    """Name of the ONE Secret holding a CronJob's config and code URL: "<cronjob name>-config"."""
    return naming.secret_name(cronjob_name)


def build_cronjob(bot: Bot, template: PodTemplateSettings, cron: CronJobSettings) -> dict[str, Any]:
    """The bot's batch/v1 CronJob, annotated with the hash of every input it was built from.

    Raises `InvalidBot` for a bad schedule or anything the pod generator refuses.
    """
    cronjob = _cronjob_without_hash(bot, template, cron)
    digest = _hash_of(bot, cronjob, key=template.hash_key)
    job_template = cronjob["spec"]["jobTemplate"]
    for metadata in (
        cronjob["metadata"],
        job_template["metadata"],
        job_template["spec"]["template"]["metadata"],
    ):
        metadata["annotations"][naming.ANNOTATION_CONFIG_HASH] = digest
    return cronjob


def cronjob_hash(bot: Bot, template: PodTemplateSettings, cron: CronJobSettings) -> str:
    """16 hex chars covering both generator versions, the CronJob, the secret config and the code.

    Equal hashes mean the CronJob is what we would build now; the presigned URL is excluded
    because it changes on every build without changing what runs.
    """
    return _hash_of(bot, _cronjob_without_hash(bot, template, cron), key=template.hash_key)


def build_cronjob_secret(
    bot: Bot, *, cronjob_name: str, cronjob_uid: str, namespace: str, urls: podspec.SignedUrls
) -> dict[str, Any]:
    """The Secret of one CronJob: BOT_CONFIG and the presigned URLs, owned by (and deleted
    with) the CronJob. It outlives many runs: the shell updates it in place when the config
    changes and before the URLs expire.
    """
    secret = podspec.build_config_secret(
        bot, pod_name=cronjob_name, pod_uid=cronjob_uid, namespace=namespace, urls=urls
    )
    metadata = secret["metadata"]
    metadata["name"] = cronjob_secret_name(cronjob_name)
    metadata["labels"] = _scheduled_labels(metadata["labels"], cronjob_name)
    metadata["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": cronjob_name,
            "uid": cronjob_uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    return secret


# --- the CronJob -----------------------------------------------------------------------------


def _hash_of(bot: Bot, cronjob_without_hash: Mapping[str, Any], *, key: bytes) -> str:
    # The code path and version are not in the CronJob (the URL is in the Secret), so add them.
    inputs = {
        "generator": podspec.GENERATOR_VERSION,
        "cron_generator": GENERATOR_VERSION,
        "cronjob": cronjob_without_hash,
        "config": bot.config,
        "code": {"path": bot.code_path, "version": bot.code_version},
    }
    return keyed_hash_hex(key, canonical_json(inputs))[: podspec.HASH_LENGTH]


def _cronjob_without_hash(
    bot: Bot, template: PodTemplateSettings, cron: CronJobSettings
) -> dict[str, Any]:
    # Validate the bot's own inputs first: they are the likely per-bot errors.
    schedule = normalize_schedule(bot.id, bot.schedule)
    name = naming.cronjob_name(bot.id)
    pod = podspec.build_pod(bot, template, restart_policy="Never")
    labels = _scheduled_labels(pod["metadata"]["labels"], name)
    annotations = {naming.ANNOTATION_BOT_ID: bot.id}
    # The pod's own hash describes the live-bot pod, not this template: the CronJob's replaces it.
    pod_annotations = {
        key: value
        for key, value in pod["metadata"]["annotations"].items()
        if key != naming.ANNOTATION_CONFIG_HASH
    }
    pod_spec = pod["spec"]
    _rename_secret_refs(pod_spec, cronjob_secret_name(name))
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # a failed trading run is never re-run behind the user's back
        "ttlSecondsAfterFinished": cron.ttl_seconds_after_finished,
    }
    if cron.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = cron.active_deadline_seconds
    job_spec["template"] = {
        "metadata": {"labels": dict(labels), "annotations": pod_annotations},
        "spec": pod_spec,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": template.namespace,
            "labels": dict(labels),
            "annotations": dict(annotations),
        },
        "spec": {
            "schedule": schedule,
            "timeZone": TIMEZONE,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": cron.starting_deadline_seconds,
            "successfulJobsHistoryLimit": cron.successful_jobs_history_limit,
            "failedJobsHistoryLimit": cron.failed_jobs_history_limit,
            "suspend": False,
            "jobTemplate": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": job_spec,
            },
        },
    }


def _scheduled_labels(live_labels: Mapping[str, str], cronjob_name: str) -> dict[str, str]:
    # Job pods must never carry the live-bot controller's label: it would count them as its own.
    return {
        **live_labels,
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY_SCHEDULE,
        "app.kubernetes.io/managed-by": naming.MANAGED_BY_SCHEDULE,
        "app.kubernetes.io/instance": cronjob_name,
        "app.kubernetes.io/component": COMPONENT,
    }


def _rename_secret_refs(pod_spec: Mapping[str, Any], secret: str) -> None:
    """Point every Secret reference of the pod spec (env, envFrom, volumes) at `secret`."""
    for container in (*pod_spec.get("initContainers", ()), *pod_spec.get("containers", ())):
        for variable in container.get("env", ()):
            key_ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if key_ref is not None:
                key_ref["name"] = secret
        for source in container.get("envFrom", ()):
            if "secretRef" in source:
                source["secretRef"]["name"] = secret
    for volume in pod_spec.get("volumes", ()):
        if "secret" in volume:
            volume["secret"]["secretName"] = secret


# --- schedules -------------------------------------------------------------------------------


def _invalid_schedule(bot_id: str, detail: str) -> InvalidBot:
    return InvalidBot(bot_id, "invalid_schedule", detail)


def _macro(bot_id: str, text: str) -> str:
    macro = text.lower()  # the apiserver only knows the lowercase spelling
    if macro in MACROS:
        return macro
    if macro.startswith("@every"):
        raise _invalid_schedule(bot_id, "config.schedule: @every is not supported; use cron fields")
    raise _invalid_schedule(
        bot_id, f"config.schedule: unknown macro {excerpt(text, limit=_EXCERPT_LIMIT)!r}"
    )


def _parse_field(bot_id: str, spec: _FieldSpec, text: str) -> _Field:
    terms = text.split(",")
    values: set[int] = set()
    star = False
    rewrite = False  # day-of-week 7 (Sunday) is refused by the apiserver: write it as 0
    for term in terms:
        term_values, term_star, uses_high = _parse_term(bot_id, spec, text, term)
        if term_star and len(terms) > 1:
            raise _field_error(bot_id, spec, text, "mixes `*` with other values")
        values.update(term_values)
        star = star or term_star
        rewrite = rewrite or (uses_high and spec.high != spec.star_high)
    if not rewrite:
        return _Field(text=text, values=frozenset(values), star=star)
    days = frozenset(value % 7 for value in values)  # only day-of-week has high != star_high
    return _Field(text=_render(sorted(days)), values=days, star=False)


def _parse_term(
    bot_id: str, spec: _FieldSpec, field: str, term: str
) -> tuple[set[int], bool, bool]:
    """One comma-separated term → (its values, whether it is a star, whether it names `high`)."""
    if not term:
        raise _field_error(bot_id, spec, field, "has an empty list item")
    range_part, slash, step_part = term.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_part):
            raise _field_error(bot_id, spec, field, "has a step that is not a number")
        step = int(step_part)
        if step <= 0:
            raise _field_error(bot_id, spec, field, "has a step of 0; it must be greater than 0")
    if range_part == "*" or (range_part == "?" and spec.name in _QUESTION_MARK_FIELDS):
        return set(range(spec.low, spec.star_high + 1, step)), step == 1, False
    low_part, dash, high_part = range_part.partition("-")
    start = _value(bot_id, spec, field, low_part)
    # "a/n" runs from a to the end of the range, as in robfig/cron (the apiserver's parser).
    end = spec.star_high if slash else start
    if dash:
        end = _value(bot_id, spec, field, high_part)
    if start > end:
        raise _field_error(bot_id, spec, field, f"has a range from {start} down to {end}")
    return set(range(start, end + 1, step)), False, spec.high in (start, end)


def _value(bot_id: str, spec: _FieldSpec, field: str, text: str) -> int:
    if _NUMBER.fullmatch(text):
        value = int(text)
        if not spec.low <= value <= spec.high:
            raise _field_error(bot_id, spec, field, f"has a value outside {spec.low}-{spec.high}")
        return value
    if _NAME.fullmatch(text) and text.lower() in spec.names:
        return spec.names[text.lower()]
    what = "a number or a 3-letter name" if spec.names else "a number"
    raise _field_error(bot_id, spec, field, f"has an item that is not {what}")


def _field_error(bot_id: str, spec: _FieldSpec, field: str, why: str) -> InvalidBot:
    shown = excerpt(field, limit=_EXCERPT_LIMIT)
    return _invalid_schedule(bot_id, f"config.schedule: {spec.name} field {shown!r} {why}")


def _check_day_exists(
    bot_id: str, *, day_of_month: _Field, month: _Field, day_of_week: _Field
) -> None:
    # With a `*` day-of-week, robfig/cron needs the day-of-month to exist in one of the months;
    # otherwise the CronJob would be accepted and then silently never run (e.g. 30 February).
    if day_of_month.star or not day_of_week.star:
        return
    if any(day <= _DAYS_IN_MONTH[m - 1] for m in month.values for day in day_of_month.values):
        return
    raise _invalid_schedule(
        bot_id, "config.schedule never runs: no chosen day-of-month exists in the chosen months"
    )


def _render(values: Iterable[int]) -> str:
    """Sorted values as a list, with runs of three or more as ranges: [0, 1, 2, 5] → "0-2,5"."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(
        f"{run[0]}-{run[-1]}" if len(run) >= 3 else ",".join(map(str, run)) for run in runs
    )
