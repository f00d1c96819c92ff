"""KUBE_WATCH=false on the real stack: every pass lists pods (CronJobs, Jobs) afresh, no watch
is ever opened, so the controller works under the shipped Role with `watch` taken out, and a
change someone else made is acted on by the very next pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.bots import bot_doc, run_pass, schedule_doc, wait_for
from tests.support.levers import controller_role_without, regrant_controller
from tools.stack.supervisor import Stack
from worker.reconcile.controller import LiveBotController, ScheduleController
from worker.runtime import Runtime
from worker.settings import load_settings


@pytest.fixture
def no_watch_right(stack: Stack, admin_api: Any, restricted_namespace: str) -> Iterator[None]:
    for group, resource in (("", "pods"), ("batch", "cronjobs"), ("batch", "jobs")):
        controller_role_without(stack, admin_api, restricted_namespace, group=group,
                                resource=resource, verb="watch")
    yield
    regrant_controller(stack, admin_api, restricted_namespace)


@pytest.fixture
def unwatched(settings_env: dict[str, str], bucket_code: str) -> Iterator[Runtime]:
    rt = Runtime(load_settings(env={**settings_env, "KUBE_WATCH": "false"}))
    yield rt
    rt.close()


def test_without_watching_every_pass_lists_and_sees_others_changes_at_once(
        no_watch_right: None, unwatched: Runtime, bots: Any, core: Any,
        restricted_namespace: str) -> None:
    controller = LiveBotController(unwatched)
    bots.insert_many([bot_doc("w1"), bot_doc("w2")])
    _, outcomes = run_pass(controller)
    assert outcomes == ["created", "created"]
    lists = unwatched.kube.list_requests
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.bots["desired"] == 2
    assert unwatched.kube.list_requests > lists  # listed again, not served from memory
    # Someone else deletes a pod: the next pass, at once, sees it gone (no cache to follow).
    core.delete_namespaced_pod("bot-w1", restricted_namespace, grace_period_seconds=0)
    wait_for(lambda: "bot-w1" not in {p.metadata.name for p in core.list_namespaced_pod(
        restricted_namespace).items}, "the pod gone", timeout=10, interval=0.05)
    _, outcomes = run_pass(controller)
    assert outcomes == ["created"]
    assert unwatched.kube.watch_requests == 0 and unwatched.informers() == []


def test_without_watching_schedules_converge_too(
        no_watch_right: None, unwatched: Runtime, mongo: Any, db_names: dict[str, str],
        admin_api: Any, restricted_namespace: str) -> None:
    controller = ScheduleController(unwatched)
    schedules = mongo[db_names["bot_scheduler"]]["bot_schedules"]
    batch = client.BatchV1Api(admin_api)
    schedules.insert_many([schedule_doc("n1"), schedule_doc("n2", "15 4 * * *")])
    _, outcomes = run_pass(controller)
    assert outcomes == ["created", "created"]
    report, outcomes = run_pass(controller)
    assert outcomes == [] and sum(report.counts.values()) == 0
    batch.delete_namespaced_cron_job("schedule-n2", restricted_namespace)
    wait_for(lambda: "schedule-n2" not in {c.metadata.name for c in batch.list_namespaced_cron_job(
        restricted_namespace).items}, "the CronJob gone", timeout=10, interval=0.05)
    _, outcomes = run_pass(controller)
    assert outcomes == ["created"]
    assert unwatched.kube.watch_requests == 0 and unwatched.informers() == []

