"""The API application factory: `python -m api.serve` runs it (uvicorn `--factory api.app:create_app`).

`create_app()` wires routes, dependencies, error handling, docs, logging and the observability
wrapper (`api.observability`); Redis, the event subscription and the Celery app object are created
in the lifespan (never at import) and closed on shutdown.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
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
from api.fastpath import FastPath
from api.limits import MultiplexedRedisStorage, RateLimiter
from api.observability import REQUEST_ID_HEADER, MetricsPage, Observed, TallyFlusher, mark_this_process_dead
from api.openapi import COMPONENTS
from api.problems import exception_handlers
from api.routes.auth import AuthController
from api.routes.checklists import ChecklistController
from api.routes.events import JobEventsController
from api.routes.health import live, metrics_page, ready
from api.routes.legacy import generate_checklist
from api.routes.webhooks import WebhookController, job_deliveries
from api.security import AccessControl, Network, security_headers
from api.service import ChecklistService
from api.streams import EventStreamService
from api.webhooks import WebhookService
from shared import keys
from shared.jobs import JobStore
from shared.observability import configure_logging
from shared.queue import TaskEnvelopes, create_celery
from shared.redis_mux import MultiplexedRedis
from shared.settings import Settings, get_settings
from shared.webhooks import WebhookStore

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _lifespan(settings: Settings, trusted_proxies: list[Network]):  # type: ignore[no-untyped-def]
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
            trusted_proxies=trusted_proxies,
            metrics=MetricsPage(link, live_window=settings.worker.lease, multiprocess_dir=_MULTIPROCESS_DIR),
            webhooks=webhooks,
        )
        flusher = TallyFlusher()
        flusher.start()
        # What start-up built lives as long as the process: the cycle collector need not walk it
        # again (its full passes over the libraries' objects were a measurable share of a request).
        gc.freeze()
        try:
            yield
        finally:
            await events.stop()
            await link.close()
            await pubsub_client.aclose()
            flusher.stop()
            mark_this_process_dead(_MULTIPROCESS_DIR)

    return lifespan


async def _load_revocations(accounts: AccountStore, revocations: RevocationCache) -> None:
    """Revocations made while this process was not subscribed (from then on they arrive as events)."""
    for revocation in await accounts.revoked():
        revocations.add(revocation)


#: Where prometheus-client keeps every API process's samples (set by `api.serve` before any import
#: of prometheus-client, which picks its mode then); None: one process, its own registry.
_MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def create_app(settings: Settings | None = None, *, fast_path: bool = True) -> Litestar:
    """The API application. `fast_path=False` leaves submit and poll to Litestar's routing alone
    (`api.fastpath`; tests compare the two)."""
    settings = settings or get_settings()
    configure_logging(settings)
    trusted_proxies = [ipaddress.ip_network(cidr, strict=False) for cidr in settings.limits.trusted_proxies]
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
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-API-Key",
                "Last-Event-ID",
                REQUEST_ID_HEADER,
            ],
            expose_headers=[
                "Location",
                REQUEST_ID_HEADER,
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            allow_credentials="*" not in settings.api.allowed_origins,
        )
    observed = Observed(trusted_proxies)
    app = Litestar(
        route_handlers=[
            AuthController,
            ChecklistController,
            JobEventsController,
            generate_checklist,
            WebhookController,
            job_deliveries,
            live,
            ready,
            metrics_page,
        ],
        middleware=[AccessControl()],
        before_send=[security_headers(settings.app.environment == "production"), observed.before_send],
        exception_handlers=exception_handlers(),
        lifespan=[_lifespan(settings, trusted_proxies)],
        openapi_config=openapi,
        cors_config=cors,
        request_max_body_size=settings.api.max_body_bytes,
        debug=settings.app.debug,
        # Logging is configured above (shared.observability), the same in every process: Litestar's
        # own set-up would replace the root handler with one in its own format.
        logging_config=None,
    )
    # Outside routing and error handling, as Litestar's OpenTelemetry middleware sits: every answer
    # (unknown paths, refusals by AccessControl) gets a request id, metrics and an access line.
    handler = FastPath(app).wrap(app.asgi_handler) if fast_path else app.asgi_handler
    app.asgi_handler = observed.wrap(handler)
    return app
