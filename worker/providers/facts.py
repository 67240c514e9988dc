"""The facts the service can verify about a trip, derived once and shared by every provider.

The offline generator reasons from them; the Groq provider sends them to the model as a second,
delimited data block ("facts the service verified") and checks the model's answer against them.
Everything here is pure once the gazetteer's data is loaded: the same trip gives the same facts.

- where: each stop resolved to a country, latitude and (for high places) elevation; the origin;
  what could not be resolved;
- international or domestic (`None` when it cannot be told), the currencies, the plug types a
  traveller from the origin needs an adapter for;
- per stop: hemisphere-aware season from the dates, and a climate from latitude, season and
  elevation; the coldest and hottest of them;
- the highest elevation (altitude sickness from about 2,500 m) and winter at high latitudes;
- lodging as a normalised kind (`data/accommodation.json`), travellers, length, words of the trip.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from shared.schemas import TripRequest
from worker.providers.offline.geo import Gazetteer, Place, fold

__all__ = [
    "ALTITUDE_SICKNESS_FROM",
    "Stop",
    "TripFacts",
    "derive_facts",
    "facts_as_data",
    "lodging_kind",
]

Climate = str  # "cold" | "mild" | "warm" | "hot" | "unknown"
_CLIMATE_ORDER = ("cold", "mild", "warm", "hot")
#: Metres above which altitude sickness becomes a real risk for most people.
ALTITUDE_SICKNESS_FROM = 2500
#: Latitude from which winter means snow, ice and short days; from `_SNOWY_LATITUDE` in countries
#: with continental winters (Montreal, Moscow, Almaty) too.
_HIGH_LATITUDE = 55.0
_SNOWY_LATITUDE = 43.0
_SNOWY_WINTERS = frozenset({"CA", "RU", "FI", "SE", "NO", "IS", "EE", "LV", "LT", "BY", "UA", "KZ", "MN", "KG"})
_DATA = Path(__file__).parent / "offline" / "data"
_WORD = re.compile(r"[a-z]+")
_NORTH_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
                  6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}  # fmt: skip
_FLIP = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}
_COLD_WORDS = frozenset({"ski", "skiing", "snowboard", "snowboarding", "snow", "arctic", "glacier", "winter", "ice"})
_WARM_WORDS = frozenset({"beach", "desert", "safari", "tropical", "surf", "surfing", "snorkeling", "snorkelling"})


@dataclass(frozen=True, slots=True)
class Stop:
    place: Place
    season: str | None  # "summer" | "winter" | "spring" | "autumn" | "wet" | "dry"
    climate: Climate


@dataclass(frozen=True, slots=True)
class TripFacts:
    trip: TripRequest
    stops: tuple[Stop, ...]
    origin: Place | None
    unresolved: tuple[str, ...]
    international: bool | None  # None: cannot tell (origin unknown, one country)
    adapter_plugs: tuple[str, ...] | None  # plug types to adapt to; () none; None: origin unknown
    climates: frozenset[Climate]  # the coldest and the hottest stop's (and what the words say)
    lodging: str  # normalised accommodation kind, "" when not given
    max_elevation: int | None
    high_latitude_winter: bool
    adults: int
    children: int
    infants: int
    words: frozenset[str]  # lower-case words from location, occasion, notes, activities, preferences, lodging

    @property
    def destination(self) -> Place | None:
        return self.stops[0].place if self.stops else None

    @property
    def climate(self) -> Climate:
        """The coldest climate of the trip (what the warmest clothing is for)."""
        known = [climate for climate in _CLIMATE_ORDER if climate in self.climates]
        return known[0] if known else "unknown"

    @property
    def seasons(self) -> frozenset[str]:
        return frozenset(stop.season for stop in self.stops if stop.season)

    @property
    def countries(self) -> list[str]:
        return list(dict.fromkeys(stop.place.country.name for stop in self.stops))

    @property
    def travelers(self) -> int:
        return self.adults + self.children + self.infants

    @property
    def nights(self) -> int:
        return max(self.trip.days - 1, 0)

    @property
    def altitude_risk(self) -> bool:
        return self.max_elevation is not None and self.max_elevation >= ALTITUDE_SICKNESS_FROM

    def mentions(self, *words: str) -> bool:
        return any(word in self.words for word in words)


def _season(day: date | None, latitude: float | None) -> str | None:
    if day is None or latitude is None:
        return None
    if abs(latitude) < 23.5:
        # In the tropics the year turns on rain, not temperature; May-October is the northern wet season.
        wet = day.month in range(5, 11)
        return "wet" if (wet if latitude >= 0 else not wet) else "dry"
    season = _NORTH_SEASONS[day.month]
    return season if latitude >= 0 else _FLIP[season]


def _climate(latitude: float | None, season: str | None, elevation: int | None) -> Climate:
    if elevation is not None and elevation >= 3500:
        return "cold"  # nights below freezing whatever the latitude
    if latitude is None:
        return "unknown"
    absolute = abs(latitude)
    if elevation is not None and elevation >= ALTITUDE_SICKNESS_FROM:
        return "mild" if absolute < 23.5 else "cold"
    if absolute < 23.5:
        return "hot"
    if absolute < 35 and season in ("spring", "autumn"):
        return "warm"
    if absolute > 60:
        return "cold" if season in ("winter", "autumn", "spring", None) else "mild"
    if season == "summer":
        return "warm" if absolute < 45 else "mild"
    if season == "winter":
        return "cold" if absolute > 32 else "mild"
    return "mild" if season is not None or absolute > 45 else "unknown"


@cache
def _lodging_words() -> tuple[tuple[str, re.Pattern[str]], ...]:
    raw: dict[str, list[str]] = json.loads((_DATA / "accommodation.json").read_text())["kinds"]
    return tuple(
        (kind, re.compile(r"\b(?:" + "|".join(re.escape(fold(word)) for word in words) + r")\b"))
        for kind, words in raw.items()
    )


def lodging_kind(text: str | None) -> str:
    """The kind the rules know ("hotel", "boat", "hut", ...) for what the traveller wrote; "other"
    when no word is known, "" when nothing was written."""
    if not text:
        return ""
    folded = fold(text.replace("_", " "))
    for kind, pattern in _lodging_words():
        if pattern.search(folded):
            return kind
    return "other"


def _adapter(stops: list[Stop], origin: Place | None) -> tuple[str, ...] | None:
    if origin is None or not origin.country.plugs:
        return None
    home = set(origin.country.plugs)
    needed: dict[str, None] = {}
    for stop in stops:
        plugs = stop.place.country.plugs
        if plugs and not home & set(plugs):
            needed.update(dict.fromkeys(plugs))
    return tuple(needed)


def _international(stops: list[Stop], origin: Place | None) -> bool | None:
    codes = {stop.place.country.code for stop in stops}
    if origin is not None and codes:
        return codes != {origin.country.code}
    return True if len(codes) > 1 else None


def derive_facts(trip: TripRequest, places: Gazetteer) -> TripFacts:
    """Everything the rules reason from and the model is told, computed once."""
    text = " ".join([trip.location, trip.occasion, trip.notes or "", *trip.activities, *trip.preferences])
    lodging = lodging_kind(trip.accommodation)
    words = frozenset(_WORD.findall(fold(f"{text} {trip.accommodation or ''}")))
    resolved = places.resolve_all(trip.location)
    # High places named in notes or activities ("trek to Everest Base Camp") are stops too.
    mentioned = places.mentioned_high_places(" ".join([trip.occasion, trip.notes or "", *trip.activities]))
    seen = {(place.name, place.country.code) for place in resolved}
    resolved += [place for place in mentioned if (place.name, place.country.code) not in seen]
    origin_places = places.resolve_all(trip.origin) if trip.origin else []
    origin = origin_places[0] if origin_places else None
    stops = []
    for place in resolved:
        season = _season(trip.start_date, place.latitude)
        stops.append(Stop(place=place, season=season, climate=_climate(place.latitude, season, place.elevation)))
    climates = {stop.climate for stop in stops if stop.climate != "unknown"}
    ordered = [climate for climate in _CLIMATE_ORDER if climate in climates]
    chosen = {ordered[0], ordered[-1]} if ordered else set()
    if words & _COLD_WORDS:
        chosen.add("cold")
    if not chosen and words & _WARM_WORDS:
        chosen.add("warm")
    elevations = [stop.place.elevation for stop in stops if stop.place.elevation is not None]
    high_latitude_winter = any(
        stop.place.latitude is not None
        and stop.season == "winter"
        and (
            abs(stop.place.latitude) >= _HIGH_LATITUDE
            or (abs(stop.place.latitude) >= _SNOWY_LATITUDE and stop.place.country.code in _SNOWY_WINTERS)
        )
        for stop in stops
    ) or ("arctic" in words and trip.start_date is not None and trip.start_date.month in (11, 12, 1, 2, 3))
    travelers = trip.travelers
    return TripFacts(
        trip=trip,
        stops=tuple(stops),
        origin=origin,
        unresolved=tuple(places.unresolved(trip.location)),
        international=_international(stops, origin),
        adapter_plugs=_adapter(stops, origin),
        climates=frozenset(chosen or {"unknown"}),
        lodging=lodging,
        max_elevation=max(elevations) if elevations else None,
        high_latitude_winter=high_latitude_winter,
        adults=travelers.adults if travelers else 1,
        children=travelers.children if travelers else 0,
        infants=travelers.infants if travelers else 0,
        words=words,
    )


def _place_data(place: Place) -> dict[str, Any]:
    data: dict[str, Any] = {"name": place.name, "country": place.country.name, "country_code": place.country.code}
    if place.latitude is not None:
        data["latitude"] = round(place.latitude, 1)
        data["hemisphere"] = "northern" if place.latitude >= 0 else "southern"
    if place.elevation is not None:
        data["elevation_m"] = place.elevation
    if place.country.plugs:
        data["plug_types"] = list(place.country.plugs)
    if place.country.voltage:
        data["mains_voltage"] = place.country.voltage
    if place.country.currency:
        data["currency"] = f"{place.country.currency_name or place.country.currency} ({place.country.currency})"
    return data


def facts_as_data(facts: TripFacts) -> dict[str, Any]:
    """The facts as plain JSON-able data, for the model's "facts the service verified" block."""
    stops = []
    for stop in facts.stops:
        data = _place_data(stop.place)
        if stop.season:
            data["season_on_arrival"] = stop.season
        data["climate"] = stop.climate
        stops.append(data)
    result: dict[str, Any] = {
        "destinations": stops,
        "origin": _place_data(facts.origin) if facts.origin else None,
        "international": facts.international,
        "adapter_needed_for_plug_types": list(facts.adapter_plugs) if facts.adapter_plugs is not None else None,
        "trip_length_days": facts.trip.days,
        "nights": facts.nights,
        "travelers": {"adults": facts.adults, "children": facts.children, "infants": facts.infants},
        "climates_to_pack_for": sorted(facts.climates, key=(*_CLIMATE_ORDER, "unknown").index),
        "highest_elevation_m": facts.max_elevation,
        "altitude_sickness_risk": facts.altitude_risk,
        "winter_at_high_latitude": facts.high_latitude_winter,
        "lodging_kind": facts.lodging or None,
        "activities": list(facts.trip.activities),
    }
    if facts.unresolved:
        result["places_not_recognised"] = list(facts.unresolved)
    return result
