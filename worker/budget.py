"""The Groq budget shared by every worker process and host: requests and tokens per window.

Groq limits an organisation, not a process, so the budget lives in Redis: a moving window (a
sorted set of entries `<id>:<tokens>`, scored by Redis's own clock so every host agrees) holds
the calls of the last `window` seconds and their tokens. `reserve()` either records a call at
its estimated cost (`tokens_per_call`) and says go, or records nothing and says how many seconds
until one fits; the caller then retries the job with that countdown instead of calling Groq and
collecting 429s.

`settle()` reconciles a reservation once the attempt is over:

- the estimate becomes the tokens the responses' `usage` reported, and every further call of the
  attempt (a repair, a retry after a cut-off answer) counts as a request of its own; an attempt
  that made no call gives its reservation back;
- when Groq's `x-ratelimit-remaining-tokens` says fewer tokens are left than the window thinks
  (another client of the same organisation, or a longer prompt than estimated), the difference
  is booked as an entry that leaves the window when Groq says its tokens reset; likewise
  `x-ratelimit-remaining-requests` (Groq counts those per day) holds back the calls it has not got.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

from shared import keys
from worker.providers.base import Spend

__all__ = ["GroqBudget", "Reservation"]

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
if redis.call('PTTL', KEYS[1]) < window * 1000 then redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000)) end
return '0'
"""

_SETTLE = """
-- KEYS: window set.  ARGV: window seconds, requests per window, tokens per window, the reservation's
-- member ('<id>:<estimate>'), its id, tokens used (-1: unknown, keep the estimate), calls made,
-- Groq's remaining tokens (-1: unknown), seconds until they reset, Groq's remaining requests (-1:
-- unknown), seconds until they reset.  Returns the tokens booked for Groq's view (0 if none).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window, max_requests, max_tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used, calls = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local score = redis.call('ZSCORE', KEYS[1], ARGV[4])
if score then
  redis.call('ZREM', KEYS[1], ARGV[4])
  if calls > 0 then
    local tokens = used >= 0 and used or tonumber(string.match(ARGV[4], ':(%d+)$'))
    redis.call('ZADD', KEYS[1], score, ARGV[5] .. ':' .. tokens)
    for i = 2, calls do redis.call('ZADD', KEYS[1], score, ARGV[5] .. '+' .. i .. ':0') end
  end
end
local longest = window
local booked = 0
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local remaining, reset = tonumber(ARGV[8]), tonumber(ARGV[9])
if max_tokens > 0 and remaining >= 0 then
  local in_window = 0
  for i = 1, #entries, 2 do in_window = in_window + tonumber(string.match(entries[i], ':(%d+)$')) end
  local ours = max_tokens - in_window
  if remaining < ours then
    if reset < 0 or reset > window then reset = window end
    booked = ours - remaining
    redis.call('ZADD', KEYS[1], now - window + reset, ARGV[5] .. '#tokens:' .. booked)
  end
end
local remaining_requests, requests_reset = tonumber(ARGV[10]), tonumber(ARGV[11])
if max_requests > 0 and remaining_requests >= 0 then
  entries = redis.call('ZRANGE', KEYS[1], 0, -1)
  local free = max_requests - #entries
  if remaining_requests < free then
    if requests_reset < 0 then requests_reset = window end
    for i = 1, free - remaining_requests do
      redis.call('ZADD', KEYS[1], now - window + requests_reset, ARGV[5] .. '#requests' .. i .. ':0')
    end
    longest = math.max(longest, requests_reset)
  end
end
if redis.call('PTTL', KEYS[1]) < longest * 1000 then redis.call('PEXPIRE', KEYS[1], math.ceil(longest * 1000)) end
return booked
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer of `reserve()`: go (`wait == 0`, with the entry to settle later) or wait."""

    wait: float
    id: str = ""
    tokens: int = 0

    @property
    def member(self) -> str:
        return f"{self.id}:{self.tokens}"


class GroqBudget:
    def __init__(
        self, client: redis.Redis, *, requests: int, tokens: int, tokens_per_call: int, window: float = 60.0
    ) -> None:
        self.requests = requests
        self.tokens = tokens
        self.tokens_per_call = tokens_per_call
        self.window = window
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    @property
    def enabled(self) -> bool:
        return self.requests > 0 or self.tokens > 0

    def reserve(self) -> Reservation:
        """Go (the call is counted at its estimate) or the seconds until one fits."""
        if not self.enabled:
            return Reservation(wait=0.0)
        reservation_id = uuid.uuid4().hex
        cost = min(self.tokens_per_call, self.tokens) if self.tokens > 0 else self.tokens_per_call
        reply = self._reserve(
            keys=[keys.GROQ_BUDGET],
            args=[self.window, self.requests, self.tokens, self.tokens_per_call, reservation_id],
        )
        wait = float(reply)
        return Reservation(wait=wait) if wait > 0 else Reservation(wait=0.0, id=reservation_id, tokens=cost)

    def settle(self, reservation: Reservation, spend: Spend) -> int:
        """Reconcile `reservation` with what the attempt really cost (see the module docstring);
        returns the tokens booked because Groq said fewer were left."""
        if not self.enabled or not reservation.id:
            return 0
        limits = spend.limits

        def known(value: float | None) -> float:
            return -1 if value is None else value

        return int(
            self._settle(
                keys=[keys.GROQ_BUDGET],
                args=[
                    self.window,
                    self.requests,
                    self.tokens,
                    reservation.member,
                    reservation.id,
                    spend.usage.total_tokens if spend.usage is not None else -1,
                    spend.calls,
                    known(limits.remaining_tokens if limits else None),
                    known(limits.reset_tokens if limits else None),
                    known(limits.remaining_requests if limits else None),
                    known(limits.reset_requests if limits else None),
                ],
            )
        )
