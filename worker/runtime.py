"""Per-process worker resources: built once per process, handed to tasks, closed at shutdown.

Celery's signals call `start()` and `stop()`; tasks get the resources through `current()`, which
builds them on first use should a task arrive before the start-up signal has run. The worker's
main process also runs the heartbeat (liveness and job leases) and the recovery sweep.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import redis

from shared import keys
from shared.jobs import PendingJobs
from shared.queue import TaskEnvelopes, create_celery
from shared.settings import Settings, get_settings
from worker.budget import GroqBudget
from worker.heartbeat import Heartbeat
from worker.observability import MetricsServer
from worker.providers.base import ChecklistProvider
from worker.providers.offline.geo import gazetteer
from worker.providers.offline.offline import OfflineProvider
from worker.recovery import RecoverySweep
from worker.retry import RetryPolicy
from worker.service import JobProcessor
from worker.webhooks.delivery import Deliverer
from worker.webhooks.dispatch import DispatchingJobStore, WebhookDispatch
from worker.webhooks.store import SyncWebhookStore
from worker.webhooks.transport import SystemResolver, Transport

__all__ = ["WorkerRuntime", "begin_shutdown", "build_runtime", "current", "start", "start_heartbeat", "stop"]

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    settings: Settings
    redis: redis.Redis
    processor: JobProcessor
    deliverer: Deliverer
    dispatch: WebhookDispatch
    heartbeat: Heartbeat | None = None
    sweep: RecoverySweep | None = None
    metrics_server: MetricsServer | None = None

    def begin_shutdown(self) -> None:
        """The worker stops taking tasks: writes still waiting for Redis get a last grace period."""
        self.processor.stopping.set()

    def close(self) -> None:
        self.begin_shutdown()
        if self.sweep is not None:
            self.sweep.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.processor.provider.close()
        self.redis.close()


def _provider(settings: Settings) -> ChecklistProvider:
    if settings.use_groq:
        from worker.providers.groq import GroqProvider  # noqa: PLC0415 - only loaded when used

        return GroqProvider(settings.groq)
    return OfflineProvider()


def _webhooks(settings: Settings, client: redis.Redis) -> tuple[Deliverer, WebhookDispatch]:
    hooks = settings.webhooks
    envelopes = TaskEnvelopes(create_celery(settings), keys.WEBHOOK_TASK_NAME, keys.WEBHOOK_QUEUE)
    store = SyncWebhookStore(client, envelopes, ttl=settings.jobs.ttl, check_after=hooks.hold)
    transport = Transport(
        SystemResolver(),
        timeout=hooks.timeout,
        allow_http=hooks.allow_http,
        allow_private=hooks.allow_private,
        # Tests never reach beyond loopback, whatever a test's URLs or resolver say.
        loopback_only=settings.app.environment == "test",
    )
    return Deliverer(store, transport, hooks), WebhookDispatch(store)


def build_runtime(settings: Settings) -> WorkerRuntime:
    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    deliverer, dispatch = _webhooks(settings, client)
    fallback = OfflineProvider() if settings.use_groq and settings.worker.fallback == "offline" else None
    budget = None
    if settings.use_groq:
        groq = settings.groq
        budget = GroqBudget(
            client,
            requests=groq.requests_per_window,
            tokens=groq.tokens_per_window,
            tokens_per_call=groq.tokens_per_call,
            window=groq.budget_window,
        )
    processor = JobProcessor(
        store=DispatchingJobStore(client, job_ttl=settings.jobs.ttl, dispatch=dispatch),
        provider=_provider(settings),
        policy=RetryPolicy.from_settings(settings.worker),
        fallback=fallback,
        budget=budget,
        lease=settings.worker.lease,
    )
    return WorkerRuntime(settings=settings, redis=client, processor=processor, deliverer=deliverer, dispatch=dispatch)


_lock = threading.Lock()
_runtime: WorkerRuntime | None = None


def start(settings: Settings) -> WorkerRuntime:
    global _runtime  # noqa: PLW0603 - the per-process resources
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(settings)
            # Both providers reason from the gazetteer's facts: load its indexes before the first job.
            gazetteer().warm()
            log.info("worker runtime ready: provider=%s", _runtime.processor.provider.name)
        return _runtime


def start_heartbeat(settings: Settings, hostname: str) -> None:
    """Announce this worker and vouch for its jobs (main process only), take part in the recovery
    sweep and serve the process's metrics, until `stop()`."""
    runtime = start(settings)
    worker = settings.worker
    with _lock:
        if runtime.metrics_server is None:
            runtime.metrics_server = MetricsServer(settings)
            runtime.metrics_server.start()
        if runtime.heartbeat is None:
            runtime.heartbeat = Heartbeat(
                runtime.redis,
                runtime.processor.store,
                runtime.processor.in_flight,
                name=hostname,
                interval=worker.heartbeat_interval,
                lease=worker.lease,
            )
            runtime.heartbeat.start()
        if runtime.sweep is None:
            runtime.sweep = RecoverySweep(
                client=runtime.redis,
                pending=PendingJobs(runtime.redis, job_ttl=settings.jobs.ttl, check_after=worker.lease),
                envelopes=TaskEnvelopes(create_celery(settings)),
                name=f"{hostname}:{os.getpid()}",
                interval=worker.sweep_interval,
                lease=worker.lease,
                visibility_timeout=worker.visibility_timeout,
                max_attempts=worker.max_attempts,
                webhooks=runtime.dispatch,
            )
            runtime.sweep.start()


def begin_shutdown() -> None:
    if _runtime is not None:
        _runtime.begin_shutdown()


def current() -> WorkerRuntime:
    return _runtime or start(get_settings())


def stop() -> None:
    global _runtime  # noqa: PLW0603
    with _lock:
        if _runtime is not None:
            _runtime.close()
            _runtime = None
