"""The worst log flood for one log worker's memory, on the real stack (issue 15):

    .venv/bin/python bench/log_flood.py [--concurrency 8] [--bots 4] [--jobs 7]

Several live bots, a scheduled bot with 7 job pods, each container log 8 MiB (LOG_READ_LIMIT,
as the logs API serves it) of 1-byte lines — 254,200 lines — and one bot whose log is a single
8 MiB line. A REAL `celery -A worker.log_app worker -Q logs` (the shipped log worker: threads,
WORKER_CONCURRENCY as given, LOG_CHUNK_SIZE 1 so every bot's chunk runs at once) collects one
pass; its peak RSS is the kernel's high-water mark (VmHWM in /proc/<pid>/status). Then checks
that every line is in S3 once (the 8 MiB line stored cut to LOG_LINE_MAX_BYTES). Starts its own
stack; ends with ONE JSON line. tests/integration/logs/test_flood.py runs the same on the test
stack and asserts the peak stays under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.botlogs import LoggedPod, cri
from tests.support.procs import Proc
from worker import keys
from worker.core import logcursor as lc
from worker.core import logday, naming

READ_LIMIT = 8 * 1024 * 1024
SERVED_LINE = len("2026-11-30T10:00:00.000000000Z x\n")  # one 1-byte line as the API serves it
LINES = READ_LIMIT // SERVED_LINE  # 254,200: one read takes the whole log
CELERY = str(Path(sys.executable).with_name("celery"))


@dataclass(frozen=True)
class FloodPod:
    bot_id: str
    name: str
    lines: int        # 1-byte lines in its log (0: the single huge line)
    huge: int = 0     # bytes of its one huge line


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident set size so far (MB), as the kernel counts it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmHWM for pid {pid}")


def flood_pods(admin_api: Any, namespace: str, files: Path, *, bots: int = 4, jobs: int = 7
               ) -> list[FloodPod]:
    """Creates the flood's pods (kwok serves each `bot` container's log from a file) and writes
    their logs: 1-byte lines, 1,000 a second, ending a few minutes ago."""
    start = datetime.now(UTC) - timedelta(seconds=LINES // 1000 + 120)
    pods: list[FloodPod] = []
    specs = [(f"flood-live{n}", None, naming.MANAGED_BY_BOT) for n in range(bots)]
    specs += [("flood-sched", f"schedule-flood-sched-{n}", naming.MANAGED_BY_SCHEDULE)
              for n in range(jobs)]
    for bot_id, name, managed_by in specs:
        pod = LoggedPod(admin_api, namespace, files, bot_id, name=name, managed_by=managed_by)
        with pod.current.open("w") as out:
            for second in range(0, LINES, 1000):
                ts = (start + timedelta(seconds=second // 1000)).strftime(
                    "%Y-%m-%dT%H:%M:%S.000000000Z")
                out.write(cri(ts, "x") * min(1000, LINES - second))
        pod.create()
        pods.append(FloodPod(bot_id, pod.name, LINES))
    huge = LoggedPod(admin_api, namespace, files, "flood-oneline")
    huge.current.write_text(cri(start.strftime("%Y-%m-%dT%H:%M:%S.000000000Z"),
                                "L" * READ_LIMIT))
    huge.create()
    pods.append(FloodPod("flood-oneline", huge.name, 0, READ_LIMIT))
    return pods


def start_log_worker(env: dict[str, str], log: Path, *, concurrency: int) -> tuple[Proc, str]:
    """The shipped log worker's command line (k8s/log-worker.yaml), without a Mongo URI.
    Returns the process and its Celery hostname."""
    given = {k: v for k, v in env.items() if k != "MONGO_URI"}
    given.update({"WORKER_CONCURRENCY": str(concurrency), "LOG_CHUNK_SIZE": "1",
                  "LOG_READ_LIMIT": str(READ_LIMIT), "LOG_INTERVAL": "1h",
                  "RECONCILE_INTERVAL": "1h"})
    hostname = f"flood{time.monotonic_ns()}@localhost"
    argv = [CELERY, "-A", "worker.log_app", "worker", "-Q", "logs", "--loglevel=WARNING",
            "-n", hostname]
    return Proc("log-worker", argv, log, given).start(), hostname


def wait_for_worker(redis: Any, proc: Proc, hostname: str, timeout: float = 60.0) -> None:
    """Until the worker's heartbeat says it takes tasks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.assert_alive()
        if redis.exists(keys.worker_heartbeat(hostname)):
            return
        time.sleep(0.5)
    raise AssertionError(f"the log worker did not start within {timeout} s:\n{proc.tail()}")


def collect_one_pass(env: dict[str, str], redis: Any, proc: Proc, pods: int,
                     timeout: float = 600.0) -> dict[str, Any]:
    """Sends one `logs.collect` and waits for the pass's last chunk (the0:last-logs)."""
    from worker.app import create_app
    from worker.settings import load_settings

    redis.delete(keys.LAST_LOGS)
    app = create_app(load_settings(env={**env, "MONGO_URI": ""}, role="broker"))
    started = time.time()
    app.send_task("logs.collect")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.assert_alive()
        raw = redis.get(keys.LAST_LOGS)
        if raw:
            summary: dict[str, Any] = json.loads(raw)
            if summary.get("pods") == pods and summary.get("at", 0) >= started - 1:
                summary["wall_s"] = round(time.time() - started, 1)
                return summary
        time.sleep(0.5)
    raise AssertionError(f"no finished pass within {timeout} s:\n{proc.tail()}")


def measure(env: dict[str, str], redis: Any, pods: list[FloodPod], log: Path, *,
            concurrency: int) -> dict[str, Any]:
    """Starts the log worker, lets it collect one pass of `pods`, stops it: its peak RSS."""
    worker, hostname = start_log_worker(env, log, concurrency=concurrency)
    try:
        wait_for_worker(redis, worker, hostname)
        idle = vm_hwm_mb(worker.pid)
        summary = collect_one_pass(env, redis, worker, len(pods))
        peak = vm_hwm_mb(worker.pid)
    finally:
        worker.stop()
    return {"pods": len(pods), "lines_per_log": LINES, "read_limit_bytes": READ_LIMIT,
            "worker_concurrency": concurrency, "pass_wall_s": summary["wall_s"],
            "pass_errors": summary["errors"], "pass_lines": summary["lines"],
            "idle_rss_mb": round(idle, 1), "peak_rss_mb": round(peak, 1)}


def stored(s3: Any, bucket: str, pods: list[FloodPod]) -> dict[str, list[dict[str, Any]]]:
    """Each bot's records (all its days and parts), by bot id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for bot_id in sorted({p.bot_id for p in pods}):
        records: list[dict[str, Any]] = []
        prefix = lc.object_key(bot_id, "").rsplit("/", 1)[0] + "/"
        days = sorted({o.object_name[len(prefix):len(prefix) + 8]
                       for o in s3.list_objects(bucket, prefix=prefix)})
        for day in days:
            current = s3.stat_object(bucket, lc.object_key(bot_id, day))
            meta = {str(k).lower(): str(v) for k, v in (current.metadata or {}).items()}
            parts = logday.Ledger.decode(meta.get("x-amz-meta-" + logday.META_DAY)).parts
            for key in logday.day_keys(bot_id, day, parts):
                response = s3.get_object(bucket, key)
                try:
                    records += [json.loads(line) for line in response.read().splitlines()]
                finally:
                    response.close()
                    response.release_conn()
        found[bot_id] = records
    return found


def check(pods: list[FloodPod], records: dict[str, list[dict[str, Any]]],
          line_max: int) -> dict[str, int]:
    """Every line once (the huge one cut); returns lines stored per bot."""
    counts: dict[str, int] = {}
    for bot_id, got in records.items():
        mine = [r for r in got if r.get("source") == "bot"]
        expected = sum(p.lines for p in pods if p.bot_id == bot_id)
        huge = sum(p.huge for p in pods if p.bot_id == bot_id)
        if huge:
            assert len(mine) == 1 and len(mine[0]["message"]) == line_max, bot_id
            assert mine[0]["truncated_bytes"] > huge - line_max - 64, bot_id
        else:
            assert len(mine) == expected, (bot_id, len(mine), expected)
            assert all(r["message"] == "x" for r in mine), bot_id
        counts[bot_id] = len(mine)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8, help="WORKER_CONCURRENCY")
    parser.add_argument("--bots", type=int, default=4, help="live bots")
    parser.add_argument("--jobs", type=int, default=7, help="job pods of the scheduled bot")
    args = parser.parse_args()

    import redis as redis_lib
    from kubernetes import config
    from minio import Minio

    from tools.stack.supervisor import Stack
    from worker.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="the0-logflood-"))
    files = workdir / "pod-logs"
    files.mkdir()
    print(f"starting the stack in {workdir} …", flush=True)
    with Stack(workdir) as stack:
        assert stack.env is not None
        namespace = "the0"
        stack.kubectl("create", "namespace", namespace)
        stack.grant_controller(namespace)
        admin = config.new_client_from_config(stack.env.admin_kubeconfig)
        print("writing the logs and creating the pods …", flush=True)
        pods = flood_pods(admin, namespace, files, bots=args.bots, jobs=args.jobs)
        env = {**stack.env.as_env(), "KUBECONFIG": stack.env.controller_kubeconfig,
               "KUBE_MODE": "kubeconfig", "NAMESPACE": namespace,
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        redis = redis_lib.Redis.from_url(stack.env.redis_url)
        s3 = Minio(stack.env.s3_endpoint, access_key=stack.env.s3_access_key,
                   secret_key=stack.env.s3_secret_key, secure=False)
        result = measure(env, redis, pods, workdir / "log-worker.log",
                         concurrency=args.concurrency)
        counts = check(pods, stored(s3, "bot-logs", pods),
                       int(Settings.model_fields["LOG_LINE_MAX_BYTES"].default))
        result.update({"bots": len(counts), "lines_stored": sum(counts.values())})
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
