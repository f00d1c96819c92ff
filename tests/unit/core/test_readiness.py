"""Readiness from plain values: every check, its boundaries, and the JSON a 503 carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from worker.core.readiness import (
    CHECKS,
    Check,
    Heartbeat,
    Observed,
    Policy,
    evaluate,
    parse_heartbeat,
    parse_record,
)

NOW = 1_800_000_000.0
TTL = 30.0
INTERVAL = 10.0
POLICY = Policy(heartbeat_ttl=TTL, reconcile_interval=INTERVAL)
ISO_EPOCH = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()


def beat(age: float, who: str = "w1@host") -> Heartbeat:
    return Heartbeat(who=who, at=NOW - age)


BUCKETS_OK = {"code": {"name": "custom-bots", "exists": True, "error": ""},
              "state": {"name": "bot-state", "exists": True, "error": ""}}


def worker(age: float, buckets: dict[str, object] | None = None) -> Heartbeat:
    """A worker heartbeat carrying its latest bucket check."""
    return Heartbeat(who="w1@host", at=NOW - age,
                     info={"buckets": BUCKETS_OK if buckets is None else buckets})


def ok_pass(age: float) -> dict[str, object]:
    return {"at": NOW - age, "ok": True, "last_ok_at": NOW - age}


def healthy(**changes: object) -> Observed:
    values: dict[str, object] = {
        "workers": {"w1@host": worker(1)},
        "heartbeats": {"beat": beat(2, "beat-1")},
        "reconciles": {"live": ok_pass(5), "scheduled": ok_pass(5)},
    }
    values.update(changes)
    return Observed(**values)  # type: ignore[arg-type]


def failing(observed: Observed, policy: Policy = POLICY) -> list[str]:
    return evaluate(observed, policy, now=NOW).failing


def test_all_fresh_is_ready() -> None:
    readiness = evaluate(healthy(), POLICY, now=NOW)
    assert readiness.ready
    assert [c.name for c in readiness.checks] == [
        "redis", "workers", "beat", "code_bucket", "state_bucket", "reconcile:live",
        "reconcile:scheduled"]
    assert all(c.ok for c in readiness.checks)


def test_redis_down_fails_every_check_with_the_reason() -> None:
    readiness = evaluate(Observed(redis_error="no answer within 0.5 s"), POLICY, now=NOW)
    assert not readiness.ready
    assert readiness.failing == ["redis", "workers", "beat", "code_bucket", "state_bucket",
                                 "reconcile:live", "reconcile:scheduled"]
    redis = readiness.checks[0]
    assert "no answer within 0.5 s" in redis.detail
    assert all("redis unavailable" in c.detail for c in readiness.checks[1:])


def test_no_worker_heartbeat_fails_workers_only() -> None:
    assert failing(healthy(workers={})) == ["workers"]


@pytest.mark.parametrize(("age", "ok"), [(0, True), (TTL - 0.01, True), (TTL, True),
                                         (TTL + 0.01, False), (10 * TTL, False)])
def test_worker_heartbeat_freshness_boundary(age: float, ok: bool) -> None:
    assert (failing(healthy(workers={"w1@host": beat(age)})) == []) is ok


def test_one_fresh_worker_among_stale_ones_is_enough() -> None:
    observed = healthy(workers={"old@a": beat(100), "new@b": beat(1), "older@c": beat(500)})
    readiness = evaluate(observed, POLICY, now=NOW)
    assert readiness.ready
    assert "new@b" in readiness.checks[1].detail and "old@a" not in readiness.checks[1].detail


QUEUES_POLICY = Policy(heartbeat_ttl=TTL, reconcile_interval=INTERVAL,
                      worker_queues=("reconcile", "bots", "logs"))


def takes(queues: list[str], age: float = 1) -> Heartbeat:
    return Heartbeat(who="w@host", at=NOW - age, info={"buckets": BUCKETS_OK, "queues": queues})


def test_a_log_worker_alone_fails_workers_naming_the_queues_nobody_takes() -> None:
    # Seen in the cluster: the reconciling workers scaled to 0, the log worker still beating.
    readiness = evaluate(healthy(workers={"logs@a": takes(["logs"])}), QUEUES_POLICY, now=NOW)
    assert readiness.failing == ["workers"]
    detail = readiness.checks[1].detail
    assert "reconcile, bots queues" in detail and "logs@a" in detail


def test_every_queue_taken_by_some_live_worker_is_ready() -> None:
    workers = {"celery@a": takes(["bots", "reconcile"]), "logs@b": takes(["logs"]),
               "celery@old": takes(["reconcile", "bots", "logs"], age=10 * TTL)}
    assert failing(healthy(workers=workers), QUEUES_POLICY) == []
    # Only the stale worker took `logs`: it counts for nothing.
    del workers["logs@b"]
    readiness = evaluate(healthy(workers=workers), QUEUES_POLICY, now=NOW)
    assert readiness.checks[1].detail.startswith("no live worker takes the logs queue;")


def test_a_heartbeat_that_does_not_list_its_queues_counts_for_every_queue() -> None:
    assert failing(healthy(workers={"w1@host": worker(1)}), QUEUES_POLICY) == []


def test_stale_workers_are_counted_in_the_detail() -> None:
    readiness = evaluate(healthy(workers={"a": beat(100), "b": beat(200)}), POLICY, now=NOW)
    workers = next(c for c in readiness.checks if c.name == "workers")
    assert not workers.ok and "2 stale" in workers.detail


def test_heartbeat_without_time_counts_as_alive_while_its_key_exists() -> None:
    assert failing(healthy(workers={"w": Heartbeat(who="w")},
                           heartbeats={"beat": Heartbeat(who="beat")})) == []


def test_missing_or_stale_beat_fails_beat() -> None:
    assert failing(healthy(heartbeats={"beat": None})) == ["beat"]
    assert failing(healthy(heartbeats={})) == ["beat"]
    readiness = evaluate(healthy(heartbeats={"beat": beat(TTL + 5)}), POLICY, now=NOW)
    assert readiness.failing == ["beat"]
    assert "35.0 s ago" in readiness.checks[2].detail


def test_extra_required_heartbeats_become_checks_of_their_name() -> None:
    policy = Policy(heartbeat_ttl=TTL, reconcile_interval=INTERVAL,
                    heartbeats=("beat", "events"))
    assert failing(healthy(), policy) == ["events"]
    assert failing(healthy(heartbeats={"beat": beat(1), "events": beat(1)}), policy) == []


@pytest.mark.parametrize(("age", "ok"), [(0, True), (3 * INTERVAL, True),
                                         (3 * INTERVAL + 0.1, False)])
def test_reconcile_must_have_succeeded_within_three_intervals(age: float, ok: bool) -> None:
    observed = healthy(reconciles={"live": ok_pass(age), "scheduled": ok_pass(1)})
    assert (failing(observed) == []) is ok


def test_reconcile_window_is_configurable() -> None:
    policy = Policy(heartbeat_ttl=TTL, reconcile_interval=INTERVAL, reconcile_intervals=1)
    assert failing(healthy(reconciles={"live": ok_pass(15), "scheduled": ok_pass(1)}),
                   policy) == ["reconcile:live"]


def test_no_pass_recorded_yet_fails_that_kind() -> None:
    readiness = evaluate(healthy(reconciles={"live": ok_pass(1), "scheduled": None}), POLICY,
                         now=NOW)
    assert readiness.failing == ["reconcile:scheduled"]
    assert "no reconcile pass recorded" in readiness.checks[-1].detail
    assert failing(healthy(reconciles={"live": ok_pass(1)})) == ["reconcile:scheduled"]


def test_one_failed_pass_after_a_recent_success_stays_ready_but_says_so() -> None:
    record = {"at": NOW - 1, "ok": False, "last_ok_at": NOW - 12, "error": "mongo: timeout"}
    readiness = evaluate(healthy(reconciles={"live": record, "scheduled": ok_pass(1)}),
                         POLICY, now=NOW)
    assert readiness.ready
    live = next(c for c in readiness.checks if c.name == "reconcile:live")
    assert "last pass failed: mongo: timeout" in live.detail


def test_failed_passes_without_a_recent_success_fail() -> None:
    record = {"at": NOW - 1, "ok": False, "last_ok_at": NOW - 100, "error": "mongo: timeout"}
    readiness = evaluate(healthy(reconciles={"live": record, "scheduled": ok_pass(1)}),
                         POLICY, now=NOW)
    assert readiness.failing == ["reconcile:live"]
    live = next(c for c in readiness.checks if c.name == "reconcile:live")
    assert "mongo: timeout" in live.detail
    never = {"at": NOW - 1, "ok": False, "error": "boom"}
    assert failing(healthy(reconciles={"live": never, "scheduled": ok_pass(1)})) == [
        "reconcile:live"]


def test_reconcile_time_may_be_rfc3339_text() -> None:
    record = {"at": "2027-01-15T08:00:00.000000Z", "ok": True}
    at = ISO_EPOCH
    assert evaluate(Observed(workers={"w": Heartbeat(who="w", at=at)},
                             heartbeats={"beat": Heartbeat(who="b", at=at)},
                             reconciles={"live": record, "scheduled": record}),
                    POLICY, now=at + 5).ready


def test_a_record_with_an_unreadable_time_fails() -> None:
    record = {"at": "yesterday", "ok": True}
    assert failing(healthy(reconciles={"live": record, "scheduled": ok_pass(1)})) == [
        "reconcile:live"]


def test_failing_names_every_failing_check_and_json_round_trips() -> None:
    observed = Observed(workers={}, heartbeats={"beat": None},
                        reconciles={"live": None, "scheduled": ok_pass(1)})
    body = evaluate(observed, POLICY, now=NOW).as_json()
    assert body["ready"] is False
    assert body["failing"] == ["workers", "beat", "reconcile:live"]
    assert json.loads(json.dumps(body)) == body
    assert {c["name"] for c in body["checks"]} >= set(body["failing"])


def test_custom_check_list_is_evaluated_in_order() -> None:
    def always_bad(observed: Observed, policy: Policy, now: float) -> list[Check]:
        return [Check("custom", False, "nope")]

    readiness = evaluate(healthy(), POLICY, now=NOW, checks=(*CHECKS, always_bad))
    assert readiness.failing == ["custom"]


def test_no_checks_is_not_ready() -> None:
    assert not evaluate(healthy(), POLICY, now=NOW, checks=()).ready


@pytest.mark.parametrize(("raw", "who", "at"), [
    (None, None, None),
    (b'{"who": "w1@h", "at": 12.5, "pid": 7}', "w1@h", 12.5),
    ('{"hostname": "w2@h", "at": 3}', "w2@h", 3.0),
    (b'{"identity": "h:1:abc", "at": "2027-01-15T08:00:00Z"}', "h:1:abc", ISO_EPOCH),
    (b"h:123:abcd", "h:123:abcd", None),
    (b"[1, 2]", "[1, 2]", None),
    (b'{"who": "x", "at": true}', "x", None),
])
def test_parse_heartbeat(raw: bytes | str | None, who: str | None, at: float | None) -> None:
    parsed = parse_heartbeat(raw)
    if who is None:
        assert parsed is None
        return
    assert parsed is not None and parsed.who == who
    assert parsed.at == at


def test_parse_record() -> None:
    assert parse_record(None) is None
    assert parse_record(b"not json") is None
    assert parse_record(b"[1]") is None
    assert parse_record(b'{"ok": true}') == {"ok": True}


def test_heartbeat_age_is_never_negative() -> None:
    assert Heartbeat(who="w", at=NOW + 5).age(NOW) == 0.0
    assert Heartbeat(who="w").age(NOW) is None


# --- buckets and events ---------------------------------------------------------------------


def test_a_missing_code_bucket_fails_readiness_naming_it_with_the_hint() -> None:
    buckets = {**BUCKETS_OK, "code": {"name": "the0-custom-bots", "exists": False, "error": ""}}
    readiness = evaluate(healthy(workers={"w1@host": worker(1, buckets)}), POLICY, now=NOW)
    assert readiness.failing == ["code_bucket"]
    (check,) = [c for c in readiness.checks if c.name == "code_bucket"]
    assert check.detail == ("code bucket 'the0-custom-bots' does not exist (MINIO_BUCKET); "
                            "the0's API stores bot code in 'custom-bots': set "
                            "MINIO_BUCKET=custom-bots")


def test_an_unreachable_store_fails_the_bucket_checks_with_the_error() -> None:
    buckets = {role: {"name": "b", "exists": None, "error": "MaxRetryError"}
               for role in ("code", "state")}
    assert failing(healthy(workers={"w1@host": worker(1, buckets)})) == ["code_bucket",
                                                                        "state_bucket"]


def test_a_missing_state_bucket_is_said_but_ready_it_is_made_on_first_use() -> None:
    buckets = {**BUCKETS_OK, "state": {"name": "bot-state", "exists": False, "error": ""}}
    readiness = evaluate(healthy(workers={"w1@host": worker(1, buckets)}), POLICY, now=NOW)
    assert readiness.ready
    (check,) = [c for c in readiness.checks if c.name == "state_bucket"]
    assert "does not exist" in check.detail


def test_the_freshest_workers_bucket_report_wins() -> None:
    missing = {**BUCKETS_OK, "code": {"name": "x", "exists": False, "error": ""}}
    workers = {"old@host": worker(20, missing), "new@host": worker(1)}
    assert failing(healthy(workers=workers)) == []
    workers = {"old@host": worker(1, missing), "new@host": worker(20)}
    assert failing(healthy(workers=workers)) == ["code_bucket"]


def test_buckets_not_yet_checked_do_not_fail() -> None:
    readiness = evaluate(healthy(workers={"w1@host": beat(1)}), POLICY, now=NOW)
    assert readiness.ready
    assert {c.name: c.detail for c in readiness.checks}["code_bucket"] == (
        "not checked yet by a live worker")


def test_with_events_expected_a_missing_events_heartbeat_fails() -> None:
    policy = Policy(heartbeat_ttl=TTL, reconcile_interval=INTERVAL, heartbeats=("beat", "events"))
    assert failing(healthy(), policy) == ["events"]


def test_with_events_off_nothing_is_asked_and_it_is_said() -> None:
    policy = Policy(heartbeat_ttl=TTL, reconcile_interval=INTERVAL, events_off=True)
    readiness = evaluate(healthy(), policy, now=NOW)
    assert readiness.ready
    assert {c.name: c.detail for c in readiness.checks}["events"].startswith(
        "off: NATS_URL is not set")
