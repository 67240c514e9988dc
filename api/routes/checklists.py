"""/api/v1/checklists: submit, read (with long-poll), list, cancel, delete."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, HeaderParameter, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from api.deps import json_body, owner_of, resources_of
from api.openapi import JsonBody
from api.service import check_idempotency_key
from shared.errors import InvalidRequest
from shared.lifecycle import API_PREFIX
from shared.schemas import Job, JobPage, JobStatus, SubmitAccepted, TripRequest
from shared.validation import decode_body, normalise_trip

__all__ = ["ChecklistController", "json_response"]

_encoder = msgspec.json.Encoder()


def json_response(content: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content, status_code=status_code, media_type="application/json", headers=headers)


class ChecklistController(Controller):
    path = API_PREFIX
    tags = ["checklists"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Submit a trip; returns the queued job",
        description="Body: a TripRequest (see the schema). Same Idempotency-Key + same body = same job.",
        response_description="The queued job",
        operation_class=JsonBody(TripRequest),
        opt={"quota": "submit"},
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key")] = None,
    ) -> Response[SubmitAccepted]:
        trip = normalise_trip(decode_body(await json_body(request), TripRequest))
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else None
        submitted = await resources_of(request).checklists.submit(owner_of(request), trip, key)
        headers = {"Location": submitted.accepted.links.self_}
        if submitted.replayed:
            headers["Idempotent-Replayed"] = "true"
        return json_response(_encoder.encode(submitted.accepted), HTTP_202_ACCEPTED, headers)  # type: ignore[return-value]

    @get("/{job_id:str}", summary="Read a job; `wait` long-polls until it finishes", opt={"quota": "poll"})
    async def read(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        wait: Annotated[float | None, QueryParameter(ge=0, description="Seconds to wait for a final status")] = None,
    ) -> Response[Job]:
        resources, owner = resources_of(request), owner_of(request)
        if wait is None or wait == 0:
            return json_response(await resources.checklists.get_doc(owner, job_id))  # type: ignore[return-value]
        limit = resources.settings.api.max_wait
        if wait > limit:
            raise InvalidRequest(f"wait must be at most {limit:g} seconds", field="wait")
        return json_response(await resources.checklists.wait_doc(owner, job_id, wait))  # type: ignore[return-value]

    @get("/", summary="The caller's jobs, newest first", opt={"quota": "poll"})
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> Response[JobPage]:
        docs, next_cursor = await resources_of(request).checklists.list_docs(
            owner_of(request), limit=limit, cursor=cursor, status=status
        )
        # The docs are stored as the public JSON already: splice them rather than re-encode.
        body = b'{"items":[' + b",".join(docs) + b'],"next_cursor":' + _encoder.encode(next_cursor) + b"}"
        return json_response(body)  # type: ignore[return-value]

    @post("/{job_id:str}/cancel", status_code=200, summary="Cancel a queued or running job")
    async def cancel(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[Job]:
        job = await resources_of(request).checklists.cancel(owner_of(request), job_id)
        return json_response(_encoder.encode(job))  # type: ignore[return-value]

    @delete("/{job_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a job and all it stored")
    async def remove(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> None:
        await resources_of(request).checklists.delete(owner_of(request), job_id)
