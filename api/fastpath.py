"""The measured hot paths, answered without Litestar's routing and middleware layers.

A submission (`POST /api/v1/checklists`) and a poll (`GET /api/v1/checklists/{id}`, with no
query or a long-poll's `wait`) are most of the traffic, and on them Litestar's layers (routing,
two exception-handling layers, the `AccessControl` middleware, the `Response` object and its
conversion) cost more CPU than the request's own work: measured with `make bench`, README
"Performance". `FastPath` sits where Litestar calls its ASGI handler (so `Observed`'s request ids,
metrics and access line and the app's `before_send` hooks, security headers included, apply as on
every route) and answers those requests itself, with the same code the routes use:
`api.security.authenticate` and `quota_for`, the routes' `accept_submission` and
`ChecklistService.get_doc` / `wait_doc`, and the app's own exception handlers (`api.problems`) for
every error.

A poll may carry one query, `wait=` with a plain decimal number within `MAX_WAIT` (a long-poll):
when thousands of long-polls end together their clients ask again at once, and that storm is
where the framework's cost showed (py-spy, README "Performance").

Anything else goes to Litestar unchanged, and so does any of these requests that asks for more
than the plain case: an `Origin` header (CORS), any other query string (a `wait` Litestar must
judge, say), a `root_path`, an unusual `Host` header, HEAD. The OpenAPI document still describes
both routes from their controllers, and tests/integration/test_fast_path.py sends the same
requests, good and bad, to an app with and without this path and compares the answers.

This is the one place where the API goes around the framework.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar, Request
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    Scope,
    Send,
)

from api.limits import QuotaGuard
from api.problems import exception_handlers
from api.routes.checklists import accept_submission
from api.security import authenticate, quota_for, with_rate_headers
from shared.lifecycle import API_PREFIX

__all__ = ["FastPath"]

_POLL_PREFIX = API_PREFIX + "/"
_JSON = (b"content-type", b"application/json")
#: Host headers Litestar certainly accepts (a name or an address, with a port): others go to it.
_PLAIN_HOST = re.compile(rb"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
#: The one query string a poll answered here may have: a long-poll's wait, as a plain number.
_PLAIN_WAIT = re.compile(rb"wait=([0-9]{1,4}(?:\.[0-9]{1,6})?)")


class FastPath:
    """`wrap` Litestar's ASGI handler with it (see the module)."""

    def __init__(self, app: Litestar) -> None:
        self.litestar = app
        self.next: ASGIApp | None = None
        self._handlers = exception_handlers()
        # The routes' handlers and templates, looked up once in Litestar's own router (after the
        # app is built): what `scope` must hold for `Request`, error handlers and metrics.
        self._routes: dict[str, tuple[Any, str]] = {}
        #: Requests this path answered (tests check that it does answer the plain ones).
        self.answered = 0

    def wrap(self, app: ASGIApp) -> FastPath:
        self.next = app
        return self

    def _route(self, method: str, sample: str) -> tuple[Any, str]:
        route = self._routes.get(method)
        if route is None:
            _, handler, _, _, template = self.litestar.asgi_router.handle_routing(path=sample, method=method)
            route = self._routes[method] = (handler, template)
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.next is not None, "wrap() Litestar's handler first"
        if scope["type"] == ScopeType.HTTP and not scope.get("root_path"):
            method, path, query = scope["method"], scope["path"], scope["query_string"]
            if method == "GET" and path.startswith(_POLL_PREFIX):
                job_id = path[len(_POLL_PREFIX) :]
                wait = self._plain_wait(query)
                if job_id and "/" not in job_id and wait is not None:
                    headers = _plain_headers(scope)
                    if headers is not None:
                        self.answered += 1
                        await self._poll(scope, receive, send, headers, job_id, wait=wait)
                        return
            elif method == "POST" and path == API_PREFIX and not query:
                headers = _plain_headers(scope)
                if headers is not None:
                    self.answered += 1
                    await self._submit(scope, receive, send, headers)
                    return
        await self.next(scope, receive, send)

    def _plain_wait(self, query: bytes) -> float | None:
        """The poll's wait (0 with no query), or None when Litestar should read the query: anything
        but `wait=<number>` within MAX_WAIT (above it, the route's own error answers)."""
        if not query:
            return 0.0
        found = _PLAIN_WAIT.fullmatch(query)
        if found is None:
            return None
        wait = float(found.group(1))
        return wait if wait <= self.litestar.state.resources.settings.api.max_wait else None

    async def _poll(
        self, scope: HTTPScope, receive: Receive, send: Send, headers: dict[bytes, bytes], job_id: str, *, wait: float
    ) -> None:
        scope["route_handler"], scope["path_template"] = self._route("GET", scope["path"])
        scope["path_params"] = {"job_id": job_id}
        resources = self.litestar.state.resources
        guard: QuotaGuard | None = None
        try:
            principal = await authenticate(scope, resources, *_credentials(headers))
            guard = resources.limiter.guard(quota_for(principal, "poll", resources.settings.limits), fail_open=True)
            async with guard:  # spent in the read's own script: one round trip
                if wait:  # as the route does: a long-poll
                    doc = await resources.checklists.wait_doc(principal.user_id, job_id, wait, guard)
                else:
                    doc = await resources.checklists.get_doc(principal.user_id, job_id, guard)
        except Exception as exc:
            await self._problem(scope, receive, send, exc, guard)
            return
        await _answer(send, 200, doc, [], guard)

    async def _submit(self, scope: HTTPScope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        scope["route_handler"], scope["path_template"] = self._route("POST", scope["path"])
        resources = self.litestar.state.resources
        guard: QuotaGuard | None = None
        try:
            principal = await authenticate(scope, resources, *_credentials(headers))
            guard = resources.limiter.guard(quota_for(principal, "submit", resources.settings.limits), fail_open=True)
            key = headers.get(b"idempotency-key")
            async with guard:  # spent in the submission's own script (or on the way out, if refused earlier)
                content, extra = await accept_submission(
                    Request(scope, receive), None if key is None else key.decode("latin-1"), guard
                )
        except Exception as exc:
            await self._problem(scope, receive, send, exc, guard)
            return
        await _answer(
            send, 202, content, [(name.lower().encode(), value.encode()) for name, value in extra.items()], guard
        )

    async def _problem(
        self, scope: Scope, receive: Receive, send: Send, exc: Exception, guard: QuotaGuard | None
    ) -> None:
        """The answer the app's exception handlers give for `exc`, with the quota's headers when it
        was spent and allowed (as the route's middleware adds them)."""
        handler = next(self._handlers[kind] for kind in type(exc).__mro__ if kind in self._handlers)
        request: Request[Any, Any, Any] = Request(scope, receive)
        response = handler(request, exc).to_asgi_response(None, request)
        await response(scope, receive, send if guard is None else with_rate_headers(send, guard))


def _plain_headers(scope: Scope) -> dict[bytes, bytes] | None:
    """The request's headers (the first of each name), or None when it needs more than the plain
    case: CORS (an `Origin`) or a `Host` that Litestar should judge."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name, value)
    if b"origin" in headers:
        return None
    host = headers.get(b"host")
    if host is not None and _PLAIN_HOST.fullmatch(host) is None:
        return None
    return headers


def _credentials(headers: dict[bytes, bytes]) -> tuple[str | None, str | None]:
    authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
    return (
        None if authorization is None else authorization.decode("latin-1"),
        None if api_key is None else api_key.decode("latin-1"),
    )


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], guard: QuotaGuard | None
) -> None:
    decision = guard.decision if guard is not None else None
    quota = decision.raw_headers() if decision is not None else ()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers, *quota],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
