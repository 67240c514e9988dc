"""POST /api/v1/generate-checklist: the old synchronous endpoint, kept for its clients.

It enqueues a job like any other, waits (event-driven) up to `LEGACY_WAIT` seconds, and answers
in the old shape; a job still running by then gets `202` with its link to poll, and with
`waiting` when the job is held back by the shared Groq budget (until when, at the earliest).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_502_BAD_GATEWAY

from api.deps import json_body, log_context_of, owner_of, resources_of
from api.openapi import AUTHENTICATED, BODY_ERRORS, PRINCIPAL_ERRORS, Documented
from api.problems import PROBLEM_JSON, Problem, problem_response, problem_responses
from api.routes.checklists import json_response
from api.service import accepted
from shared.schemas import Job, LegacyAccepted, LegacyItem, LegacyRequest, LegacyResponse
from shared.validation import decode_body, normalise_trip

__all__ = ["generate_checklist", "legacy_shape"]

_encoder = msgspec.json.Encoder()


def legacy_shape(job: Job) -> LegacyResponse:
    """The old service's answer for a succeeded job."""
    assert job.result is not None
    assert job.finished_at is not None
    done = job.finished_at
    items = [
        LegacyItem(
            id=item.id,
            text=item.text,
            category=item.category,
            checked=False,
            priority=item.priority,
            user_added=False,
            created_at=done,
            updated_at=done,
        )
        for item in job.result.items
    ]
    return LegacyResponse(id=job.id, items=items, generated_at=done, trip_data=job.request)


@post(
    "/api/v1/generate-checklist",
    status_code=HTTP_200_OK,
    tags=["legacy"],
    summary="Legacy: submit and wait for the checklist",
    description='Body: {"trip_data": TripRequest, "webhook"?: WebhookSpec}. 200 with the old shape, or 202 if '
    "not done in time.",
    operation_id="generateChecklistLegacy",
    security=AUTHENTICATED,
    operation_class=Documented(LegacyRequest, headers={HTTP_202_ACCEPTED: ("Location",)}),
    responses={
        **problem_responses(*PRINCIPAL_ERRORS, *BODY_ERRORS),
        HTTP_202_ACCEPTED: ResponseSpec(
            LegacyAccepted,
            description="Not done within `LEGACY_WAIT` seconds: poll `Location`. `waiting` says when the job "
            "is held back by the shared Groq budget, and until when at the earliest",
            generate_examples=False,
        ),
        HTTP_502_BAD_GATEWAY: ResponseSpec(
            Problem,
            description="The job failed; `code` is the job's error code",
            media_type=PROBLEM_JSON,
            generate_examples=False,
        ),
    },
    opt={"quota": "submit"},
)
async def generate_checklist(request: Request[Any, Any, Any]) -> Response[LegacyResponse]:
    legacy = decode_body(await json_body(request), LegacyRequest)
    trip = normalise_trip(legacy.trip_data, prefix="$.trip_data")
    resources, owner, context = resources_of(request), owner_of(request), log_context_of(request)
    hook = resources.webhooks.job_hook(legacy.webhook, "$.webhook")
    submitted = await resources.checklists.submit(
        owner, trip, hook=hook, request_id=context.request_id or "", api="legacy"
    )
    context.job_id = submitted.accepted.id
    job = await resources.checklists.wait_job(owner, submitted.accepted.id, resources.settings.api.legacy_wait)
    if job.status == "succeeded":
        return json_response(_encoder.encode(legacy_shape(job)))
    if job.status == "failed" and job.error is not None:
        return problem_response(  # type: ignore[return-value]
            request,
            status=HTTP_502_BAD_GATEWAY,
            code=job.error.code,
            title="Checklist generation failed",
            detail=f"job {job.id}: {job.error.message}",
        )
    pending = accepted(job)
    body = LegacyAccepted(
        id=pending.id, status=pending.status, created_at=pending.created_at, links=pending.links, waiting=job.waiting
    )
    return json_response(_encoder.encode(body), HTTP_202_ACCEPTED, {"Location": job.links.self_})
