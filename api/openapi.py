"""OpenAPI for request bodies that handlers decode themselves.

Handlers read raw bytes and decode them with msgspec (strictly: `"5"` is not a number), so
Litestar cannot see the body type. `JsonBody(T)` gives a route an operation class whose request
body is msgspec's own JSON Schema for `T`, converted to Litestar's spec objects and inlined
(Litestar replaces configured component schemas with the ones it generates, so they cannot be
referenced). Structs that refuse unknown fields say so with `additionalProperties: false`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from shared import schemas

__all__ = ["JsonBody", "body_schema"]

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


def _forbids_unknown_fields(name: str) -> bool:
    kind = getattr(schemas, name, None)
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct) and kind.__struct_config__.forbid_unknown_fields


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> Schema:
    """One JSON Schema node as Litestar's spec objects, with references inlined."""
    if "$ref" in node:
        name = node["$ref"].removeprefix(_REF_PREFIX)
        strict = {"additionalProperties": False} if _forbids_unknown_fields(name) else {}
        return _convert(definitions[name] | strict, definitions)
    fields: dict[str, Any] = {attr: node[key] for key, attr in _SIMPLE.items() if key in node}
    if "type" in node:
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        converted = [OpenAPIType(kind) for kind in kinds]
        fields["type"] = converted[0] if len(converted) == 1 else converted
    if "properties" in node:
        fields["properties"] = {name: _convert(child, definitions) for name, child in node["properties"].items()}
    if "items" in node:
        fields["items"] = _convert(node["items"], definitions)
    for key, attr in (("anyOf", "any_of"), ("oneOf", "one_of"), ("allOf", "all_of")):
        if key in node:
            fields[attr] = [_convert(child, definitions) for child in node[key]]
    if isinstance(node.get("additionalProperties"), bool):
        fields["additional_properties"] = node["additionalProperties"]
    return Schema(**fields)


@cache
def body_schema(body_type: type[msgspec.Struct]) -> Schema:
    document = msgspec.json.schema(body_type)
    return _convert(document, document.get("$defs", {}))


def JsonBody(body_type: type[msgspec.Struct]) -> type[Operation]:  # noqa: N802 - reads as a type in decorators
    """An operation class whose request body is `body_type`."""

    @dataclass
    class _WithJsonBody(Operation):
        def __post_init__(self) -> None:
            if self.request_body is None:
                self.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=body_schema(body_type))},
                    description=f"A {body_type.__name__} (JSON); unknown fields are refused.",
                    required=True,
                )

    return _WithJsonBody
