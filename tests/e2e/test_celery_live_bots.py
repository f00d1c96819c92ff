"""Live bots with REAL `celery -A worker worker` and `celery -A worker beat` processes.

The processes run as the restricted controller identity; the test watches the cluster as admin
(a pod census records the most pods any bot had at one moment) and talks to the workers only
through the broker, as the platform would.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from celery import Celery

from tests.support.bots import bot_doc, wait_for
from tests.support.levers import apiserver_rejects_controller
from tests.support.procs import Proc
from tests.support.procs_watch import (
    PodCensus,
    TaskEvents,
    broker_idle,
    ping,
    pods_by_bot,
)
from worker import keys
from worker.core.naming import ANNOTATION_CONFIG_HASH, pod_name

Start = Callable[..., Proc]


def wait_for_worker(app: Celery, worker: Proc, name: str, timeout: float = 30) -> None:
    def answered() -> bool:
        worker.assert_alive()
        return bool(ping(app, f"{name}@"))
    wait_for(answered, f"worker {name} to answer a ping", timeout=timeout, interval=0.2)


def live_pods(core: Any, namespace: str, bot_id: str) -> list[Any]:
    return [p for p in pods_by_bot(core, namespace).get(bot_id, [])
            if p.metadata.deletion_timestamp is None]


def successor(core: Any, namespace: str, bot_id: str, first: Any) -> Any:
    """The bot's one live pod if it replaced `first` (another uid and config hash), else None."""
    now = live_pods(core, namespace, bot_id)
    if (len(now) == 1 and now[0].metadata.uid != first.metadata.uid
            and now[0].metadata.annotations[ANNOTATION_CONFIG_HASH]
            != first.metadata.annotations[ANNOTATION_CONFIG_HASH]):
        return now[0]
    return None


def test_a_worker_starts_and_answers_a_ping(
        start_worker: Start, celery_client: Celery) -> None:
    worker = start_worker("w1")
    started = time.monotonic()
    wait_for_worker(celery_client, worker, "w1")
    replies = ping(celery_client, "w1@")
    assert len(replies) == 1
    ((name, reply),) = replies[0].items()
    assert name.startswith("w1@") and reply == {"ok": "pong"}
    print(f"worker answered a ping {time.monotonic() - started:.1f} s after start")
    worker.assert_alive()


def test_worker_and_beat_converge_creates_replaces_and_deletes(
        start_worker: Start, start_beat: Start, celery_client: Celery, code: str, bots: Any,
        statuses: Any, core: Any, restricted_namespace: str,
        census: Callable[[], PodCensus]) -> None:
    ids = [f"e2e-{i}" for i in range(10)]
    bots.insert_many([bot_doc(bot_id) for bot_id in ids])
    pods = census()
    started = time.monotonic()
    worker = start_worker("w1")
    beat = start_beat()

    def all_running() -> bool:
        worker.assert_alive()
        beat.assert_alive()
        by_bot = pods_by_bot(core, restricted_namespace)
        return sorted(by_bot) == ids and all(len(ps) == 1 for ps in by_bot.values())
    wait_for(all_running, "one pod per seeded bot", timeout=20, interval=0.25)
    print(f"10 bots got their pods {time.monotonic() - started:.1f} s after start")

    # A config change: the pod is replaced (new uid, new config hash) — never two at once.
    old = live_pods(core, restricted_namespace, "e2e-3")[0]
    bots.update_one({"id": "e2e-3"}, {"$set": {"config.risk": "high"}})
    # A deleted document: its pod goes.
    bots.delete_one({"id": "e2e-7"})

    def replaced() -> Any:
        now = live_pods(core, restricted_namespace, "e2e-3")
        return (len(now) == 1 and now[0].metadata.uid != old.metadata.uid
                and now[0].metadata.annotations[ANNOTATION_CONFIG_HASH]
                != old.metadata.annotations[ANNOTATION_CONFIG_HASH]) and now[0]
    new = wait_for(replaced, "e2e-3 replaced", timeout=20, interval=0.25)
    wait_for(lambda: "e2e-7" not in pods_by_bot(core, restricted_namespace),
             "e2e-7's pod deleted", timeout=20, interval=0.25)

    remaining = [bot_id for bot_id in ids if bot_id != "e2e-7"]

    def statuses_settled() -> bool:
        docs = {d["id"]: d for d in statuses.find({}, {"_id": False})}
        return (sorted(docs) == remaining
                and all(docs[b]["object_name"] == pod_name(b) and docs[b]["phase"] == "Running"
                        for b in remaining)
                and docs["e2e-3"]["observed_config_hash"]
                == new.metadata.annotations[ANNOTATION_CONFIG_HASH])
    wait_for(statuses_settled, "status documents of the 9 bots, Running", timeout=20,
             interval=0.5)
    by_bot = pods_by_bot(core, restricted_namespace)
    assert sorted(by_bot) == remaining and all(len(ps) == 1 for ps in by_bot.values())
    pods.check()
    worker.assert_alive()
    beat.assert_alive()


def test_a_task_delivered_five_times_at_once_creates_one_pod(
        start_worker: Start, celery_client: Celery, task_events: TaskEvents, code: str,
        bots: Any, core: Any, restricted_namespace: str, redis_client: Any,
        census: Callable[[], PodCensus]) -> None:
    worker = start_worker("w1")
    wait_for_worker(celery_client, worker, "w1")
    wait_for(lambda: task_events.of("worker-heartbeat") or task_events.of("worker-online"),
             "the event receiver to hear the worker", timeout=15)
    bots.insert_one(bot_doc("twin"))
    pods = census()

    task_ids: list[str] = []
    gate = threading.Barrier(5)

    def send() -> None:
        gate.wait()
        result = celery_client.send_task("bots.create", args=("twin",),
                                         kwargs={"reason": "missing"})
        task_ids.append(result.id)

    senders = [threading.Thread(target=send) for _ in range(5)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=10)
    assert len(set(task_ids)) == 5

    wait_for(lambda: live_pods(core, restricted_namespace, "twin"), "twin's pod", timeout=20)
    ids = set(task_ids)
    # Every delivery finishes (a delivery that found the bot locked retries, then sees the pod).
    wait_for(lambda: len({e["uuid"] for e in task_events.of("task-succeeded", task_ids=ids)})
             == 5, "all five deliveries to succeed", timeout=60, interval=0.25)
    wait_for(lambda: broker_idle(redis_client), "the broker to drain", timeout=30)
    results = sorted(e["result"] for e in task_events.of("task-succeeded", task_ids=ids))
    retried = task_events.of("task-retried", task_ids=ids)
    print(f"deliveries: {results}; {len(retried)} retries (bot busy)")
    assert results.count("'created'") == 1, results
    assert set(results) <= {"'created'", "'nothing'"}, results
    assert not task_events.of("task-failed", task_ids=ids)
    assert len(pods_by_bot(core, restricted_namespace)["twin"]) == 1
    pods.check()
    assert task_events.error is None
    worker.assert_alive()


@pytest.mark.slow(seconds=22)  # waits out the dead worker's bot lock and the redelivery
def test_kill_9_of_a_worker_mid_task_converges_without_a_duplicate(
        start_worker: Start, celery_client: Celery, code: str, bots: Any, core: Any,
        statuses: Any, restricted_namespace: str, redis_client: Any,
        census: Callable[[], PodCensus]) -> None:
    # A killed worker's message comes back after 10 s (not 5 min); the per-bot lock it held
    # (renewed while it waited) expires BOT_LOCK_TTL = 15 s after its last renewal.
    fast = {"TASK_VISIBILITY_TIMEOUT": "10s", "POD_GONE_TIMEOUT": "20s", "KUBE_TIMEOUT": "5s",
            "BOT_LOCK_TTL": "15s"}
    w1 = start_worker("w1", **fast)
    wait_for_worker(celery_client, w1, "w1")
    bots.insert_one(bot_doc("victim"))
    celery_client.send_task("bots.create", args=("victim",), kwargs={"reason": "missing"})
    first = wait_for(lambda: live_pods(core, restricted_namespace, "victim"), "victim's pod",
                     timeout=20)[0]
    pods = census()

    # Hold the pod in Terminating, so a replace must wait for it, then ask for a replace.
    core.patch_namespaced_pod(first.metadata.name, restricted_namespace,
                              {"metadata": {"finalizers": ["test.the0.dev/hold"]}})
    bots.update_one({"id": "victim"}, {"$set": {"config.risk": "high"}})
    celery_client.send_task("bots.replace", args=("victim",), kwargs={"reason": "config"})
    wait_for(lambda: core.read_namespaced_pod(first.metadata.name, restricted_namespace)
             .metadata.deletion_timestamp is not None, "the replace to delete the old pod",
             timeout=20)
    # Mid-flight: waiting for the pod in its thread, or handed back with its continuation
    # queued or reserved (waiting.py) — either way a message not yet acknowledged or queued.
    assert redis_client.hlen("unacked") + redis_client.llen("bots") >= 1
    w1.kill9()
    killed = time.monotonic()

    # Nothing was created beside the terminating pod; release it, start a fresh worker.
    assert [p.metadata.uid for ps in pods_by_bot(core, restricted_namespace).values()
            for p in ps] == [first.metadata.uid]
    core.patch_namespaced_pod(first.metadata.name, restricted_namespace,
                              {"metadata": {"finalizers": None}})
    wait_for(lambda: not pods_by_bot(core, restricted_namespace), "old pod gone", timeout=20)
    w2 = start_worker("w2", **fast)
    wait_for_worker(celery_client, w2, "w2")

    def converged() -> Any:
        w2.assert_alive()
        return successor(core, restricted_namespace, "victim", first)
    # The message is restored within a sweep (≤ 1 s here) of its visibility timeout (10 s),
    # then waits for the dead worker's lock to expire (15 s after its last renewal).
    new = wait_for(converged, "the redelivered replace to create the new pod", timeout=60,
                   interval=0.5)
    print(f"converged {time.monotonic() - killed:.1f} s after the kill -9")
    # Let every redelivered copy and retry run out; still exactly one pod.
    wait_for(lambda: broker_idle(redis_client), "the broker to drain", timeout=120, interval=0.5)
    by_bot = pods_by_bot(core, restricted_namespace)
    assert [p.metadata.uid for p in by_bot["victim"]] == [new.metadata.uid]
    pods.check()
    # Status documents are written by the pass (no beat runs in this test): ask for one.
    celery_client.send_task("reconcile.bots")
    status = wait_for(lambda: statuses.find_one({"id": "victim"}), "the pass to record status",
                      timeout=30)
    assert status["object_name"] == pod_name("victim")
    assert status["desired_config_hash"] == new.metadata.annotations[ANNOTATION_CONFIG_HASH]
    w2.assert_alive()


@pytest.mark.slow(seconds=15)
def test_a_replace_waiting_for_its_old_pod_hands_its_thread_to_other_bots(
        start_worker: Start, celery_client: Celery, code: str, bots: Any, core: Any,
        restricted_namespace: str, census: Callable[[], PodCensus]) -> None:
    """One thread: while a replace's old pod terminates, the task has handed the thread back
    (worker/reconcile/waiting.py), so another bot's create runs; once the old pod is gone
    the replace's continuation creates the new one, announced as the replace."""
    ns = restricted_namespace
    w1 = start_worker("w1", WORKER_CONCURRENCY="1")
    wait_for_worker(celery_client, w1, "w1")
    bots.insert_one(bot_doc("slow"))
    celery_client.send_task("bots.create", args=("slow",), kwargs={"reason": "missing"})
    first = wait_for(lambda: live_pods(core, ns, "slow"), "slow's pod", timeout=20)[0]
    pods = census()
    core.patch_namespaced_pod(first.metadata.name, ns,
                              {"metadata": {"finalizers": ["test.the0.dev/hold"]}})
    try:
        bots.update_one({"id": "slow"}, {"$set": {"config.risk": "high"}})
        celery_client.send_task("bots.replace", args=("slow",), kwargs={"reason": "config"})
        wait_for(lambda: core.read_namespaced_pod(first.metadata.name, ns)
                 .metadata.deletion_timestamp is not None, "the replace to delete the old pod",
                 timeout=20)
        bots.insert_one(bot_doc("other"))
        celery_client.send_task("bots.create", args=("other",), kwargs={"reason": "missing"})
        # Before: the only thread waited out POD_GONE_TIMEOUT (90 s) for the held pod.
        wait_for(lambda: live_pods(core, ns, "other"), "another bot's pod while the replace "
                 "waits for its old one", timeout=15)
        assert [p.metadata.uid for p in pods_by_bot(core, ns)["slow"]] == [first.metadata.uid]
    finally:
        core.patch_namespaced_pod(first.metadata.name, ns, {"metadata": {"finalizers": None}})

    def replaced() -> Any:
        w1.assert_alive()
        return successor(core, ns, "slow", first)
    new = wait_for(replaced, "the continuation to create the new pod", timeout=30, interval=0.25)
    pods.check()

    def announced() -> set[str]:  # ours only (the scheduler posts one too)
        return {e.reason for e in core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={new.metadata.name}").items
            if e.involved_object.uid == new.metadata.uid
            and e.reporting_component == "the0-bot-controller"}
    assert wait_for(announced, "the new pod's Event", timeout=10) == {"Replaced"}
    w1.assert_alive()


def test_a_pod_deleted_by_someone_else_is_replaced_before_the_next_pass(
        start_worker: Start, start_beat: Start, code: str, bots: Any, core: Any,
        restricted_namespace: str, census: Callable[[], PodCensus]) -> None:
    # Passes 60 s apart: the beat's first tick creates the pods; only the worker's reaction to
    # the watched deletion can bring the pod back well before the second tick.
    bots.insert_many([bot_doc("healme"), bot_doc("bystander")])
    pods = census()
    worker = start_worker("w1", RECONCILE_INTERVAL="60s")
    start_beat(RECONCILE_INTERVAL="60s")
    first = wait_for(lambda: (ps := live_pods(core, restricted_namespace, "healme"))
                     and ps[0].status.phase == "Running" and ps[0],
                     "the first pass's pod Running", timeout=30, interval=0.25)
    bystander = live_pods(core, restricted_namespace, "bystander")[0]
    deleted_at = time.monotonic()
    core.delete_namespaced_pod(first.metadata.name, restricted_namespace,
                               grace_period_seconds=0)
    second = wait_for(lambda: (ps := live_pods(core, restricted_namespace, "healme"))
                      and ps[0].metadata.uid != first.metadata.uid and ps[0],
                      "a new pod for the bot", timeout=15, interval=0.1)
    print(f"pod deleted by someone else: replaced after {time.monotonic() - deleted_at:.2f} s")
    assert second.metadata.name == first.metadata.name
    # Only that bot was touched, and never two pods at once.
    assert live_pods(core, restricted_namespace, "bystander")[0].metadata.uid \
        == bystander.metadata.uid
    pods.check()
    worker.assert_alive()


def test_a_task_refused_with_429_waits_retry_after_before_each_retry(
        start_worker: Start, celery_client: Celery, task_events: TaskEvents, code: str,
        bots: Any, core: Any, admin_api: Any, controller_api: Any, redis_client: Any,
        restricted_namespace: str) -> None:
    # Its own backoff is 10 ms at most: any longer wait between attempts is the server's
    # Retry-After (at least 1 s) honoured.
    worker = start_worker("w1", TASK_RETRY_BASE="10ms", TASK_RETRY_CAP="10ms",
                          TASK_MAX_RETRIES="30")
    wait_for_worker(celery_client, worker, "w1")
    bots.insert_one(bot_doc("patient"))
    mark = keys.inflight("live", "patient")
    redis_client.set(mark, "1", px=900_000)  # sent by a pass: its in-flight mark taken
    with apiserver_rejects_controller(admin_api, controller_api, restricted_namespace):
        task_id = celery_client.send_task("bots.create", args=("patient",),
                                          kwargs={"reason": "missing"}).id
        wait_for(lambda: worker.assert_alive() or len(
            task_events.of("task-retried", task_ids={task_id})) >= 3,
            "three retries of the refused task", timeout=30, interval=0.1)
        assert redis_client.exists(mark), "the mark must stay while a retry is queued"
    wait_for(lambda: live_pods(core, restricted_namespace, "patient"), "the pod, once accepted",
             timeout=30)
    wait_for(lambda: task_events.of("task-succeeded", task_ids={task_id}), "the task to succeed",
             timeout=15)
    wait_for(lambda: not redis_client.exists(mark), "the mark released once the task ended",
             timeout=5)
    starts = sorted(e["timestamp"] for e in task_events.of("task-started", task_ids={task_id}))
    gaps = [round(later - earlier, 3) for earlier, later in pairwise(starts)]
    delays = [float(d) for d in re.findall(r"bots\.create: retry \d+ in ([0-9.]+) s: "
                                           r"kubernetes: 429", worker.output())]
    print(f"attempts {len(starts)}, gaps between them {gaps} s, retry delays {delays} s")
    assert len(starts) >= 4 and len(delays) >= 3
    assert all(delay >= 1.0 for delay in delays), delays
    assert all(gap >= 0.95 for gap in gaps), gaps  # the broker kept each retry back as long
    worker.assert_alive()
