"""A scheduled bot's status from its CronJob and Jobs: the last run's result."""

from typing import Any

from worker.core.status import observed_schedule_status


def job(name: str, condition: str, at: str, reason: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"conditions": [{"type": condition, "status": "True", "reason": reason,
                                       "lastTransitionTime": at}]}}


def status_with(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    cronjob = {"metadata": {"name": "schedule-a"}, "spec": {"schedule": "0 3 * * *"}}
    return observed_schedule_status(bot_id="a", namespace="the0", cronjob=cronjob, jobs=jobs,
                                    want=None, invalid=None, disabled=False, backing_off=False,
                                    next_run_time=None)


def test_no_finished_run_means_no_last_run() -> None:
    running = {"metadata": {"name": "schedule-a-1"}, "status": {"active": 1}}
    assert status_with([running])["last_run"] is None


def test_the_newest_finished_job_is_the_last_run() -> None:
    doc = status_with([
        job("schedule-a-1", "Failed", "2026-11-30T03:00:09Z", "BackoffLimitExceeded"),
        job("schedule-a-2", "Complete", "2026-11-30T04:00:07Z")])
    assert doc["last_run"] == {"job": "schedule-a-2", "result": "succeeded",
                               "finished_at": "2026-11-30T04:00:07Z"}
    assert doc["last_failure"]["job"] == "schedule-a-1"


def test_a_failed_last_run_says_failed() -> None:
    doc = status_with([job("schedule-a-1", "Complete", "2026-11-30T03:00:09Z"),
                       job("schedule-a-2", "Failed", "2026-11-30T04:00:07Z")])
    assert doc["last_run"]["result"] == "failed"
