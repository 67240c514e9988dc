"""Session-wide real infrastructure: one Redis, a fake Groq, and three stacks of API (+ worker).

Each stack uses its own Redis database so their queues never mix:
- `offline_stack`: API + worker with the offline provider (no GROQ_API_KEY);
- `groq_stack`:    API + worker calling the fake Groq through the real SDK;
- `idle_stack`:    API only, no worker: jobs stay queued (cancel, listing, validation).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from shared.embedded_redis import EmbeddedRedis
from tests.fakes.groq_server import FakeGroq
from tests.support import Account, ApiServer, Worker, groq_env, new_account


@dataclass
class Stack:
    api: ApiServer
    redis_url: str
    env: dict[str, str]
    worker: Worker | None = None
    account: Account | None = None

    def client(self, account: Account | None = None) -> httpx.AsyncClient:
        """A client of this stack's API, signed in as `account` (default: the stack's user)."""
        account = account or self.account
        headers = account.headers if account else {}
        return httpx.AsyncClient(base_url=self.api.base_url, timeout=40.0, headers=headers)


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`TEST_REDIS_URL` if given (without a db number), else an embedded redis-server."""
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external.rstrip("/")
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def fake_groq() -> Iterator[FakeGroq]:
    server = FakeGroq().start()
    yield server
    server.stop()


def _stack(redis_base_url: str, db: int, log_dir: Path, env: dict[str, str], with_worker: bool) -> Stack:
    url = f"{redis_base_url}/{db}"
    redis.Redis.from_url(url).flushdb()
    full_env = {"REDIS_URL": url, **env}
    worker = Worker(full_env, log_dir).start() if with_worker else None
    try:
        api = ApiServer(full_env).start()
    except BaseException:
        if worker is not None:
            worker.stop()
        raise
    return Stack(api=api, redis_url=url, env=full_env, worker=worker)


def _stop(stack: Stack) -> None:
    stack.api.stop()
    if stack.worker is not None:
        stack.worker.stop()


@pytest.fixture(scope="session")
def offline_stack(redis_base_url: str, log_dir: Path) -> Iterator[Stack]:
    stack = _stack(redis_base_url, 1, log_dir, {}, with_worker=True)
    yield stack
    _stop(stack)


@pytest.fixture(scope="session")
def groq_stack(redis_base_url: str, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Stack]:
    env = groq_env(fake_groq.base_url, GROQ_TIMEOUT="3")
    stack = _stack(redis_base_url, 2, log_dir, env, with_worker=True)
    yield stack
    _stop(stack)


@pytest.fixture(scope="session")
def idle_stack(redis_base_url: str, log_dir: Path) -> Iterator[Stack]:
    stack = _stack(redis_base_url, 3, log_dir, {"LEGACY_WAIT": "0.5"}, with_worker=False)
    yield stack
    _stop(stack)


@pytest.fixture
def groq(fake_groq: FakeGroq) -> Iterator[FakeGroq]:
    """The fake Groq with a clean script for this test."""
    fake_groq.reset()
    yield fake_groq
    fake_groq.reset()


async def _signed_in(stack: Stack) -> httpx.AsyncClient:
    if stack.account is None:
        async with stack.client() as anonymous:
            stack.account = await new_account(anonymous)
    return stack.client()


@pytest.fixture
async def offline_api(offline_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with await _signed_in(offline_stack) as client:
        yield client


@pytest.fixture
async def groq_api(groq_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with await _signed_in(groq_stack) as client:
        yield client


@pytest.fixture
async def idle_api(idle_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with await _signed_in(idle_stack) as client:
        yield client
