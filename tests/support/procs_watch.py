"""Watching what real processes do, from outside: Celery events and pings, a Kubernetes pod
census (most pods per bot at any moment), and the broker's queues in Redis."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from worker.core.naming import ANNOTATION_BOT_ID

SELECTOR = "managed-by=the0-bot-controller"


def ping(app: Celery, prefix: str) -> list[dict[str, Any]]:
    """Replies of workers whose name starts with `prefix` (empty when none answered)."""
    replies = app.control.ping(timeout=1.0) or []
    return [r for r in replies if any(name.startswith(prefix) for name in r)]


class TaskEvents:
    """Every Celery event on the broker, captured in a thread (task-succeeded carries the
    task's return value, so a test can count what each delivery did)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="task-events")
        self.error: BaseException | None = None

    def _add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def _run(self) -> None:
        try:
            with self.app.connection_for_read() as conn:
                self._receiver = self.app.events.Receiver(conn, handlers={"*": self._add})
                self._receiver.capture(limit=None, timeout=None, wakeup=True)
        except BaseException as exc:  # reported by the test via .error
            self.error = exc

    def start(self) -> TaskEvents:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=5)

    def of(self, kind: str, *, task_ids: set[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("type") == kind
                    and (task_ids is None or e.get("uuid") in task_ids)]


def pods_by_bot(core: Any, namespace: str) -> dict[str, list[Any]]:
    """Our pods per raw bot id (from the annotation)."""
    result: dict[str, list[Any]] = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=SELECTOR).items:
        result.setdefault(pod.metadata.annotations[ANNOTATION_BOT_ID], []).append(pod)
    return result


@dataclass
class PodCensus:
    """Watches our pods (as admin) and records, per bot, the most pods that existed at once —
    terminating ones included — and the most live (not terminating) ones."""

    api: Any
    namespace: str
    current: dict[str, tuple[str, bool]] = field(default_factory=dict)  # uid → (bot, terminating)
    most: dict[str, int] = field(default_factory=dict)
    most_live: dict[str, int] = field(default_factory=dict)
    history: list[tuple[float, str, str, str, bool]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="pod-census")
        self._synced = threading.Event()

    def start(self) -> PodCensus:
        self._thread.start()
        assert self._synced.wait(15), f"pod census did not start: {self.error!r}"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _apply(self, kind: str, pod: Any) -> None:
        bot = (pod.metadata.annotations or {}).get(ANNOTATION_BOT_ID, "?")
        terminating = pod.metadata.deletion_timestamp is not None
        with self._lock:
            if kind == "DELETED":
                self.current.pop(pod.metadata.uid, None)
            else:
                self.current[pod.metadata.uid] = (bot, terminating)
            self.history.append((time.monotonic(), kind, bot, pod.metadata.name, terminating))
            alive = [b for b, _ in self.current.values() if b == bot]
            live = [b for b, t in self.current.values() if b == bot and not t]
            self.most[bot] = max(self.most.get(bot, 0), len(alive))
            self.most_live[bot] = max(self.most_live.get(bot, 0), len(live))

    def _list(self, core: Any) -> str:
        listed = core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
        with self._lock:
            self.current.clear()
        for pod in listed.items:
            self._apply("LISTED", pod)
        return str(listed.metadata.resource_version)

    def _run(self) -> None:
        core = client.CoreV1Api(self.api)
        try:
            version = self._list(core)
            self._synced.set()
            while not self._stop.is_set():
                stream = watch.Watch()
                try:
                    for event in stream.stream(core.list_namespaced_pod, self.namespace,
                                               label_selector=SELECTOR,
                                               resource_version=version, timeout_seconds=2):
                        if event["type"] == "ERROR":
                            version = self._list(core)
                            break
                        pod = event["object"]
                        version = pod.metadata.resource_version
                        self._apply(event["type"], pod)
                except ApiException as exc:
                    if exc.status != 410:
                        raise
                    version = self._list(core)  # history expired: start from a fresh list
        except BaseException as exc:
            self.error = exc
            self._synced.set()

    def check(self) -> None:
        """Raises unless the watch is healthy and no bot ever had two pods at once."""
        assert self.error is None, f"pod watch failed: {self.error!r}"
        doubled = {bot: n for bot, n in self.most.items() if n > 1}
        assert not doubled, (f"bots that had two pods at the same moment: {doubled}\n"
                             + "\n".join(map(str, self.history[-40:])))


def queued_messages(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    """Messages waiting in a kombu Redis queue (a list), decoded envelope first."""
    return [json.loads(raw) for raw in redis_client.lrange(queue, 0, -1)]


def broker_idle(redis_client: Any) -> bool:
    """No message waiting in our queues and none delivered-but-unacked (incl. ETA retries)."""
    return bool(redis_client.llen("bots") == 0 and redis_client.llen("reconcile") == 0
            and redis_client.hlen("unacked") == 0)
