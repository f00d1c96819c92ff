"""The chaos run's churn: the platform changing bots, through NATS events and direct Mongo
writes, from a seeded generator. Each change updates the checker's Model at the moment the
platform made it (published / written)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import zipfile
from collections import defaultdict
from random import Random
from typing import Any

import nats
import orjson
from chaos_checker import Checker, Model, Timeline
from minio import Minio

CODE_KEY = "chaos/bot.zip"
BUCKET = "the0-custom-bots"
CUSTOM = {"version": "1.0.0", "filePath": CODE_KEY,
          "config": {"runtime": "python3.11", "entrypoints": {"bot": "main.py"}}}
SCHEDULE = "0 0 1 1 *"  # once a year: no job pods during the run
DB = {"live": ("bot_runner", "bots"), "sched": ("bot_scheduler", "bot_schedules")}
PREFIX = {"live": "the0.bot.", "sched": "the0.bot-schedule."}
KIND = {"live": "pod", "sched": "cronjob"}


def bot_config(bot: str, kind: str, rev: int, enabled: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = {"name": f"chaos {bot}", "symbol": "BTC/USDT", "api_key": f"k-{bot}",
                           "chaos_rev": rev, "enabled": enabled}
    if kind == "sched":
        cfg["schedule"] = SCHEDULE
    return cfg


def seed_bots(senv: Any, mongo: Any, model: Model, n: int, rng: Random) -> None:
    s3 = Minio(senv.s3_endpoint, access_key=senv.s3_access_key,
               secret_key=senv.s3_secret_key, secure=False)
    if not s3.bucket_exists(BUCKET):
        s3.make_bucket(BUCKET)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "print('chaos')\n")
    s3.put_object(BUCKET, CODE_KEY, io.BytesIO(buffer.getvalue()), len(buffer.getvalue()))
    docs: dict[str, list[dict[str, Any]]] = {"live": [], "sched": []}
    at = time.monotonic()
    for i in range(n):
        kind = "sched" if i % 5 == 4 else "live"
        bot = f"{kind}{i:05d}"
        enabled = rng.random() >= 0.1
        docs[kind].append({"id": bot, "config": bot_config(bot, kind, 0, enabled),
                           "custom": CUSTOM})
        model.set(bot, kind=kind, exists=True, enabled=enabled, rev=0, at=at)
    for kind, batch in docs.items():
        coll = mongo[DB[kind][0]][DB[kind][1]]
        coll.create_index("id", unique=True)
        for start in range(0, len(batch), 1000):
            coll.insert_many(batch[start:start + 1000], ordered=False)


class Churn:
    def __init__(self, senv: Any, mongo: Any, model: Model, checker: Checker,
                 timeline: Timeline, rng: Random, *, per_minute: float, until: float,
                 active_fault: Any = None) -> None:
        self.senv = senv
        self.mongo = mongo
        self.model = model
        self.checker = checker
        self.timeline = timeline
        self.rng = rng
        self.per_minute = per_minute
        self.until = until
        self.events: list[dict[str, Any]] = []
        self.ops: list[dict[str, Any]] = []  # every change, both paths (for supersession)
        self.count = 0
        self.last_change: float | None = None  # monotonic time of the last change made
        self.by_path: dict[str, int] = defaultdict(int)
        self.publish_failed = 0
        self.next_new = 0
        self.fault_now: Any = active_fault  # callable → the fault in progress (or None)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def pick(self, kind: str) -> str | None:
        with self.model.lock:
            ids = [b for b, v in self.model.bots.items() if v["kind"] == kind and v["exists"]]
        fresh = [b for b in ids if b not in self.model.touched]
        if fresh:
            return self.rng.choice(sorted(fresh))
        now = time.monotonic()
        older = [b for b in ids if now - self.model.touched[b] > 120]
        return self.rng.choice(sorted(older)) if older else None

    def run(self) -> None:
        while True:
            gap = self.rng.expovariate(self.per_minute / 60.0) if self.per_minute > 0 else 1e9
            if time.monotonic() + gap >= self.until:
                return
            time.sleep(gap)
            try:
                self.one()
            except Exception as exc:  # a churn step must never end the run
                self.timeline.add(f"churn error: {type(exc).__name__}: {exc}")

    def one(self) -> None:
        kind = "sched" if self.rng.random() < 0.2 else "live"
        op = self.rng.choices(["create", "update", "toggle", "delete"], [2, 4, 2.5, 1.5])[0]
        path = self.rng.choice(["nats", "mongo"])
        if op == "create":
            bot = f"new{kind}{self.next_new:05d}"
            self.next_new += 1
            rev, enabled, exists = 1, True, True
        else:
            picked = self.pick(kind)
            if picked is None:
                return
            bot = picked
            with self.model.lock:
                cur = dict(self.model.bots[bot])
            rev, enabled, exists = cur["rev"], cur["enabled"], True
            if op == "update":
                rev += 1
            elif op == "toggle":
                enabled = not enabled
            else:
                exists = False
        self.model.touched[bot] = time.monotonic()
        pre = self.checker.hashes_seen(KIND[kind], bot)
        cfg = bot_config(bot, kind, rev, enabled)
        # The change counts from the moment it is SENT: a JetStream publish returns after the
        # stream's ack, and the consumer may act (delete the pod) before that.
        at = time.monotonic()
        ok = self.publish(kind, op, bot, cfg) if path == "nats" else self.write(kind, op, bot, cfg)
        if not ok:
            # A publish that timed out may still be in the stream (the server stored it, its ack
            # was lost): a removal it asked for is then not a wrong deletion.
            self.model.note_attempt(bot, wanted=exists and enabled, at=at)
            return
        if op == "update":
            self.model.stale_hashes[bot] |= pre
        self.model.set(bot, kind=kind, exists=exists, enabled=enabled, rev=rev, at=at)
        record = {"t": at, "bot": bot, "kind": kind, "op": op, "path": path, "rev": rev,
                  "enabled": enabled, "exists": exists, "pre": pre,
                  "fault": self.fault_now() if self.fault_now else None}
        self.ops.append(record)
        if path == "nats":
            self.events.append(record)
        self.count += 1
        self.last_change = at
        self.by_path[path] += 1
        self.timeline.add(f"churn {path} {op} {kind} {bot} rev {rev} enabled {enabled}",
                          quiet=True, at=at)

    def publish(self, kind: str, op: str, bot: str, cfg: dict[str, Any]) -> bool:
        subject = PREFIX[kind] + {"create": "created", "update": "updated", "toggle": "updated",
                                  "delete": "deleted"}[op]
        body = {"id": bot} if op == "delete" else {"id": bot, "config": cfg, "custom": CUSTOM}

        async def quiet(_exc: Exception) -> None:
            return None  # a refused connection is reported below, once, not as a traceback

        async def send() -> None:
            nc = await nats.connect(servers=[self.senv.nats_url], connect_timeout=2,
                                    allow_reconnect=False, max_reconnect_attempts=0,
                                    error_cb=quiet)
            try:
                # As the0's API publishes: into its JetStream stream, waiting for the server's
                # ack (an event is "published" once the stream holds it).
                await nc.jetstream().publish(subject, orjson.dumps(body), timeout=5)
            finally:
                await nc.close()

        try:
            asyncio.run(asyncio.wait_for(send(), 5))
            return True
        except Exception as exc:
            self.publish_failed += 1
            self.timeline.add(f"churn: publish {subject} {bot} failed ({type(exc).__name__}):"
                              " the platform saw an error, no change made")
            return False

    def write(self, kind: str, op: str, bot: str, cfg: dict[str, Any]) -> bool:
        coll = self.mongo[DB[kind][0]][DB[kind][1]]
        deadline = time.monotonic() + 120
        while True:
            try:
                if op == "create":
                    coll.insert_one({"id": bot, "config": cfg, "custom": CUSTOM})
                elif op == "delete":
                    coll.delete_one({"id": bot})
                else:
                    coll.update_one({"id": bot}, {"$set": {"config": cfg}})
                return True
            except Exception as exc:
                if time.monotonic() > deadline:
                    self.timeline.add(f"churn: Mongo write for {bot} failed for 120 s: "
                                      f"{type(exc).__name__}")
                    return False
                time.sleep(1)

    def event_report(self, mongo: Any, checker: Checker) -> dict[str, Any]:
        last_op: dict[str, float] = {}
        for rec in self.ops:
            last_op[rec["bot"]] = max(last_op.get(rec["bot"], 0.0), rec["t"])
        lost_mongo: list[dict[str, Any]] = []
        lost_k8s: list[dict[str, Any]] = []
        latencies: list[float] = []
        lost_sample: list[dict[str, Any]] = []
        superseded = 0
        for ev in self.events:
            if last_op[ev["bot"]] > ev["t"]:
                superseded += 1
                continue
            coll = mongo[DB[ev["kind"]][0]][DB[ev["kind"]][1]]
            doc = coll.find_one({"id": ev["bot"]}, {"_id": 0, "config": 1})
            if ev["exists"]:
                mongo_ok = doc is not None and doc.get("config", {}).get("chaos_rev") == ev["rev"] \
                    and doc.get("config", {}).get("enabled") == ev["enabled"]
            else:
                mongo_ok = doc is None
            kind = KIND[ev["kind"]]
            if ev["exists"] and ev["enabled"]:
                seen = checker.first_after(kind, ev["bot"], ev["t"],
                                           ev["pre"] if ev["op"] == "update" else set())
                if seen is None and ev["op"] != "update" and ev["pre"] \
                        and checker.live_at_now(kind, ev["bot"]):
                    seen = ev["t"]  # enabled and it already ran: nothing to do
            else:
                seen = checker.deletion_after(kind, ev["bot"], ev["t"])
                if seen is None and checker.live_at_now(kind, ev["bot"]) == 0:
                    seen = ev["t"]  # nothing to remove (e.g. it never ran)
            if seen is not None:
                latencies.append(seen - ev["t"])
            if not mongo_ok:
                lost_mongo.append(ev)
            if seen is None:
                lost_k8s.append(ev)
            if (not mongo_ok or seen is None) and len(lost_sample) < 10:
                lost_sample.append({"t": round(self.timeline.rel(ev["t"]), 1), "bot": ev["bot"],
                                    "op": ev["op"], "fault": ev["fault"],
                                    "mongo_ok": mongo_ok, "k8s_seen": seen is not None})
        latencies.sort()

        def pct(q: float) -> float | None:
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) \
                if latencies else None

        return {"events_published": len(self.events),
                "events_publish_failed": self.publish_failed,
                "events_superseded": superseded,
                "events_lost_mongo": len(lost_mongo),
                "events_lost_k8s": len(lost_k8s),
                "events_lost_during_fault": sum(1 for e in {id(x): x for x in lost_mongo
                                                           + lost_k8s}.values()
                                                if e["fault"]),
                "events_lost_sample": lost_sample,
                "event_effect_p50_s": pct(0.5), "event_effect_p95_s": pct(0.95),
                "event_effect_max_s": round(latencies[-1], 2) if latencies else None}
