"""Writes that carry finished work are retried until Redis takes them.

A checklist that cost a Groq call must not be dropped because Redis is restarting: the write is
retried with backoff for as long as Redis is away, and the task, so also the acknowledgement of
its message, waits meanwhile. Only a stopping worker gives up, a few seconds after it began to
stop; the job's lease then runs out and the recovery sweep queues it again.

This waits in the worker thread on purpose: with Redis away there is no broker to schedule a
countdown on, and the result exists only in this thread's memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from shared import metrics

__all__ = ["WriteAbandoned", "is_unavailable", "persist"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Backoff between attempts: from FIRST_DELAY, doubling, up to MAX_DELAY seconds.
FIRST_DELAY = 0.1
MAX_DELAY = 5.0


class WriteAbandoned(Exception):
    """The worker is stopping and Redis still does not take the write."""


def is_unavailable(error: redis.RedisError) -> bool:
    """Whether Redis could not take a command now but may later (as opposed to a bad command)."""
    return isinstance(
        error,
        redis.ConnectionError  # includes LOADING (BusyLoadingError) while it replays its AOF
        | redis.TimeoutError
        | redis.exceptions.ReadOnlyError
        | redis.exceptions.OutOfMemoryError
        | redis.exceptions.TryAgainError
        | redis.exceptions.MasterDownError,
    )


#: Once the worker is stopping, a write still waiting for Redis gets this many more seconds.
SHUTDOWN_GRACE = 5.0


def persist(
    write: Callable[[], T], *, what: str, stopping: threading.Event, clock: Callable[[], float] = time.monotonic
) -> T:
    """Run `write` until Redis takes it; raise `WriteAbandoned` if the worker stops first."""
    delay = FIRST_DELAY
    failures = 0
    give_up_at: float | None = None
    while True:
        try:
            result = write()
        except redis.RedisError as error:
            metrics.count_redis_error("worker", error)
            if not is_unavailable(error):
                raise
            failures += 1
            if failures == 1 or failures % 10 == 0:
                log.warning("Redis did not take %s (%s); retrying until it does", what, error)
            if stopping.is_set():
                give_up_at = clock() + SHUTDOWN_GRACE if give_up_at is None else give_up_at
                remaining = give_up_at - clock()
                if remaining <= 0:
                    raise WriteAbandoned(f"the worker stopped before Redis took {what}") from error
                time.sleep(min(delay, remaining))
            else:
                stopping.wait(delay)  # a stop ends the pause early; the grace counts from then
            delay = min(delay * 2, MAX_DELAY)
        else:
            if failures:
                log.info("Redis took %s after %d failed attempt(s)", what, failures)
            return result
