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
from worker.adapters.telemetry import PRIORITY_STEPS
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


def drained(redis_client: Any, count: int, *, since: float) -> bool:
    """`count` consumers wrote a heartbeat after `since` with no message in progress."""
    beats = [b for b in heartbeats(redis_client) if b["at"] > since]
    return len(beats) >= count and all(b["in_progress"] == 0 for b in beats)


def quiet(redis_client: Any) -> bool:
    """No Celery task queued or unacknowledged, and no bot marked pending, in flight or locked:
    nothing can still act (no beat runs in these tests)."""
    queued = sum(redis_client.llen(queue + step) for queue in ("reconcile", "bots")
                 for step in PRIORITY_STEPS)
    marks = [k for pattern in ("the0:event-pending:*", "the0:inflight:*", "the0:lock:*")
             for k in redis_client.scan_iter(pattern)]
    return queued == 0 and redis_client.hlen("unacked") == 0 and not marks


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
        restricted_namespace: str, redis_client: Any,
        census: Callable[[], PodCensus]) -> None:
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

    # A second `created` for the same id changes nothing (insert only if absent): once the
    # consumer has handled it, the document is still the first one.
    publish(url, [("the0.bot.created", {"id": "ev-1", "config": {"other": 1},
                                         "custom": doc["custom"]})])
    settled_counts(redis_client, lambda c: c.get("applied:created") == 2,
                   "the second created handled")
    assert bots.find_one({"id": "ev-1"}, {"_id": False}) == stored
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
    # Every straggling task has run (nothing queued, unacked, marked or locked): the end state
    # must hold.
    wait_for(lambda: quiet(redis_client), "no task queued or running", timeout=30)
    final = live_pods(core, restricted_namespace, "burst")
    assert len(final) == 1
    latest = bots.find_one({"id": "burst"})["config"]
    assert latest.get("step") == 29
    assert final[0].metadata.uid == live_pods(core, restricted_namespace, "burst")[0].metadata.uid
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

    # A schedule without config.schedule is rejected: once it is counted, Mongo still holds
    # the old document (so no reconcile can change the CronJob) and the CronJob is unchanged.
    publish(url, [("the0.bot-schedule.updated", {"id": "sched-ev", "config": {"x": 1}})])
    settled_counts(redis_client, lambda c: c.get("rejected:no_schedule") == 1,
                   "the schedule without config.schedule counted as rejected")
    assert schedules.find_one({"id": "sched-ev"})["config"] == doc["config"]
    unchanged = cronjob()
    assert (unchanged.metadata.uid, unchanged.spec.schedule) == (created.metadata.uid,
                                                                  "0 3 * * *")
    publish(url, [("the0.bot-schedule.updated", {
        "id": "sched-ev", "config": {**doc["config"], "schedule": "30 4 * * *"},
        "custom": doc["custom"]})])
    updated = wait_for(lambda: (cj := cronjob()) is not None
                       and cj.spec.schedule == "30 4 * * *" and cj,
                       "the CronJob updated in place", timeout=15)
    assert updated.metadata.uid == created.metadata.uid

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
    # A duplicate delivery would be in progress now: wait for a heartbeat of each consumer
    # written after this moment with nothing in progress, then count.
    since = time.time()
    wait_for(lambda: drained(redis_client, 2, since=since),
             "both consumers' heartbeats with nothing in progress", timeout=15)
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


def deep_config(levels: int, secret: str) -> bytes:
    """A config nested `levels` objects deep, as raw JSON (~6 bytes a level)."""
    return (b'{"api_key":"' + secret.encode() + b'","k":' + b'{"a":' * levels + b"1"
            + b"}" * levels + b"}")


def test_a_burst_of_poison_events_never_delays_another_users_stop_by_a_second(
        running: tuple[Proc, Proc], stack_env: StackEnv, code: str, bots: Any,
        statuses: Any, core: Any, restricted_namespace: str, redis_client: Any) -> None:
    """Issue 15: 16 events whose documents the database refuses were retried for a minute
    each, holding all 16 of the consumer's slots; another user's "stop bot" waited 56 s. Now a
    refused document fails its event at once (counted, in that bot's status), and a payload
    too deep is refused before any write."""
    _worker, consumer = running
    url = stack_env.nats_url
    secret = "SECRET-POISON-b2c9"
    victim = bot_doc("victim")
    publish(url, [("the0.bot.created", {"id": "victim", "config": victim["config"],
                                         "custom": victim["custom"]})])
    wait_for(lambda: live_pods(core, restricted_namespace, "victim"), "the victim's pod",
             timeout=20)
    # The same kind of event without poison before it, on this machine now: what "delayed"
    # is measured from (a loaded machine takes ~0.5 s more for either, poison or not).
    bystander = bot_doc("bystander", enabled=False)
    publish(url, [("the0.bot.created", {k: bystander[k] for k in ("id", "config", "custom")})])
    wait_for(lambda: bots.find_one({"id": "bystander"}), "the bystander stored", timeout=20)
    baseline_sent = time.monotonic()
    publish(url, [("the0.bot.updated", {"id": "bystander", "custom": bystander["custom"],
                                         "config": {**bystander["config"], "note": "x"}})])
    wait_for(lambda: bots.find_one({"id": "bystander"})["config"].get("note") == "x",
             "the bystander's update applied", timeout=20, interval=0.01)
    baseline = time.monotonic() - baseline_sent

    # What the test server (FerretDB v1.24) refuses although MongoDB 7 stores it — each one
    # a retry for the whole EVENT_APPLY_DEADLINE before — and a NaN, on which FerretDB drops
    # the connection (an "outage" to the driver), four of each: 16, one per slot.
    refused_configs = [{"api_key": secret, "a.b": 1}, {"api_key": secret, "x": {"$schema": 1}},
                       {"api_key": secret, "m": [[1, 2]]}, {"api_key": secret, "s": "a\x00b"}]
    poison: list[tuple[str, Any]] = [
        ("the0.bot.updated", {"id": f"attacker-{n}-{i}", "config": config,
                              "custom": victim["custom"]})
        for n, config in enumerate(refused_configs) for i in range(4)]
    nan = [("the0.bot.created", b'{"id":"attacker-nan-%d","config":{"api_key":"%s","x":NaN}}'
            % (i, secret.encode())) for i in range(4)]
    # The 749 bytes: a config nested deeper than MongoDB's 100 levels.
    deep = [("the0.bot.created", b'{"id":"attacker-deep-%d","config":%s}'
             % (i, deep_config(120, secret))) for i in range(4)]
    print(f"a too-deep payload is {len(deep[0][1])} bytes")
    # A legacy wrapper whose ids disagree, after the stop: applied to data.id, it would
    # restart the victim with the attacker's config.
    wrapper = ("the0.bot.updated", {"type": "bot.updated", "entity_id": "attacker-w",
                                    "data": {"id": "victim", "config": {**victim["config"],
                                                                        "api_key": secret},
                                             "custom": victim["custom"]}})
    stop = ("the0.bot.updated", {"id": "victim", "config": {**victim["config"],
                                                            "enabled": False},
                                 "custom": victim["custom"]})
    sent = time.monotonic()
    publish(url, [*poison, *nan, *deep, stop, wrapper])

    def stopped() -> bool:
        return bots.find_one({"id": "victim"})["config"].get("enabled") is False
    wait_for(stopped, "the victim's stop applied", timeout=90, interval=0.01)
    delay = time.monotonic() - sent
    print(f"another user's stop after {len(poison) + len(nan) + len(deep)} poison events: "
          f"applied {delay:.3f} s after they were published (without poison: {baseline:.3f} s)")
    wait_for(lambda: not pods_by_bot(core, restricted_namespace).get("victim"),
             "the stopped victim's pod to go", timeout=20)
    print(f"... its pod gone {time.monotonic() - sent:.2f} s after")
    assert delay - baseline < 1.0, (
        f"the stop waited {delay - baseline:.2f} s behind the poison events "
        f"({delay:.2f} s in all, {baseline:.2f} s without them)")

    counts = settled_counts(redis_client, lambda c: c.get("failed:refused", 0) >= 16
                            and c.get("rejected:ids_disagree", 0) >= 1,
                            "every poison event counted")
    assert counts.get("failed:refused") == 16, counts
    assert counts.get("rejected:not_json") == 4, counts
    assert counts.get("rejected:too_deep") == 4, counts
    assert counts.get("rejected:ids_disagree") == 1, counts
    assert "failed:mongo" not in counts and "crashed" not in counts, counts
    # Nothing of theirs was written; the victim holds its own (stopped) config.
    assert bots.count_documents({"id": {"$regex": "^attacker"}}) == 0
    assert bots.find_one({"id": "victim"}, {"_id": False})["config"] == stop[1]["config"]
    # Each attacker's status says its event was refused, and why.
    refused = {d["id"]: d for d in statuses.find({"id": {"$regex": "^attacker"}})}
    assert sorted(refused) == sorted([m[1]["id"] for m in poison]
                                     + [f"attacker-nan-{i}" for i in range(4)]
                                     + [f"attacker-deep-{i}" for i in range(4)]
                                     + ["attacker-w"])
    assert {d["phase"] for d in refused.values()} == {"Refused"}
    assert {d["reason"] for d in refused.values()} == {"refused", "not_json", "too_deep",
                                                         "ids_disagree"}
    assert "nested more than 100 levels" in refused["attacker-deep-0"]["last_error"]
    assert "(code 2)" in refused["attacker-0-0"]["last_error"]
    assert "(code 1)" in refused["attacker-3-0"]["last_error"]  # FerretDB: NUL in a string
    victim_status = statuses.find_one({"id": "victim"})
    assert victim_status is None or victim_status["phase"] != "Refused"
    # Logged with the bot id, never with the config.
    output = consumer.output()
    assert output.count("REFUSED live updated for bot 'attacker-") == 16
    assert "bot 'attacker-deep-0'" in output and "bot 'attacker-w'" in output
    assert secret not in output
    consumer.assert_alive()


# --------------------------------------------------------------------------- NATS failures
def events_check(api: Served) -> dict[str, Any]:
    body = api.get("/readyz").json()
    return next(c for c in body["checks"] if c["name"] == "events")


def test_a_paused_nats_fails_readiness_within_a_few_seconds(
        stack: Stack, procs: Procs, start_events: Start, redis_client: Any) -> None:
    """A paused server (SIGSTOP: the connection stays open, nothing answers — a network cut)
    is in the heartbeat within one beat's probe, not after nats-py's 3 missed keep-alive pings
    (30 s with the default NATS_PING_INTERVAL, which this consumer keeps)."""
    api = start_api(procs, HEARTBEAT_TTL="3s")
    consumer = start_events()
    wait_subscribed(redis_client, [consumer])
    wait_for(lambda: events_check(api)["ok"], "/readyz: events check passing", timeout=10)
    with stack.paused("nats"):
        paused_at = time.monotonic()
        wait_for(lambda: not events_check(api)["ok"], "/readyz to fail the events check",
                 timeout=8, interval=0.2)
        seen_after = time.monotonic() - paused_at
        assert api.get("/readyz").status_code == 503
        consumer.assert_alive()
    print(f"paused NATS failed /readyz after {seen_after:.1f} s")
    wait_for(lambda: events_check(api)["ok"], "/readyz: events check passing after SIGCONT",
             timeout=10, interval=0.2)
    assert "left a ping unanswered" in consumer.output()
    consumer.assert_alive()


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
    # Both consumers receive again: the one that lived through the outage reconnected and
    # resubscribed (20 messages split over a queue group of two: both get some, but for a
    # chance of 2 in a million).
    publish(stack_env.nats_url, [("the0.bot.created", {"id": f"n-{i}", "config": doc["config"],
                                                        "custom": doc["custom"]})
                                 for i in range(20)])
    settled_counts(redis_client, lambda c: c.get("applied:created") == 21,
                   "21 applied creates counted")
    since = time.time()
    wait_for(lambda: drained(redis_client, 2, since=since), "both consumers' counts", timeout=10)
    per_consumer = {b["name"]: b["counts"].get("applied:created", 0)
                    for b in heartbeats(redis_client)}
    assert len(per_consumer) == 2 and all(n > 0 for n in per_consumer.values()), per_consumer
    consumer.assert_alive()
    late.assert_alive()
    assert "nats: reconnected to" in consumer.output()
    assert "nats: connected to" in late.output()
