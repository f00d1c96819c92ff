"""The status document of one bot, written out field by field for each situation a pass meets.

Expected documents are typed out in full (not built from the product's helpers): every field a
reader of `bot_status` / `schedule_status` sees is pinned, so a changed phase, reason, message or
key is a failing test.
"""

from typing import Any

import pytest

from worker.core.bot import BotId
from worker.core.errors import InvalidBot
from worker.core.planner import DesiredBot, ObservedPod
from worker.core.podstatus import PodAssessment, PodHealth
from worker.core.status import observed_schedule_status, observed_status

WANT = DesiredBot(bot_id=BotId("b1"), config_hash="want-hash", pod_name="bot-b1-x")
BAD = InvalidBot("b1", "unknown_runtime", "runtime 'cobol' is not one of the0's")
BAD_TEXT = "bot 'b1': runtime 'cobol' is not one of the0's (unknown_runtime)"
BACKING_OFF_MESSAGE = "the last attempt failed (see last_error); retrying after backoff"


def pod(health: PodHealth, *, reason: str = "", message: str = "", restarts: int = 0,
        config_hash: str = "pod-hash") -> ObservedPod:
    return ObservedPod(name="bot-b1-x", bot_id=BotId("b1"), config_hash=config_hash, uid="u1",
                       assessment=PodAssessment(health=health, reason=reason, message=message,
                                                restarts=restarts, phase="Running"))


def live(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"bot_id": "b1", "namespace": "the0", "pod": None, "want": WANT,
                            "invalid": None, "disabled": False, "backing_off": False}
    args.update(overrides)
    return observed_status(**args)


def live_doc(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "b1", "kind": "live", "namespace": "the0",
                           "object_name": "bot-b1-x", "phase": "Creating", "restarts": 0,
                           "reason": "", "message": "", "observed_config_hash": "",
                           "desired_config_hash": "want-hash"}
    doc.update(fields)
    return doc


def test_a_wanted_bot_without_its_pod_is_creating() -> None:
    assert live() == live_doc()


def test_a_running_pod_gives_its_health_restarts_and_hash() -> None:
    assert live(pod=pod(PodHealth.RUNNING, restarts=3)) == live_doc(
        phase="Running", restarts=3, observed_config_hash="pod-hash")


@pytest.mark.parametrize(("health", "phase"), [(PodHealth.PENDING, "Pending"),
                                               (PodHealth.TERMINATING, "Terminating"),
                                               (PodHealth.BROKEN, "Broken")])
def test_each_pod_health_has_its_phase_with_the_pods_reason_and_message(
        health: PodHealth, phase: str) -> None:
    observed = pod(health, reason="CrashLoopBackOff", message="back-off 5m0s", restarts=7)
    assert live(pod=observed) == live_doc(phase=phase, restarts=7, reason="CrashLoopBackOff",
                                          message="back-off 5m0s",
                                          observed_config_hash="pod-hash")


def test_a_pod_of_a_bot_no_longer_wanted_names_the_pod() -> None:
    assert live(pod=pod(PodHealth.RUNNING), want=None) == live_doc(
        phase="Running", observed_config_hash="pod-hash", desired_config_hash="")


def test_nothing_known_gives_an_empty_object_name() -> None:
    assert live(want=None) == live_doc(object_name="", desired_config_hash="")


def test_an_invalid_document_says_why_even_beside_its_running_pod() -> None:
    expected = live_doc(phase="Invalid", restarts=2, reason="unknown_runtime", message=BAD_TEXT,
                        last_error=BAD_TEXT, observed_config_hash="pod-hash",
                        desired_config_hash="")
    assert live(pod=pod(PodHealth.RUNNING, restarts=2), want=None, invalid=BAD) == expected
    assert live(pod=pod(PodHealth.RUNNING, restarts=2), want=None, invalid=BAD,
                disabled=True, backing_off=True) == expected


def test_a_disabled_bot_is_disabled_once_its_pod_is_gone() -> None:
    assert live(want=None, disabled=True) == live_doc(phase="Disabled", object_name="",
                                                      desired_config_hash="")
    # While its pod still runs (the delete is on its way), the pod is what there is to say.
    assert live(pod=pod(PodHealth.TERMINATING), want=None, disabled=True) == live_doc(
        phase="Terminating", observed_config_hash="pod-hash", desired_config_hash="")


def test_a_failed_create_backing_off_says_so_until_a_pod_exists() -> None:
    assert live(backing_off=True) == live_doc(phase="BackingOff", reason="CreateFailed",
                                              message=BACKING_OFF_MESSAGE)
    assert live(pod=pod(PodHealth.PENDING), backing_off=True) == live_doc(
        phase="Pending", observed_config_hash="pod-hash")
    # Backing off without being wanted is a leftover mark, not a state of the bot.
    assert live(want=None, backing_off=True)["phase"] == "Creating"


# --- scheduled bots -----------------------------------------------------------------------

SCHEDULE_WANT = DesiredBot(bot_id=BotId("s1"), config_hash="want-hash", pod_name="sched-s1-x")
SCHEDULE_BAD = InvalidBot("s1", "invalid_schedule", "the schedule is not a cron expression")
SCHEDULE_BAD_TEXT = "bot 's1': the schedule is not a cron expression (invalid_schedule)"


def cronjob(*, active: tuple[str, ...] = (), **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "sched-s1-x",
                         "annotations": {"the0.dev/config-hash": "cj-hash", "other": "x"}},
            "spec": {"schedule": "*/5 * * * *", "timeZone": "Europe/Paris"},
            "status": {"active": [{"name": name} for name in active], **status}}


def job(name: str, kind: str, at: str | None, *, status: str = "True", reason: str | None = None,
        message: str | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": status, "lastTransitionTime": at}
    if reason is not None:
        condition["reason"] = reason
    if message is not None:
        condition["message"] = message
    return {"metadata": {"name": name}, "status": {"conditions": [condition]}}


def scheduled(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"bot_id": "s1", "namespace": "the0", "cronjob": None, "jobs": [],
                            "want": SCHEDULE_WANT, "invalid": None, "disabled": False,
                            "backing_off": False, "next_run_time": "2026-12-01T10:05:00Z"}
    args.update(overrides)
    return observed_schedule_status(**args)


def schedule_doc(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "s1", "kind": "scheduled", "namespace": "the0", "object_name": "sched-s1-x",
        "phase": "Creating", "reason": "", "message": "", "schedule": "", "timezone": "",
        "next_run_time": None, "last_schedule_time": None, "last_successful_time": None,
        "active_jobs": [], "last_failure": None, "last_run": None,
        "observed_config_hash": "", "desired_config_hash": "want-hash"}
    doc.update(fields)
    return doc


def test_a_wanted_schedule_without_its_cronjob_is_creating_with_no_next_run() -> None:
    assert scheduled() == schedule_doc()


def test_a_cronjob_gives_its_schedule_times_and_hash() -> None:
    observed = cronjob(lastScheduleTime="2026-12-01T10:00:00Z",
                       lastSuccessfulTime="2026-12-01T10:00:41Z")
    assert scheduled(cronjob=observed) == schedule_doc(
        phase="Scheduled", schedule="*/5 * * * *", timezone="Europe/Paris",
        next_run_time="2026-12-01T10:05:00Z", last_schedule_time="2026-12-01T10:00:00Z",
        last_successful_time="2026-12-01T10:00:41Z", observed_config_hash="cj-hash")


def test_a_cronjob_with_running_jobs_is_active_and_lists_them_sorted() -> None:
    doc = scheduled(cronjob=cronjob(active=("sched-s1-x-29", "sched-s1-x-28")))
    assert doc["phase"] == "Active"
    assert doc["active_jobs"] == ["sched-s1-x-28", "sched-s1-x-29"]


def test_a_cronjob_without_metadata_spec_or_status_reads_as_empty() -> None:
    assert scheduled(cronjob={}, want=None) == schedule_doc(
        phase="Scheduled", object_name="", desired_config_hash="",
        next_run_time="2026-12-01T10:05:00Z")


def test_the_newest_failure_and_the_newest_run_are_reported() -> None:
    jobs = [job("j1", "Failed", "2026-12-01T08:00:00Z", reason="DeadlineExceeded",
                message="x" * 400),
            job("j2", "Failed", "2026-12-01T09:00:00Z"),
            job("j3", "Complete", "2026-12-01T09:30:00Z"),
            job("j4", "Failed", "2026-12-01T09:45:00Z", status="False"),
            job("j5", "Suspended", "2026-12-01T09:50:00Z"),
            {"metadata": {"name": "j6"}},
            {"status": {"conditions": [{"type": "Complete", "status": "True",
                                        "lastTransitionTime": "2026-12-01T07:00:00Z"}]}}]
    doc = scheduled(cronjob=cronjob(), jobs=jobs)
    assert doc["last_failure"] == {"job": "j2", "reason": "Failed", "message": "",
                                   "time": "2026-12-01T09:00:00Z"}
    assert doc["last_run"] == {"job": "j3", "result": "succeeded",
                               "finished_at": "2026-12-01T09:30:00Z"}
    older = scheduled(cronjob=cronjob(), jobs=jobs[:1])
    assert older["last_failure"] == {"job": "j1", "reason": "DeadlineExceeded",
                                     "message": "x" * 300, "time": "2026-12-01T08:00:00Z"}
    assert older["last_run"] == {"job": "j1", "result": "failed",
                                 "finished_at": "2026-12-01T08:00:00Z"}
    nameless = scheduled(cronjob=cronjob(), jobs=jobs[-1:])
    assert nameless["last_run"] == {"job": "", "result": "succeeded",
                                    "finished_at": "2026-12-01T07:00:00Z"}


def test_runs_finished_at_the_same_moment_are_told_apart_by_name_and_a_missing_time_is_oldest(
        ) -> None:
    same = [job("j-b", "Complete", "2026-12-01T09:00:00Z"),
            job("j-a", "Failed", "2026-12-01T09:00:00Z"),
            job("j-c", "Complete", None)]
    assert scheduled(cronjob=cronjob(), jobs=same)["last_run"]["job"] == "j-b"
    assert scheduled(cronjob=cronjob(), jobs=list(reversed(same)))["last_run"]["job"] == "j-b"
    failures = [job("f-none", "Failed", None), job("f-at", "Failed", "2026-12-01T01:00:00Z")]
    assert scheduled(cronjob=cronjob(), jobs=failures)["last_failure"]["job"] == "f-at"
    assert scheduled(cronjob=cronjob(), jobs=failures[::-1])["last_failure"]["job"] == "f-at"


def test_an_invalid_schedule_says_why_even_beside_its_cronjob() -> None:
    doc = scheduled(cronjob=cronjob(), want=None, invalid=SCHEDULE_BAD, disabled=True,
                    backing_off=True)
    assert doc == schedule_doc(
        phase="Invalid", reason="invalid_schedule", message=SCHEDULE_BAD_TEXT,
        last_error=SCHEDULE_BAD_TEXT, schedule="*/5 * * * *", timezone="Europe/Paris",
        next_run_time="2026-12-01T10:05:00Z", observed_config_hash="cj-hash",
        desired_config_hash="")


def test_a_disabled_schedule_is_disabled_once_its_cronjob_is_gone() -> None:
    assert scheduled(want=None, disabled=True) == schedule_doc(
        phase="Disabled", object_name="", desired_config_hash="")
    assert scheduled(cronjob=cronjob(), want=None, disabled=True)["phase"] == "Scheduled"


def test_a_failed_schedule_create_backing_off_says_so_until_a_cronjob_exists() -> None:
    assert scheduled(backing_off=True) == schedule_doc(
        phase="BackingOff", reason="CreateFailed", message=BACKING_OFF_MESSAGE)
    assert scheduled(cronjob=cronjob(), backing_off=True)["phase"] == "Scheduled"
    assert scheduled(want=None, backing_off=True)["phase"] == "Creating"
