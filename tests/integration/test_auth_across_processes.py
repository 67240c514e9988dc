"""Credentials across API processes and configurations: revocations reach every process at once,
key rotation keeps old tokens valid, and password hashes are upgraded on login."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from argon2 import PasswordHasher

from shared import keys
from tests.support import TEST_PASSWORD, ApiServer, new_account

OLD_KEY = "old-signing-key-" + "o" * 32
NEW_KEY = "new-signing-key-" + "n" * 32


@pytest.fixture
def env(redis_base_url: str) -> dict[str, str]:
    redis.Redis.from_url(f"{redis_base_url}/14").flushdb()
    return {"REDIS_URL": f"{redis_base_url}/14", "SECRET_KEY": OLD_KEY}


@pytest.fixture
def two_apis(env: dict[str, str]) -> Iterator[tuple[ApiServer, ApiServer]]:
    first, second = ApiServer(env).start(), ApiServer(env).start()
    yield first, second
    first.stop()
    second.stop()


async def test_a_revoked_api_key_stops_working_on_every_process_within_moments(
    two_apis: tuple[ApiServer, ApiServer],
) -> None:
    first, second = two_apis
    async with httpx.AsyncClient(base_url=first.base_url) as signup:
        account = await new_account(signup)
    async with httpx.AsyncClient() as client:
        created = await client.post(
            f"{first.base_url}/api/v1/auth/api-keys", headers=account.headers, json={"name": "k"}
        )
        key = created.json()["key"]
        warm = await client.get(f"{second.base_url}/api/v1/auth/test", headers={"X-API-Key": key})  # now cached there
        await client.delete(f"{first.base_url}/api/v1/auth/api-keys/{created.json()['id']}", headers=account.headers)
        revoked_at = time.monotonic()
        # The other process hears of it by a pub/sub event, not when its 30 s cache entry expires.
        while (
            after := await client.get(f"{second.base_url}/api/v1/auth/test", headers={"X-API-Key": key})
        ).status_code == 200:
            assert time.monotonic() - revoked_at < 2, "the revocation did not reach the other process"
            await asyncio.sleep(0.01)

    assert warm.status_code == 200
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_api_key"


async def _answers(client: httpx.AsyncClient, api: ApiServer, tokens: list[str]) -> list[str]:
    """What `api` says to each access token on /api/v1/auth/me: "ok", or the problem's code."""
    answers = []
    for token in tokens:
        response = await client.get(f"{api.base_url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        answers.append("ok" if response.status_code == 200 else f"{response.status_code} {response.json()['code']}")
    return answers


async def test_refresh_token_reuse_revokes_every_access_token_of_that_login_on_every_process(
    two_apis: tuple[ApiServer, ApiServer], env: dict[str, str]
) -> None:
    first, second = two_apis
    async with httpx.AsyncClient(base_url=first.base_url) as client:
        account = await new_account(client)
        rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})).json()
        other_login = await client.post("/api/v1/auth/login", json={"email": account.email, "password": TEST_PASSWORD})
    family = [account.access_token, rotated["access_token"]]
    unrelated = [other_login.json()["access_token"]]
    revoked = ["401 token_revoked"] * 2
    async with httpx.AsyncClient() as client:
        # Both processes have verified (and remembered) every token before the reuse.
        warm = await _answers(client, first, family + unrelated) + await _answers(client, second, family + unrelated)
        reuse = await client.post(
            f"{second.base_url}/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        on_detecting_process = await _answers(client, second, family)
        reused_at = time.monotonic()
        # The other process hears of it by a pub/sub event.
        while (on_other_process := await _answers(client, first, family)) != revoked:
            assert time.monotonic() - reused_at < 2, "the revocation did not reach the other process"
            await asyncio.sleep(0.01)
        other_login_after = await _answers(client, first, unrelated) + await _answers(client, second, unrelated)
    later = ApiServer(env).start()  # loads the revocations made before it subscribed
    try:
        async with httpx.AsyncClient() as client:
            on_later_process = await _answers(client, later, family + unrelated)
    finally:
        later.stop()

    assert warm == ["ok"] * 6
    assert reuse.json()["code"] == "refresh_token_reused"
    assert on_detecting_process == revoked  # at once, not when its own event comes back
    assert on_other_process == revoked
    assert other_login_after == ["ok", "ok"]  # another login of the same user is not touched
    assert on_later_process == [*revoked, "ok"]


async def test_tokens_signed_with_the_previous_key_still_work_during_a_rotation(env: dict[str, str]) -> None:
    before = ApiServer(env).start()
    try:
        async with httpx.AsyncClient(base_url=before.base_url) as client:
            account = await new_account(client)
    finally:
        before.stop()
    rotating = ApiServer({**env, "SECRET_KEY": NEW_KEY, "SECRET_KEY_PREVIOUS": OLD_KEY}).start()
    rotated = ApiServer({**env, "SECRET_KEY": NEW_KEY}).start()
    try:
        async with httpx.AsyncClient(headers=account.headers) as client:
            during = await client.get(f"{rotating.base_url}/api/v1/auth/me")
            after = await client.get(f"{rotated.base_url}/api/v1/auth/me")
    finally:
        rotating.stop()
        rotated.stop()

    assert during.status_code == 200
    assert after.status_code == 401
    assert after.json()["code"] == "token_unknown_key"


async def test_an_outdated_password_hash_is_upgraded_on_login(env: dict[str, str], redis_base_url: str) -> None:
    api = ApiServer(env).start()
    try:
        async with httpx.AsyncClient(base_url=api.base_url) as client:
            account = await new_account(client)
            store = redis.Redis.from_url(f"{redis_base_url}/14")
            weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(TEST_PASSWORD)
            store.hset(keys.user(account.user_id), "password", weak)
            login = await client.post("/api/v1/auth/login", json={"email": account.email, "password": TEST_PASSWORD})
    finally:
        api.stop()

    upgraded = store.hget(keys.user(account.user_id), "password")
    assert login.status_code == 200
    assert isinstance(upgraded, bytes)
    assert upgraded.decode() != weak
    assert not PasswordHasher().check_needs_rehash(upgraded.decode())


async def test_cors_allows_only_the_configured_origins(env: dict[str, str]) -> None:
    api = ApiServer({**env, "ALLOWED_ORIGINS": "https://app.example.com"}).start()
    try:
        async with httpx.AsyncClient(base_url=api.base_url) as client:
            preflight = {"Access-Control-Request-Method": "POST"}
            allowed = await client.options(
                "/api/v1/checklists", headers={"Origin": "https://app.example.com", **preflight}
            )
            refused = await client.options(
                "/api/v1/checklists", headers={"Origin": "https://evil.example", **preflight}
            )
    finally:
        api.stop()

    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in refused.headers


async def test_every_response_carries_the_security_headers(env: dict[str, str]) -> None:
    production = {
        **env,
        "ENVIRONMENT": "production",
        "SECRET_KEY": NEW_KEY,
        "LLM_PROVIDER": "offline",
        "METRICS_TOKEN": "m" * 32,
    }
    development, prod = ApiServer(env).start(), ApiServer(production).start()
    try:
        async with httpx.AsyncClient() as client:
            responses = [
                await client.get(f"{development.base_url}/health"),
                await client.get(f"{development.base_url}/api/v1/checklists"),  # a 401
                await client.get(f"{development.base_url}/nowhere"),  # a 404
            ]
            docs = await client.get(f"{development.base_url}/schema/swagger")
            secure = await client.get(f"{prod.base_url}/health")
    finally:
        development.stop()
        prod.stop()

    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "strict-transport-security" not in response.headers
    assert "script-src 'self';" in docs.headers["content-security-policy"]
    assert secure.headers["strict-transport-security"].startswith("max-age=")
