"""Helpers for tests of the health/metrics api and Flower as REAL processes (uvicorn, flower)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import Proc, Procs
from tools.stack.process import free_port

BIN = Path(sys.executable).parent


@dataclass
class Served:
    """A started HTTP server process and its base URL."""

    proc: Proc
    url: str

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 10.0)  # long: a hang shows up as a slow answer, measured
        return httpx.get(self.url + path, **kwargs)

    def wait_serving(self, path: str, timeout: float = 30.0, **kwargs: Any) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.assert_alive()
            try:
                self.get(path, timeout=1.0, **kwargs)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"{self.proc.name} not serving {path} after {timeout} s\n"
                             f"{self.proc.tail()}")


def start_api(procs: Procs, **env: str) -> Served:
    port = free_port()
    proc = procs.start("api", [str(BIN / "uvicorn"), "--factory", "api.main:create_app",
                               "--host", "127.0.0.1", "--port", str(port)], **env)
    served = Served(proc, f"http://127.0.0.1:{port}")
    served.wait_serving("/healthz")
    return served


def start_flower(procs: Procs, *, basic_auth: str, **env: str) -> Served:
    port = free_port()
    proc = procs.start("flower", [str(BIN / "celery"), "-A", "worker", "flower",
                                  "--address=127.0.0.1", f"--port={port}"],
                       FLOWER_BASIC_AUTH=basic_auth, **env)
    served = Served(proc, f"http://127.0.0.1:{port}")
    served.wait_serving("/healthcheck", timeout=60)
    return served


def timed_get(served: Served, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = served.get(path)
    return response, time.monotonic() - started


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page (parsed by prometheus_client's own parser)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """A sample's value, 0.0 when absent (a counter never incremented is not rendered)."""
    return page.get((name, frozenset(labels.items())), 0.0)
