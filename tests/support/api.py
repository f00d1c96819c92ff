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


BROKER_ROLE_LACKS = ("MONGO_URI", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")


def start_flower(procs: Procs, *, basic_auth: str, **env: str) -> Served:
    port = free_port()
    # As k8s/flower.yaml runs it: the broker-only app, without Mongo or storage credentials.
    proc = procs.start("flower", [str(BIN / "celery"), "-A", "worker.flower_app", "flower",
                                  "--address=127.0.0.1", f"--port={port}"],
                       without=BROKER_ROLE_LACKS, FLOWER_BASIC_AUTH=basic_auth, **env)
    served = Served(proc, f"http://127.0.0.1:{port}")
    served.wait_serving("/healthcheck", timeout=60)
    return served


def timed_get(served: Served, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = served.get(path)
    return response, time.monotonic() - started


Sample = tuple[str, frozenset[tuple[str, str]]]


class Page(dict[Sample, float]):
    """Every sample of a Prometheus text page, and the families the page declares (a family
    is declared by its HELP/TYPE lines even when it has no sample)."""

    families: frozenset[str] = frozenset()


def samples(text: str) -> Page:
    """Every sample of a Prometheus text page (parsed by prometheus_client's own parser)."""
    families = list(text_string_to_metric_families(text))
    page = Page({(s.name, frozenset(s.labels.items())): s.value
                 for family in families for s in family.samples})
    page.families = frozenset(family.name for family in families)
    return page


def value(page: Page, name: str, **labels: str) -> float:
    """A sample's value; a missing sample fails (an empty page must not satisfy `== 0`)."""
    key = (name, frozenset(labels.items()))
    if key not in page:
        shown = sorted(f"{n}{dict(sorted(ls))}" for n, ls in page if n == name)
        raise AssertionError(f"no sample {name}{labels} on the page; samples of {name}: "
                             f"{shown or 'none'}; families: {sorted(page.families)}")
    return page[key]


def sample_or_none(page: Page, name: str, **labels: str) -> float | None:
    """A sample's value, None while it is absent: for polls that wait for it to appear."""
    return page.get((name, frozenset(labels.items())))


def never_counted(page: Page, name: str, **labels: str) -> bool:
    """True when the page declares the sample's family but has no such sample: a counter
    never incremented is not rendered. An empty or foreign page is not that: it fails."""
    suffixes = ("", "_total", "_count", "_sum", "_bucket", "_created")
    if not any(name.endswith(s) and name[:len(name) - len(s)] in page.families
               for s in suffixes):
        raise AssertionError(f"the page does not declare {name}'s family; families: "
                             f"{sorted(page.families)}")
    return (name, frozenset(labels.items())) not in page
