"""`/status`: a JSON summary for humans and scripts — readiness with every check, the live
workers, the beat, the last pass of each kind (counts by action, bots by state), the last log
collection and the queues. No bot ids, no configuration."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Reader, Settings, policy_of, read_health
from worker.core.readiness import Heartbeat, epoch_of, evaluate, last_success_at

router = APIRouter()


def _age(at: float | None, now: float) -> float | None:
    return None if at is None else round(max(0.0, now - at), 3)


def _heartbeat(beat: Heartbeat | None, now: float) -> dict[str, Any] | None:
    if beat is None:
        return None
    age = beat.age(now)
    return {"who": beat.who, "age_s": None if age is None else round(age, 3),
            **{k: beat.info[k] for k in ("pid", "host", "started_at", "buckets")
               if k in beat.info}}


def _record(record: Mapping[str, Any] | None, now: float) -> dict[str, Any] | None:
    if record is None:
        return None
    return {**record, "age_s": _age(epoch_of(record.get("at")), now),
            "last_ok_age_s": _age(last_success_at(record), now)}


def _held(record: Mapping[str, str], now: float) -> dict[str, Any] | None:
    if not record:
        return None
    try:
        at: float | None = float(record.get("at", ""))
    except ValueError:
        at = None
    # No bot id here (/status names none): the worker's log says which bot.
    return {"count": int(record.get("count", "0") or 0), "kind": record.get("kind", ""),
            "age_s": _age(at, now)}


@router.get("/status")
async def status(reader: Reader, settings: Settings) -> JSONResponse:
    data = await read_health(reader, settings)
    now = time.time()
    observed = data.observed
    readiness = evaluate(observed, policy_of(settings), now=now)
    body: dict[str, Any] = {"ready": readiness.ready, "failing": readiness.failing,
                            "checks": [c.as_json() for c in readiness.checks], "now": now}
    if observed.redis_error is not None:
        body["redis_error"] = observed.redis_error
        return JSONResponse(body, status_code=503)
    logs = observed.logs
    body.update({
        "workers": [{"hostname": host, **(_heartbeat(beat, now) or {})}
                    for host, beat in sorted(observed.workers.items())],
        "heartbeats": {name: _heartbeat(beat, now) for name, beat in observed.heartbeats.items()},
        "reconcile": {kind: _record(rec, now) for kind, rec in observed.reconciles.items()},
        "logs": None if logs is None else {**logs, "age_s": _age(epoch_of(logs.get("at")), now)},
        "queues": data.queues,
        "unacked": data.unacked,
        "events": "off" if settings.NATS_URL is None else "on",
        # The global deletion budget held a removal within the last hour (DELETE_BUDGET).
        "deletions_held": _held(data.deletions_held, now),
        "settings": {"reconcile_interval_s": settings.RECONCILE_INTERVAL,
                     "heartbeat_ttl_s": settings.HEARTBEAT_TTL,
                     "ready_reconcile_intervals": settings.READY_RECONCILE_INTERVALS},
    })
    return JSONResponse(body)
