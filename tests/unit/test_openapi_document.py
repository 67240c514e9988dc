"""The OpenAPI document and the code that answers cannot drift apart.

- Each error the document names is raised through the real exception handlers: the status, the
  `code` and the headers of the answer are the ones `problem_responses` documents for it.
- Each route's documented security and access errors follow its access policy, the one
  `api.security.AccessControl` enforces (`opt["access"]` and the open paths).
(schemathesis, in tests/integration/test_openapi_conformance.py, checks the rest against the
running service.)
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar, get
from litestar.exceptions import ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from api.app import create_app
from api.openapi import AUTHENTICATED
from api.problems import PROBLEM_HEADERS, PROBLEM_JSON, Problem, exception_handlers, problem_codes
from shared.errors import (
    ApiError,
    AuthenticationFailed,
    DependencyUnavailable,
    EmailTaken,
    IdempotencyKeyReused,
    InvalidRequest,
    JobNotCancelable,
    MalformedBody,
    NotFound,
    RateLimited,
    UnsupportedMediaType,
    WeakPassword,
    WebhookLimitReached,
)
from shared.redis_mux import RedisUnavailable
from shared.settings import load_settings
from tests.support import environment

#: One of each error a route can fail with, as the code raises them.
SAMPLES: list[Exception] = [
    InvalidRequest("days must be at most 365", field="$.days"),
    WeakPassword("this password is too common"),
    AuthenticationFailed("the token has expired", "token_expired"),
    EmailTaken("an account with this email exists already"),
    RateLimited("slow down", 7, {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "7"}),
    RateLimited("too many failed log-ins", 60, reason="login_locked"),
    MalformedBody("the request body is not valid JSON"),
    UnsupportedMediaType("send the body as application/json"),
    NotFound("no checklist job"),
    IdempotencyKeyReused("Idempotency-Key was used with a different body"),
    JobNotCancelable("the job is already succeeded"),
    WebhookLimitReached("a user can have at most 20 webhook endpoints"),
    DependencyUnavailable("log-in is unavailable; try again shortly"),
    ValidationException("Validation failed for GET /api/v1/checklists?limit=0"),
    RequestEntityTooLarge(),
    RedisUnavailable("cannot connect to Redis"),
]
#: Headers every response has; the others must be documented for the status.
_ALWAYS = {"content-type", "content-length"}


def _descendants(kind: type[ApiError]) -> set[type[ApiError]]:
    return {kind, *(sub for child in kind.__subclasses__() for sub in _descendants(child))}


def test_every_api_error_is_sampled() -> None:
    assert _descendants(ApiError) - {ApiError} <= {type(error) for error in SAMPLES}


def _answer(error: Exception) -> Any:
    @get("/fails", sync_to_thread=False)
    def fails() -> None:
        raise error

    with TestClient(Litestar([fails], exception_handlers=exception_handlers())) as client:
        return client.get("/fails")


@pytest.mark.parametrize("error", SAMPLES, ids=lambda error: f"{type(error).__name__}-{id(error) % 1000}")
def test_the_handlers_answer_as_the_document_says(error: Exception) -> None:
    status, codes = problem_codes(type(error))

    response = _answer(error)

    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = msgspec.json.decode(response.content, type=Problem)
    specific = isinstance(error, ApiError) and error.problem_code != error.code
    assert problem.code in codes or (specific and "..." in codes)
    documented = {name.lower() for name in PROBLEM_HEADERS.get(status, ())}
    assert set(response.headers) - _ALWAYS <= documented


def _document_and_handlers() -> tuple[dict[str, Any], dict[str, Any]]:
    app = create_app(load_settings(environment({"REDIS_URL": "redis://127.0.0.1:1/0"})))
    handlers = {
        handler.operation_id: (route.path, handler)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if isinstance(handler.operation_id, str)
    }
    return app.openapi_schema.to_schema(), handlers


DOCUMENT, HANDLERS = _document_and_handlers()
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if isinstance(operation, dict)
]


@pytest.mark.parametrize(("label", "operation"), OPERATIONS, ids=[label for label, _ in OPERATIONS])
def test_each_route_documents_its_access_policy(label: str, operation: dict[str, Any]) -> None:
    path, handler = HANDLERS[operation["operationId"]]
    responses = operation["responses"]

    if path.startswith(("/health", "/metrics")):
        assert "security" not in operation
        assert "429" not in responses
        # /metrics answers 401 when METRICS_TOKEN is set (a bearer token of its own, not a principal).
        assert ("401" in responses) == (path == "/metrics")
    elif handler.opt.get("access") == "credentials":
        assert "security" not in operation
        assert {"429", "503"} <= set(responses)
    else:
        assert operation["security"] == AUTHENTICATED
        assert {"401", "429", "503"} <= set(responses)


@pytest.mark.parametrize(("label", "operation"), OPERATIONS, ids=[label for label, _ in OPERATIONS])
def test_each_answer_is_typed_and_says_its_headers(label: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    for status, response in responses.items():
        for media_type, content in (response.get("content") or {}).items():
            schema = content["schema"]
            if media_type == PROBLEM_JSON:
                assert schema == {"$ref": "#/components/schemas/Problem"}
            elif media_type == "application/json":
                assert "$ref" in schema, f"{status} {media_type} is not a model: {schema}"
            elif media_type == "text/event-stream":  # the schema of one event: its data is the model
                assert label == "GET /api/v1/checklists/{job_id}/events"
                assert schema["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/Job"}
                assert schema["required"] == ["event", "data"]
            else:
                assert label == "GET /metrics"
                assert media_type.startswith("text/plain")
        headers = response.get("headers") or {}
        if status == "429":
            assert headers["Retry-After"]["required"] is True
        if "429" in responses and status.startswith("2"):
            assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(headers)
