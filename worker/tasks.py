"""Celery tasks: thin wrappers that take a job id and hand it to the job processor."""

from __future__ import annotations

import logging

import redis
from celery import Task

from shared import keys, metrics
from worker import runtime
from worker.celery_app import app
from worker.service import RetryIn

__all__ = ["generate_checklist"]

log = logging.getLogger(__name__)


@app.task(name=keys.TASK_NAME, bind=True, Request="worker.observability:JobRequest")
def generate_checklist(self: Task, job_id: str) -> str:  # type: ignore[type-arg]
    """Write the checklist for job `job_id`; retries are scheduled by the job store (`worker.service`)."""
    try:
        outcome = runtime.current().processor.process(job_id, worker=str(self.request.hostname))
    except redis.RedisError as exc:
        # Nothing is lost: the job is queued or held by a lease, and the recovery sweep sees to it.
        metrics.count_redis_error("worker", exc)
        log.warning("job %s not processed, Redis is unavailable: %s", job_id, exc)
        return "redis_unavailable"
    if isinstance(outcome, RetryIn):
        return f"queued: {outcome.reason} in {outcome.seconds:.2f}s"
    return outcome.status
