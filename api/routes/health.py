"""Liveness (/health: touches nothing), readiness (/health/ready: Redis, workers, queue), metrics
(/metrics: every API process's, and the queues and workers as Redis sees them; `api.observability`)."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth.service import log_auth_failure
from api.deps import resources_of
from api.problems import problem_responses
from api.routes.checklists import json_response
from api.security import client_address
from shared import keys, liveness, metrics
from shared.errors import AuthenticationFailed
from shared.redis_mux import RedisReplyError, RedisUnavailable

__all__ = ["live", "metrics_page", "ready"]

_LIVE = b'{"status":"ok"}'


class Liveness(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    """`checks` names each dependency with `ok` or what went wrong; the counts are null when unknown."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    workers_alive: int | None
    queue_depth: int | None


@get("/health", operation_id="live", tags=["health"], summary="Liveness", sync_to_thread=False)
def live() -> Response[Liveness]:
    return json_response(_LIVE)


@get(
    "/health/ready",
    operation_id="ready",
    tags=["health"],
    summary="Readiness: Redis answers; workers and queue reported",
    responses={
        HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
            Readiness, description="Not ready: the failing check is named", generate_examples=False
        )
    },
)
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    resources = resources_of(request)
    window = resources.settings.worker.lease  # a worker is alive for LEASE_BEATS intervals
    try:
        async with asyncio.timeout(2.0):
            # One script, so one round trip, and Redis's clock decides who beat recently.
            workers, depth = await resources.link.run_script(liveness.STATUS, [keys.WORKERS, keys.QUEUE], [window])
    except (RedisUnavailable, RedisReplyError, OSError, TimeoutError) as exc:
        metrics.count_redis_error("api", exc)
        reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
        body = Readiness(status="unavailable", checks={"redis": reason}, workers_alive=None, queue_depth=None)
        return json_response(msgspec.json.encode(body), HTTP_503_SERVICE_UNAVAILABLE)
    body = Readiness(status="ready", checks={"redis": "ok"}, workers_alive=int(workers), queue_depth=int(depth))
    return json_response(msgspec.json.encode(body))


@get(
    "/metrics",
    operation_id="metrics",
    tags=["health"],
    summary="Prometheus metrics of the API (all its processes), the queues and the workers",
    description="The Prometheus text exposition format. Never rate-limited. When `METRICS_TOKEN` is set "
    "(required in production) it must come as `Authorization: Bearer <METRICS_TOKEN>`.",
    media_type=CONTENT_TYPE_LATEST,
    responses=problem_responses(AuthenticationFailed),
)
async def metrics_page(request: Request[Any, Any, Any]) -> Response[str]:
    resources = resources_of(request)
    token = resources.settings.observability.metrics_token
    if token is not None:
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            log_auth_failure("invalid_metrics_token", client_address(request.scope, resources.trusted_proxies))
            raise AuthenticationFailed("/metrics needs Authorization: Bearer <METRICS_TOKEN>", "invalid_metrics_token")
    return Response((await resources.metrics.render()).decode(), media_type=CONTENT_TYPE_LATEST)
