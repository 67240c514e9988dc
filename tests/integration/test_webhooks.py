"""Webhooks end to end: the real API, a real worker, real Redis and real local HTTP receivers.

The stack here delivers to loopback (`WEBHOOK_ALLOW_PRIVATE=true`, as local development does)
on a retry schedule of tenths of seconds. Every receiver listens on 127.0.0.1: nothing leaves the
machine (and ENVIRONMENT=test makes the worker refuse anything but loopback anyway).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook, WebhookVerificationError

from shared import keys
from tests.conftest import Stack, _stack, _stop
from tests.fakes.receiver import Answer, Received, Receiver
from tests.support import Worker, new_account, wait_for_status

TRIP = {"location": "Lisbon, Portugal", "days": 3, "transport": "plane", "occasion": "city break"}
HOOK_ENV = {
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.3,0.3",
    "WEBHOOK_RETRY_JITTER": "0",
    "WEBHOOK_TIMEOUT": "5",
    "WEBHOOK_CONCURRENCY": "4",
    "WORKER_CONCURRENCY": "8",
}


@pytest.fixture(scope="module")
def hook_stack(redis_base_url: str, log_dir: Path) -> Iterator[Stack]:
    stack = _stack(redis_base_url, 4, log_dir, HOOK_ENV, with_worker=True)
    yield stack
    _stop(stack)


@pytest.fixture
async def api(hook_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as a new user (each test its own, so logs and endpoints start empty)."""
    async with hook_stack.client() as anonymous:
        account = await new_account(anonymous)
    async with hook_stack.client(account) as client:
        client.account = account  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def verify(received: Received, secret: str) -> Any:
    return Webhook(secret).verify(received.body, received.headers)


async def default_secret(api: httpx.AsyncClient) -> str:
    response = await api.get("/api/v1/webhooks/secret")
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    return secret


async def submit(api: httpx.AsyncClient, webhook: dict[str, Any] | None = None, **trip: Any) -> str:
    body: dict[str, Any] = {**TRIP, **trip}
    if webhook is not None:
        body["webhook"] = webhook
    response = await api.post("/api/v1/checklists", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def create_endpoint(api: httpx.AsyncClient, url: str, **fields: Any) -> dict[str, Any]:
    response = await api.post("/api/v1/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


async def log_of(api: httpx.AsyncClient, path: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The delivery log at `path` once it holds `count` attempts."""
    deadline = time.monotonic() + timeout
    while True:
        response = await api.get(path, params={"limit": 100})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        if len(items) >= count:
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(items)} of {count} attempts logged at {path}: {items}")
        await asyncio.sleep(0.05)


async def test_a_jobs_webhook_is_signed_and_verifies_with_standardwebhooks(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    job_id = await submit(api, {"url": receiver.url()})
    job = await wait_for_status(api, job_id, {"succeeded"})

    (received,) = receiver.wait_for(1)
    payload = verify(received, await default_secret(api))

    assert payload["type"] == "job.succeeded"
    assert payload["data"] == job
    assert "webhook" not in payload["data"]["request"]
    assert received.headers["webhook-id"].startswith("msg_")


async def test_a_signature_fails_for_a_wrong_secret_or_a_body_changed_by_one_byte(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    await submit(api, {"url": receiver.url()})
    (received,) = receiver.wait_for(1)
    secret = await default_secret(api)
    changed = received.body[:-2] + bytes([received.body[-2] ^ 1]) + received.body[-1:]

    verify(received, secret)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(received.body, received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(changed, received.headers)


async def test_an_endpoint_receives_the_events_it_asked_for_of_every_job_of_its_owner(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint = await create_endpoint(api, receiver.url(), events=["job.running", "job.succeeded"])
    first, second = await submit(api), await submit(api)
    await wait_for_status(api, second, {"succeeded"})

    arrived = receiver.wait_for(4)
    payloads = [verify(received, endpoint["secret"]) for received in arrived]

    seen = sorted((payload["data"]["id"], payload["type"]) for payload in payloads)
    assert seen == sorted(
        [(first, "job.running"), (first, "job.succeeded"), (second, "job.running"), (second, "job.succeeded")]
    )
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 4  # no job.queued


async def test_per_job_events_default_to_the_end_of_the_job(api: httpx.AsyncClient, receiver: Receiver) -> None:
    job_id = await submit(api, {"url": receiver.url(), "events": ["job.queued", "job.running", "job.succeeded"]})
    other = await submit(api, {"url": receiver.url(path="/default")})
    await wait_for_status(api, other, {"succeeded"})

    named = receiver.wait_for(3, where=lambda r: r.path == "/hook")
    defaults = receiver.wait_for(1, where=lambda r: r.path == "/default")

    # Deliveries run side by side: order is not promised (the payload's timestamp and data tell).
    by_type = {json.loads(r.body)["type"]: json.loads(r.body)["data"] for r in named}
    assert sorted(by_type) == ["job.queued", "job.running", "job.succeeded"]
    assert [by_type[kind]["status"] for kind in ("job.queued", "job.running", "job.succeeded")] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert json.loads(defaults[0].body)["type"] == "job.succeeded"
    assert {json.loads(r.body)["data"]["id"] for r in named} == {job_id}


async def test_after_a_rotation_both_secrets_sign_for_a_day(api: httpx.AsyncClient, receiver: Receiver) -> None:
    endpoint = await create_endpoint(api, receiver.url())
    rotated = (await api.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret")).json()
    ping = await api.post(f"/api/v1/webhooks/{endpoint['id']}/test")
    assert ping.status_code == 202, ping.text

    (received,) = receiver.wait_for(1)

    signatures = received.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert verify(received, rotated["secret"])["type"] == "ping"
    assert verify(received, endpoint["secret"])["type"] == "ping"
    assert rotated["secret"] != endpoint["secret"]
    assert rotated["previous_valid_until"] is not None


async def test_the_default_secret_rotates_too(api: httpx.AsyncClient, receiver: Receiver) -> None:
    old = await default_secret(api)
    new = (await api.post("/api/v1/webhooks/secret/rotate")).json()["secret"]
    await submit(api, {"url": receiver.url()})

    (received,) = receiver.wait_for(1)

    assert new != old
    assert await default_secret(api) == new
    verify(received, new)
    verify(received, old)


async def test_a_receiver_failing_twice_gets_three_attempts_with_one_webhook_id_and_one_success(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [Answer(500), Answer(502)]
    job_id = await submit(api, {"url": receiver.url()})

    arrived = receiver.wait_for(3)
    attempts = await log_of(api, f"/api/v1/checklists/{job_id}/deliveries", 3)

    assert len({received.headers["webhook-id"] for received in arrived}) == 1
    assert [attempt["attempt"] for attempt in attempts] == [3, 2, 1]  # newest first
    assert [attempt["outcome"] for attempt in attempts] == ["succeeded", "retrying", "retrying"]
    assert [attempt["status_code"] for attempt in attempts] == [204, 502, 500]
    assert attempts[1]["next_retry_at"] is not None
    assert attempts[0]["webhook_id"] == arrived[0].headers["webhook-id"]
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 3


async def test_retry_after_is_honoured(api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.script = [Answer(503, {"Retry-After": "2"})]
    await submit(api, {"url": receiver.url()})

    first, second = receiver.wait_for(2)

    assert second.at - first.at >= 2.0  # the schedule alone would have retried after 0.3 s


async def test_410_gone_disables_the_endpoint_and_says_why(api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.default = Answer(410)
    endpoint = await create_endpoint(api, receiver.url())
    await api.post(f"/api/v1/webhooks/{endpoint['id']}/test")
    receiver.wait_for(1)
    attempts = await log_of(api, f"/api/v1/webhooks/{endpoint['id']}/deliveries", 1)

    shown = (await api.get(f"/api/v1/webhooks/{endpoint['id']}")).json()
    job_id = await submit(api)
    await wait_for_status(api, job_id, {"succeeded"})
    await asyncio.sleep(0.5)

    assert attempts[0]["outcome"] == "failed"
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    assert len(receiver.received) == 1  # nothing more goes to a disabled endpoint
    enabled = await api.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": True})
    assert enabled.json()["enabled"] is True
    assert enabled.json()["disabled_reason"] is None


async def test_a_delivery_is_redelivered_with_the_same_webhook_id(api: httpx.AsyncClient, receiver: Receiver) -> None:
    job_id = await submit(api, {"url": receiver.url()})
    (first,) = receiver.wait_for(1)
    (attempt,) = await log_of(api, f"/api/v1/checklists/{job_id}/deliveries", 1)

    again = await api.post(f"/api/v1/webhooks/deliveries/{attempt['delivery_id']}/redeliver")
    assert again.status_code == 202, again.text
    _, second = receiver.wait_for(2)
    attempts = await log_of(api, f"/api/v1/checklists/{job_id}/deliveries", 2)

    assert second.headers["webhook-id"] == first.headers["webhook-id"] == again.json()["webhook_id"]
    assert second.body == first.body
    assert [a["attempt"] for a in attempts] == [2, 1]


async def test_a_hanging_receiver_delays_neither_checklists_nor_other_deliveries(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    other = Receiver().start()
    try:
        receiver.default = Answer(hang=60)
        stuck = [await submit(api, {"url": receiver.url(), "events": ["job.queued"]}) for _ in range(6)]
        receiver.wait_for(2)  # the hanging receiver holds its share of the delivery slots

        job_id = await submit(api, {"url": other.url(host="localhost")})
        await wait_for_status(api, job_id, {"succeeded"})
        (delivered,) = other.wait_for(1)

        # Both happened before any attempt to the hanging receiver could have timed out (5 s), so
        # neither waited for a slot that the hang held: at most half of them go to one host.
        assert delivered.at < receiver.received[0].at + 5
        assert receiver.hanging == 2
        assert len(stuck) == 6
    finally:
        receiver.release()
        other.stop()


CRASH_ENV = {
    **HOOK_ENV,
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5,0.5,0.5",
    "WEBHOOK_DISABLE_AFTER": "1",
}


@pytest.fixture
def lone_stack(redis_base_url: str, log_dir: Path) -> Iterator[Stack]:
    """An API and a worker of this test's own, which it may kill: no other worker shares its queues."""
    stack = _stack(redis_base_url, 5, log_dir, CRASH_ENV, with_worker=True)
    yield stack
    _stop(stack)


@pytest.fixture
async def lone_api(lone_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with lone_stack.client() as anonymous:
        account = await new_account(anonymous)
    async with lone_stack.client(account) as client:
        yield client


async def test_the_worker_killed_mid_delivery_delivers_after_restart_with_the_same_webhook_id(
    lone_stack: Stack, lone_api: httpx.AsyncClient, receiver: Receiver, log_dir: Path
) -> None:
    receiver.script = [Answer(hang=60)]
    job_id = await submit(lone_api, {"url": receiver.url()})
    (cut_off,) = receiver.wait_for(1)  # the attempt is under way...
    assert lone_stack.worker is not None
    lone_stack.worker.kill()  # ...when its worker dies
    receiver.release()

    lone_stack.worker = Worker(lone_stack.env, log_dir).start()
    _, delivered = receiver.wait_for(2, timeout=30)
    attempts = await log_of(lone_api, f"/api/v1/checklists/{job_id}/deliveries", 1)

    assert delivered.headers["webhook-id"] == cut_off.headers["webhook-id"]
    assert delivered.body == cut_off.body
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(2, "succeeded")]  # the lost one left no entry


async def test_an_event_recorded_while_no_worker_runs_is_delivered_once_one_does(
    lone_stack: Stack, lone_api: httpx.AsyncClient, receiver: Receiver, log_dir: Path
) -> None:
    assert lone_stack.worker is not None
    lone_stack.worker.kill()
    job_id = await submit(lone_api, {"url": receiver.url(), "events": ["job.queued"]})
    outbox = redis.Redis.from_url(lone_stack.redis_url)
    assert outbox.zcard(keys.OUTBOX) == 1  # recorded with the job, by the submission's own script

    lone_stack.worker = Worker(lone_stack.env, log_dir).start()
    (received,) = receiver.wait_for(1, timeout=30)

    assert json.loads(received.body)["data"]["id"] == job_id
    assert outbox.zcard(keys.OUTBOX) == 0


async def test_an_endpoint_failing_for_too_long_is_disabled_and_its_owner_sees_why(
    lone_api: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.default = Answer(500)
    endpoint = await create_endpoint(lone_api, receiver.url())
    await submit(lone_api)

    receiver.wait_for(3, timeout=30)  # failures 0, 0.5 and 1 s apart: WEBHOOK_DISABLE_AFTER=1
    deadline = time.monotonic() + 10
    while (shown := (await lone_api.get(f"/api/v1/webhooks/{endpoint['id']}")).json())["enabled"]:
        assert time.monotonic() < deadline, shown
        await asyncio.sleep(0.05)

    assert "every delivery failed" in shown["disabled_reason"]
    assert "500" in shown["disabled_reason"]
    assert shown["failing_since"] is not None


async def test_the_legacy_endpoint_takes_a_webhook_beside_trip_data(api: httpx.AsyncClient, receiver: Receiver) -> None:
    response = await api.post(
        "/api/v1/generate-checklist", json={"trip_data": TRIP, "webhook": {"url": receiver.url()}}
    )
    assert response.status_code == 200, response.text

    (received,) = receiver.wait_for(1)

    payload = verify(received, await default_secret(api))
    assert payload["data"]["id"] == response.json()["id"]
    assert payload["data"]["request"] == TRIP


async def test_delivery_logs_page_like_job_lists(api: httpx.AsyncClient, receiver: Receiver) -> None:
    endpoint = await create_endpoint(api, receiver.url())
    for _ in range(3):
        await api.post(f"/api/v1/webhooks/{endpoint['id']}/test")
    path = f"/api/v1/webhooks/{endpoint['id']}/deliveries"
    everything = await log_of(api, path, 3)

    first = (await api.get(path, params={"limit": 2})).json()
    rest = (await api.get(path, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    bad = await api.get(path, params={"cursor": "not-ours"})

    assert [a["delivery_id"] for a in first["items"] + rest["items"]] == [a["delivery_id"] for a in everything]
    assert rest["next_cursor"] is None
    assert [a["event"] for a in everything] == ["ping"] * 3
    assert bad.status_code == 422
    assert bad.json()["field"] == "cursor"


async def test_deleting_the_account_deletes_its_endpoints_secrets_and_deliveries(
    hook_stack: Stack, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint = await create_endpoint(api, receiver.url())
    await default_secret(api)
    job_id = await submit(api, {"url": receiver.url()})
    receiver.wait_for(2)
    attempts = await log_of(api, f"/api/v1/checklists/{job_id}/deliveries", 2)
    owner = api.account.user_id  # type: ignore[attr-defined]
    store = redis.Redis.from_url(hook_stack.redis_url)
    remembered = [
        keys.webhook(endpoint["id"]),
        keys.webhook_secret(owner),
        keys.user_webhooks(owner),
        keys.user_deliveries(owner),
        keys.job_deliveries(job_id),
        keys.webhook_deliveries(endpoint["id"]),
        *(keys.delivery(a["delivery_id"]) for a in attempts),
        *(keys.delivery_attempts(a["delivery_id"]) for a in attempts),
    ]
    assert all(store.exists(key) for key in remembered)

    assert (await api.delete("/api/v1/auth/me")).status_code == 204

    assert [key for key in remembered if store.exists(key)] == []
