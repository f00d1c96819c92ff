"""Event → pod latency on the real stack, with N bots already running.

    .venv/bin/python bench/event_latency.py --bots 10000 --events 200

Starts its own stack, seeds N bots, runs a real `celery -A worker worker -Q reconcile,bots`
(log collection has its own benchmark, bench/log_throughput.py, and its own workers in a
deployment), `celery -A worker beat` and `python -m worker events`, waits until all N pods are
Running and a pass wrote no status (steady state), then publishes `--events` platform events
on NATS at `--rate` per second — a mix of creates (new bots), config updates (existing bots)
and deletes — and watches the pods and Secrets (as admin) to time, per event, publish → the
desired state observed in Kubernetes. The honest variant first (issue 19):
  create (ready)   the new bot's pod is Running and its Secret (config, signed URLs) exists
  replace (ready)  a pod with a config hash other than the old one is Running, with its Secret
  delete           the bot's pod is gone (DELETED)
and, labelled "object", the earlier variant: the pod object exists (not terminating), before
its Secret or its start (on kwok nodes Running follows at once; on a real node the image
start comes on top).
`--poison K` publishes K poison events just before the mix (half with a config nested 120
levels deep, refused before any write; half with a nested array, which the test server refuses
on write), as one tenant flooding the consumer: the mix's latencies then show what that tenant
costs everyone else (issue 15; it was a minute per 16 such events).
Ends with ONE JSON line: events, create_ready_p50_s, create_ready_p95_s, replace_ready_p95_s,
delete_p95_s, then the object variants (create_p50_s …).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import nats
import orjson
import redis
from kubernetes import client, config, watch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reconcile_scale import CODE_KEY, NAMESPACE, SELECTOR, pod_states, seed

from tools.stack.supervisor import Stack
from worker.core.naming import secret_name

HONEST = ("create_ready", "replace_ready", "delete")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class PodWatch:
    """Records, per bot, when a live pod with a given config hash appeared and when it was first
    Running, when each Secret appeared, and when the bot's pod was DELETED — from watches
    started at the current resourceVersions."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.lock = threading.Lock()
        self.live: dict[str, dict[str, float]] = {}     # bot → {config hash: first seen}
        self.running: dict[str, dict[str, float]] = {}  # bot → {config hash: first Running}
        self.pod_names: dict[tuple[str, str], str] = {}  # (bot, config hash) → pod name
        self.secrets: dict[str, float] = {}             # Secret name → first seen
        self.deleted: dict[str, float] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None
        head = core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR, limit=1)
        self.version = head.metadata.resource_version
        secrets_head = core.list_namespaced_secret(NAMESPACE, limit=1)
        self.secrets_version = secrets_head.metadata.resource_version
        self.threads = [threading.Thread(target=self.run, daemon=True),
                        threading.Thread(target=self.run_secrets, daemon=True)]
        for thread in self.threads:
            thread.start()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                stream = watch.Watch()
                for event in stream.stream(self.core.list_namespaced_pod, NAMESPACE,
                                           label_selector=SELECTOR,
                                           resource_version=self.version, timeout_seconds=5):
                    seen = time.monotonic()
                    obj = event["raw_object"]
                    meta = obj["metadata"]
                    self.version = meta["resourceVersion"]
                    annotations = meta.get("annotations", {})
                    bot = annotations.get("the0.dev/bot-id", "")
                    config_hash = annotations.get("the0.dev/config-hash", "")
                    with self.lock:
                        if event["type"] == "DELETED":
                            self.deleted.setdefault(bot, seen)
                        elif not meta.get("deletionTimestamp"):
                            self.live.setdefault(bot, {}).setdefault(config_hash, seen)
                            self.pod_names[(bot, config_hash)] = meta["name"]
                            if (obj.get("status") or {}).get("phase") == "Running":
                                self.running.setdefault(bot, {}).setdefault(config_hash, seen)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def run_secrets(self) -> None:
        try:
            while not self.stop.is_set():
                stream = watch.Watch()
                for event in stream.stream(self.core.list_namespaced_secret, NAMESPACE,
                                           resource_version=self.secrets_version,
                                           timeout_seconds=5):
                    seen = time.monotonic()
                    meta = event["raw_object"]["metadata"]
                    self.secrets_version = meta["resourceVersion"]
                    if event["type"] != "DELETED":
                        with self.lock:
                            self.secrets.setdefault(meta["name"], seen)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def ready_at(self, bot: str, config_hash: str) -> float | None:
        """When the bot's pod of this hash was Running with its Secret there (lock held)."""
        running = self.running.get(bot, {}).get(config_hash)
        name = self.pod_names.get((bot, config_hash))
        secret = self.secrets.get(secret_name(name)) if name else None
        return None if running is None or secret is None else max(running, secret)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="events published per second")
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--poison", type=int, default=0,
                        help="poison events published just before the mix")
    args = parser.parse_args()
    n, rng = args.bots, random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="the0-bench-events-"))
    print(f"starting the stack in {workdir} …", flush=True)
    with Stack(workdir) as stack:
        assert stack.env is not None
        stack.kubectl("create", "namespace", NAMESPACE)
        stack.grant_controller(NAMESPACE)
        env = {**os.environ, **stack.env.as_env(), "KUBECONFIG": stack.env.controller_kubeconfig,
               "KUBE_MODE": "kubeconfig", "NAMESPACE": NAMESPACE, "RECONCILE_INTERVAL": "30s"}
        print(f"seeding {n} bots …", flush=True)
        seed(stack.env, n)
        core = client.CoreV1Api(config.new_client_from_config(stack.env.admin_kubeconfig))
        logs = workdir / "logs"
        celery = str(Path(sys.executable).with_name("celery"))
        argvs = {"worker": [celery, "-A", "worker", "worker", "--loglevel=INFO",
                                  "-Q", "reconcile,bots"],
                 "beat": [celery, "-A", "worker", "beat", "--loglevel=WARNING"],
                 **{f"events-{i}": [sys.executable, "-m", "worker", "events"]
                    for i in range(args.consumers)}}
        procs = {name: subprocess.Popen(argv, env=env, stdout=(logs / f"{name}.log").open("wb"),
                                        stderr=subprocess.STDOUT)
                 for name, argv in argvs.items()}
        try:
            started = time.monotonic()
            while True:
                states, _ = pod_states(core)
                running = sum(1 for phase, _ in states.values() if phase == "Running")
                if running >= n:
                    break
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise SystemExit(f"{name} exited; see {logs / (name + '.log')}")
                print(f"  warm-up: {running}/{n} Running after "
                      f"{time.monotonic() - started:.0f} s", flush=True)
                time.sleep(10)
            print(f"  {n} pods Running after {time.monotonic() - started:.0f} s", flush=True)
            # Steady state: the cold start's backlog of status documents (written at most
            # STATUS_WRITES_PER_PASS per pass) keeps FerretDB busy for minutes; wait for a
            # pass that wrote none.
            status_r = redis.Redis.from_url(stack.env.redis_url)
            while True:
                raw = status_r.get("the0:last-reconcile:live")
                record = json.loads(raw) if raw else {}
                if record.get("ok") and record.get("status_writes") == 0:
                    break
                print(f"  waiting for status writes to settle (last pass wrote "
                      f"{record.get('status_writes')})", flush=True)
                time.sleep(10)
            print(f"  steady after {time.monotonic() - started:.0f} s", flush=True)

            # The event mix: 40 % creates, 40 % config updates, 20 % deletes (distinct bots).
            existing = rng.sample(sorted(states), k=min(n, args.events))
            kinds = ["create"] * (args.events * 2 // 5) + ["delete"] * (args.events // 5)
            kinds += ["replace"] * (args.events - len(kinds))
            rng.shuffle(kinds)
            old_hash = {bot: states[bot][1] for bot in existing}
            plan: list[tuple[str, str, dict[str, Any]]] = []
            for i, kind in enumerate(kinds):
                if kind == "create":
                    bot = f"new{i:05d}"
                    body = {"id": bot, "config": {"name": bot, "symbol": "BTC/USDT",
                                                  "api_key": f"k{i}"},
                            "custom": {"version": "1.0.0", "filePath": CODE_KEY,
                                       "config": {"runtime": "python3.11",
                                                  "entrypoints": {"bot": "main.py"}}}}
                    plan.append(("the0.bot.created", bot, body))
                else:
                    bot = existing[i]
                    if kind == "delete":
                        plan.append(("the0.bot.deleted", bot, {"id": bot}))
                    else:
                        body = {"id": bot, "config": {"name": bot, "symbol": "ETH/USDT",
                                                      "api_key": "k"},
                                "custom": {"version": "1.0.0", "filePath": CODE_KEY,
                                           "config": {"runtime": "python3.11",
                                                      "entrypoints": {"bot": "main.py"}}}}
                        plan.append(("the0.bot.updated", bot, body))

            pods = PodWatch(core)
            sent: dict[str, float] = {}

            async def publish_all() -> None:
                nc = await nats.connect(servers=[stack.env.nats_url])
                for i in range(args.poison):
                    config = (b'{"k":' + b"[" * 120 + b"]" * 120 + b"}" if i % 2 == 0
                              else b'{"k":[[1,2]]}')
                    await nc.publish("the0.bot.updated",
                                     b'{"id":"poison%05d","config":%s}' % (i, config))
                for subject, bot, body in plan:
                    sent[bot] = time.monotonic()
                    await nc.publish(subject, orjson.dumps(body))
                    await nc.flush()
                    await asyncio.sleep(1 / args.rate)
                await nc.close()

            asyncio.run(publish_all())
            deadline = time.monotonic() + 120
            latencies: dict[str, list[float]] = {
                "create_ready": [], "replace_ready": [], "delete": [], "create": [],
                "replace": []}
            while True:
                if pods.error is not None:
                    raise pods.error
                for kind in latencies:
                    latencies[kind].clear()
                with pods.lock:
                    for subject, bot, _body in plan:
                        if subject.endswith("deleted"):
                            seen = pods.deleted.get(bot)
                            if seen is not None:
                                latencies["delete"].append(seen - sent[bot])
                            continue
                        kind = "create" if subject.endswith("created") else "replace"
                        hashes = [h for h in pods.live.get(bot, {})
                                  if kind == "create" or h != old_hash[bot]]
                        seen = min((pods.live[bot][h] for h in hashes), default=None)
                        ready = min((t for h in hashes
                                     if (t := pods.ready_at(bot, h)) is not None), default=None)
                        if seen is not None:
                            latencies[kind].append(seen - sent[bot])
                        if ready is not None:
                            latencies[f"{kind}_ready"].append(ready - sent[bot])
                done = sum(len(latencies[k]) for k in ("create_ready", "replace_ready", "delete"))
                if done >= len(plan) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            pods.stop.set()
            missing = len(plan) - done
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    result = {
        "events": len(plan), "bots": n, "rate_per_s": args.rate, "poison": args.poison,
        "not_observed": missing,
        "create_ready_p50_s": round(percentile(latencies["create_ready"], 0.5), 3),
        "create_ready_p95_s": round(percentile(latencies["create_ready"], 0.95), 3),
        "replace_ready_p50_s": round(percentile(latencies["replace_ready"], 0.5), 3),
        "replace_ready_p95_s": round(percentile(latencies["replace_ready"], 0.95), 3),
        "create_p50_s": round(percentile(latencies["create"], 0.5), 3),
        "create_p95_s": round(percentile(latencies["create"], 0.95), 3),
        "replace_p50_s": round(percentile(latencies["replace"], 0.5), 3),
        "replace_p95_s": round(percentile(latencies["replace"], 0.95), 3),
        "delete_p50_s": round(percentile(latencies["delete"], 0.5), 3),
        "delete_p95_s": round(percentile(latencies["delete"], 0.95), 3),
        # Over the honest variants (ready creates and replaces, deletes).
        "max_s": round(max((v for k in HONEST for v in latencies[k]), default=float("nan")), 3),
        "mean_s": round(statistics.fmean([v for k in HONEST for v in latencies[k]] or [0]), 3),
    }
    width = max(map(len, result))
    print("\n" + "\n".join(f"{key:<{width}}  {value}" for key, value in result.items()))
    print(json.dumps(result))
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
