"""The multiplexed Redis link against a real Redis: replies, errors, scripts, and failures."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from shared.embedded_redis import free_port
from shared.redis_mux import MultiplexedRedis, RedisReplyError, RedisTimeout, RedisUnavailable, Script
from tests.redis_servers import TestRedis


@pytest.fixture
async def link(redis_base_url: str) -> AsyncIterator[MultiplexedRedis]:
    client = MultiplexedRedis(f"{redis_base_url}/9")
    yield client
    await client.close()


async def test_concurrent_commands_get_their_own_replies(link: MultiplexedRedis) -> None:
    keys = [f"mux:{uuid.uuid4().hex}" for _ in range(200)]
    await asyncio.gather(*(link.execute("SET", key, key) for key in keys))

    values = await asyncio.gather(*(link.execute("GET", key) for key in keys))

    assert values == [key.encode() for key in keys]


async def test_the_url_selects_the_database(link: MultiplexedRedis, redis_base_url: str) -> None:
    key = f"mux:{uuid.uuid4().hex}"
    await link.execute("SET", key, "db9")

    assert redis.Redis.from_url(f"{redis_base_url}/9").get(key) == b"db9"
    assert redis.Redis.from_url(f"{redis_base_url}/0").get(key) is None


async def test_error_replies_raise_without_harming_the_connection(link: MultiplexedRedis) -> None:
    with pytest.raises(RedisReplyError, match="unknown command"):
        await link.execute("NOT-A-COMMAND")

    assert await link.execute("PING") == b"PONG"


async def test_scripts_are_loaded_on_first_use_and_after_a_flush(link: MultiplexedRedis) -> None:
    script = Script("return {KEYS[1], ARGV[1]}")
    await link.execute("SCRIPT", "FLUSH")

    first = await link.run_script(script, ["k"], ["v"])
    await link.execute("SCRIPT", "FLUSH")  # as after a Redis restart
    second = await link.run_script(script, ["k"], ["v"])

    assert first == second == [b"k", b"v"]


async def test_a_batch_loads_the_scripts_redis_does_not_know(link: MultiplexedRedis) -> None:
    first, second = Script("return 'one ' .. ARGV[1]"), Script("return 'two ' .. ARGV[1]")
    await link.execute("SCRIPT", "FLUSH")

    replies = await link.run_scripts([(first, [], ["a"]), (second, [], ["b"]), (first, [], ["c"])])

    assert replies == [b"one a", b"two b", b"one c"]


async def test_credentials_from_the_url_are_used(redis_base_url: str) -> None:
    admin = redis.Redis.from_url(f"{redis_base_url}/0")
    user, password = f"mux-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    host = redis_base_url.removeprefix("redis://")
    good = MultiplexedRedis(f"redis://{user}:{password}@{host}/0")
    bad = MultiplexedRedis(f"redis://{user}:wrong@{host}/0")
    try:
        assert await good.execute("PING") == b"PONG"
        with pytest.raises(RedisUnavailable, match="refused the connection set-up"):
            await bad.execute("PING")
    finally:
        await good.close()
        await bad.close()
        admin.acl_deluser(user)


async def test_an_unreachable_redis_is_reported_as_unavailable() -> None:
    link = MultiplexedRedis(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1)

    with pytest.raises(RedisUnavailable, match="cannot connect"):
        await link.execute("PING")


async def test_a_dropped_connection_fails_pending_commands_and_the_next_one_reconnects(
    link: MultiplexedRedis, redis_base_url: str
) -> None:
    client_id = await link.execute("CLIENT", "ID")
    blocked = asyncio.ensure_future(link.execute("BLPOP", f"mux:{uuid.uuid4().hex}", 5))
    await asyncio.sleep(0.1)

    redis.Redis.from_url(f"{redis_base_url}/0").client_kill_filter(_id=client_id)

    with pytest.raises(RedisUnavailable, match="lost"):
        await blocked
    assert await link.execute("PING") == b"PONG"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()
    for connection in accepted:
        connection.close()


async def test_commands_a_hung_redis_never_answers_time_out(silent_server: int) -> None:
    link = MultiplexedRedis(f"redis://127.0.0.1:{silent_server}/0", command_timeout=0.5)
    try:
        with pytest.raises(RedisUnavailable, match="did not answer"):
            await asyncio.wait_for(link.execute("PING"), 5)
    finally:
        await link.close()


def test_only_redis_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="scheme"):
        MultiplexedRedis("http://127.0.0.1:6379")


async def test_a_timeout_fails_the_commands_that_timed_out_and_resets_the_rest(silent_server: int) -> None:
    link = MultiplexedRedis(f"redis://127.0.0.1:{silent_server}/0", command_timeout=1.0)
    try:
        oldest = asyncio.ensure_future(link.execute("PING"))
        await asyncio.sleep(0.5)
        younger = asyncio.ensure_future(link.execute("PING"))

        with pytest.raises(RedisUnavailable, match="did not answer within 1s"):
            await asyncio.wait_for(oldest, 5)
        # Sent half a second later, it had not timed out; it fails because the connection is reset.
        with pytest.raises(RedisUnavailable, match="reset") as reset:
            await asyncio.wait_for(younger, 5)
        assert "did not answer" not in str(reset.value)
    finally:
        await link.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[TestRedis]:
    """A Redis this test may pause, fill or demote without disturbing the session's."""
    with TestRedis(tmp_path / "redis") as server:
        yield server


async def test_writers_wait_while_a_stalled_redis_pushes_back(own_redis: TestRedis) -> None:
    link = MultiplexedRedis(own_redis.url, command_timeout=60)
    value = b"x" * 65536
    writers: list[asyncio.Future[object]] = []
    try:
        assert await link.execute("PING") == b"PONG"
        own_redis.pause()  # Redis stops reading: the kernel's buffers fill, then the transport's
        for number in range(600):  # 39 MB offered, one writer per loop turn
            writers.append(asyncio.ensure_future(link.execute("SET", f"mux:flow:{number}", value)))
            await asyncio.sleep(0)
        protocol = link._protocol
        assert protocol is not None
        assert protocol.transport is not None

        # Bounded: about the transport's high-water mark, not the megabytes the writers offered.
        assert protocol.transport.get_write_buffer_size() < 1_000_000
        assert protocol.paused
        assert len(protocol.pending) < len(writers)  # the others wait to be written
        assert sum(not writer.done() for writer in writers) == len(writers)

        own_redis.resume()
        assert await asyncio.wait_for(asyncio.gather(*writers), 30) == [b"OK"] * len(writers)
        assert await link.execute("STRLEN", "mux:flow:599") == len(value)
    finally:
        own_redis.resume()
        await link.close()
        await asyncio.gather(*writers, return_exceptions=True)


async def test_writers_waiting_for_room_fail_when_the_stalled_connection_is_reset(own_redis: TestRedis) -> None:
    link = MultiplexedRedis(own_redis.url, command_timeout=1.0)
    value = b"x" * 65536
    writers: list[asyncio.Future[object]] = []
    try:
        assert await link.execute("PING") == b"PONG"
        own_redis.pause()
        for number in range(600):
            writers.append(asyncio.ensure_future(link.execute("SET", f"mux:reset:{number}", value)))
            await asyncio.sleep(0)
        protocol = link._protocol
        assert protocol is not None
        assert protocol.paused

        outcomes = await asyncio.wait_for(asyncio.gather(*writers, return_exceptions=True), 10)

        assert all(isinstance(outcome, RedisUnavailable) for outcome in outcomes)
        assert any(isinstance(outcome, RedisTimeout) for outcome in outcomes)  # the ones Redis owed
        assert not all(isinstance(outcome, RedisTimeout) for outcome in outcomes)  # and those never sent
    finally:
        own_redis.resume()
        await link.close()
        await asyncio.gather(*writers, return_exceptions=True)
    assert own_redis.client().exists("mux:reset:599") == 0  # the last writer never got to write


async def test_a_failed_script_in_a_batch_still_settles_every_other_reply(
    link: MultiplexedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Script("return redis.error_reply('BOOM ' .. ARGV[1])")
    echo = Script("return ARGV[1]")
    gc.collect()
    caplog.clear()  # only this test's futures count
    for script in (failing, echo):  # known to Redis: the batch's replies come back in one go
        await link.execute("SCRIPT", "LOAD", script.source)
    calls: list[tuple[Script, list[str], list[str | bytes | int | float]]] = [
        (echo, [], ["first"]),
        (failing, [], ["second"]),
        (failing, [], ["third"]),
        (echo, [], ["fourth"]),
    ]

    with pytest.raises(RedisReplyError, match="BOOM second"):
        await link.run_scripts(calls)
    await asyncio.sleep(0.05)
    gc.collect()  # a failure nobody retrieved is reported when its future is collected

    assert "exception was never retrieved" not in caplog.text
    assert await link.execute("ECHO", "next") == b"next"  # and the connection is still in step


async def test_several_commands_go_in_one_round_trip_and_an_error_settles_them_all(
    link: MultiplexedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"mux:{uuid.uuid4().hex}"
    gc.collect()
    caplog.clear()

    replies = await link.execute_many(("SET", key, "v"), ("GET", key), ("STRLEN", key))
    with pytest.raises(RedisReplyError, match="unknown command"):
        await link.execute_many(("ECHO", "one"), ("NOT-A-COMMAND",), ("NOT-EITHER",), ("ECHO", "four"))
    await asyncio.sleep(0.05)
    gc.collect()

    assert replies == [b"OK", b"v", 1]
    assert "exception was never retrieved" not in caplog.text
    assert await link.execute("ECHO", "next") == b"next"  # the connection is still in step
