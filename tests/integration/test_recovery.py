"""Every accepted job ends, whatever crashes: real workers, a real Redis killed and restarted from
its append-only file, the fake Groq answering slowly so that crashes land mid-job.

Each test runs on a Redis of its own (these tests kill it) with the visibility timeout far above
the test's time limits, so that what finishes the jobs is the leases and the recovery sweep, not
kombu's redelivery.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared import keys
from shared.embedded_redis import EmbeddedRedis
from tests.conftest import Stack
from tests.fakes.groq_server import FakeGroq, Reply
from tests.support import ApiServer, Worker, groq_env, new_account, poll_until, wait_for_status

FINAL = {"succeeded", "failed", "canceled"}


@dataclass
class Crashable:
    """An API and workers on a Redis of their own, which tests may kill and restart."""

    redis: EmbeddedRedis
    stack: Stack
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)

    def worker(self) -> Worker:
        worker = Worker(self.stack.env, self.log_dir).start()
        self.workers.append(worker)
        return worker

    def kill_redis(self) -> None:
        assert self.redis.process is not None
        self.redis.process.send_signal(signal.SIGKILL)
        self.redis.process.wait(timeout=10)

    def restart_redis(self) -> None:
        self.redis.start()


@pytest.fixture
def crashable(tmp_path: Path, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Crashable]:
    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    env = groq_env(
        fake_groq.base_url,
        server.url,
        GROQ_TIMEOUT="30",
        VISIBILITY_TIMEOUT="600",
        WORKER_CONCURRENCY="8",
    )
    api = ApiServer(env).start()
    crashable = Crashable(server, Stack(api=api, redis_url=server.url, env=env), log_dir)
    yield crashable
    api.stop()
    for worker in crashable.workers:
        worker.stop()
    server.stop()


@pytest.fixture
async def api(crashable: Crashable) -> AsyncIterator[httpx.AsyncClient]:
    async with crashable.stack.client() as anonymous:
        crashable.stack.account = await new_account(anonymous)
    async with crashable.stack.client() as client:
        yield client


async def submit(api: httpx.AsyncClient, tag: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        trip = {"location": f"Bergen {tag} {n}", "days": 2, "transport": "car", "occasion": "visit"}
        response = await api.post("/api/v1/checklists", json=trip)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


async def all_final(api: httpx.AsyncClient, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    return [await wait_for_status(api, job_id, FINAL, timeout=timeout) for job_id in ids]


def final_events(pubsub: Any, ids: list[str]) -> dict[str, list[str]]:
    finals: dict[str, list[str]] = {job_id: [] for job_id in ids}
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            event = json.loads(message["data"])
            if event["id"] in finals and event["status"] in FINAL:
                finals[event["id"]].append(event["status"])
    return finals


async def test_jobs_of_a_killed_worker_finish_once_on_another_within_seconds(
    crashable: Crashable, api: httpx.AsyncClient, groq: FakeGroq
) -> None:
    events = redis.Redis.from_url(crashable.stack.redis_url).pubsub()  # type: ignore[no-untyped-call]
    events.subscribe(keys.EVENTS_CHANNEL)
    tag = uuid.uuid4().hex[:10]
    groq.script(*[Reply.slow(30.0)] * 4)  # the first worker dies while it waits for these
    first = crashable.worker()
    ids = await submit(api, tag, 4)
    for job_id in ids:
        await poll_until(api, job_id, "running")
    while len(groq.requests_for(tag)) < 4:  # noqa: ASYNC110 - the fake server lives in this process
        await asyncio.sleep(0.01)
    first.kill()

    crashable.worker()
    available = time.monotonic()
    jobs = await all_final(api, ids, timeout=30)
    took = time.monotonic() - available

    assert [job["status"] for job in jobs] == ["succeeded"] * 4, jobs
    assert [job["attempts"] for job in jobs] == [2] * 4  # the killed attempt counts
    assert all(job["error"] is None for job in jobs)
    assert took < 30  # the visibility timeout (600 s) played no part
    assert len(groq.requests_for(tag)) == 8  # one lost call and one answered call per job
    await asyncio.sleep(2)  # past several more sweeps: nothing runs any of them a third time
    assert len(groq.requests_for(tag)) == 8
    assert final_events(events, ids) == {job_id: ["succeeded"] for job_id in ids}
    broker = redis.Redis.from_url(crashable.stack.redis_url)
    assert broker.zcard(keys.PENDING) == 0
    assert broker.llen(keys.QUEUE) == 0


async def test_jobs_running_through_two_redis_restarts_all_finish_and_the_worker_lives_on(
    crashable: Crashable, api: httpx.AsyncClient, groq: FakeGroq
) -> None:
    tag = uuid.uuid4().hex[:10]
    groq.default = Reply.slow(2.0)
    worker = crashable.worker()
    assert worker.process is not None
    ids = await submit(api, tag, 12)  # 8 slots: some run, some wait on the queue
    await poll_until(api, ids[0], "running")

    for _ in range(2):
        crashable.kill_redis()
        await asyncio.sleep(3)  # calls to the fake Groq end meanwhile; their results wait
        assert worker.process.poll() is None
        crashable.restart_redis()
        await asyncio.sleep(1)
        assert worker.process.poll() is None

    jobs = await all_final(api, ids, timeout=60)

    assert [job["status"] for job in jobs] == ["succeeded"] * 12, jobs
    assert worker.process.poll() is None
    log = worker.log_path.read_text()
    assert "Unrecoverable error" not in log
    assert "Restoring" not in log  # kombu's restore on a closed channel is what used to crash


async def test_a_queued_job_whose_message_vanished_is_recovered_by_the_sweep(
    crashable: Crashable, api: httpx.AsyncClient, groq: FakeGroq
) -> None:
    tag = uuid.uuid4().hex[:10]
    (job_id,) = await submit(api, tag, 1)
    broker = redis.Redis.from_url(crashable.stack.redis_url)
    assert broker.delete(keys.QUEUE) == 1  # its message is gone, no worker took it

    crashable.worker()
    job = await wait_for_status(api, job_id, FINAL, timeout=30)

    assert job["status"] == "succeeded"
    assert job["attempts"] == 1
    assert len(groq.requests_for(tag)) == 1


async def test_a_running_job_its_live_worker_lost_track_of_is_recovered(
    crashable: Crashable, api: httpx.AsyncClient, groq: FakeGroq
) -> None:
    """The first finding of issue 6: a job left `running` while its message had been acknowledged."""
    worker = crashable.worker()
    tag = uuid.uuid4().hex[:10]
    broker = redis.Redis.from_url(crashable.stack.redis_url)
    (job_id,) = await submit(api, tag, 1)
    job = await wait_for_status(api, job_id, FINAL, timeout=30)
    assert job["status"] == "succeeded"
    # Put it back to `running` under the live worker, as if its final write had been dropped.
    broker.hset(keys.job(job_id), mapping={"status": "running", "worker": worker.name})
    doc = json.loads(broker.hget(keys.job(job_id), "doc") or b"{}")
    doc.update(status="running", result=None, finished_at=None)
    broker.hset(keys.job(job_id), "doc", json.dumps(doc))
    broker.zadd(keys.PENDING, {job_id: time.time() + 1})

    recovered = await wait_for_status(api, job_id, {"succeeded"}, timeout=30)

    assert recovered["attempts"] == 2
    assert len(groq.requests_for(tag)) == 2
