"""Chaos at scale on the real stack: churn and servers failing, invariants watched throughout.

    .venv/bin/python bench/chaos.py --bots 200 --minutes 4 --seed 1

Starts its own stack (kwok nodes only), seeds N bots (80 % live, 20 % scheduled), runs the
controller as in production - two `celery -A worker worker -Q reconcile,bots` processes, the log
worker (`-Q logs`), two `celery -A worker.broker_app beat` (one leads), one `python -m worker
events`, the api — waits
until every bot is converged, then for M minutes:

* churn (bench/chaos_churn.py), from `random.Random(seed)` so a run can be replayed: creates,
  config updates, enable/disable and deletes, half as NATS events (the platform's subjects and
  payloads), half as direct Mongo writes, at `--churn-per-minute` (default 2 % of the bots);
* faults (bench/chaos_faults.py), one at a time at random moments, each held a random 5-90 s
  times `--hold-scale`: kill -9 of a worker, of the active beat, of the events consumer (the
  process is started again when the hold ends); restart of Redis, NATS, FerretDB; SIGSTOP /
  SIGCONT ("network cut") of kube-apiserver, etcd (once), FerretDB, Redis, NATS;
* an independent checker (bench/chaos_checker.py; reads as admin with the kubernetes client and
  pymongo, never the controller's code; its watches run in a process of their own): a watch
  on every pod and CronJob recording any instant one bot (annotation `the0.dev/bot-id`) has two
  non-terminating pods or two CronJobs; every deletion judged against the churn's desired state;
  every published event matched to its effect in Mongo and Kubernetes; /readyz polled every 2 s;
  the RSS of every process sampled.

After the storm: the time until every bot matches Mongo (pod / CronJob exists iff enabled, its
config-hash annotation equal to the `desired_config_hash` its status document asks for, and
changed if the bot's config changed during the run), events lost, duplicate instants, wrong
deletions, tasks left in Celery's `unacked` hash, /readyz during and after each fault,
controller process restarts, peak RSS of each process. Prints a table, a timeline (also
written to <workdir>/chaos-timeline.txt) and ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymongo
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_checker import Checker, Model, ReadyPoller, RssSampler, Timeline, converged_report
from chaos_churn import Churn, seed_bots
from chaos_faults import KINDS, Faults, Fleet
from chaos_plot import plot_svg

from tools.stack.supervisor import Stack
from worker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "the0"
SHIPPED_CONCURRENCY = int(Settings.model_fields["WORKER_CONCURRENCY"].default)
HEARTBEAT_TTL_S = 6  # the api says a process is dead after this; heartbeats every 2 s


def wait_converged(mongo: Any, checker: Checker, model: Model, fleet: Fleet,
                   timeline: Timeline, *, give_up_at: float,
                   progress: Callable[[dict[str, Any]], None], pause: float = 1.0
                   ) -> tuple[float | None, dict[str, Any]]:
    """(when every bot matched Mongo, the confirming report) — or (None, the last report) at
    `give_up_at`. Checked against the checker's watch (a fresh list of 10,000 pods under load
    took 12-54 s, which the figure then included), and confirmed by a fresh list before it
    counts. The time is the watch view's: early by at most the watch's lag (it only lags),
    late by at most one check."""
    report: dict[str, Any] = {"mismatched": -1}
    while True:
        fleet.check_alive()
        try:
            fast = converged_report(mongo, checker, model, from_watch=True)
            progress(fast)
            if fast["mismatched"] == 0:
                report = converged_report(mongo, checker, model)
                if report["mismatched"] == 0:
                    return fast["k8s_at"], report
                timeline.add(f"the watch showed every bot converged, a fresh list did not: "
                             f"{report['sample']}")
            else:
                report = fast
        except Exception as exc:  # a read timed out under load: look again
            report = {"mismatched": -1, "error": repr(exc)}
            timeline.add(f"converged ?: {type(exc).__name__}", quiet=True)
        if time.monotonic() > give_up_at:
            return None, report
        time.sleep(pause)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--churn-per-minute", type=float, default=None,
                        help="changes per minute (default: 2 %% of the bots)")
    parser.add_argument("--hold-scale", type=float, default=1.0,
                        help="fault holds are uniform(5, 90) s times this (min 3 s)")
    parser.add_argument("--gap", type=float, default=10.0,
                        help="mean pause between two faults, s (exponential)")
    parser.add_argument("--reconcile-interval", type=int, default=10)
    parser.add_argument("--worker-concurrency", type=int, default=SHIPPED_CONCURRENCY,
                        help="threads per worker (default: the shipped WORKER_CONCURRENCY, "
                             f"{SHIPPED_CONCURRENCY}; runs before 2026-12-01 used 4)")
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument("--warmup-timeout", type=float, default=900.0,
                        help="seconds the seeded bots may take to converge before the storm "
                             "(10,000 bots: 556 s measured)")
    parser.add_argument("--faults", default=",".join(KINDS),
                        help="the kinds of fault drawn, comma-separated (default: all)")
    parser.add_argument("--max-faults", type=int, default=None,
                        help="stop injecting after this many faults (default: until the end)")
    args = parser.parse_args()
    unknown = set(args.faults.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    rng = random.Random(args.seed)
    churn_rate = args.churn_per_minute if args.churn_per_minute is not None else 0.02 * args.bots
    workdir = Path(tempfile.mkdtemp(prefix="the0-chaos-"))
    timeline = Timeline(workdir / "chaos-timeline.txt")
    timeline.add(f"seed {args.seed}, {args.bots} bots, {args.minutes} min, churn "
                 f"{churn_rate:.1f}/min, hold scale {args.hold_scale}, workdir {workdir}")
    print(f"starting the stack in {workdir} …", flush=True)
    with Stack(workdir, real_node=None) as stack:
        assert stack.env is not None
        senv = stack.env
        stack.kubectl("create", "namespace", NAMESPACE)
        stack.grant_controller(NAMESPACE)
        interval = args.reconcile_interval
        env = {**senv.as_env(), "KUBECONFIG": senv.controller_kubeconfig,
               "KUBE_MODE": "kubeconfig", "NAMESPACE": NAMESPACE,
               "RECONCILE_INTERVAL": f"{interval}s", "HEARTBEAT_INTERVAL": "2s",
               "HEARTBEAT_TTL": f"{HEARTBEAT_TTL_S}s", "TASK_VISIBILITY_TIMEOUT": "60s",
               "LOG_INTERVAL": "3600s", "WORKER_CONCURRENCY": str(args.worker_concurrency),
               "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        mongo: Any = pymongo.MongoClient(senv.mongo_uri, serverSelectionTimeoutMS=3000,
                                    socketTimeoutMS=10000)
        model = Model()
        seed_bots(senv, mongo, model, args.bots, rng)
        print(f"seeded {args.bots} bots ({len(model.live_ids())} live, "
              f"{len(model.sched_ids())} scheduled)", flush=True)

        fleet = Fleet(workdir / "logs", env, timeline)
        fleet.start_all()
        checker = Checker(senv.admin_kubeconfig, NAMESPACE, model, timeline)
        checker.start()
        ready = ReadyPoller(fleet.api_url, timeline, interval=interval,
                            heartbeat_ttl=HEARTBEAT_TTL_S)
        rss = RssSampler(fleet, stack)
        ready.start()
        rss.start()
        try:
            t0 = time.monotonic()

            def warm_up_progress(report: dict[str, Any]) -> None:
                print(f"  warm-up: {report['matched']}/{report['total']} converged after "
                      f"{time.monotonic() - t0:.0f} s", flush=True)

            at, report = wait_converged(mongo, checker, model, fleet, timeline,
                                        give_up_at=t0 + args.warmup_timeout,
                                        progress=warm_up_progress,
                                        pause=10)  # its reads load the database being timed
            if at is None:
                raise SystemExit(f"not converged before the storm: {report}")
            timeline.add(f"converged before the storm after {at - t0:.0f} s")

            storm_start = time.monotonic()
            storm_end = storm_start + args.minutes * 60
            churn = Churn(senv, mongo, model, checker, timeline, random.Random(rng.random()),
                          per_minute=churn_rate, until=storm_end)
            faults = Faults(stack, fleet, timeline, ready, random.Random(rng.random()),
                            hold_scale=args.hold_scale, gap=args.gap, until=storm_end,
                            redis_url=senv.redis_url, kinds=args.faults.split(","),
                            max_faults=args.max_faults)
            churn.fault_now = lambda: faults.active
            sampler_stop = threading.Event()
            converged: list[tuple[float, float]] = [(storm_start, 1.0)]

            def note_convergence(r: dict[str, Any]) -> None:
                converged.append((r["k8s_at"], r["matched"] / max(r["total"], 1)))
                timeline.add(f"converged {r['matched']}/{r['total']}", quiet=True)

            def sample_convergence() -> None:
                while not sampler_stop.wait(15):
                    try:
                        note_convergence(converged_report(mongo, checker, model,
                                                          timeout_ms=3000, from_watch=True))
                    except Exception as exc:
                        timeline.add(f"converged ?: {type(exc).__name__}", quiet=True)

            sampler = threading.Thread(target=sample_convergence, daemon=True)
            sampler.start()
            churn.start()
            faults.start()
            while time.monotonic() < storm_end or faults.thread.is_alive() \
                    or churn.thread.is_alive():
                fleet.check_alive()
                time.sleep(1)
            sampler_stop.set()
            # Convergence is timed from the end of the last fault or of the churn, whichever is
            # later: while the churn goes on, "every bot matches Mongo" is a moving target.
            last_fault_end = max(faults.last_end or 0.0, churn.last_change or 0.0) \
                or time.monotonic()
            timeline.add("storm over: churn and faults stopped")

            # Convergence after the storm.
            at, report = wait_converged(mongo, checker, model, fleet, timeline,
                                        give_up_at=last_fault_end + args.converge_timeout,
                                        progress=note_convergence)
            converge_s = None if at is None else max(at - last_fault_end, 0.0)
            if at is not None:
                converged.append((at, 1.0))
            timeline.add(f"after the storm: {({k: v for k, v in report.items() if k != 'uids'})}")
            unseen = checker.wait_seen(report.get("uids", set()), timeout=60)
            if unseen:
                timeline.add(f"checker: the watch never saw {len(unseen)} listed objects")
            # /readyz must say 200 again: wait for it (the events consumer's NATS reconnect
            # backoff reaches NATS_RECONNECT_WAIT_CAP), then let unacked drain.
            settle_from = time.monotonic()
            while ready.latest().get("code") != 200 and time.monotonic() - settle_from < 120:
                time.sleep(1)
            ready_after = {**ready.latest(),
                           "after_storm_s": round(time.monotonic() - last_fault_end, 1)}
            # Tasks still unacknowledged after up to 2 intervals are "left" (a task in flight
            # now is not): wait until the hash is empty or that long.
            r: Any = redis.Redis.from_url(senv.redis_url)
            drain_until = time.monotonic() + 2 * interval
            while r.hlen("unacked") and time.monotonic() < drain_until:
                time.sleep(1)
            unacked = r.hgetall("unacked")
            index = r.zrange("unacked_index", 0, -1, withscores=True)
            now = time.time()
            ages = sorted(now - score for _tag, score in index)
            findings = checker.findings(model)
            plot_svg(workdir / "chaos-timeline.svg", t0=storm_start, t_end=time.monotonic(),
                     converged=converged, faults=faults.done, ready=ready.samples,
                     title=f"chaos: {args.bots} bots, {args.minutes:g} min, seed {args.seed}")
            events = churn.event_report(mongo, checker)
        finally:
            ready.stop()
            rss.stop()
            checker.stop()
            fleet.stop_all()

    readyz = ready.summary(faults.done)
    not_ready_without_fault_s = ready.not_ready_without_fault_s(
        faults.done, since=storm_start, until=last_fault_end, grace=3 * interval)
    result: dict[str, Any] = {
        "bench": "chaos", "seed": args.seed, "bots": args.bots, "minutes": args.minutes,
        "churn_per_minute": churn_rate, "hold_scale": args.hold_scale,
        "reconcile_interval_s": args.reconcile_interval,
        "worker_concurrency": args.worker_concurrency,
        "changes": churn.count, "changes_by_path": churn.by_path,
        "faults": len(faults.done), "faults_by_kind": faults.by_kind(),
        "converge_after_last_fault_s": None if converge_s is None else round(converge_s, 1),
        "converged_within_2_intervals": converge_s is not None
                                        and converge_s <= 2 * args.reconcile_interval,
        "unconverged_at_end": report.get("mismatched"),
        "unconverged_sample": report.get("sample", []),
        **events,
        "duplicate_pod_instants": len(findings["dup_pods"]),
        "duplicate_cronjob_instants": len(findings["dup_cronjobs"]),
        "wrong_deletions": len(findings["wrong"]),
        "deletions": findings["deletions"],
        "watch_relists": checker.relists,
        "unacked_at_end": len(unacked),
        "unacked_oldest_s": round(ages[-1], 1) if ages else 0,
        "readyz": readyz,
        "readyz_blind_faults": sum(1 for f in readyz if f["blind"]),
        "readyz_not_ready_without_fault_s": not_ready_without_fault_s,
        "readyz_ready_after": ready_after,
        "controller_restarts": fleet.restarts,
        "unexpected_exits": fleet.unexpected,
        "peak_rss_mb": rss.peaks(),
        "timeline": str(timeline.path),
        "plot": str(workdir / "chaos-timeline.svg"),
    }
    timeline.add("findings: " + json.dumps({k: findings[k][:20] for k in
                                            ("dup_pods", "dup_cronjobs", "wrong")}))
    print("\n" + timeline.text())
    width = max(map(len, result))
    for key, value in result.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"{key:<{width}}  {shown}")
    print(json.dumps(result))
    ok = (result["duplicate_pod_instants"] == 0 and result["duplicate_cronjob_instants"] == 0
          and result["wrong_deletions"] == 0 and converge_s is not None
          and result["events_lost_mongo"] == 0 and result["events_lost_k8s"] == 0
          and result["unacked_at_end"] == 0 and result["unexpected_exits"] == 0
          and result["readyz_blind_faults"] == 0)
    return 0 if ok else 1


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through `with Stack`: the stack is stopped


if __name__ == "__main__":
    # Started in the background (`&`) a process inherits SIGINT ignored; SIGTERM would kill
    # it with its stack left running. Both stop the run and its stack.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.pop("MONGO_URI", None)
    sys.exit(main())
