"""Liveness (/health: touches nothing) and readiness (/health/ready: Redis, workers, queue)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import resources_of
from api.routes.checklists import json_response
from shared import keys, liveness
from shared.redis_mux import RedisReplyError, RedisUnavailable

__all__ = ["live", "metrics", "ready"]

_LIVE = b'{"status":"ok"}'


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]
    workers_alive: int | None
    queue_depth: int | None


@get("/health", tags=["health"], summary="Liveness", sync_to_thread=False)
def live() -> Response[bytes]:
    return json_response(_LIVE)


@get("/health/ready", tags=["health"], summary="Readiness: Redis answers; workers and queue reported")
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    resources = resources_of(request)
    window = resources.settings.worker.lease  # a worker is alive for LEASE_BEATS intervals
    try:
        async with asyncio.timeout(2.0):
            # One script, so one round trip, and Redis's clock decides who beat recently.
            workers, depth = await resources.link.run_script(liveness.STATUS, [keys.WORKERS, keys.QUEUE], [window])
    except (RedisUnavailable, RedisReplyError, OSError, TimeoutError) as exc:
        reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
        body = Readiness(status="unavailable", checks={"redis": reason}, workers_alive=None, queue_depth=None)
        return json_response(msgspec.json.encode(body), 503)  # type: ignore[return-value]
    body = Readiness(status="ready", checks={"redis": "ok"}, workers_alive=int(workers), queue_depth=int(depth))
    return json_response(msgspec.json.encode(body))  # type: ignore[return-value]


@get("/metrics", tags=["health"], summary="Prometheus metrics of this API process", sync_to_thread=False)
def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
