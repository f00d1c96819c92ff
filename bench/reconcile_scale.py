"""Reconcile at scale on the real stack: cold start, no-op pass, 100 replaces.

    .venv/bin/python bench/reconcile_scale.py --bots 10000

Starts its own stack, seeds N bots (one shared code zip), runs a real `celery -A worker
worker -Q reconcile,bots` (log collection has its own benchmark and workers) and beat, and
measures:
  cold_start_s       first reconcile → all N pods Running (followed by one list and a
                     watch, so the measurement loads the API server no more than needed)
  creates_per_s      N / cold_start_s
  first_pass_s       the first pass of a new worker process (in-process, same code as the
                     task): it lists every pod into its watched cache and reads every document
  raw_pods           how many pods the raw loop made (--raw)
  raw_creates_per_s  the stack's raw create capacity, measured first in the same run: objects
                     and their Secrets (the controller's own bodies) created by a bare loop
                     with the same client and WORKER_CONCURRENCY threads, no controller — the
                     cold start's mix: --raw pods and, with --schedules M, raw * M / N CronJobs
  creates_ratio      (N + M) / cold_start_s / raw_creates_per_s
  raw_running_per_s  the raw loop's pods per second until all are Running (as cold_start_s)
  creates_ratio_running  creates_per_s / raw_running_per_s
  created_s          first reconcile → all N pods and M CronJobs exist, whatever their phase
  created_per_s      (N + M) / created_s: the controller's create rate, counted as the raw
                     loop's is
  creates_ratio_created  created_per_s / raw_creates_per_s (like for like: created / created)
  noop_pass_worker_s the worker's own no-op passes (median of 3, the duration each records in
                     the0:last-reconcile:live): inside the worker process, beside its other
                     work, every document read afresh — the honest figure (issue 19)
  noop_pass_s        the same pass run in this bench's idle process (median of 3): reads
                     every bot document from Mongo afresh, pods from the watched cache
  noop_writes        Kubernetes writes + Mongo status writes + tasks enqueued by those passes
  noop_list_requests Kubernetes list requests of the steady-state passes
  replace_100_s      100 bots' config changed in Mongo → all 100 replaced and Running, timed
                     from the write, the beat's own tick included (up to one interval)
  replace_100_triggered_s  another 100, a pass sent at once after the write (the earlier
                     variant: no wait for the tick)
  *_peak_rss_mb      peak resident memory (VmHWM) of the worker and beat processes
Also prints, for the raw loop's creates and for the cold start's, the CPU seconds each process
of the stack used (and per object): on a machine whose cores are all busy, where the difference
between the two rates goes.
Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pymongo
import redis
from kubernetes import client, config
from minio import Minio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proc_cpu import CLOCK_TICKS, all_pids, process_cpu
from tools.stack.supervisor import Stack
from worker import keys
from worker.app import create_app
from worker.core.naming import pod_name
from worker.core.planner import Action
from worker.reconcile.controller import LiveBotController, ScheduleController
from worker.runtime import Runtime
from worker.settings import load_settings

NAMESPACE = "the0"
CODE_KEY = "bench/bot.zip"
SELECTOR = "managed-by=the0-bot-controller"


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


MACHINE_BUSY, MACHINE_IDLE = "(machine: busy)", "(machine: idle)"
# The stack's servers by process name (/proc/<pid>/comm, 15 characters at most).
SERVERS = ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller", "kwok", "ferretdb",
           "postgres", "redis-server", "nats-server", "versitygw", "containerd", "kubelet")


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far (/proc/stat; iowait is idle)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS, idle / CLOCK_TICKS


def cpu_seconds(named: dict[int, str]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by every process on the machine, summed by
    name: the stack's servers by theirs, the processes in `named` (pid → name) by the name
    given, anything else as "other" — where two shared cores go during a phase."""
    totals: dict[str, float] = {}
    for pid in all_pids():
        if (read := process_cpu(pid)) is None:
            continue
        comm, used = read
        name = named.get(int(pid)) or next((s for s in SERVERS if comm.startswith(s)), "other")
        totals[name] = totals.get(name, 0.0) + used
    totals[MACHINE_BUSY], totals[MACHINE_IDLE] = machine_cpu()
    return totals


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per name between two cpu_seconds() readings (a process that ended in
    between is not counted: the phases measured here end none)."""
    return {name: after[name] - before.get(name, 0.0) for name in after
            if after[name] - before.get(name, 0.0) > 0}


def print_cpu(title: str, used: dict[str, float], objects: int, seconds: float) -> None:
    busy, idle = used.pop(MACHINE_BUSY, 0.0), used.pop(MACHINE_IDLE, 0.0)
    print(f"  CPU during {title} ({seconds:.0f} s; the processes {sum(used.values()) / seconds:.0%}"
          f" of a core on average; the machine {busy / seconds:.0%} busy, "
          f"{idle / seconds:.0%} idle):", flush=True)
    for name, spent in sorted(used.items(), key=lambda item: -item[1]):
        print(f"    {name:<16} {spent:8.1f} s  {1000 * spent / objects:7.1f} ms an object",
              flush=True)


def _pod_state(pod: dict[str, Any]) -> tuple[str, tuple[str, str] | None]:
    """(bot id, (phase, config hash)), or None as the state of a pod being deleted."""
    annotations = pod["metadata"].get("annotations") or {}
    bot_id = annotations.get("the0.dev/bot-id", "")
    if pod["metadata"].get("deletionTimestamp"):
        return bot_id, None
    return bot_id, ((pod.get("status") or {}).get("phase", ""),
                    annotations.get("the0.dev/config-hash", ""))


def pod_states(core: client.CoreV1Api) -> tuple[dict[str, tuple[str, str]], str]:
    """bot id → (phase, config hash) for every bot pod, read light (raw JSON, paginated), and
    the list's resourceVersion."""
    states: dict[str, tuple[str, str]] = {}
    token = None
    while True:
        response = core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR, limit=2000,
                                            _continue=token, _preload_content=False)
        page = orjson.loads(response.data)
        for pod in page["items"]:
            bot_id, state = _pod_state(pod)
            if state is not None:
                states[bot_id] = state
        token = page["metadata"].get("continue")
        if not token:
            return states, page["metadata"].get("resourceVersion", "")


def _lines(response: Any) -> Any:
    """The watch's events, one JSON object a line."""
    pending = b""
    for chunk in response.stream(1 << 16, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (orjson.loads(line) for line in lines if line.strip())


class PodWatch:
    """Every bot pod's (phase, config hash), kept by one list and then a watch, in a thread:
    the cold start is followed without loading the API server under test. Polling a full list
    every 5 s cost the API server a list of N pods each time (~110 MB of JSON at 10,000),
    which the raw loop it is compared with never paid. A watch that ends lists again."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self._states: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.relists = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="pod-watch")

    def start(self) -> PodWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def states(self) -> dict[str, tuple[str, str]]:
        with self._lock:
            return dict(self._states)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                states, version = pod_states(self.core)
                with self._lock:
                    self._states = states
                self._follow(version)
            except Exception as error:  # a watch or list that failed: list again
                if not self._stop.is_set():
                    print(f"  pod watch: {type(error).__name__}: {error}; listing again",
                          flush=True)
            if not self._stop.is_set():
                self.relists += 1
                self._stop.wait(1)

    def _follow(self, version: str) -> None:
        while not self._stop.is_set():
            response = self.core.list_namespaced_pod(
                NAMESPACE, label_selector=SELECTOR, watch=True, resource_version=version,
                allow_watch_bookmarks=True, timeout_seconds=60, _preload_content=False)
            try:
                for event in _lines(response):
                    if self._stop.is_set():
                        return
                    if event["type"] == "ERROR":
                        return  # expired (410): list again
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] == "BOOKMARK":
                        continue
                    bot_id, state = _pod_state(obj)
                    with self._lock:
                        if event["type"] == "DELETED" or state is None:
                            self._states.pop(bot_id, None)
                        else:
                            self._states[bot_id] = state
            finally:
                response.release_conn()


@dataclass
class Measured:
    seconds: float
    writes: int  # Kubernetes writes + status documents written + tasks the pass would send
    list_requests: int
    report: Any


def measure_pass(controller: LiveBotController | ScheduleController, kind: str, rt: Runtime,
                 counted: dict[str, int]) -> Measured:
    """One pass in this process (same code as the task), retried while a worker's pass holds
    the lock. Its actions are counted, not sent: their in-flight marks are released."""
    queued: list[Action] = []
    while True:
        queued.clear()
        counted["writes"] = 0
        rt.kube.list_requests = 0
        t0 = time.monotonic()
        report = controller.reconcile(enqueue=lambda action, _as_of: queued.append(action))
        seconds = time.monotonic() - t0
        for action in queued:
            rt.redis.release_inflight(kind, action.bot_id)
        if not report.skipped:
            return Measured(seconds, counted["writes"] + report.status_writes + len(queued),
                            rt.kube.list_requests, report)
        time.sleep(0.5)


def pod_states_of(core: client.CoreV1Api, bot_ids: list[str]) -> dict[str, tuple[str, str]]:
    """As pod_states, for a few bots, each pod read by its name."""
    states: dict[str, tuple[str, str]] = {}
    for bot_id in bot_ids:
        try:
            response = core.read_namespaced_pod(pod_name(bot_id), NAMESPACE,
                                                _preload_content=False)
        except client.ApiException as exc:
            if exc.status == 404:
                continue
            raise
        pod = orjson.loads(response.data)
        if pod["metadata"].get("deletionTimestamp"):
            continue
        annotations = pod["metadata"].get("annotations", {})
        states[bot_id] = (pod.get("status", {}).get("phase", ""),
                          annotations.get("the0.dev/config-hash"))
    return states


def bot_document(bot_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """A bot of the shared bench code (CODE_KEY), as the platform stores it."""
    return {"id": bot_id, "config": config,
            "custom": {"version": "1.0.0", "filePath": CODE_KEY,
                       "config": {"runtime": "python3.11", "entrypoints": {"bot": "main.py"}}}}


def schedule_config(i: int) -> dict[str, Any]:
    """The i-th scheduled bot's config: a daily run, spread over the day."""
    return {"name": f"dca {i}", "schedule": f"{i % 60} {i % 24} * * *",
            "timezone": "Europe/London", "api_key": f"k{i}"}


def seed_schedules(stack_env: Any, m: int) -> None:
    schedules = pymongo.MongoClient(stack_env.mongo_uri)["bot_scheduler"]["bot_schedules"]
    docs = [bot_document(f"sched{i:05d}", schedule_config(i)) for i in range(m)]
    for start in range(0, m, 1000):
        schedules.insert_many(docs[start:start + 1000], ordered=False)


def count_cronjobs(batch: client.BatchV1Api) -> int:
    total, token = 0, None
    while True:
        response = batch.list_namespaced_cron_job(NAMESPACE, limit=2000, _continue=token,
                                                  _preload_content=False)
        page = orjson.loads(response.data)
        total += len(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            return total


RAW_NAMESPACE = "raw-create"


def raw_create_capacity(stack: Stack, env: dict[str, str], count: int, schedules: int
                        ) -> tuple[float, float]:
    """Objects per second that a bare loop creates with the controller's client, its bodies
    and WORKER_CONCURRENCY threads (no Mongo, no Redis, no planning): `count` pods with their
    Secrets and, interleaved as the cold start makes them, `schedules` CronJobs with theirs —
    the same mix of objects the controller's cold start makes; and pods per second until all
    of them are Running (scheduled, and made Running by kwok, as the cold start is measured).
    The namespace is deleted and gone before the controller starts."""
    from concurrent.futures import ThreadPoolExecutor

    from worker.core.bot import Bot, BotKind
    from worker.core.cronspec import build_cronjob, build_cronjob_secret
    from worker.core.desired import parse_desired
    from worker.core.podspec import build_config_secret, build_pod

    stack.kubectl("create", "namespace", RAW_NAMESPACE)
    stack.kubectl("label", "namespace", RAW_NAMESPACE,
                  "pod-security.kubernetes.io/enforce=restricted")
    stack.grant_controller(RAW_NAMESPACE)
    settings = load_settings(env={**env, "NAMESPACE": RAW_NAMESPACE})
    rt = Runtime(settings)

    def parsed(kind: BotKind, bot_id: str, config: dict[str, Any]) -> Bot:
        return parse_desired(bot_document(bot_id, config), kind=kind,
                             template=settings.pod_template,
                             resources=settings.resource_policy)[0]

    bots = [parsed(BotKind.LIVE, f"raw{i:05d}", {"name": "raw", "api_key": f"k{i}"})
            for i in range(count)]
    crons = [parsed(BotKind.SCHEDULED, f"rawsched{i:05d}", schedule_config(i))
             for i in range(schedules)]
    urls = rt.code.sign_urls(bot_id="raw", code_path=CODE_KEY, ttl_seconds=3600,
                             now=time.time())

    def create(bot: Bot) -> None:
        if bot.kind is BotKind.SCHEDULED:
            cronjob = rt.kube.create_cronjob(build_cronjob(bot, settings.pod_template,
                                                           settings.cronjob_settings))
            rt.kube.put_secret(build_cronjob_secret(
                bot, cronjob_name=cronjob["metadata"]["name"],
                cronjob_uid=cronjob["metadata"]["uid"], namespace=RAW_NAMESPACE, urls=urls))
            return
        created = rt.kube.create_pod(build_pod(bot, settings.pod_template))
        rt.kube.create_owned_secret(build_config_secret(
            bot, pod_name=created["metadata"]["name"], pod_uid=created["metadata"]["uid"],
            namespace=RAW_NAMESPACE, urls=urls))

    # Interleaved: one CronJob after every count/schedules pods.
    every = count // schedules + 1 if schedules else 0
    mixed: list[Bot] = []
    for i, bot in enumerate(bots):
        mixed.append(bot)
        if every and i % every == 0 and crons:
            mixed.append(crons.pop())
    mixed.extend(crons)
    named = {os.getpid(): "bench (raw loop)"}
    cpu_before = cpu_seconds(named)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=settings.WORKER_CONCURRENCY) as pool:
        list(pool.map(create, mixed))
    rate = len(mixed) / (time.monotonic() - t0)
    print_cpu("the raw loop's creates", cpu_used(cpu_before, cpu_seconds(named)), len(mixed),
              time.monotonic() - t0)
    core = client.CoreV1Api(config.new_client_from_config(stack.env.admin_kubeconfig))  # type: ignore[union-attr]
    while sum(1 for p in core.list_namespaced_pod(RAW_NAMESPACE).items
              if p.status.phase == "Running") < count:
        time.sleep(2)
    running_rate = count / (time.monotonic() - t0)
    rt.close()
    # Gone before the controller starts: kwok ends 10,000 pods at its own pace (minutes).
    stack.kubectl("delete", "namespace", RAW_NAMESPACE, "--wait=false")
    deadline = time.monotonic() + 900
    while stack.kubectl("get", "namespace", RAW_NAMESPACE, "--ignore-not-found", "-o", "name"):
        if time.monotonic() > deadline:
            raise SystemExit(f"namespace {RAW_NAMESPACE} still there after 900 s")
        time.sleep(5)
    return rate, running_rate


def seed(stack_env: Any, n: int) -> None:
    s3 = Minio(stack_env.s3_endpoint, access_key=stack_env.s3_access_key,
               secret_key=stack_env.s3_secret_key, secure=False)
    s3.make_bucket("the0-custom-bots")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "print('bench')\n")
    s3.put_object("the0-custom-bots", CODE_KEY, io.BytesIO(buffer.getvalue()),
                  len(buffer.getvalue()))
    bots = pymongo.MongoClient(stack_env.mongo_uri)["bot_runner"]["bots"]
    bots.create_index("id", unique=True)  # the platform looks bots up by id too
    docs = [bot_document(f"bench{i:05d}", {"name": f"bench {i}", "symbol": "BTC/USDT",
                                            "api_key": f"k{i}"})
            for i in range(n)]
    for start in range(0, n, 1000):
        bots.insert_many(docs[start:start + 1000], ordered=False)


def worker_pass_durations(redis_url: str, *, count: int, timeout: float = 300.0
                          ) -> list[float]:
    """Durations of the next `count` live passes the worker records that wrote no status
    (each one's seconds per step printed: where a no-op pass spends its time)."""
    rds = redis.Redis.from_url(redis_url)
    raw = rds.get(keys.last_reconcile("live"))
    already = json.loads(raw).get("at") if raw else None  # maybe this process's own pass
    seen: dict[Any, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker recorded {len(seen)} quiet passes in {timeout:.0f} s")
        raw = rds.get(keys.last_reconcile("live"))
        record = json.loads(raw) if raw else {}
        if (record.get("at") != already and record.get("ok")
                and record.get("status_writes") == 0 and "duration_s" in record):
            if record.get("at") not in seen:
                print(f"  a worker no-op pass: {record['duration_s']} s, steps "
                      f"{record.get('steps_s')}", flush=True)
            seen.setdefault(record.get("at"), float(record["duration_s"]))
        time.sleep(1)
    return list(seen.values())


def time_replaces(core: Any, bots: Any, changed: list[str],
                  before: dict[str, tuple[str, str]], *,
                  trigger: Callable[[], object] | None = None) -> float:
    """Seconds from changing these bots' config in Mongo until each has a Running pod with
    another config hash."""
    t0 = time.monotonic()
    bots.update_many({"id": {"$in": changed}}, {"$set": {"config.symbol": "ETH/USDT"}})
    if trigger is not None:
        trigger()
    while True:
        # GET the pods by name: a full list each round (110 MB) would load the API server
        # more than the replaces do.
        states = pod_states_of(core, changed)
        done = sum(1 for bot_id in changed if bot_id in states
                   and states[bot_id][1] != before[bot_id][1] and states[bot_id][0] == "Running")
        if done >= len(changed):
            return time.monotonic() - t0
        if time.monotonic() - t0 > 600:
            raise SystemExit(f"replace stalled at {done}/{len(changed)}")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=10_000)
    parser.add_argument("--replace", type=int, default=100)
    parser.add_argument("--schedules", type=int, default=0,
                        help="also seed M scheduled bots (CronJobs) beside the live bots")
    parser.add_argument("--create-rate", type=float, default=None,
                        help="MAX_CREATES_PER_SECOND (default: the product default)")
    parser.add_argument("--concurrency", type=int, default=None, help="WORKER_CONCURRENCY")
    parser.add_argument("--raw", type=int, default=2000,
                        help="pods (with Secrets) the raw create loop makes (0: skip it); as "
                             "many as --bots compares like with like: a short burst outruns "
                             "the scheduler and kwok, whose work on each pod a cold start "
                             "of N bots shares the API server with")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the measured no-op pass")
    args = parser.parse_args()
    n = args.bots
    workdir = Path(tempfile.mkdtemp(prefix="the0-bench-"))
    print(f"starting the stack in {workdir} …", flush=True)
    with Stack(workdir) as stack:
        assert stack.env is not None
        stack.kubectl("create", "namespace", NAMESPACE)
        stack.kubectl("label", "namespace", NAMESPACE,
                      "pod-security.kubernetes.io/enforce=restricted")
        stack.grant_controller(NAMESPACE)
        env = {**os.environ, **stack.env.as_env(), "KUBECONFIG": stack.env.controller_kubeconfig,
               "KUBE_MODE": "kubeconfig", "NAMESPACE": NAMESPACE, "RECONCILE_INTERVAL": "30s"}
        if args.create_rate:
            env["MAX_CREATES_PER_SECOND"] = str(args.create_rate)
        if args.concurrency:
            env["WORKER_CONCURRENCY"] = str(args.concurrency)
        print(f"seeding {n} bots …", flush=True)
        seed(stack.env, n)
        if args.schedules:
            seed_schedules(stack.env, args.schedules)
        core = client.CoreV1Api(config.new_client_from_config(stack.env.admin_kubeconfig))
        raw_rate = raw_running_rate = 0.0
        if args.raw:
            print(f"raw create capacity: {args.raw} pods + Secrets …", flush=True)
            raw_schedules = round(args.raw * args.schedules / n)
            raw_rate, raw_running_rate = raw_create_capacity(stack, env, args.raw, raw_schedules)
            print(f"  {raw_rate:.1f} objects + Secrets created per second ({args.raw} pods, "
                  f"{raw_schedules} CronJobs), {raw_running_rate:.1f} pods Running per second",
                  flush=True)

        watch = PodWatch(core).start()  # before the worker: it follows the cold start
        celery = str(Path(sys.executable).with_name("celery"))
        logs = workdir / "logs"
        worker = subprocess.Popen([celery, "-A", "worker", "worker", "--loglevel=INFO",
                                  "-Q", "reconcile,bots"],
                                  env=env, stdout=(logs / "worker.log").open("wb"),
                                  stderr=subprocess.STDOUT)
        beat = subprocess.Popen([celery, "-A", "worker", "beat", "--loglevel=WARNING"],
                                env=env, stdout=(logs / "beat.log").open("wb"),
                                stderr=subprocess.STDOUT)
        peaks = {"worker": 0.0, "beat": 0.0}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peaks["worker"] = max(peaks["worker"], peak_rss_mb(worker.pid))
                peaks["beat"] = max(peaks["beat"], peak_rss_mb(beat.pid))
                time.sleep(1)

        threading.Thread(target=sample, daemon=True).start()
        try:
            # The beat's first tick fires the cold start at once (the entry is due at start).
            named = {os.getpid(): "bench (watch)", worker.pid: "worker", beat.pid: "beat"}
            cpu_before = cpu_seconds(named)
            started = time.monotonic()
            last_report = last_cronjob_count = 0.0
            created_s = 0.0
            batch = client.BatchV1Api(core.api_client)
            cronjobs_made = not args.schedules
            while True:
                states = watch.states()
                running = sum(1 for phase, _ in states.values() if phase == "Running")
                elapsed = time.monotonic() - started
                if not cronjobs_made and elapsed - last_cronjob_count >= 5:
                    cronjobs_made = count_cronjobs(batch) >= args.schedules
                    last_cronjob_count = elapsed
                if not created_s and len(states) >= n and cronjobs_made:
                    created_s = elapsed  # every object exists (as the raw loop's rate counts)
                    print_cpu("the cold start's creates", cpu_used(cpu_before,
                                                                   cpu_seconds(named)),
                              n + args.schedules, elapsed)
                if elapsed - last_report >= 10:
                    print(f"  cold start: {running}/{n} Running after {elapsed:.0f} s",
                          flush=True)
                    last_report = elapsed
                if running >= n:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited; see {logs / 'worker.log'}")
                time.sleep(1)
            cold_start_s = time.monotonic() - started
            watch.stop()  # its thread would share this process's GIL with the passes below
            if args.schedules:
                while count_cronjobs(batch) < args.schedules:
                    time.sleep(1)
                print(f"  {args.schedules} cronjobs after {time.monotonic() - started:.0f} s",
                      flush=True)

            # The no-op pass, measured in-process with the same controller code.
            time.sleep(2)
            counted: dict[str, int] = {"writes": 0}

            def observe(verb: str, _resource: str, _status: int) -> None:
                if verb not in ("get", "list", "watch"):
                    counted["writes"] += 1

            settings = load_settings(env=env)
            rt = Runtime(settings, kube_observer=observe)
            controller = LiveBotController(rt)

            def measure(pass_of: LiveBotController | ScheduleController, kind: str) -> Measured:
                return measure_pass(pass_of, kind, rt, counted)

            # This process's first pass fills its watched cache (a full list), then passes are
            # measured once the cold start's status writes have settled.
            first = quiet = measure(controller, "live")
            while quiet.report.status_writes and time.monotonic() - started < 3600:
                quiet = measure(controller, "live")
            noops = [measure(controller, "live") for _ in range(3)]
            if args.profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.enable()
                measure(controller, "live")
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
            first_pass_s = first.seconds
            noop_pass_s = sorted(m.seconds for m in noops)[1]
            noop_writes = sum(m.writes for m in noops)
            noop_list_requests = sum(m.list_requests for m in noops)
            print(f"  no-op pass: {noop_pass_s:.3f} s (median of 3), {noop_writes} writes, "
                  f"{noop_list_requests} list requests; steps of each: "
                  f"{[m.report.steps_s for m in noops]}", flush=True)
            schedule_pass_s, schedule_writes = 0.0, 0
            if args.schedules:
                schedules = ScheduleController(rt)
                squiet = measure(schedules, "scheduled")  # the first: fills its caches
                while squiet.report.status_writes and time.monotonic() - started < 3600:
                    squiet = measure(schedules, "scheduled")
                snoops = [measure(schedules, "scheduled") for _ in range(3)]
                schedule_pass_s = sorted(m.seconds for m in snoops)[1]
                schedule_writes = sum(m.writes for m in snoops)
                noop_list_requests += sum(m.list_requests for m in snoops)
                print(f"  no-op schedule pass: {schedule_pass_s:.3f} s, {schedule_writes} "
                      "writes", flush=True)
            # The worker's own passes over the converged world, as it records them.
            worker_noops = worker_pass_durations(stack.env.redis_url, count=3)
            noop_pass_worker_s = sorted(worker_noops)[len(worker_noops) // 2]
            print(f"  the worker's own no-op passes: {worker_noops} s", flush=True)
            # 100 changed bots (after the schedule measurements, so they are not timed here),
            # timed from the Mongo write: the beat's tick comes first. Then another 100 with a
            # pass sent at once (the earlier variant).
            before, _ = pod_states(core)
            bots = pymongo.MongoClient(stack.env.mongo_uri)["bot_runner"]["bots"]
            step = max(1, n // (2 * args.replace))
            picked = [f"bench{i:05d}" for i in range(0, n, step)][:2 * args.replace]
            replace_s = time_replaces(core, bots, picked[0::2], before)
            print(f"  {args.replace} replaces, from the write: {replace_s:.1f} s", flush=True)
            replace_triggered_s = time_replaces(
                core, bots, picked[1::2], before,
                trigger=lambda: create_app(settings).send_task("reconcile.bots"))
            print(f"  {args.replace} replaces, pass sent at once: {replace_triggered_s:.1f} s",
                  flush=True)
        finally:
            watch.stop()
            sampling.set()
            for process in (beat, worker):
                process.terminate()
            for process in (beat, worker):
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()

    objects = n + args.schedules  # what the cold start creates, each with its Secret
    result = {
        "bots": n,
        "cold_start_s": round(cold_start_s, 1),
        "first_pass_s": round(first_pass_s, 3),
        "creates_per_s": round(n / cold_start_s, 1),
        "raw_pods": args.raw,
        "raw_creates_per_s": round(raw_rate, 1),
        "creates_ratio": round(objects / cold_start_s / raw_rate, 2) if raw_rate else None,
        "raw_running_per_s": round(raw_running_rate, 1),
        "creates_ratio_running": (round(n / cold_start_s / raw_running_rate, 2)
                                  if raw_running_rate else None),
        "created_s": round(created_s, 1),
        "created_per_s": round(objects / created_s, 1),
        "creates_ratio_created": round(objects / created_s / raw_rate, 2) if raw_rate else None,
        "noop_pass_worker_s": round(noop_pass_worker_s, 3),
        "noop_pass_s": round(noop_pass_s, 3),
        "noop_writes": noop_writes,
        "noop_list_requests": noop_list_requests,
        f"replace_{args.replace}_s": round(replace_s, 1),
        f"replace_{args.replace}_triggered_s": round(replace_triggered_s, 1),
        "worker_peak_rss_mb": round(peaks["worker"], 1),
        "pod_watch_relists": watch.relists,
        "beat_peak_rss_mb": round(peaks["beat"], 1),
    }
    if args.schedules:
        result.update({"schedules": args.schedules,
                       "noop_pass_with_schedules_s": round(noop_pass_s + schedule_pass_s, 3),
                       "noop_schedule_writes": schedule_writes})
    width = max(map(len, result))
    print("\n" + "\n".join(f"{key:<{width}}  {value}" for key, value in result.items()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
