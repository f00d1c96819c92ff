"""Scheduled bots → CronJobs against the real stack (kube-controller-manager running)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.bots import run_pass, schedule_doc, wait_for
from worker import keys
from worker.reconcile.controller import LiveBotController, ScheduleController

SELECTOR = "managed-by=the0-schedule-controller"


def cronjobs_of(batch: Any, namespace: str) -> dict[str, Any]:
    return {c.metadata.name: c for c in batch.list_namespaced_cron_job(
        namespace, label_selector=SELECTOR).items}


def run_job_from(batch: Any, namespace: str, cronjob: Any, name: str) -> None:
    """What the CronJob controller does at the scheduled minute, done now."""
    template = client.ApiClient().sanitize_for_serialization(cronjob.spec.job_template)
    batch.create_namespaced_job(namespace, {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": template["metadata"]["labels"],
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                          "name": cronjob.metadata.name,
                                          "uid": cronjob.metadata.uid, "controller": True}]},
        "spec": template["spec"]})


def test_each_enabled_schedule_gets_one_cronjob_that_runs_its_job(
        schedule_controller: ScheduleController, schedules: Any, schedule_statuses: Any,
        batch: Any, core: Any, restricted_namespace: str) -> None:
    schedules.insert_many([schedule_doc("dca-btc", "0 0 9 * * MON-FRI",
                                        timezone="Europe/London"),
                           schedule_doc("rebalance", "30 2 * * *")])
    _report, outcomes = run_pass(schedule_controller)
    assert sorted(outcomes) == ["created", "created"]
    cronjobs = cronjobs_of(batch, restricted_namespace)
    assert sorted(cronjobs) == ["schedule-dca-btc", "schedule-rebalance"]
    dca = cronjobs["schedule-dca-btc"]
    assert dca.spec.schedule == "0 9 * * MON-FRI"        # 6-field, seconds 0: lossless
    assert dca.spec.time_zone == "UTC"  # as in the0; `timezone` is the bot's own parameter
    assert dca.spec.concurrency_policy == "Forbid"
    assert dca.spec.job_template.spec.backoff_limit == 0   # a failed trade is not re-run
    assert dca.spec.job_template.spec.template.spec.restart_policy == "Never"
    secret = core.read_namespaced_secret("schedule-dca-btc-config", restricted_namespace)
    assert secret.metadata.owner_references[0].uid == dca.metadata.uid

    run_job_from(batch, restricted_namespace, dca, "dca-btc-manual")
    wait_for(lambda: (batch.read_namespaced_job("dca-btc-manual", restricted_namespace)
                      .status.succeeded or 0) >= 1, "job Succeeded", timeout=60)
    run_pass(schedule_controller)
    status = schedule_statuses.find_one({"id": "dca-btc"})
    assert status["phase"] in ("Scheduled", "Active")
    assert status["schedule"] == "0 9 * * MON-FRI" and status["timezone"] == "UTC"
    assert status["next_run_time"] and status["next_run_time"].endswith("Z")
    _, again = run_pass(schedule_controller)
    assert again == []


def test_a_change_updates_the_cronjob_in_place(
        schedule_controller: ScheduleController, schedules: Any, batch: Any,
        restricted_namespace: str) -> None:
    schedules.insert_one(schedule_doc("grid", "*/15 * * * *"))
    run_pass(schedule_controller)
    before = batch.read_namespaced_cron_job("schedule-grid", restricted_namespace)
    schedules.update_one({"id": "grid"}, {"$set": {"config.schedule": "0 * * * *",
                                                   "config.levels": 12}})
    _, outcomes = run_pass(schedule_controller)
    assert outcomes == ["updated"]
    after = batch.read_namespaced_cron_job("schedule-grid", restricted_namespace)
    assert after.metadata.uid == before.metadata.uid
    assert after.spec.schedule == "0 * * * *"


def test_disabling_removes_the_cronjob_its_jobs_and_their_pods(
        schedule_controller: ScheduleController, schedules: Any, batch: Any, core: Any,
        restricted_namespace: str) -> None:
    schedules.insert_one(schedule_doc("nightly"))
    run_pass(schedule_controller)
    cronjob = batch.read_namespaced_cron_job("schedule-nightly", restricted_namespace)
    run_job_from(batch, restricted_namespace, cronjob, "nightly-run")
    wait_for(lambda: core.list_namespaced_pod(restricted_namespace,
                                              label_selector="job-name=nightly-run").items,
             "job pod exists")
    schedules.update_one({"id": "nightly"}, {"$set": {"config.enabled": "false"}})
    _, outcomes = run_pass(schedule_controller)
    assert outcomes == ["deleted"]

    def everything_gone() -> bool:
        jobs = batch.list_namespaced_job(restricted_namespace).items
        pods = core.list_namespaced_pod(restricted_namespace,
                                        label_selector="job-name=nightly-run").items
        return not cronjobs_of(batch, restricted_namespace) and not jobs and not pods

    wait_for(everything_gone, "cronjob, jobs and pods garbage-collected", timeout=60)


def test_bad_schedules_are_per_bot_errors_and_others_proceed(
        schedule_controller: ScheduleController, schedules: Any, schedule_statuses: Any,
        batch: Any, restricted_namespace: str) -> None:
    bad = {
        "sub-minute": ("*/10 * * * * *", None, "sub_minute_schedule"),
        "seconds-30": ("30 0 * * * *", None, "sub_minute_schedule"),
        "garbage": ("every day at noon", None, "invalid_schedule"),
        "minute-99": ("99 * * * *", None, "invalid_schedule"),
        "seven-fields": ("0 0 0 * * * 2026", None, "invalid_schedule"),
    }
    docs = [schedule_doc(bot_id, expr, timezone=tz) for bot_id, (expr, tz, _) in bad.items()]
    missing = schedule_doc("no-schedule")
    del missing["config"]["schedule"]
    # A bot's own `timezone` parameter, even one no time zone database knows, is not ours.
    docs += [missing, schedule_doc("good-one", "0 12 * * *", timezone="America/New_York"),
             schedule_doc("good-two", "0 12 * * *", timezone="UTC+8")]
    schedules.insert_many(docs)
    _report, outcomes = run_pass(schedule_controller)
    assert outcomes == ["created", "created"]
    assert sorted(cronjobs_of(batch, restricted_namespace)) == ["schedule-good-one",
                                                                 "schedule-good-two"]
    for bot_id, (_, _, reason) in bad.items():
        status = schedule_statuses.find_one({"id": bot_id})
        assert (status["phase"], status["reason"]) == ("Invalid", reason), bot_id
    assert schedule_statuses.find_one({"id": "no-schedule"})["reason"] == "missing_schedule"


@pytest.mark.slow(seconds=40)
def test_an_every_minute_cronjob_fires_by_itself(
        schedule_controller: ScheduleController, schedules: Any, schedule_statuses: Any,
        batch: Any, restricted_namespace: str) -> None:
    schedules.insert_one(schedule_doc("ticker", "* * * * *"))
    run_pass(schedule_controller)
    started = time.monotonic()

    def fired_job() -> Any:
        jobs = batch.list_namespaced_job(restricted_namespace).items
        return [j for j in jobs if (j.status.succeeded or 0) >= 1]

    wait_for(fired_job, "the CronJob controller fires a Job on the minute", timeout=75,
             interval=1)
    print(f"fired and succeeded after {time.monotonic() - started:.1f} s")
    run_pass(schedule_controller)
    status = schedule_statuses.find_one({"id": "ticker"})
    assert status["last_schedule_time"] is not None


def test_the_controller_identity_cannot_touch_cronjobs_elsewhere(
        controller_api: Any) -> None:
    with pytest.raises(ApiException) as info:
        client.BatchV1Api(controller_api).list_namespaced_cron_job("default")
    assert info.value.status == 403


def test_an_aging_code_url_is_re_signed_without_touching_the_cronjob_uid(
        make_schedule_controller: Any, schedules: Any, batch: Any, core: Any,
        restricted_namespace: str) -> None:
    schedules.insert_one(schedule_doc("weekly", "0 8 * * MON"))
    run_pass(make_schedule_controller())
    before = batch.read_namespaced_cron_job("schedule-weekly", restricted_namespace)
    secret_before = core.read_namespaced_secret("schedule-weekly-config", restricted_namespace)
    time.sleep(2)
    # With a 2 s URL lifetime the URL signed above is already past half of it.
    _report, outcomes = run_pass(make_schedule_controller(CODE_URL_TTL="2s"))
    assert outcomes == ["updated"]
    after = batch.read_namespaced_cron_job("schedule-weekly", restricted_namespace)
    secret_after = core.read_namespaced_secret("schedule-weekly-config", restricted_namespace)
    assert after.metadata.uid == before.metadata.uid
    assert secret_after.data["CODE_URL"] != secret_before.data["CODE_URL"]
    _, quiet = run_pass(make_schedule_controller())
    assert quiet == []


def test_the_pass_lock_is_per_kind_so_a_live_pass_never_holds_up_the_schedule_pass(
        make_controller: Any, schedule_controller: ScheduleController, schedules: Any,
        batch: Any, restricted_namespace: str) -> None:
    live: LiveBotController = make_controller()
    schedules.insert_one(schedule_doc("nightly", "0 3 * * *"))
    # Another worker's live pass is running (it holds the live pass lock).
    with live.rt.redis.hold(keys.reconcile_lock("live"), ttl=60) as held:
        assert held is not None
        live_report = live.reconcile(enqueue=lambda action, _as_of: None)
        schedule_report, outcomes = run_pass(schedule_controller)
    assert live_report.skipped
    assert not schedule_report.skipped and outcomes == ["created"]
    assert list(cronjobs_of(batch, restricted_namespace)) == ["schedule-nightly"]
