"""GET /api/v1/checklists/{id}/events: a job's life as Server-Sent Events, against a real API, real
Redis and a real worker (started when a test lets its job run, so that the stream is open first).

The API sends heartbeats every 0.25 s here, so that waiting for one takes no time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis

from shared import job_scripts, keys, lifecycle
from shared.clock import utcnow
from shared.jobs import SyncJobStore
from tests.conftest import Stack
from tests.fakes.groq_server import FakeGroq, Reply
from tests.support import ApiServer, Worker, groq_env, new_account

_DB = 5
_HEARTBEAT = 0.25
_POLL_LIMIT = 77_777  # tells the poll quota's RateLimit headers from the others'
TRIP: dict[str, Any] = {"location": "Reykjavik", "days": 3, "transport": "plane", "occasion": "northern lights"}


@dataclass
class Message:
    """One dispatched SSE message: its fields, and the comment lines that came with it."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def job(self) -> dict[str, Any]:
        assert self.data is not None
        job: dict[str, Any] = msgspec.json.decode(self.data)
        return job


class Stream:
    """An open event stream, parsed as the SSE specification says (comments are kept, to be seen)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 15.0) -> Message | None:
        """The next message or heartbeat; None once the server has ended the stream."""
        message = Message()
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if message != Message():
                        return message
                elif line.startswith(":"):
                    message.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        message.data = value if message.data is None else f"{message.data}\n{value}"
                    elif name in ("event", "id"):
                        setattr(message, name, value)
        return None

    async def event(self, timeout: float = 15.0) -> Message:
        """The next event, skipping heartbeats (the stream must not end before it)."""
        while (message := await self.next(timeout)) is not None:
            if message.event is not None:
                return message
        raise AssertionError("the stream ended")

    async def rest(self, timeout: float = 30.0) -> list[Message]:
        """Every event until the server ends the stream (which it must do within `timeout`)."""
        events = []
        async with asyncio.timeout(timeout):
            while (message := await self.next()) is not None:
                if message.event is not None:
                    events.append(message)
        return events


@dataclass
class Target:
    stack: Stack
    log_dir: Path
    redis: redis.Redis

    def worker(self) -> Worker:
        return Worker(self.stack.env, self.log_dir).start()

    def record(self, job_id: str) -> list[str]:
        """The ids of the job's recorded events, oldest first."""
        return [entry_id.decode() for entry_id, _ in self.redis.xrange(keys.job_events(job_id))]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def target(redis_base_url: str, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Target]:
    url = f"{redis_base_url}/{_DB}"
    env = groq_env(fake_groq.base_url, url, SSE_HEARTBEAT=str(_HEARTBEAT), POLL_RATE_LIMIT_REQUESTS=str(_POLL_LIMIT))
    api = ApiServer(env).start()
    client = redis.Redis.from_url(url)
    try:
        yield Target(Stack(api=api, redis_url=url, env=env), log_dir, client)
    finally:
        api.stop()
        client.close()


@pytest.fixture
async def api(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    async with target.stack.client() as anonymous:
        account = await new_account(anonymous)
    async with target.stack.client(account) as client:
        yield client


@pytest.fixture
def worker(target: Target, groq: FakeGroq) -> Iterator[Any]:
    """Starts a worker when called (once the test's stream is open); stops it after the test."""
    started: list[Worker] = []

    def start() -> Worker:
        started.append(target.worker())
        return started[-1]

    yield start
    for running in started:
        running.stop()


async def submit(api: httpx.AsyncClient) -> str:
    response = await api.post("/api/v1/checklists", json=TRIP)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


@asynccontextmanager
async def events_of(api: httpx.AsyncClient, job_id: str, last_event_id: str | None = None) -> AsyncIterator[Stream]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    async with api.stream("GET", f"/api/v1/checklists/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


async def finished(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = (await api.get(f"/api/v1/checklists/{job_id}", params={"wait": 20})).json()
    assert job["status"] in ("succeeded", "failed", "canceled"), job
    return job


def kinds(events: list[Message]) -> list[str | None]:
    return [event.event for event in events]


# --- a job's life ------------------------------------------------------------------------------------


async def test_a_stream_follows_a_job_from_queued_through_running_to_succeeded_then_ends(
    api: httpx.AsyncClient, target: Target, worker: Any
) -> None:
    job_id = await submit(api)

    async with events_of(api, job_id) as stream:
        first = await stream.event()
        worker()
        events = [first, *await stream.rest()]

    assert kinds(events) == ["job.queued", "job.running", "job.succeeded"]
    assert [event.job["status"] for event in events] == ["queued", "running", "succeeded"]
    assert [event.id for event in events] == target.record(job_id)  # every recorded event, once, in order
    assert events[-1].job == await finished(api, job_id)  # the final event carries the finished job
    assert events[-1].job["result"]["items"]


async def test_a_failed_attempt_is_streamed_as_retrying_before_the_job_runs_again(
    api: httpx.AsyncClient, groq: FakeGroq, worker: Any
) -> None:
    groq.script(Reply.server_error(503), Reply.ok())
    job_id = await submit(api)

    async with events_of(api, job_id) as stream:
        first = await stream.event()
        worker()
        events = [first, *await stream.rest()]

    assert kinds(events) == ["job.queued", "job.running", "job.retrying", "job.running", "job.succeeded"]
    retrying = events[2].job
    assert retrying["status"] == "queued"
    assert retrying["error"]["code"] == "upstream_unavailable"
    assert retrying["attempts"] == 1
    assert events[-1].job["attempts"] == 2


# --- resuming ----------------------------------------------------------------------------------------


async def test_last_event_id_resumes_right_after_that_event_without_loss_or_duplicates(
    api: httpx.AsyncClient, groq: FakeGroq, target: Target, worker: Any
) -> None:
    groq.default = Reply.slow(1.0)  # still running when the client comes back
    job_id = await submit(api)
    async with events_of(api, job_id) as stream:
        queued = await stream.event()
    assert queued.event == "job.queued"
    worker()
    job = (await api.get(f"/api/v1/checklists/{job_id}")).json()
    while job["status"] == "queued":  # the client is away while the job starts
        await asyncio.sleep(0.02)
        job = (await api.get(f"/api/v1/checklists/{job_id}")).json()

    async with events_of(api, job_id, last_event_id=queued.id) as stream:
        resumed = await stream.rest()

    assert kinds(resumed) == ["job.running", "job.succeeded"]  # missed while away, then live
    assert [queued.id, *[event.id for event in resumed]] == target.record(job_id)


async def test_an_id_the_capped_record_no_longer_holds_restarts_at_the_current_state(
    api: httpx.AsyncClient, target: Target
) -> None:
    job_id = await submit(api)
    async with events_of(api, job_id) as stream:
        queued = await stream.event()
    assert queued.id is not None
    await api.post(f"/api/v1/checklists/{job_id}/cancel")
    target.redis.xtrim(keys.job_events(job_id), maxlen=1, approximate=False)  # what the cap does to a long record
    assert queued.id not in target.record(job_id)

    async with events_of(api, job_id, last_event_id=queued.id) as stream:
        events = await stream.rest()

    assert kinds(events) == ["job.canceled"]  # what was missed is gone; the current state is not
    assert events[0].id == target.record(job_id)[-1]


@pytest.mark.parametrize("last_event_id", ["not-an-id", "0-0", "99999999999999999999-0", "1-1"])
async def test_an_id_that_was_never_sent_starts_at_the_current_state(
    api: httpx.AsyncClient, target: Target, last_event_id: str
) -> None:
    job_id = await submit(api)

    async with events_of(api, job_id, last_event_id=last_event_id) as stream:
        first = await stream.event()

    assert first.event == "job.queued"
    assert [first.id] == target.record(job_id)


# --- finished jobs -----------------------------------------------------------------------------------


async def test_a_finished_job_sends_its_current_state_and_ends_at_once(api: httpx.AsyncClient, target: Target) -> None:
    job_id = await submit(api)
    canceled = (await api.post(f"/api/v1/checklists/{job_id}/cancel")).json()

    async with events_of(api, job_id) as stream:
        events = await stream.rest(timeout=5)

    assert kinds(events) == ["job.canceled"]
    assert events[0].job == canceled
    assert events[0].id == target.record(job_id)[-1]  # its last recorded event


async def test_resuming_after_the_terminal_event_is_204_which_stops_eventsource_reconnecting(
    api: httpx.AsyncClient,
) -> None:
    job_id = await submit(api)
    await api.post(f"/api/v1/checklists/{job_id}/cancel")
    async with events_of(api, job_id) as stream:
        terminal = await stream.event()
    assert terminal.id is not None

    response = await api.get(f"/api/v1/checklists/{job_id}/events", headers={"Last-Event-ID": terminal.id})

    assert response.status_code == 204
    assert response.content == b""


async def test_a_job_recorded_before_event_records_existed_is_streamed_from_its_state(
    api: httpx.AsyncClient, target: Target
) -> None:
    job_id = await submit(api)
    target.redis.delete(keys.job_events(job_id))

    async with events_of(api, job_id) as stream:
        first = await stream.event()
        await api.post(f"/api/v1/checklists/{job_id}/cancel")
        rest = await stream.rest()

    assert first.event == "job.queued"
    assert first.id is None
    assert first.job["id"] == job_id
    assert kinds(rest) == ["job.canceled"]


# --- while the stream is open ------------------------------------------------------------------------


async def test_a_quiet_stream_sends_comment_heartbeats(api: httpx.AsyncClient) -> None:
    job_id = await submit(api)  # no worker: it stays queued

    async with events_of(api, job_id) as stream:
        first = await stream.next()
        beats = [await stream.next(timeout=5 * _HEARTBEAT) for _ in range(3)]

    assert first is not None
    assert first.event == "job.queued"
    assert all(beat is not None and beat.comments == ["heartbeat"] and beat.event is None for beat in beats)


async def test_wakes_that_bring_nothing_new_do_not_hold_heartbeats_back(api: httpx.AsyncClient, target: Target) -> None:
    job_id = await submit(api)
    nothing_new = msgspec.json.encode({"id": job_id, "owner": "", "status": "queued", "rev": 1})

    async def wake_often() -> None:
        while True:
            target.redis.publish(keys.EVENTS_CHANNEL, nothing_new)
            await asyncio.sleep(_HEARTBEAT / 5)

    async with events_of(api, job_id) as stream:
        await stream.event()
        waking = asyncio.create_task(wake_often())
        try:
            beats = [await stream.next(timeout=5 * _HEARTBEAT) for _ in range(2)]
        finally:
            waking.cancel()

    assert all(beat is not None and beat.comments == ["heartbeat"] for beat in beats)


async def test_deleting_the_job_ends_its_open_stream(api: httpx.AsyncClient) -> None:
    job_id = await submit(api)

    async with events_of(api, job_id) as stream:
        first = await stream.event()
        assert (await api.delete(f"/api/v1/checklists/{job_id}")).status_code == 204
        rest = await stream.rest(timeout=5)

    assert first.event == "job.queued"
    assert rest == []


async def test_an_event_published_while_the_subscription_was_down_still_reaches_the_stream(
    api: httpx.AsyncClient, target: Target
) -> None:
    job_id = await submit(api)
    hub = target.stack.api.app.state.resources.events
    async with events_of(api, job_id) as stream:
        await stream.event()
        # The job is canceled, and its announcement lost (published where nobody listens), ...
        stored = SyncJobStore(target.redis, job_ttl=600).get(job_id)
        assert stored is not None
        canceled = msgspec.json.encode(lifecycle.cancel(stored.job, utcnow()))
        target.redis.register_script(job_scripts.TRANSITION.source)(
            keys=[keys.job(job_id), keys.PENDING, keys.job_events(job_id), keys.OUTBOX, keys.user_webhooks("x")],
            args=[stored.rev, "canceled", canceled, 600, f"nobody-listens-{uuid.uuid4().hex}", job_id],
        )
        # ... then the API's subscription drops and comes back.
        for client in target.redis.client_list(_type="pubsub"):
            if int(client["db"]) == _DB:
                target.redis.client_kill_filter(_id=client["id"])
        events = await stream.rest(timeout=10)

    assert hub.subscribed
    assert kinds(events) == ["job.canceled"]


async def test_a_long_poll_whose_final_event_was_lost_answers_once_the_subscription_is_back(
    api: httpx.AsyncClient, target: Target
) -> None:
    job_id = await submit(api)
    waiting = asyncio.create_task(api.get(f"/api/v1/checklists/{job_id}", params={"wait": 25}))
    await asyncio.sleep(0.3)  # the long-poll waits for the job's events
    stored = SyncJobStore(target.redis, job_ttl=600).get(job_id)
    assert stored is not None
    canceled = msgspec.json.encode(lifecycle.cancel(stored.job, utcnow()))
    target.redis.register_script(job_scripts.TRANSITION.source)(
        keys=[keys.job(job_id), keys.PENDING, keys.job_events(job_id), keys.OUTBOX, keys.user_webhooks("x")],
        args=[stored.rev, "canceled", canceled, 600, f"nobody-listens-{uuid.uuid4().hex}", job_id],
    )
    began = time.monotonic()
    for client in target.redis.client_list(_type="pubsub"):
        if int(client["db"]) == _DB:
            target.redis.client_kill_filter(_id=client["id"])
    answered = await waiting

    assert answered.json()["status"] == "canceled"
    assert time.monotonic() - began < 10  # woken by the resubscription, not by its 25 s wait


# --- who may read it ---------------------------------------------------------------------------------


async def test_someone_elses_job_is_404_and_no_credentials_401(api: httpx.AsyncClient, target: Target) -> None:
    job_id = await submit(api)
    async with target.stack.client() as anonymous:
        stranger = await new_account(anonymous)
        unauthenticated = await anonymous.get(f"/api/v1/checklists/{job_id}/events")
    async with target.stack.client(stranger) as other:
        foreign = await other.get(f"/api/v1/checklists/{job_id}/events")
        missing = await other.get(f"/api/v1/checklists/{uuid.uuid4().hex}/events")

    assert unauthenticated.status_code == 401
    for response in (foreign, missing):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"


async def test_opening_a_stream_spends_the_poll_quota(api: httpx.AsyncClient) -> None:
    job_id = await submit(api)
    await api.post(f"/api/v1/checklists/{job_id}/cancel")

    async with events_of(api, job_id) as stream:
        headers = stream.response.headers
        await stream.rest()

    assert headers["ratelimit-limit"] == str(_POLL_LIMIT)
