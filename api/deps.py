"""What route handlers reach for: the per-process resources built in the app's lifespan.

Handlers take the `Request` and call `resources_of(request)` rather than declaring Litestar
dependencies: each injected dependency costs about as much as a Redis round trip on this path
(measured; README "Performance"), and these are plain per-process singletons anyway.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from litestar import Request

from api.auth.principals import Authenticator, Principal
from api.auth.service import AuthService
from api.events import JobEventHub
from api.limits import QuotaGuard, RateLimiter
from api.observability import MetricsPage
from api.security import QUOTA_STATE_KEY
from api.service import ChecklistService
from api.streams import EventStreamService
from api.webhooks import WebhookService
from shared.errors import MalformedBody, UnsupportedMediaType
from shared.observability import LogContext
from shared.redis_mux import MultiplexedRedis
from shared.settings import Settings

__all__ = ["Resources", "json_body", "log_context_of", "owner_of", "principal_of", "quota_of", "resources_of"]


@dataclass
class Resources:
    settings: Settings
    link: MultiplexedRedis
    events: JobEventHub
    checklists: ChecklistService
    streams: EventStreamService
    auth: AuthService
    authenticator: Authenticator
    limiter: RateLimiter
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    metrics: MetricsPage
    webhooks: WebhookService


def resources_of(request: Request[Any, Any, Any]) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def log_context_of(request: Request[Any, Any, Any]) -> LogContext:
    """The request's id and what its log lines name (set by `api.observability.Observed`)."""
    context: LogContext = request.scope["state"]["log_context"]
    return context


def quota_of(request: Request[Any, Any, Any]) -> QuotaGuard:
    """The request's quota, for its handler to spend in its own Redis script (routes with
    `opt["quota_in_script"]`; set by `api.security.AccessControl`)."""
    guard: QuotaGuard = request.scope["state"][QUOTA_STATE_KEY]
    return guard


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """Who the request acts for (set by `api.security.AccessControl`)."""
    principal: Principal = request.scope["user"]
    return principal


def owner_of(request: Request[Any, Any, Any]) -> str:
    """Whose jobs the request may see: an API key acts for the user who made it."""
    return principal_of(request).user_id


async def json_body(request: Request[Any, Any, Any]) -> bytes:
    """The raw body of a JSON request (size already bounded by the app's body limit)."""
    content_type = request.headers.get("content-type", "application/json")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {media_type!r}")
    body = await request.body()
    if not body:
        raise MalformedBody("the request body is empty; send a JSON object")
    return body
