"""Job status events for this API process: one Redis subscription, many local waiters.

Every status change is published on `keys.EVENTS_CHANNEL`. Each API process keeps a single
subscription and wakes the requests waiting on that job (long-polls, the legacy endpoint, event
streams), so a waiting request costs no Redis connection and no polling. If the subscription drops
it is re-established; events published meanwhile are lost to pub/sub, so after every subscription
each waiter gets a `RESUBSCRIBED` wake: event streams read the job's recorded events again, and
long-polls read the job again, so a missed event costs a delay, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import redis.asyncio

from shared import keys, metrics
from shared.jobs import JobEvent

__all__ = ["RESUBSCRIBED", "JobEventHub", "Watch"]

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(JobEvent)
#: The status of the wake every waiter gets after a (re)subscription: something may have happened.
RESUBSCRIBED = "resubscribed"


class Watch:
    """The events of one job, as seen by one waiting request."""

    __slots__ = ("_events", "_waiter")

    def __init__(self) -> None:
        self._events: collections.deque[JobEvent] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, event: JobEvent) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self, timeout: float) -> JobEvent | None:
        """The next event, or None when none arrives within `timeout` seconds."""
        if not self._events:
            # A future and a timer rather than `asyncio.wait_for`, which wraps the wait in a task
            # and, when the time is up, cancels it and waits for the cancellation: with thousands
            # of long-polls ending together that was a tenth of the API's CPU (py-spy).
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _time_up, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._events:
                return None
        return self._events.popleft()

    def drain(self) -> list[JobEvent]:
        """The events that arrived since the last `next`, without waiting."""
        events = list(self._events)
        self._events.clear()
        return events


def _time_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class JobEventHub:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        other_channels: dict[str, Callable[[bytes], None]] | None = None,
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        # Other announcements ride on the same subscription (revocations, for one).
        self.other_channels = other_channels or {}
        # Called after every (re)subscription, to catch up on what was announced while not listening.
        self.on_subscribed = on_subscribed
        self._watches: defaultdict[str, set[Watch]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-event-hub")

    @property
    def subscribed(self) -> bool:
        """Whether the subscription is live (events published now will reach waiters)."""
        return self._subscribed.is_set()

    async def stop(self, timeout: float = 2.0) -> None:
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            # Wait without awaiting the task itself: a cancellation racing the shutdown of the
            # enclosing lifespan must not hang the process's exit.
            _, pending = await asyncio.wait({self._task}, timeout=timeout)
            if pending:
                log.warning("job event subscription did not stop within %.1fs", timeout)
            self._task = None

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the subscription broke: come back after a pause
                if self._subscribed.is_set():
                    delay = 0.1  # it had worked: a new outage starts with a short pause again
                self._subscribed.clear()
                if self._stopping:  # redis-py may turn our cancellation into a connection error
                    return
                metrics.count_redis_error("api", exc)
                log.warning("job event subscription lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.EVENTS_CHANNEL, *self.other_channels)
            if self.on_subscribed is not None:
                await self.on_subscribed()
            self._subscribed.set()
            self._wake_all()
            # A short read timeout, so a stop is noticed even when redis-py absorbs the cancellation.
            while not self._stopping:
                message = await pubsub.get_message(timeout=1.0)
                if message is None or message["type"] != "message":
                    continue
                channel = message["channel"].decode()
                if channel == keys.EVENTS_CHANNEL:
                    self.dispatch(message["data"])
                else:
                    self.other_channels[channel](message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def dispatch(self, payload: bytes) -> None:
        try:
            event = _decoder.decode(payload)
        except msgspec.DecodeError:
            log.warning("ignoring a malformed job event: %r", payload[:200])
            return
        for watch in self._watches.get(event.id, ()):
            watch.put(event)

    def _wake_all(self) -> None:
        for job_id, watches in self._watches.items():
            for watch in watches:
                watch.put(JobEvent(id=job_id, owner="", status=RESUBSCRIBED, rev=0))

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[Watch]:
        """Receive the job's events from now on (enter *before* reading its state)."""
        watch = Watch()
        self._watches[job_id].add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[job_id]
