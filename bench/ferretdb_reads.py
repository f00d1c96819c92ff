"""What a pass's full read of the bot documents costs on the stack's FerretDB, and who pays it.

    .venv/bin/python bench/ferretdb_reads.py                 # starts its own stack (no real node)
    .venv/bin/python bench/ferretdb_reads.py --bots 10000 --schedules 2000 --profile

Seeds the reconcile benchmark's documents (10,000 live bots, 2,000 schedules by default), then
reads them back in the shapes that matter, each 3 times (median): the pass's own projected read
(worker/adapters/mongo.BOT_PROJECTION), no projection, a top-level projection, a `$count` of the
collection (FerretDB's floor: it decodes every stored document even to count it), and the
schedules. For each: wall seconds and CPU seconds of FerretDB, of PostgreSQL and of this
process. `--profile` also saves FerretDB's own CPU profile of the projected read (its debug
handler, 8 s) for `go tool pprof`. Prints a table and ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proc_cpu import all_pids
from bench.proc_cpu import cpu_seconds as process_cpu_seconds
from tools.stack.supervisor import Stack
from worker.adapters.mongo import BOT_PROJECTION

TOP_LEVEL = {"_id": False, "id": True, "enabled": True, "config": True, "custom": True}


def cpu_seconds(argv0_suffix: str) -> float:
    """User + system CPU of every process whose argv[0] ends with `argv0_suffix` or starts
    with it (PostgreSQL's backends retitle themselves "postgres: …")."""
    total = 0.0
    for pid in all_pids():
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, UnicodeDecodeError):
            continue
        if argv0.endswith("/" + argv0_suffix) or argv0.startswith(argv0_suffix):
            total += process_cpu_seconds(int(pid))
    return total


def measure(read: Callable[[], Sized], repeats: int = 3) -> dict[str, float]:
    rows = []
    for _ in range(repeats):
        before = (cpu_seconds("ferretdb"), cpu_seconds("postgres"), time.process_time())
        started = time.monotonic()
        count = len(read())
        wall = time.monotonic() - started
        after = (cpu_seconds("ferretdb"), cpu_seconds("postgres"), time.process_time())
        rows.append((wall, *(b - a for a, b in zip(before, after, strict=True)), count))
    wall, ferretdb, postgres, me, count = (statistics.median(column)
                                           for column in zip(*rows, strict=True))
    return {"wall_s": round(wall, 3), "ferretdb_cpu_s": round(ferretdb, 2),
            "postgres_cpu_s": round(postgres, 2), "reader_cpu_s": round(me, 2),
            "documents": int(count)}


def seed(client: pymongo.MongoClient[dict[str, Any]], bots: int, schedules: int) -> None:
    """The documents bench/reconcile_scale.py seeds."""
    live = client["bot_runner"]["bots"]
    live.create_index("id", unique=True)
    docs = [{"id": f"bench{i:05d}",
             "config": {"name": f"bench {i}", "symbol": "BTC/USDT", "api_key": f"k{i}"},
             "custom": {"version": "1.0.0", "filePath": "bench/bot.zip",
                        "config": {"runtime": "python3.11", "entrypoints": {"bot": "main.py"}}}}
            for i in range(bots)]
    for start in range(0, bots, 1000):
        live.insert_many(docs[start:start + 1000], ordered=False)
    scheduled = client["bot_scheduler"]["bot_schedules"]
    sdocs = [{"id": f"sched{i:05d}",
              "config": {"name": f"dca {i}", "schedule": f"{i % 60} {i % 24} * * *",
                         "timezone": "Europe/London", "api_key": f"k{i}"},
              "custom": {"version": "1.0.0", "filePath": "bench/bot.zip",
                         "config": {"runtime": "python3.11",
                                    "entrypoints": {"bot": "main.py"}}}}
             for i in range(schedules)]
    for start in range(0, schedules, 1000):
        scheduled.insert_many(sdocs[start:start + 1000], ordered=False)


def ferretdb_profile(workdir: Path, read: Callable[[], Sized], out: Path) -> None:
    """FerretDB's own CPU profile (its --debug-addr) while `read` runs in a loop."""
    address = ""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv[0].endswith("/ferretdb") and any(str(workdir) in a for a in argv):
            address = next(a.split("=", 1)[1] for a in argv if a.startswith("--debug-addr="))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            read()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://{address}/debug/pprof/profile?seconds=8",
                                    timeout=30) as response:
            out.write_bytes(response.read())
    finally:
        stop.set()
        thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=10000)
    parser.add_argument("--schedules", type=int, default=2000)
    parser.add_argument("--profile", action="store_true",
                        help="save FerretDB's CPU profile of the projected read")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="the0-ferretdb-reads-"))
    with Stack(workdir, real_node=None) as stack:
        assert stack.env is not None
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(stack.env.mongo_uri)
        seed(client, args.bots, args.schedules)
        live = client["bot_runner"]["bots"]
        scheduled = client["bot_scheduler"]["bot_schedules"]
        reads: dict[str, Callable[[], Sized]] = {
            "live, the pass's projection": lambda: list(live.find({}, BOT_PROJECTION,
                                                                  batch_size=2000)),
            "live, no projection": lambda: list(live.find({}, batch_size=2000)),
            "live, top-level projection": lambda: list(live.find({}, TOP_LEVEL,
                                                                 batch_size=2000)),
            "live, $count": lambda: list(live.aggregate([{"$count": "n"}])),
            "schedules, the pass's projection": lambda: list(scheduled.find(
                {}, BOT_PROJECTION, batch_size=2000)),
        }
        result: dict[str, Any] = {"bench": "ferretdb_reads", "bots": args.bots,
                                  "schedules": args.schedules}
        width = max(map(len, reads))
        print(f"{'read':<{width}}  {'wall s':>7}  {'ferretdb':>8}  {'postgres':>8}  "
              f"{'reader':>6}  (CPU s, median of 3)")
        for name, read in reads.items():
            measured = measure(read)
            result[name] = measured
            print(f"{name:<{width}}  {measured['wall_s']:>7.3f}  "
                  f"{measured['ferretdb_cpu_s']:>8.2f}  {measured['postgres_cpu_s']:>8.2f}  "
                  f"{measured['reader_cpu_s']:>6.2f}", flush=True)
        if args.profile:
            out = workdir / "ferretdb-read.pprof"
            ferretdb_profile(workdir, reads["live, the pass's projection"], out)
            result["profile"] = str(out)
            print(f"FerretDB's CPU profile: go tool pprof -top <ferretdb binary> {out}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
