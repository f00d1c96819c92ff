"""Bots on the real node: pod create → the bot's first log line, and the state round trip.

    .venv/bin/python bench/real_node.py --pods 20

Starts its own stack (with its real node), runs the controller in-process as the restricted
identity with the real-node placement settings, and measures:
  first_line    per bot: the controller's pod create call → the first line the bot printed
                (the kubelet's CRI timestamp of that line), for --pods Python bots created one
                after another, all running at once at the end;
  state_upload  a bot writes its state → the state object in S3 holds it (sidecar interval
                --sync-interval, so this is at most the interval plus an upload);
  state_restore the bot's pod is deleted → the recreated pod's bot has read the saved state
                (the delete's final sidecar upload, the pass's create, init's restore, start).
Prints a table and ONE JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.stack.supervisor import Stack

NAMESPACE = "bench-real"
BOT = '''\
import os, time


def main(bot_id, config):
    path = os.path.join(os.environ["STATE_DIR"], "count.txt")
    count = int(open(path).read()) if os.path.exists(path) else 0
    print(f"{bot_id} started with count {count}", flush=True)
    while True:
        time.sleep(1)
'''


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def first_line_time(core: Any, pod: str) -> float | None:
    from kubernetes.client.exceptions import ApiException

    try:
        text = core.read_namespaced_pod_log(pod, NAMESPACE, container="bot", timestamps=True,
                                            limit_bytes=4096)
    except ApiException:
        return None
    line = str(text).split("\n", 1)[0]
    if " " not in line:
        return None
    stamp = line.split(" ", 1)[0]
    # RFC 3339 with nanoseconds: keep microseconds for datetime.
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--sync-interval", type=float, default=2.0)
    args = parser.parse_args()

    import pymongo
    import redis
    from kubernetes import client, config
    from minio import Minio

    from worker.reconcile.controller import LiveBotController
    from worker.runtime import Runtime
    from worker.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp, \
            Stack(Path(tmp) / "stack", progress=lambda m: print(f"[stack] {m}", flush=True)) \
            as stack:
        env = stack.env
        assert env is not None
        stack.kubectl("create", "namespace", NAMESPACE)
        stack.kubectl("label", "namespace", NAMESPACE,
                      "pod-security.kubernetes.io/enforce=restricted")
        stack.grant_controller(NAMESPACE)
        s3 = Minio(env.s3_endpoint, access_key=env.s3_access_key, secret_key=env.s3_secret_key,
                   secure=False)
        s3.make_bucket("code")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("main.py", BOT)
        s3.put_object("code", "bench.zip", io.BytesIO(buffer.getvalue()), len(buffer.getvalue()))
        mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(env.mongo_uri)
        bots = mongo["bot_runner"]["bots"]
        settings = load_settings(env={
            **env.as_env(), **env.real_node_settings(), "KUBECONFIG": env.controller_kubeconfig,
            "KUBE_MODE": "kubeconfig", "NAMESPACE": NAMESPACE, "MINIO_BUCKET": "code",
            "STATE_SYNC_INTERVAL": str(args.sync_interval),
            "MAX_CREATES_PER_SECOND": "100"})
        rt = Runtime(settings)
        controller = LiveBotController(rt)
        core = client.CoreV1Api(config.new_client_from_config(env.admin_kubeconfig))
        ids = [f"bench-{i:03d}" for i in range(args.pods)]
        # 20 pods at the default 100m CPU request (+10m for the sidecar) overbook a 2-core
        # node: request less, so every pod fits and the figure is start-up, not queueing.
        bots.insert_many([{"id": i, "config": {"name": i, "symbol": "BTC/USDT",
                                               "cpu_request": "20m"},
                           "custom": {"version": "1", "filePath": "bench.zip",
                                      "config": {"runtime": "python3.11"}}} for i in ids])
        controller.reconcile(enqueue=lambda *_: None)  # warms the caches; creates nothing yet
        created: dict[str, float] = {}
        for bot_id in ids:
            created[bot_id] = time.time()
            controller.converge(bot_id, intent="create")
            redis.Redis.from_url(env.redis_url).delete(f"the0:inflight:live:{bot_id}")
        first: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(first) < len(ids) and time.monotonic() < deadline:
            for bot_id in ids:
                if bot_id not in first and (t := first_line_time(core, f"bot-{bot_id}")):
                    first[bot_id] = t - created[bot_id]
            time.sleep(0.5)
        latencies = sorted(first.values())

        # State: write into the bot's STATE_DIR inside its container, as the bot would.
        target = ids[0]
        written = time.time()
        stack.kubectl("exec", "-n", NAMESPACE, f"bot-{target}", "-c", "bot", "--", "sh", "-c",
                      "echo 41 > $STATE_DIR/count.txt")
        upload = float("nan")
        while time.time() - written < 120:
            try:
                s3.stat_object(settings.STATE_BUCKET, f"{target}/state.tar.gz")
                upload = time.time() - written
                break
            except Exception:
                time.sleep(0.1)
        deleted = time.time()
        core.delete_namespaced_pod(f"bot-{target}", NAMESPACE)
        while core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name=bot-{target}"
                                       ).items:
            time.sleep(0.2)
        controller.converge(target, intent="create")
        restore = float("nan")
        while time.time() - deleted < 120:
            try:
                log = core.read_namespaced_pod_log(f"bot-{target}", NAMESPACE, container="bot")
            except Exception:
                log = ""
            if "started with count 41" in str(log):
                restore = time.time() - deleted
                break
            time.sleep(0.2)
        rt.close()
        result = {
            "pods": args.pods, "started": len(latencies),
            "first_line_p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "first_line_p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
            "first_line_max_s": round(latencies[-1], 2) if latencies else None,
            "sync_interval_s": args.sync_interval,
            "state_upload_s": round(upload, 2), "state_restore_s": round(restore, 2),
        }
        print("\n| measure | value |\n|---|---|")
        for key, value in result.items():
            print(f"| {key} | {value} |")
        print(json.dumps(result))
        return 0 if len(latencies) == len(ids) else 1


if __name__ == "__main__":
    sys.exit(main())
