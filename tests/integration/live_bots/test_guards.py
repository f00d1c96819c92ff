"""Guards against acting on a world that has moved, on the real stack:
- the delete precondition: a task that decided to delete a pod which meanwhile was replaced by a
  successor of the same name never removes that successor, nor anything of it (its Secret);
- a bot whose document turns invalid keeps its running pod, untouched, with status Invalid —
  by the pass and by a per-bot task alike;
- an earlier pod's Secret that the garbage collector removes between our refused create and
  our read of it is simply created (it used to fail the task with NotFound)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.bots import bot_doc, run_pass, wait_for
from worker.core.naming import ANNOTATION_BOT_ID
from worker.reconcile.controller import LiveBotController
from worker.runtime import Runtime
from worker.settings import load_settings


class ActOnceAfter:
    """The adapter's request observer (`Runtime(kube_observer=…)`): `act` runs once, right
    after the first request that ends as `request` — (verb, resource, HTTP status)."""

    def __init__(self, request: tuple[str, str, int]) -> None:
        self.request = request
        self.act: Callable[[], None] | None = None
        self.fired = False

    def __call__(self, verb: str, resource: str, status: int) -> None:
        if (verb, resource, status) == self.request and self.act is not None:
            act, self.act = self.act, None
            act()
            self.fired = True


@pytest.fixture
def observed_controller(settings_env: dict[str, str], bucket_code: str
                        ) -> Iterator[tuple[LiveBotController, ActOnceAfter]]:
    # After the first successful GET of a pod: between a task's read and its action.
    hook = ActOnceAfter(("get", "pods", 200))
    rt = Runtime(load_settings(env={**settings_env, "LOG_COLLECT_ON_DELETE": "false"}),
                 kube_observer=hook)
    yield LiveBotController(rt), hook
    rt.close()


def replace_by_someone_else(core: Any, namespace: str, name: str) -> tuple[str, str]:
    """Deletes the pod and its Secret, then creates a successor of the same name with its own
    Secret (owned by it): what a zombie worker or an operator could do. Returns the
    successor's and its Secret's uids."""
    old = core.read_namespaced_pod(name, namespace)
    secret = core.read_namespaced_secret(f"{name}-config", namespace)
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    with contextlib.suppress(client.ApiException):  # or the garbage collector was quicker
        core.delete_namespaced_secret(f"{name}-config", namespace)
    wait_for(lambda: not [o for o in core.list_namespaced_pod(namespace).items
                          + core.list_namespaced_secret(namespace).items
                          if o.metadata.name in (name, f"{name}-config")],
             "the old pod and its Secret gone", timeout=15)
    body = client.ApiClient().sanitize_for_serialization(old)
    body["metadata"] = {"name": name, "labels": old.metadata.labels,
                        "annotations": old.metadata.annotations}
    body.pop("status", None)
    body["spec"].pop("nodeName", None)
    successor = core.create_namespaced_pod(namespace, body)
    new_secret = core.create_namespaced_secret(namespace, {
        "metadata": {"name": f"{name}-config", "labels": secret.metadata.labels,
                     "annotations": secret.metadata.annotations,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name,
                                          "uid": successor.metadata.uid}]},
        "data": secret.data})
    return successor.metadata.uid, new_secret.metadata.uid


def test_a_stale_delete_never_removes_the_successor_of_the_same_name(
        controller: LiveBotController,
        observed_controller: tuple[LiveBotController, ActOnceAfter], bots: Any,
        core: Any, restricted_namespace: str) -> None:
    bots.insert_one(bot_doc("stale"))
    run_pass(controller)
    bots.update_one({"id": "stale"}, {"$set": {"enabled": False}})  # its pod is to go
    stale, hook = observed_controller
    successor: list[tuple[str, str]] = []
    # The task reads the pod, then — before it deletes what it read — the pod is replaced.
    hook.act = lambda: successor.append(
        replace_by_someone_else(core, restricted_namespace, "bot-stale"))
    stale.converge("stale", intent="delete")
    [(pod_uid, secret_uid)] = successor
    pod = core.read_namespaced_pod("bot-stale", restricted_namespace)
    assert pod.metadata.uid == pod_uid and pod.metadata.deletion_timestamp is None
    secrets = {s.metadata.name: s.metadata.uid
               for s in core.list_namespaced_secret(restricted_namespace).items}
    assert secrets.get("bot-stale-config") == secret_uid, (
        "the stale delete removed the successor's Secret (its pod can no longer start)")


def test_an_invalid_document_leaves_its_running_pod_alone(
        controller: LiveBotController, bots: Any, statuses: Any, core: Any,
        restricted_namespace: str) -> None:
    bots.insert_many([bot_doc("turns-bad"), bot_doc("bystander")])
    run_pass(controller)
    wait_for(lambda: all(p.status.phase == "Running"
                         for p in core.list_namespaced_pod(restricted_namespace).items),
             "pods Running")
    before = {p.metadata.name: p.metadata.uid
              for p in core.list_namespaced_pod(restricted_namespace).items}
    bots.update_one({"id": "turns-bad"}, {"$set": {"custom.config.runtime": "cobol85"}})
    report, outcomes = run_pass(controller)
    assert outcomes == [] and sum(report.counts.values()) == 0 and report.invalid == 1
    status = statuses.find_one({"id": "turns-bad"})
    assert status["phase"] == "Invalid" and status["reason"] == "unknown_runtime"
    assert status["object_name"] == "bot-turns-bad"
    assert statuses.find_one({"id": "bystander"})["phase"] == "Running"
    # A per-bot task (an event, a duplicate) decides the same.
    assert controller.converge("turns-bad", intent="event") == "nothing"
    after = {p.metadata.name: p for p in core.list_namespaced_pod(restricted_namespace).items}
    assert {name: p.metadata.uid for name, p in after.items()} == before
    assert after["bot-turns-bad"].metadata.deletion_timestamp is None
    assert after["bot-turns-bad"].metadata.annotations[ANNOTATION_BOT_ID] == "turns-bad"
    # Fixed back to what the pod was built from: nothing to do, Running again.
    bots.update_one({"id": "turns-bad"}, {"$set": {"custom.config.runtime": "python3.11"}})
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.invalid == 0
    assert statuses.find_one({"id": "turns-bad"})["phase"] == "Running"


def test_a_leftover_secret_collected_before_it_is_read_is_simply_created(
        settings_env: dict[str, str], bucket_code: str, bots: Any, core: Any,
        restricted_namespace: str) -> None:
    hook = ActOnceAfter(("create", "secrets", 409))  # before we read what is in the way
    rt = Runtime(load_settings(env=settings_env), kube_observer=hook)
    try:
        # An earlier pod's Secret of the same name, not collected yet ...
        core.create_namespaced_secret(restricted_namespace, {
            "metadata": {"name": "bot-racer-config"}, "stringData": {"BOT_CONFIG": "{}"}})
        # ... and the garbage collector wins the race, every time: it goes right after our
        # create is refused, before we read it.
        hook.act = lambda: core.delete_namespaced_secret("bot-racer-config",
                                                         restricted_namespace)
        bots.insert_one(bot_doc("racer"))
        _, outcomes = run_pass(LiveBotController(rt))
        assert hook.fired and outcomes == ["created"]
        pod = core.read_namespaced_pod("bot-racer", restricted_namespace)
        secret = core.read_namespaced_secret("bot-racer-config", restricted_namespace)
        assert [o.uid for o in secret.metadata.owner_references] == [pod.metadata.uid]
    finally:
        rt.close()
