"""A Redis that is up but refuses writes (out of memory, a read-only replica) makes the API answer
503 dependency_unavailable with Retry-After, never a 500.

Each case runs on its own redis-server, in both builds the project meets: Redis 7 (Debian's) and
Redis 6 (the embedded one), which report an error raised inside a script differently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from shared.embedded_redis import free_port
from tests.redis_servers import TestRedis, debian_redis_server, embedded_redis_server
from tests.support import ApiServer, new_account

TRIP = {"location": "Tallinn, Estonia", "days": 2, "transport": "train", "occasion": "city break"}


def out_of_memory(client: redis.Redis) -> None:
    client.config_set("maxmemory", 1)  # with noeviction: every write is refused with OOM


def read_only_replica(client: redis.Redis) -> None:
    client.replicaof("127.0.0.1", free_port())  # a primary that is not there: the data stays, writes go


REFUSALS: dict[str, Callable[[redis.Redis], None]] = {"OOM": out_of_memory, "READONLY": read_only_replica}
BUILDS: dict[str, Callable[[], str]] = {"redis-7": debian_redis_server, "redis-6": embedded_redis_server}


@pytest.fixture(params=sorted(BUILDS))
def own_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestRedis, ApiServer]]:
    binary = BUILDS[request.param]()
    with TestRedis(tmp_path / "redis", "--maxmemory-policy", "noeviction", binary=binary) as server:
        api = ApiServer({"REDIS_URL": server.url}).start()
        try:
            yield server, api
        finally:
            api.stop()


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_a_submit_redis_refuses_to_store_answers_503(own_api: tuple[TestRedis, ApiServer], refusal: str) -> None:
    server, api = own_api
    async with httpx.AsyncClient(base_url=api.base_url, timeout=20.0) as client:
        account = await new_account(client)
        admin = server.client()
        REFUSALS[refusal](admin)
        try:
            response = await client.post("/api/v1/checklists", json=TRIP, headers=account.headers)
        finally:
            admin.close()

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "dependency_unavailable"
    # From the job store's write: the rate limiter, refused too, lets general quotas through.
    assert problem["detail"] == "The service's data store is unavailable; try again shortly."
    assert int(response.headers["retry-after"]) > 0
