"""What route handlers receive: the per-process resources built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio
from litestar import Request
from litestar.datastructures import State

from api.events import JobEventHub
from api.service import ChecklistService
from shared.errors import MalformedBody, UnsupportedMediaType
from shared.settings import Settings

__all__ = ["LOCAL_OWNER", "Resources", "json_body", "provide_owner", "provide_resources", "provide_service"]

#: The single owner of every job until accounts exist; the store is owner-scoped already.
LOCAL_OWNER = "local"


@dataclass
class Resources:
    settings: Settings
    redis: redis.asyncio.Redis
    events: JobEventHub
    checklists: ChecklistService


def provide_resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


def provide_service(state: State) -> ChecklistService:
    return provide_resources(state).checklists


def provide_owner() -> str:
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
