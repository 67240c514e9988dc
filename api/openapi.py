"""What the OpenAPI document says beyond what Litestar reads from the handlers.

Litestar documents each route from its decorator: the success body from the return annotation
(`Response[Job]`: the handlers on the hot paths return pre-encoded bytes, README "Performance",
so the annotation names what those bytes are), the problem answers from `responses=` (built by
`api.problems.problem_responses`, next to the error table), and security from `security=`.
What it cannot see is added here, by each route's `operation_class` (`Documented`):

- request bodies that handlers decode themselves (strictly, with msgspec: `"5"` is not a number),
  so Litestar cannot see their type. msgspec's own JSON Schema for the body type is converted and
  inlined (Litestar replaces configured component schemas with the ones it generates, so they
  cannot be referenced); Structs that refuse unknown fields say so with `additionalProperties`;
- response headers with their types (Litestar's `ResponseHeader` has no schema and `ResponseSpec`
  no headers): those a route names, those every problem of a status carries
  (`api.problems.PROBLEM_HEADERS`), and the `RateLimit-*` headers of every rate-limited route
  (those that can answer 429);
- event streams: OpenAPI 3.1 reads a `text/event-stream` schema as the schema of *one* event, an
  object with `event`, `id` and `data` (a string); the model a `ResponseSpec` names for the stream
  becomes the `contentSchema` of its `data` (JSON), which schemathesis checks event by event.

It also drops the 400 Litestar documents, in its own error shape, for every route with
parameters: the routes that can answer 400 document it as a problem like every other error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from litestar.exceptions import ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)

from api.problems import PROBLEM_HEADERS, PROBLEM_JSON
from shared.errors import (
    AuthenticationFailed,
    DependencyUnavailable,
    InvalidRequest,
    MalformedBody,
    RateLimited,
    UnsupportedMediaType,
)
from shared.redis_mux import RedisUnavailable

__all__ = [
    "AUTHENTICATED",
    "BODY_ERRORS",
    "COMPONENTS",
    "CREDENTIALS_ERRORS",
    "EVENT_STREAM",
    "PRINCIPAL_ERRORS",
    "QUERY_ERRORS",
    "Documented",
    "body_schema",
]

#: How a client proves who it is (`api.auth.principals.Authenticator`): any one of these.
COMPONENTS = Components(
    security_schemes={
        "accessToken": SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="An access token from `POST /api/v1/auth/login` (valid 15 minutes by default).",
        ),
        "apiKey": SecurityScheme(
            type="apiKey",
            name="X-API-Key",
            security_scheme_in="header",
            description="An API key (`tck_…`) from `POST /api/v1/auth/api-keys`.",
        ),
        "apiKeyBearer": SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="tck_… API key",
            description="An API key sent as `Authorization: Bearer tck_…`.",
        ),
    }
)
AUTHENTICATED: list[SecurityRequirement] = [{"accessToken": []}, {"apiKey": []}, {"apiKeyBearer": []}]

# What each kind of route can fail with besides its own errors (the problem+json answers follow
# from api.problems). PRINCIPAL: api.security.AccessControl authenticates (an API key is looked up
# in Redis) and spends the principal's quota. CREDENTIALS: register/login/refresh spend a quota per
# client address, failing closed without Redis. BODY: api.deps.json_body, the app's body limit and
# shared.validation.decode_body. QUERY: Litestar's parsing of typed query parameters.
PRINCIPAL_ERRORS = (AuthenticationFailed, RateLimited, RedisUnavailable)
CREDENTIALS_ERRORS = (RateLimited, DependencyUnavailable, RedisUnavailable)
BODY_ERRORS = (MalformedBody, UnsupportedMediaType, RequestEntityTooLarge, InvalidRequest)
QUERY_ERRORS = (ValidationException,)

EVENT_STREAM = "text/event-stream"

_INTEGER = Schema(type=OpenAPIType.INTEGER, minimum=0)
_STRING = Schema(type=OpenAPIType.STRING)
_HEADERS: dict[str, tuple[Schema, str]] = {
    "Location": (_STRING, "Where to poll the job."),
    "Idempotent-Replayed": (
        Schema(type=OpenAPIType.STRING, enum=["true"]),
        "`true` when an earlier request with the same Idempotency-Key and body made this job.",
    ),
    "Retry-After": (_INTEGER, "Seconds to wait before trying again."),
    "RateLimit-Limit": (_INTEGER, "Requests allowed in the tightest quota."),
    "RateLimit-Remaining": (_INTEGER, "Requests left in that quota."),
    "RateLimit-Reset": (_INTEGER, "Seconds until that quota is whole again."),
    "WWW-Authenticate": (_STRING, '`Bearer error="invalid_token"` and why.'),
}
_RATE_LIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
#: Headers always present on answers of that status (the others depend on the case).
_REQUIRED = {202: {"Location"}, 429: {"Retry-After"}}

_REF_PREFIX = "#/$defs/"
_SIMPLE = {
    "title": "title",
    "description": "description",
    "enum": "enum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "minItems": "min_items",
    "maxItems": "max_items",
    "pattern": "pattern",
    "format": "format",
    "default": "default",
    "required": "required",
}


def _strict_structs(info: msgspec.inspect.Type, found: dict[str, bool]) -> dict[str, bool]:
    """Every Struct reachable from `info`, by name: whether it refuses unknown fields."""
    if isinstance(info, msgspec.inspect.StructType):
        if info.cls.__name__ not in found:
            found[info.cls.__name__] = info.forbid_unknown_fields
            for field in info.fields:
                _strict_structs(field.type, found)
        return found
    for attr in ("type", "item_type", "key_type", "value_type"):
        if isinstance(inner := getattr(info, attr, None), msgspec.inspect.Type):
            _strict_structs(inner, found)
    for inner in getattr(info, "types", ()):
        _strict_structs(inner, found)
    return found


def _convert(node: dict[str, Any], definitions: dict[str, Any], strict: dict[str, bool]) -> Schema:
    """One JSON Schema node as Litestar's spec objects, with references inlined."""
    if "$ref" in node:
        name = node["$ref"].removeprefix(_REF_PREFIX)
        closed = {"additionalProperties": False} if strict.get(name) else {}
        return _convert(definitions[name] | closed, definitions, strict)
    fields: dict[str, Any] = {attr: node[key] for key, attr in _SIMPLE.items() if key in node}
    if "type" in node:
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        converted = [OpenAPIType(kind) for kind in kinds]
        fields["type"] = converted[0] if len(converted) == 1 else converted
    if "properties" in node:
        fields["properties"] = {
            name: _convert(child, definitions, strict) for name, child in node["properties"].items()
        }
    if "items" in node:
        fields["items"] = _convert(node["items"], definitions, strict)
    for key, attr in (("anyOf", "any_of"), ("oneOf", "one_of"), ("allOf", "all_of")):
        if key in node:
            fields[attr] = [_convert(child, definitions, strict) for child in node[key]]
    if isinstance(node.get("additionalProperties"), bool):
        fields["additional_properties"] = node["additionalProperties"]
    return Schema(**fields)


@cache
def body_schema(body_type: type[msgspec.Struct]) -> Schema:
    document = msgspec.json.schema(body_type)
    return _convert(document, document.get("$defs", {}), _strict_structs(msgspec.inspect.type_info(body_type), {}))


def _add_headers(status: int, response: OpenAPIResponse, named: Sequence[str], limited: bool) -> None:
    names = [*named, *PROBLEM_HEADERS.get(status, ())]
    if limited and status < 400:
        names.extend(_RATE_LIMIT)
    if names:
        response.headers = {
            **(response.headers or {}),
            **{
                name: OpenAPIHeader(
                    schema=_HEADERS[name][0],
                    description=_HEADERS[name][1],
                    required=name in _REQUIRED.get(status, ()),
                )
                for name in names
            },
        }


def _content(response: OpenAPIResponse | Reference) -> dict[str, OpenAPIMediaType]:
    return (response.content or {}) if isinstance(response, OpenAPIResponse) else {}


def _as_events(media: OpenAPIMediaType, types: Sequence[str]) -> None:
    """One event of the stream: `event` one of `types`, `data` the JSON of the documented model."""
    media.schema = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "event": Schema(type=OpenAPIType.STRING, enum=list(types)),
            "id": Schema(type=OpenAPIType.STRING, description="Send it as `Last-Event-ID` to resume after it."),
            "data": Schema(type=OpenAPIType.STRING, content_media_type="application/json", content_schema=media.schema),
        },
        required=["event", "data"],
    )


def Documented(  # noqa: N802 - reads as a type in decorators
    body: type[msgspec.Struct] | None = None,
    *,
    body_required: bool = True,
    headers: Mapping[int, Sequence[str]] | None = None,
    events: Sequence[str] = (),
) -> type[Operation]:
    """An operation class adding what Litestar cannot see: the request `body` and response headers.

    `headers` names the headers a route sets on its own answers, by status (e.g. `Location` on 202);
    `events` the event types of a `text/event-stream` answer.
    """
    named = dict(headers or {})

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            if body is not None and self.request_body is None:
                unknown = "; unknown fields are refused" if body.__struct_config__.forbid_unknown_fields else ""
                self.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=body_schema(body))},
                    description=f"A {body.__name__} (JSON){unknown}.",
                    required=body_required,
                )
            responses = self.responses or {}
            # Litestar documents a 400 in its own error shape for every route with parameters; the
            # routes that can answer 400 list it with problem_responses (which replaces that one).
            if "400" in responses and PROBLEM_JSON not in _content(responses["400"]):
                del responses["400"]
            limited = "429" in responses
            for status, response in responses.items():
                if isinstance(response, OpenAPIResponse):
                    _add_headers(int(status), response, named.get(int(status), ()), limited)
                if events and EVENT_STREAM in _content(response):
                    _as_events(_content(response)[EVENT_STREAM], events)

    return _Documented
