"""The job endpoints' contract, on a stack with no worker (jobs stay queued): idempotency, cancel,
delete, listing, owner scoping, and every kind of bad input answered as problem+json."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import msgspec
import pytest
import redis

from shared import keys, lifecycle
from shared.clock import utcnow
from shared.jobs import SyncJobStore
from tests.conftest import Stack

TRIP: dict[str, Any] = {"location": "Kyoto", "days": 5, "transport": "plane", "occasion": "holiday"}


async def submit(
    api: httpx.AsyncClient, body: dict[str, Any] | None = None, *, key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await api.post("/api/v1/checklists", json=body or TRIP, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert "Traceback" not in response.text
    return problem


# --- submit, idempotency -------------------------------------------------------------------------


async def test_submit_stores_the_job_and_enqueues_exactly_one_task_message(
    idle_api: httpx.AsyncClient, idle_stack: Stack
) -> None:
    client = redis.Redis.from_url(idle_stack.redis_url)
    before = client.llen(keys.QUEUE)

    job_id = (await submit(idle_api)).json()["id"]

    assert client.llen(keys.QUEUE) == before + 1
    envelope = msgspec.json.decode(client.lindex(keys.QUEUE, 0) or b"null")
    assert envelope["headers"]["task"] == keys.TASK_NAME
    assert envelope["headers"]["id"] == job_id
    job = (await idle_api.get(f"/api/v1/checklists/{job_id}")).json()
    assert job["status"] == "queued"
    assert job["attempts"] == 0
    assert job["request"] == TRIP


async def test_same_idempotency_key_and_body_returns_the_same_job(idle_api: httpx.AsyncClient) -> None:
    key = f"order-{uuid.uuid4()}"

    first = await submit(idle_api, key=key)
    second = await submit(idle_api, key=key)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"


async def test_idempotency_treats_insignificant_whitespace_as_the_same_body(idle_api: httpx.AsyncClient) -> None:
    key = f"order-{uuid.uuid4()}"

    first = await submit(idle_api, TRIP, key=key)
    second = await submit(idle_api, TRIP | {"location": "  Kyoto "}, key=key)

    assert first.json()["id"] == second.json()["id"]


async def test_same_idempotency_key_with_a_different_body_is_a_409(idle_api: httpx.AsyncClient) -> None:
    key = f"order-{uuid.uuid4()}"
    await submit(idle_api, key=key)

    response = await submit(idle_api, TRIP | {"days": 6}, key=key)

    assert_problem(response, 409, "idempotency_key_reused")


async def test_different_idempotency_keys_make_different_jobs(idle_api: httpx.AsyncClient) -> None:
    first = await submit(idle_api, key=f"a-{uuid.uuid4()}")
    second = await submit(idle_api, key=f"b-{uuid.uuid4()}")

    assert first.json()["id"] != second.json()["id"]


async def test_overlong_idempotency_key_is_rejected(idle_api: httpx.AsyncClient) -> None:
    response = await submit(idle_api, key="k" * 256)

    assert assert_problem(response, 422, "invalid_request")["field"] == "Idempotency-Key"


# --- read, cancel, delete ------------------------------------------------------------------------


async def test_unknown_and_malformed_job_ids_are_404(idle_api: httpx.AsyncClient) -> None:
    assert_problem(await idle_api.get(f"/api/v1/checklists/{uuid.uuid4().hex}"), 404, "not_found")
    assert_problem(await idle_api.get("/api/v1/checklists/not-an-id"), 404, "not_found")


async def test_wait_above_the_limit_is_rejected(idle_api: httpx.AsyncClient) -> None:
    job_id = (await submit(idle_api)).json()["id"]

    response = await idle_api.get(f"/api/v1/checklists/{job_id}", params={"wait": 31})

    assert_problem(response, 422, "invalid_request")


async def test_non_numeric_wait_is_a_400(idle_api: httpx.AsyncClient) -> None:
    job_id = (await submit(idle_api)).json()["id"]

    response = await idle_api.get(f"/api/v1/checklists/{job_id}", params={"wait": "soon"})

    assert_problem(response, 400, "invalid_parameter")


async def test_cancel_moves_a_queued_job_to_canceled(idle_api: httpx.AsyncClient) -> None:
    job_id = (await submit(idle_api)).json()["id"]

    response = await idle_api.post(f"/api/v1/checklists/{job_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert response.json()["finished_at"] is not None
    assert (await idle_api.get(f"/api/v1/checklists/{job_id}")).json()["status"] == "canceled"


async def test_canceling_a_finished_job_is_a_409(idle_api: httpx.AsyncClient) -> None:
    job_id = (await submit(idle_api)).json()["id"]
    await idle_api.post(f"/api/v1/checklists/{job_id}/cancel")

    response = await idle_api.post(f"/api/v1/checklists/{job_id}/cancel")

    assert_problem(response, 409, "job_not_cancelable")


async def test_long_poll_on_a_canceled_job_returns_at_once(idle_api: httpx.AsyncClient) -> None:
    job_id = (await submit(idle_api)).json()["id"]
    await idle_api.post(f"/api/v1/checklists/{job_id}/cancel")

    response = await idle_api.get(f"/api/v1/checklists/{job_id}", params={"wait": 30}, timeout=5)

    assert response.json()["status"] == "canceled"


async def test_a_long_poll_whose_wait_runs_out_answers_the_job_as_it_stands_then(
    idle_api: httpx.AsyncClient, idle_stack: Stack
) -> None:
    """The job started during the wait (an event, not a final one): the answer is `running`, not the
    `queued` job the long-poll read when it began."""
    job_id = (await submit(idle_api)).json()["id"]
    polling = asyncio.create_task(idle_api.get(f"/api/v1/checklists/{job_id}", params={"wait": 1.5}))
    await asyncio.sleep(0.5)
    store = SyncJobStore(redis.Redis.from_url(idle_stack.redis_url), job_ttl=600)
    stored = store.get(job_id)
    assert stored is not None
    assert stored.job.status == "queued"
    store.start(stored, lifecycle.start_attempt(stored.job, utcnow()), worker="test-worker", lease=30)

    response = await polling

    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert (await idle_api.post(f"/api/v1/checklists/{job_id}/cancel")).json()["status"] == "canceled"


async def test_a_long_poll_on_a_job_nothing_happens_to_answers_it_unchanged(idle_api: httpx.AsyncClient) -> None:
    accepted = (await submit(idle_api)).json()
    before = (await idle_api.get(f"/api/v1/checklists/{accepted['id']}")).json()

    response = await idle_api.get(f"/api/v1/checklists/{accepted['id']}", params={"wait": 0.3})

    assert response.status_code == 200
    assert response.json() == before


async def test_delete_removes_the_job_its_index_entry_and_its_idempotency_key(
    idle_api: httpx.AsyncClient, idle_stack: Stack
) -> None:
    key = f"order-{uuid.uuid4()}"
    job_id = (await submit(idle_api, key=key)).json()["id"]

    response = await idle_api.delete(f"/api/v1/checklists/{job_id}")

    assert response.status_code == 204
    assert_problem(await idle_api.get(f"/api/v1/checklists/{job_id}"), 404, "not_found")
    client = redis.Redis.from_url(idle_stack.redis_url)
    assert not client.exists(keys.job(job_id))
    assert not client.exists(keys.job_events(job_id))
    assert client.zscore(keys.PENDING, job_id) is None
    assert idle_stack.account is not None
    owner = idle_stack.account.user_id
    assert not client.exists(keys.idempotency(owner, key))
    members = client.zrange(keys.owner_index(owner), 0, -1)
    assert not any(job_id.encode() in member for member in members)
    # The key is free again: the same request now makes a new job.
    assert (await submit(idle_api, key=key)).json()["id"] != job_id


async def test_deleting_twice_is_a_404(idle_api: httpx.AsyncClient) -> None:
    job_id = (await submit(idle_api)).json()["id"]
    await idle_api.delete(f"/api/v1/checklists/{job_id}")

    assert_problem(await idle_api.delete(f"/api/v1/checklists/{job_id}"), 404, "not_found")


async def test_a_job_of_another_owner_is_indistinguishable_from_a_missing_one(
    idle_api: httpx.AsyncClient, idle_stack: Stack
) -> None:
    job_id = (await submit(idle_api)).json()["id"]
    client = redis.Redis.from_url(idle_stack.redis_url)
    client.hset(keys.job(job_id), "owner", "someone-else")

    for response in (
        await idle_api.get(f"/api/v1/checklists/{job_id}"),
        await idle_api.post(f"/api/v1/checklists/{job_id}/cancel"),
        await idle_api.delete(f"/api/v1/checklists/{job_id}"),
    ):
        assert_problem(response, 404, "not_found")
    assert client.exists(keys.job(job_id))


# --- listing -------------------------------------------------------------------------------------


async def test_list_pages_through_jobs_newest_first_with_a_cursor(idle_api: httpx.AsyncClient) -> None:
    ids = [(await submit(idle_api, TRIP | {"occasion": f"page test {n}"})).json()["id"] for n in range(5)]

    first = (await idle_api.get("/api/v1/checklists", params={"limit": 3})).json()
    second = (await idle_api.get("/api/v1/checklists", params={"limit": 3, "cursor": first["next_cursor"]})).json()

    assert [job["id"] for job in first["items"]] == ids[::-1][:3]
    assert [job["id"] for job in second["items"]][:2] == ids[::-1][3:5]
    assert first["next_cursor"]


async def test_list_filters_by_status(idle_api: httpx.AsyncClient) -> None:
    canceled = (await submit(idle_api)).json()["id"]
    await idle_api.post(f"/api/v1/checklists/{canceled}/cancel")
    queued = (await submit(idle_api)).json()["id"]

    page = (await idle_api.get("/api/v1/checklists", params={"status": "canceled", "limit": 100})).json()

    ids = [job["id"] for job in page["items"]]
    assert canceled in ids
    assert queued not in ids
    assert all(job["status"] == "canceled" for job in page["items"])


async def test_list_walks_to_the_end_and_stops(idle_api: httpx.AsyncClient) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(200):
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = (await idle_api.get("/api/v1/checklists", params=params)).json()
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert cursor is None
    assert len(seen) == len(set(seen))


async def test_list_skips_jobs_whose_data_expired(idle_api: httpx.AsyncClient, idle_stack: Stack) -> None:
    job_id = (await submit(idle_api)).json()["id"]
    redis.Redis.from_url(idle_stack.redis_url).delete(keys.job(job_id))  # as if its TTL ran out

    page = (await idle_api.get("/api/v1/checklists", params={"limit": 100})).json()

    assert job_id not in [job["id"] for job in page["items"]]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "lost"}, "invalid_parameter"),
        ({"limit": 0}, "invalid_parameter"),
        ({"cursor": "xyz"}, "invalid_request"),
    ],
)
async def test_list_rejects_bad_parameters(idle_api: httpx.AsyncClient, params: dict[str, Any], code: str) -> None:
    response = await idle_api.get("/api/v1/checklists", params=params)

    assert response.status_code in (400, 422)
    assert response.json()["code"] == code


# --- legacy while the job is not done --------------------------------------------------------------


async def test_legacy_endpoint_answers_202_with_a_link_when_the_job_is_not_done_in_time(
    idle_api: httpx.AsyncClient,
) -> None:
    response = await idle_api.post("/api/v1/generate-checklist", json={"trip_data": TRIP})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["location"] == f"/api/v1/checklists/{body['id']}"


# --- bad input -----------------------------------------------------------------------------------

BAD_TRIPS = [
    ({**TRIP, "days": "5"}, "$.days"),
    ({**TRIP, "days": 0}, "$.days"),
    ({**TRIP, "days": 366}, "$.days"),
    ({**TRIP, "days": True}, "$.days"),
    ({**TRIP, "location": "K"}, "$.location"),
    ({**TRIP, "location": "x" * 101}, "$.location"),
    ({**TRIP, "location": "   k   "}, "$.location"),
    ({**TRIP, "location": "Kyo\x00to"}, "$.location"),
    ({**TRIP, "occasion": "trip\u202e"}, "$.occasion"),
    ({**TRIP, "transport": "rocket"}, "$.transport"),
    ({**TRIP, "notes": "n" * 501}, "$.notes"),
    ({**TRIP, "preferences": ["vegan"] * 11}, "$.preferences"),
    ({**TRIP, "preferences": ["x" * 51]}, "$.preferences[0]"),
    ({**TRIP, "surprise": 1}, "$.surprise"),
    ({**TRIP, "travelers": {"pets": 1}}, "$.travelers.pets"),
    ({**TRIP, "start_date": "2027-02-30"}, "$.start_date"),
    ({**TRIP, "start_date": "2027-03-10", "end_date": "2027-03-01"}, "$.end_date"),
    ({**TRIP, "start_date": "2027-03-01", "end_date": "2027-03-10"}, "$.days"),
    ({**TRIP, "end_date": "2027-03-10"}, "$.end_date"),
    ({**TRIP, "travelers": {"adults": 0, "children": 0}}, "$.travelers"),
    ({**TRIP, "travelers": {"adults": -1}}, "$.travelers.adults"),
    ({**TRIP, "language": "not a tag"}, "$.language"),
    ({**TRIP, "accommodation": "x" * 51}, "$.accommodation"),
    ({**TRIP, "accommodation": "  "}, "$.accommodation"),
    ({"location": "Kyoto"}, "$.days"),
    ([TRIP], "$"),
]


@pytest.mark.parametrize("lodging", ["hotel", "friends_family", "teahouse", "villa with a pool", "liveaboard"])
async def test_accommodation_is_whatever_the_traveller_writes(idle_api: httpx.AsyncClient, lodging: str) -> None:
    response = await idle_api.post("/api/v1/checklists", json={**TRIP, "accommodation": lodging})

    assert response.status_code == 202, response.text
    job = (await idle_api.get(response.headers["location"])).json()
    assert job["request"]["accommodation"] == lodging


@pytest.mark.parametrize(("body", "field"), BAD_TRIPS)
async def test_invalid_trips_are_422_naming_the_field(
    idle_api: httpx.AsyncClient, body: Any, field: str, idle_stack: Stack
) -> None:
    client = redis.Redis.from_url(idle_stack.redis_url)
    depth = client.llen(keys.QUEUE)

    response = await idle_api.post("/api/v1/checklists", json=body)

    problem = assert_problem(response, 422, "invalid_request")
    assert problem["field"] == field
    assert client.llen(keys.QUEUE) == depth  # nothing enqueued


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "malformed_json"),
        (b"location=Kyoto", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"location": "' + b"x" * 70_000 + b'"}', "application/json", 413, "body_too_large"),
    ],
)
async def test_unusable_bodies_are_4xx_problems(
    idle_api: httpx.AsyncClient, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = await idle_api.post("/api/v1/checklists", content=content, headers={"content-type": content_type})

    assert_problem(response, status, code)


def not_utf8(body: Any) -> bytes:
    """`body` as JSON with the marker `@@` replaced by a byte that is never UTF-8."""
    return msgspec.json.encode(body).replace(b"@@", b"\xff")


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/api/v1/checklists", not_utf8({**TRIP, "location": "Ky@@oto"})),
        ("/api/v1/checklists", not_utf8({**TRIP, "days": "@@"})),  # a wrong type too: still a 400
        ("/api/v1/generate-checklist", not_utf8({"trip_data": {**TRIP, "occasion": "holi@@day"}})),
    ],
)
async def test_bodies_that_are_not_utf8_are_malformed_json(
    idle_api: httpx.AsyncClient, idle_stack: Stack, path: str, content: bytes
) -> None:
    client = redis.Redis.from_url(idle_stack.redis_url)
    depth = client.llen(keys.QUEUE)

    response = await idle_api.post(path, content=content, headers={"content-type": "application/json"})

    assert "UTF-8" in assert_problem(response, 400, "malformed_json")["detail"]
    assert client.llen(keys.QUEUE) == depth  # nothing enqueued


async def test_body_limit_holds_without_a_content_length(idle_api: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1024

    response = await idle_api.post("/api/v1/checklists", content=chunks(), headers={"content-type": "application/json"})

    assert_problem(response, 413, "body_too_large")


async def test_unknown_route_and_wrong_method_are_problems(idle_api: httpx.AsyncClient) -> None:
    assert_problem(await idle_api.get("/api/v1/nothing-here"), 404, "not_found")
    assert_problem(await idle_api.put("/api/v1/checklists"), 405, "method_not_allowed")
