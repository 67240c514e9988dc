"""The webhook store's Lua scripts: each change is one of these, atomic and one round trip.

Layout (names from `shared.keys`; scripts get every key through KEYS):

    keys.user_webhooks(owner)   set of the owner's endpoint ids (the job scripts read its size)
    keys.webhook(id)            owner, url, events (comma-separated), description, enabled (1|0),
                                disabled_reason, failing_since (unix s, '' while deliveries
                                succeed), created_at, updated_at (unix s), secret,
                                previous_secret, previous_until (unix s: the old secret signs too)
    keys.webhook_secret(owner)  secret, previous_secret, previous_until: signs per-job webhooks
    keys.OUTBOX                 `<job id>/<event id>` of events to expand (written by the job scripts)
    keys.delivery(id)           one event to one target: owner, job ('' for a ping), endpoint ('' for
                                the job's own webhook), event, url (the job's webhook; '' = the
                                endpoint's), body (the payload, fixed at creation), msg (webhook-id),
                                status (pending | succeeded | failed), attempts (all, numbering the
                                log), tries (this round, indexing the retry schedule), next_at (may
                                be attempted from then), held (an attempt holds it until then),
                                created (unix s), rid (the request id its messages carry: the
                                job's submission's, or the API request's for a ping), pushed
                                (when its latest task message was pushed, for the queue's age)
    keys.delivery_attempts(id)  attempt number -> the attempt's log entry (JSON)
    keys.job_deliveries(job), keys.webhook_deliveries(endpoint)
                                delivery logs: `<µs>:<delivery id>:<attempt>` (scores 0, by lex)
    keys.user_deliveries(owner) the owner's delivery ids (account deletion)
    keys.WEBHOOK_DELIVERIES_DUE pending deliveries, scored by when the sweep looks at each next: its
                                next_at, the end of an attempt's hold, or the check of a pushed message
    keys.WEBHOOK_QUEUE          Celery's list of delivery task messages

Delivery records expire with the job (`JOB_TTL`); endpoints and secrets last until deleted.
"""

from __future__ import annotations

from shared.redis_mux import Script

__all__ = [
    "CLAIM",
    "CREATE_ENDPOINT",
    "DELETE_ENDPOINT",
    "DELETE_OWNER",
    "DUE",
    "EXPAND",
    "FINISH",
    "PING",
    "POSTPONE",
    "PUSH_DUE",
    "REDELIVER",
    "ROTATE",
    "UNCLAIM",
    "UPDATE_ENDPOINT",
]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# Creates one delivery unless it exists (deliveries have deterministic ids) and pushes its message.
_NEW_DELIVERY = """
local function new_delivery(key, due, queue, owned, ttl, check, id, owner, job, endpoint, event, url, body, msg, env,
                            rid)
  if redis.call('EXISTS', key) == 1 then return 0 end
  redis.call('HSET', key, 'owner', owner, 'job', job, 'endpoint', endpoint, 'event', event, 'url', url,
             'body', body, 'msg', msg, 'status', 'pending', 'attempts', 0, 'tries', 0, 'next_at', 0,
             'held', 0, 'created', now, 'rid', rid, 'pushed', now)
  redis.call('EXPIRE', key, ttl)
  redis.call('SADD', owned, id)
  redis.call('EXPIRE', owned, ttl)
  redis.call('ZADD', due, now + tonumber(check), id)
  redis.call('LPUSH', queue, env)
  return 1
end
"""

EXPAND = Script(
    _NOW
    + _NEW_DELIVERY
    + """
-- One outbox event becomes its deliveries, with their task messages; the outbox entry goes in the
-- same step. Someone else expanded it already when the entry is gone: nothing is done then.
-- KEYS: outbox, due, queue, the owner's deliveries, then each delivery's key.
-- ARGV: outbox member, ttl, seconds until the sweep checks a pushed message, owner, then per
--       delivery: id, job, endpoint, event, url, body, msg, task message, request id.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return -1 end
local created = 0
for i = 5, #KEYS do
  local a = 5 + (i - 5) * 9
  created = created + new_delivery(KEYS[i], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3], ARGV[a], ARGV[4],
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8])
end
return created
"""
)

PING = Script(
    _NOW
    + _NEW_DELIVERY
    + """
-- A test event for one endpoint of the owner's.
-- KEYS: delivery, due, queue, the owner's deliveries, the endpoint.
-- ARGV: id, owner, endpoint id, body, msg, task message, ttl, check seconds, request id.  Returns 1,
-- or 0 if the endpoint is not the owner's.
if redis.call('HGET', KEYS[5], 'owner') ~= ARGV[2] then return 0 end
return new_delivery(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[7], ARGV[8], ARGV[1], ARGV[2], '', ARGV[3],
                    'ping', '', ARGV[4], ARGV[5], ARGV[6], ARGV[9])
"""
)

PUSH_DUE = Script(
    _NOW
    + """
-- Task messages for deliveries whose time has come (a retry, or an attempt or message lost with a
-- crash); each is looked at again after `check` seconds unless an attempt takes it meanwhile.
-- Duplicates are harmless: an attempt starts only by CLAIM.
-- KEYS: due, queue, then each delivery's key.  ARGV: check seconds, then pairs of delivery id,
-- task message (in the order of the delivery keys).
local pushed = 0
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
    local delivery = KEYS[2 + i / 2]
    if redis.call('EXISTS', delivery) == 1 then redis.call('HSET', delivery, 'pushed', now) end
    pushed = pushed + 1
  end
end
return pushed
"""
)

DUE = Script(
    _NOW
    + """
-- KEYS: due.  ARGV: limit.  Returns the ids of the deliveries whose time has come (Redis's clock).
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

CLAIM = Script(
    _NOW
    + """
-- An attempt starts: the delivery is held for `hold` seconds (after that the sweep sends it again:
-- the worker died mid-attempt), and the attempt counted.
-- KEYS: delivery, due.  ARGV: id, hold seconds.
-- Returns {'claimed', now, attempt, tries, owner, job, endpoint, event, url, body, msg} or {why not}.
local d = redis.call('HMGET', KEYS[1], 'status', 'next_at', 'held')
if not d[1] then redis.call('ZREM', KEYS[2], ARGV[1]) return {'gone'} end
if d[1] ~= 'pending' then redis.call('ZREM', KEYS[2], ARGV[1]) return {d[1]} end
if tonumber(d[2]) > now then redis.call('ZADD', KEYS[2], d[2], ARGV[1]) return {'not_due'} end
if tonumber(d[3]) > now then redis.call('ZADD', KEYS[2], d[3], ARGV[1]) return {'held'} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
local held = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'held', held)
redis.call('ZADD', KEYS[2], held, ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'owner', 'job', 'endpoint', 'event', 'url', 'body', 'msg')
return {'claimed', tostring(now), attempt, tries, f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
"""
)

UNCLAIM = Script(
    _NOW
    + """
-- An attempt that could not start after all (its receiver has as many attempts running as it may
-- have): uncounted, and sent again after `delay` seconds.
-- KEYS: delivery, due.  ARGV: id, attempt, delay.
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
redis.call('HINCRBY', KEYS[1], 'tries', -1)
redis.call('HSET', KEYS[1], 'held', 0)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

POSTPONE = Script(
    _NOW
    + """
-- No delivery slot free in this worker: the sweep sends the message again after `delay` seconds.
-- KEYS: due.  ARGV: id, delay.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
return 1
"""
)

FINISH = Script(
    _NOW
    + """
-- An attempt's outcome: logged, and the delivery succeeded, scheduled again or failed; the
-- endpoint's failure state follows (disabled by a 410, or after failing for `disable_after`).
-- KEYS: delivery, due, its attempts, the job's log ('' for a ping), the endpoint ('' for a job's
--       own webhook), the endpoint's log ('' likewise).
-- ARGV: id, attempt, outcome (succeeded|retrying|failed), retry delay, log entry, log member, ttl,
--       disable_after seconds, disable reason ('' unless the receiver asked: 410), failure text
-- Returns 'gone', 'stale' (a later attempt took over; only logged), or the outcome.
local d = redis.call('HMGET', KEYS[1], 'status', 'attempts')
if not d[1] then return 'gone' end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[7])
local logs = {KEYS[4]}
if KEYS[5] ~= '' and redis.call('EXISTS', KEYS[5]) == 1 then logs[2] = KEYS[6] end  -- not a deleted endpoint's
for _, log in ipairs(logs) do
  if log ~= '' then
    redis.call('ZADD', log, 0, ARGV[6])
    redis.call('EXPIRE', log, ARGV[7])
  end
end
if d[1] ~= 'pending' or d[2] ~= ARGV[2] then return 'stale' end
if ARGV[3] == 'retrying' then
  local at = now + tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'next_at', at, 'held', 0)
  redis.call('ZADD', KEYS[2], at, ARGV[1])
else
  redis.call('HSET', KEYS[1], 'status', ARGV[3], 'held', 0)
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if KEYS[5] ~= '' and redis.call('EXISTS', KEYS[5]) == 1 then
  if ARGV[3] == 'succeeded' then
    redis.call('HSET', KEYS[5], 'failing_since', '')
  else
    local since = tonumber(redis.call('HGET', KEYS[5], 'failing_since') or '')
    if not since then
      since = now
      redis.call('HSET', KEYS[5], 'failing_since', now)
    end
    local reason = ARGV[9]
    if reason == '' and now - since >= tonumber(ARGV[8]) then reason = ARGV[10] end
    if reason ~= '' and redis.call('HGET', KEYS[5], 'enabled') == '1' then
      redis.call('HSET', KEYS[5], 'enabled', '0', 'disabled_reason', reason, 'updated_at', now)
    end
  end
end
return ARGV[3]
"""
)

REDELIVER = Script(
    _NOW
    + """
-- Send a delivery again now, with the same webhook-id, on a fresh retry schedule.
-- KEYS: delivery, due, queue.  ARGV: id, owner, task message, check seconds, ttl.
-- Returns the webhook-id, or false if the delivery is not the owner's.
local d = redis.call('HMGET', KEYS[1], 'owner', 'msg')
if d[1] ~= ARGV[2] then return false end
redis.call('HSET', KEYS[1], 'status', 'pending', 'next_at', 0, 'tries', 0, 'pushed', now)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[3])
return d[2]
"""
)

CREATE_ENDPOINT = Script(
    _NOW
    + """
-- KEYS: the owner's endpoints, the endpoint.  ARGV: limit, id, owner, url, events, description, secret.
-- Returns the creation time, or false when the owner has `limit` endpoints already.
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return false end
redis.call('HSET', KEYS[2], 'owner', ARGV[3], 'url', ARGV[4], 'events', ARGV[5], 'description', ARGV[6],
           'enabled', '1', 'disabled_reason', '', 'failing_since', '', 'created_at', now, 'updated_at', now,
           'secret', ARGV[7], 'previous_secret', '', 'previous_until', 0)
redis.call('SADD', KEYS[1], ARGV[2])
return tostring(now)
"""
)

UPDATE_ENDPOINT = Script(
    _NOW
    + """
-- KEYS: the endpoint.  ARGV: owner, then field/value pairs.  Enabling clears the failure state.
-- Returns 1, or 0 if the endpoint is not the owner's.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'enabled' and ARGV[i + 1] == '1' then
    redis.call('HSET', KEYS[1], 'disabled_reason', '', 'failing_since', '')
  end
end
redis.call('HSET', KEYS[1], 'updated_at', now)
return 1
"""
)

DELETE_ENDPOINT = Script("""
-- KEYS: the owner's endpoints, the endpoint, its log.  ARGV: owner, id.  Returns 1, or 0 if not the owner's.
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[1], ARGV[2])
return 1
""")

ROTATE = Script(
    _NOW
    + """
-- A new secret; the current one keeps signing for `overlap` seconds. Works for an endpoint (owner
-- checked) and for the owner's default secret (created on first use: ARGV[2] then signs alone).
-- KEYS: the hash holding the secret.  ARGV: owner, new secret, overlap seconds, rotate (1) or only
-- create if missing (0), must exist (1: an endpoint) or not.
-- Returns {secret, previous_until} or false if it is not the owner's.
local current = redis.call('HMGET', KEYS[1], 'owner', 'secret', 'previous_until')
if (current[1] or ARGV[5] == '1') and current[1] ~= ARGV[1] then return false end
if not current[2] then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'secret', ARGV[2], 'previous_secret', '', 'previous_until', 0)
  return {ARGV[2], '0'}
end
if ARGV[4] == '0' then return {current[2], current[3] or '0'} end
local previous_until = tostring(now + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'previous_secret', current[2], 'previous_until', previous_until)
return {ARGV[2], previous_until}
"""
)

DELETE_OWNER = Script("""
-- Deletes an owner's endpoints, secret and deliveries (account deletion), one batch at a time.
-- KEYS: the owner's endpoints, default secret, deliveries, due, then for each of `n` endpoints its
--       key and log, then per delivery: its key, its attempts, its job's log ('' for a ping).
-- ARGV: n, then the endpoint ids, then the delivery ids.
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('DEL', KEYS[3 + 2 * i], KEYS[4 + 2 * i])
  redis.call('SREM', KEYS[1], ARGV[1 + i])
end
local first = 5 + 2 * n
for i = first, #KEYS, 3 do
  local id = ARGV[2 + n + (i - first) / 3]
  redis.call('DEL', KEYS[i], KEYS[i + 1])
  if KEYS[i + 2] ~= '' then redis.call('DEL', KEYS[i + 2]) end
  redis.call('ZREM', KEYS[4], id)
  redis.call('SREM', KEYS[3], id)
end
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('SCARD', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
""")
