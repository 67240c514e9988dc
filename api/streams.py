"""A job's event stream (Server-Sent Events): its recorded events, then each new one as it happens.

Every change of a job is recorded on its event stream (`keys.job_events`) by the script that makes
the change, and announced on the events channel. A stream enters the event hub's watch *before*
it reads the record, and after every wake reads what was recorded after the last event it sent:
an event recorded between two reads is never missed and never sent twice, and nothing polls
Redis. Between events only the heartbeat runs, which touches nothing.

Where a stream starts:
- after the client's `Last-Event-ID`, when the job's record still holds that event;
- otherwise (no id, or one the capped record no longer holds, or never held) at the job's current
  state: its latest recorded event. Each event carries the whole job, so the current state is all
  a client needs to go on; what it did not see is the states in between.
It ends after the job's terminal event, when the job is deleted, or when Redis goes away (the
client reconnects with its `Last-Event-ID`). Open streams are counted in
`tripcheck_sse_streams_open` (across the API's processes).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from api.events import JobEventHub
from api.problems import redis_unavailable
from api.service import ChecklistService, status_of
from shared import metrics
from shared.jobs import JobStore, RecordedEvent
from shared.redis_mux import RedisReplyError, RedisUnavailable
from shared.schemas import TERMINAL_STATUSES

__all__ = ["EVENT_TYPES", "HEARTBEAT", "EventStream", "EventStreamService", "StreamEvent", "parse_event_id"]

log = logging.getLogger(__name__)

#: What the job store records (`shared.job_scripts`), in the order of a job's life.
EVENT_TYPES = ("job.queued", "job.running", "job.retrying", "job.succeeded", "job.failed", "job.canceled")
#: Event types after which a job never changes again.
TERMINAL_TYPES = frozenset(f"job.{status}" for status in TERMINAL_STATUSES)
#: Entries read at once; a job records far fewer (its record is capped near 64), so one read is the rule.
_BATCH = 100
_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_ID_PART = 2**64 - 1  # Redis refuses larger stream id parts


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event to send: `id:` the record's entry id, `event:` its type, `data:` the job."""

    id: str | None  # None only for a job recorded before it had an event record
    type: str
    data: bytes


#: What the stream yields when it was silent for a heartbeat interval (sent as a comment).
HEARTBEAT = None


def parse_event_id(value: str | None) -> str | None:
    """The record entry a `Last-Event-ID` names, or None when it cannot be one we sent."""
    if value is None:
        return None
    match = _STREAM_ID.fullmatch(value.strip())
    if match is None or any(int(part) > _MAX_ID_PART for part in match.groups()):
        return None
    return match.group(0)


@dataclass
class EventStreamService:
    checklists: ChecklistService  # reads the job as its owner may (404 for anyone else)
    heartbeat: float  # seconds of silence before a heartbeat comment

    @property
    def store(self) -> JobStore:
        return self.checklists.store

    @property
    def events(self) -> JobEventHub:
        return self.checklists.events

    async def open(self, owner: str, job_id: str, last_event_id: str | None) -> EventStream | None:
        """The stream of `owner`'s job; None when there is nothing left to send, ever (the client
        has the terminal event already). Raises NotFound for a job that is not `owner`'s."""
        doc = await self.checklists.get_doc(owner, job_id)
        after = parse_event_id(last_event_id)
        finished = status_of(doc) in TERMINAL_STATUSES
        if finished and after is not None and await self.store.events_since(job_id, after, _BATCH) == []:
            return None
        return EventStream(self, owner, job_id, after)


@dataclass
class EventStream:
    """One client's stream: iterate it for `StreamEvent`s and `HEARTBEAT`s."""

    service: EventStreamService
    owner: str
    job_id: str
    after: str | None

    def __aiter__(self) -> AsyncIterator[StreamEvent | None]:
        return self._follow()

    async def _follow(self) -> AsyncIterator[StreamEvent | None]:
        metrics.SSE_STREAMS_OPEN.inc()
        try:
            async for item in self._events():
                yield item
        except (RedisUnavailable, RedisReplyError) as exc:
            if not redis_unavailable(exc):
                raise
            # Headers are sent: no problem answer is possible. Ending the stream makes the client
            # reconnect with its Last-Event-ID, and get a 503 while Redis is still unavailable.
            metrics.count_redis_error("api", exc)
            log.warning("event stream of job %s ended: %s", self.job_id, exc)
        finally:
            metrics.SSE_STREAMS_OPEN.dec()

    async def _events(self) -> AsyncIterator[StreamEvent | None]:
        store, heartbeat = self.service.store, self.service.heartbeat
        async with self.service.events.watch(self.job_id) as watch:
            batch, last = await self._start()
            if batch is None:  # a job recorded before event records existed: its state as it is
                doc = await store.get_doc(self.owner, self.job_id)
                if doc is None:
                    return
                status = status_of(doc)
                yield StreamEvent(None, f"job.{status}", doc)
                if status in TERMINAL_STATUSES:
                    return
                batch = []
            quiet_until = time.monotonic() + heartbeat
            final: bytes | None = None  # the finished job's doc, once read with its last entries
            while True:
                for entry in batch:
                    sent = await self._send(entry, final)
                    if sent is None:
                        return  # deleted meanwhile
                    yield sent
                    if entry.type in TERMINAL_TYPES:
                        return
                    last = entry.id
                    quiet_until = time.monotonic() + heartbeat
                if len(batch) < _BATCH:
                    # Everything recorded so far is sent: sleep until the hub says something changed.
                    while (event := await watch.next(quiet_until - time.monotonic())) is None:
                        yield HEARTBEAT
                        quiet_until = time.monotonic() + heartbeat
                    woken = [event, *watch.drain()]
                    if any(each.status == "deleted" for each in woken):
                        return
                    if any(each.status in TERMINAL_STATUSES for each in woken):
                        # The last entries and the finished job's doc, which its entry lacks, at once.
                        batch, final = await store.event_log_and_doc(self.owner, self.job_id, last, _BATCH)
                        continue
                batch = await store.event_log(self.job_id, after=last, count=_BATCH)

    async def _start(self) -> tuple[list[RecordedEvent] | None, str | None]:
        """The first events to send and the id they follow; None when the job has no record at all."""
        store = self.service.store
        if self.after is not None:
            resumed = await store.events_since(self.job_id, self.after, _BATCH)
            if resumed is not None:
                return resumed, self.after
        latest = await store.latest_event(self.job_id)
        if latest is None:
            return None, None
        return [latest], None

    async def _send(self, entry: RecordedEvent, final: bytes | None = None) -> StreamEvent | None:
        # A finished job's entry has no doc: the job's own doc is final, and is what it finished with
        # (`final`, when it was read with the entry).
        doc = entry.doc
        if doc is None:
            doc = final if final is not None else await self.service.store.get_doc(self.owner, self.job_id)
        return StreamEvent(entry.id, entry.type, doc) if doc is not None else None
