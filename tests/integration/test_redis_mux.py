"""The multiplexed Redis link against a real Redis: replies, errors, scripts, and failures."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from shared.embedded_redis import free_port
from shared.redis_mux import MultiplexedRedis, RedisReplyError, RedisUnavailable, Script


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
