"""/api/v1/checklists: submit, read (with long-poll), list, cancel, delete."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from api.deps import json_body, log_context_of, owner_of, quota_of, resources_of
from api.limits import QuotaGuard
from api.openapi import AUTHENTICATED, BODY_ERRORS, PRINCIPAL_ERRORS, QUERY_ERRORS, Documented
from api.problems import problem_responses
from api.service import check_idempotency_key
from shared.errors import IdempotencyKeyReused, InvalidRequest, JobNotCancelable, NotFound
from shared.lifecycle import API_PREFIX
from shared.schemas import Job, JobPage, JobStatus, SubmitAccepted, TripRequest, TripSubmission
from shared.validation import decode_body, normalise_trip

__all__ = ["ChecklistController", "accept_submission", "json_response"]

_encoder = msgspec.json.Encoder()


def json_response(content: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    """Pre-encoded JSON; the handler's return annotation (`Response[Job]`) documents what it is."""
    return Response(content, status_code=status_code, media_type="application/json", headers=headers)


_IDEMPOTENCY_KEY = HeaderParameter(
    name="Idempotency-Key",
    description="Up to 255 printable ASCII characters. The same key with the same body within 24 h returns "
    "the same job (`Idempotent-Replayed: true`); with another body it is 409 `idempotency_key_reused`.",
)
_WAIT = QueryParameter(
    ge=0,
    description="Long-poll: answer as soon as the job is final, or after this many seconds with its current "
    "state. At most `MAX_WAIT` (30 s by default; more is 422).",
)


async def accept_submission(
    request: Request[Any, Any, Any], idempotency_key: str | None, quota: QuotaGuard
) -> tuple[bytes, dict[str, str]]:
    """Store and enqueue the request's trip, spending `quota` in the same script: the 202's body and
    headers. The controller and `api.fastpath` both answer a submission with it."""
    body, resources = await json_body(request), resources_of(request)
    hook = b""
    if b'"webhook"' in body:  # a byte search spares the usual submission the second struct
        submission = decode_body(body, TripSubmission)
        trip = normalise_trip(submission.trip())
        hook = resources.webhooks.job_hook(submission.webhook, "$.webhook")
    else:
        trip = normalise_trip(decode_body(body, TripRequest))
    key = check_idempotency_key(idempotency_key) if idempotency_key is not None else None
    context = log_context_of(request)
    submitted = await resources.checklists.submit(
        owner_of(request), trip, key, hook, request_id=context.request_id or "", runner=quota
    )
    context.job_id = submitted.accepted.id
    headers = {"Location": submitted.accepted.links.self_}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _encoder.encode(submitted.accepted), headers


class ChecklistController(Controller):
    path = API_PREFIX
    tags = ["checklists"]  # noqa: RUF012 - Litestar reads it as a class attribute
    security = AUTHENTICATED

    @post(
        "/",
        operation_id="submitChecklist",
        status_code=HTTP_202_ACCEPTED,
        summary="Submit a trip; returns the queued job",
        description="Body: a trip (see the schema), with an optional `webhook` for this job's events. "
        "Same Idempotency-Key + same body = same job.",
        response_description="The queued job",
        operation_class=Documented(TripSubmission, headers={202: ("Location", "Idempotent-Replayed")}),
        responses=problem_responses(*PRINCIPAL_ERRORS, *BODY_ERRORS, IdempotencyKeyReused),
        opt={"quota": "submit", "quota_in_script": True},
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: Annotated[str | None, _IDEMPOTENCY_KEY] = None,
    ) -> Response[SubmitAccepted]:
        # The quota is spent in the store's script: one round trip (or on the way out, if refused earlier).
        async with quota_of(request) as quota:
            content, headers = await accept_submission(request, idempotency_key, quota)
        return json_response(content, HTTP_202_ACCEPTED, headers)

    @get(
        "/{job_id:str}",
        operation_id="getChecklist",
        summary="Read a job; `wait` long-polls until it finishes",
        operation_class=Documented(),
        responses=problem_responses(*PRINCIPAL_ERRORS, *QUERY_ERRORS, InvalidRequest, NotFound),
        opt={"quota": "poll", "quota_in_script": True},
    )
    async def read(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        wait: Annotated[float, _WAIT] = 0,
    ) -> Response[Job]:
        resources, owner = resources_of(request), owner_of(request)
        async with quota_of(request) as quota:  # spent in the read's own script: one round trip
            if wait == 0:
                return json_response(await resources.checklists.get_doc(owner, job_id, quota))
            limit = resources.settings.api.max_wait
            if wait > limit:
                raise InvalidRequest(f"wait must be at most {limit:g} seconds", field="wait")
            return json_response(await resources.checklists.wait_doc(owner, job_id, wait, quota))

    @get(
        "/",
        operation_id="listChecklists",
        summary="The caller's jobs, newest first",
        operation_class=Documented(),
        responses=problem_responses(*PRINCIPAL_ERRORS, *QUERY_ERRORS, InvalidRequest),
        opt={"quota": "poll"},
    )
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        status: Annotated[JobStatus | None, QueryParameter(description="Only jobs in this status.")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(description="`next_cursor` of the previous page (another value is 422).")
        ] = None,
    ) -> Response[JobPage]:
        docs, next_cursor = await resources_of(request).checklists.list_docs(
            owner_of(request), limit=limit, cursor=cursor, status=status
        )
        # The docs are stored as the public JSON already: splice them rather than re-encode.
        body = b'{"items":[' + b",".join(docs) + b'],"next_cursor":' + _encoder.encode(next_cursor) + b"}"
        return json_response(body)

    @post(
        "/{job_id:str}/cancel",
        operation_id="cancelChecklist",
        status_code=200,
        summary="Cancel a queued or running job",
        operation_class=Documented(),
        responses=problem_responses(*PRINCIPAL_ERRORS, NotFound, JobNotCancelable),
    )
    async def cancel(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[Job]:
        job = await resources_of(request).checklists.cancel(owner_of(request), job_id)
        return json_response(_encoder.encode(job))

    @delete(
        "/{job_id:str}",
        operation_id="deleteChecklist",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a job and all it stored",
        operation_class=Documented(),
        responses=problem_responses(*PRINCIPAL_ERRORS, NotFound),
    )
    async def remove(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> None:
        await resources_of(request).checklists.delete(owner_of(request), job_id)
