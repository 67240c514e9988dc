"""Checklist jobs as the API offers them: submit, read, wait, list, cancel, delete.

The service holds the logic and works outside a request (tests and scripts build it directly);
controllers only translate HTTP to these calls and back.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from api.events import RESUBSCRIBED, JobEventHub
from shared import lifecycle, metrics
from shared.clock import utcnow
from shared.errors import IdempotencyKeyReused, InvalidRequest, JobNotCancelable, NotFound
from shared.jobs import JobStore, decode_cursor, fingerprint
from shared.queue import TaskEnvelopes
from shared.redis_mux import ScriptRunner
from shared.schemas import TERMINAL_STATUSES, Job, JobStatus, SubmitAccepted, TripRequest

__all__ = ["ChecklistService", "Submitted", "accepted"]

_MAX_IDEMPOTENCY_KEY = 255
#: `tripcheck_jobs_submitted_total` by API, looked up once (`labels()` costs more than `inc()`).
_SUBMITTED = {api: metrics.JOBS_SUBMITTED.labels(api) for api in ("v1", "legacy")}


class _StatusOnly(msgspec.Struct):
    status: str


_status_decoder = msgspec.json.Decoder(_StatusOnly)
_job_decoder = msgspec.json.Decoder(Job)
_trip_encoder = msgspec.json.Encoder()


def status_of(doc: bytes) -> str:
    return _status_decoder.decode(doc).status


_JOB_ID = re.compile(r"[0-9a-f]{32}")


def _check_job_id(job_id: str) -> None:
    # Ids are 32 lower-case hex characters; anything else cannot exist, so skip the round trip.
    if not _JOB_ID.fullmatch(job_id):
        raise NotFound(f"no checklist job {job_id!r}")


def check_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= _MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{_MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            field="Idempotency-Key",
        )
    return key


def accepted(job: Job) -> SubmitAccepted:
    """What a submission answers about its job."""
    return SubmitAccepted(id=job.id, status=job.status, created_at=job.created_at, links=job.links)


@dataclass(frozen=True, slots=True)
class Submitted:
    accepted: SubmitAccepted
    replayed: bool


@dataclass
class ChecklistService:
    store: JobStore
    events: JobEventHub
    envelopes: TaskEnvelopes
    clock: Callable[[], datetime] = utcnow

    async def submit(
        self,
        owner: str,
        trip: TripRequest,
        idempotency_key: str | None = None,
        hook: bytes = b"",
        *,
        request_id: str = "",
        api: Literal["v1", "legacy"] = "v1",
        runner: ScriptRunner | None = None,
    ) -> Submitted:
        """Store and enqueue a job in one round trip; replay the earlier job for a known key.

        `hook` is the job's own webhook (JSON, `api.webhooks.WebhookService.job_hook`) or b"";
        `request_id` (the submission's) is stored with the job and sent with its task messages.
        `runner` runs the store's script (the caller's quota check, `api.limits.QuotaGuard`).
        """
        job = lifecycle.new_job(lifecycle.new_job_id(), trip, self.clock())
        body_print = fingerprint(_trip_encoder.encode(trip) + hook) if idempotency_key else ""
        outcome = await self.store.create(
            job,
            owner,
            self.envelopes.build(job.id, request_id=request_id),
            idempotency_key=idempotency_key,
            body_fingerprint=body_print,
            hook=hook,
            request_id=request_id,
            runner=runner,
        )
        if outcome.kind == "conflict":
            raise IdempotencyKeyReused(f"Idempotency-Key was used for job {outcome.job_id} with a different body")
        if outcome.kind == "existing" and outcome.doc is not None:
            return Submitted(accepted=accepted(_job_decoder.decode(outcome.doc)), replayed=True)
        metrics.TALLIES.count(_SUBMITTED[api])
        return Submitted(accepted=accepted(job), replayed=False)

    async def get_doc(self, owner: str, job_id: str, runner: ScriptRunner | None = None) -> bytes:
        _check_job_id(job_id)
        doc = await self.store.get_doc(owner, job_id, runner)
        if doc is None:
            raise NotFound(f"no checklist job {job_id!r}")
        return doc

    async def wait_doc(self, owner: str, job_id: str, timeout: float, runner: ScriptRunner | None = None) -> bytes:
        """The job once it is terminal, or as it stands after `timeout` seconds (the first read
        through `runner`, when given)."""
        deadline = time.monotonic() + timeout
        async with self.events.watch(job_id) as watch:  # before the read: no change goes unseen
            doc = await self.get_doc(owner, job_id, runner)
            changed = False  # whether the job has changed since `doc` was read
            while status_of(doc) not in TERMINAL_STATUSES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                event = await watch.next(remaining)
                if event is None:
                    break
                if event.status == "deleted":
                    raise NotFound(f"checklist job {job_id!r} was deleted")
                if event.status in TERMINAL_STATUSES:
                    return await self.get_doc(owner, job_id)
                if event.status == RESUBSCRIBED:
                    # Announcements made while the subscription was down are lost: look again.
                    doc, changed = await self.get_doc(owner, job_id), False
                else:
                    changed = True
            # Unchanged since it was read, the job is answered as read: when thousands of waits end
            # together, each costs no read.
            return await self.get_doc(owner, job_id) if changed else doc

    async def wait_job(self, owner: str, job_id: str, timeout: float) -> Job:
        return _job_decoder.decode(await self.wait_doc(owner, job_id, timeout))

    async def list_docs(
        self, owner: str, *, limit: int, cursor: str | None, status: JobStatus | None
    ) -> tuple[list[bytes], str | None]:
        after = None
        if cursor is not None:
            after = decode_cursor(cursor)
            if after is None:
                raise InvalidRequest("cursor is not one this API issued", field="cursor")
        return await self.store.list_docs(owner, limit=limit, after=after, status=status)

    async def cancel(self, owner: str, job_id: str) -> Job:
        """Queued or running → canceled; the worker's compare-and-set then leaves it alone."""
        _check_job_id(job_id)
        while True:
            stored = await self.store.get(owner, job_id)
            if stored is None:
                raise NotFound(f"no checklist job {job_id!r}")
            if lifecycle.is_terminal(stored.job):
                raise JobNotCancelable(f"checklist job {job_id} is already {stored.job.status}")
            canceled = await self.store.transition(stored, lifecycle.cancel(stored.job, self.clock()))
            if canceled is not None:
                metrics.observe_finished(canceled.job)
                return canceled.job
            await asyncio.sleep(0)  # the job moved on meanwhile: read it again

    async def delete(self, owner: str, job_id: str) -> None:
        _check_job_id(job_id)
        if not await self.store.delete(owner, job_id):
            raise NotFound(f"no checklist job {job_id!r}")
