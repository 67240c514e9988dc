"""A job's life cycle as pure functions: queued → running → succeeded | failed | canceled.

Each function takes a `Job` and returns the next one; storing it (atomically, against the
revision it was computed from) is the job store's business.
"""

from __future__ import annotations

import os
from datetime import datetime

import msgspec

from shared.schemas import TERMINAL_STATUSES, Checklist, Job, JobError, JobLinks, TripRequest

__all__ = [
    "API_PREFIX",
    "cancel",
    "fail",
    "is_terminal",
    "links_for",
    "new_job",
    "new_job_id",
    "requeue",
    "start_attempt",
    "succeed",
]

API_PREFIX = "/api/v1/checklists"


def new_job_id() -> str:
    """32 random hex characters (128 bits), like a uuid4's hex without building the UUID."""
    return os.urandom(16).hex()


def links_for(job_id: str) -> JobLinks:
    return JobLinks(self_=f"{API_PREFIX}/{job_id}", cancel=f"{API_PREFIX}/{job_id}/cancel")


def new_job(job_id: str, request: TripRequest, now: datetime) -> Job:
    return Job(id=job_id, status="queued", created_at=now, attempts=0, request=request, links=links_for(job_id))


def is_terminal(job: Job) -> bool:
    return job.status in TERMINAL_STATUSES


def start_attempt(job: Job, now: datetime) -> Job:
    """A worker begins an attempt: running, one more attempt, first start time kept."""
    return msgspec.structs.replace(job, status="running", attempts=job.attempts + 1, started_at=job.started_at or now)


def requeue(job: Job, error: JobError) -> Job:
    """An attempt failed and another is scheduled: back to queued, the last error kept for clients."""
    return msgspec.structs.replace(job, status="queued", error=error)


def succeed(job: Job, checklist: Checklist, now: datetime) -> Job:
    return msgspec.structs.replace(job, status="succeeded", result=checklist, error=None, finished_at=now)


def fail(job: Job, error: JobError, now: datetime) -> Job:
    return msgspec.structs.replace(job, status="failed", error=error, finished_at=now)


def cancel(job: Job, now: datetime) -> Job:
    return msgspec.structs.replace(job, status="canceled", finished_at=now)
