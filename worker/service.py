"""Processing one job: load → start an attempt → generate → store the outcome. No Celery here.

`process` is idempotent: a job that is finished, canceled, deleted, running elsewhere or not due
yet is left alone, and every write is a compare-and-set against the revision it was computed
from, so a job canceled while its checklist was being written stays canceled. A failed attempt
that deserves another is queued again with a countdown kept in Redis (`SyncJobStore.retry_later`);
the recovery sweep sends its task message when it is due.

A job that waits for the shared Groq budget does the same, with `waiting: {reason:
"upstream_budget", until}` in its doc so clients see why it has not started. Once an attempt is
over, its budget reservation is settled with what the calls really cost (`GroqBudget.settle`),
and the model's usage is added to the job.

While an attempt runs, the job is in the worker's `InFlight` registry, whose heartbeat renews the
job's lease. Writes that carry the attempt's outcome are retried until Redis takes them
(`worker.durable`).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis

from shared import lifecycle, metrics
from shared.clock import utcnow
from shared.errors import PermanentProviderError, ProviderError
from shared.jobs import StoredJob, SyncJobStore
from shared.observability import current_context
from shared.schemas import Checklist, Job, JobError, Usage
from worker.budget import GroqBudget, Reservation
from worker.durable import persist
from worker.heartbeat import InFlight
from worker.providers.base import ChecklistProvider, Spend, spend_of
from worker.retry import RetryPolicy

__all__ = ["Done", "JobProcessor", "RetryIn"]

log = logging.getLogger(__name__)
# Spreads jobs that wait for the same budget slot, so they do not all come back at once.
_budget_jitter = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True, slots=True)
class Done:
    """Nothing left to do for this message; `status` says what was found or done."""

    status: str  # succeeded, failed, canceled, missing, superseded, running, not_due, ...


@dataclass(frozen=True, slots=True)
class RetryIn:
    """The job is queued again and will be started after `seconds`."""

    seconds: float
    reason: str  # "retry" after a failed attempt, "budget" while waiting for the Groq budget


Outcome = Done | RetryIn


def _settled(stored: StoredJob | None) -> Done | None:
    """Done, if this message has nothing to do: the job is gone, finished, or being run."""
    if stored is None:
        return Done("missing")
    if lifecycle.is_terminal(stored.job) or stored.job.status == "running":
        # A running job is its worker's, vouched for by that worker's lease; if the worker is
        # gone, the recovery sweep queues the job again once the lease runs out.
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
    #: Seconds a started job is held without a heartbeat (`WorkerSettings.lease`).
    lease: float = 15.0
    in_flight: InFlight = field(default_factory=InFlight)
    #: Set when the worker shuts down: writes waiting for Redis give up then.
    stopping: threading.Event = field(default_factory=threading.Event)

    def process(self, job_id: str, worker: str) -> Outcome:
        stored = self.store.get(job_id)
        context = current_context()
        if context is not None and stored is not None:
            context.owner = stored.owner
        settled = _settled(stored)
        if settled is not None:
            log.info("job %s skipped: %s", job_id, settled.status)
            return settled
        assert stored is not None
        reservation = Reservation(wait=0.0)
        if self.budget is not None:
            # Wait for the shared budget before the attempt starts, so waiting costs no attempt.
            reservation = self.budget.reserve()
            if reservation.wait > 0:
                return self._wait_for_budget(stored, reservation.wait)
        started = self._start(job_id, stored, worker)
        if isinstance(started, Done):
            log.info("job %s skipped: %s", job_id, started.status)
            self._settle(reservation, Spend())  # no call was made: give the reservation back
            return started
        with self.in_flight.holding(job_id):
            return self._attempt(started, reservation)

    def _wait_for_budget(self, stored: StoredJob, wait: float) -> Outcome:
        wait += _budget_jitter.uniform(0, 0.1 * wait + 0.05)
        log.info("job %s waits %.2fs for the Groq budget", stored.job.id, wait)
        until = self.clock() + timedelta(seconds=wait)
        deferred = self.store.retry_later(
            stored, lifecycle.wait_for_budget(stored.job, until), wait, event="job.queued"
        )
        if not deferred:
            return Done("superseded")
        metrics.GROQ_BUDGET_WAITS.inc()
        return RetryIn(wait, "budget")

    def _settle(self, reservation: Reservation, spend: Spend) -> None:
        if self.budget is None or not reservation.id:
            return
        try:
            booked = self.budget.settle(reservation, spend)
        except redis.RedisError as exc:
            # The reservation's estimate stays in the window until it leaves it; nothing is lost.
            metrics.count_redis_error("worker", exc)
            log.warning("could not settle a Groq budget reservation: %s", exc)
            return
        if booked:
            log.info("Groq reports fewer tokens left than the budget counted: %d tokens booked", booked)

    def _start(self, job_id: str, stored: StoredJob, worker: str) -> StoredJob | Done:
        """Move the job (as read in `stored`) to running under this worker's lease.

        Racing a cancel is fine: a failed compare-and-set reads the job again.
        """
        while True:
            new = lifecycle.start_attempt(stored.job, self.clock())
            started = self.store.start(stored, new, worker=worker, lease=self.lease)
            if isinstance(started, StoredJob):
                metrics.observe_started(started.job)
                return started
            if started != "moved":
                return Done(started)
            reread = self.store.get(job_id)
            settled = _settled(reread)
            if settled is not None:
                return settled
            assert reread is not None
            stored = reread

    def _attempt(self, started: StoredJob, reservation: Reservation) -> Outcome:
        attempt = started.job.attempts
        spend = Spend()
        try:
            generation = self.provider.generate(started.job.request)
            spend = generation.spend
        except ProviderError as error:
            spend = spend_of(error)
            self._settle(reservation, spend)
            return self._after_failure(started, error, attempt, spend.usage)
        except Exception:
            log.exception("job %s: unexpected error in provider %s", started.job.id, self.provider.name)
            self._settle(reservation, Spend(calls=1))  # a call may have been made: keep the estimate
            return self._finish_failed(started, JobError(code="internal_error", message="unexpected worker error"))
        self._settle(reservation, spend)
        return self._finish(started, generation.checklist, spend.usage)

    def _after_failure(self, started: StoredJob, error: ProviderError, attempt: int, usage: Usage | None) -> Outcome:
        job_error = JobError(code=error.code, message=error.message)
        log.warning("job %s attempt %d failed: %s (%s)", started.job.id, attempt, error.code, error.message)
        if self.policy.should_retry(error, attempt):
            delay = self.policy.delay(error, attempt)
            requeued = self._persist(
                lambda: self.store.retry_later(started, lifecycle.requeue(started.job, job_error, usage), delay),
                "the retry",
                started.job,
            )
            if not requeued:
                return Done("superseded")
            metrics.GROQ_RETRIES.labels(error.code).inc()
            return RetryIn(delay, "retry")
        if self.fallback is not None and not isinstance(error, PermanentProviderError):
            checklist = self.fallback.generate(started.job.request).checklist
            metrics.OFFLINE_FALLBACKS.inc()
            note = f"{self.provider.name} was unavailable ({error.code}); this checklist is the offline fallback."
            checklist.warnings.insert(0, note)
            return self._finish(started, checklist, usage)
        return self._finish_failed(started, job_error, usage)

    def _finish(self, started: StoredJob, checklist: Checklist, usage: Usage | None = None) -> Outcome:
        new = lifecycle.succeed(started.job, checklist, self.clock(), usage)
        done = self._persist(lambda: self.store.transition(started, new), "the checklist", started.job)
        if not done:
            return Done("superseded")
        metrics.observe_finished(new)
        return Done("succeeded")

    def _finish_failed(self, started: StoredJob, error: JobError, usage: Usage | None = None) -> Outcome:
        new = lifecycle.fail(started.job, error, self.clock(), usage)
        done = self._persist(lambda: self.store.transition(started, new), "the failure", started.job)
        if not done:
            return Done("superseded")
        metrics.observe_finished(new)
        return Done("failed")

    def cancel(self, job_id: str, reason: str) -> bool:
        """Cancel a job that is not finished (a revoked task); False when there was none to cancel."""
        try:
            while True:
                stored = self.store.get(job_id)
                if stored is None or lifecycle.is_terminal(stored.job):
                    return False
                canceled = lifecycle.cancel(stored.job, self.clock())
                if self.store.transition(stored, canceled) is not None:
                    metrics.observe_finished(canceled)
                    log.warning("job %s canceled: %s", job_id, reason, extra={"job_id": job_id, "owner": stored.owner})
                    return True
        except redis.RedisError as exc:
            metrics.count_redis_error("worker", exc)
            log.error("job %s not canceled (%s), Redis is unavailable: %s", job_id, reason, exc)  # noqa: TRY400
            return False

    def _persist(self, write: Callable[[], StoredJob | None], what: str, job: Job) -> StoredJob | None:
        return persist(write, what=f"{what} of job {job.id}", stopping=self.stopping)
