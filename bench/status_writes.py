"""What recording statuses costs on the stack's FerretDB: writes one at a time vs several at
once, and the status-memo rebuild read alone vs alongside the pass's read of the bots.

    .venv/bin/python bench/status_writes.py                  # starts its own stack (no real node)
    .venv/bin/python bench/status_writes.py --bots 10000 --statuses 8000 --writes 200

Seeds the reconcile benchmark's bot documents and `--statuses` live status documents, then,
each 3 times (median): `--writes` status upserts through `BotStore.write_statuses` in batches
of one (one at a time, as before 2026-12-01) and in the pass's batches (STATUS_BATCH, written
STATUS_WRITERS at once); the read of every status document (what a pass does when Redis lost
the memo), the pass's read of the bots, and both at once (what a pass does now). Prints a
table and ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ferretdb_reads import seed

from tools.stack.supervisor import Stack
from worker.adapters.mongo import STATUS_WRITERS, BotStore, collections_for
from worker.core.bot import BotKind
from worker.reconcile.statuses import STATUS_BATCH


def status_doc(n: int, round_: int) -> dict[str, Any]:
    """A live bot's status as a pass writes it (worker.core.status.observed_status)."""
    return {"id": f"bench{n:05d}", "kind": "live", "namespace": "the0",
            "object_name": f"bot-bench{n:05d}", "phase": "Running", "restarts": round_,
            "reason": "", "message": "", "observed_config_hash": f"{n:064x}",
            "desired_config_hash": f"{n:064x}", "last_error": "",
            "updated_at": f"2026-12-01T00:00:{round_:02d}Z"}


def median_s(run: Callable[[int], object], repeats: int = 3) -> float:
    times = []
    for round_ in range(repeats):
        started = time.monotonic()
        run(round_)
        times.append(time.monotonic() - started)
    return round(statistics.median(times), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=10000)
    parser.add_argument("--statuses", type=int, default=8000)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="the0-status-writes-"))
    with Stack(workdir, real_node=None) as stack:
        assert stack.env is not None
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(stack.env.mongo_uri)
        seed(client, args.bots, 0)
        store = BotStore(client, collections_for(BotKind.LIVE, bot_runner_db="bot_runner",
                                                 bot_scheduler_db="bot_scheduler"))
        for start in range(0, args.statuses, 1000):
            store.status.insert_many([{"_id": f"bench{n:05d}", **status_doc(n, 0)} for n in
                                      range(start, min(start + 1000, args.statuses))])

        def write(batch: int) -> Callable[[int], object]:
            def run(round_: int) -> None:
                docs = [status_doc(n, round_ + 1) for n in range(args.writes)]
                for start in range(0, len(docs), batch):
                    store.write_statuses(docs[start:start + batch])
            return run

        def both(_round: int) -> None:
            with ThreadPoolExecutor(max_workers=1) as pool:
                statuses = pool.submit(store.read_statuses)
                store.load_all()
                statuses.result()

        rows = {
            f"{args.writes} status writes, one at a time": median_s(write(1)),
            f"{args.writes} status writes, batches of {STATUS_BATCH}, {STATUS_WRITERS} at once":
                median_s(write(STATUS_BATCH)),
            f"read {args.statuses} status documents (memo rebuild)":
                median_s(lambda _r: store.read_statuses()),
            f"read {args.bots} bots (the pass's read)": median_s(lambda _r: store.load_all()),
            "both reads at once": median_s(both),
        }
    width = max(map(len, rows))
    print(f"{'what':<{width}}  wall s (median of 3)")
    for name, seconds in rows.items():
        print(f"{name:<{width}}  {seconds:>7.3f}")
    print(json.dumps({"bench": "status_writes", "bots": args.bots, "statuses": args.statuses,
                      "writes": args.writes, "status_writers": STATUS_WRITERS, **rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
