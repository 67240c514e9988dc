"""Rate limits held in Redis across API processes: budgets, headers, Retry-After, client
addresses behind proxies, login lock-out, and behaviour when Redis is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis

from shared.embedded_redis import free_port
from shared.metrics import RATE_LIMITER_ERRORS
from tests.support import TEST_PASSWORD, Account, ApiServer, new_account

TRIP = {"location": "Oslo", "days": 2, "transport": "train", "occasion": "visit"}


def limited_env(redis_base_url: str, **overrides: str) -> dict[str, str]:
    return {
        "REDIS_URL": f"{redis_base_url}/12",
        "RATE_LIMIT_REQUESTS": "6",
        "RATE_LIMIT_WINDOW": "3",
        "POLL_RATE_LIMIT_REQUESTS": "6",
        "SUBMIT_RATE_LIMIT_REQUESTS": "2",
        "SUBMIT_RATE_LIMIT_WINDOW": "30",
        "AUTH_RATE_LIMIT_REQUESTS": "1000",
        **overrides,
    }


@pytest.fixture
def two_apis(redis_base_url: str) -> Iterator[tuple[ApiServer, ApiServer]]:
    redis.Redis.from_url(f"{redis_base_url}/12").flushdb()
    first = ApiServer(limited_env(redis_base_url)).start()
    second = ApiServer(limited_env(redis_base_url)).start()
    yield first, second
    first.stop()
    second.stop()


async def account_on(api: ApiServer) -> Account:
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        return await new_account(client)


async def test_two_api_processes_share_one_budget(two_apis: tuple[ApiServer, ApiServer]) -> None:
    first, second = two_apis
    account = await account_on(first)
    responses = []
    async with httpx.AsyncClient(headers=account.headers) as client:
        for n in range(8):
            api = first if n % 2 == 0 else second
            responses.append(await client.get(f"{api.base_url}/api/v1/auth/me"))

    assert [r.status_code for r in responses] == [200] * 6 + [429] * 2
    assert [r.headers["ratelimit-remaining"] for r in responses[:6]] == ["5", "4", "3", "2", "1", "0"]
    assert {r.headers["ratelimit-limit"] for r in responses} == {"6"}
    refused = responses[6]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 3


async def test_retry_after_is_honest(two_apis: tuple[ApiServer, ApiServer]) -> None:
    first, _ = two_apis
    account = await account_on(first)
    async with httpx.AsyncClient(base_url=first.base_url, headers=account.headers) as client:
        for _ in range(6):
            await client.get("/api/v1/auth/me")
        refused = await client.get("/api/v1/auth/me")
        wait = int(refused.headers["retry-after"])
        await asyncio.sleep(wait + 0.2)
        allowed = await client.get("/api/v1/auth/me")

    assert refused.status_code == 429
    assert allowed.status_code == 200


async def test_submissions_have_their_own_lower_budget(two_apis: tuple[ApiServer, ApiServer]) -> None:
    first, _ = two_apis
    account = await account_on(first)
    async with httpx.AsyncClient(base_url=first.base_url, headers=account.headers) as client:
        submits = [await client.post("/api/v1/checklists", json=TRIP) for _ in range(3)]
        read = await client.get("/api/v1/checklists")

    assert [r.status_code for r in submits] == [202, 202, 429]
    assert submits[2].headers["ratelimit-limit"] == "2"
    assert read.status_code == 200


async def test_health_metrics_and_docs_are_never_limited(two_apis: tuple[ApiServer, ApiServer]) -> None:
    first, _ = two_apis
    async with httpx.AsyncClient(base_url=first.base_url) as client:
        statuses = {(await client.get(path)).status_code for path in ["/health", "/health/ready"] * 10}

    assert statuses == {200}


@pytest.fixture
def auth_limited(redis_base_url: str) -> Iterator[tuple[ApiServer, ApiServer]]:
    """One API behind a trusted proxy (the loopback), one trusting nobody."""
    redis.Redis.from_url(f"{redis_base_url}/12").flushdb()
    env = limited_env(redis_base_url, AUTH_RATE_LIMIT_REQUESTS="3", AUTH_RATE_LIMIT_WINDOW="30")
    behind_proxy = ApiServer({**env, "TRUSTED_PROXIES": "127.0.0.0/8"}).start()
    direct = ApiServer(env).start()
    yield behind_proxy, direct
    behind_proxy.stop()
    direct.stop()


async def login(client: httpx.AsyncClient, base: str, email: str, password: str, **headers: str) -> httpx.Response:
    return await client.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password}, headers=headers)


async def test_spoofed_forwarded_for_does_not_bypass_the_address_limit(
    auth_limited: tuple[ApiServer, ApiServer],
) -> None:
    _, direct = auth_limited
    async with httpx.AsyncClient() as client:
        statuses = [
            (
                await login(client, direct.base_url, "a@example.com", "x" * 12, **{"X-Forwarded-For": f"10.0.0.{n}"})
            ).status_code
            for n in range(5)
        ]

    assert statuses == [401, 401, 401, 429, 429]


async def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client(
    auth_limited: tuple[ApiServer, ApiServer],
) -> None:
    behind_proxy, _ = auth_limited
    async with httpx.AsyncClient() as client:
        # The client claims to be 1.1.1.1; the proxy appends the address it really saw.
        first_client = [
            (await login(client, behind_proxy.base_url, "b@example.com", "x" * 12,
                         **{"X-Forwarded-For": "1.1.1.1, 203.0.113.7"})).status_code
            for _ in range(4)
        ]  # fmt: skip
        other_client = await login(
            client, behind_proxy.base_url, "b@example.com", "x" * 12, **{"X-Forwarded-For": "203.0.113.8"}
        )

    assert first_client == [401, 401, 401, 429]
    assert other_client.status_code == 401


@pytest.fixture
def lockable(redis_base_url: str) -> Iterator[ApiServer]:
    redis.Redis.from_url(f"{redis_base_url}/12").flushdb()
    env = limited_env(redis_base_url, LOGIN_FAILURE_LIMIT="3", LOGIN_LOCK_WINDOW="60", TRUSTED_PROXIES="127.0.0.0/8")
    api = ApiServer(env).start()
    yield api
    api.stop()


async def test_failed_logins_lock_that_account_for_that_address_only(lockable: ApiServer) -> None:
    account = await account_on(lockable)
    attacker = {"X-Forwarded-For": "198.51.100.9"}
    owner = {"X-Forwarded-For": "192.0.2.1"}
    async with httpx.AsyncClient() as client:
        failures = [
            (await login(client, lockable.base_url, account.email, "wrong password!", **attacker)).status_code
            for _ in range(3)
        ]
        locked = await login(client, lockable.base_url, account.email, TEST_PASSWORD, **attacker)
        real_user = await login(client, lockable.base_url, account.email, TEST_PASSWORD, **owner)

    assert failures == [401, 401, 401]
    assert locked.status_code == 429
    assert locked.json()["code"] == "login_locked"
    assert int(locked.headers["retry-after"]) > 50
    assert real_user.status_code == 200


async def test_without_redis_general_limits_fail_open_and_logins_fail_closed(redis_base_url: str) -> None:
    live = ApiServer(limited_env(redis_base_url)).start()
    try:
        account = await account_on(live)
    finally:
        live.stop()
    env = limited_env(redis_base_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    dead = ApiServer(env).start(wait_for_events=False)
    try:
        async with httpx.AsyncClient(base_url=dead.base_url) as client:
            probe = await client.get("/api/v1/auth/test", headers=account.headers)
            submit = await client.post("/api/v1/checklists", headers=account.headers, json=TRIP)
            log_in = await client.post("/api/v1/auth/login", json={"email": account.email, "password": TEST_PASSWORD})
    finally:
        dead.stop()

    assert probe.status_code == 200  # the token verifies locally; the limiter lets it through
    assert RATE_LIMITER_ERRORS._value.get() >= 1  # counted, as well as logged
    assert submit.status_code == 503
    assert submit.json()["code"] == "dependency_unavailable"
    assert log_in.status_code == 503
