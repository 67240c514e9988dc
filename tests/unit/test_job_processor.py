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
from shared.schemas import TripRequest
from worker.providers.base import Generation
from worker.providers.offline.offline import OfflineProvider
from worker.retry import RetryPolicy
from worker.service import Done, JobProcessor, RetryIn

TRIP = TripRequest(location="Madrid", days=2, transport="bus", occasion="visit")
WORKER = "celery@unit-test"


@dataclass
class ScriptedProvider:
    """Raises the scripted errors in turn, then answers like the offline provider."""

    errors: list[ProviderError] = field(default_factory=list)
    calls: int = 0
    name: str = "scripted"

    def generate(self, trip: TripRequest) -> Generation:
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
    mapping = {"owner": "t", "status": "queued", "rev": 1, "doc": msgspec.json.encode(job), "due": 0}
    client.hset(keys.job(job.id), mapping=mapping)  # type: ignore[arg-type]
    client.zadd(keys.PENDING, {job.id: redis_now(client) + 60})
    return job.id


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def processor(client: redis.Redis, provider: ScriptedProvider, **kwargs: object) -> JobProcessor:
    return JobProcessor(
        store=SyncJobStore(client, job_ttl=60),
        provider=provider,
        policy=RetryPolicy(max_attempts=3, base=1.0, cap=4.0),
        **kwargs,  # type: ignore[arg-type]
    )


def test_success_stores_the_checklist(client: redis.Redis) -> None:
    job_id = new_job(client)

    outcome = processor(client, ScriptedProvider()).process(job_id, WORKER)

    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert outcome == Done("succeeded")
    assert stored is not None
    assert stored.job.status == "succeeded"
    assert stored.job.attempts == 1


def test_a_retryable_failure_queues_the_job_again_with_the_error_and_a_countdown_in_redis(
    client: redis.Redis,
) -> None:
    job_id = new_job(client)

    outcome = processor(client, ScriptedProvider([UpstreamUnavailable("down")])).process(job_id, WORKER)

    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert isinstance(outcome, RetryIn)
    assert 0.5 <= outcome.seconds <= 1.0
    assert stored is not None
    assert stored.job.status == "queued"
    assert stored.job.error is not None
    assert stored.job.error.code == "upstream_unavailable"
    # The countdown lives in Redis: due (and the sweep's next look) at about now + the delay.
    due = float(client.hget(keys.job(job_id), "due") or 0)
    assert due == client.zscore(keys.PENDING, job_id)
    assert 0.4 <= due - redis_now(client) <= 1.0


def test_a_job_not_due_yet_is_not_started(client: redis.Redis) -> None:
    job_id = new_job(client)
    provider = ScriptedProvider([UpstreamUnavailable("down")])
    processor(client, provider).process(job_id, WORKER)

    outcome = processor(client, provider).process(job_id, WORKER)

    assert outcome == Done("not_due")
    assert provider.calls == 1


def test_a_running_job_is_left_to_its_worker(client: redis.Redis) -> None:
    job_id = new_job(client)
    store = SyncJobStore(client, job_ttl=60)
    stored = store.get(job_id)
    assert stored is not None
    started = store.start(stored, lifecycle.start_attempt(stored.job, utcnow()), worker="celery@other", lease=30)
    assert not isinstance(started, str)
    provider = ScriptedProvider()

    outcome = processor(client, provider).process(job_id, WORKER)

    assert outcome == Done("running")
    assert provider.calls == 0
    assert client.hget(keys.job(job_id), "worker") == b"celery@other"


def test_a_started_job_is_held_by_the_workers_lease_and_leaves_pending_when_done(client: redis.Redis) -> None:
    job_id = new_job(client)
    seen: list[float | None] = []

    class Watching(ScriptedProvider):
        def generate(self, trip: TripRequest) -> Generation:
            seen.append(client.zscore(keys.PENDING, job_id))
            seen.append(redis_now(client))
            return super().generate(trip)

    processor(client, Watching()).process(job_id, WORKER)

    lease_until, now = seen
    assert lease_until is not None
    assert now is not None
    assert 14 <= lease_until - now <= 15  # the processor's default lease: 15 s
    assert client.zscore(keys.PENDING, job_id) is None
    assert client.hget(keys.job(job_id), "worker") is None


def test_a_permanent_failure_fails_at_once_even_with_a_fallback(client: redis.Redis) -> None:
    job_id = new_job(client)
    provider = ScriptedProvider([UpstreamAuthFailed("bad key")])

    outcome = processor(client, provider, fallback=OfflineProvider()).process(job_id, WORKER)

    assert outcome == Done("failed")
    assert provider.calls == 1


def test_processing_a_finished_job_again_does_nothing(client: redis.Redis) -> None:
    job_id = new_job(client)
    provider = ScriptedProvider()
    processor(client, provider).process(job_id, WORKER)

    outcome = processor(client, provider).process(job_id, WORKER)

    assert outcome == Done("succeeded")
    assert provider.calls == 1


def test_a_canceled_job_is_never_generated(client: redis.Redis) -> None:
    job_id = new_job(client)
    store = SyncJobStore(client, job_ttl=60)
    stored = store.get(job_id)
    assert stored is not None
    store.transition(stored, lifecycle.cancel(stored.job, utcnow()))
    provider = ScriptedProvider()

    outcome = processor(client, provider).process(job_id, WORKER)

    assert outcome == Done("canceled")
    assert provider.calls == 0


def test_a_deleted_job_is_skipped(client: redis.Redis) -> None:
    assert processor(client, ScriptedProvider()).process(uuid.uuid4().hex, WORKER) == Done("missing")


def test_an_unexpected_provider_bug_fails_the_job_without_details(client: redis.Redis) -> None:
    job_id = new_job(client)

    class Broken(ScriptedProvider):
        def generate(self, trip: TripRequest) -> Generation:
            raise ZeroDivisionError("secret internals")

    outcome = processor(client, Broken()).process(job_id, WORKER)

    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert outcome == Done("failed")
    assert stored is not None
    assert stored.job.error is not None
    assert stored.job.error.code == "internal_error"
    assert "secret" not in stored.job.error.message
