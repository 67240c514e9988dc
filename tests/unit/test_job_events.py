"""Every change of a job is recorded as an event in the same script as the change itself: on the
job's event stream, and in the webhook outbox when a webhook may want it (real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis

from shared import job_scripts, keys, lifecycle
from shared.clock import utcnow
from shared.errors import UpstreamUnavailable
from shared.jobs import SyncJobStore
from shared.schemas import Job, TripRequest
from tests.unit.test_job_processor import ScriptedProvider, processor

TRIP = TripRequest(location="Quito", days=4, transport="plane", occasion="hiking")
OWNER = "owner-events"


@pytest.fixture
def client(redis_base_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(f"{redis_base_url}/12")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


def create(client: redis.Redis, hook: bytes = b"") -> str:
    """A job stored by the submit script itself."""
    job = lifecycle.new_job(uuid.uuid4().hex, TRIP, utcnow())
    client.register_script(job_scripts.CREATE.source)(
        keys=[keys.job(job.id), keys.owner_index(OWNER), "", keys.QUEUE, keys.PENDING, keys.job_events(job.id),
              keys.OUTBOX, keys.user_webhooks(OWNER)],
        args=[job.id, OWNER, msgspec.json.encode(job), f"1:{job.id}", "", 600, 600, b"{}", keys.job(""), 60, "t", hook,
              ""],
    )  # fmt: skip
    return job.id


def events(client: redis.Redis, job_id: str) -> list[tuple[str, int, Job | None]]:
    recorded = []
    entries: Any = client.xrange(keys.job_events(job_id))
    for _, fields in entries:
        doc = fields.get(b"doc")
        job = msgspec.json.decode(doc, type=Job) if doc is not None else None
        recorded.append((fields[b"type"].decode(), int(fields[b"rev"]), job))
    return recorded


def test_a_jobs_life_is_recorded_event_by_event_with_the_job_as_it_was(client: redis.Redis) -> None:
    job_id = create(client)

    processor(client, ScriptedProvider()).process(job_id, "celery@w")

    recorded = events(client, job_id)
    assert [(kind, rev) for kind, rev, _ in recorded] == [("job.queued", 1), ("job.running", 2), ("job.succeeded", 3)]
    assert [job.status if job else None for _, _, job in recorded] == ["queued", "running", None]
    assert client.ttl(keys.job_events(job_id)) > 0  # it expires with the job


def test_a_failed_attempt_is_recorded_as_retrying(client: redis.Redis) -> None:
    job_id = create(client)

    processor(client, ScriptedProvider([UpstreamUnavailable("down")])).process(job_id, "celery@w")

    kinds = [kind for kind, _, _ in events(client, job_id)]
    assert kinds == ["job.queued", "job.running", "job.retrying"]


def test_a_cancel_is_recorded_as_canceled(client: redis.Redis) -> None:
    job_id = create(client)
    store = SyncJobStore(client, job_ttl=600)
    stored = store.get(job_id)
    assert stored is not None

    store.transition(stored, lifecycle.cancel(stored.job, utcnow()))

    assert [kind for kind, _, _ in events(client, job_id)] == ["job.queued", "job.canceled"]


def test_events_reach_the_webhook_outbox_only_when_a_webhook_may_want_them(client: redis.Redis) -> None:
    nobody = create(client)
    own_hook = create(client, hook=b'{"url":"https://hooks.example/x"}')
    client.sadd(keys.user_webhooks(OWNER), "endpoint-1")
    owners_endpoint = create(client)

    members: Any = client.zrange(keys.OUTBOX, 0, -1)
    outbox = [member.decode() for member in members]

    assert not [member for member in outbox if member.startswith(nobody)]
    for job_id in (own_hook, owners_endpoint):
        (event_id,) = (member.split("/", 1)[1] for member in outbox if member.startswith(job_id))
        entries: Any = client.xrange(keys.job_events(job_id), event_id, event_id)
        assert entries[0][1][b"type"] == b"job.queued"
