"""Cut-over on the real stack: a namespace full of the0's ORIGINAL runtime's objects, shaped
exactly as its Go generator makes them (tests/support/legacy.py), is taken over by this
controller's passes — run through the same code path as every other integration test — and
ends with exactly our objects. A watch opened before the first pass records every instant:
never two pods for one bot, never our CronJob beside the original's CronJob or its pods."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.bots import bot_doc, run_pass, schedule_doc, wait_for
from tests.support.legacy import job_from_cronjob, legacy_cronjob, legacy_pod
from tools.stack.supervisor import Stack
from worker.core.legacy import REASON_NAME_TAKEN
from worker.core.naming import ANNOTATION_BOT_ID, cronjob_name, pod_name
from worker.reconcile.controller import LiveBotController, ScheduleController

MINIO = {"endpoint": "minio.the0.svc:9000", "access_key": "LEGACY-ACCESS-KEY",
         "secret_key": "LEGACY-SECRET-KEY"}
LONG_ID = "s" * 40 + "-long-schedule"  # 54 chars: the original cut its CronJob name


# --- the namespace as the original runtime left it ----------------------------------------------


@pytest.fixture
def baseline_namespace(stack: Stack, restricted_namespace: str) -> str:
    """The original's pods are no `restricted` pods (no securityContext): the namespace they
    ran in enforced at most `baseline`."""
    stack.kubectl("label", "--overwrite", "namespace", restricted_namespace,
                  "pod-security.kubernetes.io/enforce=baseline")
    return restricted_namespace


@dataclass
class Stores:
    """Where the test writes the world and reads the outcome (as the admin, not the
    controller)."""

    core: Any
    batch: Any
    bots: Any
    schedules: Any


@pytest.fixture
def stores(core: Any, admin_api: Any, bots: Any, mongo: Any, db_names: dict[str, str]
           ) -> Stores:
    from kubernetes import client

    return Stores(core=core, batch=client.BatchV1Api(admin_api), bots=bots,
                  schedules=mongo[db_names["bot_scheduler"]]["bot_schedules"])


@dataclass
class World:
    """What the test seeded: ids by what must become of them, and the original's uids."""

    take: list[str] = field(default_factory=list)      # enabled, original pod → ours
    delete: list[str] = field(default_factory=list)    # disabled or removed → no pod
    new: list[str] = field(default_factory=list)       # enabled, nothing yet → ours
    sch_take: list[str] = field(default_factory=list)
    sch_delete: list[str] = field(default_factory=list)
    sch_new: list[str] = field(default_factory=list)
    foreign: dict[str, str] = field(default_factory=dict)  # pod name → uid (never touched)
    original_uids: set[str] = field(default_factory=set)


def seed(stores: Stores, namespace: str, *,
         take: int, disabled: int, removed: int, new: int, sch_take: int, sch_disabled: int,
         sch_removed: int, sch_new: int, jobs_every: int = 3) -> World:
    core, batch = stores.core, stores.batch
    world = World()
    docs: list[dict[str, Any]] = []
    originals: list[dict[str, Any]] = []
    for i in range(take):
        extra: dict[str, Any] = {"memory_limit": "256Mi"} if i % 5 == 0 else {}
        # Every 7th id has a dot: the original's pod is `bot-take.07`, ours another name
        # (pod names here are DNS labels), so only the takeover's wait keeps them apart.
        bot_id = f"take.{i:02d}" if i % 7 == 6 else f"take{i:02d}"
        doc = bot_doc(bot_id, runtime="nodejs20" if i % 4 == 0 else "python3.11", **extra)
        docs.append(doc)
        originals.append(doc)
        world.take.append(doc["id"])
    for i in range(disabled):
        doc = bot_doc(f"off{i:02d}")
        originals.append(dict(doc))  # made while it was enabled
        doc = {**doc, "enabled": False} if i % 2 else bot_doc(f"off{i:02d}", enabled="false")
        docs.append(doc)
        world.delete.append(doc["id"])
    for i in range(removed):
        originals.append(bot_doc(f"gone{i:02d}"))  # no document any more
        world.delete.append(f"gone{i:02d}")
    for i in range(new):
        docs.append(bot_doc(f"new{i:02d}"))
        world.new.append(f"new{i:02d}")
    # Foreign: names and labels that disagree. `bot-mis` is labelled for another id, and bot
    # "mis" is enabled: its name is taken, nothing is created, nothing is deleted.
    docs.append(bot_doc("mis"))
    for name, claimed in (("mis", "imposter"), ("stray", "stray2")):
        body = legacy_pod(bot_doc(name), namespace=namespace, minio=MINIO)
        body["metadata"]["labels"]["the0.dev/bot-id"] = claimed
        world.foreign[f"bot-{name}"] = core.create_namespaced_pod(namespace, body).metadata.uid
    stores.bots.insert_many(docs)
    for doc in originals:
        created = core.create_namespaced_pod(namespace,
                                             legacy_pod(doc, namespace=namespace, minio=MINIO))
        world.original_uids.add(created.metadata.uid)

    sch_docs: list[dict[str, Any]] = []
    sch_originals: list[dict[str, Any]] = []
    for i in range(sch_take):
        # 6 fields: the original stripped the seconds, we convert losslessly: same schedule.
        doc = schedule_doc(f"sch-take{i:02d}", "0 0 0 1 1 *" if i % 2 else "0 0 1 1 *")
        sch_docs.append(doc)
        sch_originals.append(doc)
        world.sch_take.append(doc["id"])
    long_doc = schedule_doc(LONG_ID, "0 0 1 1 *")
    sch_docs.append(long_doc)
    sch_originals.append(long_doc)
    world.sch_take.append(LONG_ID)
    for i in range(sch_disabled):
        doc = schedule_doc(f"sch-off{i:02d}", "0 0 1 1 *")
        sch_originals.append(dict(doc))
        sch_docs.append(schedule_doc(f"sch-off{i:02d}", "0 0 1 1 *", enabled=False))
        world.sch_delete.append(doc["id"])
    for i in range(sch_removed):
        sch_originals.append(schedule_doc(f"sch-gone{i:02d}", "0 0 1 1 *"))
        world.sch_delete.append(f"sch-gone{i:02d}")
    for i in range(sch_new):
        sch_docs.append(schedule_doc(f"sch-new{i:02d}", "0 0 1 1 *"))
        world.sch_new.append(f"sch-new{i:02d}")
    stores.schedules.insert_many(sch_docs)
    for n, doc in enumerate(sch_originals):
        body = legacy_cronjob(doc, namespace=namespace, minio=MINIO)
        created = batch.create_namespaced_cron_job(namespace, body)
        world.original_uids.add(created.metadata.uid)
        if n % jobs_every == 0:  # a run of it exists: a Job and its pod
            batch.create_namespaced_job(namespace, job_from_cronjob(
                body, uid=created.metadata.uid))
    return world


# --- recording every instant --------------------------------------------------------------------


@dataclass
class Event:
    version: int
    resource: str  # "pods" | "cronjobs"
    kind: str      # ADDED | MODIFIED | DELETED
    name: str
    uid: str
    owner: tuple[str, str] | None  # ("live" | "scheduled", bot id)
    ours: bool


def _owner(resource: str, metadata: dict[str, Any]) -> tuple[tuple[str, str] | None, bool]:
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    if "managed-by" in labels:
        kind = "live" if labels["managed-by"] == "the0-bot-controller" else "scheduled"
        return (kind, annotations.get(ANNOTATION_BOT_ID, "")), True
    if "the0.dev/schedule-id" in labels:
        return ("scheduled", labels["the0.dev/schedule-id"]), False
    if resource == "pods" and "the0.dev/bot-id" in labels:
        return ("live", labels["the0.dev/bot-id"]), False
    return None, False


class Recorder:
    """Lists pods and CronJobs, then watches both from the lists' resourceVersions (before
    the first pass) until stopped; events are ordered by resourceVersion (etcd's revision)."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.calls = {"pods": client.CoreV1Api(api).list_namespaced_pod,
                      "cronjobs": client.BatchV1Api(api).list_namespaced_cron_job}
        self.events: list[Event] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for resource, call in self.calls.items():
            listing = json.loads(call(namespace, _preload_content=False).data)
            for item in listing["items"]:
                self._add(resource, "ADDED", item)
            version = listing["metadata"]["resourceVersion"]
            thread = threading.Thread(target=self._follow, args=(resource, version), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _add(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        owner, ours = _owner(resource, metadata)
        self.events.append(Event(int(metadata.get("resourceVersion") or 0), resource, kind,
                                 metadata.get("name", ""), metadata.get("uid", ""), owner, ours))

    def _follow(self, resource: str, version: str) -> None:
        call = self.calls[resource]
        while not self._stop.is_set():
            try:
                response = call(self.namespace, watch=True, resource_version=version,
                                allow_watch_bookmarks=True, timeout_seconds=2,
                                _preload_content=False)
                for line in _lines(response):
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(str(obj)[:300])
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._add(resource, event["type"], obj)
            except Exception as exc:  # a lost event would make the test blind: fail it
                self.errors.append(f"{resource}: {type(exc).__name__}: {exc}")
                return

    def stop(self) -> list[Event]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        assert not self.errors, self.errors
        return sorted(self.events, key=lambda e: e.version)


def _lines(response: Any) -> Iterator[bytes]:
    pending = b""
    for chunk in response.stream(1 << 16, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield pending


def assert_never_two(events: list[Event]) -> int:
    """Replays every instant: at most one pod per live bot; at most one CronJob per
    scheduled bot, and never ours while a pod of the original's for that bot exists.
    Returns how many instants were checked."""
    alive: dict[tuple[str, str], dict[str, Event]] = {}
    for event in events:
        if event.owner is None:
            continue
        objects = alive.setdefault(event.owner, {})
        key = f"{event.resource}/{event.uid}"
        if event.kind == "DELETED":
            objects.pop(key, None)
        else:
            objects[key] = event
        kind, bot_id = event.owner
        pods = [e for e in objects.values() if e.resource == "pods"]
        cronjobs = [e for e in objects.values() if e.resource == "cronjobs"]
        if kind == "live":
            assert len(pods) <= 1, f"two pods of bot {bot_id} at {event.version}: {pods}"
        else:
            assert len(cronjobs) <= 1, f"two CronJobs of {bot_id} at {event.version}"
            assert not (any(c.ours for c in cronjobs) and any(not p.ours for p in pods)), (
                f"our CronJob of {bot_id} beside the original's pod at {event.version}")
    return len(events)


# --- the tests ----------------------------------------------------------------------------------


def converge_all(controllers: list[LiveBotController | ScheduleController],
                 passes: int = 8) -> list[Any]:
    """Passes of both kinds until one plans nothing (every action runs right here)."""
    reports = []
    for _ in range(passes):
        quiet = True
        for controller in controllers:
            report, outcomes = run_pass(controller)
            reports.append(report)
            quiet = quiet and not outcomes and not report.counts.get("waiting")
        if quiet:
            return reports
    raise AssertionError(f"not converged after {passes} passes: {reports[-2:]}")


def test_a_namespace_of_the_originals_objects_ends_with_exactly_ours(
        make_controller: Callable[..., LiveBotController], settings_env: dict[str, str],
        baseline_namespace: str, stores: Stores, statuses: Any, admin_api: Any) -> None:
    namespace, core, batch = baseline_namespace, stores.core, stores.batch
    world = seed(stores, namespace, take=24, disabled=8, removed=8, new=4, sch_take=6,
                 sch_disabled=3, sch_removed=3, sch_new=2)
    live = make_controller()
    scheduled = ScheduleController(live.rt)
    wait_for(lambda: len(batch.list_namespaced_job(namespace).items) == 5, "original jobs")
    # And their pods: the original runtime as an operator finds it. A Job whose pod the job
    # controller has not made yet when its CronJob is deleted can still get one a moment later
    # (its cache is behind; the garbage collector removes that orphan), and on a loaded stack
    # that pod appeared beside our new CronJob — Kubernetes' race, not a step of the takeover.
    wait_for(lambda: len(core.list_namespaced_pod(
        namespace, label_selector="the0.dev/schedule-id").items) == 5, "original job pods")
    recorder = Recorder(admin_api, namespace)

    # `plan` shows each step as a takeover (reads only).
    shown = subprocess.run([sys.executable, "-m", "worker", "plan"], env=settings_env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    takeovers = [line for line in shown.stdout.splitlines() if line.startswith("takeover")]
    assert len(takeovers) == len(world.take) + len(world.sch_take), shown.stdout
    assert "foreign" in shown.stdout and "blocked" in shown.stdout
    assert "LEGACY-SECRET-KEY" not in shown.stdout + shown.stderr

    # An event for one bot (a GET of bot-<id> returns the original's pod) takes it over too:
    # recognised as the original's, never adopted.
    assert live.converge("take00", intent="event") == "replaced"
    assert scheduled.converge("sch-take00", intent="event") == "replaced"
    assert live.converge("mis", intent="event") == "failed: name_taken"

    reports = converge_all([live, scheduled])
    first_live, first_scheduled = reports[0], reports[1]
    assert first_live.counts["takeover"] == len(world.take) - 1
    assert first_live.counts["delete"] == len(world.delete)
    assert first_live.counts["create"] == len(world.new)
    assert first_live.foreign == 2 and first_live.counts["name_taken"] == 1
    assert first_scheduled.counts["takeover"] == len(world.sch_take) - 1
    assert first_scheduled.counts["delete"] == len(world.sch_delete)
    instants = assert_never_two(recorder.stop())
    assert instants > 2 * (len(world.take) + len(world.delete))

    # Exactly our objects, plus the two foreign pods, untouched.
    pods = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
    ours = {name: p for name, p in pods.items() if (p.metadata.labels or {}).get("managed-by")}
    assert sorted(ours) == sorted(pod_name(i) for i in world.take + world.new)
    assert {name: p.metadata.uid for name, p in pods.items() if name not in ours} == \
        world.foreign
    for pod in ours.values():
        assert pod.metadata.uid not in world.original_uids
        assert "the0.dev/managed-by" not in pod.metadata.labels
    cronjobs = {c.metadata.name: c for c in batch.list_namespaced_cron_job(namespace).items}
    assert sorted(cronjobs) == sorted(cronjob_name(i) for i in world.sch_take + world.sch_new)
    assert all(c.metadata.labels.get("managed-by") == "the0-schedule-controller"
               and c.metadata.uid not in world.original_uids for c in cronjobs.values())
    assert cronjob_name(LONG_ID) != "schedule-" + LONG_ID[:43]
    wait_for(lambda: not batch.list_namespaced_job(namespace).items, "original jobs gone")

    mis = statuses.find_one({"id": "mis"})
    assert mis["reason"] == REASON_NAME_TAKEN and "bot-mis" in mis["message"]
    assert live.rt.kube.flush_events(), "events still queued after 5 s"
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=bot-take01").items
    assert "TookOver" in {e.reason for e in events}


def test_the_guard_holds_back_deleting_the_originals_pods_and_reports_it(
        make_controller: Callable[..., LiveBotController], baseline_namespace: str,
        stores: Stores) -> None:
    namespace = baseline_namespace
    world = seed(stores, namespace, take=4, disabled=3, removed=7, new=0, sch_take=0,
                 sch_disabled=0, sch_removed=0, sch_new=0)
    guarded = make_controller(MAX_DELETE_FRACTION="0.1", MAX_DELETE_MIN="2")
    report, outcomes = run_pass(guarded)
    assert "mass-deletion guard" in report.guard_message
    assert "10 of 14 pods" in report.guard_message
    assert report.counts["blocked_deletions"] == 10 and report.counts["delete"] == 0
    assert outcomes == ["replaced"] * 4  # takeovers are no deletions of bots: they proceed
    names = {p.metadata.name for p in stores.core.list_namespaced_pod(namespace).items}
    assert {f"bot-{i}" for i in world.delete} <= names
    relaxed = make_controller(MAX_DELETE_FRACTION="1")
    _, outcomes = run_pass(relaxed)
    assert outcomes == ["deleted"] * 10


def test_the_originals_objects_come_from_a_cache_of_their_own(
        make_controller: Callable[..., LiveBotController], baseline_namespace: str,
        stores: Stores) -> None:
    """A steady pass makes no list request for the original's objects either, and a pass
    right after a takeover sees the original's pod deleted at once: their cache waits for
    our writes of THEM only (a wait for our own pods' writes, which that cache never sees,
    would end in a 5 s timeout and a list every pass)."""
    world = seed(stores, baseline_namespace, take=2, disabled=1, removed=0, new=1,
                 sch_take=1, sch_disabled=0, sch_removed=0, sch_new=0)
    live = make_controller()
    scheduled = ScheduleController(live.rt)
    kube = live.rt.kube
    run_pass(live)  # the first pass of this process lists, once per cache
    run_pass(scheduled)
    lists = kube.list_requests
    started = time.monotonic()
    converge_all([live, scheduled])  # ends with a pass of each that has nothing to do
    assert kube.list_requests == lists, "a pass listed: some cache did not answer"
    assert time.monotonic() - started < 20
    caches = {i.name: i for i in live.rt.informers()}
    assert {"pods", "legacy-pods", "cronjobs", "jobs", "legacy-cronjobs"} <= set(caches)
    assert caches["legacy-pods"].lists == 1 and caches["legacy-cronjobs"].lists == 1
    assert kube.written_version("legacy-pods") > 0  # the takeovers' deletes, remembered apart
    names = {p.metadata.name for p in stores.core.list_namespaced_pod(baseline_namespace).items
             if (p.metadata.labels or {}).get("managed-by")}
    assert names == {pod_name(i) for i in world.take + world.new}
