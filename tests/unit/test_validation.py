"""Trip request decoding and normalisation."""

from __future__ import annotations

from datetime import date

import pytest

from shared.errors import InvalidRequest, MalformedBody
from shared.schemas import LegacyRequest, TripRequest
from shared.validation import decode_body, normalise_trip


def trip(**fields: object) -> TripRequest:
    base: dict[str, object] = {"location": "Paris", "days": 3, "transport": "train", "occasion": "visit"}
    return TripRequest(**(base | fields))  # type: ignore[arg-type]


def test_decoding_accepts_the_legacy_fields_alone() -> None:
    decoded = decode_body(b'{"location":"Paris","days":3,"transport":"car","occasion":"visit"}', TripRequest)

    assert decoded.language == "en"
    assert decoded.preferences == []


def test_decoding_refuses_strings_for_numbers() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_body(b'{"location":"Paris","days":"3","transport":"car","occasion":"visit"}', TripRequest)

    assert caught.value.field == "$.days"


def test_legacy_paths_name_the_nested_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_body(b'{"trip_data": {"location":"Paris","days":3,"transport":"jet","occasion":"x1"}}', LegacyRequest)

    assert caught.value.field == "$.trip_data.transport"


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b"\xff\xfe"])
def test_bodies_that_are_not_json_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        decode_body(body, TripRequest)


@pytest.mark.parametrize(
    "body",
    [
        b'{"location":"Par\xffis","days":3,"transport":"car","occasion":"visit"}',  # in a string
        b'{"loca\xfftion":"Paris","days":3,"transport":"car","occasion":"visit"}',  # in a field name
        b'{"location":"Paris","days":"\xff","transport":"car","occasion":"visit"}',  # a wrong type too
        b'{"location":"\xed\xa0\x80 x","days":3,"transport":"car","occasion":"visit"}',  # a surrogate
        b'{"location":"\xc0\xafx","days":3,"transport":"car","occasion":"visit"}',  # an overlong form
    ],
)
def test_bodies_that_are_not_utf8_are_malformed_whatever_else_is_wrong(body: bytes) -> None:
    with pytest.raises(MalformedBody, match="UTF-8"):
        decode_body(body, TripRequest)


def test_utf8_beyond_ascii_is_decoded() -> None:
    body = '{"location":"Zürich 東京","days":3,"transport":"car","occasion":"visit"}'.encode()

    decoded = decode_body(body, TripRequest)

    assert decoded.location == "Zürich 東京"


def test_normalising_strips_free_text() -> None:
    cleaned = normalise_trip(trip(location="  Paris ", occasion=" visit ", origin=" Lyon ", notes="  hi  "))

    assert (cleaned.location, cleaned.occasion, cleaned.origin, cleaned.notes) == ("Paris", "visit", "Lyon", "hi")


def test_normalising_drops_repeated_preferences_ignoring_case() -> None:
    cleaned = normalise_trip(trip(preferences=["Vegan", " vegan ", "quiet"]))

    assert cleaned.preferences == ["Vegan", "quiet"]


def test_notes_may_span_lines_but_not_carry_other_control_characters() -> None:
    assert normalise_trip(trip(notes="line one\n\tline two")).notes == "line one\n\tline two"
    with pytest.raises(InvalidRequest, match="control characters"):
        normalise_trip(trip(notes="bell\x07"))


def test_blank_notes_become_none() -> None:
    assert normalise_trip(trip(notes="   ")).notes is None


def test_dates_must_span_exactly_the_days() -> None:
    assert normalise_trip(trip(days=3, start_date=date(2027, 5, 1), end_date=date(2027, 5, 3))).days == 3
    with pytest.raises(InvalidRequest) as caught:
        normalise_trip(trip(days=3, start_date=date(2027, 5, 1), end_date=date(2027, 5, 5)))
    assert caught.value.field == "$.days"


def test_a_start_date_alone_is_fine() -> None:
    assert normalise_trip(trip(start_date=date(2027, 5, 1))).start_date == date(2027, 5, 1)


def test_accommodation_is_free_text_trimmed_and_bounded() -> None:
    assert normalise_trip(trip(accommodation="  teahouse ")).accommodation == "teahouse"
    assert normalise_trip(trip(accommodation="cruise")).accommodation == "cruise"
    decoded = decode_body(
        b'{"location":"Paris","days":3,"transport":"car","occasion":"visit","accommodation":"villa with a pool"}',
        TripRequest,
    )
    assert decoded.accommodation == "villa with a pool"
    with pytest.raises(InvalidRequest) as long:
        decode_body(
            b'{"location":"Paris","days":3,"transport":"car","occasion":"visit","accommodation":"' + b"x" * 51 + b'"}',
            TripRequest,
        )
    assert long.value.field == "$.accommodation"
    with pytest.raises(InvalidRequest) as blank:
        normalise_trip(trip(accommodation="   "))
    assert blank.value.field == "$.accommodation"
    with pytest.raises(InvalidRequest, match="control characters"):
        normalise_trip(trip(accommodation="hut\x00"))
