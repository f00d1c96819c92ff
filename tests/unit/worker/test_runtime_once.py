"""Runtime builds each component once, and a slow build holds up only its own component.

Found while testing the events consumer against a stopped Mongo: the Mongo store's first build
waited out MONGO_TIMEOUT (30 s) under the one lock every component shared, and the consumer's
heartbeat — reading `rt.telemetry` on its event loop — waited with it, stalling the loop's NATS
keep-alives until the server delivered the held event a second time.
"""

from __future__ import annotations

import threading
import time

from worker.runtime import Runtime
from worker.settings import load_settings

ENV = {"MONGO_URI": "mongodb://127.0.0.1:1/", "MINIO_ENDPOINT": "127.0.0.1:1",
       "MINIO_ACCESS_KEY": "k", "MINIO_SECRET_KEY": "s" * 16}


def runtime() -> Runtime:
    return Runtime(load_settings(ENV))


def test_a_slow_build_does_not_hold_up_another_component() -> None:
    rt = runtime()
    release = threading.Event()
    slow = threading.Thread(target=lambda: rt._once("slow", lambda: release.wait(10)))
    slow.start()
    try:
        time.sleep(0.1)  # the slow build is under way
        started = time.monotonic()
        assert rt._once("quick", lambda: "built") == "built"
        assert time.monotonic() - started < 1.0, "another component's build waited"
    finally:
        release.set()
        slow.join()


def test_each_component_is_built_once_even_when_asked_for_at_once() -> None:
    rt = runtime()
    builds: list[int] = []
    gate = threading.Barrier(8)

    def build() -> object:
        builds.append(1)
        time.sleep(0.05)
        return object()

    results: list[object] = []

    def ask() -> None:
        gate.wait()
        results.append(rt._once("shared", build))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_a_build_may_build_another_component_inside_it() -> None:
    rt = runtime()
    outer = rt._once("outer", lambda: ("outer", rt._once("inner", lambda: "inner")))
    assert outer == ("outer", "inner")
    assert rt._once("inner", lambda: "again") == "inner"
