"""The recovery sweep against real Redis, one round at a time, with a controlled monotonic clock.

Leases, due times and message checks live on Redis's clock, so the tests make a job overdue by
moving its score in `keys.PENDING` into the past rather than by waiting.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import pytest
import redis

from shared import job_scripts, keys, lifecycle
from shared.clock import utcnow
from shared.jobs import PendingJobs, StoredJob, SyncJobStore
from shared.queue import TaskEnvelopes, create_celery
from shared.schemas import Job, JobError, TripRequest
from shared.settings import load_settings
from tests.support import environment
from worker.recovery import RecoverySweep, plan

TRIP = TripRequest(location="Tromsø", days=3, transport="plane", occasion="aurora")
LEASE = 10.0
#: The X-Request-ID the job was submitted with: every message of the job carries it.
REQUEST_ID = "client-req-42"


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_base_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(f"{redis_base_url}/9")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def envelopes(redis_base_url: str) -> TaskEnvelopes:
    return TaskEnvelopes(create_celery(load_settings(environment({"REDIS_URL": f"{redis_base_url}/9"}))))


def sweeper(
    client: redis.Redis, envelopes: TaskEnvelopes, clock: Clock, name: str = "w1", max_attempts: int = 3
) -> RecoverySweep:
    return RecoverySweep(
        client=client,
        pending=PendingJobs(client, job_ttl=600, check_after=LEASE),
        envelopes=envelopes,
        name=name,
        interval=1.0,
        lease=LEASE,
        visibility_timeout=60,
        max_attempts=max_attempts,
        clock=clock,
    )


def healthy(sweep: RecoverySweep, clock: Clock) -> None:
    """Let the sweep see Redis answer for a whole lease (ticks one interval apart)."""
    for _ in range(int(LEASE) + 1):
        sweep.run_once()
        clock.now += 1.0


def submit(client: redis.Redis, envelopes: TaskEnvelopes) -> str:
    """A queued job with its message on the queue, exactly as the API's submit script leaves it."""
    job = lifecycle.new_job(uuid.uuid4().hex, TRIP, utcnow())
    message = envelopes.build(job.id, request_id=REQUEST_ID)
    client.register_script(job_scripts.CREATE.source)(
        keys=[keys.job(job.id), keys.owner_index("owner"), "", keys.QUEUE, keys.PENDING, keys.job_events(job.id),
              keys.OUTBOX, keys.user_webhooks("owner")],
        args=[job.id, "owner", msgspec.json.encode(job), f"1:{job.id}", "", 600, 600, message.body, keys.job(""),
              LEASE, message.tag, "", REQUEST_ID],
    )  # fmt: skip
    return job.id


def take(client: redis.Redis, envelopes: TaskEnvelopes, job_id: str, worker: str = "celery@gone") -> StoredJob:
    """A worker takes the job's message off the queue and starts it (then, in these tests, dies)."""
    client.lrem(keys.QUEUE, 0, envelopes.build(job_id, request_id=REQUEST_ID).body.decode())
    store = SyncJobStore(client, job_ttl=600)
    stored = store.get(job_id)
    assert stored is not None
    started = store.start(stored, lifecycle.start_attempt(stored.job, utcnow()), worker=worker, lease=LEASE)
    assert isinstance(started, StoredJob)
    return started


def overdue(client: redis.Redis, job_id: str) -> None:
    """Move the job's lease, due time or next check into the past."""
    client.zadd(keys.PENDING, {job_id: 1.0})
    if client.hget(keys.job(job_id), "due") not in (None, b"0"):
        client.hset(keys.job(job_id), "due", 1.0)


def abandoned(
    client: redis.Redis, envelopes: TaskEnvelopes, sweep: RecoverySweep, clock: Clock, worker: str = "celery@gone"
) -> str:
    """A running job whose lease ran out, seen by a sweep that has had Redis for a whole lease."""
    job_id = submit(client, envelopes)
    take(client, envelopes, job_id, worker=worker)
    healthy(sweep, clock)
    overdue(client, job_id)
    return job_id


def job_of(client: redis.Redis, job_id: str) -> Job:
    doc = client.hget(keys.job(job_id), "doc")
    assert doc is not None
    return msgspec.json.decode(doc, type=Job)


def queued_ids(client: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(keys.QUEUE, 0, -1)]


# --- running jobs whose worker is gone -----------------------------------------------------------


def test_a_running_job_whose_lease_ran_out_is_queued_again_with_a_new_message(
    client: redis.Redis, envelopes: TaskEnvelopes
) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = abandoned(client, envelopes, sweep, clock)

    report = sweep.run_once()

    job = job_of(client, job_id)
    assert report is not None
    assert report.recovered == 1
    assert job.status == "queued"
    assert job.attempts == 1  # the lost attempt counts, honestly
    assert job.error is not None
    assert job.error.code == "worker_lost"
    assert queued_ids(client) == [job_id]
    assert client.hget(keys.job(job_id), "worker") is None
    (message,) = client.lrange(keys.QUEUE, 0, -1)
    assert json.loads(message)["headers"]["request_id"] == REQUEST_ID  # the job's lines stay findable


def test_a_job_that_used_all_its_attempts_fails_with_worker_lost(client: redis.Redis, envelopes: TaskEnvelopes) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock, max_attempts=1)
    job_id = abandoned(client, envelopes, sweep, clock)

    sweep.run_once()

    job = job_of(client, job_id)
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.code == "worker_lost"
    assert client.zscore(keys.PENDING, job_id) is None
    assert queued_ids(client) == []


def test_running_jobs_wait_until_the_sweep_has_seen_redis_for_a_whole_lease(
    client: redis.Redis, envelopes: TaskEnvelopes
) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = submit(client, envelopes)
    take(client, envelopes, job_id)
    overdue(client, job_id)

    sweep.run_once()  # just (re)connected: live workers may not have renewed their leases yet
    clock.now += LEASE / 2
    sweep.run_once()

    assert job_of(client, job_id).status == "running"
    healthy(sweep, clock)
    assert job_of(client, job_id).status == "queued"


def test_a_gap_in_contact_with_redis_restarts_the_wait(client: redis.Redis, envelopes: TaskEnvelopes) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = submit(client, envelopes)
    take(client, envelopes, job_id)
    healthy(sweep, clock)
    clock.now += 60  # no tick for a minute: Redis was away (or we were)
    overdue(client, job_id)

    sweep.run_once()

    assert job_of(client, job_id).status == "running"


def test_a_renewed_lease_keeps_the_job_with_its_worker(client: redis.Redis, envelopes: TaskEnvelopes) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = abandoned(client, envelopes, sweep, clock, worker="celery@alive")
    store = SyncJobStore(client, job_ttl=600)

    assert store.renew_leases("celery@someone-else", [job_id], LEASE) == 0
    assert store.renew_leases("celery@alive", [job_id], LEASE) == 1
    sweep.run_once()

    assert job_of(client, job_id).status == "running"


# --- queued jobs ---------------------------------------------------------------------------------


def test_a_delayed_job_gets_its_message_when_it_is_due_and_not_before(
    client: redis.Redis, envelopes: TaskEnvelopes
) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = submit(client, envelopes)
    started = take(client, envelopes, job_id, worker="celery@alive")
    SyncJobStore(client, job_ttl=600).retry_later(
        started, lifecycle.requeue(started.job, JobError(code="upstream_unavailable", message="down")), 3600
    )

    sweep.run_once()
    assert queued_ids(client) == []

    overdue(client, job_id)
    sweep.run_once()
    assert queued_ids(client) == [job_id]
    assert client.hget(keys.job(job_id), "due") == b"0"


def test_a_queued_job_whose_message_vanished_gets_a_new_one(client: redis.Redis, envelopes: TaskEnvelopes) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = submit(client, envelopes)
    client.delete(keys.QUEUE)  # e.g. the last second of writes lost when Redis restarted
    overdue(client, job_id)

    report = sweep.run_once()

    assert report is not None
    assert report.pushed == 1
    assert queued_ids(client) == [job_id]
    tag = client.hget(keys.job(job_id), "msg")
    assert isinstance(tag, bytes)
    assert json.loads(client.lindex(keys.QUEUE, 0) or b"{}")["properties"]["delivery_tag"] == tag.decode()


def test_a_queued_job_whose_message_waits_on_the_queue_gets_no_duplicate(
    client: redis.Redis, envelopes: TaskEnvelopes
) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = submit(client, envelopes)
    for _ in range(50):  # a backlog in front of it
        submit(client, envelopes)
    overdue(client, job_id)

    sweep.run_once()

    assert queued_ids(client).count(job_id) == 1
    assert client.zscore(keys.PENDING, job_id) == pytest.approx(_redis_now(client) + LEASE, abs=1)


def test_a_message_taken_but_never_started_for_a_whole_check_period_is_replaced(
    client: redis.Redis, envelopes: TaskEnvelopes
) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    job_id = submit(client, envelopes)
    message = envelopes.build(job_id, request_id=REQUEST_ID)
    client.lrem(keys.QUEUE, 0, message.body.decode())  # a worker took it (kombu's unacked entry), then hung
    client.hset(keys.UNACKED, message.tag, json.dumps([json.loads(message.body), "", keys.QUEUE]))
    overdue(client, job_id)

    sweep.run_once()
    assert queued_ids(client) == []  # taken recently enough: give it a check period

    overdue(client, job_id)
    sweep.run_once()
    assert queued_ids(client) == [job_id]


def test_finished_and_deleted_jobs_leave_the_pending_set(client: redis.Redis, envelopes: TaskEnvelopes) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    gone = submit(client, envelopes)
    client.delete(keys.job(gone))
    overdue(client, gone)

    sweep.run_once()

    assert client.zscore(keys.PENDING, gone) is None


# --- the lock and the last resort ----------------------------------------------------------------


def test_only_one_process_sweeps_at_a_time(client: redis.Redis, envelopes: TaskEnvelopes) -> None:
    clock = Clock()
    first, second = sweeper(client, envelopes, clock, "w1"), sweeper(client, envelopes, clock, "w2")

    assert first.run_once() is not None
    assert second.run_once() is None
    first.stop()
    assert second.run_once() is not None


def test_messages_unacknowledged_past_the_visibility_timeout_go_back_on_the_queue(
    client: redis.Redis, envelopes: TaskEnvelopes
) -> None:
    clock = Clock()
    sweep = sweeper(client, envelopes, clock)
    old, recent, finished = (envelopes.build(submit(client, envelopes), request_id=REQUEST_ID) for _ in range(3))
    client.delete(keys.QUEUE)  # workers took all three
    client.hset(keys.job(json.loads(finished.body)["headers"]["id"]), "status", "succeeded")
    now = _redis_now(client)
    for message, taken_at in ((old, now - 61), (recent, now - 30), (finished, now - 61)):
        client.hset(keys.UNACKED, message.tag, json.dumps([json.loads(message.body), "", keys.QUEUE]))
        client.zadd(keys.UNACKED_INDEX, {message.tag: taken_at})

    report = sweep.run_once()

    assert report is not None
    assert report.restored == 1
    assert client.llen(keys.QUEUE) == 1
    restored = json.loads(client.lindex(keys.QUEUE, 0) or b"{}")
    assert restored["headers"]["id"] == json.loads(old.body)["headers"]["id"]
    assert restored["headers"]["redelivered"] is True
    assert client.hexists(keys.UNACKED, old.tag) == 0
    assert client.hexists(keys.UNACKED, finished.tag) == 0  # its job is done: cleared, not pushed
    assert client.hexists(keys.UNACKED, recent.tag) == 1


def test_unacknowledged_webhook_messages_go_back_while_their_delivery_is_pending(
    client: redis.Redis, envelopes: TaskEnvelopes, redis_base_url: str
) -> None:
    settings = load_settings(environment({"REDIS_URL": f"{redis_base_url}/9"}))
    hooks = TaskEnvelopes(create_celery(settings), keys.WEBHOOK_TASK_NAME, keys.WEBHOOK_QUEUE)
    pending, delivered = uuid.uuid4().hex, uuid.uuid4().hex
    client.hset(keys.delivery(pending), "status", "pending")
    client.hset(keys.delivery(delivered), "status", "succeeded")
    now = _redis_now(client)
    messages = [hooks.build_another(pending), hooks.build_another(delivered)]
    for message in messages:
        client.hset(keys.UNACKED, message.tag, json.dumps([json.loads(message.body), "", keys.WEBHOOK_QUEUE]))
        client.zadd(keys.UNACKED_INDEX, {message.tag: now - 61})

    report = sweeper(client, envelopes, Clock()).run_once()

    assert report is not None
    assert report.restored == 1
    (restored,) = client.lrange(keys.WEBHOOK_QUEUE, 0, -1)
    assert json.loads(restored)["headers"]["id"] == pending
    assert client.hlen(keys.UNACKED) == 0


# --- the plan ------------------------------------------------------------------------------------


def test_the_plan_for_each_kind_of_overdue_job(client: redis.Redis, envelopes: TaskEnvelopes) -> None:
    job_id = submit(client, envelopes)
    pending = PendingJobs(client, job_ttl=600, check_after=LEASE)
    overdue(client, job_id)
    (queued,) = pending.overdue(10)
    assert queued.job is not None
    running = dataclasses.replace(queued, status="running")
    exhausted = dataclasses.replace(running, job=msgspec.structs.replace(queued.job, attempts=3))

    assert plan(queued, max_attempts=3, may_recover_running=False) == "nudge"
    assert plan(running, max_attempts=3, may_recover_running=False) == "wait"
    assert plan(running, max_attempts=3, may_recover_running=True) == "recover"
    assert plan(exhausted, max_attempts=3, may_recover_running=True) == "fail"
    assert plan(dataclasses.replace(queued, status=None), max_attempts=3, may_recover_running=True) == "forget"


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000
