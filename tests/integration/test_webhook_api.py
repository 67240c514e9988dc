"""Webhook management through the real API, on a stack without a worker and without
WEBHOOK_ALLOW_PRIVATE: what is refused at submission, limits, ownership, the strict bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support import new_account

TRIP = {"location": "Lisbon, Portugal", "days": 3, "transport": "plane", "occasion": "city break"}
PUBLIC = "https://hooks.example.com/trip"

#: Every form the issue names, and their neighbours: refused before any DNS or connection.
REFUSED = [
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/",  # hexadecimal, short form
    "http://017700000001/",  # octal
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[fd00::1]/",  # unique local
    "http://224.0.0.1/",  # multicast
    "http://[ff02::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://240.0.0.1/",  # reserved
    "http://255.255.255.255/",
    "http://192.0.2.1/",  # documentation
    "http://[2001:db8::1]/",
    "http://localhost:9000/",
    "http://hooks.localhost/",  # a name under localhost is loopback
    "http://user:secret@hooks.example.com/",  # credentials
    "ftp://hooks.example.com/",
    "https://1.2.3.4.5/",
    "https:///nohost",
]


@pytest.fixture
async def api(idle_stack: Stack) -> Any:
    async with idle_stack.client() as anonymous:
        account = await new_account(anonymous)
    async with idle_stack.client(account) as client:
        yield client


@pytest.mark.parametrize("url", REFUSED)
async def test_a_refused_url_is_a_422_naming_the_field(api: httpx.AsyncClient, url: str) -> None:
    submitted = await api.post("/api/v1/checklists", json={**TRIP, "webhook": {"url": url}})
    legacy = await api.post("/api/v1/generate-checklist", json={"trip_data": TRIP, "webhook": {"url": url}})
    created = await api.post("/api/v1/webhooks", json={"url": url})

    assert (submitted.status_code, submitted.json()["field"]) == (422, "$.webhook.url"), submitted.text
    assert (legacy.status_code, legacy.json()["field"]) == (422, "$.webhook.url"), legacy.text
    assert (created.status_code, created.json()["field"]) == (422, "$.url"), created.text


async def test_a_refused_url_cannot_be_set_by_an_update_either(api: httpx.AsyncClient) -> None:
    endpoint = (await api.post("/api/v1/webhooks", json={"url": PUBLIC})).json()

    updated = await api.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"url": "http://0x7f.1/"})

    assert (updated.status_code, updated.json()["field"]) == (422, "$.url")


async def test_the_submit_body_stays_strict_and_the_job_keeps_only_the_trip(api: httpx.AsyncClient) -> None:
    unknown = await api.post("/api/v1/checklists", json={**TRIP, "webhook": {"url": PUBLIC, "surprise": 1}})
    bad_event = await api.post("/api/v1/checklists", json={**TRIP, "webhook": {"url": PUBLIC, "events": ["job.x"]}})
    accepted = await api.post("/api/v1/checklists", json={**TRIP, "webhook": {"url": PUBLIC}})
    job = (await api.get(f"/api/v1/checklists/{accepted.json()['id']}")).json()

    assert (unknown.status_code, unknown.json()["field"]) == (422, "$.webhook.surprise")
    assert (bad_event.status_code, bad_event.json()["field"]) == (422, "$.webhook.events[0]")
    assert accepted.status_code == 202
    assert job["request"] == TRIP


async def test_the_same_idempotency_key_with_another_webhook_is_a_conflict(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "hook-key-1"}
    first = await api.post("/api/v1/checklists", json={**TRIP, "webhook": {"url": PUBLIC}}, headers=headers)
    again = await api.post("/api/v1/checklists", json={**TRIP, "webhook": {"url": PUBLIC}}, headers=headers)
    other = await api.post("/api/v1/checklists", json={**TRIP, "webhook": {"url": PUBLIC + "/2"}}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 409


async def test_endpoints_are_created_listed_updated_and_deleted(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/webhooks", json={"url": PUBLIC, "description": " partner "})
    endpoint = created.json()
    listed = (await api.get("/api/v1/webhooks")).json()["items"]
    updated = await api.patch(
        f"/api/v1/webhooks/{endpoint['id']}", json={"events": ["job.failed", "job.failed"], "enabled": False}
    )
    removed = await api.delete(f"/api/v1/webhooks/{endpoint['id']}")
    gone = await api.get(f"/api/v1/webhooks/{endpoint['id']}")

    assert created.status_code == 201
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["events"] == ["job.succeeded", "job.failed", "job.canceled"]
    assert endpoint["description"] == "partner"
    assert [item["id"] for item in listed] == [endpoint["id"]]
    assert "secret" not in listed[0]
    assert updated.json()["events"] == ["job.failed"]
    assert updated.json()["enabled"] is False
    assert updated.json()["disabled_reason"] is None  # disabled by its owner
    assert removed.status_code == 204
    assert gone.status_code == 404


async def test_a_user_has_at_most_twenty_endpoints(api: httpx.AsyncClient) -> None:
    for n in range(20):
        assert (await api.post("/api/v1/webhooks", json={"url": f"{PUBLIC}/{n}"})).status_code == 201

    refused = await api.post("/api/v1/webhooks", json={"url": f"{PUBLIC}/21"})

    assert refused.status_code == 409
    assert refused.json()["code"] == "webhook_limit_reached"


async def test_the_default_secret_is_stable_until_rotated(api: httpx.AsyncClient) -> None:
    first = (await api.get("/api/v1/webhooks/secret")).json()
    second = (await api.get("/api/v1/webhooks/secret")).json()
    rotated = (await api.post("/api/v1/webhooks/secret/rotate")).json()

    assert first == second
    assert first["secret"].startswith("whsec_")
    assert first["previous_valid_until"] is None
    assert rotated["secret"] != first["secret"]
    assert rotated["previous_valid_until"] is not None


async def test_someone_elses_webhooks_and_deliveries_are_not_found(idle_stack: Stack, api: httpx.AsyncClient) -> None:
    endpoint = (await api.post("/api/v1/webhooks", json={"url": PUBLIC})).json()
    job_id = (await api.post("/api/v1/checklists", json=TRIP)).json()["id"]
    async with idle_stack.client() as anonymous:
        stranger = await new_account(anonymous)
    async with idle_stack.client(stranger) as other:
        answers = [
            await other.get(f"/api/v1/webhooks/{endpoint['id']}"),
            await other.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": False}),
            await other.delete(f"/api/v1/webhooks/{endpoint['id']}"),
            await other.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret"),
            await other.post(f"/api/v1/webhooks/{endpoint['id']}/test"),
            await other.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries"),
            await other.get(f"/api/v1/checklists/{job_id}/deliveries"),
            await other.post(f"/api/v1/webhooks/deliveries/{'0' * 32}/redeliver"),
        ]
        listed = (await other.get("/api/v1/webhooks")).json()["items"]

    assert [answer.status_code for answer in answers] == [404] * 8
    assert listed == []
    assert (await api.get(f"/api/v1/webhooks/{endpoint['id']}")).json()["enabled"] is True


async def test_webhook_routes_need_credentials_and_spend_the_general_quota(
    idle_stack: Stack, api: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=idle_stack.api.base_url) as anonymous:
        refused = await anonymous.get("/api/v1/webhooks")
    listed = await api.get("/api/v1/webhooks")

    assert refused.status_code == 401
    assert listed.headers["RateLimit-Limit"] == "100000"  # RATE_LIMIT_REQUESTS in the tests' settings
