"""Decoding and normalising client input: pure functions, no I/O.

msgspec enforces types, bounds and unknown fields while decoding; this module adds what needs the
decoded value: whitespace stripping (then the bounds again), control characters and date rules.
Every failure is an `InvalidRequest` naming the field as a JSON path.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TypeVar

import msgspec

from shared.errors import InvalidRequest, MalformedBody
from shared.schemas import TripRequest

__all__ = ["decode_body", "normalise_trip"]

T = TypeVar("T")

_PATH = re.compile(r" - at `(?P<path>[^`]+)`$")
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<name>[^`]+)`")
# Tab and newline are ordinary in free text; every other control character is refused.
_ALLOWED_CONTROLS_IN_NOTES = frozenset("\n\t")


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode JSON `body` into `kind`, mapping msgspec errors to 4xx errors that name the field."""
    if not body.strip():
        raise MalformedBody("the request body is empty; send a JSON object")
    # JSON is UTF-8 (RFC 8259). Checked first and on the whole body: msgspec raises a bare
    # UnicodeDecodeError only for the strings it decodes, and may report a wrong type (a 422) before
    # it reaches a bad byte. `isascii` spares the usual all-ASCII body a copy.
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError as exc:
            raise MalformedBody(f"the request body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc), field=_field_of(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"the request body is not valid JSON: {exc}") from None


def _field_of(message: str) -> str:
    """The JSON path a msgspec error is about: `$.days`, `$.travelers.adults`, `$.surprise`."""
    match = _PATH.search(message)
    path = match.group("path") if match else "$"
    named = _NAMED_FIELD.match(message)
    return f"{path}.{named.group('name')}" if named else path


def _clean(value: str, path: str, *, minimum: int, maximum: int, multiline: bool = False) -> str:
    allowed = _ALLOWED_CONTROLS_IN_NOTES if multiline else frozenset()
    for char in value:
        if char not in allowed and unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise InvalidRequest(f"control characters are not allowed - at `{path}`", field=path)
    stripped = value.strip()
    if len(stripped) < minimum:
        raise InvalidRequest(
            f"must have at least {minimum} non-blank character(s) - at `{path}`",
            field=path,
        )
    if len(stripped) > maximum:  # pragma: no cover - msgspec already bounds the unstripped value
        raise InvalidRequest(f"must have at most {maximum} characters - at `{path}`", field=path)
    return stripped


def _clean_list(values: list[str], path: str) -> list[str]:
    cleaned: list[str] = []
    seen: set[str] = set()
    for index, value in enumerate(values):
        item = _clean(value, f"{path}[{index}]", minimum=1, maximum=50)
        if item.casefold() not in seen:  # repeated entries add nothing to a checklist
            seen.add(item.casefold())
            cleaned.append(item)
    return cleaned


def normalise_trip(trip: TripRequest, prefix: str = "$") -> TripRequest:
    """Strip and check free text, check dates against `days`; return the normalised request."""
    location = _clean(trip.location, f"{prefix}.location", minimum=2, maximum=100)
    occasion = _clean(trip.occasion, f"{prefix}.occasion", minimum=2, maximum=100)
    origin = None
    if trip.origin is not None:
        origin = _clean(trip.origin, f"{prefix}.origin", minimum=2, maximum=100)
    notes = None
    if trip.notes is not None:
        notes = _clean(trip.notes, f"{prefix}.notes", minimum=0, maximum=500, multiline=True) or None
    if trip.end_date is not None:
        if trip.start_date is None:
            raise InvalidRequest(f"end_date needs start_date - at `{prefix}.end_date`", field=f"{prefix}.end_date")
        if trip.end_date < trip.start_date:
            raise InvalidRequest(f"end_date is before start_date - at `{prefix}.end_date`", field=f"{prefix}.end_date")
        span = (trip.end_date - trip.start_date).days + 1
        if span != trip.days:
            raise InvalidRequest(
                f"start_date..end_date covers {span} day(s) but days is {trip.days} - at `{prefix}.days`",
                field=f"{prefix}.days",
            )
    accommodation = None
    if trip.accommodation is not None:
        accommodation = _clean(trip.accommodation, f"{prefix}.accommodation", minimum=1, maximum=50)
    if trip.travelers is not None and trip.travelers.adults + trip.travelers.children == 0:
        raise InvalidRequest(
            f"at least one adult or child must travel - at `{prefix}.travelers`", field=f"{prefix}.travelers"
        )
    return msgspec.structs.replace(
        trip,
        location=location,
        occasion=occasion,
        origin=origin,
        notes=notes,
        accommodation=accommodation,
        preferences=_clean_list(trip.preferences, f"{prefix}.preferences"),
        activities=_clean_list(trip.activities, f"{prefix}.activities"),
    )
