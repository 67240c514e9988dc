"""The delivery task, on its own queue (`keys.WEBHOOK_QUEUE`): thin, takes a delivery id."""

from __future__ import annotations

import logging

import redis

from shared import keys, metrics
from worker import runtime
from worker.celery_app import app

__all__ = ["deliver_webhook"]

log = logging.getLogger(__name__)


@app.task(name=keys.WEBHOOK_TASK_NAME)
def deliver_webhook(delivery_id: str) -> str:
    """Attempt delivery `delivery_id` once; retries are due times in Redis, never a wait here."""
    try:
        return runtime.current().deliverer.run(delivery_id)
    except redis.RedisError as exc:
        # Nothing is lost: the delivery is due in Redis (or held, then due), and the sweep resends it.
        metrics.count_redis_error("worker", exc)
        log.warning("webhook delivery %s not attempted, Redis is unavailable: %s", delivery_id, exc)
        return "redis_unavailable"
