"""`api.fastpath` answers submit and poll as Litestar's routes do: the same requests, good and bad,
sent to an app with the fast path and to one without, over real HTTP, get the same answers
(status, headers, body, up to ids and times), and the fast path really answers the plain ones."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from api.fastpath import FastPath
from api.observability import Observed
from tests.support import ApiServer, new_account

DB = 6
TRIP = {"location": "Lisbon, Portugal", "days": 4, "transport": "plane", "occasion": "city break"}
#: Headers whose values differ between two answers for reasons of their own (ids, clocks).
VOLATILE_HEADERS = {"x-request-id", "location", "ratelimit-reset", "retry-after", "content-length", "date"}
_ID = re.compile(r"[0-9a-f]{32}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)?")


@pytest.fixture(scope="module")
def servers(redis_base_url: str) -> Iterator[dict[str, ApiServer]]:
    url = f"{redis_base_url}/{DB}"
    redis.Redis.from_url(url).flushdb()
    env = {
        "REDIS_URL": url,
        "SUBMIT_RATE_LIMIT_REQUESTS": "6",
        "SUBMIT_RATE_LIMIT_WINDOW": "60",
        "POLL_RATE_LIMIT_REQUESTS": "6",
        "RATE_LIMIT_WINDOW": "60",
        "AUTH_RATE_LIMIT_REQUESTS": "1000",
        "MAX_BODY_BYTES": "2048",
    }
    started = {"fast": ApiServer(env).start(), "litestar": ApiServer(env, fast_path=False).start()}
    yield started
    for server in started.values():
        server.stop()


def fast_path_of(server: ApiServer) -> FastPath:
    observed = server.app.asgi_handler
    assert isinstance(observed, Observed)
    assert isinstance(observed.app, FastPath)
    return observed.app


def scrub(text: str) -> str:
    return _TIME.sub("<time>", _ID.sub("<id>", text))


def answer(response: httpx.Response) -> dict[str, Any]:
    """What a client sees, with ids and times replaced."""
    try:
        body: Any = json.loads(scrub(response.text))
    except json.JSONDecodeError:
        body = scrub(response.text)
    headers = {name: value for name, value in response.headers.items() if name not in VOLATILE_HEADERS}
    return {
        "status": response.status_code,
        "headers": headers,
        "header names": sorted(response.headers.keys()),
        "body": body,
    }


async def scenario(server: ApiServer) -> list[dict[str, Any]]:
    """Every case of the two paths, in an order that ends each budget, for a new account."""
    answers = []
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        account, other = await new_account(http), await new_account(http)
        auth = account.headers

        async def record(response: httpx.Response) -> httpx.Response:
            answers.append(answer(response))
            return response

        url = "/api/v1/checklists"
        # Submissions: refused before any quota is spent, then bad bodies (which spend it), then
        # accepted, replayed, conflicting, and over the budget.
        await record(await http.post(url, json=TRIP))
        await record(await http.post(url, json=TRIP, headers={"Authorization": "Bearer not-a-token"}))
        await record(await http.post(url, json=TRIP, headers={"X-API-Key": "tck_unknown"}))
        await record(await http.post(url, content=b'{"location": "Oslo",', headers=auth))
        await record(await http.post(url, content=b"\xff\xfe{}", headers={**auth, "Content-Type": "application/json"}))
        await record(await http.post(url, content=b"location=Oslo", headers={**auth, "Content-Type": "text/plain"}))
        accepted = await record(
            await http.post(url, json=TRIP, headers={**auth, "Idempotency-Key": "trip-1", "X-Request-ID": "abc-1"})
        )
        await record(await http.post(url, json=TRIP, headers={**auth, "Idempotency-Key": "trip-1"}))
        await record(await http.post(url, json={**TRIP, "days": 5}, headers={**auth, "Idempotency-Key": "trip-1"}))
        await record(await http.post(url, json=TRIP, headers=auth))  # over the budget of 6
        await record(await http.post(url, content=b"x" * 4096, headers={**auth, "Content-Type": "application/json"}))
        job = accepted.json()["id"]
        other_job = (await http.post(url, json={**TRIP, "days": 1}, headers=other.headers)).json()["id"]
        # Polls and long-polls: not signed in, the job, unknown and malformed ids, someone else's
        # job, a wait that runs out on the queued job, over the budget.
        await record(await http.get(f"{url}/{job}"))
        await record(await http.get(f"{url}/{job}?wait=0.1"))
        await record(await http.get(f"{url}/{job}", headers=auth))
        await record(await http.get(f"{url}/{uuid.uuid4().hex}", headers=auth))
        await record(await http.get(f"{url}/not-an-id?wait=0.1", headers=auth))
        await record(await http.get(f"{url}/{other_job}?wait=0.1", headers=auth))
        await record(await http.get(f"{url}/{job}?wait=0.2", headers=auth))
        await record(await http.get(f"{url}/{uuid.uuid4().hex}?wait=0.1", headers=auth))
        await record(await http.get(f"{url}/{job}?wait=0.1", headers=auth))  # the 7th poll: over the budget of 6
    return answers


async def test_the_fast_path_answers_as_litestars_routes_do(servers: dict[str, ApiServer]) -> None:
    fast, litestar = servers["fast"], servers["litestar"]
    before = fast_path_of(fast).answered
    expected = await scenario(litestar)
    seen = await scenario(fast)

    assert [a["status"] for a in expected] == [
        *(401, 401, 401, 400, 400, 415, 202, 202, 409, 429, 429),
        *(401, 401, 200, 404, 404, 404, 200, 404, 429),
    ]
    for case, (want, got) in enumerate(zip(expected, seen, strict=True)):
        assert got == want, f"case {case}"
    # Every one of them went through the fast path (with the other account's submission).
    assert fast_path_of(fast).answered - before == len(seen) + 1


async def test_what_the_fast_path_leaves_to_litestar_still_works(servers: dict[str, ApiServer]) -> None:
    server = servers["fast"]
    fast = fast_path_of(server)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        account = await new_account(http)
        job = (await http.post("/api/v1/checklists", json=TRIP, headers=account.headers)).json()["id"]
        before = fast.answered
        # Queries the fast path leaves to Litestar (it takes only `wait=` and a plain number within
        # MAX_WAIT): a repeated parameter, a number Litestar refuses, above MAX_WAIT, not a number.
        long_poll = await http.get(f"/api/v1/checklists/{job}?wait=0.1&wait=0.2", headers=account.headers)
        dotted = await http.get(f"/api/v1/checklists/{job}?wait=.1", headers=account.headers)
        too_long = await http.get(f"/api/v1/checklists/{job}?wait=31", headers=account.headers)
        not_a_number = await http.get(f"/api/v1/checklists/{job}?wait=soon", headers=account.headers)
        head = await http.head(f"/api/v1/checklists/{job}", headers=account.headers)
        trailing = await http.get(f"/api/v1/checklists/{job}/", headers=account.headers)
        listing = await http.get("/api/v1/checklists", headers=account.headers)
        cross_origin = await http.get(
            f"/api/v1/checklists/{job}", headers={**account.headers, "Origin": "https://elsewhere.example"}
        )

    assert long_poll.status_code == 200
    assert long_poll.json()["id"] == job
    assert dotted.status_code == 400
    assert too_long.status_code == 422
    assert too_long.json()["code"] == "invalid_request"
    assert not_a_number.status_code == 400
    assert head.status_code in (200, 405)
    assert trailing.status_code == 200
    assert trailing.json()["id"] == job
    assert listing.status_code == 200
    assert listing.json()["items"][0]["id"] == job
    assert cross_origin.status_code == 200
    assert fast.answered == before
