"""Access control for every route: who is calling, and whether their budget allows it.

Routes declare their policy in `opt["access"]`:
    "principal" (default)  a bearer token or API key is required; the principal's general quota, or
                           with `opt["quota"]` = "submit" or "poll" that budget instead (fail open)
With `opt["quota_in_script"]` the handler spends the quota itself, in its own Redis script
(`api.limits.QuotaGuard`, `api.deps.quota_of`): one round trip for the check and the work.
    "credentials"          register/login/refresh: a quota per client address (fail closed)
/health, /metrics and /schema are never authenticated or limited.

Every limited response carries RateLimit-Limit/-Remaining/-Reset for its tightest quota. The
client address is the socket peer; X-Forwarded-For counts only when the peer is a trusted proxy,
and then the right-most hop that is not itself trusted is the client.

Security headers (nosniff, frame denial, referrer policy, CSP, HSTS in production) are added to
every response by `security_headers`, an app-level `before_send` hook.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

from limits import RateLimitItem
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth.principals import Principal
from api.auth.service import log_auth_failure
from api.limits import Quota, QuotaGuard, quota
from shared.errors import AuthenticationFailed
from shared.observability import current_context

__all__ = [
    "QUOTA_STATE_KEY",
    "AccessControl",
    "Network",
    "authenticate",
    "client_address",
    "quota_for",
    "security_headers",
    "with_rate_headers",
]

#: Where a request's `QuotaGuard` waits for its handler (`scope["state"]`), on `quota_in_script` routes.
QUOTA_STATE_KEY = "quota"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(scope: Scope, trusted: Sequence[Network]) -> str:
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted or not _is_trusted(peer, trusted):
        return str(peer)
    forwarded = [
        hop.strip() for value in _header_values(scope, b"x-forwarded-for") for hop in value.split(",") if hop.strip()
    ]
    for hop in reversed(forwarded):
        if not _is_trusted(hop, trusted):
            return hop
    return forwarded[0] if forwarded else str(peer)


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


def _header(scope: Scope, name: bytes) -> str | None:
    values = _header_values(scope, name)
    return values[0] if values else None


_OPEN_PATHS = ("/health", "/metrics", "/schema")


def _is_open(scope: Scope) -> bool:
    return scope["path"].startswith(_OPEN_PATHS)


class AccessControl(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)
    should_bypass_for_scope = staticmethod(_is_open)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        resources = Litestar.from_scope(scope).state.resources
        limits = resources.settings.limits
        opt = scope["route_handler"].opt
        if opt.get("access") == "credentials":
            address = client_address(scope, resources.trusted_proxies)
            guard = resources.limiter.guard(
                Quota("auth-ip", _item(limits.auth_ip_requests, limits.auth_ip_window), address), fail_open=False
            )
            await guard.spend()
        else:
            principal = await authenticate(
                scope, resources, _header(scope, b"authorization"), _header(scope, b"x-api-key")
            )
            guard = resources.limiter.guard(quota_for(principal, opt.get("quota"), limits), fail_open=True)
            if opt.get("quota_in_script"):
                scope["state"][QUOTA_STATE_KEY] = guard  # spent by the handler's own script
            else:
                await guard.spend()
        await next_app(scope, receive, with_rate_headers(send, guard))


async def authenticate(scope: Scope, resources: Any, authorization: str | None, api_key: str | None) -> Principal:
    """Who the request acts for (`scope["user"]`, and the owner its log lines name); a failure is
    logged with the client's address (worked out only then) and raised."""
    try:
        principal: Principal = await resources.authenticator.authenticate(authorization, api_key)
    except AuthenticationFailed as failure:
        log_auth_failure(failure.reason, client_address(scope, resources.trusted_proxies))
        raise
    scope["user"] = principal
    context = current_context()
    if context is not None:  # the request's log lines name whom it acts for from here on
        context.owner = principal.user_id
    return principal


def quota_for(principal: Principal, kind: str | None, limits: Any) -> Quota:
    """The budget a principal's request spends: each kind of endpoint its own, submissions a small
    one (each costs an LLM call), polling a large one (cheap), everything else the general one."""
    user = principal.user_id
    if kind == "poll":
        return Quota("poll", _item(limits.poll_requests, limits.window), user)
    if kind == "submit":
        return Quota("submit", _item(limits.submit_requests, limits.submit_window), user)
    return Quota("principal", _item(limits.requests, limits.window), user)


@functools.cache
def _item(amount: int, seconds: int) -> RateLimitItem:
    """Quota items are immutable; build each once per process, not per request."""
    return quota(amount, seconds)


def with_rate_headers(send: Send, guard: QuotaGuard) -> Send:
    """Adds the quota's headers to the answer: read as it starts, after the handler spent the quota.
    None (refused: the 429 carries its own; or Redis could not be asked): nothing to add."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and (decision := guard.decision) is not None:
            # Raw header tuples: Litestar's mutable header view cost a seventh of a request here.
            message["headers"] = [*message.get("headers", ()), *decision.raw_headers()]
        await send(message)

    return sending


_API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The docs page (api.docs) loads Swagger UI's script and styles from this app and starts it from a
# script file: nothing inline, nothing from another host. Its icons are data: URIs in the CSS.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def security_headers(production: bool) -> Any:
    """A `before_send` hook adding the security headers to every response (built once, appended raw)."""
    common = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if production:
        common.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    api = [*common, (b"content-security-policy", _API_CSP.encode())]
    docs = [*common, (b"content-security-policy", _DOCS_CSP.encode())]

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            extra = docs if scope["path"].startswith("/schema") else api
            message["headers"] = [*message.get("headers", ()), *extra]

    return before_send
