"""`python -m worker plan|reconcile|controller` — the operator's CLI.

- plan:       what a pass would do (create / replace / recreate / delete per bot, and why).
              Reads only; writes nothing anywhere.
- reconcile:  one pass now, acting in this process (no Celery worker needed), with progress.
- controller: a Celery worker with an embedded beat — the one-process mode for a small host.
              Takes the seed controller's flags; flags override the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from worker.core.errors import The0Error
from worker.core.planner import Action
from worker.live_bots import KIND, LiveBotController
from worker.runtime import Runtime
from worker.settings import load_settings


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_plan(rt: Runtime) -> int:
    controller = LiveBotController(rt)
    observation = controller.observe()
    the_plan = controller.plan(observation, now=rt.clock())
    state = observation.state
    print(f"live bots: {len(state.desired)} desired, {len(state.disabled)} disabled, "
          f"{len(state.invalid)} invalid, {state.unidentifiable} without a usable id; "
          f"{len(observation.pods)} pods observed")
    if the_plan.actions:
        print(f"\n{'ACTION':<9} {'BOT':<40} {'POD':<40} REASON")
        for action in the_plan.actions:
            print(f"{action.kind.value:<9} {_short(action.bot_id, 40):<40} "
                  f"{_short(action.pod_name, 40):<40} {action.reason}")
    for bot_id in the_plan.waiting:
        print(f"{'wait':<9} {_short(bot_id, 40):<40} (a pod is terminating)")
    for bot_id in the_plan.backing_off:
        print(f"{'backoff':<9} {_short(bot_id, 40):<40} (recreate delayed after failures)")
    for bot_id, error in sorted(state.invalid.items()):
        print(f"{'invalid':<9} {_short(bot_id, 40):<40} {error.reason}: {error.detail}")
    if the_plan.guard_tripped:
        print(f"\nGUARD: {the_plan.guard_message}")
    counts = the_plan.counts()
    print("\nsummary: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " (nothing written)")
    return 0


def cmd_reconcile(rt: Runtime) -> int:
    controller = LiveBotController(rt)
    queued: list[Action] = []
    as_of = rt.clock()
    report = controller.reconcile(enqueue=lambda action, _as_of: queued.append(action))
    if report.skipped:
        print("another reconcile pass is running; try again shortly")
        return 1
    print(f"planned {report.counts}; {report.already_in_flight} already in flight; "
          f"{report.status_writes} status writes")
    if report.guard_message:
        print(f"GUARD: {report.guard_message}")
    failures = 0
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {pool.submit(controller.converge, a.bot_id, intent=a.kind.value,
                               as_of=as_of, pod=a.pod_name): a for a in queued}
        for done, future in enumerate(as_completed(futures), start=1):
            action = futures[future]
            try:
                outcome = future.result()
            except The0Error as exc:
                failures += 1
                outcome = f"error: {exc}"
            finally:
                rt.redis.release_inflight(KIND.value, action.bot_id)
            print(f"[{done}/{len(queued)}] {action.kind.value} {_short(action.bot_id, 40)}: "
                  f"{outcome}", flush=True)
    print(f"done in {time.monotonic() - started:.1f} s, {failures} failed")
    return 1 if failures else 0


def cmd_controller(args: argparse.Namespace) -> int:
    # Flags win over the environment; the Celery app reads settings once, at import.
    for flag, env in (("namespace", "NAMESPACE"), ("reconcile_interval", "RECONCILE_INTERVAL"),
                      ("minio_endpoint", "MINIO_ENDPOINT"), ("minio_bucket", "MINIO_BUCKET")):
        value = getattr(args, flag)
        if value:
            os.environ[env] = value
    from worker.celery import app

    app.worker_main(["worker", "--beat", "--loglevel", args.loglevel, "-Q",
                     "reconcile,bots,logs"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plan", help="show what a pass would do; writes nothing")
    sub.add_parser("reconcile", help="run one pass now, in this process")
    controller = sub.add_parser("controller", help="worker + embedded beat in one process")
    controller.add_argument("--namespace")
    controller.add_argument("--reconcile-interval")
    controller.add_argument("--minio-endpoint")
    controller.add_argument("--minio-bucket")
    controller.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "controller":
        return cmd_controller(args)
    rt = Runtime(load_settings())
    try:
        return cmd_plan(rt) if args.command == "plan" else cmd_reconcile(rt)
    except The0Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
