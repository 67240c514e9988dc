"""The Groq budget is shared by all worker processes: together they stay within it, jobs wait
(countdowns in Redis, visible as `waiting`) rather than calling Groq early, and each reservation
is settled with what the calls really cost and what Groq's headers say is left."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared import keys
from shared.schemas import Usage
from tests.conftest import Stack
from tests.fakes.groq_server import FakeGroq, Reply, ratelimit_headers
from tests.support import ApiServer, Worker, groq_env, new_account, wait_for_status
from worker.budget import GroqBudget
from worker.providers.base import Spend, UpstreamLimits

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


def fresh(redis_base_url: str, **limits: int) -> GroqBudget:
    client = redis.Redis.from_url(f"{redis_base_url}/13")
    client.delete(keys.GROQ_BUDGET)
    return GroqBudget(client, window=60, **limits)


def used(total_tokens: int, calls: int = 1) -> Usage:
    return Usage(
        calls=calls, prompt_tokens=0, completion_tokens=total_tokens, reasoning_tokens=0, total_tokens=total_tokens
    )


def test_a_settled_reservation_counts_the_tokens_the_response_reported(redis_base_url: str) -> None:
    budget = fresh(redis_base_url, requests=0, tokens=10_000, tokens_per_call=4_000)
    first = budget.reserve()

    budget.settle(first, Spend(calls=1, usage=used(1_000)))

    # 1,000 used + two estimates of 4,000 fit in 10,000; without the settlement the second would wait.
    assert [budget.reserve().wait for _ in range(2)] == [0.0, 0.0]
    assert budget.reserve().wait > 0


def test_every_call_of_an_attempt_counts_as_a_request(redis_base_url: str) -> None:
    budget = fresh(redis_base_url, requests=3, tokens=0, tokens_per_call=1)

    budget.settle(budget.reserve(), Spend(calls=3))  # an answer, its repair, a retry with a larger limit

    assert budget.reserve().wait > 0


def test_a_reservation_that_made_no_call_is_given_back(redis_base_url: str) -> None:
    budget = fresh(redis_base_url, requests=1, tokens=0, tokens_per_call=1)

    budget.settle(budget.reserve(), Spend())

    assert budget.reserve().wait == 0


def test_groq_reporting_fewer_tokens_left_holds_calls_back_until_its_reset(redis_base_url: str) -> None:
    budget = fresh(redis_base_url, requests=0, tokens=8_000, tokens_per_call=2_500)
    limits = UpstreamLimits(remaining_tokens=1_000, reset_tokens=20.0)

    booked = budget.settle(budget.reserve(), Spend(calls=1, usage=used(2_500), limits=limits))

    assert booked == 8_000 - 2_500 - 1_000  # what another client of the organisation used meanwhile
    assert 19 < budget.reserve().wait <= 20


def test_groq_reporting_more_tokens_left_changes_nothing(redis_base_url: str) -> None:
    budget = fresh(redis_base_url, requests=0, tokens=8_000, tokens_per_call=2_500)
    limits = UpstreamLimits(remaining_tokens=7_900, reset_tokens=1.0)

    assert budget.settle(budget.reserve(), Spend(calls=1, usage=used(100), limits=limits)) == 0
    assert budget.reserve().wait == 0


def test_groq_reporting_no_requests_left_today_holds_calls_back(redis_base_url: str) -> None:
    budget = fresh(redis_base_url, requests=30, tokens=0, tokens_per_call=1)
    limits = UpstreamLimits(remaining_requests=0, reset_requests=120.0)

    budget.settle(budget.reserve(), Spend(calls=1, limits=limits))

    assert budget.reserve().wait > 50


@pytest.fixture
def tight_budget_stack(redis_base_url: str, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Stack]:
    """One call per 4 s, and a legacy endpoint that waits 1 s."""
    url = f"{redis_base_url}/14"
    env = groq_env(fake_groq.base_url, url, GROQ_RPM="1", GROQ_TPM="0", GROQ_BUDGET_WINDOW="4", LEGACY_WAIT="1")
    worker = Worker(env, log_dir).start()
    api = ApiServer(env).start()
    yield Stack(api=api, redis_url=url, env=env)
    api.stop()
    worker.stop()


async def test_a_job_waiting_for_the_budget_shows_it_to_pollers_and_legacy_clients(
    tight_budget_stack: Stack, groq: FakeGroq
) -> None:
    tag = uuid.uuid4().hex[:10]
    trip = {"location": f"Bergen {tag}", "days": 2, "transport": "car", "occasion": "visit"}
    async with tight_budget_stack.client() as anonymous:
        account = await new_account(anonymous)
    async with tight_budget_stack.client(account) as api:
        first = (await api.post("/api/v1/checklists", json=trip)).json()["id"]
        await wait_for_status(api, first, {"succeeded"})  # the window's one call is spent

        legacy = await api.post("/api/v1/generate-checklist", json={"trip_data": trip})
        body = legacy.json()
        polled = (await api.get(f"/api/v1/checklists/{body['id']}")).json()
        done = await wait_for_status(api, body["id"], {"succeeded", "failed"})

    assert legacy.status_code == 202, legacy.text
    assert body["status"] == "queued"
    assert body["waiting"]["reason"] == "upstream_budget"
    until = datetime.fromisoformat(body["waiting"]["until"])
    assert datetime.fromisoformat(body["created_at"]) < until
    assert polled["status"] == "queued"
    assert polled["waiting"] == body["waiting"]
    assert polled["attempts"] == 0  # waiting costs no attempt
    assert done["status"] == "succeeded"
    assert done["waiting"] is None
    _first_call, second_call = sorted(request.at for request in groq.requests_for(tag))
    assert second_call >= until.timestamp() - 0.2  # not called before the time the job said


@pytest.fixture
def token_budget_stack(redis_base_url: str, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Stack]:
    """Plenty of tokens by our own count (8,000 a minute, 100 estimated per call)."""
    url = f"{redis_base_url}/15"
    env = groq_env(fake_groq.base_url, url, GROQ_RPM="0", GROQ_TPM="8000", GROQ_TOKENS_PER_CALL="100")
    worker = Worker(env, log_dir).start()
    api = ApiServer(env).start()
    yield Stack(api=api, redis_url=url, env=env)
    api.stop()
    worker.stop()


async def test_groqs_headers_saying_no_tokens_are_left_make_the_next_job_wait(
    token_budget_stack: Stack, groq: FakeGroq
) -> None:
    tag = uuid.uuid4().hex[:10]
    trip = {"location": f"Bergen {tag}", "days": 2, "transport": "car", "occasion": "visit"}
    groq.script(Reply.ok(headers=ratelimit_headers(remaining_tokens=0, reset_tokens="3s")))
    async with token_budget_stack.client() as anonymous:
        account = await new_account(anonymous)
    async with token_budget_stack.client(account) as api:
        first = (await api.post("/api/v1/checklists", json=trip)).json()["id"]
        await wait_for_status(api, first, {"succeeded"})
        second = (await api.post("/api/v1/checklists", json=trip)).json()["id"]
        seen: dict[str, Any] = {}
        while not seen.get("waiting") and seen.get("status") != "succeeded":
            await asyncio.sleep(0.05)
            seen = (await api.get(f"/api/v1/checklists/{second}")).json()
        done = await wait_for_status(api, second, {"succeeded", "failed"})

    assert seen["waiting"]["reason"] == "upstream_budget"
    assert done["status"] == "succeeded"
    first_call, second_call = sorted(request.at for request in groq.requests_for(tag))
    assert second_call - first_call >= 2.5  # held back until Groq's tokens reset, though ours were left
