"""Every Redis key, channel and queue name the service uses, in one place."""

from __future__ import annotations

__all__ = [
    "EVENTS_CHANNEL",
    "GROQ_BUDGET",
    "LIMITS_PREFIX",
    "OUTBOX",
    "PENDING",
    "PREFIX",
    "QUEUE",
    "RECOVERY_LOCK",
    "REVOCATIONS_CHANNEL",
    "TASK_NAME",
    "UNACKED",
    "UNACKED_INDEX",
    "WEBHOOK_DELIVERIES_DUE",
    "WEBHOOK_QUEUE",
    "WEBHOOK_TASK_NAME",
    "WORKERS",
    "api_key",
    "delivery",
    "delivery_attempts",
    "email",
    "idempotency",
    "job",
    "job_deliveries",
    "job_events",
    "owner_index",
    "refresh_family",
    "refresh_token",
    "revoked_family",
    "revoked_user",
    "user",
    "user_api_keys",
    "user_deliveries",
    "user_families",
    "user_webhooks",
    "webhook",
    "webhook_deliveries",
    "webhook_secret",
]

PREFIX = "tc"
#: Prefix of the rate limiter's keys; below it, `limits`' own sliding-window layout (api/limits.py).
LIMITS_PREFIX = f"{PREFIX}:limits"
#: The Celery queue (a Redis list of the same name) that checklist tasks travel on.
QUEUE = "checklists"
#: The task's registered name; the API enqueues by name and never imports `worker/`.
TASK_NAME = "checklists.generate"
#: Pub/sub channel carrying every job status change (long-polls, SSE and webhooks listen here).
EVENTS_CHANNEL = f"{PREFIX}:events"
#: Sorted set of worker names scored by their last heartbeat (Redis's clock, unix seconds).
WORKERS = f"{PREFIX}:workers"
#: Sorted set of every job that is not finished, scored by when the recovery sweep should next
#: look at it (Redis's clock): a running job's lease expiry, a delayed job's due time, a queued
#: job's next message check. Finished and deleted jobs leave it.
PENDING = f"{PREFIX}:jobs:pending"
#: Sorted set of job events that webhooks must be told about, `<job id>/<event id>`, scored by
#: when they happened (Redis's clock). Written in the same script as the change it records;
#: removed once the event's deliveries exist.
OUTBOX = f"{PREFIX}:webhooks:outbox"
#: The Celery queue webhook deliveries travel on, apart from checklists so that slow receivers never
#: delay checklist generation; and the delivery task's registered name.
WEBHOOK_QUEUE = "webhooks"
WEBHOOK_TASK_NAME = "webhooks.deliver"
#: Sorted set of webhook delivery ids still to be attempted, scored by when the recovery sweep
#: should next look at each (Redis's clock): its retry time, or when an attempt or a pushed task
#: message should have been seen through.
WEBHOOK_DELIVERIES_DUE = f"{PREFIX}:webhooks:due"
#: String held (with a TTL) by the one worker process currently running the recovery sweep.
RECOVERY_LOCK = f"{PREFIX}:recovery:lock"
#: kombu's Redis transport keeps messages delivered but not yet acknowledged in this hash
#: (delivery tag -> [message, exchange, routing key]) and indexes them by delivery time in this
#: sorted set. Their names are kombu's defaults; `shared.broker` is the one module that reads them.
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
#: Sorted set of Groq calls in the current budget window (`<id>:<estimated tokens>`, by Redis time).
GROQ_BUDGET = f"{PREFIX}:groq:budget"


def job(job_id: str) -> str:
    """Hash holding one job: owner, status, rev, doc (the public JSON), idx and idem."""
    return f"{PREFIX}:job:{job_id}"


def job_events(job_id: str) -> str:
    """Stream of a job's events (`type`, `rev`, and `doc` while the job is unfinished), written in
    the same script as each change; read by event streams (SSE) and webhook dispatch."""
    return f"{PREFIX}:job:{job_id}:events"


def owner_index(owner: str) -> str:
    """Sorted set (all scores 0) of `<created µs>:<job id>` members, for newest-first listing."""
    return f"{PREFIX}:owner:{owner}:jobs"


def idempotency(owner: str, key: str) -> str:
    """String `<job id>:<body fingerprint>` remembering one Idempotency-Key of one owner."""
    return f"{PREFIX}:idem:{owner}:{key}"


#: Pub/sub channel announcing ended logins (refresh-token families), deleted users and revoked API
#: keys, so every API process drops them from its local caches at once.
REVOCATIONS_CHANNEL = f"{PREFIX}:revocations"


def user(user_id: str) -> str:
    """Hash: email, password (Argon2id hash), created_at."""
    return f"{PREFIX}:user:{user_id}"


def email(normalised_email: str) -> str:
    """String: the user id registered with this (normalised) email."""
    return f"{PREFIX}:email:{normalised_email}"


def refresh_token(token_hash: str) -> str:
    """Hash: user, family, used ("1" once rotated). Expires with the token."""
    return f"{PREFIX}:refresh:{token_hash}"


def refresh_family(family: str) -> str:
    """Set of the token hashes one login's refresh chain has produced."""
    return f"{PREFIX}:family:{family}"


def user_families(user_id: str) -> str:
    """Set of a user's refresh-token families."""
    return f"{PREFIX}:user:{user_id}:families"


def user_webhooks(user_id: str) -> str:
    """Set of a user's standing webhook endpoint ids (jobs' events go to the outbox when not empty)."""
    return f"{PREFIX}:user:{user_id}:webhooks"


def api_key(key_hash: str) -> str:
    """Hash: user, id, name, prefix, created_at, last_used."""
    return f"{PREFIX}:apikey:{key_hash}"


def user_api_keys(user_id: str) -> str:
    """Hash: API key id -> key hash, for listing and revoking a user's keys."""
    return f"{PREFIX}:user:{user_id}:apikeys"


def revoked_family(family: str) -> str:
    """String present for one access-token lifetime after a login (refresh family) was ended: every
    access token whose `fam` claim names it is refused until then, when the last of them expires."""
    return f"{PREFIX}:revoked:family:{family}"


def revoked_user(user_id: str) -> str:
    """String present for one access-token lifetime after the account was deleted."""
    return f"{PREFIX}:revoked:user:{user_id}"


def webhook(endpoint_id: str) -> str:
    """Hash: one standing webhook endpoint (owner, url, events, enabled, secrets, failure state)."""
    return f"{PREFIX}:webhook:{endpoint_id}"


def webhook_secret(user_id: str) -> str:
    """Hash: the user's default webhook secret (signs per-job webhooks) and the previous one."""
    return f"{PREFIX}:user:{user_id}:webhook-secret"


def delivery(delivery_id: str) -> str:
    """Hash: one webhook delivery (one event to one target): its payload, state and schedule."""
    return f"{PREFIX}:delivery:{delivery_id}"


def delivery_attempts(delivery_id: str) -> str:
    """Hash: attempt number -> the attempt's log entry (JSON)."""
    return f"{PREFIX}:delivery:{delivery_id}:attempts"


def job_deliveries(job_id: str) -> str:
    """Sorted set (scores 0) of `<µs>:<delivery id>:<attempt>`: a job's delivery log, newest last."""
    return f"{PREFIX}:job:{job_id}:deliveries"


def webhook_deliveries(endpoint_id: str) -> str:
    """Sorted set (scores 0) of `<µs>:<delivery id>:<attempt>`: an endpoint's delivery log."""
    return f"{PREFIX}:webhook:{endpoint_id}:deliveries"


def user_deliveries(user_id: str) -> str:
    """Set of a user's webhook delivery ids (so that deleting the account deletes them)."""
    return f"{PREFIX}:user:{user_id}:deliveries"
