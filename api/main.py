"""The api: `create_app(settings)` builds the FastAPI app; its lifespan opens one Redis client
with short timeouts and no retries.

    uvicorn --factory api.main:create_app --host 0.0.0.0 --port 8000

Routes: /healthz, /readyz (api.health), /metrics (api.metrics), /status (api.status).
It never imports Celery: everything it shows comes from Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import health, metrics, status
from api.deps import health_reader, redis_client
from worker.settings import ApiSettings, load_api_settings


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or load_api_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis_client(settings)
        app.state.reader = health_reader(client)
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(title="the0-k8s", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    for module in (health, metrics, status):
        app.include_router(module.router)
    return app
