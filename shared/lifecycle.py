"""A job's life cycle as pure functions: queued → running → succeeded | failed | canceled.

Each function takes a `Job` and returns the next one; storing it (atomically, against the
revision it was computed from) is the job store's business.
"""

from __future__ import annotations

import os
from datetime import datetime

import msgspec

from shared.schemas import TERMINAL_STATUSES, Checklist, Job, JobError, JobLinks, TripRequest, Usage, Waiting

__all__ = [
    "API_PREFIX",
    "add_usage",
    "cancel",
    "fail",
    "is_terminal",
    "links_for",
    "new_job",
    "new_job_id",
    "requeue",
    "start_attempt",
    "succeed",
    "wait_for_budget",
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


def add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    """The sum of two usage records (either may be missing)."""
    if more is None:
        return total
    if total is None:
        return more
    return Usage(
        calls=total.calls + more.calls,
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        reasoning_tokens=total.reasoning_tokens + more.reasoning_tokens,
        total_tokens=total.total_tokens + more.total_tokens,
    )


def wait_for_budget(job: Job, until: datetime) -> Job:
    """A queued job waits for the shared Groq budget until `until`: still queued, and says so."""
    return msgspec.structs.replace(job, status="queued", waiting=Waiting(reason="upstream_budget", until=until))


def start_attempt(job: Job, now: datetime) -> Job:
    """A worker begins an attempt: running, one more attempt, first start time kept, no longer waiting."""
    return msgspec.structs.replace(
        job, status="running", attempts=job.attempts + 1, started_at=job.started_at or now, waiting=None
    )


def requeue(job: Job, error: JobError, usage: Usage | None = None) -> Job:
    """An attempt failed and another is scheduled: back to queued, the last error kept for clients."""
    return msgspec.structs.replace(job, status="queued", error=error, waiting=None, usage=add_usage(job.usage, usage))


def succeed(job: Job, checklist: Checklist, now: datetime, usage: Usage | None = None) -> Job:
    return msgspec.structs.replace(
        job,
        status="succeeded",
        result=checklist,
        error=None,
        finished_at=now,
        waiting=None,
        usage=add_usage(job.usage, usage),
    )


def fail(job: Job, error: JobError, now: datetime, usage: Usage | None = None) -> Job:
    return msgspec.structs.replace(
        job, status="failed", error=error, finished_at=now, waiting=None, usage=add_usage(job.usage, usage)
    )


def cancel(job: Job, now: datetime) -> Job:
    return msgspec.structs.replace(job, status="canceled", finished_at=now, waiting=None)
