"""The Groq budget shared by every worker process and host: requests and tokens per window.

Groq limits an organisation, not a process, so the budget lives in Redis: a moving window (a
sorted set of reservations, scored by Redis's own clock so every host agrees) holds the calls of
the last `window` seconds and their estimated tokens. `reserve()` either records a call and says
go (0), or records nothing and says how many seconds until one fits; the caller then retries the
job with that countdown instead of calling Groq and collecting 429s.
"""

from __future__ import annotations

import uuid

import redis

from shared import keys

__all__ = ["GroqBudget"]

_RESERVE = """
-- KEYS: window set.  ARGV: window seconds, requests per window (0: none), tokens per window (0: none),
-- this call's estimated tokens, reservation id.  Returns '0' (reserved) or the seconds to wait.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window, max_requests, max_tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if max_tokens > 0 and cost > max_tokens then cost = max_tokens end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #entries / 2
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
local wait = 0
if max_requests > 0 and count + 1 > max_requests then
  -- the oldest (count + 1 - max_requests) reservations must leave the window first
  local index = 2 * (count + 1 - max_requests)
  wait = math.max(wait, tonumber(entries[index]) + window - now)
end
if max_tokens > 0 and used + cost > max_tokens then
  local need, freed = used + cost - max_tokens, 0
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
    if freed >= need then
      wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
      break
    end
  end
end
if wait > 0 then return tostring(wait) end
redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. cost)
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return '0'
"""


class GroqBudget:
    def __init__(
        self, client: redis.Redis, *, requests: int, tokens: int, tokens_per_call: int, window: float = 60.0
    ) -> None:
        self.requests = requests
        self.tokens = tokens
        self.tokens_per_call = tokens_per_call
        self.window = window
        self._reserve = client.register_script(_RESERVE)

    @property
    def enabled(self) -> bool:
        return self.requests > 0 or self.tokens > 0

    def reserve(self) -> float:
        """0 when this call may go now (and is counted), else the seconds until one fits."""
        if not self.enabled:
            return 0.0
        reply = self._reserve(
            keys=[keys.GROQ_BUDGET],
            args=[self.window, self.requests, self.tokens, self.tokens_per_call, uuid.uuid4().hex],
        )
        return float(reply)
