"""Worker liveness and job leases: every few seconds a worker says it is alive and vouches for
the jobs it is running.

The beat scores the worker's name in `keys.WORKERS` (the API's readiness counts recent ones) and
renews the lease of every job in this process's `InFlight` registry, all on Redis's clock. A
worker that stops beating (killed, hung, cut off) lets its leases run out, and the recovery sweep
queues those jobs again; a job a live worker stopped working on without finishing it (a lost
write, a bug) is not in its registry, so its lease runs out the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from shared import keys, liveness, metrics
from shared.jobs import SyncJobStore

__all__ = ["Heartbeat", "InFlight"]

log = logging.getLogger(__name__)


class InFlight:
    """The jobs this worker process is running right now (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: set[str] = set()

    @contextmanager
    def holding(self, job_id: str) -> Iterator[None]:
        with self._lock:
            self._jobs.add(job_id)
        try:
            yield
        finally:
            with self._lock:
                self._jobs.discard(job_id)

    def snapshot(self) -> list[str]:
        with self._lock:
            return sorted(self._jobs)


class Heartbeat:
    def __init__(
        self, client: redis.Redis, store: SyncJobStore, in_flight: InFlight, *, name: str, interval: float, lease: float
    ) -> None:
        self.client = client
        self.store = store
        self.in_flight = in_flight
        self.name = name
        self.interval = interval
        self.lease = lease
        self._beat = client.register_script(liveness.BEAT.source)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> None:
        self._beat(keys=[keys.WORKERS], args=[self.name, liveness.FORGET_AFTER])
        self.store.renew_leases(self.name, self.in_flight.snapshot(), self.lease)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:  # keep beating once Redis is back
                metrics.count_redis_error("worker", exc)
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        try:
            self.client.zrem(keys.WORKERS, self.name)
        except redis.RedisError:  # pragma: no cover - Redis gone at shutdown
            log.warning("could not remove heartbeat of %s", self.name)
