"""The job store on Redis: create, read, list, transition, delete, and status events.

A job is one hash (`keys.job`):
    owner   who may see it          status  mirrors doc.status, for scripts to check cheaply
    rev     bumped on every change  doc     the public JSON (`schemas.Job`), served as stored
    idx     its owner-index member  idem    its Idempotency-Key key, if any

Every write is a Lua script, so each is atomic and costs one round trip; a transition is a
compare-and-set on `rev`, which is how a canceled job stays canceled whatever a worker does.
Each change is published on `keys.EVENTS_CHANNEL` as a `JobEvent`.

`JobStore` is the asyncio flavour (API, on the multiplexed connection of `shared.redis_mux`);
`SyncJobStore` the blocking one (worker, on redis-py). Both run the same scripts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import msgspec
import redis

from shared import keys
from shared.redis_mux import MultiplexedRedis, Script
from shared.schemas import Job, JobStatus

__all__ = [
    "CreateOutcome",
    "JobEvent",
    "JobStore",
    "StoredJob",
    "SyncJobStore",
    "decode_cursor",
    "encode_cursor",
    "fingerprint",
]

_CREATE = """
-- KEYS: job, owner index, idempotency key ('' when none), queue
-- ARGV: id, owner, doc, index member, fingerprint, job ttl, idempotency ttl, task envelope, job prefix
if KEYS[3] ~= '' then
  local remembered = redis.call('GET', KEYS[3])
  if remembered then
    local sep = string.find(remembered, ':', 1, true)
    local id = string.sub(remembered, 1, sep - 1)
    local doc = redis.call('HGET', ARGV[9] .. id, 'doc')
    if doc then
      if string.sub(remembered, sep + 1) ~= ARGV[5] then return {'conflict', id} end
      return {'existing', id, doc}
    end
  end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'status', 'queued', 'rev', 1, 'doc', ARGV[3],
           'idx', ARGV[4], 'idem', KEYS[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[6])
if KEYS[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[1] .. ':' .. ARGV[5], 'EX', ARGV[7])
end
redis.call('LPUSH', KEYS[4], ARGV[8])
return {'created', ARGV[1]}
"""

_TRANSITION = """
-- KEYS: job.  ARGV: expected rev, new status, new doc, job ttl, channel, id
local current = redis.call('HMGET', KEYS[1], 'rev', 'owner')
if not current[1] then return -1 end
if current[1] ~= ARGV[1] then return 0 end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'doc', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], cjson.encode({id = ARGV[6], owner = current[2], status = ARGV[2], rev = rev}))
return rev
"""

_DELETE = """
-- KEYS: job, owner index.  ARGV: owner, channel, id
local fields = redis.call('HMGET', KEYS[1], 'owner', 'idx', 'idem')
if fields[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], fields[2])
if fields[3] and fields[3] ~= '' then redis.call('DEL', fields[3]) end
redis.call('PUBLISH', ARGV[2], cjson.encode({id = ARGV[3], owner = ARGV[1], status = 'deleted', rev = 0}))
return 1
"""

_LIST = """
-- KEYS: owner index.  ARGV: exclusive upper bound ('+' for the start), page size, status filter
-- ('' for all), job key prefix, scan budget.
-- Returns {cursor, doc, doc, ...}: cursor is the last member scanned, '' once the index is exhausted.
local upper = ARGV[1]
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[5])
local out = {''}
while budget > 0 do
  local batch = redis.call('ZREVRANGEBYLEX', KEYS[1], upper, '-', 'LIMIT', 0, math.min(budget, limit + 1))
  if #batch == 0 then out[1] = '' return out end
  for _, member in ipairs(batch) do
    budget = budget - 1
    local id = string.sub(member, string.find(member, ':', 1, true) + 1)
    local job = redis.call('HMGET', ARGV[4] .. id, 'status', 'doc')
    if not job[1] then
      redis.call('ZREM', KEYS[1], member)  -- expired job: drop its index entry
    elseif ARGV[3] == '' or job[1] == ARGV[3] then
      if #out > limit then return out end  -- a further match exists: out[1] is the cursor
      table.insert(out, job[2])
    end
    out[1] = member
    upper = '(' .. member
  end
end
return out
"""

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
    """A job with the revision it was read at (for compare-and-set)."""

    job: Job
    rev: int


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
    rev, doc = fields
    if rev is None or doc is None:
        return None
    return StoredJob(job=_job_decoder.decode(doc), rev=int(rev))


def _transition_args(stored: StoredJob, new: Job, job_ttl: int) -> list[Any]:
    return [stored.rev, new.status, _encoder.encode(new), job_ttl, keys.EVENTS_CHANNEL, new.id]


_CREATE_SCRIPT, _TRANSITION_SCRIPT, _DELETE_SCRIPT, _LIST_SCRIPT = map(Script, (_CREATE, _TRANSITION, _DELETE, _LIST))


class JobStore:
    """Asyncio job store used by the API."""

    def __init__(self, client: MultiplexedRedis, *, job_ttl: int, idempotency_ttl: int) -> None:
        self.client = client
        self.job_ttl = job_ttl
        self.idempotency_ttl = idempotency_ttl

    async def create(
        self,
        job: Job,
        owner: str,
        envelope: bytes,
        idempotency_key: str | None = None,
        body_fingerprint: str = "",
    ) -> CreateOutcome:
        """Store a new job and enqueue its task, or find the job an Idempotency-Key already made."""
        idem = keys.idempotency(owner, idempotency_key) if idempotency_key else ""
        reply = await self.client.run_script(
            _CREATE_SCRIPT,
            [keys.job(job.id), keys.owner_index(owner), idem, keys.QUEUE],
            [
                job.id,
                owner,
                _encoder.encode(job),
                index_member(job.created_at, job.id),
                body_fingerprint,
                self.job_ttl,
                self.idempotency_ttl,
                envelope,
                keys.job(""),
            ],
        )
        kind = reply[0].decode()
        return CreateOutcome(kind=kind, job_id=reply[1].decode(), doc=reply[2] if len(reply) > 2 else None)

    async def get_doc(self, owner: str, job_id: str) -> bytes | None:
        """The job's public JSON, exactly as stored; None if missing or someone else's."""
        found_owner, doc = await self.client.execute("HMGET", keys.job(job_id), "owner", "doc")
        if found_owner != owner.encode():
            return None
        return cast(bytes, doc)

    async def get(self, owner: str, job_id: str) -> StoredJob | None:
        found_owner, rev, doc = await self.client.execute("HMGET", keys.job(job_id), "owner", "rev", "doc")
        if found_owner != owner.encode():
            return None
        return _decode_stored([rev, doc])

    async def transition(self, stored: StoredJob, new: Job) -> StoredJob | None:
        """Store `new` if the job is still at `stored.rev`; None when it moved on (or went) meanwhile."""
        rev = int(
            await self.client.run_script(
                _TRANSITION_SCRIPT, [keys.job(new.id)], _transition_args(stored, new, self.job_ttl)
            )
        )
        return StoredJob(job=new, rev=rev) if rev > 0 else None

    async def delete(self, owner: str, job_id: str) -> bool:
        deleted = await self.client.run_script(
            _DELETE_SCRIPT, [keys.job(job_id), keys.owner_index(owner)], [owner, keys.EVENTS_CHANNEL, job_id]
        )
        return bool(deleted)

    async def list_docs(
        self, owner: str, *, limit: int, after: str | None = None, status: JobStatus | None = None
    ) -> tuple[list[bytes], str | None]:
        """Up to `limit` job docs, newest first, and the cursor of the next page (None at the end)."""
        reply = await self.client.run_script(
            _LIST_SCRIPT,
            [keys.owner_index(owner)],
            ["(" + after if after else "+", limit, status or "", keys.job(""), LIST_SCAN_BUDGET],
        )
        last, docs = reply[0].decode(), list(reply[1:])
        return docs, (encode_cursor(last) if last else None)


class SyncJobStore:
    """Blocking job store used by the worker: read a job, move it along."""

    def __init__(self, client: redis.Redis, *, job_ttl: int) -> None:
        self.client = client
        self.job_ttl = job_ttl
        self._transition = client.register_script(_TRANSITION)

    def get(self, job_id: str) -> StoredJob | None:
        return _decode_stored(self.client.hmget(keys.job(job_id), ["rev", "doc"]))

    def transition(self, stored: StoredJob, new: Job) -> StoredJob | None:
        """Store `new` if the job is still at `stored.rev`; None when it moved on (or went) meanwhile."""
        rev = int(self._transition(keys=[keys.job(new.id)], args=_transition_args(stored, new, self.job_ttl)))
        return StoredJob(job=new, rev=rev) if rev > 0 else None
