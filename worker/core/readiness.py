"""Readiness: which health checks pass, decided from plain values and `now`.

PURE: no Redis, no clock. The api reads the heartbeat keys and the last-pass records from
Redis (`worker.adapters.telemetry.HealthReader`) and calls `evaluate`. Every check returns one
or more `Check`s with a name and a human-readable detail, so a 503 names what is wrong.

Extending: a new process with a heartbeat (e.g. the NATS events consumer) needs no code here —
write its key with a TTL (`worker.telemetry.write_heartbeat`) and add `name → key` to
`worker.keys.REQUIRED_HEARTBEATS`; it becomes a check named `name`. A check of another shape
is a function `(Observed, Policy, now) → list[Check]` appended to `CHECKS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.core.buckets import BucketCheck, bucket_problem


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """One heartbeat as stored. `at` (epoch s) is None when the value carried no time — the
    key's existence (it has a TTL) then is the only evidence of life."""

    who: str
    at: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def age(self, now: float) -> float | None:
        return None if self.at is None else max(0.0, now - self.at)


def parse_heartbeat(raw: bytes | str | None) -> Heartbeat | None:
    """A heartbeat value: JSON `{"at": epoch_s, "who"|"hostname"|"identity": …}`, or any
    other text (an identity written by an older process). None when the key is gone."""
    if raw is None:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text)
    except ValueError:
        return Heartbeat(who=text)
    if not isinstance(data, dict):
        return Heartbeat(who=text)
    who = next((str(data[k]) for k in ("who", "hostname", "identity") if data.get(k)), "")
    return Heartbeat(who=who, at=epoch_of(data.get("at")), info=data)


def epoch_of(value: Any) -> float | None:
    """Epoch seconds from a number or an RFC 3339 text; None when neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def parse_record(raw: bytes | str | None) -> dict[str, Any] | None:
    """A JSON record (last reconcile, last log collection); None when absent or unreadable."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, kw_only=True)
class Observed:
    """What the api read, all in one go. `redis_error` set → nothing else could be read."""

    redis_error: str | None = None
    workers: Mapping[str, Heartbeat] = field(default_factory=dict)  # hostname → heartbeat
    heartbeats: Mapping[str, Heartbeat | None] = field(default_factory=dict)  # name → one
    reconciles: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)  # kind →
    logs: Mapping[str, Any] | None = None  # last log collection, when one is recorded


@dataclass(frozen=True, kw_only=True)
class Policy:
    heartbeat_ttl: float                 # a heartbeat older than this is stale (s)
    reconcile_interval: float            # RECONCILE_INTERVAL (s)
    reconcile_intervals: float = 3.0     # a successful pass must be this many intervals fresh
    reconcile_kinds: tuple[str, ...] = ("live", "scheduled")
    heartbeats: tuple[str, ...] = ("beat",)  # singleton heartbeats that must be fresh
    events_off: bool = False  # NATS_URL unset: no events consumer is expected (said, not checked)
    bucket_roles: tuple[str, ...] = ("code", "state")  # buckets the workers report on
    worker_queues: tuple[str, ...] = ()  # each must be taken by a live worker


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: tuple[Check, ...]

    @property
    def failing(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def as_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "failing": self.failing,
                "checks": [c.as_json() for c in self.checks]}


CheckFn = Callable[[Observed, Policy, float], list[Check]]


def _fresh(beat: Heartbeat, policy: Policy, now: float) -> bool:
    age = beat.age(now)
    return age is None or age <= policy.heartbeat_ttl


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def check_redis(observed: Observed, policy: Policy, now: float) -> list[Check]:
    if observed.redis_error is not None:
        return [Check("redis", False, f"redis unavailable: {observed.redis_error}")]
    return [Check("redis", True, "answers")]


def _takes(beat: Heartbeat, queue: str) -> bool:
    """A heartbeat that does not list its queues (an older worker's) counts for every queue."""
    queues = beat.info.get("queues")
    return not isinstance(queues, list) or queue in queues


def check_workers(observed: Observed, policy: Policy, now: float) -> list[Check]:
    fresh = sorted(host for host, beat in observed.workers.items()
                   if _fresh(beat, policy, now))
    untaken = [queue for queue in policy.worker_queues
               if not any(_takes(observed.workers[host], queue) for host in fresh)]
    if fresh and untaken:  # e.g. the log worker alive, every reconciling worker gone
        return [Check("workers", False,
                      f"no live worker takes the {', '.join(untaken)} queue"
                      f"{'s' if len(untaken) > 1 else ''}; alive: {', '.join(fresh[:10])}")]
    if fresh:
        return [Check("workers", True, f"{len(fresh)} alive: {', '.join(fresh[:10])}")]
    stale = len(observed.workers)
    return [Check("workers", False,
                  f"no worker heartbeat within {_seconds(policy.heartbeat_ttl)}"
                  + (f" ({stale} stale)" if stale else ""))]


def check_heartbeats(observed: Observed, policy: Policy, now: float) -> list[Check]:
    checks = []
    for name in policy.heartbeats:
        beat = observed.heartbeats.get(name)
        if beat is None:
            checks.append(Check(name, False,
                                f"no heartbeat within {_seconds(policy.heartbeat_ttl)}"))
            continue
        age = beat.age(now)
        if age is not None and age > policy.heartbeat_ttl:
            checks.append(Check(name, False, f"last heartbeat {_seconds(age)} ago "
                                             f"(> {_seconds(policy.heartbeat_ttl)})"))
            continue
        when = "" if age is None else f", {_seconds(age)} ago"
        checks.append(Check(name, True, f"alive ({beat.who}{when})"))
    return checks


def check_events_off(observed: Observed, policy: Policy, now: float) -> list[Check]:
    if not policy.events_off:
        return []  # the events heartbeat is one of policy.heartbeats
    return [Check("events", True, "off: NATS_URL is not set; the periodic reconcile alone "
                                  "converges")]


def check_buckets(observed: Observed, policy: Policy, now: float) -> list[Check]:
    """Each bucket as the freshest worker that checked it saw it: a missing code bucket means
    every bot gets `code_not_found`, so it fails readiness and says which bucket to set."""
    reports = sorted(((beat.at or 0.0, beat.info["buckets"]) for beat in observed.workers.values()
                      if _fresh(beat, policy, now) and isinstance(beat.info.get("buckets"), dict)),
                     key=lambda report: report[0])
    checks = []
    for role in policy.bucket_roles:
        name = f"{role}_bucket"
        seen = reports[-1][1].get(role) if reports else None
        if not isinstance(seen, dict):
            checks.append(Check(name, True, "not checked yet by a live worker"))
            continue
        check = BucketCheck(name=str(seen.get("name", "")), exists=seen.get("exists"),
                            error=str(seen.get("error", "")))
        problem = bucket_problem(role, check)
        # A state bucket is created on first use: missing is said, not a failure.
        ok = problem is None or (role == "state" and check.exists is False)
        checks.append(Check(name, ok, problem or f"{check.name!r} exists"))
    return checks


def last_success_at(record: Mapping[str, Any]) -> float | None:
    """When the last successful pass ended: `last_ok_at`, or `at` of a successful record."""
    last_ok = epoch_of(record.get("last_ok_at"))
    if last_ok is None and record.get("ok") is True:
        last_ok = epoch_of(record.get("at"))
    return last_ok


def check_reconciles(observed: Observed, policy: Policy, now: float) -> list[Check]:
    """A successful pass of each kind within `reconcile_intervals` intervals. One failed pass
    (a Mongo blip) does not flip readiness; three intervals without a success do."""
    window = policy.reconcile_intervals * policy.reconcile_interval
    checks = []
    for kind in policy.reconcile_kinds:
        name = f"reconcile:{kind}"
        record = observed.reconciles.get(kind)
        if record is None:
            checks.append(Check(name, False, "no reconcile pass recorded yet"))
            continue
        last_ok = last_success_at(record)
        failed = "" if record.get("ok") is True else (
            f"; last pass failed: {str(record.get('error') or 'unknown error')[:200]}")
        if last_ok is None:
            checks.append(Check(name, False, "no successful pass recorded" + failed))
            continue
        age = max(0.0, now - last_ok)
        if age > window:
            checks.append(Check(name, False, f"last successful pass {_seconds(age)} ago "
                                             f"(> {_seconds(window)}){failed}"))
            continue
        checks.append(Check(name, True, f"last successful pass {_seconds(age)} ago{failed}"))
    return checks


CHECKS: tuple[CheckFn, ...] = (check_redis, check_workers, check_heartbeats, check_events_off,
                               check_buckets, check_reconciles)


def evaluate(observed: Observed, policy: Policy, *, now: float,
             checks: Sequence[CheckFn] = CHECKS) -> Readiness:
    """Ready only when every check passes. With Redis unreachable nothing else is known: every
    other check fails with that reason (a 503 must never rest on stale or partial reads)."""
    results: list[Check] = []
    for check in checks:
        if check is not check_redis and observed.redis_error is not None:
            continue
        results.extend(check(observed, policy, now))
    if observed.redis_error is not None:
        results.extend(Check(name, False, "not checked: redis unavailable")
                       for name in ("workers", *policy.heartbeats,
                                    *(f"{role}_bucket" for role in policy.bucket_roles),
                                    *(f"reconcile:{k}" for k in policy.reconcile_kinds)))
    return Readiness(ready=bool(results) and all(c.ok for c in results), checks=tuple(results))
