"""Worker liveness: each worker scores its hostname in a Redis sorted set every few seconds.

The API's readiness check counts the workers seen recently, so a deploy can tell that queued
work will be picked up, without a slow broadcast `inspect ping`.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from shared import keys

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)

#: Seconds after which a silent worker's entry is removed (it stops counting as alive far sooner).
_FORGET_AFTER = 3600


class Heartbeat:
    def __init__(self, client: redis.Redis, hostname: str, interval: float) -> None:
        self.client = client
        self.hostname = hostname
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> None:
        now = time.time()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.WORKERS, {self.hostname: now})
            # Workers that died without saying goodbye (SIGKILL) leave an entry; drop old ones.
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now - _FORGET_AFTER)
            pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:  # keep beating once Redis is back
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        try:
            self.client.zrem(keys.WORKERS, self.hostname)
        except redis.RedisError:  # pragma: no cover - Redis gone at shutdown
            log.warning("could not remove heartbeat of %s", self.hostname)
