"""Rate limiting with the `limits` library (sliding-window counter), stored in Redis.

`limits` talks to Redis through a "bridge"; `MultiplexedBridge` runs limits' own Lua scripts on the
API's multiplexed connection (`shared.redis_mux`), so limits hold across every API process and
host, and a request's checks (hit + window stats, for every quota it is under) are written
together: one round trip.

On the hot paths (submit, poll) the check goes into the request's own Redis call: a `QuotaGuard`
runs limits' two sliding-window scripts, unchanged, as functions of one script that then runs the
job store's script only if the quota allowed the request (`guarded_source`). A submission or a
poll is then one round trip in all, where it was two (limits' check, then the store).

This module is the one place that knows limits' private layout (its window key names, its Lua
scripts and what they return); `tests/integration/test_quota_in_script.py` pins the version and
checks the merged script decides as limits' own `SlidingWindowCounterRateLimiter` does.

Failure policy when Redis cannot be reached: general quotas fail *open* (the request proceeds, an
error is logged and counted: a Redis outage must not become a total outage), authentication quotas
fail *closed* (503: an outage must not open the door to password guessing).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.bridge import RedisBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from shared import keys, metrics
from shared.errors import DependencyUnavailable, RateLimited
from shared.redis_mux import MultiplexedRedis, RedisReplyError, RedisUnavailable, Script

__all__ = [
    "Decision",
    "MultiplexedRedisStorage",
    "Quota",
    "QuotaGuard",
    "RateLimiter",
    "guarded_source",
    "quota",
    "seconds_until_allowed",
]

log = logging.getLogger(__name__)
_STORAGE_ERRORS = (RedisUnavailable, RedisReplyError, StorageError, OSError)
_KEY_CACHE = 10_000


def quota(amount: int, seconds: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount, seconds)


class MultiplexedBridge(RedisBridge):
    """limits' Redis operations on a `MultiplexedRedis` link, with limits' own scripts."""

    def __init__(self, link: MultiplexedRedis, key_prefix: str) -> None:  # no URI: the link is connected already
        self.link = link
        self.key_prefix = key_prefix
        self.acquire_sliding = Script(self.SCRIPT_ACQUIRE_SLIDING_WINDOW.decode())
        self.sliding = Script(self.SCRIPT_SLIDING_WINDOW.decode())
        self._acquire_moving = Script(self.SCRIPT_ACQUIRE_MOVING_WINDOW.decode())
        self._moving = Script(self.SCRIPT_MOVING_WINDOW.decode())
        self._incr_expire = Script(self.SCRIPT_INCR_EXPIRE.decode())
        self._clear_keys = Script(self.SCRIPT_CLEAR_KEYS.decode())

    def register_scripts(self) -> None:
        """Scripts load on first use (`Script`)."""

    def use_sentinel(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("the multiplexed bridge serves a single Redis")

    def use_basic(self, **options: str | float | bool) -> None:
        """Connected already."""

    def use_cluster(self, **options: str | float | bool) -> None:
        raise NotImplementedError("the multiplexed bridge serves a single Redis")

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (RedisUnavailable, RedisReplyError)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return int(await self.link.run_script(self._incr_expire, [self.prefixed_key(key)], [expiry, amount]))

    async def get(self, key: str) -> int:
        return int(await self.link.execute("GET", self.prefixed_key(key)) or 0)

    async def clear(self, key: str) -> None:
        await self.link.execute("DEL", self.prefixed_key(key))

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        window = await self.link.run_script(self._moving, [self.prefixed_key(key)], [now - expiry, limit])
        return (float(window[0]), int(window[1])) if window else (now, 0)

    async def get_sliding_window(
        self, previous_key: str, current_key: str, expiry: int
    ) -> tuple[int, float, int, float]:
        window = await self.link.run_script(
            self.sliding, [self.prefixed_key(previous_key), self.prefixed_key(current_key)], [expiry]
        )
        return self.window_state(window)

    @staticmethod
    def window_state(window: Any) -> tuple[int, float, int, float]:
        """(previous count, its TTL s, current count, its TTL s) from limits' sliding-window script."""
        if not window:
            return 0, 0.0, 0, 0.0
        return (
            int(window[0] or 0),
            max(0, float(window[1] or 0)) / 1000,
            int(window[2] or 0),
            max(0, float(window[3] or 0)) / 1000,
        )

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        acquired = await self.link.run_script(
            self._acquire_moving, [self.prefixed_key(key)], [time.time(), limit, expiry, amount]
        )
        return bool(acquired)

    async def acquire_sliding_window_entry(
        self, previous_key: str, current_key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        acquired = await self.link.run_script(
            self.acquire_sliding,
            [self.prefixed_key(previous_key), self.prefixed_key(current_key)],
            [limit, expiry, amount],
        )
        return bool(acquired)

    async def get_expiry(self, key: str) -> float:
        return max(int(await self.link.execute("TTL", self.prefixed_key(key))), 0) + time.time()

    async def check(self) -> bool:
        try:
            return bool(await self.link.execute("PING"))
        except (RedisUnavailable, RedisReplyError):
            return False

    async def reset(self) -> int | None:
        return await self.lua_reset()

    async def lua_reset(self) -> int | None:
        return int(await self.link.run_script(self._clear_keys, [self.prefixed_key("*")], []))


class MultiplexedRedisStorage(RedisStorage):
    """limits' Redis storage, talking through `MultiplexedBridge`."""

    STORAGE_SCHEME = ["async+trip-checklist-multiplexed"]  # noqa: RUF012 - limits' registry reads it
    DEPENDENCIES = {}  # noqa: RUF012 - none to import: the link is ours

    def __init__(self, link: MultiplexedRedis, key_prefix: str = keys.LIMITS_PREFIX) -> None:
        self.wrap_exceptions = True
        self.target_server = "redis"
        self.options = {}
        self.multiplexed = MultiplexedBridge(link, key_prefix)
        self.bridge = self.multiplexed


def seconds_until_allowed(
    limit: int, window: float, *, previous: int, previous_ttl: float, current: int, current_ttl: float
) -> float:
    """When one more request fits, for limits' sliding-window counter state. Pure.

    limits counts `previous * previous_ttl / window + current` (the previous window's count
    decaying linearly) and keeps the current window's key for two windows, shifting it to
    "previous" once its TTL falls below one window. A request fits while that count is below
    `limit`. limits' own `reset_time` can say "now" at the start of a window; this says when.
    """
    roll_in = max(0.0, current_ttl - window) if current else 0.0
    if current < limit:
        if previous == 0 or previous * previous_ttl / window + current < limit:
            return 0.0
        fits_at = previous_ttl - (limit - current) * window / previous
        if fits_at <= roll_in:
            return max(0.0, fits_at)
    # After the roll the current count becomes the decaying previous one.
    return roll_in + max(0.0, window - limit * window / current)


@dataclass(frozen=True, slots=True)
class Quota:
    """One budget a request spends from: `item` per `key` (e.g. 100/60 s per principal)."""

    name: str
    item: RateLimitItem
    key: str


def _assess(q: Quota, state: tuple[int, float, int, float]) -> tuple[Decision, float]:
    """A quota's header values, and the seconds until one more request fits, from its window state."""
    previous, previous_ttl, current, current_ttl = state
    window = q.item.get_expiry()
    remaining = max(0, q.item.amount - math.floor(previous * previous_ttl / window + current))
    wait = seconds_until_allowed(
        q.item.amount, window, previous=previous, previous_ttl=previous_ttl, current=current, current_ttl=current_ttl
    )
    # Reset: when a refused client may try again; otherwise when the current window rolls over.
    reset = wait if remaining == 0 else max(0.0, current_ttl - window)
    return Decision(limit=q.item.amount, remaining=remaining, reset_after=max(1, math.ceil(reset))), wait


@dataclass(frozen=True, slots=True)
class Decision:
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as ASGI header tuples (appended raw: Litestar's header view costs more)."""
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_after).encode()),
        ]


def guarded_source(acquire: str, window: str, body: str) -> str:
    """One script: limits' sliding-window acquire and window read for one quota, then `body` only
    if the quota allowed the request. Each script runs as a Lua function whose parameters are
    named KEYS and ARGV, so all three run unchanged on their own slices of the call's keys and
    arguments.

    KEYS: the quota's previous and current window keys, then `body`'s keys.
    ARGV: the quota's limit and window (seconds), then `body`'s arguments.
    Returns {1, window, body's reply} when allowed, {0, window} when refused; `window` is what
    limits' window script returns (previous count, its TTL ms, current count, its TTL ms).
    """
    return (
        "local function acquire(KEYS, ARGV)\n" + acquire + "\nend\n"
        "local function window(KEYS, ARGV)\n" + window + "\nend\n"
        "local function guarded(KEYS, ARGV)\n" + body + "\nend\n"
        """local quota = {KEYS[1], KEYS[2]}
local allowed = acquire(quota, {ARGV[1], ARGV[2], 1})
local state = window(quota, {ARGV[2]})
if not allowed then return {0, state} end
return {1, state, guarded({unpack(KEYS, 3)}, {unpack(ARGV, 3)})}
"""
    )


class QuotaGuard:
    """One request's quota, spent in the same Redis script as the request's own work.

    A `shared.redis_mux.ScriptRunner`: `run_script` runs the given script behind limits' check
    (`guarded_source`), in one call; refused, the script does not run and `RateLimited` is raised,
    with the same headers and Retry-After as `RateLimiter.spend`. Later calls of the request run
    plainly. Used as `async with`: a request that ends without such a call (a refused body, an
    unknown id) spends its unit on the way out, as `spend` would have before it ran, so a client
    over its quota gets 429 whatever else is wrong with its request.

    If Redis fails the merged call, its error is the request's (the store could not work either);
    a quota spent on the way out fails open or closed as `fail_open` says.
    """

    __slots__ = ("decision", "fail_open", "limiter", "quota", "spent")

    def __init__(self, limiter: RateLimiter, q: Quota, *, fail_open: bool) -> None:
        self.limiter = limiter
        self.quota = q
        self.fail_open = fail_open
        self.spent = False
        #: The quota's state once spent and allowed (the response's RateLimit-* headers).
        self.decision: Decision | None = None

    async def run_script(self, script: Script, keys: list[str], args: list[str | bytes | int | float]) -> Any:
        limiter = self.limiter
        link = limiter.bridge.link
        if self.spent:
            return await link.run_script(script, keys, args)
        self.spent = True
        q = self.quota
        reply = await link.run_script(
            limiter.guarded(script), [*limiter.window_keys(q), *keys], [q.item.amount, q.item.get_expiry(), *args]
        )
        self.decision = limiter.decide([q], [(reply[0], reply[1])])
        return reply[2] if len(reply) > 2 else None

    async def spend(self) -> None:
        """Spend the unit now, on its own (what `RateLimiter.spend` does)."""
        self.spent = True
        self.decision = await self.limiter.spend([self.quota], fail_open=self.fail_open)

    async def __aenter__(self) -> QuotaGuard:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self.spent:
            await self.spend()


class RateLimiter:
    def __init__(self, storage: MultiplexedRedisStorage) -> None:
        self.storage = storage
        self.bridge = storage.multiplexed
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self._keys: dict[Quota, list[str]] = {}
        self._guarded: dict[Script, Script] = {}

    def guard(self, q: Quota, *, fail_open: bool) -> QuotaGuard:
        """A request's quota, to spend in its own Redis script (`QuotaGuard`) or with `spend`."""
        return QuotaGuard(self, q, fail_open=fail_open)

    def guarded(self, script: Script) -> Script:
        """`script` behind limits' sliding-window check (`guarded_source`), built once per script."""
        found = self._guarded.get(script)
        if found is None:
            bridge = self.bridge
            found = self._guarded[script] = Script(
                guarded_source(bridge.acquire_sliding.source, bridge.sliding.source, script.source)
            )
        return found

    async def spend(self, quotas: list[Quota], *, fail_open: bool) -> Decision | None:
        """Spend one unit of each quota; raise `RateLimited` if any is exhausted.

        For each quota this runs the two scripts limits' sliding-window counter uses (acquire, then
        read the window) on limits' own keys, all in one write: one round trip per request, and
        no task per call (asyncio.gather's tasks were measurable on this path).
        Returns the tightest quota's state for the response headers, or None when Redis could not
        be asked and `fail_open` let the request through.
        """
        bridge = self.bridge
        calls: list[tuple[Script, list[str], list[str | bytes | int | float]]] = []
        for q in quotas:
            window_keys = self.window_keys(q)
            expiry = q.item.get_expiry()
            calls.append((bridge.acquire_sliding, window_keys, [q.item.amount, expiry, 1]))
            calls.append((bridge.sliding, window_keys, [expiry]))
        try:
            replies = await bridge.link.run_scripts(calls)
        except _STORAGE_ERRORS as exc:
            metrics.count_redis_error("api", exc)
            if fail_open:
                metrics.RATE_LIMITER_ERRORS.inc()
                log.error("rate limiter unavailable, letting the request through: %s", exc)  # noqa: TRY400
                return None
            raise DependencyUnavailable("rate limiting is unavailable; try again shortly") from exc
        return self.decide(quotas, [(replies[2 * index], replies[2 * index + 1]) for index in range(len(quotas))])

    def decide(self, quotas: list[Quota], outcomes: list[tuple[Any, Any]]) -> Decision:
        """The tightest quota's state, from each quota's (acquired?, window) as limits' scripts
        answered; raises `RateLimited` if any refused."""
        decisions = []
        refused: list[int] = []
        for q, (acquired, window) in zip(quotas, outcomes, strict=True):
            decision, wait = _assess(q, MultiplexedBridge.window_state(window))
            decisions.append(decision)
            if not acquired:
                refused.append(max(1, math.ceil(wait)))
                metrics.RATE_LIMITED.labels(q.name).inc()
        tightest = min(decisions, key=lambda decision: (decision.remaining, -decision.reset_after))
        if refused:
            raise RateLimited("too many requests; slow down", retry_after=max(refused), headers=tightest.headers())
        return tightest

    def window_keys(self, q: Quota) -> list[str]:
        """limits' two keys for a quota's sliding window (remembered: a principal asks again soon)."""
        cached = self._keys.get(q)
        if cached is None:
            key = q.item.key_for(q.name, q.key)
            cached = [
                self.bridge.prefixed_key(self.storage._previous_window_key(key)),
                self.bridge.prefixed_key(self.storage._current_window_key(key)),
            ]
            if len(self._keys) >= _KEY_CACHE:
                self._keys.pop(next(iter(self._keys)))
            self._keys[q] = cached
        return cached

    async def test(self, q: Quota) -> int | None:
        """Seconds until `q` has room again, or None if it has room now (spends nothing)."""
        state = await self.storage.get_sliding_window(q.item.key_for(q.name, q.key), q.item.get_expiry())
        _, wait = _assess(q, state)
        return max(1, math.ceil(wait)) if wait > 0 else None

    async def record(self, q: Quota) -> None:
        await self.strategy.hit(q.item, q.name, q.key)
