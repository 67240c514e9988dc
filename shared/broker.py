"""Celery's Redis broker transport as this service runs it, and the one module that knows kombu's
Redis layout (kombu 5.7; `tests/integration/test_broker.py` fails when that layout changes).

kombu keeps each message a worker has taken but not yet acknowledged in a hash
(`keys.UNACKED`: delivery tag -> JSON `[message, exchange, routing key]`) indexed by delivery
time (`keys.UNACKED_INDEX`, the taking worker's clock). Three of its behaviours change here, each
a way a Redis restart used to kill the worker:

- Acknowledging, after a reconnection, a message taken on the connection that was lost: kombu
  reaches for the closed channel's connection and raises `AttributeError: 'NoneType' object has
  no attribute 'client'`. Here the acknowledgement is skipped, and the sweep later clears the
  entry (the job is finished by then).
- Restoring a channel's delivered messages when the channel closes. After a lost connection
  kombu runs that on a channel whose connection is already gone, which raises
  `AttributeError: 'NoneType' object has no attribute 'hostname'` and kills the worker (seen with
  kombu 5.7.0 when Redis restarts while tasks run). It would also push back messages whose
  tasks are still running in the same worker.
- The periodic restore of messages older than the visibility timeout. `UnackedMessages.restore_stale()`
  does the same job from the recovery sweep (`worker.recovery`), which runs in one process at a
  time and survives outages. It is the last resort: job leases recover a dead worker's jobs
  within seconds.

`install()` makes kombu use this transport for `redis://` and `rediss://` URLs, so URLs (and
Flower, which reads them back) stay as they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis
from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from shared import keys

__all__ = ["Transport", "UnackedMessages", "install"]

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    """kombu's acknowledgement emulation, minus its periodic restore (the recovery sweep's job),
    and safe to use after its channel closed with a lost connection."""

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        return None

    def ack(self, delivery_tag: Any) -> None:
        if self.channel.closed:
            # The task outlived the connection its message came on (Redis restarted meanwhile).
            # kombu would raise AttributeError from the closed channel and kill the worker; the
            # message's unacked entry stays instead, the sweep puts it back after the visibility
            # timeout, and the task then finds its job finished and does nothing.
            log.info("message %s came on a closed connection; its unacked entry is left to the sweep", delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # this channel's own bookkeeping only
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self.channel.closed:
            log.info("message %s came on a closed connection; its unacked entry is left to the sweep", delivery_tag)
            virtual.QoS.ack(self, delivery_tag)
            return
        super().reject(delivery_tag, requeue=requeue)


class Channel(kombu_redis.Channel):
    QoS = QoS
    #: No restore of delivered messages when the channel closes (see the module docstring).
    do_restore = False
    _commands: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        """kombu builds a new redis-py client object on the channel's pool for every command it
        sends this way (each Celery task event published, each acknowledgement): its constructor
        copies some 200 response callbacks, a tenth of a worker's CPU time with Flower's events
        on. One client per channel and pool does the same (redis-py clients share a pool safely
        across threads); a new pool, after a reconnection, gets a new client."""
        if client:
            yield client
            return
        commands = self._commands
        if commands is None or commands.connection_pool is not self.pool:
            commands = self._commands = self._create_client()  # type: ignore[attr-defined]
        yield commands


class Transport(kombu_redis.Transport):
    Channel = Channel


_ALIASES = ("redis", "rediss")


def install() -> None:
    """Route kombu's `redis`/`rediss` transport names to `Transport` (idempotent)."""
    path = f"{__name__}:Transport"
    for alias in _ALIASES:
        if kombu_transports.TRANSPORT_ALIASES.get(alias) != path:
            kombu_transports.TRANSPORT_ALIASES[alias] = path
            # kombu caches resolved names; drop a resolution made before this call.
            kombu_transports._transport_cache.pop(alias, None)  # type: ignore[attr-defined]


# Restores one message if it is still unacknowledged, the way kombu's own restore does: back on
# the queue's consuming end, so it is taken next. A message whose job (or webhook delivery) is
# finished or gone is only cleared (its task would find nothing to do).
_RESTORE = """
-- KEYS: unacked hash, unacked index, queue, the message's job or delivery.
-- ARGV: delivery tag, message to push
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[4], 'status')
if status ~= 'queued' and status ~= 'running' and status ~= 'pending' then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[2])
local clock = redis.call('TIME')
redis.call('HSET', KEYS[4], 'pushed', tonumber(clock[1]) + tonumber(clock[2]) / 1000000)
return 1
"""

_STALE = """
-- KEYS: unacked index.  ARGV: visibility timeout (seconds), limit.  On Redis's clock.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
"""


#: The queues whose messages may be restored (routing key = queue name, anonymous exchange), and
#: the key of the record a message's task id names: a job, or a webhook delivery.
_OUR_QUEUES: dict[str, Callable[[str], str]] = {keys.QUEUE: keys.job, keys.WEBHOOK_QUEUE: keys.delivery}


class UnackedMessages:
    """kombu's unacknowledged messages, as the recovery sweep handles them."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._stale = client.register_script(_STALE)
        self._restore = client.register_script(_RESTORE)

    def restore_stale(self, visibility_timeout: float, limit: int = 100) -> int:
        """Put messages unacknowledged for longer than `visibility_timeout` back on their queue.

        kombu's rule, on Redis's clock. An entry whose job is finished, that cannot be read, or
        that belongs to a queue this service does not own is dropped. Returns how many messages
        went back.
        """
        tags: list[bytes] = self._stale(keys=[keys.UNACKED_INDEX], args=[visibility_timeout, limit])
        if not tags:
            return 0
        restored = 0
        raws = cast(list[bytes | None], self.client.hmget(keys.UNACKED, tags))
        for tag, raw in zip(tags, raws, strict=True):
            message = _restorable(raw)
            if message is None:
                with self.client.pipeline() as pipe:
                    pipe.hdel(keys.UNACKED, tag)
                    pipe.zrem(keys.UNACKED_INDEX, tag)
                    pipe.execute()
                continue
            queue, task_id, payload = message
            record = _OUR_QUEUES[queue](task_id)
            restored += int(self._restore(keys=[keys.UNACKED, keys.UNACKED_INDEX, queue, record], args=[tag, payload]))
        return restored


def _restorable(raw: bytes | None) -> tuple[str, str, str] | None:
    """(queue, task id, message to push) for an unacked entry, marked redelivered as kombu does."""
    if raw is None:
        return None
    try:
        message, _exchange, routing_key = json.loads(raw)
        headers, info = message["headers"], message["properties"]["delivery_info"]
        job_id = str(headers["id"])
    except (ValueError, TypeError, KeyError):
        return None
    if routing_key not in _OUR_QUEUES or not isinstance(headers, dict) or not isinstance(info, dict):
        return None
    headers["redelivered"] = True
    info["redelivered"] = True
    return str(routing_key), job_id, json.dumps(message)
