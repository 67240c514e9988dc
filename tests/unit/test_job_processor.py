"""The worker's job processing against real Redis, with stub providers (the outer boundary)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
import pytest
import redis

from shared import keys, lifecycle
from shared.clock import utcnow
from shared.errors import ProviderError, UpstreamAuthFailed, UpstreamUnavailable
from shared.jobs import SyncJobStore
from shared.schemas import Checklist, TripRequest
from worker.providers.offline.offline import OfflineProvider
from worker.retry import RetryPolicy
from worker.service import Done, JobProcessor, RetryIn

TRIP = TripRequest(location="Madrid", days=2, transport="bus", occasion="visit")


@dataclass
class ScriptedProvider:
    """Raises the scripted errors in turn, then answers like the offline provider."""

    errors: list[ProviderError] = field(default_factory=list)
    calls: int = 0
    name: str = "scripted"

    def generate(self, trip: TripRequest) -> Checklist:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return OfflineProvider().generate(trip)

    def close(self) -> None:
        pass


@pytest.fixture
def client(redis_base_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(f"{redis_base_url}/8")
    yield connection
    connection.close()


def new_job(client: redis.Redis) -> str:
    """A queued job stored the way the submit script stores it."""
    job = lifecycle.new_job(uuid.uuid4().hex, TRIP, utcnow())
    client.hset(keys.job(job.id), mapping={"owner": "t", "status": "queued", "rev": 1, "doc": msgspec.json.encode(job)})
    return job.id


def processor(client: redis.Redis, provider: ScriptedProvider, **kwargs: object) -> JobProcessor:
    return JobProcessor(
        store=SyncJobStore(client, job_ttl=60),
        provider=provider,
        policy=RetryPolicy(max_attempts=3, base=1.0, cap=4.0),
        **kwargs,  # type: ignore[arg-type]
    )


def test_success_stores_the_checklist(client: redis.Redis) -> None:
    job_id = new_job(client)

    outcome = processor(client, ScriptedProvider()).process(job_id)

    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert outcome == Done("succeeded")
    assert stored is not None
    assert stored.job.status == "succeeded"
    assert stored.job.attempts == 1


def test_a_retryable_failure_requeues_with_the_error_and_asks_for_a_delay(client: redis.Redis) -> None:
    job_id = new_job(client)

    outcome = processor(client, ScriptedProvider([UpstreamUnavailable("down")])).process(job_id)

    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert isinstance(outcome, RetryIn)
    assert 0.5 <= outcome.seconds <= 1.0
    assert stored is not None
    assert stored.job.status == "queued"
    assert stored.job.error is not None
    assert stored.job.error.code == "upstream_unavailable"


def test_a_permanent_failure_fails_at_once_even_with_a_fallback(client: redis.Redis) -> None:
    job_id = new_job(client)
    provider = ScriptedProvider([UpstreamAuthFailed("bad key")])

    outcome = processor(client, provider, fallback=OfflineProvider()).process(job_id)

    assert outcome == Done("failed")
    assert provider.calls == 1


def test_processing_a_finished_job_again_does_nothing(client: redis.Redis) -> None:
    job_id = new_job(client)
    provider = ScriptedProvider()
    processor(client, provider).process(job_id)

    outcome = processor(client, provider).process(job_id)

    assert outcome == Done("succeeded")
    assert provider.calls == 1


def test_a_canceled_job_is_never_generated(client: redis.Redis) -> None:
    job_id = new_job(client)
    store = SyncJobStore(client, job_ttl=60)
    stored = store.get(job_id)
    assert stored is not None
    store.transition(stored, lifecycle.cancel(stored.job, utcnow()))
    provider = ScriptedProvider()

    outcome = processor(client, provider).process(job_id)

    assert outcome == Done("canceled")
    assert provider.calls == 0


def test_a_deleted_job_is_skipped(client: redis.Redis) -> None:
    assert processor(client, ScriptedProvider()).process(uuid.uuid4().hex) == Done("missing")


def test_an_unexpected_provider_bug_fails_the_job_without_details(client: redis.Redis) -> None:
    job_id = new_job(client)

    class Broken(ScriptedProvider):
        def generate(self, trip: TripRequest) -> Checklist:
            raise ZeroDivisionError("secret internals")

    outcome = processor(client, Broken()).process(job_id)

    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert outcome == Done("failed")
    assert stored is not None
    assert stored.job.error is not None
    assert stored.job.error.code == "internal_error"
    assert "secret" not in stored.job.error.message
