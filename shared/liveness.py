"""Worker liveness on Redis's clock: workers beat, the API counts who beat recently.

Each worker process scores its name in `keys.WORKERS` with Redis's `TIME` every
`WORKER_HEARTBEAT_INTERVAL`; a worker is alive while its last beat is younger than
`LEASE_BEATS` intervals. Both sides read Redis's clock, so hosts whose clocks disagree still
agree on who is alive.
"""

from __future__ import annotations

from shared.redis_mux import Script

__all__ = ["BEAT", "FORGET_AFTER", "STATUS"]

#: Seconds after which a silent worker's entry is removed (it stops counting as alive far sooner).
FORGET_AFTER = 3600

BEAT = Script("""
-- KEYS: workers.  ARGV: worker name, seconds after which silent workers are forgotten
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return 1
""")

STATUS = Script("""
-- KEYS: workers, queue.  ARGV: seconds a beat counts.  Returns {workers alive, queue depth}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
return {redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf'), redis.call('LLEN', KEYS[2])}
""")
