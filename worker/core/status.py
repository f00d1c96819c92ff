"""Status documents for `bot_runner.bot_status` (and `schedule_status`). Pure: no I/O.

The reconcile rebuilds each bot's status from what it observed, and writes it only when its
fingerprint changed, so a pass over an unchanged world writes nothing. `updated_at` and the
task-owned `last_error` are left out of the fingerprint: they are not observations.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.core.canonical import canonical_json, sha256_hex
from worker.core.errors import InvalidBot
from worker.core.planner import DesiredBot, ObservedPod
from worker.core.podstatus import PodHealth

PHASE_RUNNING = "Running"
PHASE_PENDING = "Pending"
PHASE_TERMINATING = "Terminating"
PHASE_BROKEN = "Broken"
PHASE_CREATING = "Creating"
PHASE_INVALID = "Invalid"
PHASE_DISABLED = "Disabled"
PHASE_BACKING_OFF = "BackingOff"

_PHASE_OF_HEALTH = {
    PodHealth.RUNNING: PHASE_RUNNING,
    PodHealth.PENDING: PHASE_PENDING,
    PodHealth.TERMINATING: PHASE_TERMINATING,
    PodHealth.BROKEN: PHASE_BROKEN,
}


def observed_status(*, bot_id: str, namespace: str, pod: ObservedPod | None,
                    want: DesiredBot | None, invalid: InvalidBot | None,
                    disabled: bool, backing_off: bool = False) -> dict[str, Any]:
    """What the reconcile can say about one bot (without `updated_at`).

    `backing_off`: the bot's last create or recreate failed and its backoff has not expired.
    """
    doc: dict[str, Any] = {
        "id": bot_id,
        "kind": "live",
        "namespace": namespace,
        "object_name": pod.name if pod else (want.pod_name if want else ""),
        "phase": PHASE_CREATING,
        "restarts": pod.assessment.restarts if pod else 0,
        "reason": "",
        "message": "",
        "observed_config_hash": pod.config_hash if pod else "",
        "desired_config_hash": want.config_hash if want else "",
    }
    if pod is not None:
        doc["phase"] = _PHASE_OF_HEALTH[pod.assessment.health]
        doc["reason"] = pod.assessment.reason
        doc["message"] = pod.assessment.message
    if invalid is not None:
        doc.update(phase=PHASE_INVALID, reason=invalid.reason, message=str(invalid),
                   last_error=str(invalid))
    elif disabled and pod is None:
        doc["phase"] = PHASE_DISABLED
    elif backing_off and pod is None and want is not None:
        doc.update(phase=PHASE_BACKING_OFF, reason="CreateFailed",
                   message="the last attempt failed (see last_error); retrying after backoff")
    return doc


def with_warnings(statuses: Mapping[str, dict[str, Any]],
                  warnings: Mapping[str, Sequence[str]], *, reason: str
                  ) -> dict[str, dict[str, Any]]:
    """The statuses, each bot's warnings added (`warnings`: [{reason, message}]). A bot without
    warnings gets no key, so its status and fingerprint are what they were before warnings."""
    result = dict(statuses)
    for bot_id, messages in warnings.items():
        if messages and bot_id in result:
            result[bot_id] = {**result[bot_id],
                              "warnings": [{"reason": reason, "message": m} for m in messages]}
    return result


def fingerprint(doc: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in doc.items() if k != "updated_at"}))[:16]


PHASE_SCHEDULED = "Scheduled"
PHASE_ACTIVE = "Active"


def _job_failure(job: Mapping[str, Any]) -> dict[str, Any] | None:
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return {"job": (job.get("metadata") or {}).get("name", ""),
                    "reason": str(condition.get("reason") or "Failed"),
                    "message": str(condition.get("message") or "")[:300],
                    "time": condition.get("lastTransitionTime")}
    return None


def _job_outcome(job: Mapping[str, Any]) -> dict[str, Any] | None:
    """A finished Job's run: which job, "succeeded" or "failed", and when it finished."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        kind = condition.get("type")
        if kind in ("Complete", "Failed") and condition.get("status") == "True":
            return {"job": (job.get("metadata") or {}).get("name", ""),
                    "result": "succeeded" if kind == "Complete" else "failed",
                    "finished_at": condition.get("lastTransitionTime")}
    return None


def observed_schedule_status(*, bot_id: str, namespace: str, cronjob: Mapping[str, Any] | None,
                             jobs: Sequence[Mapping[str, Any]], want: DesiredBot | None,
                             invalid: InvalidBot | None, disabled: bool, backing_off: bool,
                             next_run_time: str | None) -> dict[str, Any]:
    """What the reconcile can say about one scheduled bot, from its CronJob and its Jobs."""
    spec = (cronjob or {}).get("spec") or {}
    status = (cronjob or {}).get("status") or {}
    annotations = ((cronjob or {}).get("metadata") or {}).get("annotations") or {}
    failures = [f for f in map(_job_failure, jobs) if f is not None]
    last_failure = max(failures, key=lambda f: str(f["time"] or "")) if failures else None
    runs = [r for r in map(_job_outcome, jobs) if r is not None]
    last_run = max(runs, key=lambda r: (str(r["finished_at"] or ""), r["job"])) if runs else None
    active = sorted(str(ref.get("name")) for ref in status.get("active") or [])
    doc: dict[str, Any] = {
        "id": bot_id,
        "kind": "scheduled",
        "namespace": namespace,
        "object_name": ((cronjob or {}).get("metadata") or {}).get("name")
        or (want.pod_name if want else ""),
        "phase": PHASE_CREATING,
        "reason": "",
        "message": "",
        "schedule": spec.get("schedule", ""),
        "timezone": spec.get("timeZone", ""),
        "next_run_time": next_run_time if cronjob is not None else None,
        "last_schedule_time": status.get("lastScheduleTime"),
        "last_successful_time": status.get("lastSuccessfulTime"),
        "active_jobs": active,
        "last_failure": last_failure,
        "last_run": last_run,
        "observed_config_hash": annotations.get("the0.dev/config-hash", ""),
        "desired_config_hash": want.config_hash if want else "",
    }
    if cronjob is not None:
        doc["phase"] = PHASE_ACTIVE if active else PHASE_SCHEDULED
    if invalid is not None:
        doc.update(phase=PHASE_INVALID, reason=invalid.reason, message=str(invalid),
                   last_error=str(invalid))
    elif disabled and cronjob is None:
        doc["phase"] = PHASE_DISABLED
    elif backing_off and cronjob is None and want is not None:
        doc.update(phase=PHASE_BACKING_OFF, reason="CreateFailed",
                   message="the last attempt failed (see last_error); retrying after backoff")
    return doc


# Routine phases are written after the others when a pass cannot write every change.
_ROUTINE_PHASES = frozenset({PHASE_RUNNING, PHASE_PENDING, PHASE_CREATING, PHASE_SCHEDULED,
                             PHASE_ACTIVE})


@dataclass(frozen=True)
class StatusDiff:
    """What a pass must write: changed documents (errors first), their new fingerprints, and
    the bots whose stored status no longer has a bot or an object behind it."""

    changed: list[dict[str, Any]]
    fingerprints: dict[str, str]
    gone: list[str]


def diff_statuses(current: Mapping[str, dict[str, Any]], *, stored: Mapping[str, str],
                  last_errors: Mapping[str, str], updated_at: str) -> StatusDiff:
    """Compares each bot's status as observed now (`current`, without `last_error` and
    `updated_at`) with the fingerprints of the stored ones."""
    changed: list[dict[str, Any]] = []
    fingerprints: dict[str, str] = {}
    for bot_id, observed in current.items():
        doc = dict(observed)
        doc.setdefault("last_error", last_errors.get(bot_id, ""))
        mark = fingerprint(doc)
        if stored.get(bot_id) != mark:
            doc["updated_at"] = updated_at
            changed.append(doc)
            fingerprints[bot_id] = mark
    changed.sort(key=lambda d: (d["phase"] in _ROUTINE_PHASES, d["id"]))
    return StatusDiff(changed=changed, fingerprints=fingerprints,
                      gone=[bot_id for bot_id in stored if bot_id not in current])
