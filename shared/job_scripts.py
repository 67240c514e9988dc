"""The job store's Lua scripts: every change to a job is one of these, atomic and one round trip.

Layout (names from `shared.keys`; scripts get every key through KEYS):

    job hash (keys.job)  owner    who may see it
                         status   queued | running | succeeded | failed | canceled (mirrors doc.status)
                         rev      bumped on every change of doc; transitions compare-and-set on it
                         doc      the public JSON (`schemas.Job`), served as stored
                         idx      its member in the owner index;  idem  its Idempotency-Key key, or ''
                         msg      delivery tag of the job's latest task message
                         due      while queued: when it may start (Redis time), 0 when it may start now
                         worker   while running: the worker whose lease vouches for it
                         chk      the tag the recovery sweep last saw taken but not started
                         hook     the job's own webhook (JSON), or ''
                         rid      the request id of the submission ('' when none), sent with every
                                  task message of the job
                         pushed   when its latest task message was pushed (Redis time), for the
                                  age of the oldest waiting message (`BACKLOG`)
    keys.job_events      the job's events: `type` (job.queued, job.running, job.retrying,
                         job.succeeded, job.failed, job.canceled), `rev`, and `doc` (the job as it
                         was) while unfinished; a finished job's doc is the job hash's. Capped, and
                         expiring with the job.
    keys.OUTBOX          `<job id>/<event id>` of every event that a webhook may want: the job has
                         a `hook`, or its owner has endpoints (`keys.user_webhooks`)
    keys.PENDING         every unfinished job, scored by when the recovery sweep looks at it next
                         (running: lease expiry; delayed: due time; queued: next message check)
    keys.QUEUE           Celery's list: task messages, LPUSHed here, BRPOPed by workers

Time is always Redis's own (`TIME`), so hosts with different clocks agree. Every change is
recorded as an event in the same script (so an event is never lost between a change and its
delivery) and published on the events channel as `{id, owner, status, rev}` to wake waiters.
"""

from __future__ import annotations

from shared.redis_mux import Script

__all__ = [
    "BACKLOG",
    "CREATE",
    "DELETE",
    "LIST",
    "NUDGE",
    "OVERDUE",
    "READ",
    "RECOVER",
    "RENEW",
    "RETRY",
    "START",
    "TRANSITION",
]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

_PUBLISH = """
local function publish(channel, id, owner, status, rev)
  redis.call('PUBLISH', channel, cjson.encode({id = id, owner = owner, status = status, rev = rev}))
end
"""

# Every script that changes a job records the change: on the job's event stream, and in the
# webhook outbox when a webhook may want it. `doc` is '' for a finished job (its hash has it).
_RECORD = """
local function record(job, stream, outbox, endpoints, id, kind, rev, doc, ttl, at)
  local sid
  if doc ~= '' then
    sid = redis.call('XADD', stream, 'MAXLEN', '~', 64, '*', 'type', kind, 'rev', rev, 'doc', doc)
  else
    sid = redis.call('XADD', stream, 'MAXLEN', '~', 64, '*', 'type', kind, 'rev', rev)
  end
  redis.call('EXPIRE', stream, ttl)
  local hook = redis.call('HGET', job, 'hook')
  if (hook and hook ~= '') or redis.call('SCARD', endpoints) > 0 then
    redis.call('ZADD', outbox, at, id .. '/' .. sid)
  end
  return sid
end
"""

_FINISHED = """
local finished = {succeeded = true, failed = true, canceled = true}
"""

CREATE = Script(
    _NOW
    + _RECORD
    + """
-- KEYS: job, owner index, idempotency key ('' when none), queue, pending, events, outbox, the
--       owner's endpoints
-- ARGV: id, owner, doc, index member, fingerprint, job ttl, idempotency ttl, task envelope, job key
--       prefix (for an earlier job's doc), seconds until the first message check, message tag,
--       the job's webhook ('' when none), the request id ('' when none)
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
           'idx', ARGV[4], 'idem', KEYS[3], 'msg', ARGV[11], 'due', 0, 'hook', ARGV[12],
           'rid', ARGV[13], 'pushed', now)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[6])
if KEYS[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[1] .. ':' .. ARGV[5], 'EX', ARGV[7])
end
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[10]), ARGV[1])
redis.call('LPUSH', KEYS[4], ARGV[8])
record(KEYS[1], KEYS[6], KEYS[7], KEYS[8], ARGV[1], 'job.queued', 1, ARGV[3], ARGV[6], now)
return {'created', ARGV[1]}
"""
)

READ = Script("""
-- A job's owner and public JSON: what a poll answers (run where a plain HMGET cannot go, e.g.
-- behind the rate limiter's check in the same script, `api.limits.QuotaGuard`).
-- KEYS: job.  Returns {owner, doc} (nil each for a missing job).
return redis.call('HMGET', KEYS[1], 'owner', 'doc')
""")

TRANSITION = Script(
    _NOW
    + _PUBLISH
    + _RECORD
    + _FINISHED
    + """
-- A change of the doc that needs no scheduling: finishing (succeeded, failed, canceled) or an
-- edit of a queued or running job. Finished jobs leave the pending set.
-- KEYS: job, pending, events, outbox, the owner's endpoints.
-- ARGV: expected rev, new status, new doc, job ttl, channel, id
-- Returns the new rev, 0 if the job moved on meanwhile, -1 if it is gone.
local current = redis.call('HMGET', KEYS[1], 'rev', 'owner')
if not current[1] then return -1 end
if current[1] ~= ARGV[1] then return 0 end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'doc', ARGV[3])
local doc = ARGV[3]
if finished[ARGV[2]] then
  redis.call('HDEL', KEYS[1], 'worker', 'due', 'chk')
  redis.call('ZREM', KEYS[2], ARGV[6])
  doc = ''
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
record(KEYS[1], KEYS[3], KEYS[4], KEYS[5], ARGV[6], 'job.' .. ARGV[2], rev, doc, ARGV[4], now)
publish(ARGV[5], ARGV[6], current[2], ARGV[2], rev)
return rev
"""
)

START = Script(
    _NOW
    + _PUBLISH
    + _RECORD
    + """
-- A worker takes a queued job: running, held by the worker's lease.
-- KEYS: job, pending, events, outbox, the owner's endpoints.
-- ARGV: expected rev, new doc, worker, lease seconds, job ttl, channel, id
-- Returns the new rev; 0 moved on meanwhile; -1 gone; -2 not queued; -3 queued but not due yet.
local current = redis.call('HMGET', KEYS[1], 'rev', 'owner', 'status', 'due')
if not current[1] then return -1 end
if current[1] ~= ARGV[1] then return 0 end
if current[3] ~= 'queued' then return -2 end
if tonumber(current[4] or '0') > now then return -3 end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'doc', ARGV[2], 'worker', ARGV[3], 'due', 0)
redis.call('HDEL', KEYS[1], 'chk')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[5])
record(KEYS[1], KEYS[3], KEYS[4], KEYS[5], ARGV[7], 'job.running', rev, ARGV[2], ARGV[5], now)
publish(ARGV[6], ARGV[7], current[2], 'running', rev)
return rev
"""
)

RETRY = Script(
    _NOW
    + _PUBLISH
    + _RECORD
    + """
-- Queued again, to start after a delay (a retry's backoff, or a wait for the Groq budget). The
-- recovery sweep pushes its task message when it is due: no worker holds a message meanwhile.
-- KEYS: job, pending, events, outbox, the owner's endpoints.
-- ARGV: expected rev, new doc, delay seconds, job ttl, channel, id, event type
-- Returns the new rev, 0 if the job moved on meanwhile, -1 if it is gone.
local current = redis.call('HMGET', KEYS[1], 'rev', 'owner')
if not current[1] then return -1 end
if current[1] ~= ARGV[1] then return 0 end
local due = now + tonumber(ARGV[3])
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HSET', KEYS[1], 'status', 'queued', 'doc', ARGV[2], 'due', due)
redis.call('HDEL', KEYS[1], 'worker', 'chk')
redis.call('ZADD', KEYS[2], due, ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[4])
record(KEYS[1], KEYS[3], KEYS[4], KEYS[5], ARGV[6], ARGV[7], rev, ARGV[2], ARGV[4], now)
publish(ARGV[5], ARGV[6], current[2], 'queued', rev)
return rev
"""
)

RENEW = Script(
    _NOW
    + """
-- A worker vouches for the jobs it is running: their leases move forward.
-- KEYS: pending, then the job keys.  ARGV: worker, lease seconds, then the job ids (same order)
local renewed = 0
for i = 2, #KEYS do
  local job = redis.call('HMGET', KEYS[i], 'status', 'worker')
  if job[1] == 'running' and job[2] == ARGV[1] then
    renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[i + 1])
  end
end
return renewed
"""
)

OVERDUE = Script(
    _NOW
    + """
-- KEYS: pending.  ARGV: limit.  Returns {now, id, id, ...}: the jobs the sweep should look at.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
table.insert(ids, 1, tostring(now))
return ids
"""
)

RECOVER = Script(
    _NOW
    + _PUBLISH
    + _RECORD
    + """
-- A running job whose lease ran out (its worker stopped vouching for it): queued again with a new
-- task message, or failed once it has used up its attempts.
-- KEYS: job, pending, queue, events, outbox, the owner's endpoints.
-- ARGV: expected rev, new status (queued|failed), new doc, envelope, message tag, seconds until
--       the next message check, job ttl, channel, id
-- Returns the new rev; 0 if the job moved on or its lease was renewed meanwhile; -1 if it is gone.
local current = redis.call('HMGET', KEYS[1], 'rev', 'owner', 'status')
if not current[1] then redis.call('ZREM', KEYS[2], ARGV[9]) return -1 end
if current[1] ~= ARGV[1] or current[3] ~= 'running' then return 0 end
local lease = redis.call('ZSCORE', KEYS[2], ARGV[9])
if lease and tonumber(lease) > now then return 0 end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HDEL', KEYS[1], 'worker', 'chk')
if ARGV[2] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'doc', ARGV[3], 'msg', ARGV[5], 'due', 0, 'pushed', now)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[9])
  redis.call('LPUSH', KEYS[3], ARGV[4])
  record(KEYS[1], KEYS[4], KEYS[5], KEYS[6], ARGV[9], 'job.retrying', rev, ARGV[3], ARGV[7], now)
else
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'doc', ARGV[3])
  redis.call('HDEL', KEYS[1], 'due')
  redis.call('ZREM', KEYS[2], ARGV[9])
  record(KEYS[1], KEYS[4], KEYS[5], KEYS[6], ARGV[9], 'job.' .. ARGV[2], rev, '', ARGV[7], now)
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
publish(ARGV[8], ARGV[9], current[2], ARGV[2], rev)
return rev
"""
)

NUDGE = Script(
    _NOW
    + """
-- Makes sure a queued job will be taken: a delayed job that is due gets its task message; a job
-- whose message is neither on the queue nor taken by a worker (lost with a crash, or with the
-- last second of writes when Redis restarts from its AOF), or was taken a whole check period ago
-- and never started, gets a new one. Duplicates are harmless: a worker only starts a queued job.
-- KEYS: job, pending, queue, unacked.  ARGV: the current message (as pushed), a new message, its
--       tag, seconds until the next check, id
-- Returns 'gone', 'busy' (not queued), 'waiting', 'queued', 'taken', 'pushed'.
local job = redis.call('HMGET', KEYS[1], 'status', 'due', 'msg', 'chk')
if not job[1] then redis.call('ZREM', KEYS[2], ARGV[5]) return 'gone' end
if job[1] ~= 'queued' then return 'busy' end
local due = tonumber(job[2] or '0')
if due > now then redis.call('ZADD', KEYS[2], due, ARGV[5]) return 'waiting' end
local function push()
  redis.call('LPUSH', KEYS[3], ARGV[2])
  redis.call('HSET', KEYS[1], 'msg', ARGV[3], 'due', 0, 'pushed', now)
  redis.call('HDEL', KEYS[1], 'chk')
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[5])
  return 'pushed'
end
if due > 0 then return push() end
local check_again = now + tonumber(ARGV[4])
if job[3] and redis.call('HEXISTS', KEYS[4], job[3]) == 1 then
  if job[4] == job[3] then return push() end
  redis.call('HSET', KEYS[1], 'chk', job[3])
  redis.call('ZADD', KEYS[2], check_again, ARGV[5])
  return 'taken'
end
-- The oldest messages sit at the tail, where workers take them: search from there.
if redis.call('LPOS', KEYS[3], ARGV[1], 'RANK', -1) then
  redis.call('ZADD', KEYS[2], check_again, ARGV[5])
  return 'queued'
end
return push()
"""
)

BACKLOG = Script(
    _NOW
    + """
-- What /metrics reports from Redis: live workers, and per queue how many messages wait and how
-- long the oldest has waited. Workers take messages from a queue's tail, so the oldest waiting
-- message is there; its age is its record's `pushed` time (a job's, or a webhook delivery's: the
-- record its task id names; a message whose record is gone is skipped).
-- KEYS: workers, then the queues.  ARGV: seconds a heartbeat counts, how many messages from the
--       tail to look at, then per queue the key prefix of its records.
-- Returns {workers alive, depth, age, depth, age, ...} (ages as strings: seconds, 0 when none waits).
local out = {redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')}
for i = 2, #KEYS do
  local depth = redis.call('LLEN', KEYS[i])
  local age = 0
  if depth > 0 then
    local tail = redis.call('LRANGE', KEYS[i], -tonumber(ARGV[2]), -1)
    for j = #tail, 1, -1 do
      local ok, message = pcall(cjson.decode, tail[j])
      local id = ok and type(message) == 'table' and type(message.headers) == 'table' and message.headers.id
      local pushed = type(id) == 'string' and redis.call('HGET', ARGV[1 + i] .. id, 'pushed')
      if pushed then
        age = math.max(0, now - tonumber(pushed))
        break
      end
    end
  end
  table.insert(out, depth)
  table.insert(out, tostring(age))
end
return out
"""
)

DELETE = Script(
    _PUBLISH
    + """
-- Deletes jobs of one owner and everything stored for them; open long-polls end at once.
-- KEYS: owner index, pending, then per job: job key, its events, its idempotency key ('' when none).
-- ARGV: owner, channel, then the job ids (same order).  Returns how many were deleted.
local deleted = 0
for i = 3, #KEYS, 3 do
  local id = ARGV[(i - 3) / 3 + 3]
  local fields = redis.call('HMGET', KEYS[i], 'owner', 'idx')
  if fields[1] == ARGV[1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('DEL', KEYS[i], KEYS[i + 1])
    redis.call('ZREM', KEYS[1], fields[2])
    if KEYS[i + 2] ~= '' then redis.call('DEL', KEYS[i + 2]) end
    publish(ARGV[2], id, ARGV[1], 'deleted', 0)
    deleted = deleted + 1
  end
end
return deleted
"""
)

LIST = Script("""
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
""")
