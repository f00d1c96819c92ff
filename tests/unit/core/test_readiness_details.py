"""Readiness as an operator reads it: the whole `/readyz` body of a healthy and of a failing
system, written out by hand (every check's name, verdict and sentence), plus the edges of the
heartbeat and time parsers."""

from typing import Any

import pytest

from worker.core.readiness import Heartbeat, Observed, Policy, epoch_of, evaluate, parse_heartbeat

NOW = 1_000.0
POLICY = Policy(heartbeat_ttl=30.0, reconcile_interval=10.0, heartbeats=("beat", "events"))


def buckets(**roles: Any) -> dict[str, Any]:
    return {"buckets": roles}


def test_a_healthy_system_says_what_is_alive_and_how_fresh() -> None:
    observed = Observed(
        workers={
            # Both reported at the same moment: the newest report wins, ties do not break it.
            "w-b": Heartbeat(who="w-b", at=995.0,
                             info=buckets(code={"name": "custom-bots", "exists": True},
                                          state={"name": "bot-state", "exists": False})),
            "w-a": Heartbeat(who="w-a", at=995.0,
                             info=buckets(code={"name": "custom-bots", "exists": True},
                                          state={"name": "bot-state", "exists": False})),
            "w-old": Heartbeat(who="w-old", at=970.0,
                               info=buckets(code={"name": "custom-bots", "exists": False})),
        },
        heartbeats={"beat": Heartbeat(who="beat-1", at=970.0),  # exactly the TTL old
                    "events": Heartbeat(who="events-1")},
        reconciles={"live": {"ok": True, "at": 995.0},
                    "scheduled": {"ok": False, "error": "mongo down", "last_ok_at": 985.0}},
    )
    assert evaluate(observed, POLICY, now=NOW).as_json() == {
        "ready": True,
        "failing": [],
        "checks": [
            {"name": "redis", "ok": True, "detail": "answers"},
            {"name": "workers", "ok": True, "detail": "3 alive: w-a, w-b, w-old"},
            {"name": "beat", "ok": True, "detail": "alive (beat-1, 30.0 s ago)"},
            {"name": "events", "ok": True, "detail": "alive (events-1)"},
            {"name": "code_bucket", "ok": True, "detail": "'custom-bots' exists"},
            {"name": "state_bucket", "ok": True,
             "detail": "state bucket 'bot-state' does not exist (STATE_BUCKET); it is created "
                       "on the first pod's signing, which needs the right to create buckets"},
            {"name": "reconcile:live", "ok": True, "detail": "last successful pass 5.0 s ago"},
            {"name": "reconcile:scheduled", "ok": True,
             "detail": "last successful pass 15.0 s ago; last pass failed: mongo down"},
        ],
    }


def test_a_failing_system_names_every_failure_and_goes_on_after_the_first() -> None:
    policy = Policy(heartbeat_ttl=30.0, reconcile_interval=10.0, heartbeats=("beat", "events"),
                    reconcile_kinds=("live", "scheduled", "old", "new"))
    observed = Observed(
        workers={"w1": Heartbeat(who="w1", at=900.0), "w2": Heartbeat(who="w2", at=969.0)},
        heartbeats={"beat": None, "events": Heartbeat(who="events-1", at=960.0)},
        reconciles={"live": None, "scheduled": {"ok": False}, "old": {"ok": True, "at": 900.0},
                    "new": {"ok": "yes", "at": 999.0, "error": "e" * 300}},
    )
    assert evaluate(observed, policy, now=NOW).as_json() == {
        "ready": False,
        "failing": ["workers", "beat", "events", "reconcile:live", "reconcile:scheduled",
                    "reconcile:old", "reconcile:new"],
        "checks": [
            {"name": "redis", "ok": True, "detail": "answers"},
            {"name": "workers", "ok": False,
             "detail": "no worker heartbeat within 30.0 s (2 stale)"},
            {"name": "beat", "ok": False, "detail": "no heartbeat within 30.0 s"},
            {"name": "events", "ok": False, "detail": "last heartbeat 40.0 s ago (> 30.0 s)"},
            {"name": "code_bucket", "ok": True, "detail": "not checked yet by a live worker"},
            {"name": "state_bucket", "ok": True, "detail": "not checked yet by a live worker"},
            {"name": "reconcile:live", "ok": False, "detail": "no reconcile pass recorded yet"},
            {"name": "reconcile:scheduled", "ok": False,
             "detail": "no successful pass recorded; last pass failed: unknown error"},
            {"name": "reconcile:old", "ok": False,
             "detail": "last successful pass 100.0 s ago (> 30.0 s)"},
            {"name": "reconcile:new", "ok": False,
             "detail": "no successful pass recorded; last pass failed: " + "e" * 200},
        ],
    }


def test_no_worker_at_all_is_said_without_a_stale_count() -> None:
    checks = evaluate(Observed(), POLICY, now=NOW).as_json()["checks"]
    assert checks[1] == {"name": "workers", "ok": False,
                         "detail": "no worker heartbeat within 30.0 s"}


def test_at_most_ten_live_workers_are_named() -> None:
    workers = {f"h{i:02d}": Heartbeat(who=f"h{i:02d}", at=NOW) for i in range(11)}
    workers_check = evaluate(Observed(workers=workers), POLICY, now=NOW).checks[1]
    assert workers_check.detail == ("11 alive: h00, h01, h02, h03, h04, h05, h06, h07, h08, "
                                    "h09")


def test_buckets_are_read_per_role_from_the_newest_live_report() -> None:
    workers = {
        "new": Heartbeat(who="new", at=999.0,
                         info=buckets(state={"exists": True},
                                      code={"name": "custom-bots", "exists": None,
                                            "error": "AccessDenied"})),
        "older": Heartbeat(who="older", at=990.0,
                           info=buckets(code={"name": "custom-bots", "exists": True})),
        "newest-without-report": Heartbeat(who="x", at=NOW, info={"buckets": "garbage"}),
    }
    policy = Policy(heartbeat_ttl=30.0, reconcile_interval=10.0, heartbeats=())
    by_name = {c.name: c for c in evaluate(Observed(workers=workers), policy, now=NOW).checks}
    assert (by_name["code_bucket"].ok, by_name["code_bucket"].detail) == (
        False, "code bucket 'custom-bots' could not be checked: AccessDenied")
    assert (by_name["state_bucket"].ok, by_name["state_bucket"].detail) == (True, "'' exists")
    only_state = {"w": Heartbeat(who="w", at=NOW,
                                 info=buckets(state={"name": "s", "exists": False}))}
    by_name = {c.name: c for c in evaluate(Observed(workers=only_state), policy, now=NOW).checks}
    assert by_name["code_bucket"].detail == "not checked yet by a live worker"
    assert by_name["state_bucket"].detail.startswith("state bucket 's' does not exist")
    unreadable = {"w": Heartbeat(who="w", at=NOW, info=buckets(code={"name": "c"}))}
    by_name = {c.name: c for c in evaluate(Observed(workers=unreadable), policy, now=NOW).checks}
    assert (by_name["code_bucket"].ok, by_name["code_bucket"].detail) == (
        False, "code bucket 'c' could not be checked: ")


def test_redis_down_fails_everything_with_that_reason() -> None:
    result = evaluate(Observed(redis_error="Connection refused"), POLICY, now=NOW)
    assert result.as_json()["checks"] == [
        {"name": "redis", "ok": False, "detail": "redis unavailable: Connection refused"},
        *({"name": name, "ok": False, "detail": "not checked: redis unavailable"}
          for name in ("workers", "beat", "events", "code_bucket", "state_bucket",
                       "reconcile:live", "reconcile:scheduled"))]


def test_events_off_is_said_as_passing() -> None:
    policy = Policy(heartbeat_ttl=30.0, reconcile_interval=10.0, events_off=True)
    by_name = {c.name: c for c in evaluate(Observed(), policy, now=NOW).checks}
    assert (by_name["events"].ok, by_name["events"].detail) == (
        True, "off: NATS_URL is not set; the periodic reconcile alone converges")


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"at": 12.5, "hostname": "w1", "pid": 7}',
     Heartbeat(who="w1", at=12.5, info={"at": 12.5, "hostname": "w1", "pid": 7})),
    ('{"identity": "e1", "who": "", "at": "1970-01-01T00:01:00Z"}',
     Heartbeat(who="e1", at=60.0,
               info={"identity": "e1", "who": "", "at": "1970-01-01T00:01:00Z"})),
    (b'{"at": 1}', Heartbeat(who="", at=1.0, info={"at": 1})),
    (b"old-\xffhost", Heartbeat(who="old-\ufffdhost")),
    (b"[1, 2]", Heartbeat(who="[1, 2]")),
])
def test_a_heartbeat_value_in_each_shape_it_is_written(raw: bytes | str,
                                                      expected: Heartbeat) -> None:
    assert parse_heartbeat(raw) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5.0), (2.5, 2.5), (True, None), ("", None), ("soon", None), ([1], None), (None, None),
    ("1970-01-01T00:00:10+00:00", 10.0), ("1970-01-01T00:00:10Z", 10.0),
])
def test_epoch_of(value: Any, expected: float | None) -> None:
    assert epoch_of(value) == expected
