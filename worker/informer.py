"""A watched, in-process copy of one kind of our Kubernetes objects (client-go's informer).

Why: a reconcile pass must see every bot pod, and a full list of 10,000 pods is ~110 MB of
JSON (each pod carries its spec and managedFields); it took 6 s of a 2-core box per pass, most
of the pass. An informer lists once, then follows a watch from the list's resourceVersion and
keeps only what the planner needs (`keep`), so a pass reads memory.

How it keeps "never act on a failed or partial read":
- `read()` answers from memory only while the cache is synced: a complete list was stored and
  the watch that followed it has not failed since. Otherwise `read()` lists again, itself, and
  a failed list raises ReadFailed exactly as before.
- any watch failure (410 Expired, an error event, a dropped connection) unsyncs the cache;
  only a watch that the server ends normally (its timeout) is resumed from the last version
  seen (the server replays what happened in between).
- read-your-writes: `read(min_version=…)` waits until the watch has delivered the newest
  object this process wrote (create, replace, delete responses carry its resourceVersion),
  and lists again if that takes longer than `write_wait`; a pass right after its own tasks
  never plans from a view that misses them.
- its watch thread lists again in the background about every `max_age` (at the end of a
  watch), a safety net against a missed event; a pass never waits for that list.
- `lacks(names)` answers only "none of these is here" and only while synced: a create task
  trusts it to skip its GETs because a stale "absent" cannot make a second object (names are
  fixed per bot: the API server refuses a second with 409, and the task then reads afresh).
  Every other per-bot decision GETs the objects first, so a cache that is milliseconds behind
  only ever costs a task that finds nothing to do. `on_deleted` lets its
owner react to a deletion at once (the worker re-converges a bot whose pod someone else
deleted, instead of waiting for the next pass).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, Generic, TypeVar

from worker.adapters.kube import Json, WatchEvent, resource_version

log = logging.getLogger("the0.informer")
T = TypeVar("T")

# list(keep=…) → (what keep returned for each item, but None, and the list's resourceVersion):
# keep runs page by page, so the raw list never sits in memory whole.
Lister = Callable[..., tuple[list[Any], str]]
# watch(resourceVersion, on_open) → events.
Watcher = Callable[[str, Callable[[Any], None]], Iterator[WatchEvent]]


class Informer(Generic[T]):
    def __init__(self, name: str, *, list_all: Lister, watch: Watcher,
                 keep: Callable[[Json], T | None], max_age: float, write_wait: float = 5.0,
                 on_deleted: Callable[[T], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._on_deleted = on_deleted  # called from the watch thread with what was removed
        self._list_all = list_all
        self._watch = watch
        self._keep = keep
        self._max_age = max_age
        self._write_wait = write_wait
        self._clock = clock
        self._changed = threading.Condition()  # guards everything below; notified per event
        self._read_lock = threading.Lock()     # one relist at a time
        self._items: dict[str, T] = {}
        self._version = 0           # newest resourceVersion applied (list, event or bookmark)
        self._synced = False
        self._listed_at = float("-inf")
        self._epoch = 0             # bumped by every relist: older watch threads stop
        self._response: Any = None  # the open watch response (closed by a relist or stop())
        self.lists = 0              # full lists made (the first one included)
        self.events = 0             # watch events applied
        self.last_error = ""

    # ------------------------------------------------------------------ reading
    def read(self, *, min_version: int = 0) -> list[T]:
        """Every kept object, from memory when synced and fresh, else from a new list.
        `min_version`: a resourceVersion this process wrote; wait until the watch delivered
        it (or list again). Raises ReadFailed when a needed list fails."""
        with self._read_lock:
            if not self._caught_up(min_version):
                self._relist()
            with self._changed:
                return list(self._items.values())

    def lacks(self, names: Collection[str]) -> bool:
        """True when the cache is synced and holds none of `names` (never lists: False when
        it cannot say)."""
        with self._changed:
            return self._synced and not any(name in self._items for name in names)

    def _caught_up(self, min_version: int) -> bool:
        deadline = self._clock() + self._write_wait
        with self._changed:
            while True:
                if not self._synced:
                    return False
                if self._version >= min_version:
                    return True
                remaining = deadline - self._clock()
                if remaining <= 0:
                    log.warning("%s cache: our write %d not seen after %.1f s; listing again",
                                self.name, min_version, self._write_wait)
                    return False
                self._changed.wait(remaining)

    def _relist(self) -> None:
        kept, version = self._list_kept()  # raises ReadFailed: nothing changes here then
        with self._changed:
            self._epoch += 1
            self._close_response()
            self._store(kept, version)
            self._synced = True
            epoch = self._epoch
        threading.Thread(target=self._follow, args=(epoch, version), daemon=True,
                         name=f"informer-{self.name}").start()

    def _list_kept(self) -> tuple[dict[str, T], str]:
        pairs, version = self._list_all(keep=self._named)
        return dict(pairs), version

    def _named(self, raw: Json) -> tuple[str, T] | None:
        value = self._keep(raw)
        return None if value is None else (_name(raw), value)

    def _store(self, kept: dict[str, T], version: str) -> None:
        self._items = kept
        self._version = max(self._version, _as_int(version))  # a list is never older
        self._listed_at = self._clock()
        self.lists += 1
        self._changed.notify_all()

    def stop(self) -> None:
        """Ends the watch; the next read lists again."""
        with self._changed:
            self._epoch += 1
            self._synced = False
            self._close_response()

    @property
    def synced(self) -> bool:
        with self._changed:
            return self._synced

    # ------------------------------------------------------------------ the watch thread
    def _follow(self, epoch: int, version: str) -> None:
        while True:
            started = self._clock()
            try:
                if started - self._listed_at > self._max_age:
                    kept, version = self._list_kept()
                    with self._changed:
                        if epoch != self._epoch:
                            return
                        self._store(kept, version)
                for kind, obj in self._watch(version, lambda r: self._opened(epoch, r)):
                    with self._changed:
                        if epoch != self._epoch:
                            return
                        gone = self._items.get(_name(obj)) if kind == "DELETED" else None
                        version = self._apply(kind, obj) or version
                        self._changed.notify_all()
                    if gone is not None and self._on_deleted is not None:
                        self._deleted(gone)
            except Exception as exc:  # any failure means: list again
                with self._changed:
                    if epoch == self._epoch:
                        self._synced = False
                        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                        log.warning("%s watch ended: %s; the next pass lists again",
                                    self.name, self.last_error)
                return
            with self._changed:
                if epoch != self._epoch:
                    return
            if self._clock() - started < 1.0:
                time.sleep(1.0)  # a server ending watches at once must not make us spin

    def _deleted(self, gone: T) -> None:
        assert self._on_deleted is not None
        try:
            self._on_deleted(gone)
        except Exception as exc:  # the hook is best effort: the next pass converges anyway
            log.warning("%s cache: deletion hook failed: %s", self.name, type(exc).__name__)

    def _opened(self, epoch: int, response: Any) -> None:
        with self._changed:
            if epoch == self._epoch:
                self._response = response
            else:
                _close(response)

    def _apply(self, kind: str, obj: Json) -> str:
        """One event into the cache; returns its resourceVersion ("" if none)."""
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind in ("ADDED", "MODIFIED"):
            value = self._keep(obj)
            if value is None:
                self._items.pop(_name(obj), None)
            else:
                self._items[_name(obj)] = value
        elif kind == "DELETED":
            self._items.pop(_name(obj), None)
        self._version = max(self._version, resource_version(obj))
        self.events += 1
        return version

    def _close_response(self) -> None:
        if self._response is not None:
            _close(self._response)
            self._response = None


def _name(obj: Json) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _as_int(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return 0


def _close(response: Any) -> None:
    try:
        response.shutdown()  # urllib3 ≥ 2.3: unblocks a read in another thread
    except AttributeError:
        response.close()
    except Exception:  # best effort: the epoch check stops the thread anyway
        pass
