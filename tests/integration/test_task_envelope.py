"""The API pushes task messages itself (inside the submit script); they must be exactly what
Celery's own `apply_async` would push, so a Celery or kombu upgrade that changes the format fails
here rather than in production."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from shared import keys
from shared.queue import REQUEST_ID_HEADER, TaskEnvelopes, create_celery
from shared.settings import load_settings
from tests.support import environment

#: Fields that differ per message by design.
_PER_MESSAGE = {("properties", "delivery_tag"), ("properties", "reply_to"), ("headers", "origin")}


@pytest.fixture
def broker(redis_base_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{redis_base_url}/7")
    client.flushdb()
    yield client
    client.flushdb()


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    result = {key: value for key, value in message.items() if key not in ("headers", "properties", "body")}
    for section in ("headers", "properties"):
        result[section] = {k: v for k, v in message[section].items() if (section, k) not in _PER_MESSAGE}
    result["body"] = json.loads(base64.b64decode(message["body"]))
    return result


def test_envelope_matches_what_celery_publishes(broker: redis.Redis, redis_base_url: str) -> None:
    settings = load_settings(environment({"REDIS_URL": f"{redis_base_url}/7"}))
    app = create_celery(settings)
    job_id = "0123456789abcdef0123456789abcdef"
    request_id = "client-7f3a:retry/2@edge=1+x"

    app.send_task(keys.TASK_NAME, args=(job_id,), task_id=job_id, headers={REQUEST_ID_HEADER: request_id})
    published = json.loads(broker.lpop(keys.QUEUE))  # type: ignore[arg-type]
    ours = json.loads(TaskEnvelopes(app).build(job_id, request_id=request_id).body)

    assert _comparable(ours) == _comparable(published)
    assert ours["headers"][REQUEST_ID_HEADER] == request_id


def test_each_envelope_gets_its_own_delivery_tag(redis_base_url: str) -> None:
    envelopes = TaskEnvelopes(create_celery(load_settings(environment({"REDIS_URL": f"{redis_base_url}/7"}))))

    first, second = json.loads(envelopes.build("a" * 32).body), json.loads(envelopes.build("b" * 32).body)

    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]
    assert second["properties"]["delivery_tag"] == str(uuid.UUID("b" * 32))
    assert second["headers"]["id"] == second["properties"]["correlation_id"] == "b" * 32


def test_the_webhook_envelope_matches_what_celery_publishes_on_its_queue(
    broker: redis.Redis, redis_base_url: str
) -> None:
    app = create_celery(load_settings(environment({"REDIS_URL": f"{redis_base_url}/7"})))
    delivery_id = "fedcba9876543210fedcba9876543210"
    request_id = "the-job-s-request-id"  # a delivery carries its job's

    app.send_task(
        keys.WEBHOOK_TASK_NAME, args=(delivery_id,), task_id=delivery_id, headers={REQUEST_ID_HEADER: request_id}
    )
    published = json.loads(broker.lpop(keys.WEBHOOK_QUEUE))  # type: ignore[arg-type]
    envelopes = TaskEnvelopes(app, keys.WEBHOOK_TASK_NAME, keys.WEBHOOK_QUEUE)
    ours = json.loads(envelopes.build(delivery_id, request_id=request_id).body)

    assert _comparable(ours) == _comparable(published)
    assert broker.llen(keys.QUEUE) == 0
