"""The Groq budget is shared by all worker processes: together they stay within it, and jobs
wait (Celery countdowns) rather than calling Groq early."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import Stack
from tests.fakes.groq_server import FakeGroq
from tests.support import ApiServer, Worker, groq_env, new_account, wait_for_status
from worker.budget import GroqBudget

WINDOW = 3.0
PER_WINDOW = 3


@pytest.fixture
def budget_stack(redis_base_url: str, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Stack]:
    url = f"{redis_base_url}/13"
    env = groq_env(fake_groq.base_url, url, GROQ_RPM=str(PER_WINDOW), GROQ_TPM="0", GROQ_BUDGET_WINDOW=str(WINDOW))
    workers = [Worker(env, log_dir).start() for _ in range(3)]
    api = ApiServer(env).start()
    yield Stack(api=api, redis_url=url, env=env)
    api.stop()
    for worker in workers:
        worker.stop()


async def test_several_workers_together_stay_within_the_budget(budget_stack: Stack, groq: FakeGroq) -> None:
    tag = uuid.uuid4().hex[:10]
    async with budget_stack.client() as anonymous:
        account = await new_account(anonymous)
    async with budget_stack.client(account) as api:
        ids = [
            (await api.post("/api/v1/checklists", json={
                "location": f"Bergen {tag}", "days": 2, "transport": "car", "occasion": f"trip {n}",
            })).json()["id"]
            for n in range(9)
        ]  # fmt: skip
        jobs = [await wait_for_status(api, job_id, {"succeeded", "failed"}, timeout=60) for job_id in ids]

    assert {job["status"] for job in jobs} == {"succeeded"}
    assert {job["attempts"] for job in jobs} == {1}  # waiting for budget costs no attempt
    times = sorted(request.at for request in groq.requests_for(tag))
    assert len(times) == 9
    # Calls are reserved on Redis's clock and seen here a little later; 0.3 s covers that delay's spread.
    busiest = max(sum(1 for t in times if start <= t < start + WINDOW - 0.3) for start in times)
    assert busiest <= PER_WINDOW
    assert times[-1] - times[0] >= 2 * WINDOW * 0.9  # nine calls at three per window span two windows


def test_the_token_budget_holds_calls_back_until_tokens_leave_the_window(redis_base_url: str) -> None:
    client = redis.Redis.from_url(f"{redis_base_url}/13")
    client.flushdb()
    budget = GroqBudget(client, requests=0, tokens=10_000, tokens_per_call=4_000, window=30)

    decisions = [budget.reserve().wait for _ in range(3)]

    assert decisions[:2] == [0.0, 0.0]
    assert 29 < decisions[2] <= 30


def test_a_disabled_budget_never_waits(redis_base_url: str) -> None:
    budget = GroqBudget(redis.Redis.from_url(f"{redis_base_url}/13"), requests=0, tokens=0, tokens_per_call=1)

    assert [budget.reserve().wait for _ in range(100)] == [0.0] * 100


async def test_readiness_counts_every_worker_process(budget_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=budget_stack.api.base_url) as client:
        assert (await client.get("/health/ready")).json()["workers_alive"] == 3
