"""Accounts and credentials over real HTTP, against the real app and Redis."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest
import redis

from shared import keys
from tests.conftest import Stack
from tests.support import TEST_PASSWORD, Account, ApiServer, new_account

TRIP = {"location": "Oslo", "days": 2, "transport": "train", "occasion": "visit"}


@pytest.fixture
async def anonymous(idle_stack: Stack) -> Any:
    async with httpx.AsyncClient(base_url=idle_stack.api.base_url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_returns_the_user_without_the_hash_and_normalises_email(anonymous: httpx.AsyncClient) -> None:
    email = f"  Mixed.Case-{uuid.uuid4().hex[:8]}@Example.COM "

    response = await anonymous.post("/api/v1/auth/register", json={"email": email, "password": TEST_PASSWORD})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "created_at"}
    assert body["email"] == email.strip().casefold()
    again = await anonymous.post("/api/v1/auth/register", json={"email": email.upper(), "password": TEST_PASSWORD})
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"


async def test_register_refuses_weak_passwords_and_bad_emails(anonymous: httpx.AsyncClient) -> None:
    email = f"weak-{uuid.uuid4().hex[:8]}@example.com"

    weak = await anonymous.post("/api/v1/auth/register", json={"email": email, "password": "password1234"})
    bad_email = await anonymous.post("/api/v1/auth/register", json={"email": "nope", "password": TEST_PASSWORD})
    extra = await anonymous.post("/api/v1/auth/register", json={"email": email, "password": TEST_PASSWORD, "admin": 1})

    assert (weak.status_code, weak.json()["code"], weak.json()["field"]) == (422, "weak_password", "$.password")
    assert (bad_email.status_code, bad_email.json()["field"]) == (422, "$.email")
    assert extra.status_code == 422


@pytest.mark.parametrize(
    ("password", "feedback"),
    [
        ("123456789012", "This is similar to a commonly used password."),
        ("qwertyuiopasdf", "This is similar to a commonly used password."),
        ("abcdefghijklmnop", 'Sequences like "abc" or "6543" are easy to guess.'),
    ],
)
async def test_register_refuses_easily_guessed_passwords_saying_why(
    anonymous: httpx.AsyncClient, password: str, feedback: str
) -> None:
    email = f"guessable-{uuid.uuid4().hex[:8]}@example.com"

    response = await anonymous.post("/api/v1/auth/register", json={"email": email, "password": password})
    login = await anonymous.post("/api/v1/auth/login", json={"email": email, "password": password})

    assert (response.status_code, response.json()["code"], response.json()["field"]) == (
        422,
        "weak_password",
        "$.password",
    )
    assert feedback in response.json()["detail"]
    assert login.json()["code"] == "invalid_credentials"  # no account was made


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/register", {"email": "utf8-@@@example.com", "password": TEST_PASSWORD}),
        ("/api/v1/auth/register", {"email": "utf8@example.com", "password": TEST_PASSWORD + "@@"}),
        ("/api/v1/auth/login", {"email": "utf8@example.com", "password": "@@" + TEST_PASSWORD}),
        ("/api/v1/auth/refresh", {"refresh_token": "tcr_@@"}),
        ("/api/v1/auth/logout", {"refresh_token": "tcr_@@"}),
        ("/api/v1/auth/api-keys", {"name": "laptop @@"}),
    ],
)
async def test_bodies_that_are_not_utf8_are_malformed_json_on_every_auth_endpoint(
    idle_stack: Stack, path: str, body: dict[str, str]
) -> None:
    content = msgspec.json.encode(body).replace(b"@@", b"\xff")
    async with idle_stack.client() as client:
        account = await new_account(client)
        response = await client.post(
            path, content=content, headers={**account.headers, "content-type": "application/json"}
        )
        still_signed_in = await client.get("/api/v1/auth/me", headers=account.headers)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_json"
    assert "UTF-8" in response.json()["detail"]
    assert still_signed_in.status_code == 200  # a refused logout changed nothing


async def test_login_answers_the_same_for_unknown_email_and_wrong_password(
    anonymous: httpx.AsyncClient, idle_stack: Stack
) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)

    wrong = await anonymous.post("/api/v1/auth/login", json={"email": account.email, "password": "not the password"})
    unknown = await anonymous.post(
        "/api/v1/auth/login", json={"email": "nobody-" + account.email, "password": TEST_PASSWORD}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_login_tokens_work_and_me_and_test_report_the_principal(
    anonymous: httpx.AsyncClient, idle_stack: Stack
) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        probe_get = await client.get("/api/v1/auth/test", headers=account.headers)
        probe_post = await client.post("/api/v1/auth/test", headers=account.headers)
    # Not the stack's client: once a test has signed the stack's user in, it sends that user's token.
    anonymous_probe = await anonymous.get("/api/v1/auth/test")

    assert me.json() == {"id": account.user_id, "email": account.email, "created_at": me.json()["created_at"]}
    assert probe_get.json()["user_id"] == probe_post.json()["user_id"] == account.user_id
    assert anonymous_probe.status_code == 401
    assert anonymous_probe.json()["code"] == "missing_credentials"
    assert anonymous_probe.headers["www-authenticate"].startswith("Bearer")


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        first = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        rotated = first.json()["refresh_token"]
        reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        after_theft = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated})

    assert first.status_code == 200
    assert rotated != account.refresh_token
    assert first.json()["token_type"] == "bearer"
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "refresh_token_reused"
    assert after_theft.status_code == 401  # the whole family went with the reuse
    assert after_theft.json()["code"] == "invalid_refresh_token"


async def test_logout_ends_the_login_of_the_refresh_token_and_of_the_access_token(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})).json()
        other = await new_account(client)  # someone else's login: its tokens name it, not the caller
        out = await client.post(
            "/api/v1/auth/logout", headers=other.headers, json={"refresh_token": rotated["refresh_token"]}
        )
        access = [await client.get("/api/v1/auth/me", headers=bearer(token)) for token in
                  (account.access_token, rotated["access_token"], other.access_token)]  # fmt: skip
        refresh = [await client.post("/api/v1/auth/refresh", json={"refresh_token": token}) for token in
                   (rotated["refresh_token"], other.refresh_token)]  # fmt: skip

    assert out.status_code == 204
    assert [response.json()["code"] for response in access] == ["token_revoked"] * 3
    assert [response.json()["code"] for response in refresh] == ["invalid_refresh_token"] * 2


async def test_logout_with_the_access_token_alone_ends_its_login_and_no_other(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})).json()
        second_login = await client.post("/api/v1/auth/login", json={"email": account.email, "password": TEST_PASSWORD})
        out = await client.post("/api/v1/auth/logout", headers=bearer(rotated["access_token"]))
        first_access = await client.get("/api/v1/auth/me", headers=account.headers)
        first_refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
        second_access = await client.get("/api/v1/auth/me", headers=bearer(second_login.json()["access_token"]))
        second_refresh = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second_login.json()["refresh_token"]}
        )

    assert out.status_code == 204
    assert first_access.json()["code"] == "token_revoked"
    assert first_refresh.json()["code"] == "invalid_refresh_token"
    assert second_access.status_code == 200
    assert second_refresh.status_code == 200


async def test_a_revocation_reaches_an_api_process_started_later(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        await client.post("/api/v1/auth/logout", headers=account.headers)
    later = ApiServer(idle_stack.env).start()
    try:
        async with httpx.AsyncClient(base_url=later.base_url, headers=account.headers) as client:
            response = await client.get("/api/v1/auth/me")
    finally:
        later.stop()

    assert response.json()["code"] == "token_revoked"


async def test_api_keys_are_shown_once_listed_without_secret_and_revocable(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        created = (await client.post("/api/v1/auth/api-keys", headers=account.headers, json={"name": "ci"})).json()
        key = created["key"]
        by_bearer = await client.post("/api/v1/checklists", headers=bearer(key), json=TRIP)
        by_header = await client.get("/api/v1/auth/test", headers={"X-API-Key": key})
        listed = (await client.get("/api/v1/auth/api-keys", headers=account.headers)).json()["items"]
        revoked = await client.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=account.headers)
        after = await client.get("/api/v1/auth/test", headers={"X-API-Key": key})

    assert key.startswith("tck_")
    assert by_bearer.status_code == 202
    assert by_header.json() == {"user_id": account.user_id, "kind": "api_key", "api_key_id": created["id"]}
    assert [item["name"] for item in listed] == ["ci"]
    assert listed[0]["prefix"] == key[:12]
    assert listed[0]["last_used"]
    assert key not in str(listed)
    assert revoked.status_code == 204
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_api_key"
    stored = redis.Redis.from_url(idle_stack.redis_url).keys(f"{keys.PREFIX}:apikey:*")
    assert all(key.encode() not in name for name in stored)


async def test_jobs_of_another_user_are_404_on_every_endpoint(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        owner, stranger = await new_account(client), await new_account(client)
        job_id = (await client.post("/api/v1/checklists", headers=owner.headers, json=TRIP)).json()["id"]
        attempts = [
            await client.get(f"/api/v1/checklists/{job_id}", headers=stranger.headers),
            await client.get(f"/api/v1/checklists/{job_id}?wait=1", headers=stranger.headers),
            await client.post(f"/api/v1/checklists/{job_id}/cancel", headers=stranger.headers),
            await client.delete(f"/api/v1/checklists/{job_id}", headers=stranger.headers),
        ]
        listing = (await client.get("/api/v1/checklists", headers=stranger.headers)).json()
        still_there = await client.get(f"/api/v1/checklists/{job_id}", headers=owner.headers)

    assert [response.status_code for response in attempts] == [404, 404, 404, 404]
    assert {response.json()["code"] for response in attempts} == {"not_found"}
    assert listing["items"] == []
    assert still_there.json()["status"] == "queued"


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/checklists", "POST"),
        ("/api/v1/checklists", "GET"),
        ("/api/v1/checklists/" + "0" * 32, "GET"),
        ("/api/v1/checklists/" + "0" * 32 + "/cancel", "POST"),
        ("/api/v1/checklists/" + "0" * 32, "DELETE"),
        ("/api/v1/generate-checklist", "POST"),
        ("/api/v1/auth/me", "GET"),
        ("/api/v1/auth/api-keys", "GET"),
    ],
)
async def test_every_job_and_account_endpoint_needs_credentials(
    anonymous: httpx.AsyncClient, path: str, method: str
) -> None:
    response = await anonymous.request(method, path, json=TRIP)

    assert response.status_code == 401
    assert response.json()["code"] == "missing_credentials"


async def test_deleting_the_account_removes_user_keys_tokens_and_jobs(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        key = (await client.post("/api/v1/auth/api-keys", headers=account.headers, json={"name": "x"})).json()["key"]
        job_id = (
            await client.post("/api/v1/checklists", headers={**account.headers, "Idempotency-Key": "k1"}, json=TRIP)
        ).json()["id"]
        gone = await client.delete("/api/v1/auth/me", headers=account.headers)
        token_after = await client.get("/api/v1/auth/test", headers=account.headers)
        key_after = await client.get("/api/v1/auth/test", headers={"X-API-Key": key})
        refresh_after = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        login_after = await client.post("/api/v1/auth/login", json={"email": account.email, "password": TEST_PASSWORD})

    assert gone.status_code == 204
    assert token_after.json()["code"] == "token_revoked"
    assert key_after.json()["code"] == "invalid_api_key"
    assert refresh_after.json()["code"] == "invalid_refresh_token"
    assert login_after.json()["code"] == "invalid_credentials"
    store = redis.Redis.from_url(idle_stack.redis_url)
    leftovers = [
        name
        for name in store.scan_iter(f"{keys.PREFIX}:*")
        # Quota counters keyed by the user id expire within two windows and hold nothing personal.
        if (account.user_id.encode() in name and not name.startswith(b"tc:limits:"))
        or job_id.encode() in name
        or account.email.encode() in name
    ]
    assert leftovers == [keys.revoked_user(account.user_id).encode()]  # the revocation itself, until it expires
    assert not store.exists(keys.idempotency(account.user_id, "k1"))
    assert store.zscore(keys.PENDING, job_id) is None


async def test_deleting_the_account_ends_its_open_long_polls_at_once(idle_stack: Stack) -> None:
    async with idle_stack.client() as client:
        account = await new_account(client)
        job_id = (await client.post("/api/v1/checklists", headers=account.headers, json=TRIP)).json()["id"]
        waiting = asyncio.create_task(client.get(f"/api/v1/checklists/{job_id}?wait=25", headers=account.headers))
        await asyncio.sleep(0.3)  # the long-poll is waiting for the job's events
        began = time.monotonic()
        assert (await client.delete("/api/v1/auth/me", headers=account.headers)).status_code == 204
        ended = await waiting

    assert ended.status_code == 404
    assert time.monotonic() - began < 10  # woken by the deletion's event, not by its 25 s wait


async def test_failed_authentications_are_logged_without_secrets(
    idle_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trip_checklist.auth")
    secret_password = "a secret password " + uuid.uuid4().hex
    async with idle_stack.client() as client:
        account: Account = await new_account(client)
        await client.post("/api/v1/auth/login", json={"email": account.email, "password": secret_password})
        await client.get("/api/v1/auth/me", headers=bearer(account.access_token[:-4] + "AAAA"))
        await client.get("/api/v1/auth/me", headers={"X-API-Key": "tck_" + "z" * 43})

    records = [record for record in caplog.records if getattr(record, "event", "") == "auth_failure"]
    reasons = [record.reason for record in records]  # type: ignore[attr-defined]
    assert "invalid_credentials" in reasons
    assert "token_invalid_signature" in reasons
    assert "invalid_api_key" in reasons
    login_failure = next(r for r in records if r.reason == "invalid_credentials")  # type: ignore[attr-defined]
    assert login_failure.account == account.email  # type: ignore[attr-defined]
    assert login_failure.client == "127.0.0.1"  # type: ignore[attr-defined]
    assert f"reason=invalid_credentials client=127.0.0.1 account={account.email}" in login_failure.getMessage()
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    assert secret_password not in text
    assert account.access_token[:-4] not in text
    assert "z" * 43 not in text


async def test_failed_authentications_are_counted_in_metrics(anonymous: httpx.AsyncClient) -> None:
    await anonymous.get("/api/v1/auth/me", headers={"X-API-Key": "tck_" + "q" * 43})

    text = (await anonymous.get("/metrics")).text

    assert 'tripcheck_auth_failures_total{reason="invalid_api_key"}' in text
