"""Log collection throughput on the real stack: P pods each writing L lines/s for T s.

    .venv/bin/python bench/log_throughput.py --pods 1000 --rate 10 --seconds 180

Starts its own stack, creates P bot pods (our labels) each with a kwok `Logs` object mapping
its `bot` container to a file this script appends to (CRI format, real timestamps), runs a
real `celery -A worker worker -Q logs` and `celery -A worker beat` (LOG_INTERVAL as given),
writes for T s, waits for the collector to catch up, then reads every day object back and
counts each pod's sequence numbers:
  lost         lines written but not in S3
  duplicated   lines in S3 more than once
  lag_p95_s    95th percentile of (first seen in S3 - line timestamp) over the lines of
               --sample pods whose objects are polled every second (1 s resolution), spread
               evenly over the sorted bot ids (the first and the last included), so over the
               collection's chunks from the first to the last; `--sample 0`: every pod
               (runs before 2026-12-01 took the first 10, always in the first chunk)
  pass_lag_p95_s  95th percentile over passes of the pass's worst lag (the0:last-logs)
  worker_cpu_s CPU seconds (user + system) the worker used
Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from kubernetes import client, config
from minio import Minio
from minio.error import S3Error

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proc_cpu import cpu_seconds
from tools.stack.supervisor import Stack
from worker import keys
from worker.core import logcursor as lc
from worker.core import naming

NAMESPACE = "the0"
BUCKET = "bot-logs"


def spread(ids: list[str], count: int) -> list[str]:
    """`count` of `ids` evenly spaced, the first and the last included (0: all of them)."""
    if count <= 0 or count >= len(ids):
        return list(ids)
    if count == 1:
        return [ids[-1]]
    step = (len(ids) - 1) / (count - 1)
    return [ids[round(i * step)] for i in range(count)]


def cri_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts[:26] + "+00:00").timestamp()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def create_pods(api: Any, files: Path, count: int) -> list[tuple[str, Path]]:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    pods = []
    for index in range(count):
        bot_id = f"bench{index:05d}"
        name = naming.pod_name(bot_id)
        path = files / f"{name}.log"
        path.touch()
        custom.create_namespaced_custom_object(
            "kwok.x-k8s.io", "v1alpha1", NAMESPACE, "logs", {
                "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"logs": [{"containers": ["bot"], "logsFile": str(path)}]}})
        core.create_namespaced_pod(NAMESPACE, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {naming.LABEL_APP: naming.APP_BOT,
                                                  naming.LABEL_BOT_ID: bot_id,
                                                  naming.LABEL_MANAGED_BY: naming.MANAGED_BY_BOT},
                         "annotations": {naming.ANNOTATION_BOT_ID: bot_id}},
            "spec": {"containers": [{"name": "bot", "image": "the0/python311:latest"}]}})
        pods.append((bot_id, path))
    while True:
        running = sum(1 for p in core.list_namespaced_pod(NAMESPACE).items
                      if p.status.phase == "Running")
        print(f"  {running}/{count} pods Running", flush=True)
        if running >= count:
            return pods
        time.sleep(3)


def read_object(s3: Minio, key: str) -> list[dict[str, Any]]:
    try:
        response = s3.get_object(BUCKET, key)
    except S3Error:
        return []
    try:
        return [json.loads(line) for line in response.read().decode().splitlines()]
    finally:
        response.close()
        response.release_conn()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="lines per second per pod")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--interval", default="30s", help="LOG_INTERVAL")
    parser.add_argument("--sample", type=int, default=20,
                        help="pods whose lag is measured, spread over all (0: every pod)")
    parser.add_argument("--concurrency", type=int, default=None, help="WORKER_CONCURRENCY")
    parser.add_argument("--chunk", type=int, default=None, help="LOG_CHUNK_SIZE")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="the0-logbench-"))
    files = workdir / "pod-logs"
    files.mkdir()
    print(f"starting the stack in {workdir} …", flush=True)
    with Stack(workdir) as stack:
        assert stack.env is not None
        stack.kubectl("create", "namespace", NAMESPACE)
        stack.grant_controller(NAMESPACE)
        admin = config.new_client_from_config(stack.env.admin_kubeconfig)
        env = {**os.environ, **stack.env.as_env(), "KUBECONFIG": stack.env.controller_kubeconfig,
               "KUBE_MODE": "kubeconfig", "NAMESPACE": NAMESPACE,
               "LOG_INTERVAL": args.interval, "RECONCILE_INTERVAL": "1h"}
        if args.concurrency:
            env["WORKER_CONCURRENCY"] = str(args.concurrency)
        if args.chunk:
            env["LOG_CHUNK_SIZE"] = str(args.chunk)
        print(f"creating {args.pods} pods …", flush=True)
        pods = create_pods(admin, files, args.pods)
        s3 = Minio(stack.env.s3_endpoint, access_key=stack.env.s3_access_key,
                   secret_key=stack.env.s3_secret_key, secure=False)
        rds = redis.Redis.from_url(stack.env.redis_url)

        celery = str(Path(sys.executable).with_name("celery"))
        logs = workdir / "logs"
        # Only the `logs` queue: this measures log collection alone (reconcile is not fed).
        worker = subprocess.Popen([celery, "-A", "worker", "worker", "-Q", "logs",
                                   "--loglevel=WARNING"], env=env,
                                  stdout=(logs / "worker.log").open("wb"),
                                  stderr=subprocess.STDOUT)
        beat = subprocess.Popen([celery, "-A", "worker", "beat", "--loglevel=WARNING"], env=env,
                                stdout=(logs / "beat.log").open("wb"), stderr=subprocess.STDOUT)
        written = {bot_id: 0 for bot_id, _ in pods}
        stop = threading.Event()
        first_seen: dict[tuple[str, int], float] = {}
        sample = spread(sorted(bot_id for bot_id, _ in pods), args.sample)
        passes: dict[float, dict[str, Any]] = {}

        def write() -> None:
            handles = [(bot_id, path.open("a", buffering=1 << 16)) for bot_id, path in pods]
            tick = 0.1
            per_tick = args.rate * tick
            owed = 0.0
            next_at = time.monotonic()
            while not stop.is_set():
                owed += per_tick
                count = int(owed)
                owed -= count
                ts = cri_now()
                for bot_id, handle in handles:
                    seq = written[bot_id]
                    handle.write("".join(f"{ts} stdout F {bot_id} {seq + i} some text\n"
                                         for i in range(count)))
                    handle.flush()
                    written[bot_id] = seq + count
                next_at += tick
                time.sleep(max(0.0, next_at - time.monotonic()))
            for _, handle in handles:
                handle.close()

        def watch() -> None:
            while not stop.is_set() or watching.is_set():
                now = time.time()
                for bot_id in sample:
                    key = lc.object_key(bot_id, lc.day_of(cri_now()))
                    for record in read_object(s3, key):
                        seq = int(str(record.get("message", "x -1")).split()[1])
                        first_seen.setdefault((bot_id, seq), now - epoch(record["timestamp"]))
                raw = rds.get(keys.LAST_LOGS)
                if raw:
                    summary = json.loads(raw)
                    passes.setdefault(summary["at"], summary)
                time.sleep(1)

        watching = threading.Event()
        watching.set()
        cpu_start = cpu_seconds(worker.pid)
        run_started_ts = cri_now()
        writer = threading.Thread(target=write)
        watcher = threading.Thread(target=watch)
        writer.start()
        watcher.start()
        print(f"writing {args.pods} x {args.rate:g} lines/s for {args.seconds:g} s …",
              flush=True)
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.seconds:
                time.sleep(5)
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited; see {logs / 'worker.log'}")
                done = sum(s.get("lines", 0) for s in passes.values())
                print(f"  {time.monotonic() - started:.0f} s: {sum(written.values())} written, "
                      f"{len(passes)} passes seen, {done} lines shipped", flush=True)
            stop.set()
            writer.join()
            total = sum(written.values())
            # Catch up: wait until every line is in S3 (or 4 intervals pass).
            interval = float(args.interval.rstrip("s"))
            deadline = time.monotonic() + 4 * interval + 30
            while time.monotonic() < deadline:
                shipped = sum(s.get("lines", 0) for s in passes.values())
                if shipped >= total:
                    break
                time.sleep(2)
            time.sleep(2)
            watching.clear()
            watcher.join()
            worker_cpu_s = cpu_seconds(worker.pid) - cpu_start
        finally:
            stop.set()
            watching.clear()
            for proc in (beat, worker):
                proc.terminate()
            for proc in (beat, worker):
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        lost = duplicated = 0
        days = sorted({lc.day_of(cri_now()), lc.day_of(run_started_ts)})
        for bot_id, _ in pods:
            seen: list[int] = []
            for day in days:
                seen += [int(str(r["message"]).split()[1])
                         for r in read_object(s3, lc.object_key(bot_id, day))]
            unique = set(seen)
            duplicated += len(seen) - len(unique)
            lost += len(set(range(written[bot_id])) - unique)
        lags = list(first_seen.values())
        result = {"pods": args.pods, "lines_per_s": args.rate, "seconds": args.seconds,
                  "interval_s": float(args.interval.rstrip("s")),
                  "lines_written": total,
                  "lag_p95_s": round(percentile(lags, 0.95), 2),
                  "lag_max_s": round(max(lags, default=0.0), 2),
                  "pass_lag_p95_s": round(percentile([float(s.get("lag_s", 0))
                                                      for s in passes.values()], 0.95), 2),
                  "pass_duration_p95_s": round(percentile(
                      [float(s.get("duration_s", 0)) for s in passes.values()], 0.95), 2),
                  "passes": len(passes), "lost": lost, "duplicated": duplicated,
                  "worker_cpu_s": round(worker_cpu_s, 1)}
        width = max(map(len, result))
        print("\n" + "\n".join(f"{key:<{width}}  {value}" for key, value in result.items()))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
