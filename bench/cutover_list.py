"""The cut-over's extra list per pass, at scale, on the real stack (kwok nodes only).

    .venv/bin/python bench/cutover_list.py --pods 10000 --legacy 0

Starts its own stack without the real node, creates N pods of ours (the controller's own
bodies) and L pods of the0's original runtime (tests/support/legacy.py), waits until kwok has
made ours Running, and measures, each the median of --repeat runs:
  legacy_list_ms     the list a pass adds (the original's pods, by label selector): its cost
                     every pass, after the cut-over too
  legacy_found       what that list returned (L)
  ours_list_ms       a full list of our pods, for scale (what the watched cache spares a pass)
  cache_read_ms      a pass's read of our pods from the watched cache (before the cut-over
                     change, the whole of PodKind.observe)
  observe_ms         PodKind.observe now: the cache read plus the extra list
Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.legacy import legacy_pod
from tools.stack.supervisor import Stack
from worker.core.bot import BotKind
from worker.core.desired import parse_desired
from worker.core.legacy import POD_SELECTOR as LEGACY_SELECTOR
from worker.core.legacy import observe_legacy_pod
from worker.core.planner import observed_pod
from worker.core.podspec import build_pod
from worker.core.podstatus import PodHealth
from worker.reconcile.pods import POD_SELECTOR, PodKind
from worker.runtime import Runtime
from worker.settings import load_settings

NAMESPACE = "the0"
MINIO = {"endpoint": "minio:9000", "access_key": "bench", "secret_key": "bench-secret"}


def median_ms(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10_000, help="pods of ours")
    parser.add_argument("--legacy", type=int, default=0, help="pods of the original runtime")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="the0-bench-cutover-"))
    print(f"starting the stack in {workdir} …", flush=True)
    with Stack(workdir, real_node=None) as stack:
        assert stack.env is not None
        stack.kubectl("create", "namespace", NAMESPACE)
        stack.grant_controller(NAMESPACE)
        env = {**os.environ, **stack.env.as_env(), "KUBECONFIG": stack.env.controller_kubeconfig,
               "KUBE_MODE": "kubeconfig", "NAMESPACE": NAMESPACE}
        settings = load_settings(env=env)
        rt = Runtime(settings)
        kube = rt.kube

        def ours(i: int) -> dict[str, Any]:
            bot = parse_desired({"id": f"bench{i:05d}",
                                 "config": {"name": "bench", "api_key": f"k{i}"},
                                 "custom": {"version": "1.0.0", "filePath": "b.zip",
                                            "config": {"runtime": "python3.11",
                                                       "entrypoints": {"bot": "main.py"}}}},
                                kind=BotKind.LIVE, template=settings.pod_template,
                                resources=settings.resource_policy)[0]
            return build_pod(bot, settings.pod_template)

        def original(i: int) -> dict[str, Any]:
            doc = {"id": f"old{i:05d}", "config": {"name": "old", "api_key": f"k{i}"},
                   "custom": {"version": "1.0.0", "filePath": "b.zip",
                              "config": {"runtime": "python3.11", "name": "demo"}}}
            return legacy_pod(doc, namespace=NAMESPACE, minio=MINIO)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(kube.create_pod, [ours(i) for i in range(args.pods)]))
            list(pool.map(kube.create_pod, [original(i) for i in range(args.legacy)]))
        print(f"created {args.pods} + {args.legacy} pods in {time.monotonic() - started:.0f} s",
              flush=True)

        kind = PodKind(rt)

        def running() -> int:  # from the watched cache: kwok is busy until all run
            return sum(p.assessment.health is PodHealth.RUNNING
                       for p in rt.read_objects("pods", POD_SELECTOR, observed_pod))

        while running() < args.pods:
            time.sleep(5)
        time.sleep(10)  # the last status updates settle
        found = len(kube.list_pods(LEGACY_SELECTOR, keep=observe_legacy_pod))
        result = {
            "pods": args.pods, "legacy": args.legacy, "legacy_found": found,
            "legacy_list_ms": median_ms(
                lambda: kube.list_pods(LEGACY_SELECTOR, keep=observe_legacy_pod), args.repeat),
            "ours_list_ms": median_ms(
                lambda: kube.list_pods(POD_SELECTOR, keep=observed_pod), max(3, args.repeat // 2)),
            "cache_read_ms": median_ms(
                lambda: rt.read_objects("pods", POD_SELECTOR, observed_pod), args.repeat),
            "observe_ms": median_ms(kind.observe, args.repeat),
        }
        rt.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
