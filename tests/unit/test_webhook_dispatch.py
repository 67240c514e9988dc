"""Job events into deliveries, against real Redis: the sweep's part and the worker's fast path.

Jobs are created with the job store's own script, which records their events in the outbox when
their owner has endpoints or the job has a webhook."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import cast

import msgspec
import pytest
import redis

from shared import job_scripts, keys, lifecycle, webhook_scripts
from shared.clock import utcnow
from shared.queue import TaskEnvelopes, create_celery
from shared.schemas import TripRequest
from shared.settings import load_settings
from shared.webhook_schemas import delivery_id, new_secret
from tests.support import environment
from worker.webhooks.dispatch import WebhookDispatch
from worker.webhooks.store import SyncWebhookStore

TRIP = TripRequest(location="Tromsø", days=3, transport="plane", occasion="aurora")
OWNER = "dispatch-owner"
#: The X-Request-ID the job was submitted with.
REQUEST_ID = "client-req-hooks"


@pytest.fixture
def client(redis_base_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(f"{redis_base_url}/6")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def dispatch(client: redis.Redis, redis_base_url: str) -> WebhookDispatch:
    app = create_celery(load_settings(environment({"REDIS_URL": f"{redis_base_url}/6"})))
    envelopes = TaskEnvelopes(app, keys.WEBHOOK_TASK_NAME, keys.WEBHOOK_QUEUE)
    return WebhookDispatch(SyncWebhookStore(client, envelopes, ttl=600, check_after=30))


def endpoint(client: redis.Redis, events: str = "job.queued") -> str:
    ident = uuid.uuid4().hex
    client.register_script(webhook_scripts.CREATE_ENDPOINT.source)(
        keys=[keys.user_webhooks(OWNER), keys.webhook(ident)],
        args=[20, ident, OWNER, "https://hooks.example.com/", events, "", new_secret()],
    )
    return ident


def submit(client: redis.Redis, hook: bytes = b"") -> str:
    job = lifecycle.new_job(uuid.uuid4().hex, TRIP, utcnow())
    client.register_script(job_scripts.CREATE.source)(
        keys=[keys.job(job.id), keys.owner_index(OWNER), "", keys.QUEUE, keys.PENDING, keys.job_events(job.id),
              keys.OUTBOX, keys.user_webhooks(OWNER)],
        args=[job.id, OWNER, msgspec.json.encode(job), f"1:{job.id}", "", 600, 600, b"{}", keys.job(""), 30,
              job.id, hook, REQUEST_ID],
    )  # fmt: skip
    return job.id


def outbox(client: redis.Redis) -> list[str]:
    return [raw.decode() for raw in cast(list[bytes], client.zrange(keys.OUTBOX, 0, -1))]


def test_an_event_becomes_one_delivery_per_target_with_its_message_and_leaves_the_outbox(
    client: redis.Redis, dispatch: WebhookDispatch
) -> None:
    wanted, _unwanted = endpoint(client), endpoint(client, "job.succeeded")
    job_id = submit(client, b'{"url":"https://job.example.com/","events":["job.queued"]}')
    (member,) = outbox(client)
    event_id = member.split("/")[1]

    assert dispatch.sweep() == (1, 0)

    expected = {delivery_id(job_id, event_id, ""), delivery_id(job_id, event_id, wanted)}
    messages = [json.loads(raw) for raw in client.lrange(keys.WEBHOOK_QUEUE, 0, -1)]
    assert {message["headers"]["id"] for message in messages} == expected
    # Each delivery carries the request id of its job's submission (its lines name it in the worker).
    assert {message["headers"]["request_id"] for message in messages} == {REQUEST_ID}
    assert client.zcard(keys.OUTBOX) == 0
    assert client.hget(keys.delivery(delivery_id(job_id, event_id, "")), "url") == b"https://job.example.com/"
    body = json.loads(client.hget(keys.delivery(delivery_id(job_id, event_id, wanted)), "body") or b"")
    assert (body["type"], body["data"]["id"], body["data"]["status"]) == ("job.queued", job_id, "queued")

    # The same event once more (a crash between two steps): the deterministic ids create nothing new.
    client.zadd(keys.OUTBOX, {member: 1})
    assert dispatch.store.expand(member) == 0
    assert client.llen(keys.WEBHOOK_QUEUE) == 2


def test_the_fast_path_expands_only_its_jobs_events(client: redis.Redis, dispatch: WebhookDispatch) -> None:
    endpoint(client)
    mine, other = submit(client), submit(client)

    dispatch.job_changed(mine)

    assert [member.split("/")[0] for member in outbox(client)] == [other]
    assert client.llen(keys.WEBHOOK_QUEUE) == 1


def test_events_of_vanished_jobs_leave_and_broken_ones_are_dropped_without_holding_up_others(
    client: redis.Redis, dispatch: WebhookDispatch
) -> None:
    endpoint(client)
    gone, broken, fine = submit(client), submit(client, b'{"url": 42}'), submit(client)
    client.delete(keys.job(gone))

    assert dispatch.sweep() == (2, 0)  # the vanished job's event and the fine one

    assert client.zcard(keys.OUTBOX) == 0  # the broken event was dropped too
    (message,) = client.lrange(keys.WEBHOOK_QUEUE, 0, -1)
    body = cast(bytes, client.hget(keys.delivery(json.loads(message)["headers"]["id"]), "body"))
    assert json.loads(body)["data"]["id"] == fine
    assert broken not in body.decode()


def test_due_deliveries_get_one_message_until_they_are_checked_again(
    client: redis.Redis, dispatch: WebhookDispatch
) -> None:
    endpoint(client)
    submit(client)
    dispatch.sweep()
    client.delete(keys.WEBHOOK_QUEUE)  # the message was lost
    (ident,) = cast(list[bytes], client.zrange(keys.WEBHOOK_DELIVERIES_DUE, 0, -1))
    client.zadd(keys.WEBHOOK_DELIVERIES_DUE, {ident: 0})  # its check is due

    assert dispatch.sweep() == (0, 1)
    assert dispatch.sweep() == (0, 0)  # not again before its next check
    assert client.llen(keys.WEBHOOK_QUEUE) == 1
