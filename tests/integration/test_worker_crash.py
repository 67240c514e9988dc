"""A worker killed with SIGKILL mid-job: after a new worker starts, the job completes exactly once.

The killed worker never acknowledged the message (acks_late), so it sits in the broker's unacked
set; once the visibility timeout passes, the new worker restores and runs it. The job store's
compare-and-set makes the final write happen once, whatever runs twice.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared import keys
from tests.conftest import Stack
from tests.fakes.groq_server import FakeGroq, Reply
from tests.support import ApiServer, Worker, groq_env, new_account, poll_until, wait_for_status


@pytest.fixture
def crash_stack(redis_base_url: str, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Stack]:
    url = f"{redis_base_url}/6"
    # A short visibility timeout, so the test need not wait long for redelivery.
    env = groq_env(fake_groq.base_url, url, GROQ_TIMEOUT="30", VISIBILITY_TIMEOUT="3", LLM_BACKOFF_CAP="1")
    api = ApiServer(env).start()
    stack = Stack(api=api, redis_url=url, env=env)
    yield stack
    api.stop()
    if stack.worker is not None:
        stack.worker.stop()


async def test_job_of_a_killed_worker_completes_exactly_once_on_a_new_worker(
    crash_stack: Stack, groq: FakeGroq, log_dir: Path
) -> None:
    events = redis.Redis.from_url(crash_stack.redis_url).pubsub()  # type: ignore[no-untyped-call]
    events.subscribe(keys.EVENTS_CHANNEL)
    tag = uuid.uuid4().hex[:10]
    groq.script(Reply.slow(15.0))  # the first worker is killed while it waits for this answer
    first = Worker(crash_stack.env, log_dir).start()

    async with crash_stack.client() as anonymous:
        crash_stack.account = await new_account(anonymous)
    async with crash_stack.client() as api:
        job_id = (await api.post("/api/v1/checklists", json={
            "location": f"Bergen {tag}", "days": 2, "transport": "car", "occasion": "visit",
        })).json()["id"]  # fmt: skip
        await poll_until(api, job_id, "running")
        while not groq.requests_for(tag):  # noqa: ASYNC110 - the fake server lives in this process
            await asyncio.sleep(0.01)
        first.kill()

        crash_stack.worker = Worker(crash_stack.env, log_dir).start()
        job = await wait_for_status(api, job_id, {"succeeded", "failed"}, timeout=40)
        await asyncio.sleep(4)  # past another visibility timeout: nothing runs it a third time
        after = (await api.get(f"/api/v1/checklists/{job_id}")).json()

    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2  # the killed attempt counts
    assert after == job
    assert len(groq.requests_for(tag)) == 2
    finals = []
    while (message := events.get_message(timeout=0.2)) is not None:
        if message["type"] != "message":
            continue
        event = json.loads(message["data"])
        if event["id"] == job_id and event["status"] in ("succeeded", "failed", "canceled"):
            finals.append(event["status"])
    assert finals == ["succeeded"]
    broker = redis.Redis.from_url(crash_stack.redis_url)
    assert broker.hlen("unacked") == 0
    assert broker.llen(keys.QUEUE) == 0
