"""The chaos run's independent checker: what the platform wants (Model), what Kubernetes shows
(Checker: watches as admin in a process of their own, `watch_in_process`), what /readyz says
(ReadyPoller), memory (RssSampler), and the timeline. Never imports the controller's code: it
judges the controller from outside.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
from kubernetes import client, config

POD_SELECTOR = "managed-by=the0-bot-controller"
CRONJOB_SELECTOR = "managed-by=the0-schedule-controller"
BOT_ID = "the0.dev/bot-id"
CONFIG_HASH = "the0.dev/config-hash"


def disabled_value(value: Any) -> bool:
    if isinstance(value, bool):
        return value is False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value.strip().lower() in ("false", "0")
    return False


def enabled_doc(doc: dict[str, Any]) -> bool:
    """DESIGN §1: disabled when top-level `enabled` or `config.enabled` is false-ish."""
    raw = doc.get("config")
    cfg: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return not (disabled_value(doc.get("enabled")) or disabled_value(cfg.get("enabled")))


class Timeline:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.monotonic()
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def rel(self, t: float) -> float:
        return t - self.t0

    def add(self, text: str, *, quiet: bool = False, at: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        line = f"{stamp} +{self.rel(at or time.monotonic()):7.1f}s  {text}"
        with self.lock:
            self.lines.append(line)
            with self.path.open("a") as out:
                out.write(line + "\n")
        if not quiet:
            print(line, flush=True)

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.lines)


class Model:
    """The desired state as the platform (the churn) made it, with its history."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bots: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        self.stale_hashes: dict[str, set[str]] = defaultdict(set)
        self.touched: dict[str, float] = {}

    def set(self, bot: str, *, kind: str, exists: bool, enabled: bool, rev: int,
            at: float | None = None) -> None:
        with self.lock:
            self.bots[bot] = {"kind": kind, "exists": exists, "enabled": enabled, "rev": rev}
            self.history[bot].append((at if at is not None else time.monotonic(),
                                      exists and enabled))

    def note_attempt(self, bot: str, *, wanted: bool, at: float) -> None:
        """A change whose outcome is unknown (its publish failed, perhaps after the server
        stored it): if it asked for the bot's removal, a removal after it is justified. The
        bot's current state stays as it was."""
        if not wanted:
            with self.lock:
                self.history[bot].append((at, False))

    def live_ids(self) -> list[str]:
        return sorted(b for b, v in self.bots.items() if v["kind"] == "live" and v["exists"])

    def sched_ids(self) -> list[str]:
        return sorted(b for b, v in self.bots.items() if v["kind"] == "sched" and v["exists"])

    def wanted_throughout(self, bot: str, start: float, end: float) -> bool:
        with self.lock:
            entries = list(self.history.get(bot, []))
        state = False
        for t, wanted in entries:
            if t <= start:
                state = wanted
            elif t <= end and not wanted:
                return False
        return state


def _lister(kubeconfig: str, kind: str) -> tuple[Any, str]:
    api = config.new_client_from_config(kubeconfig)
    if kind == "pod":
        return client.CoreV1Api(api).list_namespaced_pod, POD_SELECTOR
    return client.BatchV1Api(api).list_namespaced_cron_job, CRONJOB_SELECTOR


def list_raw(fn: Any, namespace: str, selector: str) -> tuple[list[dict[str, Any]], str]:
    """Every object of one list, page by page, and the list's resourceVersion."""
    items, token, rv = [], None, ""
    while True:
        resp = fn(namespace, label_selector=selector, limit=2000, _continue=token,
                  _preload_content=False, _request_timeout=20)
        page = orjson.loads(resp.data)
        items += page["items"]
        rv = page["metadata"].get("resourceVersion", rv)
        token = page["metadata"].get("continue")
        if not token:
            return items, rv


def raw_watch(fn: Any, namespace: str, selector: str, rv: str) -> Any:
    """The watch's events as plain dicts. The client's `watch.Watch` also turns every event
    into model objects (a JSON dump and load and a V1Pod each): at 10,000 pods that took the
    watcher process to 60 % of a core, on the machine whose controller is being timed."""
    response = fn(namespace, label_selector=selector, watch=True, resource_version=rv,
                  timeout_seconds=30, allow_watch_bookmarks=True, _preload_content=False,
                  _request_timeout=45)
    try:
        pending = b""
        for chunk in response.stream(1 << 16):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield orjson.loads(line)
    finally:
        response.release_conn()


# One observation, as the watcher process sends it: (seen at (time.monotonic, the same clock
# in every process), kind, "ADDED"/"MODIFIED"/"DELETED", uid, name, bot, config hash, phase,
# terminating, found gone by a relist). Control messages: ("ready",), ("relisted", kind, n).
Observation = tuple[float, str, str, str, str, str, str, str, bool, bool]


def _observe(kind: str, etype: str, obj: dict[str, Any], relisted: bool = False) -> Observation:
    meta = obj["metadata"]
    ann = meta.get("annotations") or {}
    bot = ann.get(BOT_ID) or (meta.get("labels") or {}).get("bot-id", "")
    phase = (obj.get("status") or {}).get("phase", "")
    terminating = etype == "DELETED" or bool(meta.get("deletionTimestamp"))
    return (time.monotonic(), kind, etype, meta["uid"], meta["name"], bot,
            ann.get(CONFIG_HASH, ""), phase, terminating, relisted)


def watch_in_process(kubeconfig: str, namespace: str, out: Any, stop: Any,
                     parent: int) -> None:
    """The watcher process: lists, then watches pods and CronJobs from the list's
    resourceVersion (a 410 relists; what vanished meanwhile is sent as deleted), sending every
    observation, time-stamped when seen, to `out`. Its own process, so the bench's churn and
    judging never delay an observation (nor share an interpreter lock with it)."""
    live: dict[str, dict[str, dict[str, Any]]] = {"pod": {}, "cronjob": {}}
    lock = threading.Lock()

    def send(kind: str, etype: str, obj: dict[str, Any], relisted: bool = False) -> None:
        o = _observe(kind, etype, obj, relisted)
        with lock:
            if o[8]:
                live[kind].pop(o[3], None)
            else:
                live[kind][o[3]] = obj
        out.put(o)

    def relist(kind: str, fn: Any, selector: str) -> tuple[str, int]:
        items, rv = list_raw(fn, namespace, selector)
        seen = {obj["metadata"]["uid"] for obj in items}
        for obj in items:
            send(kind, "MODIFIED", obj)
        with lock:
            gone = [obj for uid, obj in live[kind].items() if uid not in seen]
        for obj in gone:
            send(kind, "DELETED", obj, relisted=True)
        return rv, len(gone)

    def run(kind: str, rv: str) -> None:
        fn, selector = _lister(kubeconfig, kind)
        while not stop.is_set():
            try:
                for event in raw_watch(fn, namespace, selector, rv):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        if obj.get("code") == 410:
                            raise client.ApiException(status=410)
                        continue
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if event["type"] != "BOOKMARK":
                        send(kind, event["type"], obj)
                    if stop.is_set():
                        return
            except client.ApiException as exc:
                if exc.status != 410:
                    time.sleep(1)
                    continue
                try:
                    rv, gone = relist(kind, fn, selector)
                    out.put(("relisted", kind, gone))
                except Exception:
                    time.sleep(1)
            except Exception:
                time.sleep(1)  # the API server is down or paused: resume from rv

    threads = []
    for kind in ("pod", "cronjob"):
        fn, selector = _lister(kubeconfig, kind)
        items, rv = list_raw(fn, namespace, selector)
        for obj in items:
            send(kind, "ADDED", obj)
        threads.append(threading.Thread(target=run, args=(kind, rv), daemon=True))
    out.put(("ready",))
    for thread in threads:
        thread.start()
    while not stop.wait(2):
        if os.getppid() != parent:  # the bench was killed: do not outlive it
            return


class Checker:
    """What the watcher process saw (duplicates, appearances, deletions, each with the instant
    it was seen), judged here against the churn's model."""

    def __init__(self, kubeconfig: str, namespace: str, model: Model, timeline: Timeline) -> None:
        self.kubeconfig = kubeconfig
        self.ns = namespace
        self.model = model
        self.timeline = timeline
        self.lock = threading.Lock()
        self.objs: dict[str, dict[str, Any]] = {}
        self.live: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.appearances: dict[tuple[str, str], list[tuple[float, str, str]]] = defaultdict(list)
        self.deletions: list[dict[str, Any]] = []
        self.dups: list[dict[str, Any]] = []
        self.relists = 0
        ctx = multiprocessing.get_context("spawn")  # not fork: this process has threads
        self.queue: Any = ctx.Queue()
        self.stop_event: Any = ctx.Event()
        self.ready = threading.Event()
        self.process = ctx.Process(target=watch_in_process, name="chaos-watcher", daemon=True,
                                   args=(kubeconfig, namespace, self.queue, self.stop_event,
                                         os.getpid()))
        self.receiver = threading.Thread(target=self.receive, daemon=True)

    def list_raw(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        fn, selector = _lister(self.kubeconfig, kind)
        return list_raw(fn, self.ns, selector)

    def start(self) -> None:
        """Starts the watcher process; returns once it has listed both kinds."""
        self.process.start()
        self.receiver.start()
        while not self.ready.wait(1):
            if not self.process.is_alive():
                raise RuntimeError(f"the checker's watcher exited ({self.process.exitcode})")

    def stop(self) -> None:
        self.stop_event.set()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()

    def receive(self) -> None:
        while True:
            msg = self.queue.get()
            if msg[0] == "ready":
                self.ready.set()
            elif msg[0] == "relisted":
                self.relists += 1
                self.timeline.add(f"checker: {msg[1]} watch relisted (410): {msg[2]} gone "
                                  "meanwhile")
            else:
                self.handle(msg)

    def handle(self, o: Observation) -> None:
        now, kind, _etype, uid, name, bot, chash, phase, terminating, relisted = o
        key = (kind, bot)
        with self.lock:
            if not terminating:
                rec = self.objs.get(uid)
                if rec is None:
                    self.objs[uid] = {"kind": kind, "bot": bot, "hash": chash, "name": name,
                                      "created": now, "phase": phase}
                    self.appearances[key].append((now, chash, uid))
                    self.live[key].add(uid)
                    if len(self.live[key]) > 1:
                        names = sorted(self.objs[u]["name"] for u in self.live[key])
                        self.dups.append({"t": round(self.timeline.rel(now), 1), "kind": kind,
                                          "bot": bot, "objects": names})
                        self.timeline.add(f"CHECKER: two {kind}s for bot {bot}: {names}",
                                          at=now)
                else:
                    rec["phase"] = phase
                    if chash != rec["hash"]:  # changed in place (a CronJob is patched)
                        rec["hash"] = chash
                        self.appearances[key].append((now, chash, uid))
                return
            rec = self.objs.get(uid)
            if rec is None or uid not in self.live[key]:
                return
            self.live[key].discard(uid)
            self.deletions.append({"t": now, "kind": kind, "bot": bot, "uid": uid,
                                   "hash": rec["hash"], "phase": phase or rec["phase"],
                                   "created": rec["created"], "name": rec["name"],
                                   "relisted": relisted})

    def hashes_seen(self, kind: str, bot: str) -> set[str]:
        with self.lock:
            return {h for _t, h, _u in self.appearances.get((kind, bot), [])}

    def first_after(self, kind: str, bot: str, after: float, exclude: set[str]) -> float | None:
        with self.lock:
            return min((t for t, h, _u in self.appearances.get((kind, bot), [])
                        if t >= after and h not in exclude), default=None)

    def deletion_after(self, kind: str, bot: str, after: float) -> float | None:
        with self.lock:
            return min((d["t"] for d in self.deletions
                        if d["kind"] == kind and d["bot"] == bot and d["t"] >= after),
                       default=None)

    def live_at_now(self, kind: str, bot: str) -> int:
        with self.lock:
            return len(self.live.get((kind, bot), ()))

    def objects_now(self, kind: str) -> dict[str, list[str]]:
        """bot → config hashes of its non-terminating objects, as the watch has seen them."""
        with self.lock:
            return {bot: [self.objs[uid]["hash"] for uid in uids]
                    for (k, bot), uids in self.live.items() if k == kind and uids}

    def wait_seen(self, uids: set[str], timeout: float) -> set[str]:
        """Waits until the watch has seen every one of `uids` (objects a fresh list returned);
        returns those it still has not. Judging deletions before then could miss a
        replacement the list showed and the watch had not delivered yet."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                unseen = {uid for uid in uids if uid not in self.objs}
            if not unseen or time.monotonic() > deadline:
                return unseen
            time.sleep(0.2)

    def findings(self, model: Model) -> dict[str, Any]:
        wrong: list[dict[str, Any]] = []
        counts: dict[str, int] = defaultdict(int)
        with self.lock:
            deletions = list(self.deletions)
            appearances = {k: list(v) for k, v in self.appearances.items()}
        for d in deletions:
            key = (d["kind"], d["bot"])
            if not model.wanted_throughout(d["bot"], d["created"], d["t"]):
                counts["not_wanted"] += 1
            elif d["phase"] in ("Failed", "Succeeded", "Unknown"):
                counts["broken_recreated"] += 1
            elif any(t >= d["t"] - 0.5 and h != d["hash"] for t, h, u in appearances.get(key, [])
                     if u != d["uid"]):
                counts["replace"] += 1
            else:
                counts["wrong"] += 1
                wrong.append({"t": round(self.timeline.rel(d["t"]), 1), "kind": d["kind"],
                              "bot": d["bot"], "name": d["name"], "hash": d["hash"][:12],
                              "phase": d["phase"], "relisted": d["relisted"],
                              "successors": [(round(self.timeline.rel(t), 1), h[:12])
                                             for t, h, u in appearances.get(key, [])
                                             if t >= d["t"] - 0.5 and u != d["uid"]]})
        return {"dup_pods": [x for x in self.dups if x["kind"] == "pod"],
                "dup_cronjobs": [x for x in self.dups if x["kind"] == "cronjob"],
                "wrong": wrong, "deletions": dict(counts)}


def converged_report(mongo: Any, checker: Checker, model: Model,
                     timeout_ms: int = 10000, *, from_watch: bool = False) -> dict[str, Any]:
    """Every bot in Mongo vs Kubernetes now: a fresh list as admin, or (`from_watch`) what the
    checker's watch has seen — seconds cheaper at 10,000 objects, behind by the watch's lag.
    `k8s_at`: when the Kubernetes side was taken (after Mongo's); `uids`: what a list
    returned."""
    out: dict[str, Any] = {"total": 0, "matched": 0, "mismatched": 0, "sample": [],
                           "k8s_at": 0.0, "uids": set()}
    for kind, db, coll, status_coll in (("pod", "bot_runner", "bots", "bot_status"),
                                        ("cronjob", "bot_scheduler", "bot_schedules",
                                         "schedule_status")):
        docs = list(mongo[db][coll].find({}, {"_id": 0, "id": 1, "enabled": 1, "config": 1},
                                         max_time_ms=timeout_ms))
        status = {s["id"]: s for s in mongo[db][status_coll].find(
            {}, {"_id": 0, "id": 1, "desired_config_hash": 1}, max_time_ms=timeout_ms)
            if "id" in s}
        objects: dict[str, list[str]] = defaultdict(list)
        if from_watch:
            objects.update(checker.objects_now(kind))
        else:
            items, _rv = checker.list_raw(kind)
            for obj in items:
                meta = obj["metadata"]
                out["uids"].add(meta["uid"])
                if meta.get("deletionTimestamp"):
                    continue
                ann = meta.get("annotations") or {}
                objects[ann.get(BOT_ID) or (meta.get("labels") or {}).get("bot-id", "")
                        ].append(ann.get(CONFIG_HASH, ""))
        out["k8s_at"] = time.monotonic()
        ids = set()
        for doc in docs:
            bot = doc["id"]
            ids.add(bot)
            out["total"] += 1
            have = objects.get(bot, [])
            if enabled_doc(doc):
                want = (status.get(bot) or {}).get("desired_config_hash")
                # Hashes seen before the bot's last config change are stale only when that
                # change reached Mongo (a lost event is counted as lost, not as unconverged).
                rev = (doc.get("config") or {}).get("chaos_rev")
                landed = rev == (model.bots.get(bot) or {}).get("rev")
                stale = model.stale_hashes.get(bot, set()) if landed else set()
                ok = len(have) == 1 and bool(want) and have[0] == want and have[0] not in stale
                why = f"{kind} {bot}: have {[h[:8] for h in have]} want {str(want)[:8]}" + (
                    " (stale)" if have and have[0] in stale else "")
            else:
                ok, why = not have, f"{kind} {bot}: disabled but {len(have)} objects"
            if ok:
                out["matched"] += 1
            else:
                out["mismatched"] += 1
                if len(out["sample"]) < 6:
                    out["sample"].append(why)
        for bot in set(objects) - ids:
            out["total"] += 1
            out["mismatched"] += 1
            if len(out["sample"]) < 6:
                out["sample"].append(f"{kind} {bot}: not in Mongo but {len(objects[bot])} objects")
    return out


class Sampler:
    """A daemon thread running `run` until `stop`."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        raise NotImplementedError


def must_fail_readiness_after(kind: str, *, interval: float, heartbeat_ttl: float) -> float | None:
    """How long a fault of this kind must be held before a truthful /readyz says 503 (its
    poll every 2 s included), or None when the system stays able to work (one of two workers,
    the standby beat takes over). Redis is asked on every request; the events consumer's
    heartbeat lives heartbeat_ttl and probes NATS every beat; a failing reconcile shows once
    the last success is older than the readiness window (3 intervals), after one more pass."""
    if kind in ("kill-worker", "kill-beat"):
        return None
    if kind.endswith("redis"):
        return 4.0
    if kind in ("kill-events", "restart-nats", "pause-nats"):
        return heartbeat_ttl + 4.0
    return 4 * interval + 4.0  # FerretDB, kube-apiserver, etcd: reconciles fail


class ReadyPoller(Sampler):
    def __init__(self, url: str, timeline: Timeline, *, interval: float,
                 heartbeat_ttl: float) -> None:
        super().__init__()
        self.url = url
        self.timeline = timeline
        self.interval = interval
        self.heartbeat_ttl = heartbeat_ttl
        self.samples: list[tuple[float, int, list[str]]] = []

    def run(self) -> None:
        last: tuple[int, list[str]] | None = None
        while not self.stop_event.wait(2):
            try:
                resp = httpx.get(self.url + "/readyz", timeout=3)
                code = resp.status_code
                failing = list(resp.json().get("failing", [])) if code in (200, 503) else []
            except Exception as exc:
                code, failing = 0, [type(exc).__name__]
            # Stamped when answered, not when asked: a request sent just before a fault began
            # can be answered 503 because of it (a false alarm in one 3,000-bot run).
            now = time.monotonic()
            self.samples.append((now, code, failing))
            if last != (code, failing):
                self.timeline.add(f"readyz {code} {','.join(failing)}", at=now)
                last = (code, failing)

    def latest(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        _t, code, failing = self.samples[-1]
        return {"code": code, "failing": failing}

    def not_ready_without_fault_s(self, faults: list[dict[str, Any]], *, since: float,
                                  until: float, grace: float) -> float:
        """Seconds /readyz said 503 with no fault held and none ended within `grace` (the
        recovery a truthful probe may take): a false alarm, the other way to lie."""
        spans = [(f["start"], f["end"] + grace) for f in faults]
        false = [t for t, code, _ in self.samples
                 if code != 200 and since <= t <= until and not any(a <= t <= b for a, b in spans)]
        return 2.0 * len(false)  # one sample every 2 s

    def summary(self, faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for f in faults:
            during = [s for s in self.samples if f["start"] <= s[0] <= f["end"]]
            after = [s for s in self.samples if s[0] >= f["end"] and s[1] == 200]
            not_ready = [s for s in during if s[1] != 200]
            must = must_fail_readiness_after(f["kind"], interval=self.interval,
                                             heartbeat_ttl=self.heartbeat_ttl)
            out.append({"fault": f["kind"], "hold_s": round(f["end"] - f["start"], 1),
                        "not_ready_during": bool(not_ready),
                        # Held long enough that a truthful /readyz had to say 503, and it
                        # never did.
                        "blind": must is not None and f["end"] - f["start"] >= must
                                 and not not_ready,
                        "not_ready_first_s": round(not_ready[0][0] - f["start"], 1)
                        if not_ready else None,
                        "failing": sorted({x for s in not_ready for x in s[2]}),
                        "ready_again_s": round(after[0][0] - f["end"], 1) if after else None})
        return out


class RssSampler(Sampler):
    """Peak resident memory of each controller process and stack server (the process and its
    descendants summed), sampled every 5 s."""

    def __init__(self, fleet: Any, stack: Any) -> None:
        super().__init__()
        self.fleet = fleet
        self.stack = stack
        self.peak: dict[str, float] = defaultdict(float)

    @staticmethod
    def rss_mb(pid: int) -> float:
        from tools.stack.process import descendants
        total = 0
        for p in [pid, *descendants(pid)]:
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def run(self) -> None:
        while not self.stop_event.wait(5):
            pids = {**self.fleet.pids(), **{s.name: s.pid for s in self.stack.servers}}
            for name, pid in pids.items():
                self.peak[name] = max(self.peak[name], self.rss_mb(pid))

    def peaks(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in sorted(self.peak.items())}
