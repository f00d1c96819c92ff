"""The informer's rules as plain logic: a scripted list and watch stand in for the API server
(the real-server behaviour is in tests/integration/live_bots/test_pod_cache.py)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker.adapters.kube import Expired, WatchEvent, _watch_event
from worker.core.errors import ReadFailed, TemporaryError
from worker.informer import Informer

END = object()  # the server ends the watch normally


def pod(name: str, version: int, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(version), "labels": labels}}


class FakeServer:
    """A list answer and a queue of watch outcomes, one queue item per event."""

    def __init__(self, items: list[dict[str, Any]], version: int) -> None:
        self.items, self.version = items, version
        self.events: queue.Queue[Any] = queue.Queue()
        self.list_error: Exception | None = None
        self.watched_from: list[str] = []

    def list_all(self, keep: Callable[[dict[str, Any]], Any]) -> tuple[list[Any], str]:
        if self.list_error is not None:
            raise self.list_error
        return [k for k in map(keep, self.items) if k is not None], str(self.version)

    def watch(self, version: str, _on_open: Callable[[Any], None]) -> Iterator[WatchEvent]:
        self.watched_from.append(version)
        while True:
            item = self.events.get(timeout=5)
            if item is END:
                return
            if isinstance(item, Exception):
                raise item
            yield item


CACHES: list[Informer[Any]] = []


@pytest.fixture(autouse=True)
def _stop_caches() -> Iterator[None]:
    yield
    while CACHES:
        CACHES.pop().stop()  # their watch threads end quietly


def informer(server: FakeServer, *, keep: Callable[[dict[str, Any]], Any] | None = None,
             max_age: float = 3600, write_wait: float = 0.5) -> Informer[Any]:
    CACHES.append(Informer("pods", list_all=server.list_all, watch=server.watch,
                           keep=keep or (lambda raw: raw["metadata"]["name"]),
                           max_age=max_age, write_wait=write_wait))
    return CACHES[-1]


def settle(cache: Informer[Any], events: int) -> None:
    deadline = time.monotonic() + 5
    while cache.events < events:
        assert time.monotonic() < deadline, f"{cache.events} of {events} events applied"
        time.sleep(0.01)


def test_lists_once_then_applies_watch_events_in_order() -> None:
    server = FakeServer([pod("a", 5), pod("b", 6)], version=10)
    cache = informer(server)
    assert sorted(cache.read()) == ["a", "b"]
    server.events.put(("ADDED", pod("c", 11)))
    server.events.put(("DELETED", pod("a", 12)))
    server.events.put(("MODIFIED", pod("b", 13)))
    server.events.put(("BOOKMARK", {"metadata": {"resourceVersion": "20"}}))
    settle(cache, 4)
    assert sorted(cache.read()) == ["b", "c"]
    assert cache.lists == 1 and server.watched_from == ["10"]


def test_keep_none_drops_an_object_that_stops_qualifying() -> None:
    server = FakeServer([pod("a", 5, bot="yes")], version=10)
    cache = informer(server, keep=lambda raw: raw["metadata"]["name"]
                     if raw["metadata"]["labels"].get("bot") else None)
    assert cache.read() == ["a"]
    server.events.put(("MODIFIED", pod("a", 11)))  # lost its label
    settle(cache, 1)
    assert cache.read() == []


def test_a_normal_end_resumes_from_the_last_version_seen() -> None:
    server = FakeServer([], version=10)
    cache = informer(server)
    cache.read()
    server.events.put(("ADDED", pod("a", 11)))
    server.events.put(("BOOKMARK", {"metadata": {"resourceVersion": "15"}}))
    server.events.put(END)
    server.events.put(("ADDED", pod("b", 16)))
    settle(cache, 3)
    assert sorted(cache.read()) == ["a", "b"] and cache.lists == 1
    assert server.watched_from == ["10", "15"]


@pytest.mark.parametrize("failure", [Expired("410 too old"), TemporaryError("connection reset")])
def test_a_failed_watch_makes_the_next_read_list_again(failure: Exception) -> None:
    server = FakeServer([pod("a", 5)], version=10)
    cache = informer(server)
    cache.read()
    server.items = [pod("b", 30)]  # what happened while nobody watched
    server.version = 30
    server.events.put(failure)
    deadline = time.monotonic() + 5
    while cache.synced:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cache.read() == ["b"] and cache.lists == 2
    assert server.watched_from[-1] == "30"


def test_a_failed_relist_raises_and_keeps_failing_closed() -> None:
    server = FakeServer([pod("a", 5)], version=10)
    cache = informer(server)
    cache.read()
    server.list_error = ReadFailed("listing pods failed after 0 items: 503")
    server.events.put(TemporaryError("server gone"))
    while cache.synced:
        time.sleep(0.01)
    for _ in range(2):
        with pytest.raises(ReadFailed):
            cache.read()
    server.list_error = None
    assert cache.read() == ["a"]


def test_read_waits_for_our_own_write_to_arrive() -> None:
    server = FakeServer([], version=10)
    cache = informer(server, write_wait=5)
    cache.read()
    timer = threading.Timer(0.2, server.events.put, args=(("ADDED", pod("mine", 11)),))
    timer.start()
    assert cache.read(min_version=11) == ["mine"] and cache.lists == 1


def test_a_write_that_never_arrives_makes_the_read_list_again() -> None:
    server = FakeServer([], version=10)
    cache = informer(server, write_wait=0.2)
    cache.read()
    server.items, server.version = [pod("mine", 11)], 11
    assert cache.read(min_version=11) == ["mine"] and cache.lists == 2


def test_the_watch_thread_lists_again_in_the_background_after_max_age() -> None:
    server = FakeServer([pod("a", 5)], version=10)
    cache = informer(server, max_age=0.05)
    cache.read()
    server.items, server.version = [pod("z", 40)], 40
    time.sleep(0.1)
    server.events.put(END)  # at the end of a watch the thread sees its list is old
    deadline = time.monotonic() + 5
    while cache.lists < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cache.read() == ["z"] and server.watched_from[-1] == "40"


def test_watch_lines_parse_and_error_events_raise() -> None:
    kind, obj = _watch_event("pods", b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}')
    assert kind == "ADDED" and obj["metadata"]["name"] == "a"
    with pytest.raises(Expired):
        _watch_event("pods", b'{"type":"ERROR","object":{"kind":"Status","code":410,'
                             b'"message":"too old resource version: 1 (66503)"}}')
    with pytest.raises(TemporaryError) as error:
        _watch_event("pods", b'{"type":"ERROR","object":{"code":500,"message":"boom"}}')
    assert not isinstance(error.value, Expired)


def test_a_deletion_is_reported_with_what_the_cache_held() -> None:
    server = FakeServer([pod("a", 5), pod("b", 6)], version=10)
    removed: list[str] = []
    CACHES.append(cache := Informer(
        "pods", list_all=server.list_all, watch=server.watch,
        keep=lambda raw: raw["metadata"]["name"].upper(), max_age=3600,
        on_deleted=removed.append))
    cache.read()
    server.events.put(("DELETED", pod("a", 11)))
    server.events.put(("DELETED", pod("zz", 12)))  # never cached: nothing to report
    server.events.put(("MODIFIED", pod("b", 13)))
    settle(cache, 3)
    assert removed == ["A"] and cache.read() == ["B"]


def test_a_failing_deletion_hook_does_not_stop_the_watch() -> None:
    server = FakeServer([pod("a", 5)], version=10)

    def broken(_value: Any) -> None:
        raise RuntimeError("hook down")

    CACHES.append(cache := Informer(
        "pods", list_all=server.list_all, watch=server.watch,
        keep=lambda raw: raw["metadata"]["name"], max_age=3600, on_deleted=broken))
    cache.read()
    server.events.put(("DELETED", pod("a", 11)))
    server.events.put(("ADDED", pod("b", 12)))
    settle(cache, 2)
    assert cache.synced and cache.read() == ["b"]
