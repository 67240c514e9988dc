"""The quota check inside the request's own Redis script (`api.limits.QuotaGuard`): it decides as
`limits`' own sliding-window limiter does on the same keys, a refused submission leaves no trace,
and clients see the same answers (429s, RateLimit-* headers, replays) as with a separate check."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version

import httpx
import pytest
import redis
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from api.limits import MultiplexedRedisStorage, Quota, RateLimiter, quota
from shared import job_scripts, keys
from shared.errors import RateLimited
from shared.redis_mux import MultiplexedRedis
from tests.support import Account, ApiServer, new_account

TRIP = {"location": "Oslo", "days": 2, "transport": "train", "occasion": "visit"}
DB = 11


def test_limits_is_the_version_whose_private_layout_api_limits_relies_on() -> None:
    # api/limits.py runs limits' Lua scripts inside its own and names limits' window keys itself:
    # a new version must be checked against it (and the test below) before this pin moves.
    assert version("limits") == "5.8.0"


@pytest.fixture
async def limiters(redis_base_url: str) -> AsyncIterator[tuple[RateLimiter, SlidingWindowCounterRateLimiter]]:
    """Ours (merged script, on the multiplexed link) and limits' own, on the same Redis and keys."""
    url = f"{redis_base_url}/{DB}"
    redis.Redis.from_url(url).flushdb()
    link = MultiplexedRedis(url)
    own = RedisStorage(
        url.replace("redis://", "async+redis://"), implementation="redispy", key_prefix=keys.LIMITS_PREFIX
    )
    yield RateLimiter(MultiplexedRedisStorage(link)), SlidingWindowCounterRateLimiter(own)
    await link.close()
    await own.bridge.storage.aclose()  # type: ignore[attr-defined]  # limits' redis-py client


async def test_the_merged_check_refuses_exactly_where_limits_own_limiter_does(
    limiters: tuple[RateLimiter, SlidingWindowCounterRateLimiter],
) -> None:
    ours, theirs = limiters
    item = quota(5, 30)
    q = Quota("submit", item, f"user-{uuid.uuid4().hex}")
    job = [keys.job(uuid.uuid4().hex)]

    async def ours_allows() -> bool:
        guard = ours.guard(q, fail_open=False)
        try:
            await guard.run_script(job_scripts.READ, job, [])
        except RateLimited:
            return False
        assert guard.decision is not None
        stats = await theirs.get_window_stats(item, q.name, q.key)
        assert guard.decision.remaining == stats.remaining  # the headers tell what limits sees
        return True

    # Both spend from one budget, in turn: three of ours, two of limits', then both refuse.
    assert [await ours_allows() for _ in range(3)] == [True] * 3
    assert [await theirs.hit(item, q.name, q.key) for _ in range(2)] == [True, True]
    assert not await theirs.test(item, q.name, q.key)
    assert not await ours_allows()
    assert not await theirs.hit(item, q.name, q.key)
    assert (await theirs.get_window_stats(item, q.name, q.key)).remaining == 0


async def test_a_refused_guarded_script_does_not_run(
    limiters: tuple[RateLimiter, SlidingWindowCounterRateLimiter], redis_base_url: str
) -> None:
    ours, theirs = limiters
    q = Quota("poll", quota(1, 30), f"user-{uuid.uuid4().hex}")
    assert await theirs.hit(q.item, q.name, q.key)
    queue_before = redis.Redis.from_url(f"{redis_base_url}/{DB}").llen(keys.QUEUE)
    guard = ours.guard(q, fail_open=True)

    with pytest.raises(RateLimited) as refused:
        await guard.run_script(job_scripts.READ, [keys.job(uuid.uuid4().hex)], [])

    assert refused.value.retry_after is not None
    assert 1 <= refused.value.retry_after <= 30
    assert refused.value.headers == {"RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"}
    assert guard.decision is None
    assert redis.Redis.from_url(f"{redis_base_url}/{DB}").llen(keys.QUEUE) == queue_before


# --- through the API -----------------------------------------------------------------------------


@pytest.fixture
def api(redis_base_url: str) -> Iterator[tuple[ApiServer, redis.Redis]]:
    url = f"{redis_base_url}/{DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    server = ApiServer(
        {
            "REDIS_URL": url,
            "SUBMIT_RATE_LIMIT_REQUESTS": "2",
            "SUBMIT_RATE_LIMIT_WINDOW": "30",
            "POLL_RATE_LIMIT_REQUESTS": "3",
            "RATE_LIMIT_WINDOW": "30",
            "AUTH_RATE_LIMIT_REQUESTS": "1000",
        }
    ).start()
    yield server, client
    server.stop()


@pytest.fixture
async def account(api: tuple[ApiServer, redis.Redis]) -> Account:
    async with httpx.AsyncClient(base_url=api[0].base_url) as client:
        return await new_account(client)


def stored(client: redis.Redis) -> tuple[int, int, int]:
    """Task messages queued, job hashes, idempotency keys."""
    jobs = sum(1 for key in client.scan_iter(keys.job("*")) if client.type(key) == b"hash")
    return client.llen(keys.QUEUE), jobs, sum(1 for _ in client.scan_iter(keys.idempotency("*", "*")))


async def test_a_refused_submission_stores_nothing_and_enqueues_nothing(
    api: tuple[ApiServer, redis.Redis], account: Account
) -> None:
    server, client = api
    async with httpx.AsyncClient(base_url=server.base_url, headers=account.headers) as http:
        accepted = [await http.post("/api/v1/checklists", json=TRIP) for _ in range(2)]
        before = stored(client)
        refused = await http.post("/api/v1/checklists", json=TRIP, headers={"Idempotency-Key": "third"})

    assert [r.status_code for r in accepted] == [202, 202]
    assert [r.headers["ratelimit-remaining"] for r in accepted] == ["1", "0"]
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["ratelimit-limit"] == "2"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert "location" not in refused.headers
    assert stored(client) == before


async def test_an_idempotent_replay_spends_a_unit_and_is_refused_once_the_budget_is_gone(
    api: tuple[ApiServer, redis.Redis], account: Account
) -> None:
    server, _ = api
    async with httpx.AsyncClient(base_url=server.base_url, headers=account.headers) as http:
        key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
        first = await http.post("/api/v1/checklists", json=TRIP, headers=key)
        replay = await http.post("/api/v1/checklists", json=TRIP, headers=key)
        third = await http.post("/api/v1/checklists", json=TRIP, headers=key)

    assert (first.status_code, replay.status_code, third.status_code) == (202, 202, 429)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert replay.headers["ratelimit-remaining"] == "0"


async def test_a_request_refused_before_its_script_still_spends_and_an_exhausted_client_gets_429(
    api: tuple[ApiServer, redis.Redis], account: Account
) -> None:
    server, _ = api
    async with httpx.AsyncClient(base_url=server.base_url, headers=account.headers) as http:
        invalid = await http.post("/api/v1/checklists", json={**TRIP, "days": 0})
        valid = await http.post("/api/v1/checklists", json=TRIP)
        invalid_again = await http.post("/api/v1/checklists", json={**TRIP, "days": 0})

    assert invalid.status_code == 422
    assert invalid.headers["ratelimit-remaining"] == "1"
    assert valid.status_code == 202
    assert valid.headers["ratelimit-remaining"] == "0"
    assert invalid_again.status_code == 429  # over the quota, whatever else is wrong with it


async def test_polls_spend_their_budget_in_the_read_and_answer_with_its_headers(
    api: tuple[ApiServer, redis.Redis], account: Account
) -> None:
    server, _ = api
    async with httpx.AsyncClient(base_url=server.base_url, headers=account.headers) as http:
        job_id = (await http.post("/api/v1/checklists", json=TRIP)).json()["id"]
        reads = [await http.get(f"/api/v1/checklists/{job_id}") for _ in range(2)]
        unknown = await http.get(f"/api/v1/checklists/{'0' * 32}")
        refused = await http.get(f"/api/v1/checklists/{job_id}")

    assert [r.status_code for r in reads] == [200, 200]
    assert [r.json()["id"] for r in reads] == [job_id, job_id]
    assert [r.headers["ratelimit-remaining"] for r in reads] == ["2", "1"]
    assert {r.headers["ratelimit-limit"] for r in reads} == {"3"}
    assert unknown.status_code == 404
    assert unknown.headers["ratelimit-remaining"] == "0"
    assert refused.status_code == 429
    assert refused.headers["ratelimit-limit"] == "3"
