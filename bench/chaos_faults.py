"""The chaos run's processes (Fleet: the controller as in production) and faults (one at a time,
each held a random while). Every process is stopped by the pid we started it with."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from random import Random
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos_checker import ReadyPoller, Timeline

from tests.support.api import BROKER_ROLE_LACKS, start_api
from tests.support.procs import Proc, Procs

CELERY = str(Path(sys.executable).with_name("celery"))


class Fleet:
    """Two workers, the log worker, two beats, one events consumer and the api (the shipped
    shape: /readyz wants each queue taken); restarts what a fault killed, and counts what
    exited without being asked."""

    def __init__(self, logs: Path, env: dict[str, str], timeline: Timeline) -> None:
        self.logs = logs
        self.procs = Procs(logs, env=env, cwd=logs.parent)
        self.timeline = timeline
        self.roles: dict[str, Proc] = {}
        self.down: set[str] = set()
        self.lock = threading.Lock()
        self.restarts = 0
        self.unexpected = 0
        self.api_url = ""

    def argv(self, role: str) -> tuple[list[str], dict[str, Any]]:
        if role.startswith("worker"):
            return ([CELERY, "-A", "worker", "worker", "--loglevel=INFO", "-Q", "reconcile,bots",
                     "-n", f"{role}@%h"], {})
        if role == "logs":
            return ([CELERY, "-A", "worker.log_app", "worker", "--loglevel=INFO", "-Q", "logs",
                     "-n", "logs@%h"], {})
        if role.startswith("beat"):
            return ([CELERY, "-A", "worker.broker_app", "beat", "--loglevel=INFO",
                     "-s", str(self.logs.parent / f"{role}-schedule")],
                    {"without": BROKER_ROLE_LACKS})
        return [sys.executable, "-m", "worker", "events"], {}

    def launch(self, role: str) -> Proc:
        argv, extra = self.argv(role)
        proc = self.procs.start(role, argv, **extra)
        self.roles[role] = proc
        return proc

    def start_all(self) -> None:
        for role in ("worker-1", "worker-2", "logs", "beat-1", "beat-2", "events"):
            self.launch(role)
        served = start_api(self.procs)
        self.roles["api"] = served.proc
        self.api_url = served.url

    def pids(self) -> dict[str, int]:
        with self.lock:
            return {role: p.pid for role, p in self.roles.items() if p.alive}

    def check_alive(self) -> None:
        with self.lock:
            for role, proc in list(self.roles.items()):
                if role in self.down or proc.alive:
                    continue
                self.unexpected += 1
                self.timeline.add(f"PROCESS {role} (pid {proc.pid}) exited on its own with code "
                                  f"{proc.returncode}; started again")
                if role == "api":
                    continue  # the checker's window on /readyz; not restarted (port fixed)
                self.launch(role)
                self.restarts += 1

    def kill9(self, role: str) -> int:
        with self.lock:
            self.down.add(role)
            proc = self.roles[role]
        proc.kill9()
        return proc.pid

    def restart(self, role: str) -> int:
        with self.lock:
            proc = self.launch(role)
            self.down.discard(role)
            self.restarts += 1
        return proc.pid

    def role_of_pid(self, pid: int) -> str | None:
        with self.lock:
            return next((r for r, p in self.roles.items() if p.alive and p.pid == pid), None)

    def stop_all(self) -> None:
        self.procs.stop_all(show_logs=False)


KINDS = ["kill-worker", "kill-beat", "kill-events", "restart-redis", "restart-nats",
         "restart-ferretdb", "pause-kube-apiserver", "pause-etcd", "pause-ferretdb",
         "pause-redis", "pause-nats"]


class Faults:
    def __init__(self, stack: Any, fleet: Fleet, timeline: Timeline, ready: ReadyPoller,
                 rng: Random, *, hold_scale: float, gap: float, until: float,
                 redis_url: str, kinds: list[str] | None = None,
                 max_faults: int | None = None) -> None:
        self.stack = stack
        self.fleet = fleet
        self.timeline = timeline
        self.ready = ready
        self.rng = rng
        self.hold_scale = hold_scale
        self.gap = gap
        self.until = until
        self.redis_url = redis_url
        self.kinds = kinds or KINDS
        self.max_faults = max_faults
        self.done: list[dict[str, Any]] = []
        self.active: str | None = None
        self.last_end: float | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(f["kind"] for f in self.done))

    def server(self, name: str) -> Any:
        return next(s for s in self.stack.servers if s.name == name)

    def run(self) -> None:
        deck: list[str] = []
        etcd_done = False
        while self.max_faults is None or len(self.done) < self.max_faults:
            wait = self.rng.expovariate(1 / self.gap) if self.gap > 0 else 0
            hold = max(3.0, self.rng.uniform(5, 90) * self.hold_scale)
            if not deck:
                deck = [k for k in self.kinds if k != "pause-etcd" or not etcd_done]
                self.rng.shuffle(deck)
            kind = deck.pop()
            if time.monotonic() + wait + 3 >= self.until:
                return
            time.sleep(wait)
            hold = min(hold, max(3.0, self.until - time.monotonic()))
            etcd_done = etcd_done or kind == "pause-etcd"
            try:
                self.inject(kind, hold)
            except Exception as exc:
                self.timeline.add(f"fault {kind} failed: {type(exc).__name__}: {exc}")

    def inject(self, kind: str, hold: float) -> None:
        start = time.monotonic()
        self.active = kind
        what = ""
        try:
            if kind.startswith("kill-"):
                role = {"kill-worker": self.rng.choice(["worker-1", "worker-2"]),
                        "kill-events": "events"}.get(kind) or self.active_beat()
                pid = self.fleet.kill9(role)
                what = f"{role} pid {pid}"
                self.timeline.add(f"FAULT {kind}: kill -9 {what}, held {hold:.0f} s", at=start)
                time.sleep(hold)
                new = self.fleet.restart(role)
                what += f" → new pid {new}"
            elif kind.startswith("restart-"):
                name = kind.removeprefix("restart-")
                self.timeline.add(f"FAULT {kind}: {name} stopped, held {hold:.0f} s", at=start)
                with self.stack.stopped(name):
                    time.sleep(hold)
                what = f"{name} started again (pid {self.server(name).pid})"
            else:
                name = kind.removeprefix("pause-")
                pid = self.server(name).pid
                self.timeline.add(f"FAULT {kind}: SIGSTOP {name} pid {pid}, held {hold:.0f} s",
                                  at=start)
                os.kill(pid, signal.SIGSTOP)
                try:
                    time.sleep(hold)
                finally:
                    os.kill(pid, signal.SIGCONT)
                what = f"SIGCONT {name} pid {pid}"
        finally:
            end = time.monotonic()
            self.active = None
            self.last_end = end
            self.done.append({"kind": kind, "start": start, "end": end})
            self.timeline.add(f"fault {kind} over after {end - start:.0f} s: {what}", at=end)

    def active_beat(self) -> str:
        """The beat holding the leader lease (its value is host:pid:uuid)."""
        try:
            client: Any = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            raw = client.get("the0:beat:leader")
            pid = int(raw.decode().split(":")[1]) if raw else 0
        except Exception:
            pid = 0
        return self.fleet.role_of_pid(pid) or "beat-1"
