"""What route handlers reach for: the per-process resources built in the app's lifespan.

Handlers take the `Request` and call `resources_of(request)` rather than declaring Litestar
dependencies: each injected dependency costs about as much as a Redis round trip on this path
(measured; README "Performance"), and these are plain per-process singletons anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio
from litestar import Request

from api.events import JobEventHub
from api.service import ChecklistService
from shared.errors import MalformedBody, UnsupportedMediaType
from shared.redis_mux import MultiplexedRedis
from shared.settings import Settings

__all__ = ["LOCAL_OWNER", "Resources", "json_body", "owner_of", "resources_of"]

#: The single owner of every job until accounts exist; the store is owner-scoped already.
LOCAL_OWNER = "local"


@dataclass
class Resources:
    settings: Settings
    link: MultiplexedRedis
    pubsub_client: redis.asyncio.Redis
    events: JobEventHub
    checklists: ChecklistService


def resources_of(request: Request[Any, Any, Any]) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def owner_of(request: Request[Any, Any, Any]) -> str:
    """Who the request acts for."""
    return LOCAL_OWNER


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
