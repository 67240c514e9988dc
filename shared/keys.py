"""Every Redis key, channel and queue name the service uses, in one place."""

from __future__ import annotations

__all__ = [
    "EVENTS_CHANNEL",
    "PREFIX",
    "QUEUE",
    "TASK_NAME",
    "WORKERS",
    "idempotency",
    "job",
    "owner_index",
]

PREFIX = "tc"
#: The Celery queue (a Redis list of the same name) that checklist tasks travel on.
QUEUE = "checklists"
#: The task's registered name; the API enqueues by name and never imports `worker/`.
TASK_NAME = "checklists.generate"
#: Pub/sub channel carrying every job status change (long-polls, SSE and webhooks listen here).
EVENTS_CHANNEL = f"{PREFIX}:events"
#: Sorted set of worker hostnames scored by their last heartbeat (unix seconds).
WORKERS = f"{PREFIX}:workers"


def job(job_id: str) -> str:
    """Hash holding one job: owner, status, rev, doc (the public JSON), idx and idem."""
    return f"{PREFIX}:job:{job_id}"


def owner_index(owner: str) -> str:
    """Sorted set (all scores 0) of `<created µs>:<job id>` members, for newest-first listing."""
    return f"{PREFIX}:owner:{owner}:jobs"


def idempotency(owner: str, key: str) -> str:
    """String `<job id>:<body fingerprint>` remembering one Idempotency-Key of one owner."""
    return f"{PREFIX}:idem:{owner}:{key}"
