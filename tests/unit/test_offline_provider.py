"""The offline generator reasons from the trip; these pin the reasoning, not a fixed list."""

from __future__ import annotations

from datetime import date

import pytest

from shared.schemas import Checklist, Travelers, TripRequest
from worker.providers.offline.geo import gazetteer
from worker.providers.offline.offline import OFFLINE_MODEL, OfflineProvider

PROVIDER = OfflineProvider()


def generate(**fields: object) -> Checklist:
    base: dict[str, object] = {"location": "Paris, France", "days": 4, "transport": "train", "occasion": "visit"}
    return PROVIDER.checklist(TripRequest(**(base | fields)))  # type: ignore[arg-type]


def texts(checklist: Checklist) -> list[str]:
    return [item.text for item in checklist.items]


def has(checklist: Checklist, fragment: str) -> bool:
    return any(fragment.lower() in text.lower() for text in texts(checklist))


def test_answers_say_they_are_offline() -> None:
    assert generate().generated_by.provider == "offline"
    assert generate().generated_by.model == OFFLINE_MODEL


def test_output_is_deterministic_and_within_bounds() -> None:
    first, second = generate(days=30, activities=["hiking"]), generate(days=30, activities=["hiking"])

    assert first == second
    for trip in (generate(days=1, transport="bus", location="Nowhere Special"), generate(days=365)):
        assert 10 <= len(trip.items) <= 40
        assert len(set(texts(trip))) == len(trip.items)


@pytest.mark.parametrize(
    ("text", "country"),
    [("Tokyo", "JP"), ("Lisboa", "PT"), ("Paris, France", "FR"), ("Japan", "JP"), ("USA", "US"), ("Zürich", "CH")],
)
def test_places_resolve_from_geonames_data(text: str, country: str) -> None:
    (place,) = gazetteer().resolve_all(text)

    assert place.country.code == country


def test_a_domestic_trip_needs_no_passport_or_adapter() -> None:
    checklist = generate(location="Lyon, France", origin="Paris, France")

    assert not has(checklist, "passport")
    assert not has(checklist, "adapter")
    assert not has(checklist, "Euro (EUR)")


def test_an_international_trip_needs_passport_currency_and_the_right_adapter() -> None:
    checklist = generate(location="London, United Kingdom", origin="Paris, France", transport="plane")

    assert has(checklist, "passport")
    assert has(checklist, "Pound (GBP)")
    assert has(checklist, "plug type G")
    assert any("United Kingdom" in warning for warning in checklist.warnings)


def test_no_adapter_where_the_plugs_match() -> None:
    assert not has(generate(location="Berlin, Germany", origin="Vienna, Austria"), "adapter")


def test_seasons_flip_south_of_the_equator() -> None:
    july = date(2027, 7, 1)
    oslo = generate(location="Oslo", start_date=july)
    sydney = generate(location="Sydney", start_date=july)

    assert not has(oslo, "Warm coat")
    assert has(generate(location="Oslo", start_date=date(2027, 1, 10)), "Warm coat")
    assert not has(sydney, "Sun hat")
    assert has(generate(location="Sydney", start_date=date(2027, 1, 10)), "Sun hat")


def test_tropical_destinations_bring_sun_and_insect_protection_and_vaccination_checks() -> None:
    checklist = generate(location="Bangkok", origin="Berlin", start_date=date(2027, 8, 1), transport="plane")

    assert has(checklist, "Sunscreen")
    assert has(checklist, "Insect repellent")
    assert has(checklist, "vaccinations for Thailand")
    assert has(checklist, "Rain jacket")  # August is the wet season there


def test_length_drives_quantities_and_laundry() -> None:
    short, long = generate(days=3), generate(days=20)

    def quantity(checklist: Checklist, fragment: str) -> int | None:
        return next(item.quantity for item in checklist.items if fragment in item.text)

    assert quantity(short, "Underwear") == 4
    assert quantity(long, "Underwear") == 8
    assert has(long, "laundry")
    assert not has(short, "laundry")


def test_travelling_with_an_infant_by_car() -> None:
    checklist = generate(transport="car", days=3, travelers=Travelers(adults=2, infants=1))

    nappies = next(item for item in checklist.items if item.text == "Nappies")
    assert nappies.quantity == 18
    assert has(checklist, "Infant car seat")
    assert has(checklist, "driving licence")


def test_camping_and_hostels_bring_their_gear() -> None:
    assert has(generate(accommodation="camping"), "Tent")
    assert has(generate(accommodation="hostel"), "Padlock")


def test_activities_bring_gear_and_unknown_ones_are_not_ignored() -> None:
    checklist = generate(activities=["Skiing", "falconry"])

    assert has(checklist, "Ski goggles")
    assert has(checklist, "Gear and bookings for falconry")


def test_occasions_shape_clothing() -> None:
    assert has(generate(occasion="friend's wedding"), "Formal outfit")
    assert has(generate(occasion="business conference"), "Business attire")


def test_unknown_places_and_other_languages_are_flagged_honestly() -> None:
    checklist = generate(location="Atlantis Under The Sea", language="de")

    assert any("not recognised" in warning for warning in checklist.warnings)
    assert any("English only" in warning for warning in checklist.warnings)


# Each rule, with the trip that motivated it.


def test_a_cruise_brings_port_documents_formal_nights_and_seasickness_remedies() -> None:
    checklist = generate(location="the Caribbean", origin="Miami, USA", occasion="cruise", accommodation="cruise ship")

    assert has(checklist, "port of call")
    assert has(checklist, "Cruise boarding documents")
    assert has(checklist, "formal nights")
    assert has(checklist, "Seasickness")


def test_a_cruise_in_the_north_brings_a_warm_layer_for_the_deck() -> None:
    checklist = generate(location="Norwegian fjords", occasion="cruise", start_date=date(2027, 6, 10))

    assert has(checklist, "windproof layer for the deck")


def test_sailing_brings_deck_shoes_and_a_dry_bag() -> None:
    checklist = generate(location="Split, Croatia", occasion="sailing holiday", accommodation="catamaran")

    assert has(checklist, "deck shoes")
    assert has(checklist, "Dry bag")
    assert has(checklist, "Seasickness")


def test_a_high_trek_brings_acclimatisation_a_sleeping_bag_and_water_purification() -> None:
    checklist = generate(
        location="Nepal",
        origin="London",
        days=16,
        transport="plane",
        occasion="trekking holiday",
        activities=["Everest Base Camp trek"],
        accommodation="teahouse",
        start_date=date(2027, 10, 5),
    )

    assert has(checklist, "altitude sickness")
    assert has(checklist, "Warm sleeping bag")
    assert has(checklist, "Water purification")
    assert has(checklist, "Head torch")
    assert has(checklist, "insurance covers trekking up to 5,364 m")
    assert any("Altitude sickness" in warning for warning in checklist.warnings)
    assert not has(checklist, "Swimwear")


def test_a_high_city_brings_altitude_advice_without_trekking_gear() -> None:
    checklist = generate(location="La Paz, Bolivia", transport="bus", start_date=date(2027, 7, 15))

    assert has(checklist, "altitude sickness")
    assert has(checklist, "Warm coat")
    assert not has(checklist, "sleeping bag")


def test_winter_at_high_latitudes_brings_traction_and_winter_boots() -> None:
    checklist = generate(location="Lapland", origin="Paris", occasion="husky safari", start_date=date(2027, 12, 18))

    assert has(checklist, "Ice grips")
    assert has(checklist, "winter boots")
    assert not has(checklist, "Insect repellent")  # a husky safari is no jungle
    assert not has(checklist, "Swimwear")


def test_a_festival_brings_wristbands_wipes_ponchos_and_earplugs() -> None:
    checklist = generate(location="Glastonbury, UK", occasion="music festival", accommodation="tent")

    assert has(checklist, "wristband")
    assert has(checklist, "Wet wipes")
    assert has(checklist, "Rain poncho")
    assert has(checklist, "Earplugs")
    assert has(checklist, "Tent")


def test_children_abroad_need_their_own_passports_and_protection() -> None:
    checklist = generate(
        location="Algarve",
        origin="Dublin",
        transport="plane",
        travelers=Travelers(adults=2, children=2),
        start_date=date(2027, 7, 25),
    )

    assert has(checklist, "Passport for each child")
    assert has(checklist, "Children's sun hats")


def test_children_on_a_boat_need_life_jackets() -> None:
    checklist = generate(location="Mallorca", accommodation="catamaran", travelers=Travelers(adults=2, children=1))

    assert has(checklist, "life jackets")


def test_children_at_altitude_need_a_doctors_advice() -> None:
    checklist = generate(location="Cusco, Peru", travelers=Travelers(adults=2, children=1))

    assert has(checklist, "altitude is safe for your children")


def test_a_campervan_brings_campsites_and_a_driving_licence() -> None:
    checklist = generate(location="Scottish Highlands", transport="other", accommodation="motorhome")

    assert has(checklist, "campsites")
    assert has(checklist, "driving licence")


def test_mountain_huts_bring_a_sleeping_bag_liner() -> None:
    assert has(generate(location="Innsbruck, Austria", accommodation="mountain hut"), "Sleeping bag liner")


def test_any_lodging_word_is_accepted_and_unknown_ones_change_nothing() -> None:
    assert len(generate(accommodation="a yurt by the lake").items) >= 10


def test_several_countries_with_many_currencies_get_one_currency_item() -> None:
    checklist = generate(location="Southeast Asia", origin="London", transport="plane", days=30)

    assert has(checklist, "Check which currency each stop uses")


def test_a_stop_that_is_not_recognised_is_named_in_the_warnings() -> None:
    checklist = generate(location="Rome and Atlantis Under The Sea")

    assert any("'Atlantis Under The Sea' was not recognised" in warning for warning in checklist.warnings)
