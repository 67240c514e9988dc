"""/api/v1/webhooks: standing endpoints, secrets, test pings, delivery logs, redelivery; and a
job's delivery log at /api/v1/checklists/{id}/deliveries."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from api.deps import json_body, log_context_of, owner_of, resources_of
from api.openapi import AUTHENTICATED, BODY_ERRORS, PRINCIPAL_ERRORS, QUERY_ERRORS, Documented
from api.problems import problem_responses
from api.routes.checklists import json_response
from shared.errors import InvalidRequest, NotFound, WebhookLimitReached
from shared.lifecycle import API_PREFIX
from shared.validation import decode_body
from shared.webhook_schemas import (
    DeliveryAttemptPage,
    NewWebhookEndpoint,
    PingAccepted,
    RedeliveryAccepted,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookEndpointRequest,
    WebhookEndpointUpdate,
    WebhookSecret,
)

__all__ = ["WebhookController", "job_deliveries"]

_encoder = msgspec.json.Encoder()
_LIMIT = QueryParameter(ge=1, le=100, description="Page size.")
_CURSOR = QueryParameter(description="`next_cursor` of the previous page (another value is 422).")
_ANSWERS = problem_responses(*PRINCIPAL_ERRORS)
_ONE = problem_responses(*PRINCIPAL_ERRORS, NotFound)
_LOG_ANSWERS = problem_responses(*PRINCIPAL_ERRORS, *QUERY_ERRORS, InvalidRequest, NotFound)


def _json(value: msgspec.Struct, status: int = 200) -> Response[Any]:
    return json_response(_encoder.encode(value), status)


class WebhookController(Controller):
    """Signed HTTP callbacks for the caller's job events (Standard Webhooks)."""

    path = "/api/v1/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar reads it as a class attribute
    security = AUTHENTICATED

    @post(
        "/",
        operation_id="createWebhookEndpoint",
        summary="Create an endpoint; its secret is shown only in this answer",
        status_code=HTTP_201_CREATED,
        operation_class=Documented(WebhookEndpointRequest),
        responses=problem_responses(*PRINCIPAL_ERRORS, *BODY_ERRORS, WebhookLimitReached),
    )
    async def create(self, request: Request[Any, Any, Any]) -> Response[NewWebhookEndpoint]:
        body = decode_body(await json_body(request), WebhookEndpointRequest)
        return _json(await resources_of(request).webhooks.create(owner_of(request), body), HTTP_201_CREATED)

    @get(
        "/",
        operation_id="listWebhookEndpoints",
        summary="The caller's endpoints (never their secrets)",
        operation_class=Documented(),
        responses=_ANSWERS,
    )
    async def list_endpoints(self, request: Request[Any, Any, Any]) -> Response[WebhookEndpointList]:
        endpoints = await resources_of(request).webhooks.list(owner_of(request))
        return _json(WebhookEndpointList(items=endpoints))

    @get(
        "/secret",
        operation_id="getWebhookSecret",
        summary="The default secret, which signs per-job webhooks",
        operation_class=Documented(),
        responses=_ANSWERS,
    )
    async def default_secret(self, request: Request[Any, Any, Any]) -> Response[WebhookSecret]:
        return _json(await resources_of(request).webhooks.default_secret(owner_of(request)))

    @post(
        "/secret/rotate",
        operation_id="rotateWebhookSecret",
        summary="A new default secret; the previous one signs too for 24 hours",
        status_code=200,
        operation_class=Documented(),
        responses=_ANSWERS,
    )
    async def rotate_default_secret(self, request: Request[Any, Any, Any]) -> Response[WebhookSecret]:
        return _json(await resources_of(request).webhooks.default_secret(owner_of(request), rotate=True))

    @get(
        "/{endpoint_id:str}",
        operation_id="getWebhookEndpoint",
        summary="One endpoint, with why it was disabled if it was",
        operation_class=Documented(),
        responses=_ONE,
    )
    async def read(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> Response[WebhookEndpoint]:
        return _json(await resources_of(request).webhooks.get(owner_of(request), endpoint_id))

    @patch(
        "/{endpoint_id:str}",
        operation_id="updateWebhookEndpoint",
        summary="Change the URL, events, description, or enable/disable",
        operation_class=Documented(WebhookEndpointUpdate),
        responses=problem_responses(*PRINCIPAL_ERRORS, *BODY_ERRORS, NotFound),
    )
    async def update(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> Response[WebhookEndpoint]:
        body = decode_body(await json_body(request), WebhookEndpointUpdate)
        return _json(await resources_of(request).webhooks.update(owner_of(request), endpoint_id, body))

    @delete(
        "/{endpoint_id:str}",
        operation_id="deleteWebhookEndpoint",
        summary="Delete an endpoint; its pending deliveries are dropped",
        status_code=HTTP_204_NO_CONTENT,
        operation_class=Documented(),
        responses=_ONE,
    )
    async def remove(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> None:
        await resources_of(request).webhooks.delete(owner_of(request), endpoint_id)

    @post(
        "/{endpoint_id:str}/rotate-secret",
        operation_id="rotateWebhookEndpointSecret",
        summary="A new secret (shown only here); the previous one signs too for 24 hours",
        status_code=200,
        operation_class=Documented(),
        responses=_ONE,
    )
    async def rotate(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> Response[WebhookSecret]:
        return _json(await resources_of(request).webhooks.rotate(owner_of(request), endpoint_id))

    @post(
        "/{endpoint_id:str}/test",
        operation_id="pingWebhookEndpoint",
        summary="Send a `ping` event to the endpoint now",
        status_code=HTTP_202_ACCEPTED,
        operation_class=Documented(),
        responses=_ONE,
    )
    async def ping(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> Response[PingAccepted]:
        rid = log_context_of(request).request_id or ""
        return _json(
            await resources_of(request).webhooks.ping(owner_of(request), endpoint_id, request_id=rid), HTTP_202_ACCEPTED
        )

    @get(
        "/{endpoint_id:str}/deliveries",
        operation_id="listWebhookEndpointDeliveries",
        summary="The endpoint's delivery attempts, newest first",
        operation_class=Documented(),
        responses=_LOG_ANSWERS,
    )
    async def deliveries(
        self,
        request: Request[Any, Any, Any],
        endpoint_id: FromPath[str],
        limit: Annotated[int, _LIMIT] = 20,
        cursor: Annotated[str | None, _CURSOR] = None,
    ) -> Response[DeliveryAttemptPage]:
        body = await resources_of(request).webhooks.endpoint_log(
            owner_of(request), endpoint_id, limit=limit, cursor=cursor
        )
        return json_response(body)

    @post(
        "/deliveries/{delivery_id:str}/redeliver",
        operation_id="redeliverWebhook",
        summary="Send a delivery again now, with the same webhook-id",
        status_code=HTTP_202_ACCEPTED,
        operation_class=Documented(),
        responses=_ONE,
    )
    async def redeliver(
        self, request: Request[Any, Any, Any], delivery_id: FromPath[str]
    ) -> Response[RedeliveryAccepted]:
        rid = log_context_of(request).request_id or ""
        accepted = await resources_of(request).webhooks.redeliver(owner_of(request), delivery_id, request_id=rid)
        return _json(accepted, HTTP_202_ACCEPTED)


@get(
    f"{API_PREFIX}/{{job_id:str}}/deliveries",
    operation_id="listChecklistDeliveries",
    summary="The job's webhook delivery attempts, newest first",
    tags=["webhooks"],
    security=AUTHENTICATED,
    operation_class=Documented(),
    responses=_LOG_ANSWERS,
)
async def job_deliveries(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    limit: Annotated[int, _LIMIT] = 20,
    cursor: Annotated[str | None, _CURSOR] = None,
) -> Response[DeliveryAttemptPage]:
    body = await resources_of(request).webhooks.job_log(owner_of(request), job_id, limit=limit, cursor=cursor)
    return json_response(body)
