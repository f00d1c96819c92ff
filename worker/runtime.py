"""The per-process runtime: settings plus lazily built adapters, shared by tasks and the CLI.

One `Runtime` per process (Celery worker, beat, CLI). Adapters are created on first use, so a
process only connects to the servers it really talks to. Thread-safe: the worker runs a
thread pool.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, TypeVar

from worker.adapters.kube import Json, KubeClient, RequestObserver, api_client_for
from worker.adapters.mongo import BotStore, collections_for
from worker.adapters.redis import LogState, RedisState
from worker.adapters.s3 import CodeStore, LogStore
from worker.adapters.telemetry import TelemetryStore
from worker.core.bot import BotKind
from worker.core.desired import parse_desired, parse_desired_schedule
from worker.core.errors import TemporaryError
from worker.core.metrics import MetricBuffer
from worker.informer import Informer
from worker.parse_memo import ParseMemo
from worker.settings import Settings

T = TypeVar("T")
# A watch ends on the server after 5 to 10 min (spread, as client-go does) and is resumed.
WATCH_TIMEOUT_S = 300


class Runtime:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random,
                 kube_observer: RequestObserver | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.jitter = jitter
        # Metric increments of this process, flushed to Redis by the heartbeat / each pass.
        self.metrics = MetricBuffer()
        self.kube_observer = kube_observer or self.metrics.observe_kube_request
        # One lock per component: a slow build (a Mongo client whose first index check waits
        # out MONGO_TIMEOUT with Mongo down) must not block a caller of another component —
        # the events consumer reads `telemetry` on its event loop, where a 30 s wait stalls
        # its NATS keep-alives and heartbeats. store() builds the client inside its own build
        # (two different locks, always taken in that order).
        self._locks_guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._built: dict[str, Any] = {}
        # Called with a bot id when a pod of ours is deleted by someone else (seen by the
        # watched pod cache); the worker sets it to queue that bot's reconcile at once.
        self.on_foreign_pod_delete: Callable[[str], None] | None = None

    def _once(self, name: str, build: Callable[[], T]) -> T:
        if name in self._built:  # built: no lock needed (a dict read is atomic)
            built: T = self._built[name]
            return built
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._built:
                component = build()
                with self._locks_guard:
                    self._built[name] = component
            value: T = self._built[name]
            return value

    @property
    def kube(self) -> KubeClient:
        s = self.settings
        return self._once("kube", lambda: KubeClient(
            api_client_for(mode=s.KUBE_MODE, kubeconfig=s.KUBECONFIG, timeout=s.KUBE_TIMEOUT),
            namespace=s.NAMESPACE, page_size=s.LIST_PAGE_SIZE, timeout=s.KUBE_TIMEOUT,
            observer=self.kube_observer))

    @property
    def redis(self) -> RedisState:
        return self._once("redis", lambda: RedisState.from_url(self.settings.REDIS_URL))

    @property
    def telemetry(self) -> TelemetryStore:
        return self._once("telemetry", lambda: TelemetryStore(self.redis.client))

    @property
    def code(self) -> CodeStore:
        s = self.settings
        return self._once("code", lambda: CodeStore(
            endpoint=s.required("MINIO_ENDPOINT"), access_key=s.required("MINIO_ACCESS_KEY"),
            secret_key=s.required("MINIO_SECRET_KEY"), bucket=s.MINIO_BUCKET,
            secure=s.MINIO_SECURE, region=s.MINIO_REGION,
            public_endpoint=s.MINIO_PUBLIC_ENDPOINT, state_bucket=s.STATE_BUCKET))

    @property
    def log_store(self) -> LogStore:
        s = self.settings
        return self._once("log-store", lambda: LogStore(
            endpoint=s.required("MINIO_ENDPOINT"), access_key=s.required("MINIO_ACCESS_KEY"),
            secret_key=s.required("MINIO_SECRET_KEY"), bucket=s.LOG_BUCKET,
            secure=s.MINIO_SECURE, region=s.MINIO_REGION,
            pool_size=max(16, s.WORKER_CONCURRENCY * 2)))

    @property
    def log_state(self) -> LogState:
        return self._once("log-state", lambda: LogState(self.redis.client))

    def log_reads(self) -> threading.BoundedSemaphore:
        """Process-wide bound on concurrent container-log reads."""
        return self._once("log-reads", lambda: threading.BoundedSemaphore(
            self.settings.LOG_READ_CONCURRENCY))

    def store(self, kind: BotKind) -> BotStore:
        s = self.settings

        def build() -> BotStore:
            client = self._once("mongo", lambda: BotStore.connect(
                s.required("MONGO_URI"), timeout=s.MONGO_TIMEOUT))
            store = BotStore(client, collections_for(kind, bot_runner_db=s.BOT_RUNNER_DB,
                                                     bot_scheduler_db=s.BOT_SCHEDULER_DB))
            store.ensure_indexes()  # once per process: one listIndexes when it exists
            return store

        return self._once(f"store:{kind.value}", build)

    def parse_memo(self, kind: BotKind) -> ParseMemo:
        """Memo of parsed documents → (Bot, DesiredBot) for this kind's spec generator."""
        s = self.settings

        def build() -> ParseMemo:
            if kind is BotKind.LIVE:
                return ParseMemo(partial(parse_desired, kind=kind, template=s.pod_template,
                                         resources=s.resource_policy,
                                         max_config_bytes=s.MAX_CONFIG_BYTES))
            return ParseMemo(partial(parse_desired_schedule, template=s.pod_template,
                                     cron=s.cronjob_settings, resources=s.resource_policy,
                                     max_config_bytes=s.MAX_CONFIG_BYTES))

        return self._once(f"parse-memo:{kind.value}", build)

    def read_objects(self, resource: str, selector: str, keep: Callable[[Json], T | None], *,
                     written_as: str | None = None) -> list[T]:
        """The `resource` objects ("pods", "cronjobs", "jobs") matching `selector`, as `keep`
        makes them: from this process's watched cache (KUBE_WATCH, see worker/informer.py),
        else by a full list. Either raises ReadFailed rather than answer partly. The cache
        answers once it shows this process's writes remembered as `written_as` (default:
        `resource`; see KubeClient.written_version)."""
        kube = self.kube
        lists = {"pods": kube.list_pods_versioned, "cronjobs": kube.list_cronjobs_versioned,
                 "jobs": kube.list_jobs_versioned}
        if not self.settings.KUBE_WATCH:
            items: list[T] = lists[resource](selector, keep=keep)[0]
            return items
        watches = {"pods": kube.watch_pods, "cronjobs": kube.watch_cronjobs,
                   "jobs": kube.watch_jobs}

        def build() -> Informer[T]:
            def watch(version: str, on_open: Callable[[Any], None]) -> Any:
                timeout = int(WATCH_TIMEOUT_S * (1 + self.jitter()))
                return watches[resource](selector, resource_version=version, timeout_s=timeout,
                                         on_open=on_open)

            return Informer(written_as or resource, list_all=partial(lists[resource], selector),
                            watch=watch, keep=keep,
                            max_age=self.settings.KUBE_CACHE_RELIST_INTERVAL,
                            on_deleted=self._pod_deleted if resource == "pods" else None)

        informer = self._once(_informer_key(resource, selector, keep), build)
        return informer.read(min_version=kube.written_version(written_as or resource))

    def cache_lacks(self, resource: str, selector: str, keep: Callable[[Json], Any],
                    names: Collection[str]) -> bool:
        """True only when this process's watched cache of these objects (built by a pass:
        this never builds one, so never lists) is synced and holds none of `names`."""
        informer = self._built.get(_informer_key(resource, selector, keep))
        return informer is not None and bool(informer.lacks(names))

    def _pod_deleted(self, pod: Any) -> None:
        """A cached pod was deleted: unless the controller deleted it (this process, or another
        worker: its Redis mark), someone else did (an operator, an eviction, a node going
        away): re-converge its bot now. Redis unreachable: re-converge (idempotent)."""
        uid, bot_id = getattr(pod, "uid", ""), getattr(pod, "bot_id", "")
        hook = self.on_foreign_pod_delete
        if hook is None or not bot_id or (uid and self.kube.deleted_by_us(uid)):
            return
        try:
            if uid and self.redis.pod_deleted_by_controller(uid):
                return
        except TemporaryError:
            pass
        hook(str(bot_id))

    def informers(self) -> list[Informer[Any]]:
        """The watched caches this process has built so far (metrics, tests)."""
        with self._locks_guard:  # a copy: another thread may be adding a component
            built = list(self._built.items())
        return [value for name, value in built if name.startswith("informer:")]

    def close(self) -> None:
        """Stops the watches of this runtime's caches and posts its pending events (tests build
        many runtimes per process)."""
        for informer in self.informers():
            informer.stop()
        if "kube" in self._built:
            self.kube.flush_events()


_process_runtime: Runtime | None = None
_process_runtime_lock = threading.Lock()


def _informer_key(resource: str, selector: str, keep: Callable[[Json], Any]) -> str:
    # One cache per (resource, selector, keep): a caller keeping other fields gets its own.
    return f"informer:{resource}:{selector}:{keep.__module__}.{keep.__qualname__}"


def process_runtime(settings: Settings) -> Runtime:
    """The Runtime of this process (a Celery worker's tasks and its heartbeat share it),
    built on first use."""
    global _process_runtime
    with _process_runtime_lock:
        if _process_runtime is None:
            _process_runtime = Runtime(settings)
        return _process_runtime
