"""The app factory's lifespan and OpenAPI document, through Litestar's own test client."""

from __future__ import annotations

import asyncio

from litestar.testing import AsyncTestClient

from api.app import create_app
from shared.settings import load_settings
from tests.support import environment


async def test_the_app_starts_and_stops_cleanly_even_right_after_starting(redis_base_url: str) -> None:
    app = create_app(load_settings(environment({"REDIS_URL": f"{redis_base_url}/10"})))

    async def start_and_stop() -> int:
        async with AsyncTestClient(app) as client:
            return (await client.get("/health")).status_code

    assert await asyncio.wait_for(start_and_stop(), timeout=15) == 200


async def test_openapi_documents_the_request_bodies_handlers_decode_themselves(redis_base_url: str) -> None:
    app = create_app(load_settings(environment({"REDIS_URL": f"{redis_base_url}/10"})))

    async with AsyncTestClient(app) as client:
        document = (await client.get("/schema/openapi.json")).json()

    submit = document["paths"]["/api/v1/checklists"]["post"]["requestBody"]
    legacy = document["paths"]["/api/v1/generate-checklist"]["post"]["requestBody"]
    trip = submit["content"]["application/json"]["schema"]
    legacy_body = legacy["content"]["application/json"]["schema"]["properties"]
    webhook = trip["properties"].pop("webhook")  # the submission's one field beyond the trip
    assert legacy_body["trip_data"]["properties"] == trip["properties"]
    assert legacy_body["trip_data"]["required"] == trip["required"]
    assert legacy_body["webhook"] == webhook
    assert webhook["anyOf"][0]["required"] == ["url"]
    assert webhook["anyOf"][0]["additionalProperties"] is False
    assert set(trip["required"]) == {"location", "days", "transport", "occasion"}
    assert trip["properties"]["days"]["maximum"] == 365
    assert trip["additionalProperties"] is False
    assert trip["properties"]["travelers"]["anyOf"][0]["additionalProperties"] is False
    assert sorted(trip["properties"]["transport"]["enum"]) == ["bus", "car", "other", "plane", "train"]


async def test_docs_are_off_in_production_unless_enabled(redis_base_url: str) -> None:
    production = {
        "REDIS_URL": f"{redis_base_url}/10",
        "ENVIRONMENT": "production",
        "SECRET_KEY": "k" * 40,
        "LLM_PROVIDER": "offline",
        "METRICS_TOKEN": "m" * 32,
    }
    app = create_app(load_settings(environment(production)))

    async with AsyncTestClient(app) as client:
        assert (await client.get("/schema/openapi.json")).status_code == 404
        assert (await client.get("/health")).status_code == 200


async def test_metrics_need_the_metrics_token_when_one_is_set(redis_base_url: str) -> None:
    token = "a-long-metrics-token-for-prometheus"
    app = create_app(load_settings(environment({"REDIS_URL": f"{redis_base_url}/10", "METRICS_TOKEN": token})))

    async with AsyncTestClient(app) as client:
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})

    assert anonymous.status_code == wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_metrics_token"
    assert scraped.status_code == 200
    assert 'tripcheck_auth_failures_total{reason="invalid_metrics_token"}' in scraped.text
