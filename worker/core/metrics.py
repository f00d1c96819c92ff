"""Metric families shared across processes, an in-process buffer, and their Redis encoding.

PURE: no I/O, no clock. Workers, beat and the CLI are separate processes (and pods); the api
renders `/metrics` for all of them. So counters and histograms are buffered in each process
(`MetricBuffer`, cheap and thread-safe) and flushed in ONE Redis pipeline now and then
(`worker.adapters.telemetry`): one hash per family, one field per label set, HINCRBY /
HINCRBYFLOAT. The api decodes the hashes (`decode_counter`, `decode_histogram`).

Labels are bounded, operator-meaningful values (kind, action, outcome, verb, code, task name):
never a bot id, a config value or anything user-supplied.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "histogram"]


@dataclass(frozen=True)
class Family:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # histograms: upper bounds, ascending (+Inf implied)


RECONCILE_DURATION = Family(
    "the0_reconcile_duration_seconds", "histogram",
    "Duration of full reconcile passes (load, observe, plan, enqueue, record).", ("kind",),
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0))
RECONCILES = Family(
    "the0_reconcile_total", "counter",
    "Full reconcile passes by kind and result (ok, error).", ("kind", "result"))
PLANNED_ACTIONS = Family(
    "the0_reconcile_planned_actions_total", "counter",
    "Actions planned by full passes (create, delete, replace, recreate).", ("kind", "action"))
ACTIONS = Family(
    "the0_actions_total", "counter",
    "Per-bot tasks by kind, action and outcome (done, noop, failed, held, continued — handed "
    "its thread back while an old pod terminates —, retry, error).",
    ("kind", "action", "outcome"))
TASK_RETRIES = Family(
    "the0_task_retries_total", "counter",
    "Retries scheduled by tasks after a temporary error.", ("task",))
KUBE_REQUESTS = Family(
    "the0_kube_requests_total", "counter",
    "Kubernetes API requests by verb, resource and HTTP status code (<error>: no response).",
    ("verb", "resource", "code"))

EVENTS = Family(
    "the0_events_total", "counter",
    "NATS platform events by outcome: applied:<op>, enqueued, collapsed (a reconcile was "
    "already queued), rejected:<reason>, failed:<what>.", ("outcome",))
LOG_LINES = Family(
    "the0_log_lines_total", "counter",
    "Bot log lines collected, by outcome: stored, dropped (the bot's LOG_BOT_DAILY_BYTES for "
    "that UTC day was spent), truncated (stored cut to LOG_LINE_MAX_BYTES).", ("outcome",))
LOG_BYTES = Family(
    "the0_log_bytes_total", "counter",
    "Bytes of bot log lines collected, by outcome: stored (NDJSON records written), dropped "
    "(output of the dropped lines).", ("outcome",))
SHARED: tuple[Family, ...] = (RECONCILE_DURATION, RECONCILES, PLANNED_ACTIONS, ACTIONS,
                              TASK_RETRIES, KUBE_REQUESTS, EVENTS, LOG_LINES, LOG_BYTES)

_MAX_LABEL = 64


def _label(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_LABEL else text[:_MAX_LABEL]


def field_of(family: Family, labels: Mapping[str, object], suffix: str | None = None) -> str:
    """The hash field of one label set (a JSON array of the values in the family's order;
    histograms append "le:<bound>", "sum" or "count")."""
    if set(labels) != set(family.labels):
        raise ValueError(f"{family.name} takes labels {family.labels}, got {sorted(labels)}")
    values = [_label(labels[name]) for name in family.labels]
    if suffix is not None:
        values.append(suffix)
    return json.dumps(values, separators=(",", ":"))


def bucket_of(family: Family, value: float) -> str:
    """The (non-cumulative) bucket a value falls in: the first bound ≥ value, or +Inf."""
    for bound in family.buckets:
        if value <= bound:
            return f"le:{bound!r}"
    return "le:+Inf"


Increments = dict[tuple[str, str], float]  # (family name, field) → amount


class MetricBuffer:
    """Increments waiting for the next flush. Thread-safe; `inc` and `observe` are dict updates
    (no I/O), so they may be called on every Kubernetes request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Increments = {}

    def _add(self, key: tuple[str, str], amount: float) -> None:
        with self._lock:
            self._pending[key] = self._pending.get(key, 0.0) + amount

    def inc(self, family: Family, amount: float = 1.0, **labels: object) -> None:
        assert family.kind == "counter", family.name
        self._add((family.name, field_of(family, labels)), amount)

    def observe(self, family: Family, value: float, **labels: object) -> None:
        assert family.kind == "histogram", family.name
        value = max(0.0, float(value))
        for suffix, amount in ((bucket_of(family, value), 1.0), ("count", 1.0), ("sum", value)):
            self._add((family.name, field_of(family, labels, suffix)), amount)

    def observe_kube_request(self, verb: str, resource: str, status: int) -> None:
        """The Kubernetes adapter's RequestObserver."""
        self.inc(KUBE_REQUESTS, verb=verb, resource=resource,
                 code=str(status) if status else "<error>")

    def drain(self) -> Increments:
        """Everything pending, and a fresh start (call `restore` if the flush failed)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def restore(self, increments: Increments) -> None:
        """Puts back increments whose flush failed, so a Redis outage loses no counts."""
        with self._lock:
            for key, amount in increments.items():
                self._pending[key] = self._pending.get(key, 0.0) + amount

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


def is_integral(amount: float) -> bool:
    return math.isfinite(amount) and float(amount).is_integer()


DONE_RESULTS = frozenset({"created", "deleted", "replaced", "recreated", "updated"})


def action_outcome(result: str) -> str:
    """A per-bot task's result text → a bounded outcome label: done (the world changed), failed
    (a per-bot error, e.g. "failed: code_not_found"), noop (nothing to do, backing off,
    waiting). The reason codes stay in the bot's status, not in a label."""
    if result in DONE_RESULTS:
        return "done"
    if result.startswith("failed"):
        return "failed"
    if result.startswith("held"):
        return "held"  # a removal the global deletion budget held back
    if result.startswith("continued"):
        return "continued"  # its continuation completes it (worker/reconcile/waiting.py)
    return "noop"


# --------------------------------------------------------------------------- decoding
def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _number(raw: bytes | str) -> float:
    try:
        return float(_text(raw))
    except ValueError:
        return 0.0


def _values(raw_field: bytes | str) -> list[str] | None:
    try:
        values = json.loads(_text(raw_field))
    except ValueError:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return None
    return values


def decode_counter(family: Family, raw: Mapping[bytes, bytes] | Mapping[str, str]
                   ) -> list[tuple[tuple[str, ...], float]]:
    """Samples (label values, value) of a counter hash, sorted; unreadable fields skipped."""
    samples = []
    for raw_field, raw_value in raw.items():
        values = _values(raw_field)
        if values is not None and len(values) == len(family.labels):
            samples.append((tuple(values), _number(raw_value)))
    return sorted(samples)


@dataclass(frozen=True)
class HistogramSample:
    labels: tuple[str, ...]
    buckets: tuple[tuple[str, float], ...]  # cumulative: ("0.05", n), …, ("+Inf", count)
    count: float
    sum: float


def decode_histogram(family: Family, raw: Mapping[bytes, bytes] | Mapping[str, str]
                     ) -> list[HistogramSample]:
    """Histogram samples with cumulative buckets, from the per-bucket counts in the hash."""
    per_labels: dict[tuple[str, ...], dict[str, float]] = {}
    for raw_field, raw_value in raw.items():
        values = _values(raw_field)
        if values is None or len(values) != len(family.labels) + 1:
            continue
        per_labels.setdefault(tuple(values[:-1]), {})[values[-1]] = _number(raw_value)
    samples = []
    for labels, fields in sorted(per_labels.items()):
        running = 0.0
        buckets = []
        for bound in family.buckets:
            running += fields.get(f"le:{bound!r}", 0.0)
            buckets.append((_bound_text(bound), running))
        running += fields.get("le:+Inf", 0.0)
        buckets.append(("+Inf", running))
        samples.append(HistogramSample(labels=labels, buckets=tuple(buckets),
                                       count=running, sum=fields.get("sum", 0.0)))
    return samples


def _bound_text(bound: float) -> str:
    return repr(float(bound))


def families_by_name(families: Iterable[Family] = SHARED) -> dict[str, Family]:
    return {f.name: f for f in families}
