"""Every error becomes `application/problem+json` (RFC 9457) with a stable `code`: one table, here.

Our own `ApiError`s carry their status and code; Litestar's exceptions (routing, parameters,
body size) are translated; anything else is a logged 500 that reveals nothing.

The OpenAPI document reads the same table: `problem_responses(*errors)` gives a route the
problem answers the handlers below produce for those errors (status, `code`s, headers), and
tests/unit/test_openapi_document.py raises each error through these handlers and compares.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from shared import metrics
from shared.errors import ApiError, AuthenticationFailed, DependencyUnavailable, RateLimited
from shared.redis_mux import RedisReplyError, RedisUnavailable

__all__ = [
    "PROBLEM_HEADERS",
    "PROBLEM_JSON",
    "Problem",
    "exception_handlers",
    "problem_codes",
    "problem_response",
    "problem_responses",
    "redis_unavailable",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_CLIENT_GONE = "client disconnected prematurely"

#: Codes for Litestar's own HTTP exceptions, by status.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}

#: Seconds a client is asked to wait when a dependency is unavailable.
_RETRY_AFTER_UNAVAILABLE = "5"

#: Error replies of a Redis that is up but cannot serve us for now. They are 503s; any other error
#: reply (WRONGTYPE, a script's own error) is a bug of ours, hence a 500.
_REDIS_UNAVAILABLE_CODES = frozenset(
    {
        # full (maxmemory + noeviction), a replica, loading its data, a stale replica, too few
        # replicas, unable to persist, busy with a long script:
        *("OOM", "READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS", "MISCONF", "BUSY"),
        # a Cluster serving these keys elsewhere or failing over (not a supported set-up, no bug):
        *("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"),
    }
)


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem: `code` is the stable, machine-readable reason; `field` names bad input."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str | None = None
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    problem = Problem(
        type=f"urn:trip-checklist:problem:{code}",
        title=title,
        status=status,
        code=code,
        detail=detail,
        instance=request.url.path,
        field=field,
        errors=errors,
    )
    return Response(msgspec.json.encode(problem), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _api_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ApiError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {**exc.headers, "Retry-After": str(exc.retry_after)}
    elif isinstance(exc, AuthenticationFailed):
        headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'}
    elif isinstance(exc, DependencyUnavailable):
        headers = {"Retry-After": _RETRY_AFTER_UNAVAILABLE}
    return problem_response(
        request,
        status=exc.status,
        code=exc.problem_code,
        title=exc.title,
        detail=exc.message,
        field=getattr(exc, "field", None),
        headers=headers,
    )


def _validation_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ValidationException)
    extra = exc.extra if isinstance(exc.extra, list) else None
    field = extra[0].get("key") if extra and isinstance(extra[0], dict) else None
    return problem_response(
        request,
        status=400,
        code="invalid_parameter",
        title="Invalid parameter",
        detail=exc.detail,
        field=field,
        errors=extra,
    )


def _http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 413:
        metrics.BODY_TOO_LARGE.inc()
    if status >= 500 and exc.detail == _CLIENT_GONE:
        # Litestar reports a client that hung up mid-body as a 500; nothing failed on our side.
        log.info("client disconnected during %s %s", request.method, request.url.path)
    elif status >= 500:
        log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
    return problem_response(
        request,
        status=status,
        code=_HTTP_CODES.get(status, f"http_{status}"),
        title=exc.detail if status < 500 else "Server error",
        detail=exc.detail,
        headers=exc.headers,
    )


def _redis_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    metrics.count_redis_error("api", exc)
    log.error("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        request,
        status=503,
        code="dependency_unavailable",
        title="A dependency is unavailable",
        detail="The service's data store is unavailable; try again shortly.",
        headers={"Retry-After": _RETRY_AFTER_UNAVAILABLE},
    )


def redis_unavailable(exc: Exception) -> bool:
    """Whether `exc` means that Redis cannot serve us for now (a 503), rather than a bug of ours."""
    return isinstance(exc, RedisUnavailable) or (
        isinstance(exc, RedisReplyError) and exc.code in _REDIS_UNAVAILABLE_CODES
    )


def _redis_reply_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, RedisReplyError)
    if exc.code in _REDIS_UNAVAILABLE_CODES:
        return _redis_unavailable(request, exc)
    return _unexpected(request, exc)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=500,
        code="internal_error",
        title="Internal error",
        detail="An unexpected error occurred.",
    )


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ApiError: _api_error,
        RedisUnavailable: _redis_unavailable,
        RedisReplyError: _redis_reply_error,
        ValidationException: _validation_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }


# The same table, for the OpenAPI document.

#: What the handlers above answer for the errors that are not `ApiError`s (those carry their own).
_OTHER_ERRORS: dict[type[Exception], tuple[int, str]] = {
    ValidationException: (400, "invalid_parameter"),
    RedisUnavailable: (503, "dependency_unavailable"),
}

#: The headers a problem of each status carries, as the handlers above set them.
PROBLEM_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",),
    429: ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"),
    503: ("Retry-After",),
}


def problem_codes(error: type[Exception]) -> tuple[int, list[str]]:
    """The status and the `code`s of the problem the handlers above make of `error`.

    An `AuthenticationFailed` or `RateLimited` names its specific reason as the `code`
    (`token_expired`, `login_locked`, ...); "..." stands for those.
    """
    if issubclass(error, ApiError):
        reasons = ["..."] if issubclass(error, AuthenticationFailed | RateLimited) else []
        return error.status, [error.code, *reasons]
    for kind, (status, code) in _OTHER_ERRORS.items():
        if issubclass(error, kind):
            return status, [code]
    if issubclass(error, HTTPException):
        return error.status_code, [_HTTP_CODES.get(error.status_code, f"http_{error.status_code}")]
    raise TypeError(f"{error.__name__} is answered as a 500 internal_error; document what raises it instead")


def problem_responses(*errors: type[Exception]) -> dict[int, ResponseSpec]:
    """`responses=` for a route that can fail with `errors`: one problem+json answer per status."""
    codes: dict[int, set[str]] = {}
    for error in errors:
        status, found = problem_codes(error)
        codes.setdefault(status, set()).update(found)
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=f"Problem (`code`: {', '.join([*sorted(found - {'...'}), *sorted(found & {'...'})])})",
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status, found in sorted(codes.items())
    }
