"""`/metrics`: Prometheus text for the whole system, rendered from shared state in Redis.

Workers, beat and the api are separate processes (and pods), so counters and histograms are
aggregated in Redis (one hash per family, see `worker.core.metrics`) and the gauges come from
heartbeats, last-pass records and queue lengths. Each scrape reads everything in one bounded
read and renders it through a custom Collector. With Redis unreachable the scrape still
answers, with `the0_redis_up 0` and nothing else. Labels never carry bot ids or configuration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.deps import Reader, Settings, policy_of, read_health
from worker.adapters.telemetry import HealthData
from worker.core.census import STATES
from worker.core.metrics import SHARED, decode_counter, decode_histogram
from worker.core.readiness import Policy, epoch_of, evaluate, last_success_at

router = APIRouter()


class SnapshotCollector(Collector):
    """Renders one read of the shared state (taken before `collect` runs)."""

    def __init__(self, data: HealthData, policy: Policy, *, now: float) -> None:
        self.data = data
        self.policy = policy
        self.now = now

    def collect(self) -> Iterator[Metric]:
        observed = self.data.observed
        redis_up = GaugeMetricFamily("the0_redis_up", "1 when the api could read Redis.")
        redis_up.add_metric([], 0.0 if observed.redis_error else 1.0)
        yield redis_up
        if observed.redis_error:
            return
        yield from self._readiness()
        yield from self._shared()
        yield from self._gauges()

    def _readiness(self) -> Iterator[Metric]:
        readiness = evaluate(self.data.observed, self.policy, now=self.now)
        ready = GaugeMetricFamily("the0_ready", "1 when every readiness check passes.")
        ready.add_metric([], 1.0 if readiness.ready else 0.0)
        yield ready
        checks = GaugeMetricFamily("the0_readiness_check", "1 when this readiness check passes.",
                                   labels=["check"])
        for check in readiness.checks:
            checks.add_metric([check.name], 1.0 if check.ok else 0.0)
        yield checks

    def _shared(self) -> Iterator[Metric]:
        for family in SHARED:
            raw = self.data.metrics.get(family.name, {})
            if family.kind == "counter":
                counter = CounterMetricFamily(family.name, family.help,
                                              labels=list(family.labels))
                for labels, value in decode_counter(family, raw):
                    counter.add_metric(list(labels), value)
                yield counter
            else:
                histogram = HistogramMetricFamily(family.name, family.help,
                                                  labels=list(family.labels))
                for sample in decode_histogram(family, raw):
                    histogram.add_metric(list(sample.labels), list(sample.buckets),
                                         sample.sum)
                yield histogram

    def _gauges(self) -> Iterator[Metric]:
        observed, now = self.data.observed, self.now
        workers = GaugeMetricFamily("the0_workers", "Workers with a fresh heartbeat.")
        workers.add_metric([], float(sum(
            1 for b in observed.workers.values()
            if (age := b.age(now)) is None or age <= self.policy.heartbeat_ttl)))
        yield workers
        beats = GaugeMetricFamily("the0_heartbeat_age_seconds",
                                  "Age of the newest heartbeat of each singleton process.",
                                  labels=["process"])
        for name, beat in observed.heartbeats.items():
            age = None if beat is None else beat.age(now)
            if age is not None:
                beats.add_metric([name], age)
        yield beats

        last = GaugeMetricFamily("the0_last_reconcile_timestamp_seconds",
                                 "End of the last reconcile pass (epoch s).", labels=["kind"])
        last_ok = GaugeMetricFamily("the0_last_reconcile_success_timestamp_seconds",
                                    "End of the last successful reconcile pass (epoch s).",
                                    labels=["kind"])
        bots = GaugeMetricFamily("the0_bots", "Bots by state, as seen by the last pass: "
                                 + ", ".join(STATES) + ".", labels=["kind", "state"])
        for kind, record in sorted(observed.reconciles.items()):
            if record is None:
                continue
            if (at := epoch_of(record.get("at"))) is not None:
                last.add_metric([kind], at)
            if (ok_at := last_success_at(record)) is not None:
                last_ok.add_metric([kind], ok_at)
            counts = record.get("bots") or {}
            for state in STATES:
                if isinstance(counts.get(state), int | float):
                    bots.add_metric([kind, state], float(counts[state]))
        yield from (last, last_ok, bots)

        queues = GaugeMetricFamily("the0_queue_depth", "Messages waiting in each Celery queue.",
                                   labels=["queue"])
        for queue, depth in sorted(self.data.queues.items()):
            queues.add_metric([queue], float(depth))
        yield queues
        unacked = GaugeMetricFamily("the0_tasks_unacked",
                                    "Messages delivered to a worker and not yet acknowledged.")
        unacked.add_metric([], float(self.data.unacked))
        yield unacked

        logs = observed.logs or {}
        lag = GaugeMetricFamily("the0_log_lag_seconds",
                                "How far behind the newest collected log line is (last pass).")
        if isinstance(logs.get("lag_s"), int | float):
            lag.add_metric([], float(logs["lag_s"]))
        yield lag
        logs_at = GaugeMetricFamily("the0_last_log_collection_timestamp_seconds",
                                    "End of the last log collection pass (epoch s).")
        if (at := epoch_of(logs.get("at"))) is not None:
            logs_at.add_metric([], at)
        yield logs_at


def render(data: HealthData, policy: Policy, *, now: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(data, policy, now=now))
    return generate_latest(registry)


@router.get("/metrics")
async def metrics(reader: Reader, settings: Settings) -> Response:
    data = await read_health(reader, settings, with_metrics=True)
    return Response(render(data, policy_of(settings), now=time.time()),
                    media_type=CONTENT_TYPE_LATEST)
