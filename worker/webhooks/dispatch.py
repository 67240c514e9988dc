"""Job events become deliveries: the recovery sweep's part, and a worker's fast path.

Every change of a job is recorded, in the script that makes it, on the job's event stream and, when
a webhook may want it, in `keys.OUTBOX` (`shared.job_scripts`). From there:

- the recovery sweep (one worker process at a time, every second at most) expands outbox events
  into delivery records, one per matching endpoint and one for the job's own webhook, and pushes
  their task messages, removing the outbox entry in the same script; it also pushes the messages
  of deliveries whose retry time has come, or whose attempt or message was lost with a crash;
- a worker that has just changed a job expands that job's events at once (`DispatchingJobStore`),
  so that a delivery is not a sweep tick late. Both may race: delivery ids are deterministic and
  the outbox entry is removed atomically with the deliveries' creation, so an event is expanded once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from shared import metrics
from shared.jobs import StoredJob, SyncJobStore
from worker.webhooks.store import SyncWebhookStore

__all__ = ["DispatchingJobStore", "WebhookDispatch"]

log = logging.getLogger(__name__)

#: Outbox events expanded, and due deliveries pushed, per round of the sweep.
BATCH = 200


@dataclass
class WebhookDispatch:
    store: SyncWebhookStore

    def sweep(self) -> tuple[int, int]:
        """One round: (events expanded, delivery messages pushed)."""
        expanded = 0
        members = self.store.outbox(BATCH)
        for member in members:
            try:
                expanded += int(self.store.expand(member) >= 0)
            except redis.RedisError:
                raise
            except Exception:  # a broken event must neither hold up the others nor come back every round
                log.exception("webhook outbox event %s could not be expanded; dropped", member)
                self.store.drop(member)
        return expanded, self.store.push_due(BATCH)

    def job_changed(self, job_id: str) -> None:
        """The fast path: expand the job's new events now. Never raises: the sweep catches up."""
        try:
            for member in self.store.outbox_of(job_id):
                self.store.expand(member)
        except Exception as exc:
            if isinstance(exc, redis.RedisError):
                metrics.count_redis_error("worker", exc)
            log.warning("job %s: webhook dispatch left to the sweep: %s", job_id, exc)


class DispatchingJobStore(SyncJobStore):
    """The worker's job store, dispatching each change's webhook events right after it."""

    def __init__(self, client: redis.Redis, *, job_ttl: int, dispatch: WebhookDispatch) -> None:
        super().__init__(client, job_ttl=job_ttl)
        self.dispatch = dispatch

    def start(self, stored: StoredJob, *args: Any, **kwargs: Any) -> Any:
        outcome = super().start(stored, *args, **kwargs)
        if isinstance(outcome, StoredJob):
            self.dispatch.job_changed(outcome.job.id)
        return outcome

    def retry_later(self, stored: StoredJob, *args: Any, **kwargs: Any) -> StoredJob | None:
        outcome = super().retry_later(stored, *args, **kwargs)
        if outcome is not None:
            self.dispatch.job_changed(outcome.job.id)
        return outcome

    def transition(self, stored: StoredJob, *args: Any, **kwargs: Any) -> StoredJob | None:
        outcome = super().transition(stored, *args, **kwargs)
        if outcome is not None:
            self.dispatch.job_changed(outcome.job.id)
        return outcome
