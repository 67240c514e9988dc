"""Per-process worker resources: built once per process, handed to tasks, closed at shutdown.

Celery's signals call `start()` and `stop()`; tasks get the resources through `current()`, which
builds them on first use should a task arrive before the start-up signal has run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from shared.jobs import SyncJobStore
from shared.settings import Settings, get_settings
from worker.budget import GroqBudget
from worker.heartbeat import Heartbeat
from worker.providers.base import ChecklistProvider
from worker.providers.offline.geo import gazetteer
from worker.providers.offline.offline import OfflineProvider
from worker.retry import RetryPolicy
from worker.service import JobProcessor

__all__ = ["WorkerRuntime", "build_runtime", "current", "start", "start_heartbeat", "stop"]

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    redis: redis.Redis
    processor: JobProcessor
    heartbeat: Heartbeat | None = None

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.processor.provider.close()
        self.redis.close()


def _provider(settings: Settings) -> ChecklistProvider:
    if settings.use_groq:
        from worker.providers.groq import GroqProvider  # noqa: PLC0415 - only loaded when used

        return GroqProvider(settings.groq)
    return OfflineProvider()


def build_runtime(settings: Settings) -> WorkerRuntime:
    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
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
        store=SyncJobStore(client, job_ttl=settings.jobs.ttl),
        provider=_provider(settings),
        policy=RetryPolicy.from_settings(settings.worker),
        fallback=fallback,
        budget=budget,
    )
    return WorkerRuntime(redis=client, processor=processor)


_lock = threading.Lock()
_runtime: WorkerRuntime | None = None


def start(settings: Settings) -> WorkerRuntime:
    global _runtime  # noqa: PLW0603 - the per-process resources
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(settings)
            if isinstance(_runtime.processor.provider, OfflineProvider) or _runtime.processor.fallback:
                gazetteer().warm()
            log.info("worker runtime ready: provider=%s", _runtime.processor.provider.name)
        return _runtime


def start_heartbeat(settings: Settings, hostname: str) -> None:
    """Announce this worker (main process only) until `stop()`."""
    runtime = start(settings)
    with _lock:
        if runtime.heartbeat is None:
            runtime.heartbeat = Heartbeat(runtime.redis, hostname, settings.worker.heartbeat_interval)
            runtime.heartbeat.start()


def current() -> WorkerRuntime:
    return _runtime or start(get_settings())


def stop() -> None:
    global _runtime  # noqa: PLW0603
    with _lock:
        if _runtime is not None:
            _runtime.close()
            _runtime = None
