"""Shared metrics: buffering, the Redis field encoding, decoding and Prometheus rendering."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.core.metrics import (
    ACTIONS,
    KUBE_REQUESTS,
    RECONCILE_DURATION,
    RECONCILES,
    SHARED,
    Family,
    MetricBuffer,
    action_outcome,
    bucket_of,
    decode_counter,
    decode_histogram,
    field_of,
    is_integral,
)


def to_hash(increments: dict[tuple[str, str], float], family: Family) -> dict[bytes, bytes]:
    """What Redis holds after HINCRBY/HINCRBYFLOAT of these increments."""
    return {fld.encode(): repr(amount).encode()
            for (name, fld), amount in increments.items() if name == family.name}


def test_names_follow_controller_runtime_conventions() -> None:
    for family in SHARED:
        assert family.name.startswith("the0_")
        if family.kind == "counter":
            assert family.name.endswith("_total"), family.name
        else:
            assert family.name.endswith("_seconds"), family.name
        assert "bot_id" not in family.labels and "id" not in family.labels
        assert "config" not in family.labels


def test_counter_increments_accumulate_per_label_set() -> None:
    buffer = MetricBuffer()
    buffer.inc(RECONCILES, kind="live", result="ok")
    buffer.inc(RECONCILES, kind="live", result="ok")
    buffer.inc(RECONCILES, kind="scheduled", result="error")
    drained = buffer.drain()
    assert len(buffer) == 0
    samples = decode_counter(RECONCILES, to_hash(drained, RECONCILES))
    assert samples == [(("live", "ok"), 2.0), (("scheduled", "error"), 1.0)]


def test_labels_must_match_the_family() -> None:
    buffer = MetricBuffer()
    with pytest.raises(ValueError, match="takes labels"):
        buffer.inc(RECONCILES, kind="live")
    with pytest.raises(ValueError, match="takes labels"):
        buffer.inc(RECONCILES, kind="live", result="ok", bot_id="abc")


def test_long_label_values_are_truncated() -> None:
    fld = field_of(ACTIONS, {"kind": "live", "action": "x" * 500, "outcome": "done"})
    assert len(fld) < 100


@pytest.mark.parametrize(("value", "bucket"), [(0.0, "le:0.05"), (0.05, "le:0.05"),
                                               (0.051, "le:0.1"), (119.0, "le:120.0"),
                                               (121.0, "le:+Inf")])
def test_bucket_of(value: float, bucket: str) -> None:
    assert bucket_of(RECONCILE_DURATION, value) == bucket


def test_histogram_decodes_to_cumulative_buckets() -> None:
    buffer = MetricBuffer()
    for value in (0.01, 0.3, 0.3, 7.0, 500.0):
        buffer.observe(RECONCILE_DURATION, value, kind="live")
    buffer.observe(RECONCILE_DURATION, -1.0, kind="scheduled")  # clamped to 0
    [live, scheduled] = decode_histogram(RECONCILE_DURATION,
                                         to_hash(buffer.drain(), RECONCILE_DURATION))
    assert live.labels == ("live",)
    buckets = dict(live.buckets)
    assert buckets["0.05"] == 1 and buckets["0.25"] == 1 and buckets["0.5"] == 3
    assert buckets["5.0"] == 3 and buckets["10.0"] == 4 and buckets["120.0"] == 4
    assert buckets["+Inf"] == 5 and live.count == 5
    assert live.sum == pytest.approx(507.61)
    assert [c for _, c in live.buckets] == sorted(c for _, c in live.buckets)
    assert scheduled.count == 1 and scheduled.sum == 0.0


def test_drain_and_restore_lose_nothing() -> None:
    buffer = MetricBuffer()
    buffer.inc(RECONCILES, kind="live", result="ok")
    pending = buffer.drain()
    buffer.inc(RECONCILES, kind="live", result="ok")
    buffer.restore(pending)  # the flush failed
    assert decode_counter(RECONCILES, to_hash(buffer.drain(), RECONCILES)) == [
        (("live", "ok"), 2.0)]


def test_buffer_is_thread_safe() -> None:
    buffer = MetricBuffer()

    def hammer() -> None:
        for _ in range(2000):
            buffer.observe_kube_request("get", "pods", 200)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert decode_counter(KUBE_REQUESTS, to_hash(buffer.drain(), KUBE_REQUESTS)) == [
        (("get", "pods", "200"), 16000.0)]


def test_kube_request_without_response_has_error_code() -> None:
    buffer = MetricBuffer()
    buffer.observe_kube_request("list", "pods", 0)
    assert decode_counter(KUBE_REQUESTS, to_hash(buffer.drain(), KUBE_REQUESTS)) == [
        (("list", "pods", "<error>"), 1.0)]


def test_decoding_skips_fields_it_does_not_understand() -> None:
    raw = {b'["live","ok"]': b"3", b"garbage": b"1", b'["only-one"]': b"1",
           b'[1, 2]': b"1", b'["live","error"]': b"not a number"}
    assert decode_counter(RECONCILES, raw) == [(("live", "error"), 0.0), (("live", "ok"), 3.0)]


@pytest.mark.parametrize(("result", "outcome"), [
    ("created", "done"), ("deleted", "done"), ("replaced", "done"), ("recreated", "done"),
    ("updated", "done"), ("nothing", "noop"), ("backing off", "noop"),
    ("waiting for a terminating pod", "noop"), ("failed: code_not_found", "failed"),
    ("continued: the old object is still terminating", "continued")])
def test_action_outcome(result: str, outcome: str) -> None:
    assert action_outcome(result) == outcome


def test_the_apis_exposition_parses_to_the_expected_samples() -> None:
    """The product's own /metrics rendering (api.metrics.render) of what workers flushed,
    parsed by prometheus_client's text parser; every expected sample written out by hand."""
    from api.metrics import render
    from worker.adapters.telemetry import HealthData
    from worker.core.readiness import Observed, Policy

    buffer = MetricBuffer()
    buffer.inc(RECONCILES, kind="live", result="ok")
    buffer.inc(RECONCILES, kind="live", result="ok")
    buffer.inc(RECONCILES, kind="scheduled", result="error")
    for seconds in (0.2, 0.07, 7.0):
        buffer.observe(RECONCILE_DURATION, seconds, kind="live")
    drained = buffer.drain()
    data = HealthData(observed=Observed(), metrics={
        family.name: to_hash(drained, family) for family in (RECONCILES, RECONCILE_DURATION)})
    text = render(data, Policy(heartbeat_ttl=30.0, reconcile_interval=30.0),
                  now=1_700_000_000.0).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    assert families["the0_reconcile"].type == "counter"
    assert sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                  for s in families["the0_reconcile"].samples) == [
        ("the0_reconcile_total", (("kind", "live"), ("result", "ok")), 2.0),
        ("the0_reconcile_total", (("kind", "scheduled"), ("result", "error")), 1.0)]

    histogram = families["the0_reconcile_duration_seconds"]
    assert histogram.type == "histogram"
    got = {(s.name, s.labels.get("le", "")): s.value for s in histogram.samples}
    assert all(s.labels["kind"] == "live" for s in histogram.samples)
    # Cumulative buckets of 0.07, 0.2 and 7.0 s.
    expected_buckets = {"0.05": 0, "0.1": 1, "0.25": 2, "0.5": 2, "1.0": 2, "2.0": 2,
                        "5.0": 2, "10.0": 3, "20.0": 3, "30.0": 3, "60.0": 3, "120.0": 3,
                        "+Inf": 3}
    assert {le: v for (name, le), v in got.items()
            if name.endswith("_bucket")} == expected_buckets
    assert got[("the0_reconcile_duration_seconds_count", "")] == 3
    assert got[("the0_reconcile_duration_seconds_sum", "")] == pytest.approx(7.27)
    # Families nobody incremented are declared, with no sample.
    assert families["the0_task_retries"].samples == []
    assert families["the0_redis_up"].samples[0].value == 1.0


def test_a_held_deletion_is_its_own_outcome() -> None:
    assert action_outcome("held: the deletion budget is spent") == "held"


def test_hash_fields_are_compact_json_arrays_in_label_order() -> None:
    assert field_of(ACTIONS, {"outcome": "done", "kind": "live", "action": "create"}) == (
        '["live","create","done"]')
    assert field_of(RECONCILE_DURATION, {"kind": "live"}, "le:0.5") == '["live","le:0.5"]'
    exact, longer = "x" * 64, "y" * 65
    assert field_of(RECONCILES, {"kind": exact, "result": longer}) == (
        f'["{exact}","{"y" * 64}"]')


def test_one_observation_adds_its_bucket_count_and_sum() -> None:
    buffer = MetricBuffer()
    buffer.observe(RECONCILE_DURATION, 0.3, kind="live")
    name = RECONCILE_DURATION.name
    assert buffer.drain() == {(name, '["live","le:0.5"]'): 1.0, (name, '["live","count"]'): 1.0,
                              (name, '["live","sum"]'): 0.3}


def test_restoring_into_an_empty_buffer_puts_back_exactly_what_was_drained() -> None:
    buffer = MetricBuffer()
    buffer.restore({("f", '["x"]'): 2.0})
    assert len(buffer) == 1 and buffer.drain() == {("f", '["x"]'): 2.0}


@pytest.mark.parametrize(("amount", "integral"), [(1.0, True), (0.0, True), (1.5, False),
                                                  (float("inf"), False), (float("nan"), False)])
def test_is_integral(amount: float, integral: bool) -> None:
    assert is_integral(amount) is integral


def test_a_two_label_histogram_decodes_from_text_or_bytes_and_skips_what_it_cannot_read() -> None:
    family = Family("h", "histogram", "h", ("kind", "verb"), buckets=(1.0,))
    raw = {'["live"]': "9",                       # too few values: skipped (and not the end)
           '["live","get","le:1.0"]': "2", '["live","get","le:+Inf"]': "1",
           '["live","get","sum"]': "4.5", '["live","put","le:1.0"]': "1"}
    [get, put] = decode_histogram(family, raw)
    assert (get.labels, get.buckets, get.count, get.sum) == (
        ("live", "get"), (("1.0", 2.0), ("+Inf", 3.0)), 3.0, 4.5)
    assert (put.labels, put.buckets, put.count, put.sum) == (
        ("live", "put"), (("1.0", 1.0), ("+Inf", 1.0)), 1.0, 0.0)  # no sum stored yet
    as_bytes = {key.encode(): value.encode() for key, value in raw.items()}
    as_bytes[b'["live","get","\xff"]'] = b"5"  # an unreadable field name is its own label
    assert decode_histogram(family, as_bytes)[:1] == [get]
