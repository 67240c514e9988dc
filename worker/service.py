"""Processing one job: load → start an attempt → generate → store the outcome. No Celery here.

`process_job` is idempotent: a job that is finished, canceled or deleted is left alone, and every
write is a compare-and-set against the revision it was computed from, so a job canceled while
its checklist was being written stays canceled. It returns what the caller (the Celery task)
must do next: nothing, or retry after a delay.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared import lifecycle
from shared.clock import utcnow
from shared.errors import PermanentProviderError, ProviderError
from shared.jobs import StoredJob, SyncJobStore
from shared.schemas import Checklist, JobError
from worker.budget import GroqBudget
from worker.providers.base import ChecklistProvider
from worker.retry import RetryPolicy

__all__ = ["Done", "JobProcessor", "RetryIn"]

log = logging.getLogger(__name__)
# Spreads jobs that wait for the same budget slot, so they do not all come back at once.
_budget_jitter = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True, slots=True)
class Done:
    status: str  # the job's status when we left it, or "missing"


@dataclass(frozen=True, slots=True)
class RetryIn:
    seconds: float


Outcome = Done | RetryIn


def _settled(stored: StoredJob | None) -> Done | None:
    """Done, if there is nothing left to do for this job (deleted, or finished or canceled)."""
    if stored is None:
        return Done("missing")
    if lifecycle.is_terminal(stored.job):
        return Done(stored.job.status)
    return None


@dataclass
class JobProcessor:
    store: SyncJobStore
    provider: ChecklistProvider
    policy: RetryPolicy
    fallback: ChecklistProvider | None = None
    budget: GroqBudget | None = None
    clock: Callable[[], datetime] = utcnow

    def _start(self, job_id: str, stored: StoredJob | None) -> StoredJob | Done:
        """Move the job (as read in `stored`) to running, unless it is gone or finished.

        Racing a cancel is fine: a failed compare-and-set reads the job again.
        """
        while True:
            settled = _settled(stored)
            if settled is not None:
                return settled
            assert stored is not None
            started = self.store.transition(stored, lifecycle.start_attempt(stored.job, self.clock()))
            if started is not None:
                return started
            stored = self.store.get(job_id)

    def process(self, job_id: str) -> Outcome:
        stored = self.store.get(job_id)
        if self.budget is not None and _settled(stored) is None:
            # Wait for the shared budget before the attempt starts, so waiting costs no attempt.
            wait = self.budget.reserve()
            if wait > 0:
                log.info("job %s waits %.2fs for the Groq budget", job_id, wait)
                return RetryIn(wait + _budget_jitter.uniform(0, 0.1 * wait + 0.05))
        started = self._start(job_id, stored)
        if isinstance(started, Done):
            log.info("job %s skipped: %s", job_id, started.status)
            return started
        attempt = started.job.attempts
        try:
            checklist = self.provider.generate(started.job.request)
        except ProviderError as error:
            return self._after_failure(started, error, attempt)
        except Exception:
            log.exception("job %s: unexpected error in provider %s", job_id, self.provider.name)
            return self._finish_failed(started, JobError(code="internal_error", message="unexpected worker error"))
        return self._finish(started, checklist)

    def _after_failure(self, started: StoredJob, error: ProviderError, attempt: int) -> Outcome:
        job_error = JobError(code=error.code, message=error.message)
        log.warning("job %s attempt %d failed: %s (%s)", started.job.id, attempt, error.code, error.message)
        if self.policy.should_retry(error, attempt):
            requeued = self.store.transition(started, lifecycle.requeue(started.job, job_error))
            if requeued is None:  # canceled or deleted meanwhile
                return Done("superseded")
            return RetryIn(self.policy.delay(error, attempt))
        if self.fallback is not None and not isinstance(error, PermanentProviderError):
            checklist = self.fallback.generate(started.job.request)
            note = f"{self.provider.name} was unavailable ({error.code}); this checklist is the offline fallback."
            checklist.warnings.insert(0, note)
            return self._finish(started, checklist)
        return self._finish_failed(started, job_error)

    def _finish(self, started: StoredJob, checklist: Checklist) -> Outcome:
        done = self.store.transition(started, lifecycle.succeed(started.job, checklist, self.clock()))
        return Done("succeeded" if done else "superseded")

    def _finish_failed(self, started: StoredJob, error: JobError) -> Outcome:
        done = self.store.transition(started, lifecycle.fail(started.job, error, self.clock()))
        return Done("failed" if done else "superseded")
