"""`python -m worker plan|reconcile|controller|events` — the operator's CLI.

- plan:       what a pass would do (create / replace / recreate / delete per bot, and the
              CronJob create / update / delete per schedule, and why; `takeover` where an
              object of the0's original runtime is replaced by ours at cut-over).
              Reads only; writes nothing anywhere.
- reconcile:  one pass now, acting in this process (no Celery worker needed), with progress.
- controller: a Celery worker with an embedded beat — the one-process mode for a small host.
              Takes the seed controller's flags; flags override the environment.
- events:     the NATS consumer (queue group `runtime`; run ONE, so one bot's events keep
              their order): each platform event is written to Mongo and triggers an
              immediate reconcile of that one bot.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from worker.lazy_kube import install as import_kubernetes_lazily

import_kubernetes_lazily()  # before anything imports kubernetes: worker/lazy_kube.py

from worker.core.buckets import problems as bucket_problems
from worker.core.errors import The0Error
from worker.core.planner import Action
from worker.core.text import printable
from worker.reconcile.controller import Controller, LiveBotController, ScheduleController
from worker.runtime import Runtime
from worker.settings import load_settings


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _say(line: str = "", *, flush: bool = False) -> None:
    """One line for the operator's terminal: bot ids, object names and reasons come from
    documents and the cluster, so unprintable characters are shown escaped, never sent."""
    print(printable(line), flush=flush)


def controllers(rt: Runtime) -> list[tuple[str, Controller]]:
    return [("live bots", LiveBotController(rt)), ("scheduled bots", ScheduleController(rt))]


def cmd_plan(rt: Runtime) -> int:
    for problem in bucket_problems(rt.code.bucket_checks()).values():
        _say(f"BUCKET: {problem}")
    for label, controller in controllers(rt):
        observation = controller.observe()
        the_plan = controller.plan(observation, now=rt.clock())
        state = observation.state
        objects = observation.objects
        _say(f"{label}: {len(state.desired)} desired, {len(state.disabled)} disabled, "
              f"{len(state.invalid)} invalid, {state.unidentifiable} without a usable id; "
              f"{len(objects)} objects observed")
        if the_plan.actions:
            _say()
            _say(f"{'ACTION':<9} {'BOT':<40} {'OBJECT':<40} REASON")
            for action in the_plan.actions:
                kind = action.kind.value
                if label == "scheduled bots" and kind == "replace":
                    kind = "update"  # a CronJob is updated in place
                _say(f"{kind:<9} {_short(action.bot_id, 40):<40} "
                      f"{_short(action.pod_name, 40):<40} {action.reason}")
        for bot_id in the_plan.waiting:
            _say(f"{'wait':<9} {_short(bot_id, 40):<40} (terminating)")
        for bot_id in the_plan.backing_off:
            _say(f"{'backoff':<9} {_short(bot_id, 40):<40} (delayed after failures)")
        for bot_id in the_plan.name_taken:
            _say(f"{'blocked':<9} {_short(bot_id, 40):<40} (its object name is held by an "
                  "object that is not this bot's)")
        for obj in the_plan.foreign:
            _say(f"{'foreign':<9} {_short(obj.claimed_id or '-', 40):<40} "
                  f"{_short(obj.name, 40):<40} left alone: {obj.why}")
        for bot_id, error in sorted(state.invalid.items()):
            _say(f"{'invalid':<9} {_short(bot_id, 40):<40} {error.reason}: {error.detail}")
        if the_plan.guard_tripped:
            _say()
            _say(f"GUARD: {the_plan.guard_message}")
        counts = the_plan.counts()
        _say(f"summary ({label}): " + ", ".join(f"{k} {v}" for k, v in counts.items())
              + " (nothing written)")
        _say()
    return 0


def cmd_reconcile(rt: Runtime) -> int:
    failures = 0
    for label, controller in controllers(rt):
        queued: list[Action] = []

        def collect(action: Action, _as_of: float, queued: list[Action] = queued) -> None:
            queued.append(action)

        report = controller.reconcile(enqueue=collect)
        if report.skipped:
            _say(f"{label}: another reconcile pass is running; try again shortly")
            failures += 1
            continue
        _say(f"{label}: planned {report.counts}; {report.already_in_flight} already in "
              f"flight; {report.status_writes} status writes")
        if report.guard_message:
            _say(f"GUARD: {report.guard_message}")
        kind = "live" if label == "live bots" else "scheduled"
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = {pool.submit(_converge, controller, a): a for a in queued}
            for done, future in enumerate(as_completed(futures), start=1):
                action = futures[future]
                try:
                    outcome = future.result()
                except The0Error as exc:
                    failures += 1
                    outcome = f"error: {exc}"
                finally:
                    rt.redis.release_inflight(kind, action.bot_id)
                _say(f"[{done}/{len(queued)}] {action.kind.value} "
                      f"{_short(action.bot_id, 40)}: {outcome}", flush=True)
        _say(f"{label}: done in {time.monotonic() - started:.1f} s")
    _say(f"{failures} failed")
    return 1 if failures else 0


def _converge(controller: Controller, action: Action) -> str:
    return controller.converge(action.bot_id, intent=action.kind.value, pod=action.pod_name)


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


def cmd_events() -> int:
    from worker.app import create_app
    from worker.events import run_consumer

    settings = load_settings(role="events")
    return run_consumer(Runtime(settings), create_app(settings))


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
    events = sub.add_parser("events", help="the NATS consumer: platform events → Mongo → an "
                                           "immediate reconcile of that bot (until SIGTERM)")
    events.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "loglevel", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "controller":
        return cmd_controller(args)
    if args.command == "events":
        return cmd_events()
    rt = Runtime(load_settings())
    try:
        return cmd_plan(rt) if args.command == "plan" else cmd_reconcile(rt)
    except The0Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
