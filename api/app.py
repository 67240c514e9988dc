"""The API application factory: `uvicorn --factory api.app:create_app`.

`create_app()` wires routes, dependencies, error handling and docs; Redis, the event subscription
and the Celery app object are created in the lifespan (never at import) and closed on shutdown.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig

from api.auth.passwords import PasswordHashing
from api.auth.principals import Authenticator, RevocationCache
from api.auth.service import AuthService
from api.auth.store import AccountStore
from api.auth.tokens import TokenSigner
from api.deps import Resources
from api.docs import OfflineSwaggerUI
from api.events import JobEventHub
from api.limits import MultiplexedRedisStorage, RateLimiter
from api.openapi import COMPONENTS
from api.problems import exception_handlers
from api.routes.auth import AuthController
from api.routes.checklists import ChecklistController
from api.routes.events import JobEventsController
from api.routes.health import live, metrics, ready
from api.routes.legacy import generate_checklist
from api.routes.webhooks import WebhookController, job_deliveries
from api.security import AccessControl, security_headers
from api.service import ChecklistService
from api.streams import EventStreamService
from api.webhooks import WebhookService
from shared import keys
from shared.jobs import JobStore
from shared.queue import TaskEnvelopes, create_celery
from shared.redis_mux import MultiplexedRedis
from shared.settings import Settings, get_settings
from shared.webhooks import WebhookStore

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _lifespan(settings: Settings):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        link = MultiplexedRedis(settings.redis_url)  # request path: one multiplexed connection
        pubsub_client = redis.asyncio.Redis.from_url(settings.redis_url, health_check_interval=30)
        revocations = RevocationCache(time.time, settings.auth.access_token_ttl)
        accounts = AccountStore(link)
        events = JobEventHub(
            pubsub_client,
            {keys.REVOCATIONS_CHANNEL: revocations.on_message},
            on_subscribed=lambda: _load_revocations(accounts, revocations),
        )
        await events.start()
        limiter = RateLimiter(MultiplexedRedisStorage(link))
        signer = TokenSigner(
            settings.app.secret_key,
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            ttl=settings.auth.access_token_ttl,
            previous_secret=settings.auth.previous_secret_key,
            clock=time.time,
        )
        store = JobStore(
            link,
            job_ttl=settings.jobs.ttl,
            idempotency_ttl=settings.jobs.idempotency_ttl,
            check_after=settings.worker.lease,
        )
        celery = create_celery(settings)
        webhooks = WebhookService(
            store=WebhookStore(link, ttl=settings.jobs.ttl, check_after=settings.webhooks.hold),
            jobs=store,
            envelopes=TaskEnvelopes(celery, keys.WEBHOOK_TASK_NAME, keys.WEBHOOK_QUEUE),
            settings=settings.webhooks,
        )
        auth = AuthService(
            accounts, signer, PasswordHashing(), limiter, settings, time.time, revocations, store, webhooks.delete_owner
        )
        checklists = ChecklistService(store=store, events=events, envelopes=TaskEnvelopes(celery))
        app.state.resources = Resources(
            settings=settings,
            link=link,
            events=events,
            checklists=checklists,
            streams=EventStreamService(checklists, heartbeat=settings.api.sse_heartbeat),
            auth=auth,
            authenticator=Authenticator(signer, accounts, revocations, settings.auth.api_key_cache_ttl),
            limiter=limiter,
            trusted_proxies=[ipaddress.ip_network(cidr, strict=False) for cidr in settings.limits.trusted_proxies],
            webhooks=webhooks,
        )
        try:
            yield
        finally:
            await events.stop()
            await link.close()
            await pubsub_client.aclose()

    return lifespan


async def _load_revocations(accounts: AccountStore, revocations: RevocationCache) -> None:
    """Revocations made while this process was not subscribed (from then on they arrive as events)."""
    for revocation in await accounts.revoked():
        revocations.add(revocation)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.app.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    openapi = None
    if settings.api.docs_enabled:
        openapi = OpenAPIConfig(
            title="Trip Checklist API",
            version="1.0.0",
            description="Trip details in, a prioritized, categorized preparation checklist out.",
            path="/schema",
            components=COMPONENTS,
            render_plugins=[OfflineSwaggerUI(path="/swagger")],
        )
    cors = None
    if settings.api.allowed_origins:
        cors = CORSConfig(
            allow_origins=list(settings.api.allowed_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key", "Last-Event-ID"],
            expose_headers=[
                "Location",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            allow_credentials="*" not in settings.api.allowed_origins,
        )
    return Litestar(
        route_handlers=[
            AuthController,
            ChecklistController,
            JobEventsController,
            generate_checklist,
            WebhookController,
            job_deliveries,
            live,
            ready,
            metrics,
        ],
        middleware=[AccessControl()],
        before_send=[security_headers(settings.app.environment == "production")],
        exception_handlers=exception_handlers(),
        lifespan=[_lifespan(settings)],
        openapi_config=openapi,
        cors_config=cors,
        request_max_body_size=settings.api.max_body_bytes,
        debug=settings.app.debug,
    )
