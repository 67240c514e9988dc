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
from shared.schemas import TripRequest, Usage
from worker.budget import GroqBudget
from worker.providers.base import Generation, Spend
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


@dataclass
class Spending(ScriptedProvider):
    """Answers like the offline provider, reporting that it spent `spend` upstream."""

    spend: Spend = field(default_factory=Spend)

    def generate(self, trip: TripRequest) -> Generation:
        self.calls += 1
        return Generation(OfflineProvider().checklist(trip), self.spend)


def budget_entries(client: redis.Redis) -> list[str]:
    """The budget window's entries, `<reservation>:<tokens>`."""
    return [bytes(member).decode() for member in client.zrange(keys.GROQ_BUDGET, 0, -1)]  # type: ignore[arg-type]


USAGE = Usage(calls=2, prompt_tokens=500, completion_tokens=200, reasoning_tokens=50, total_tokens=700)


def test_a_job_waiting_for_the_budget_says_so_until_it_starts(client: redis.Redis) -> None:
    client.delete(keys.GROQ_BUDGET)
    budget = GroqBudget(client, requests=1, tokens=0, tokens_per_call=1, window=30)
    assert budget.reserve().wait == 0  # the window's only call is taken
    job_id = new_job(client)
    store = SyncJobStore(client, job_ttl=60)

    outcome = processor(client, ScriptedProvider(), budget=budget).process(job_id, WORKER)

    waiting = store.get(job_id)
    assert isinstance(outcome, RetryIn)
    assert outcome.reason == "budget"
    assert waiting is not None
    assert waiting.job.status == "queued"
    assert waiting.job.attempts == 0
    assert waiting.job.waiting is not None
    assert waiting.job.waiting.reason == "upstream_budget"
    assert 29 <= (waiting.job.waiting.until - utcnow()).total_seconds() <= 34
    client.delete(keys.GROQ_BUDGET)  # the budget frees up, and the job is due
    client.hset(keys.job(job_id), "due", 0)

    assert processor(client, ScriptedProvider(), budget=budget).process(job_id, WORKER) == Done("succeeded")
    done = store.get(job_id)
    assert done is not None
    assert done.job.waiting is None


def test_the_reservation_is_settled_with_the_usage_reported_and_usage_is_recorded(client: redis.Redis) -> None:
    client.delete(keys.GROQ_BUDGET)
    budget = GroqBudget(client, requests=10, tokens=10_000, tokens_per_call=2_500, window=30)
    job_id = new_job(client)

    outcome = processor(client, Spending(spend=Spend(calls=2, usage=USAGE)), budget=budget).process(job_id, WORKER)

    entries = budget_entries(client)
    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert outcome == Done("succeeded")
    assert len(entries) == 2  # two calls (an answer and its repair): two requests
    assert sum(int(entry.rsplit(":", 1)[1]) for entry in entries) == 700  # not the 2,500 estimated
    assert stored is not None
    assert stored.job.usage == USAGE


def test_what_a_failed_attempt_spent_is_recorded_and_settled_too(client: redis.Redis) -> None:
    client.delete(keys.GROQ_BUDGET)
    budget = GroqBudget(client, requests=10, tokens=10_000, tokens_per_call=2_500, window=30)
    error = UpstreamUnavailable("down")
    error.spend = Spend(calls=1, usage=USAGE)
    job_id = new_job(client)

    processor(client, ScriptedProvider([error]), budget=budget).process(job_id, WORKER)

    stored = SyncJobStore(client, job_ttl=60).get(job_id)
    assert stored is not None
    assert stored.job.status == "queued"
    assert stored.job.usage == USAGE
    assert [entry.rsplit(":", 1)[1] for entry in budget_entries(client)] == ["700"]


def test_a_job_that_is_not_started_gives_its_reservation_back(client: redis.Redis) -> None:
    client.delete(keys.GROQ_BUDGET)
    budget = GroqBudget(client, requests=10, tokens=0, tokens_per_call=1, window=30)
    job_id = new_job(client)
    client.hset(keys.job(job_id), "due", redis_now(client) + 60)  # a retry's countdown is still running

    outcome = processor(client, ScriptedProvider(), budget=budget).process(job_id, WORKER)

    assert outcome == Done("not_due")
    assert client.zcard(keys.GROQ_BUDGET) == 0
