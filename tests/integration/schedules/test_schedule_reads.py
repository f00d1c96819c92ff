"""The schedule pass never acts on a failed or partial read: Mongo down, its Jobs list refused
(the CronJob list still answering), all its lists refused. Each time the world holds changes
a pass would act on (a schedule removed, one added, one reconfigured), and the pass ends with
ReadFailed, nothing enqueued and nothing written: CronJobs, Secrets, status documents and
in-flight marks exactly as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.bots import run_pass, schedule_doc
from tests.support.levers import controller_role_without, regrant_controller, revoke_controller
from tools.stack.supervisor import Stack
from worker.core.errors import ReadFailed
from worker.reconcile.controller import ScheduleController

IDS = ["s1", "s2", "s3", "s4"]


def scheduled(make: Callable[..., ScheduleController], schedules: Any) -> None:
    schedules.insert_many([schedule_doc(bot_id, f"{i} 3 * * *") for i, bot_id in enumerate(IDS)])
    _, outcomes = run_pass(make())
    assert outcomes == ["created"] * len(IDS)
    schedules.delete_one({"id": "s1"})
    schedules.insert_one(schedule_doc("s5"))
    schedules.update_one({"id": "s2"}, {"$set": {"config.risk": "high"}})


def world(batch: Any, core: Any, statuses: Any, redis_client: Any,
          namespace: str) -> dict[str, Any]:
    return {"cronjobs": sorted((c.metadata.name, c.metadata.uid, c.metadata.resource_version)
                               for c in batch.list_namespaced_cron_job(namespace).items),
            "secrets": sorted((s.metadata.name, s.metadata.resource_version)
                              for s in core.list_namespaced_secret(namespace).items),
            "statuses": sorted(str(d) for d in statuses.find({}, {"_id": False})),
            "inflight": sorted(redis_client.keys("the0:inflight:*"))}


def fails_with_nothing_written(controller: ScheduleController, match: str,
                               snapshot: Callable[[], dict[str, Any]]) -> None:
    before = snapshot()
    queued: list[Any] = []
    with pytest.raises(ReadFailed, match=match):
        controller.reconcile(enqueue=lambda action, _as_of: queued.append(action))
    assert queued == []
    assert snapshot() == before


@pytest.fixture
def snapshot(batch: Any, core: Any, schedule_statuses: Any, redis_client: Any,
             restricted_namespace: str) -> Callable[[], dict[str, Any]]:
    return lambda: world(batch, core, schedule_statuses, redis_client, restricted_namespace)


def test_mongo_down_fails_the_schedule_pass_with_nothing_written(
        stack: Stack, make_schedule_controller: Callable[..., ScheduleController],
        schedules: Any, snapshot: Callable[[], dict[str, Any]]) -> None:
    scheduled(make_schedule_controller, schedules)
    controller = make_schedule_controller(MONGO_TIMEOUT="3s")
    before = snapshot()
    queued: list[Any] = []
    with stack.stopped("ferretdb"), pytest.raises(ReadFailed, match="mongo"):
        controller.reconcile(enqueue=lambda action, _as_of: queued.append(action))
    assert queued == [] and snapshot() == before  # (status documents read with Mongo back)
    _, outcomes = run_pass(controller)
    assert sorted(outcomes) == ["created", "deleted", "updated"]


def refuse_jobs(stack: Stack, admin_api: Any, namespace: str) -> None:
    controller_role_without(stack, admin_api, namespace, group="batch", resource="jobs",
                            verb="list")


def refuse_all(stack: Stack, admin_api: Any, namespace: str) -> None:
    revoke_controller(admin_api, namespace)


@pytest.mark.parametrize("kube_watch", ["true", "false"])
@pytest.mark.parametrize(("refuse", "failed"), [
    (refuse_jobs, "jobs"),  # the Jobs list refused while the CronJob list answers
    (refuse_all, "(cronjobs|jobs)"),  # both refused: whichever fails first
], ids=["jobs-refused", "all-refused"])
def test_a_refused_list_fails_the_schedule_pass(
        kube_watch: str, refuse: Callable[[Stack, Any, str], None], failed: str,
        stack: Stack, admin_api: Any,
        make_schedule_controller: Callable[..., ScheduleController], schedules: Any,
        restricted_namespace: str, snapshot: Callable[[], dict[str, Any]]) -> None:
    scheduled(make_schedule_controller, schedules)
    controller = make_schedule_controller(KUBE_WATCH=kube_watch)  # its first read lists
    refuse(stack, admin_api, restricted_namespace)
    try:
        fails_with_nothing_written(
            controller, f"listing {failed} failed after 0 items: kubernetes: 403", snapshot)
    finally:
        regrant_controller(stack, admin_api, restricted_namespace)
    _, outcomes = run_pass(controller)
    assert sorted(outcomes) == ["created", "deleted", "updated"]
