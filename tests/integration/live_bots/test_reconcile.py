"""Live bots → pods against the real stack, as the restricted controller identity."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from tests.support.bots import (
    CountedRequests,
    bot_doc,
    cache_sees,
    pass_without_actions,
    run_action,
    run_pass,
    wait_for,
)
from tests.support.watching import bot_of, events_since, list_pods, mark_pod, most_at_once
from tools.stack.supervisor import Stack
from worker import keys
from worker.core.bot import BotKind
from worker.core.errors import ReadFailed
from worker.core.naming import ANNOTATION_BOT_ID, ANNOTATION_CONFIG_HASH
from worker.core.planner import ActionKind
from worker.core.podstatus import PodHealth
from worker.reconcile.controller import LiveBotController
from worker.reconcile.converge import BotBusy, Call
from worker.reconcile.statuses import record_outcome
from worker.reconcile.waiting import Resume, StillTerminating
from worker.runtime import Runtime
from worker.settings import load_settings

SELECTOR = "managed-by=the0-bot-controller"


def pods_of(core: Any, namespace: str) -> dict[str, Any]:
    return {p.metadata.name: p for p in core.list_namespaced_pod(
        namespace, label_selector=SELECTOR).items}


def test_each_enabled_bot_gets_exactly_one_pod_with_a_safe_spec(
        controller: LiveBotController, bots: Any, statuses: Any, core: Any,
        restricted_namespace: str) -> None:
    bots.insert_many([bot_doc("alpha"), bot_doc("beta", runtime="nodejs20")])
    report, outcomes = run_pass(controller)
    assert report.counts["create"] == 2 and outcomes == ["created", "created"]
    pods = pods_of(core, restricted_namespace)
    assert sorted(pods) == ["bot-alpha", "bot-beta"]

    pod = core.read_namespaced_pod("bot-alpha", restricted_namespace)
    raw = json.dumps(client.ApiClient().sanitize_for_serialization(pod))
    assert "SECRET-alpha" not in raw  # exchange keys never in the pod spec
    assert pod.metadata.annotations[ANNOTATION_BOT_ID] == "alpha"
    assert pod.metadata.labels["app"] == "the0-bot" and pod.metadata.labels["bot-id"] == "alpha"
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.enable_service_links is False
    bot = next(c for c in pod.spec.containers if c.name == "bot")
    assert bot.image == "python:3.11-slim-bookworm"
    env = {e.name: e for e in bot.env}
    assert env["BOT_ID"].value == "alpha"
    assert env["BOT_CONFIG"].value_from.secret_key_ref.name == "bot-alpha-config"
    assert not any(m.name == "urls" for m in bot.volume_mounts)  # URLs: init and sidecar only
    assert bot.resources.limits == {"cpu": "500m", "memory": "512Mi"}
    assert [c.name for c in pod.spec.init_containers] == ["init", "state-sync"]

    secret = core.read_namespaced_secret("bot-alpha-config", restricted_namespace)
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("Pod", "bot-alpha", pod.metadata.uid)
    assert json.loads(__import__("base64").b64decode(secret.data["BOT_CONFIG"]))[
        "api_key"] == "SECRET-alpha"

    wait_for(lambda: all(p.status.phase == "Running"
                         for p in pods_of(core, restricted_namespace).values()), "pods Running")
    run_pass(controller)  # status documents are written by the pass, from what it observed
    status = statuses.find_one({"id": "alpha"}, {"_id": False})
    assert status["phase"] == "Running" and status["last_error"] == ""
    assert status["object_name"] == "bot-alpha" and status["namespace"] == restricted_namespace
    assert status["observed_config_hash"] == pod.metadata.annotations[ANNOTATION_CONFIG_HASH]
    assert controller.rt.kube.flush_events(), "events still queued after 5 s"
    events = core.list_namespaced_event(restricted_namespace,
                                        field_selector="involvedObject.name=bot-alpha").items
    assert "Created" in {e.reason for e in events}


def test_a_status_memo_lost_with_redis_is_rebuilt_from_the_status_documents(
        controller: LiveBotController, bots: Any, statuses: Any, core: Any,
        restricted_namespace: str, redis_client: Any) -> None:
    """Redis restarted without persistence loses the memo of what the status documents hold:
    the next pass rebuilds it from them — it rewrites nothing unchanged (at 10,000 bots every
    status rewritten, 1,000 a pass, kept changed bots' statuses stale for 80 s) and still
    removes the status of a bot deleted meanwhile. The tasks' last errors, lost with it, come
    back from the documents: a bot's error stays in its status until a task clears it."""
    bots.insert_many([bot_doc(f"m{i}") for i in range(5)])
    run_pass(controller)
    wait_for(lambda: all(p.status.phase == "Running"
                         for p in pods_of(core, restricted_namespace).values()), "pods Running")
    for bot in ("m2", "m3"):  # a task of each failed (a takeover refused, say)
        record_outcome(controller.rt, BotKind.LIVE, bot, last_error=f"{bot}: it failed")
    run_pass(controller)  # the Running statuses, written once
    written = {d["id"]: d["updated_at"] for d in statuses.find({})}
    assert len(written) == 5 and statuses.find_one({"id": "m2"})["last_error"] == "m2: it failed"
    # What a Redis restart does:
    redis_client.delete(keys.status_fingerprints("live"), keys.last_errors("live"))
    record_outcome(controller.rt, BotKind.LIVE, "m3", last_error="")  # m3's next task succeeds
    # A task that ran before the next pass marks its bot's status stale in the new, otherwise
    # empty memo (the chaos run's Redis restart: ~7,000 statuses rewritten, as this was taken
    # for the whole memo).
    record_outcome(controller.rt, BotKind.LIVE, "m0", last_error=None)
    # Someone else's edit left a value that is not JSON (a date) in m1's status: the rebuild
    # must not fail on it (every pass would), the pass rewrites that status whole.
    statuses.update_one({"id": "m1"}, {"$set": {"reviewed_at": datetime.now(UTC)}})
    bots.delete_one({"id": "m4"})
    report, _outcomes = run_pass(controller)
    # m0's, m3's (marked stale by their tasks), m1's, m4's (no longer wanted)
    assert report.status_writes == 4
    assert statuses.find_one({"id": "m2"})["last_error"] == "m2: it failed"
    assert statuses.find_one({"id": "m3"})["last_error"] == ""
    assert statuses.find_one({"id": "m4"})["desired_config_hash"] == ""
    assert "reviewed_at" not in statuses.find_one({"id": "m1"})
    wait_for(lambda: "bot-m4" not in pods_of(core, restricted_namespace), "m4's pod gone")
    report, _outcomes = run_pass(controller)
    assert report.status_writes == 1  # m4's, removed
    after = {d["id"]: d["updated_at"] for d in statuses.find({})}
    assert sorted(after) == ["m0", "m1", "m2", "m3"] and after["m0"] != written["m0"]
    assert after["m2"] == written["m2"]  # never rewritten: its error kept as it was
    report, _outcomes = run_pass(controller)
    assert report.status_writes == 0


def test_after_redis_lost_the_status_memo_a_pass_sends_its_tasks_before_rebuilding_it(
        controller: LiveBotController, bots: Any, statuses: Any, core: Any,
        restricted_namespace: str, redis_client: Any) -> None:
    """The first pass after Redis came back is the one with a backlog to send: the status
    documents it reads to rebuild the memo are read after the tasks are sent, not beside the
    bots (in a 10,000-bot chaos run that read made the pass's read 9 s instead of ~5, while
    405 bots waited for their tasks). The rebuilt memo is the same either way."""
    bots.insert_many([bot_doc(f"r{i}") for i in range(3)])
    run_pass(controller)
    wait_for(lambda: all(p.status.phase == "Running"
                         for p in pods_of(core, restricted_namespace).values()), "pods Running")
    run_pass(controller)  # the Running statuses, written once
    written = {d["id"]: d["updated_at"] for d in statuses.find({})}
    assert sorted(written) == ["r0", "r1", "r2"]
    redis_client.delete(keys.status_fingerprints("live"), keys.last_errors("live"))
    bots.insert_one(bot_doc("r3"))
    memo_complete_when_sent: list[bool] = []

    def enqueue(_action: Any, _as_of: float) -> None:
        memo_complete_when_sent.append(bool(redis_client.hexists(
            keys.status_fingerprints("live"), keys.STATUS_MEMO_COMPLETE)))

    report = controller.reconcile(enqueue=enqueue)
    assert report.enqueued == 1 and memo_complete_when_sent == [False]
    assert redis_client.hexists(keys.status_fingerprints("live"), keys.STATUS_MEMO_COMPLETE)
    # Rebuilt from the documents: the three unchanged statuses are not rewritten, r3's is new.
    assert report.status_writes == 1
    assert {d["id"]: d["updated_at"] for d in statuses.find({"id": {"$ne": "r3"}})} == written
    redis_client.delete(keys.inflight("live", "r3"))


def test_a_converged_world_plans_nothing_and_writes_nothing(
        controller: LiveBotController, bots: Any, core: Any, restricted_namespace: str) -> None:
    bots.insert_many([bot_doc(f"b{i}") for i in range(5)])
    run_pass(controller)
    wait_for(lambda: all(p.status.phase == "Running"
                         for p in pods_of(core, restricted_namespace).values()), "pods Running")
    run_pass(controller)  # records the Running status once
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.status_writes == 0
    assert sum(report.counts.values()) == 0
    # What /status and the benches read of that pass: its record in Redis, in full shape.
    record = json.loads(controller.rt.redis.client.get(keys.last_reconcile("live")))
    assert record["ok"] is True and record["skipped"] is False
    assert (record["enqueued"], record["status_writes"], record["invalid"]) == (0, 0, 0)
    assert record["counts"] == {"create": 0, "delete": 0, "replace": 0, "recreate": 0,
                                "takeover": 0, "waiting": 0, "backing_off": 0,
                                "blocked_deletions": 0, "name_taken": 0}
    assert list(record["steps_s"]) == ["read", "plan", "enqueue", "record", "upkeep"]
    assert record["bots"]["desired"] == 5 and record["bots"]["running"] == 5


def test_aging_urls_of_a_running_pod_are_re_signed_in_place(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    bots.insert_one(bot_doc("long-runner"))
    controller = make_controller(CODE_URL_TTL="2s")
    run_pass(controller)
    pod = core.read_namespaced_pod("bot-long-runner", restricted_namespace)
    before = core.read_namespaced_secret("bot-long-runner-config", restricted_namespace)
    report, outcomes = run_pass(controller)
    assert report.urls_resigned == 0  # signed just now
    time.sleep(1.5)  # past half of the 2 s lifetime
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.urls_resigned == 1
    after = core.read_namespaced_secret("bot-long-runner-config", restricted_namespace)
    assert core.read_namespaced_pod("bot-long-runner", restricted_namespace).metadata.uid == \
        pod.metadata.uid  # nothing restarted
    for key in ("CODE_URL", "STATE_GET_URL", "STATE_PUT_URL"):
        assert after.data[key] != before.data[key]
    assert after.data["BOT_CONFIG"] == before.data["BOT_CONFIG"]
    assert after.metadata.owner_references[0].uid == pod.metadata.uid
    assert run_pass(controller)[0].urls_resigned == 0


def test_disabled_in_any_spelling_means_no_pod_and_disabling_deletes(
        controller: LiveBotController, bots: Any, core: Any, restricted_namespace: str,
        statuses: Any) -> None:
    bots.insert_many([
        {**bot_doc("top-false"), "enabled": False},
        bot_doc("cfg-string-false", enabled="false"),
        bot_doc("cfg-zero", enabled="0"),
        bot_doc("cfg-upper", enabled="FALSE"),
        bot_doc("cfg-int-zero", enabled=0),
        bot_doc("on"),
    ])
    run_pass(controller)
    assert sorted(pods_of(core, restricted_namespace)) == ["bot-on"]
    bots.update_one({"id": "on"}, {"$set": {"config.enabled": " False "}})
    _report, outcomes = run_pass(controller)
    assert outcomes == ["deleted"]
    wait_for(lambda: not pods_of(core, restricted_namespace), "pod gone")
    assert statuses.find_one({"id": "cfg-upper"})["phase"] == "Disabled"


def test_a_config_change_replaces_in_one_pass_and_never_runs_two_pods(
        controller: LiveBotController, bots: Any, core: Any,
        restricted_namespace: str) -> None:
    bots.insert_one(bot_doc("trader"))
    run_pass(controller)
    listed, version = list_pods(core, restricted_namespace)  # every change after this is seen
    [old] = listed
    # The old pod stays Terminating until the test lets it go: the replace must wait for it.
    core.patch_namespaced_pod("bot-trader", restricted_namespace,
                              {"metadata": {"finalizers": ["test.the0.dev/hold"]}})
    bots.update_one({"id": "trader"}, {"$set": {"config.risk": "high"}})
    replaced: list[Any] = []
    replace = threading.Thread(target=lambda: replaced.append(run_pass(controller)))
    replace.start()
    try:
        events_since(core, restricted_namespace, version,
                     until=lambda kind, pod: pod.metadata.uid == old.metadata.uid
                     and pod.metadata.deletion_timestamp is not None)
        replace.join(timeout=1.0)  # a replace that does not wait is done within this second
        assert replace.is_alive(), f"the replace did not wait for the old pod: {replaced}"
        assert [p.metadata.uid for p in pods_of(core, restricted_namespace).values()] == [
            old.metadata.uid]
    finally:
        core.patch_namespaced_pod("bot-trader", restricted_namespace,
                                  {"metadata": {"finalizers": None}})
        replace.join(timeout=30)
    [(report, outcomes)] = replaced
    assert report.counts["replace"] == 1 and outcomes == ["replaced"]
    new = core.read_namespaced_pod("bot-trader", restricted_namespace)
    assert new.metadata.uid != old.metadata.uid
    assert (new.metadata.annotations[ANNOTATION_CONFIG_HASH]
            != old.metadata.annotations[ANNOTATION_CONFIG_HASH])
    # Replay the replace from the list's version up to the new pod's creation.
    events = events_since(core, restricted_namespace, version,
                          until=lambda kind, pod: kind == "ADDED"
                          and pod.metadata.uid == new.metadata.uid)
    order = [(kind, pod.metadata.uid) for kind, pod in events]
    assert order.index(("DELETED", old.metadata.uid)) < order.index(("ADDED", new.metadata.uid))
    assert most_at_once(listed, events) == {"trader": 1}, (
        "two pods of one bot existed at the same moment", order)
    _, second = run_pass(controller)
    assert second == []  # converged in ONE pass


def test_a_replace_that_would_wait_hands_back_and_its_continuation_completes_it(
        controller: LiveBotController, bots: Any, core: Any,
        restricted_namespace: str) -> None:
    """A task waits only `inline_wait` for the old pod (worker/reconcile/waiting.py): then it
    raises StillTerminating naming the replace it began, and nothing is created beside the
    terminating pod; the continuation, once the pod is gone, creates and reports the replace."""
    bots.insert_one(bot_doc("handoff"))
    run_pass(controller)
    [old] = pods_of(core, restricted_namespace).values()
    core.patch_namespaced_pod("bot-handoff", restricted_namespace,
                              {"metadata": {"finalizers": ["test.the0.dev/hold"]}})
    bots.update_one({"id": "handoff"}, {"$set": {"config.risk": "high"}})
    task_like = Call(inline_wait=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(StillTerminating) as raised:
            controller.converge("handoff", intent="replace", call=task_like)
        assert time.monotonic() - started < 5, "the converge waited out the old pod"
        began = raised.value.resumes
        assert began is not None and began.reason.startswith("config changed")
        assert began == Resume(ActionKind.REPLACE, began.reason, "bot-handoff")
        assert [p.metadata.uid for p in pods_of(core, restricted_namespace).values()] == [
            old.metadata.uid]
        assert pods_of(core, restricted_namespace)["bot-handoff"].metadata.deletion_timestamp
        # A continuation that comes too early hands back again, still carrying the replace.
        with pytest.raises(StillTerminating) as again:
            controller.converge("handoff", intent="replace",
                                call=Call(inline_wait=0.2, resumes=raised.value.resumes))
        assert again.value.resumes == raised.value.resumes
        assert [p.metadata.uid for p in pods_of(core, restricted_namespace).values()] == [
            old.metadata.uid]
    finally:
        core.patch_namespaced_pod("bot-handoff", restricted_namespace,
                                  {"metadata": {"finalizers": None}})
    wait_for(lambda: not pods_of(core, restricted_namespace), "the old pod gone")
    assert controller.converge("handoff", intent="replace", call=Call(
        inline_wait=0.5, resumes=raised.value.resumes)) == "replaced"
    new = pods_of(core, restricted_namespace)["bot-handoff"]
    assert new.metadata.uid != old.metadata.uid
    assert (new.metadata.annotations[ANNOTATION_CONFIG_HASH]
            != old.metadata.annotations[ANNOTATION_CONFIG_HASH])
    assert controller.rt.kube.flush_events(), "events still queued after 5 s"
    events = core.list_namespaced_event(
        restricted_namespace, field_selector="involvedObject.name=bot-handoff").items
    assert f"Replaced bot pod ({began.reason})" in {
        e.message for e in events if e.involved_object.uid == new.metadata.uid}
    assert controller.converge("handoff", intent="replace", call=task_like) == "nothing"


def test_a_removed_bot_loses_its_pod_and_secret(
        controller: LiveBotController, bots: Any, core: Any, restricted_namespace: str,
        statuses: Any) -> None:
    bots.insert_many([bot_doc("stay"), bot_doc("go")])
    run_pass(controller)
    bots.delete_one({"id": "go"})
    _, outcomes = run_pass(controller)
    assert outcomes == ["deleted"]
    wait_for(lambda: sorted(pods_of(core, restricted_namespace)) == ["bot-stay"], "pod gone")
    secrets = {s.metadata.name for s in core.list_namespaced_secret(restricted_namespace).items}
    assert "bot-go-config" not in secrets and "bot-stay-config" in secrets
    run_pass(controller)
    assert statuses.find_one({"id": "go"}) is None


def test_a_broken_pod_is_recreated_then_backs_off(
        controller: LiveBotController, bots: Any, core: Any, restricted_namespace: str) -> None:
    bots.insert_one(bot_doc("crashy"))
    run_pass(controller)
    wait_for(lambda: core.read_namespaced_pod("bot-crashy", restricted_namespace).status.phase
             == "Running", "Running")

    def crash_loop() -> str:
        pod = core.read_namespaced_pod("bot-crashy", restricted_namespace)
        core.patch_namespaced_pod_status("bot-crashy", restricted_namespace, {"status": {
            "containerStatuses": [{"name": "bot", "image": "the0/python311:latest",
                                   "imageID": "", "ready": False, "restartCount": 5,
                                   "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                         "message": "back-off 5m0s"}}}]}})
        return str(pod.metadata.uid)

    def broken(pods: dict[str, Any]) -> bool:
        return pods["bot-crashy"].assessment.health is PodHealth.BROKEN

    first_uid = crash_loop()
    cache_sees(controller, broken, "the crash loop")
    _, outcomes = run_pass(controller)
    assert outcomes == ["recreated"]
    second = wait_for(lambda: (p := core.read_namespaced_pod("bot-crashy", restricted_namespace))
                      .status.phase == "Running" and p, "recreated pod Running")
    assert second.metadata.uid != first_uid
    crash_loop()
    cache_sees(controller, broken, "the second crash loop")
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.counts["backing_off"] == 1  # within the 2 s base backoff
    wait_for(lambda: run_pass(controller)[1] == ["recreated"], "recreate after backoff",
             timeout=15, interval=0.5)


def test_a_terminating_pod_is_waited_for_not_duplicated(
        controller: LiveBotController, bots: Any, core: Any, restricted_namespace: str) -> None:
    bots.insert_one(bot_doc("slow"))
    run_pass(controller)
    core.patch_namespaced_pod("bot-slow", restricted_namespace,
                              {"metadata": {"finalizers": ["test.the0.dev/hold"]}})
    core.delete_namespaced_pod("bot-slow", restricted_namespace)
    cache_sees(controller, lambda pods: pods["bot-slow"].assessment.health
               is PodHealth.TERMINATING, "the pod terminating")
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.counts["waiting"] == 1
    assert len(pods_of(core, restricted_namespace)) == 1
    core.patch_namespaced_pod("bot-slow", restricted_namespace,
                              {"metadata": {"finalizers": None}})
    wait_for(lambda: not pods_of(core, restricted_namespace), "terminated")
    cache_sees(controller, lambda pods: not pods, "the pod gone")
    _, outcomes = run_pass(controller)
    assert outcomes == ["created"]


def test_a_create_trusts_the_caches_none_and_a_stale_none_never_makes_a_second_pod(
        settings_env: dict[str, str], bucket_code: str, bots: Any, core: Any,
        restricted_namespace: str) -> None:
    """A create task after a pass takes "no pod" from the watched caches: no GET (one per
    create, beside its two writes, in a 10,000-bot cold start). A name held by a pod the
    caches do not show (a stranger's here, outside every selector, as a cache that is behind
    would miss one) ends in the API server's 409 and a fresh read: reported as a name taken,
    nothing created beside it. A bot not wanted is always read by GET."""
    gets = CountedRequests("get", "pods")
    rt = Runtime(load_settings(env=settings_env), kube_observer=gets)
    controller = LiveBotController(rt)
    try:
        core.create_namespaced_pod(restricted_namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bot-held"},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "c", "image": "busybox", "securityContext": {
                         "allowPrivilegeEscalation": False,
                         "capabilities": {"drop": ["ALL"]}}}]}})
        bots.insert_many([bot_doc("fresh"), bot_doc("held")])
        _report, queued = pass_without_actions(controller)
        assert sorted((a.bot_id, a.kind) for a in queued) == [
            ("fresh", ActionKind.CREATE), ("held", ActionKind.CREATE)]
        gets.taken()
        outcomes = {a.bot_id: run_action(controller, a) for a in queued}
        assert outcomes == {"fresh": "created", "held": "failed: name_taken"}
        assert gets.taken() == 1  # the fresh read of bot-held after its 409 alone
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(restricted_namespace).items}
        assert sorted(pods) == ["bot-fresh", "bot-held"]
        assert pods["bot-held"].metadata.labels is None  # the stranger's, untouched
        bots.delete_one({"id": "fresh"})
        assert controller.converge("fresh", intent="delete") == "deleted"
        assert gets.taken() >= 1
    finally:
        rt.close()
        core.delete_namespaced_pod("bot-held", restricted_namespace, grace_period_seconds=0)


def test_a_task_for_a_removed_bot_does_not_wait_for_its_terminating_pod(
        controller: LiveBotController, bots: Any, core: Any, restricted_namespace: str) -> None:
    """Nothing is to be created after the pod of a bot removed (or disabled) goes, so a task
    that finds it terminating ends at once instead of waiting for it (a pass re-sends deletes
    its cache has not seen done: ~260 continuations spent waiting in a chaos run). A bot
    wanted again still waits: nothing beside a terminating pod."""
    bots.insert_one(bot_doc("leaving"))
    run_pass(controller)
    core.patch_namespaced_pod("bot-leaving", restricted_namespace,
                              {"metadata": {"finalizers": ["test.the0.dev/hold"]}})
    try:
        core.delete_namespaced_pod("bot-leaving", restricted_namespace)
        bots.delete_one({"id": "leaving"})
        started = time.monotonic()
        outcome = controller.converge("leaving", intent="delete",
                                      call=Call(inline_wait=3.0))
        assert outcome == "nothing" and time.monotonic() - started < 2.0
        bots.insert_one(bot_doc("leaving", version="1.0.1"))  # wanted again
        with pytest.raises(StillTerminating):
            controller.converge("leaving", intent="create", call=Call(inline_wait=0.5))
        assert list(pods_of(core, restricted_namespace)) == ["bot-leaving"]
    finally:
        core.patch_namespaced_pod("bot-leaving", restricted_namespace,
                                  {"metadata": {"finalizers": None}})
    wait_for(lambda: not pods_of(core, restricted_namespace), "terminated")
    assert controller.converge("leaving", intent="create", call=Call(inline_wait=3.0)) \
        == "created"


def test_duplicated_tasks_and_concurrent_reconciles_create_one_pod(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    ids = [f"dup{i}" for i in range(4)]
    bots.insert_many([bot_doc(bot_id) for bot_id in ids])
    controllers = [make_controller() for _ in range(6)]  # six workers' runtimes
    _, version = list_pods(core, restricted_namespace)
    results: list[tuple[str, str]] = []  # (bot id, what one converge did)
    unexpected: list[BaseException] = []
    gate = threading.Barrier(8)

    def attempt(c: LiveBotController, bot_id: str, run: Callable[[], str]) -> None:
        try:
            results.append((bot_id, run()))
        except BotBusy:  # another thread holds the bot's lock: the task would retry
            results.append((bot_id, "busy"))
        except BaseException as exc:
            unexpected.append(exc)

    def converge_all(c: LiveBotController) -> None:  # five duplicated tasks of each bot
        gate.wait()
        for bot_id in ids:
            attempt(c, bot_id, partial(c.converge, bot_id, intent="create"))

    def reconcile(c: LiveBotController) -> None:  # two passes, their tasks run at once
        gate.wait()
        try:
            _report, queued = pass_without_actions(c)
        except BaseException as exc:
            unexpected.append(exc)
            return
        for action in queued:
            attempt(c, action.bot_id, partial(run_action, c, action))

    threads = [threading.Thread(target=converge_all, args=(c,)) for c in controllers]
    threads += [threading.Thread(target=reconcile, args=(c,)) for c in controllers[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a converge did not finish in 60 s"
    assert unexpected == [], unexpected
    for bot_id in ids:
        did = sorted(outcome for bot, outcome in results if bot == bot_id)
        assert did.count("created") == 1 and set(did) <= {"created", "nothing", "busy"}, (
            bot_id, did)
    assert sorted(pods_of(core, restricted_namespace)) == [f"bot-{bot_id}" for bot_id in ids]
    # The cluster's own record: each bot's pod was created once, none deleted.
    events = events_since(core, restricted_namespace, version,
                          until=mark_pod(core, restricted_namespace, "bot-dup0"))
    added = sorted(bot_of(pod) for kind, pod in events if kind == "ADDED")
    assert added == ids and not [e for e in events if e[0] == "DELETED"], [
        (kind, pod.metadata.name) for kind, pod in events]


def test_mongo_stopped_means_no_deletions_and_no_writes(
        stack: Stack, controller: LiveBotController, bots: Any, core: Any,
        restricted_namespace: str, statuses: Any) -> None:
    bots.insert_many([bot_doc("safe1"), bot_doc("safe2")])
    run_pass(controller)
    before = {name: p.metadata.uid for name, p in pods_of(core, restricted_namespace).items()}
    with stack.stopped("ferretdb"):
        try:
            run_pass(controller)
        except ReadFailed as exc:
            assert "mongo" in str(exc)
        else:
            raise AssertionError("a pass with Mongo down must fail")
    after = {name: p.metadata.uid for name, p in pods_of(core, restricted_namespace).items()}
    assert after == before


def test_a_read_of_the_bots_cut_midway_fails_rather_than_ending_early(
        stack: Stack, controller: LiveBotController, bots: Any) -> None:
    # A pass parses the documents as they are read (never all in memory at once); Mongo gone
    # after the first batch must fail the read, never look like a shorter collection (a bot
    # missing from a partial read would be deleted).
    bots.insert_many([bot_doc(f"many{i:04d}") for i in range(2100)])  # > one batch of 2,000
    documents = controller.rt.store(BotKind.LIVE).iter_all()
    assert next(documents)["id"].startswith("many")
    with stack.stopped("ferretdb"):
        try:
            taken = 1 + sum(1 for _ in documents)
        except ReadFailed as exc:
            assert "mongo" in str(exc)
        else:
            raise AssertionError(f"the read ended after {taken} of 2,100 documents, no error")


def test_a_failed_kubernetes_list_ends_the_pass_with_no_writes(
        make_controller: Callable[..., LiveBotController], bots: Any, statuses: Any) -> None:
    bots.insert_many([bot_doc("x1"), bot_doc("x2")])
    # The controller identity has no Role in "default": the pod list is refused (403).
    blind = make_controller(NAMESPACE="default")
    try:
        run_pass(blind)
    except ReadFailed as exc:
        assert "listing pods failed" in str(exc)
    else:
        raise AssertionError("a refused list must fail the pass")
    assert statuses.count_documents({}) == 0


def test_the_mass_deletion_guard_holds_back_an_unusual_share(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    bots.insert_many([bot_doc(f"m{i}") for i in range(12)])
    guarded = make_controller(MAX_DELETE_FRACTION="0.5", MAX_DELETE_MIN="2")
    run_pass(guarded)
    bots.delete_many({"id": {"$in": [f"m{i}" for i in range(9)]}})
    report, outcomes = run_pass(guarded)
    assert outcomes == [] and "mass-deletion guard" in report.guard_message
    assert len(pods_of(core, restricted_namespace)) == 12
    relaxed = make_controller(MAX_DELETE_FRACTION="1")
    _, outcomes = run_pass(relaxed)
    assert outcomes == ["deleted"] * 9


def test_a_missing_code_object_is_a_per_bot_error(
        controller: LiveBotController, bots: Any, core: Any, statuses: Any,
        restricted_namespace: str) -> None:
    bots.insert_many([bot_doc("no-code", code_key="bots/nowhere.zip"), bot_doc("fine")])
    _, outcomes = run_pass(controller)
    assert sorted(outcomes) == ["created", "failed: code_not_found"]
    assert sorted(pods_of(core, restricted_namespace)) == ["bot-fine"]
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.counts["backing_off"] == 1
    status = statuses.find_one({"id": "no-code"})
    assert status["phase"] == "BackingOff" and "code_not_found" in status["last_error"]
    # The operator's `kubectl get events` says so too: one Warning about the bot's pod name.
    assert controller.rt.kube.flush_events(), "events still queued after 5 s"
    events = core.list_namespaced_event(restricted_namespace,
                                        field_selector="involvedObject.name=bot-no-code").items
    assert [(e.type, e.reason) for e in events] == [("Warning", "Failed")]
    assert events[0].message.startswith("create failed: ") and "code_not_found" in (
        events[0].message)


def test_an_awkward_id_gets_a_stable_sanitised_pod_name(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    # (The exact names are pinned in tests/unit/core/test_naming.py.)
    bots.insert_one(bot_doc("Demo_Two.x"))
    _, outcomes = run_pass(make_controller())
    assert outcomes == ["created"]
    [name] = pods_of(core, restricted_namespace)
    assert re.fullmatch(r"bot-demo-two-x-[a-z2-7]+", name) and len(name) <= 63, name
    pod = core.read_namespaced_pod(name, restricted_namespace)
    assert pod.metadata.annotations[ANNOTATION_BOT_ID] == "Demo_Two.x"
    # Another worker's runtime, built afresh, derives the same name: nothing to do.
    report, outcomes = run_pass(make_controller())
    assert outcomes == [] and sum(report.counts.values()) == 0
    assert list(pods_of(core, restricted_namespace)) == [name]


def test_an_extra_pod_of_a_bot_under_another_name_is_deleted(
        controller: LiveBotController, bots: Any, core: Any, restricted_namespace: str) -> None:
    bots.insert_one(bot_doc("twin"))
    run_pass(controller)
    extra = core.read_namespaced_pod("bot-twin", restricted_namespace)
    body = client.ApiClient().sanitize_for_serialization(extra)
    body["metadata"] = {"name": "bot-twin-legacy", "labels": extra.metadata.labels,
                        "annotations": extra.metadata.annotations}
    body.pop("status", None)
    body["spec"].pop("nodeName", None)
    core.create_namespaced_pod(restricted_namespace, body)
    cache_sees(controller, lambda pods: "bot-twin-legacy" in pods, "the extra pod")
    _, outcomes = run_pass(controller)
    assert outcomes == ["deleted"]
    wait_for(lambda: sorted(pods_of(core, restricted_namespace)) == ["bot-twin"],
             "the extra pod gone, the bot's own pod kept")


def test_every_pass_reads_mongo_afresh_so_a_direct_write_is_acted_on_by_the_next_pass(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        namespace: str) -> None:
    """Writes made around the events consumer (an operator, the platform's own API, a script)
    are seen by the very next pass: nothing is cached between passes."""
    controller = make_controller()
    bots.insert_one(bot_doc("direct-a"))
    run_pass(controller)
    wait_for(lambda: "direct-a" in bots_with_pods(core, namespace), "direct-a's pod", timeout=10)
    bots.insert_one(bot_doc("direct-b"))  # straight into Mongo, no event
    bots.update_one({"id": "direct-a"}, {"$set": {"enabled": False}})
    _, outcomes = run_pass(controller)
    assert sorted(outcomes) == ["created", "deleted"]
    wait_for(lambda: bots_with_pods(core, namespace) == {"direct-b"},
             "direct-b's pod, direct-a's gone", timeout=30)


def controller_kind() -> Any:
    from worker.core.bot import BotKind

    return BotKind.LIVE


def bots_with_pods(core: Any, namespace: str) -> set[str]:
    return {(p.metadata.annotations or {}).get(ANNOTATION_BOT_ID, "")
            for p in core.list_namespaced_pod(namespace).items
            if p.metadata.deletion_timestamp is None}
