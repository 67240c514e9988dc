"""The job store on Redis: create, read, list, start, retry, finish, recover, delete; status events.

A job is one hash (`keys.job`), listed in its owner's index and, until it is finished, in
`keys.PENDING`; `shared.job_scripts` draws the layout. Every write is a Lua script, so each is
atomic and costs one round trip; a change of the job's doc is a compare-and-set on `rev`, which
is how a canceled job stays canceled whatever a worker does, and why a job is finished once even
if two workers ran it. Each change is published on `keys.EVENTS_CHANNEL` as a `JobEvent`.

A job is always somebody's business: a queued job's task message is on the queue (or the recovery
sweep pushes it when it is due, or finds it lost and pushes another); a running job is held by
its worker's lease, which the worker's heartbeat renews; when the lease runs out, the recovery
sweep (`worker.recovery`) queues the job again.

`JobStore` is the asyncio flavour (API, on the multiplexed connection of `shared.redis_mux`);
`SyncJobStore` and `PendingJobs` the blocking ones (worker and its recovery sweep, on redis-py).
All run the scripts of `shared.job_scripts`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import msgspec
import redis

from shared import job_scripts, keys
from shared.queue import TaskMessage
from shared.redis_mux import MultiplexedRedis, Script, ScriptRunner
from shared.schemas import Job, JobStatus

__all__ = [
    "CreateOutcome",
    "JobEvent",
    "JobStore",
    "PendingJob",
    "PendingJobs",
    "RecordedEvent",
    "StartOutcome",
    "StoredJob",
    "SyncJobStore",
    "bind_script",
    "decode_cursor",
    "encode_cursor",
    "fingerprint",
]

#: Index entries looked at by one list call, so a sparse status filter cannot stall Redis.
LIST_SCAN_BUDGET = 1000


class JobEvent(msgspec.Struct, frozen=True):
    """One status change, as published on the events channel."""

    id: str
    owner: str
    status: str  # a JobStatus, or "deleted"
    rev: int


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job with its owner and the revision it was read at (for compare-and-set)."""

    job: Job
    rev: int
    owner: str


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One entry of a job's event stream (`keys.job_events`)."""

    id: str  # the stream id: ordered, unique per job
    type: str  # job.queued, job.running, job.retrying, job.succeeded, job.failed, job.canceled
    rev: int
    doc: bytes | None  # the job as it was; None for a finished job (read the job itself)


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    kind: Literal["created", "existing", "conflict"]
    job_id: str
    doc: bytes | None = None


_job_decoder = msgspec.json.Decoder(Job)
_encoder = msgspec.json.Encoder()
_event_encoder = msgspec.json.Encoder()


def fingerprint(body: bytes) -> str:
    """Identifies a request body for idempotency: equal bytes after canonical re-encoding."""
    return hashlib.sha256(body).hexdigest()[:32]


def index_member(created_at: datetime, job_id: str) -> str:
    micros = int(created_at.timestamp() * 1_000_000)
    return f"{micros:017d}:{job_id}"


def encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The index member a cursor stands for, or None when it is not one of ours."""
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    digits, _, job_id = member.partition(":")
    if not (digits.isdigit() and len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)):
        return None
    return member


def _decode_stored(fields: list[Any]) -> StoredJob | None:
    owner, rev, doc = fields
    if owner is None or rev is None or doc is None:
        return None
    return StoredJob(job=_job_decoder.decode(doc), rev=int(rev), owner=owner.decode())


def _doc_args(stored: StoredJob, new: Job) -> list[Any]:
    return [stored.rev, new.status, _encoder.encode(new)]


def _change_keys(job_id: str, owner: str) -> list[str]:
    """The keys every change of a job records its event with (see `job_scripts._RECORD`)."""
    return [keys.job_events(job_id), keys.OUTBOX, keys.user_webhooks(owner)]


def _recorded(entry: Any) -> RecordedEvent:
    sid, fields = entry
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return RecordedEvent(
        id=sid.decode(), type=values[b"type"].decode(), rev=int(values[b"rev"]), doc=values.get(b"doc")
    )


def _log_range(job_id: str, after: str | None, count: int) -> tuple[str | int, ...]:
    """The XRANGE of the job's recorded events after stream id `after` (from the first when None)."""
    return ("XRANGE", keys.job_events(job_id), f"({after}" if after else "-", "+", "COUNT", count)


def _events(job_id: str) -> list[str]:
    return [keys.EVENTS_CHANNEL, job_id]


class JobStore:
    """Asyncio job store used by the API."""

    def __init__(self, client: MultiplexedRedis, *, job_ttl: int, idempotency_ttl: int, check_after: float) -> None:
        self.client = client
        self.job_ttl = job_ttl
        self.idempotency_ttl = idempotency_ttl
        #: Seconds after which the recovery sweep first checks that a new job's message is still there.
        self.check_after = check_after

    async def create(
        self,
        job: Job,
        owner: str,
        message: TaskMessage,
        *,
        idempotency_key: str | None = None,
        body_fingerprint: str = "",
        hook: bytes = b"",
        request_id: str = "",
        runner: ScriptRunner | None = None,
    ) -> CreateOutcome:
        """Store a new job and enqueue its task, or find the job an Idempotency-Key already made.

        `hook` is the job's own webhook (JSON), stored with it for webhook dispatch; `request_id`
        the submission's, stored with it for the job's later task messages (and its log lines).
        `runner` runs the script instead of the connection (the API's quota check goes with it).
        """
        idem = keys.idempotency(owner, idempotency_key) if idempotency_key else ""
        reply = await (runner or self.client).run_script(
            job_scripts.CREATE,
            [keys.job(job.id), keys.owner_index(owner), idem, keys.QUEUE, keys.PENDING, *_change_keys(job.id, owner)],
            [
                job.id,
                owner,
                _encoder.encode(job),
                index_member(job.created_at, job.id),
                body_fingerprint,
                self.job_ttl,
                self.idempotency_ttl,
                message.body,
                keys.job(""),
                self.check_after,
                message.tag,
                hook,
                request_id,
            ],
        )
        kind = reply[0].decode()
        return CreateOutcome(kind=kind, job_id=reply[1].decode(), doc=reply[2] if len(reply) > 2 else None)

    async def get_doc(self, owner: str, job_id: str, runner: ScriptRunner | None = None) -> bytes | None:
        """The job's public JSON, exactly as stored; None if missing or someone else's.

        With `runner`, read by a script that it runs (the API's quota check goes with it).
        """
        if runner is None:
            found_owner, doc = await self.client.execute("HMGET", keys.job(job_id), "owner", "doc")
        else:
            found_owner, doc = await runner.run_script(job_scripts.READ, [keys.job(job_id)], [])
        if found_owner != owner.encode():
            return None
        return cast(bytes, doc)

    async def get(self, owner: str, job_id: str) -> StoredJob | None:
        fields = await self.client.execute("HMGET", keys.job(job_id), "owner", "rev", "doc")
        if fields[0] != owner.encode():
            return None
        return _decode_stored(fields)

    async def transition(self, stored: StoredJob, new: Job) -> StoredJob | None:
        """Store `new` if the job is still at `stored.rev`; None when it moved on (or went) meanwhile."""
        rev = int(
            await self.client.run_script(
                job_scripts.TRANSITION,
                [keys.job(new.id), keys.PENDING, *_change_keys(new.id, stored.owner)],
                [*_doc_args(stored, new), self.job_ttl, *_events(new.id)],
            )
        )
        return StoredJob(job=new, rev=rev, owner=stored.owner) if rev > 0 else None

    async def event_log(self, job_id: str, after: str | None = None, count: int = 100) -> list[RecordedEvent]:
        """The job's recorded events after stream id `after` (all when None), oldest first."""
        entries = await self.client.execute(*_log_range(job_id, after, count))
        return [_recorded(entry) for entry in entries]

    async def event_log_and_doc(
        self, owner: str, job_id: str, after: str | None, count: int = 100
    ) -> tuple[list[RecordedEvent], bytes | None]:
        """`event_log` and `get_doc` in one round trip: what a stream told that its job finished
        sends (the final entry has no doc of its own: the job's hash has it)."""
        entries, (found_owner, doc) = await self.client.execute_many(
            _log_range(job_id, after, count), ("HMGET", keys.job(job_id), "owner", "doc")
        )
        return [_recorded(entry) for entry in entries], doc if found_owner == owner.encode() else None

    async def events_since(self, job_id: str, event_id: str, count: int = 100) -> list[RecordedEvent] | None:
        """The events after `event_id` if the job's stream still holds that event; None when it does
        not (trimmed by the cap, expired, or never this job's), so that what followed it is unknown."""
        entries = await self.client.execute("XRANGE", keys.job_events(job_id), event_id, "+", "COUNT", count + 1)
        if not entries or entries[0][0].decode() != event_id:
            return None
        return [_recorded(entry) for entry in entries[1:]]

    async def latest_event(self, job_id: str) -> RecordedEvent | None:
        """The job's last recorded event (its current state), None when none is recorded."""
        entries = await self.client.execute("XREVRANGE", keys.job_events(job_id), "+", "-", "COUNT", 1)
        return _recorded(entries[0]) if entries else None

    async def delete(self, owner: str, job_id: str) -> bool:
        """Delete one of `owner`'s jobs; False when there is no such job."""
        return await self._delete(owner, [job_id]) == 1

    async def delete_owner(self, owner: str, batch: int = 100) -> int:
        """Delete every job of `owner` (account deletion), publishing `deleted` for each."""
        deleted = 0
        while members := await self.client.execute("ZRANGE", keys.owner_index(owner), 0, batch - 1):
            ids = [member.decode().partition(":")[2] for member in members]
            deleted += await self._delete(owner, ids)
            # Index entries of jobs that expired on their own are not deleted by the script.
            await self.client.execute("ZREM", keys.owner_index(owner), *members)
        return deleted

    async def _delete(self, owner: str, job_ids: Sequence[str]) -> int:
        # The idempotency keys are named in the job hashes: read them first, so that the script
        # gets every key it touches through KEYS.
        idem_keys = await asyncio.gather(*(self.client.execute("HGET", keys.job(job_id), "idem") for job_id in job_ids))
        script_keys = [keys.owner_index(owner), keys.PENDING]
        for job_id, idem in zip(job_ids, idem_keys, strict=True):
            script_keys += [keys.job(job_id), keys.job_events(job_id), (idem or b"").decode()]
        return int(
            await self.client.run_script(job_scripts.DELETE, script_keys, [owner, keys.EVENTS_CHANNEL, *job_ids])
        )

    async def list_docs(
        self, owner: str, *, limit: int, after: str | None = None, status: JobStatus | None = None
    ) -> tuple[list[bytes], str | None]:
        """Up to `limit` job docs, newest first, and the cursor of the next page (None at the end)."""
        reply = await self.client.run_script(
            job_scripts.LIST,
            [keys.owner_index(owner)],
            ["(" + after if after else "+", limit, status or "", keys.job(""), LIST_SCAN_BUDGET],
        )
        last, docs = reply[0].decode(), list(reply[1:])
        return docs, (encode_cursor(last) if last else None)


#: What `SyncJobStore.start` found when it could not start the job.
StartRefusal = Literal["moved", "missing", "not_queued", "not_due"]
StartOutcome = StoredJob | StartRefusal
_START_REFUSALS: dict[int, StartRefusal] = {0: "moved", -1: "missing", -2: "not_queued", -3: "not_due"}


def bind_script(client: redis.Redis, script: Script) -> Callable[..., Any]:
    """A shared script, callable on a redis-py client (loaded on first use, like `Script`)."""
    return client.register_script(script.source)


class SyncJobStore:
    """Blocking job store used by the worker: read a job, start it, retry it, finish it."""

    def __init__(self, client: redis.Redis, *, job_ttl: int) -> None:
        self.client = client
        self.job_ttl = job_ttl
        self._transition = bind_script(client, job_scripts.TRANSITION)
        self._start = bind_script(client, job_scripts.START)
        self._retry = bind_script(client, job_scripts.RETRY)
        self._renew = bind_script(client, job_scripts.RENEW)

    def get(self, job_id: str) -> StoredJob | None:
        return _decode_stored(self.client.hmget(keys.job(job_id), ["owner", "rev", "doc"]))

    def start(self, stored: StoredJob, new: Job, *, worker: str, lease: float) -> StartOutcome:
        """Move a queued job to running under `worker`'s lease of `lease` seconds."""
        rev = int(
            self._start(
                keys=[keys.job(new.id), keys.PENDING, *_change_keys(new.id, stored.owner)],
                args=[stored.rev, _encoder.encode(new), worker, lease, self.job_ttl, *_events(new.id)],
            )
        )
        return StoredJob(job=new, rev=rev, owner=stored.owner) if rev > 0 else _START_REFUSALS[rev]

    def retry_later(self, stored: StoredJob, new: Job, delay: float, event: str = "job.retrying") -> StoredJob | None:
        """Store `new` (queued) to start after `delay` seconds; None when the job moved on meanwhile.

        `event` is what the change is recorded as: `job.retrying` after a failed attempt,
        `job.queued` for a wait that costs no attempt (the Groq budget).
        """
        rev = int(
            self._retry(
                keys=[keys.job(new.id), keys.PENDING, *_change_keys(new.id, stored.owner)],
                args=[stored.rev, _encoder.encode(new), max(0.0, delay), self.job_ttl, *_events(new.id), event],
            )
        )
        return StoredJob(job=new, rev=rev, owner=stored.owner) if rev > 0 else None

    def transition(self, stored: StoredJob, new: Job) -> StoredJob | None:
        """Store `new` if the job is still at `stored.rev`; None when it moved on (or went) meanwhile."""
        rev = int(
            self._transition(
                keys=[keys.job(new.id), keys.PENDING, *_change_keys(new.id, stored.owner)],
                args=[*_doc_args(stored, new), self.job_ttl, *_events(new.id)],
            )
        )
        return StoredJob(job=new, rev=rev, owner=stored.owner) if rev > 0 else None

    def renew_leases(self, worker: str, job_ids: Sequence[str], lease: float) -> int:
        """Extend the leases of the jobs `worker` is running; returns how many it still holds."""
        if not job_ids:
            return 0
        return int(self._renew(keys=[keys.PENDING, *map(keys.job, job_ids)], args=[worker, lease, *job_ids]))


@dataclass(frozen=True, slots=True)
class PendingJob:
    """An unfinished job as the recovery sweep reads it."""

    id: str
    status: str | None  # None: the job is gone
    rev: int
    job: Job | None
    message_tag: str | None
    owner: str = ""
    request_id: str = ""


_PENDING_FIELDS = ("status", "rev", "doc", "msg", "owner", "rid")


class PendingJobs:
    """The recovery sweep's view of unfinished jobs: which are overdue, and the scripts that act."""

    def __init__(self, client: redis.Redis, *, job_ttl: int, check_after: float) -> None:
        self.client = client
        self.job_ttl = job_ttl
        self.check_after = check_after
        self._overdue = bind_script(client, job_scripts.OVERDUE)
        self._recover = bind_script(client, job_scripts.RECOVER)
        self._nudge = bind_script(client, job_scripts.NUDGE)

    def overdue(self, limit: int) -> list[PendingJob]:
        """Up to `limit` jobs whose lease, due time or message check has come (Redis's clock)."""
        reply = self._overdue(keys=[keys.PENDING], args=[limit])
        ids = [raw.decode() for raw in reply[1:]]
        if not ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), _PENDING_FIELDS)
            rows = pipe.execute()
        return [_pending(job_id, row) for job_id, row in zip(ids, rows, strict=True)]

    def forget(self, job_ids: Sequence[str]) -> None:
        """Drop finished or vanished jobs from the pending set."""
        if job_ids:
            self.client.zrem(keys.PENDING, *job_ids)

    def recover(self, pending: PendingJob, new: Job, message: TaskMessage) -> bool:
        """Queue a job whose lease ran out again (with `message`), or fail it (`new.status`)."""
        rev = int(
            self._recover(
                keys=[keys.job(new.id), keys.PENDING, keys.QUEUE, *_change_keys(new.id, pending.owner)],
                args=[
                    pending.rev,
                    new.status,
                    _encoder.encode(new),
                    message.body,
                    message.tag,
                    self.check_after,
                    self.job_ttl,
                    *_events(new.id),
                ],
            )
        )
        return rev > 0

    def nudge(self, job_id: str, current: TaskMessage, replacement: TaskMessage) -> str:
        """Make sure a queued job's message is on its way; returns what was found (see NUDGE)."""
        reply = self._nudge(
            keys=[keys.job(job_id), keys.PENDING, keys.QUEUE, keys.UNACKED],
            args=[current.body, replacement.body, replacement.tag, self.check_after, job_id],
        )
        return reply.decode() if isinstance(reply, bytes) else str(reply)


def _pending(job_id: str, row: list[bytes | None]) -> PendingJob:
    status, rev, doc, tag, owner, request_id = row
    return PendingJob(
        id=job_id,
        status=status.decode() if status is not None else None,
        rev=int(rev or 0),
        job=_job_decoder.decode(doc) if doc is not None else None,
        message_tag=tag.decode() if tag is not None else None,
        owner=owner.decode() if owner is not None else "",
        request_id=request_id.decode() if request_id is not None else "",
    )
