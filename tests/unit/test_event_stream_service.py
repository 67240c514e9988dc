"""The event-stream service outside a request: which ids it resumes after, and how a stream ends
when Redis cannot serve it (its headers are sent by then, so it cannot answer a problem)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from litestar.response import ServerSentEventMessage

from api.events import JobEventHub
from api.routes.events import JobEventMessage
from api.service import ChecklistService
from api.streams import EventStream, EventStreamService, parse_event_id
from shared import keys
from shared.embedded_redis import free_port
from shared.jobs import JobStore
from shared.queue import TaskEnvelopes, create_celery
from shared.redis_mux import MultiplexedRedis, RedisReplyError
from shared.settings import load_settings
from tests.support import environment

_DB = 4


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1795761635685-0", "1795761635685-0"),
        (" 1795761635685-12 ", "1795761635685-12"),
        ("18446744073709551615-18446744073709551615", "18446744073709551615-18446744073709551615"),
        ("18446744073709551616-0", None),  # beyond what Redis accepts: it would be an error reply
        ("1795761635685", None),
        ("1795761635685-", None),
        ("-1", None),
        ("$", None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_stream_id_redis_can_read_after_is_resumed_after(value: str | None, parsed: str | None) -> None:
    assert parse_event_id(value) == parsed


async def _stream(url: str, job_id: str) -> AsyncIterator[EventStream]:
    link = MultiplexedRedis(url, connect_timeout=0.5, command_timeout=0.5)
    pubsub = redis.asyncio.Redis.from_url(url)
    store = JobStore(link, job_ttl=60, idempotency_ttl=60, check_after=15)
    envelopes = TaskEnvelopes(create_celery(load_settings(environment({"REDIS_URL": url}))))
    service = EventStreamService(ChecklistService(store, JobEventHub(pubsub), envelopes), heartbeat=15)
    try:
        yield EventStream(service, "owner", job_id, after=None)
    finally:
        await link.close()
        await pubsub.aclose()


@pytest.fixture
async def unreachable() -> AsyncIterator[EventStream]:
    async for stream in _stream(f"redis://127.0.0.1:{free_port()}/0", "a" * 32):
        yield stream


@pytest.fixture
async def reachable(redis_base_url: str) -> AsyncIterator[tuple[EventStream, redis.asyncio.Redis]]:
    url = f"{redis_base_url}/{_DB}"
    admin = redis.asyncio.Redis.from_url(url)
    await admin.flushdb()
    async for stream in _stream(url, "b" * 32):
        yield stream, admin
    await admin.aclose()


async def test_a_stream_whose_redis_is_unavailable_ends_with_a_warning(
    unreachable: EventStream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="api.streams"):
        sent = [item async for item in unreachable]

    assert sent == []
    assert f"event stream of job {'a' * 32} ended" in caplog.text


async def test_a_redis_error_that_is_a_bug_is_not_hidden(
    reachable: tuple[EventStream, redis.asyncio.Redis],
) -> None:
    stream, admin = reachable
    await admin.set(keys.job_events(stream.job_id), "not a stream")

    with pytest.raises(RedisReplyError, match="WRONGTYPE"):
        [item async for item in stream]


@pytest.mark.parametrize(
    ("data", "event", "event_id"),
    [
        (b'{"id":"' + b"a" * 32 + b'","status":"succeeded","items":["x\\ny"]}', "job.succeeded", "1795761635685-0"),
        (b'{"status":"queued"}', "job.queued", "1795761635685-12"),
        (b'{"a":1}', "job.queued", None),  # a job recorded before event records: no id
        (b'{"a":\n1}', "job.running", "1-0"),  # a line break in the data
        (b'{"a":1}', "job.run\nning", "1-\r0"),  # line breaks where Litestar removes them
    ],
)
def test_job_events_are_written_as_litestar_writes_them(data: bytes, event: str, event_id: str | None) -> None:
    ours = JobEventMessage(data=data, event=event, id=event_id).encode()

    assert ours == ServerSentEventMessage(data=data, event=event, id=event_id).encode()
