"""`/healthz` (the process serves) and `/readyz` (the system works: Redis answers, a worker and
the beat are alive, each kind of reconcile succeeded recently). A 503 names each failing check.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Reader, Settings, policy_of, read_health
from worker.core.readiness import evaluate

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(reader: Reader, settings: Settings) -> JSONResponse:
    data = await read_health(reader, settings)
    readiness = evaluate(data.observed, policy_of(settings), now=time.time())
    return JSONResponse(readiness.as_json(), status_code=200 if readiness.ready else 503)
