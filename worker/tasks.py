"""Celery tasks: thin wrappers that take a job id and hand it to the job processor."""

from __future__ import annotations

from celery import Task

from shared import keys
from worker import runtime
from worker.celery_app import app
from worker.service import RetryIn

__all__ = ["generate_checklist"]


@app.task(name=keys.TASK_NAME, bind=True, max_retries=None)
def generate_checklist(self: Task, job_id: str) -> str:  # type: ignore[type-arg]
    """Write the checklist for job `job_id`; the retry policy lives in `worker.retry`."""
    outcome = runtime.current().processor.process(job_id)
    if isinstance(outcome, RetryIn):
        # A countdown, not a sleep: the message waits in the broker/ETA queue, the slot is freed.
        raise self.retry(countdown=outcome.seconds)
    return outcome.status
