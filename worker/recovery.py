"""The recovery sweep: every unfinished job ends, whatever crashed.

One worker process at a time (whoever holds `keys.RECOVERY_LOCK`) looks, every
`sweep_interval`, at the jobs of `keys.PENDING` whose time has come, on Redis's clock:

- a running job whose lease ran out (its worker died, hung, or lost track of it) is queued again
  with a new task message, or failed with `worker_lost` once it has used all its attempts;
- a queued job whose countdown is over (a retry, a Groq-budget wait) gets its task message;
- a queued job whose message is neither on the queue nor taken by a worker, or was taken a check
  period ago and never started, gets a new message.

It also moves webhook events on (`worker.webhooks.dispatch`): outbox events become deliveries, and
deliveries whose time has come (a retry, a lost attempt) get their task messages.

And, as the last resort, messages a worker took but never acknowledged within the visibility
timeout go back on the queue (`shared.broker`), as kombu itself would do.

Right after Redis comes back from an outage every lease looks expired, because nobody could renew
it. So running jobs are only recovered once the sweep has seen Redis answer for a whole lease
period: live workers have renewed theirs by then, and their writes (`worker.durable`) go through.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import redis

from shared import keys, lifecycle, metrics
from shared.broker import UnackedMessages
from shared.clock import utcnow
from shared.jobs import PendingJob, PendingJobs
from shared.queue import TaskEnvelopes
from shared.schemas import TERMINAL_STATUSES, Job, JobError
from worker.webhooks.dispatch import WebhookDispatch

__all__ = ["RecoverySweep", "SweepReport", "plan"]

log = logging.getLogger(__name__)

#: Overdue jobs handled per round (a round repeats at once while there are more).
BATCH = 200
WORKER_LOST = JobError(code="worker_lost", message="the worker running this job stopped before it finished")

Action = Literal["forget", "recover", "fail", "nudge", "wait"]


def plan(pending: PendingJob, *, max_attempts: int, may_recover_running: bool) -> Action:
    """What the sweep does with one overdue job. Pure."""
    if pending.status is None or pending.job is None or pending.status in TERMINAL_STATUSES:
        return "forget"
    if pending.status == "running":
        if not may_recover_running:
            return "wait"
        return "fail" if pending.job.attempts >= max_attempts else "recover"
    return "nudge"


@dataclass
class SweepReport:
    recovered: int = 0
    failed: int = 0
    pushed: int = 0
    restored: int = 0
    forgotten: int = 0
    webhook_events: int = 0
    webhook_messages: int = 0

    def __bool__(self) -> bool:
        return any(
            (
                self.recovered,
                self.failed,
                self.pushed,
                self.restored,
                self.forgotten,
                self.webhook_events,
                self.webhook_messages,
            )
        )


_RELEASE = """
-- KEYS: lock.  ARGV: holder.  Deletes the lock only if this holder has it.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_HOLD = """
-- KEYS: lock.  ARGV: holder, ttl ms.  Takes the lock if free, extends it if ours; 1 if we hold it.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""


@dataclass
class RecoverySweep:
    client: redis.Redis
    pending: PendingJobs
    envelopes: TaskEnvelopes
    name: str
    interval: float
    lease: float
    visibility_timeout: float
    max_attempts: int
    clock: Callable[[], float] = time.monotonic
    webhooks: WebhookDispatch | None = None
    _healthy_since: float | None = None
    _last_contact: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.unacked = UnackedMessages(self.client)
        self._hold = self.client.register_script(_HOLD)
        self._release = self.client.register_script(_RELEASE)
        #: The lock outlives a few missed rounds, and passes on quickly when its holder dies.
        self.lock_ttl_ms = int(max(2.0, 5 * self.interval) * 1000)

    # -- one round -------------------------------------------------------------------------

    def hold_lock(self) -> bool:
        return bool(self._hold(keys=[keys.RECOVERY_LOCK], args=[self.name, self.lock_ttl_ms]))

    def sweep(self) -> SweepReport:
        """Handle every overdue job (the caller holds the lock)."""
        report = SweepReport()
        may_recover_running = self._healthy_for() >= self.lease
        while True:
            overdue = self.pending.overdue(BATCH)
            acted = 0
            for job in overdue:
                acted += self._handle(job, report, may_recover_running=may_recover_running)
            if len(overdue) < BATCH or not acted:
                break
        if self.webhooks is not None:
            report.webhook_events, report.webhook_messages = self.webhooks.sweep()
        restored = self.unacked.restore_stale(self.visibility_timeout)
        if restored:
            report.restored += restored
            metrics.RECOVERY_ACTIONS.labels("restored").inc(restored)
        return report

    def _handle(self, pending: PendingJob, report: SweepReport, *, may_recover_running: bool) -> int:
        action = plan(pending, max_attempts=self.max_attempts, may_recover_running=may_recover_running)
        if action == "wait":
            return 0
        if action == "forget":
            self.pending.forget([pending.id])
            report.forgotten += 1
            return 1
        assert pending.job is not None
        # Every message of a job carries its submission's request id (the current one too: the
        # nudge looks for its exact bytes on the queue).
        rid = pending.request_id
        if action == "nudge":
            current = self.envelopes.build(pending.id, pending.message_tag, request_id=rid)
            outcome = self.pending.nudge(pending.id, current, self.envelopes.build_another(pending.id, request_id=rid))
            if outcome == "pushed":
                report.pushed += 1
                metrics.RECOVERY_ACTIONS.labels("pushed").inc()
            return 1
        new = _failed(pending.job) if action == "fail" else lifecycle.requeue(pending.job, WORKER_LOST)
        if self.pending.recover(pending, new, self.envelopes.build_another(pending.id, request_id=rid)):
            log.warning(
                "job %s: its worker stopped vouching for it; %s",
                pending.id,
                new.status,
                extra={"job_id": pending.id, "request_id": rid or None, "owner": pending.owner or None},
            )
            if action == "fail":
                report.failed += 1
                metrics.RECOVERY_ACTIONS.labels("failed").inc()
                metrics.observe_finished(new)
            else:
                report.recovered += 1
                metrics.RECOVERY_ACTIONS.labels("recovered").inc()
        return 1

    def _healthy_for(self) -> float:
        """Seconds this sweep has seen Redis answer without a break."""
        return 0.0 if self._healthy_since is None else self.clock() - self._healthy_since

    # -- the thread ------------------------------------------------------------------------

    def run_once(self) -> SweepReport | None:
        """One tick: take or keep the lock, then sweep; None when another process holds it."""
        now = self.clock()
        if self._last_contact is None or now - self._last_contact > 3 * self.interval:
            # First contact, or Redis did not answer for a while (down, restarting, frozen, or cut
            # off from us): the leases workers could not renew meanwhile prove nothing yet.
            self._healthy_since = now
        try:
            held = self.hold_lock()
            report = self.sweep() if held else None
        except redis.RedisError as exc:
            metrics.count_redis_error("worker", exc)
            if self._last_contact is not None:
                log.warning("recovery sweep paused: %s", exc)
            self._last_contact = None
            return None
        self._last_contact = self.clock()
        if report:
            log.info("recovery sweep: %s", report)
        return report

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # a bug here must not stop recovery for good
                log.exception("recovery sweep failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recovery-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        with contextlib.suppress(redis.RedisError):  # Redis gone at shutdown: the lock expires
            self._release(keys=[keys.RECOVERY_LOCK], args=[self.name])


def _failed(job: Job) -> Job:
    return lifecycle.fail(job, WORKER_LOST, utcnow())
