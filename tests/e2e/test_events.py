"""NATS events end to end: REAL `python -m worker events` consumers and a REAL Celery worker
against real NATS, FerretDB and the API server. No beat runs unless a test says so, so what
happens in Kubernetes was caused by the event, not by a periodic pass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from kubernetes import client

from tests.support.api import Served, start_api
from tests.support.bots import bot_doc, schedule_doc, wait_for
from tests.support.nats import publish
from tests.support.procs import Proc, Procs
from tests.support.procs_watch import PodCensus, pods_by_bot
from tools.stack.supervisor import Stack, StackEnv
from worker.core.naming import ANNOTATION_CONFIG_HASH, cronjob_name

Start = Callable[..., Proc]


# --------------------------------------------------------------------------- helpers
def heartbeats(redis_client: Any) -> list[dict[str, Any]]:
    found = []
    for key in redis_client.scan_iter("the0:heartbeat:events:*"):
        raw = redis_client.get(key)
        if raw:
            found.append(json.loads(raw))
    return found


def wait_subscribed(redis_client: Any, consumers: list[Proc], count: int = 1) -> None:
    def ready() -> bool:
        for proc in consumers:
            proc.assert_alive()
        beats = heartbeats(redis_client)
        connected = [b for b in beats if b["connected"]]
        return len(connected) >= count and all(
            "subscribed to" in proc.output() for proc in consumers)
    wait_for(ready, f"{count} events consumer(s) connected and subscribed", timeout=30,
             interval=0.2)


def live_pods(core: Any, namespace: str, bot_id: str) -> list[Any]:
    return [p for p in pods_by_bot(core, namespace).get(bot_id, [])
            if p.metadata.deletion_timestamp is None]


def event_counts(redis_client: Any) -> dict[str, int]:
    """the0_events_total by outcome, as the consumers flushed it to Redis for /metrics."""
    raw = redis_client.hgetall("the0:metrics:the0_events_total")
    return {json.loads(k)[0]: int(float(v)) for k, v in raw.items()}


def settled_counts(redis_client: Any, ready: Callable[[dict[str, int]], bool],
                   what: str) -> dict[str, int]:
    """The shared counts once `ready` holds (consumers flush them with each heartbeat)."""
    wait_for(lambda: ready(event_counts(redis_client)), what, timeout=20, interval=0.2)
    return event_counts(redis_client)


@pytest.fixture
def batch(admin_api: Any) -> Any:
    return client.BatchV1Api(admin_api)


@pytest.fixture
def schedules(mongo: Any, db_names: dict[str, str]) -> Any:
    return mongo[db_names["bot_scheduler"]]["bot_schedules"]


@pytest.fixture
def running(start_worker: Start, start_events: Start, redis_client: Any,
            celery_client: Celery) -> tuple[Proc, Proc]:
    worker = start_worker("w1")
    consumer = start_events()
    wait_subscribed(redis_client, [consumer])
    return worker, consumer


# --------------------------------------------------------------------------- live bots
def test_live_bot_events_act_at_once(
        running: tuple[Proc, Proc], stack_env: StackEnv, code: str, bots: Any, core: Any,
        restricted_namespace: str, census: Callable[[], PodCensus]) -> None:
    worker, consumer = running
    pods = census()
    url = stack_env.nats_url

    # created → a document in Mongo and a pod, with no beat running.
    sent = time.monotonic()
    doc = bot_doc("ev-1")
    publish(url, [("the0.bot.created", {"id": "ev-1", "config": doc["config"],
                                         "custom": doc["custom"]})])
    wait_for(lambda: live_pods(core, restricted_namespace, "ev-1"), "the created bot's pod",
             timeout=15)
    print(f"created → pod in {time.monotonic() - sent:.2f} s")
    stored = bots.find_one({"id": "ev-1"}, {"_id": False})
    assert stored == {"id": "ev-1", "config": doc["config"], "custom": doc["custom"]}

    # A second `created` for the same id changes nothing (insert only if absent).
    publish(url, [("the0.bot.created", {"id": "ev-1", "config": {"other": 1},
                                         "custom": doc["custom"]})])
    # updated (legacy wrapper) → config set in Mongo, pod replaced with the new config hash.
    old = live_pods(core, restricted_namespace, "ev-1")[0]
    new_config = {**doc["config"], "risk": "high"}
    sent = time.monotonic()
    publish(url, [("the0.bot.updated", {"type": "bot.updated", "entity_id": "ev-1",
                                         "data": {"id": "ev-1", "config": new_config,
                                                  "custom": doc["custom"]},
                                         "timestamp": "2026-11-29T10:00:00Z"})])

    def replaced() -> bool:
        now = live_pods(core, restricted_namespace, "ev-1")
        return bool(now) and now[0].metadata.uid != old.metadata.uid
    wait_for(replaced, "the updated bot's pod to be replaced", timeout=20)
    print(f"updated → replaced pod in {time.monotonic() - sent:.2f} s")
    new = live_pods(core, restricted_namespace, "ev-1")[0]
    assert (new.metadata.annotations[ANNOTATION_CONFIG_HASH]
            != old.metadata.annotations[ANNOTATION_CONFIG_HASH])
    assert bots.find_one({"id": "ev-1"})["config"] == new_config
    assert bots.count_documents({"id": "ev-1"}) == 1

    # updated for an unknown id inserts it (upstream's upsert).
    publish(url, [("the0.bot.updated", {"id": "ev-2", "config": doc["config"],
                                         "custom": doc["custom"]})])
    wait_for(lambda: live_pods(core, restricted_namespace, "ev-2"), "ev-2's pod", timeout=15)

    # deleted → document and pod gone.
    sent = time.monotonic()
    publish(url, [("the0.bot.deleted", {"id": "ev-1"})])
    wait_for(lambda: not pods_by_bot(core, restricted_namespace).get("ev-1"),
             "the deleted bot's pod to go", timeout=20)
    print(f"deleted → pod gone in {time.monotonic() - sent:.2f} s")
    assert bots.count_documents({"id": "ev-1"}) == 0
    assert bots.count_documents({"id": "ev-2"}) == 1
    pods.check()
    worker.assert_alive()
    consumer.assert_alive()
    # No secret value in either process's log.
    for proc in (worker, consumer):
        assert "SECRET-ev-1" not in proc.output()


def test_a_burst_for_one_bot_collapses_into_one_action_on_the_latest_state(
        running: tuple[Proc, Proc], stack_env: StackEnv, code: str, bots: Any, core: Any,
        restricted_namespace: str, redis_client: Any, census: Callable[[], PodCensus]) -> None:
    pods = census()
    doc = bot_doc("burst")
    bots.insert_one(dict(doc))
    publish(stack_env.nats_url, [("the0.bot.updated", {"id": "burst", "config": doc["config"],
                                                        "custom": doc["custom"]})])
    wait_for(lambda: live_pods(core, restricted_namespace, "burst"), "the bot's pod")
    first = live_pods(core, restricted_namespace, "burst")[0]
    updates = [("the0.bot.updated", {"id": "burst", "config": {**doc["config"], "step": i},
                                     "custom": doc["custom"]}) for i in range(30)]
    publish(stack_env.nats_url, updates)

    def at_latest() -> bool:
        stored = bots.find_one({"id": "burst"})
        now = live_pods(core, restricted_namespace, "burst")
        return (stored["config"].get("step") == 29 and len(now) == 1
                and now[0].metadata.uid != first.metadata.uid)
    wait_for(at_latest, "the bot at its latest config", timeout=30)
    time.sleep(3)  # let any straggling task finish: the end state must hold
    final = live_pods(core, restricted_namespace, "burst")
    assert len(final) == 1
    counts = settled_counts(redis_client, lambda c: c.get("applied:updated", 0) >= 31,
                            "31 applied updates counted")
    # 31 events; far fewer reconciles were queued (the rest found one already queued).
    assert counts.get("applied:updated", 0) == 31
    assert counts.get("collapsed", 0) >= 10, counts
    assert counts.get("enqueued", 0) + counts.get("collapsed", 0) == 31, counts
    created = [h for h in pods.history if h[2] == "burst" and h[1] == "ADDED"]
    assert len(created) <= 1 + counts["enqueued"], (created, counts)
    print(f"31 events → {counts['enqueued']} reconciles, {len(created)} pods created")
    pods.check()


# --------------------------------------------------------------------------- schedules
def test_schedule_events_create_update_in_place_and_delete(
        running: tuple[Proc, Proc], stack_env: StackEnv, code: str, schedules: Any,
        batch: Any, restricted_namespace: str, redis_client: Any) -> None:
    url = stack_env.nats_url
    name = cronjob_name("sched-ev")
    doc = schedule_doc("sched-ev", "0 3 * * *")

    def cronjob() -> Any:
        try:
            return batch.read_namespaced_cron_job(name, restricted_namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    publish(url, [("the0.bot-schedule.created", {"id": "sched-ev", "config": doc["config"],
                                                  "custom": doc["custom"]})])
    created = wait_for(cronjob, "the schedule's CronJob", timeout=15)
    assert created.spec.schedule == "0 3 * * *"
    assert schedules.count_documents({"id": "sched-ev"}) == 1

    # A schedule without config.schedule is rejected: Mongo and the CronJob keep the old one.
    publish(url, [("the0.bot-schedule.updated", {"id": "sched-ev", "config": {"x": 1}})])
    publish(url, [("the0.bot-schedule.updated", {
        "id": "sched-ev", "config": {**doc["config"], "schedule": "30 4 * * *"},
        "custom": doc["custom"]})])
    updated = wait_for(lambda: (cj := cronjob()) is not None
                       and cj.spec.schedule == "30 4 * * *" and cj,
                       "the CronJob updated in place", timeout=15)
    assert updated.metadata.uid == created.metadata.uid
    settled_counts(redis_client, lambda c: c.get("rejected:no_schedule") == 1,
                   "the schedule without config.schedule counted as rejected")

    publish(url, [("the0.bot-schedule.deleted", {"id": "sched-ev"})])
    wait_for(lambda: cronjob() is None, "the CronJob to go", timeout=15)
    assert schedules.count_documents({"id": "sched-ev"}) == 0


# --------------------------------------------------------------------------- delivery
def test_two_consumers_in_the_queue_group_never_process_one_message_twice(
        start_worker: Start, start_events: Start, stack_env: StackEnv, code: str, bots: Any,
        redis_client: Any) -> None:
    start_worker("w1")
    one, two = start_events("events-1"), start_events("events-2")
    wait_subscribed(redis_client, [one, two], count=2)
    doc = bot_doc("q")
    messages = [("the0.bot.created", {"id": f"q-{i}", "config": doc["config"],
                                      "custom": doc["custom"]}) for i in range(60)]
    publish(stack_env.nats_url, messages)

    def all_applied() -> bool:
        return event_counts(redis_client).get("applied:created", 0) >= 60
    wait_for(all_applied, "60 applied events", timeout=30, interval=0.2)
    time.sleep(1)  # a duplicate delivery would show up now
    wait_for(lambda: sum(b["counts"].get("applied:created", 0)
                         for b in heartbeats(redis_client)) == 60,
             "the consumers' heartbeats to report their counts", timeout=15)
    per_consumer = {b["name"]: b["counts"].get("applied:created", 0)
                    for b in heartbeats(redis_client)}
    print(f"deliveries per consumer: {per_consumer}")
    assert event_counts(redis_client)["applied:created"] == 60
    assert len(per_consumer) == 2 and all(n > 0 for n in per_consumer.values()), per_consumer
    assert bots.count_documents({}) == 60
    assert one.output().count("rejected") == two.output().count("rejected") == 0


def test_poison_messages_are_counted_logged_without_secrets_and_never_stop_the_consumer(
        running: tuple[Proc, Proc], stack_env: StackEnv, code: str, bots: Any, core: Any,
        restricted_namespace: str, redis_client: Any) -> None:
    _worker, consumer = running
    secret = "SECRET-POISON-7f3a"
    max_payload = publish(stack_env.nats_url, [])
    # A payload exactly at the server's limit (1 MiB by default), holding a secret.
    filler = secret * (max_payload // len(secret))
    huge = ('{"id":"p","config":{"k":"' + filler + '"}}').encode()
    huge = huge[:max_payload - 3] + b'"}}'
    assert len(huge) == max_payload
    poison: list[tuple[str, Any]] = [
        ("the0.bot.created", b"not json " + secret.encode()),
        ("the0.bot.created", b"\xff\xfe\x00"),
        ("the0.bot.created", b"[1, 2, 3]"),
        ("the0.bot.created", {"config": {"api_key": secret}}),             # no id
        ("the0.bot.updated", {"id": 12, "config": {"api_key": secret}}),   # wrong id type
        ("the0.bot.updated", {"id": "p", "config": secret}),               # wrong config type
        ("the0.bot.created", {"id": "p", "config": {}, "custom": [secret]}),
        ("the0.bot.created", huge),
        ("the0.bot-schedule.created", {"id": "p", "config": {"api_key": secret}}),
    ]
    doc = bot_doc("after-poison")
    good = ("the0.bot.created", {"id": "after-poison", "config": doc["config"],
                                 "custom": doc["custom"]})
    publish(stack_env.nats_url, [*poison, good])
    wait_for(lambda: live_pods(core, restricted_namespace, "after-poison"),
             "a good event after the poison to be acted on", timeout=20)
    wait_for(lambda: sum(v for k, v in event_counts(redis_client).items()
                         if k.startswith("rejected:")) == len(poison),
             "every poison message counted", timeout=15)
    counts = event_counts(redis_client)
    assert {k: v for k, v in counts.items() if k.startswith("rejected:")} == {
        "rejected:not_json": 2, "rejected:not_object": 1, "rejected:no_id": 2,
        "rejected:bad_config": 1, "rejected:bad_custom": 1, "rejected:too_large": 1,
        "rejected:no_schedule": 1}
    assert bots.count_documents({"id": "p"}) == 0
    consumer.assert_alive()
    assert secret not in consumer.output()
    assert consumer.output().count("rejected message") == len(poison)


# --------------------------------------------------------------------------- NATS failures
def events_check(api: Served) -> dict[str, Any]:
    body = api.get("/readyz").json()
    return next(c for c in body["checks"] if c["name"] == "events")


def test_nats_restarted_mid_run_and_down_at_start(
        stack: Stack, procs: Procs, start_worker: Start, start_beat: Start,
        start_events: Start, stack_env: StackEnv, code: str, bots: Any, core: Any,
        restricted_namespace: str, redis_client: Any) -> None:
    api = start_api(procs, HEARTBEAT_TTL="3s")
    start_worker("w1")
    consumer = start_events()
    wait_subscribed(redis_client, [consumer])
    wait_for(lambda: events_check(api)["ok"], "/readyz: events check passing", timeout=10)
    doc = bot_doc("n")

    with stack.stopped("nats"):
        # The consumer's heartbeat says "not connected", and /readyz fails `events`.
        wait_for(lambda: any(not b["connected"] for b in heartbeats(redis_client)),
                 "the heartbeat to report NATS disconnected", timeout=20, interval=0.2)
        check = wait_for(lambda: (c := events_check(api)) and not c["ok"] and c,
                         "/readyz to fail the events check", timeout=10, interval=0.2)
        print(f"/readyz with NATS down: {check}")
        assert api.get("/readyz").status_code == 503
        consumer.assert_alive()
        # The periodic reconcile still converges without NATS.
        beat = start_beat()
        bots.insert_one(bot_doc("during-outage"))
        wait_for(lambda: live_pods(core, restricted_namespace, "during-outage"),
                 "the periodic reconcile to create a pod while NATS is down", timeout=20)
        beat.stop()
        # A consumer started while NATS is down keeps trying.
        late = start_events("events-late")
        wait_for(lambda: late.output().count("cannot connect") >= 2,
                 "the late consumer to retry connecting", timeout=30, interval=0.2)
        late.assert_alive()

    wait_for(lambda: sum(1 for b in heartbeats(redis_client) if b["connected"]) == 2,
             "both consumers connected after NATS came back", timeout=40, interval=0.2)
    wait_for(lambda: events_check(api)["ok"], "/readyz: events check passing again",
             timeout=10)
    publish(stack_env.nats_url, [("the0.bot.created", {"id": "n", "config": doc["config"],
                                                        "custom": doc["custom"]})])
    wait_for(lambda: live_pods(core, restricted_namespace, "n"),
             "an event after the restart to be acted on", timeout=20)
    settled_counts(redis_client, lambda c: c.get("applied:created") == 1,
                   "one applied create counted")
    consumer.assert_alive()
    late.assert_alive()
    assert "reconnected" in consumer.output() or "connected to" in consumer.output()
