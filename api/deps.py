"""Dependencies of the api's routes: its settings, the Redis reader, and one bounded read.

Every Redis read of a request runs under ONE deadline (API_REDIS_TIMEOUT, connect included)
and the client never retries, so a dead, hung or unreachable Redis costs a request at most
that long: the answer is then "redis unavailable", never a hang.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import redis.asyncio as redis_async
from fastapi import Depends, Request
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from worker import keys
from worker.adapters.telemetry import HealthData, HealthReader
from worker.core.bot import BotKind
from worker.core.readiness import Observed, Policy
from worker.settings import ApiSettings

RECONCILE_KINDS = tuple(kind.value for kind in BotKind)


def redis_client(settings: ApiSettings) -> redis_async.Redis:
    timeout = settings.API_REDIS_TIMEOUT
    return redis_async.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout,
                                      socket_connect_timeout=timeout,
                                      retry=Retry(NoBackoff(), 0), health_check_interval=0)


def health_reader(client: redis_async.Redis) -> HealthReader:
    return HealthReader(client, kinds=RECONCILE_KINDS, heartbeats=keys.REQUIRED_HEARTBEATS)


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_reader(request: Request) -> HealthReader:
    reader: HealthReader = request.app.state.reader
    return reader


Settings = Annotated[ApiSettings, Depends(get_settings)]
Reader = Annotated[HealthReader, Depends(get_reader)]


def policy_of(settings: ApiSettings) -> Policy:
    events_off = settings.NATS_URL is None
    return Policy(heartbeat_ttl=settings.HEARTBEAT_TTL,
                  reconcile_interval=settings.RECONCILE_INTERVAL,
                  reconcile_intervals=settings.READY_RECONCILE_INTERVALS,
                  reconcile_kinds=RECONCILE_KINDS,
                  heartbeats=tuple(name for name in keys.REQUIRED_HEARTBEATS
                                   if not (events_off and name == "events")),
                  events_off=events_off, worker_queues=keys.QUEUES)


async def read_health(reader: HealthReader, settings: ApiSettings, *,
                      with_metrics: bool = False) -> HealthData:
    """Everything in one bounded read; a failure is reported, not raised."""
    try:
        async with asyncio.timeout(settings.API_REDIS_TIMEOUT):
            return await reader.read(with_metrics=with_metrics)
    except TimeoutError:
        error = f"no answer within {settings.API_REDIS_TIMEOUT:g} s"
    except (RedisError, OSError) as exc:
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return HealthData(observed=Observed(redis_error=error))
