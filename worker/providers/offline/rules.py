"""The offline generator's knowledge: facts derived from a trip, and rules that turn them into items.

Pure functions over `TripFacts`; no I/O. Each rule looks at one aspect of the trip (documents,
money, climate, transport, travelers, lodging, activities, occasion, health, home) and returns
the items that aspect calls for. `offline.py` runs them all and assembles the checklist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from shared.schemas import Category, Priority, TripRequest
from worker.providers.offline.geo import Place

__all__ = ["RULES", "Draft", "TripFacts", "derive_facts"]

Climate = str  # "hot" | "warm" | "mild" | "cold" | "unknown"


@dataclass(frozen=True, slots=True)
class Draft:
    """An item before ids are assigned."""

    text: str
    category: Category
    priority: Priority
    details: str | None = None
    due: int | None = None
    quantity: int | None = None


@dataclass(frozen=True, slots=True)
class TripFacts:
    trip: TripRequest
    destination: Place | None
    origin: Place | None
    international: bool | None  # None: cannot tell (origin or destination unknown)
    climate: Climate
    season: str | None  # "summer" | "winter" | "spring" | "autumn" | "wet" | "dry"
    adults: int
    children: int
    infants: int
    words: frozenset[str]  # lower-case words from occasion, notes, activities, preferences, location

    @property
    def travelers(self) -> int:
        return self.adults + self.children + self.infants

    @property
    def nights(self) -> int:
        return max(self.trip.days - 1, 0)

    def mentions(self, *words: str) -> bool:
        return any(word in self.words for word in words)


_WORD = re.compile(r"[a-z]+")
_NORTH_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
                  6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}  # fmt: skip
_FLIP = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}
_COLD_WORDS = ("ski", "skiing", "snowboard", "snowboarding", "snow", "arctic", "glacier", "lapland", "winter")
_HOT_WORDS = ("beach", "desert", "safari", "tropical", "island", "surf", "surfing", "snorkeling", "diving")


def _season(day: date | None, latitude: float | None) -> str | None:
    if day is None or latitude is None:
        return None
    if abs(latitude) < 23.5:
        # In the tropics the year turns on rain, not temperature; May-October is the northern wet season.
        wet = day.month in range(5, 11)
        return "wet" if (wet if latitude >= 0 else not wet) else "dry"
    season = _NORTH_SEASONS[day.month]
    return season if latitude >= 0 else _FLIP[season]


def _climate(latitude: float | None, season: str | None, words: frozenset[str]) -> Climate:
    if any(word in words for word in _COLD_WORDS):
        return "cold"
    if latitude is not None:
        absolute = abs(latitude)
        if absolute < 23.5:
            return "hot"
        if absolute > 60:
            return "cold" if season in ("winter", "autumn", "spring", None) else "mild"
        if season == "summer":
            return "warm" if absolute < 45 else "mild"
        if season == "winter":
            return "cold" if absolute > 32 else "mild"
        if season is not None:
            return "mild"
    if any(word in words for word in _HOT_WORDS):
        return "warm"
    return "unknown"


def derive_facts(trip: TripRequest, destination: Place | None, origin: Place | None) -> TripFacts:
    """Everything the rules reason from, computed once."""
    text = " ".join([trip.location, trip.occasion, trip.notes or "", *trip.activities, *trip.preferences])
    words = frozenset(_WORD.findall(text.casefold()))
    international = None
    if destination is not None and origin is not None:
        international = destination.country.code != origin.country.code
    latitude = destination.latitude if destination else None
    season = _season(trip.start_date, latitude)
    travelers = trip.travelers
    return TripFacts(
        trip=trip,
        destination=destination,
        origin=origin,
        international=international,
        climate=_climate(latitude, season, words),
        season=season,
        adults=travelers.adults if travelers else 1,
        children=travelers.children if travelers else 0,
        infants=travelers.infants if travelers else 0,
        words=words,
    )


def documents(f: TripFacts) -> list[Draft]:
    items = [Draft("Carry a government-issued photo ID", "documents", "high")]
    country = f.destination.country.name if f.destination else "your destination"
    if f.international is not False and (f.international or f.trip.transport == "plane"):
        maybe = "" if f.international else " (if you cross a border)"
        items.append(
            Draft(
                f"Check every passport is valid for 6+ months after return{maybe}",
                "documents",
                "high",
                details=f"Many countries, {country} possibly among them, refuse entry on passports close to expiry.",
                due=30,
                quantity=f.travelers if f.travelers > 1 else None,
            )
        )
        items.append(Draft(f"Check visa and entry requirements for {country}", "documents", "high", due=30))
        items.append(Draft("Buy travel insurance that covers medical care abroad", "documents", "high", due=14))
        items.append(Draft("Keep digital and paper copies of passports and bookings", "documents", "medium", due=2))
    if f.trip.transport == "car":
        items.append(Draft("Pack driving licence and vehicle registration", "documents", "high"))
        if f.international:
            items.append(Draft("Check whether you need an International Driving Permit", "documents", "medium", due=21))
    if f.children or f.infants:
        items.append(Draft("Bring children's ID or birth certificates", "documents", "high"))
    return items


def money(f: TripFacts) -> list[Draft]:
    items = [Draft("Bring a payment card and some cash", "money", "high")]
    destination = f.destination
    if f.international and destination and destination.country.currency:
        name = destination.country.currency_name or destination.country.currency
        items.append(Draft(f"Get some {name} ({destination.country.currency}) for arrival", "money", "medium", due=3))
    if f.international is not False:
        items.append(Draft("Tell your bank you are travelling and check foreign card fees", "money", "medium", due=3))
    if f.trip.days > 7:
        items.append(Draft("Carry a backup card, stored apart from your main one", "money", "medium"))
    return items


def electronics(f: TripFacts) -> list[Draft]:
    items = [
        Draft("Phone and charger", "electronics", "high"),
        Draft("Download offline maps of the area", "electronics", "medium", due=1),
    ]
    if f.trip.days > 2 or f.trip.transport in ("plane", "train", "bus"):
        items.append(Draft("Charged power bank", "electronics", "medium"))
    destination, origin = f.destination, f.origin
    if destination and destination.country.plugs:
        plugs = "/".join(destination.country.plugs)
        volts = f", {destination.country.voltage} V" if destination.country.voltage else ""
        if origin is None or not set(destination.country.plugs) & set(origin.country.plugs):
            items.append(
                Draft(
                    f"Travel adapter for plug type {plugs}",
                    "electronics",
                    "high" if f.international else "medium",
                    details=f"Sockets in {destination.country.name} take type {plugs}{volts}.",
                )
            )
    if f.international:
        items.append(Draft("Arrange roaming or a local SIM/eSIM", "electronics", "medium", due=3))
    return items


def clothing(f: TripFacts) -> list[Draft]:
    sets = min(f.trip.days, 7)
    items = [
        Draft("Underwear and socks", "clothing", "high", quantity=min(f.trip.days + 1, 8)),
        Draft("Everyday outfits", "clothing", "medium", quantity=sets),
        Draft("Comfortable walking shoes", "clothing", "medium"),
        Draft("Sleepwear", "clothing", "low"),
    ]
    if f.trip.days > 7:
        items.append(
            Draft(
                "Plan laundry or pack travel detergent",
                "clothing",
                "low",
                details=f"{f.trip.days} days is more than a week of clothes.",
            )
        )
    by_climate = {
        "cold": [
            Draft("Warm coat, hat and gloves", "clothing", "high"),
            Draft("Thermal base layers", "clothing", "medium", quantity=2),
        ],
        "hot": [
            Draft("Light, breathable clothing", "clothing", "medium"),
            Draft("Sun hat and sunglasses", "clothing", "medium"),
        ],
        "warm": [Draft("Sun hat and sunglasses", "clothing", "medium")],
        "mild": [Draft("A warm layer for cool evenings", "clothing", "medium")],
        "unknown": [
            Draft(
                "Layers for changing weather",
                "clothing",
                "medium",
                details="Check the forecast a few days before leaving.",
            )
        ],
    }
    items += by_climate[f.climate]
    if f.season in ("wet", "autumn", "spring") or f.mentions("rain", "hiking", "trekking"):
        items.append(Draft("Rain jacket or umbrella", "clothing", "medium"))
    if f.mentions("beach", "swim", "swimming", "pool", "snorkeling", "diving", "surf", "surfing", "spa"):
        items.append(Draft("Swimwear", "clothing", "medium", quantity=2 if f.trip.days > 3 else 1))
    return items


def toiletries(f: TripFacts) -> list[Draft]:
    items = [
        Draft("Toothbrush and toothpaste", "toiletries", "high"),
        Draft("Deodorant and personal hygiene items", "toiletries", "medium"),
    ]
    if f.trip.transport == "plane":
        items.append(Draft("Put liquids under 100 ml in a clear bag for security", "toiletries", "medium", due=1))
    if f.climate in ("hot", "warm") or f.mentions("beach", "ski", "skiing", "hiking"):
        items.append(Draft("Sunscreen (SPF 30+)", "toiletries", "high" if f.climate == "hot" else "medium"))
    if f.climate == "hot" or f.mentions("camping", "hiking", "safari", "jungle"):
        items.append(Draft("Insect repellent", "toiletries", "medium"))
    if f.trip.accommodation in ("hostel", "camping"):
        items.append(Draft("Quick-dry towel", "toiletries", "medium"))
    return items


def health(f: TripFacts) -> list[Draft]:
    items = [
        Draft(
            "Prescription medicines for the whole trip plus spare",
            "health",
            "high",
            details="Keep them in your hand luggage with the prescriptions.",
            quantity=None,
        ),
        Draft("Small first-aid kit and pain relief", "health", "medium"),
    ]
    if f.climate == "hot" and f.international:
        country = f.destination.country.name if f.destination else "the destination"
        items.append(Draft(f"Check recommended vaccinations for {country}", "health", "high", due=42))
    if f.trip.transport in ("car", "bus") or f.trip.accommodation == "cruise" or f.mentions("boat", "ferry"):
        items.append(Draft("Motion-sickness remedy", "health", "low"))
    if f.trip.transport == "plane" and f.trip.days >= 1:
        items.append(Draft("Refillable water bottle (empty through security)", "health", "low"))
    return items


def transport(f: TripFacts) -> list[Draft]:
    mode = f.trip.transport
    if mode == "plane":
        return [
            Draft("Check in online and save boarding passes", "transport", "high", due=1),
            Draft("Check the airline's baggage allowance", "transport", "medium", due=2),
            Draft("Plan the trip to the airport", "transport", "medium", due=1),
        ]
    if mode == "car":
        return [
            Draft("Service the car: tyres, oil, lights", "transport", "high", due=3),
            Draft("Plan the route, fuel or charging stops and tolls", "transport", "medium", due=1),
            Draft("Emergency kit: warning triangle, vest, spare tyre", "transport", "medium"),
        ]
    if mode == "train":
        return [
            Draft("Book train tickets and seat reservations", "bookings", "high", due=14),
            Draft("Save tickets offline and check the departure station", "transport", "medium", due=1),
        ]
    if mode == "bus":
        return [
            Draft("Book bus tickets", "bookings", "high", due=7),
            Draft("Neck pillow and snacks for the ride", "transport", "low"),
        ]
    return [Draft("Confirm how you will get there and back", "transport", "high", due=7)]


def lodging(f: TripFacts) -> list[Draft]:
    kind = f.trip.accommodation
    if f.nights == 0:
        return []
    items = [
        Draft(
            "Confirm accommodation for every night",
            "bookings",
            "high",
            due=7,
            quantity=None,
            details=f"{f.nights} night(s).",
        )
    ]
    extras = {
        "camping": [
            Draft("Tent, sleeping bags and mats", "activities", "high", quantity=None),
            Draft("Headlamp with spare batteries", "electronics", "medium"),
            Draft("Camping stove, fuel and cookware", "activities", "medium"),
        ],
        "hostel": [
            Draft("Padlock for lockers", "other", "medium"),
            Draft("Earplugs and eye mask", "other", "low"),
        ],
        "rental": [Draft("Save check-in instructions and the host's contact", "bookings", "medium", due=1)],
        "cruise": [
            Draft("Cruise boarding documents and luggage tags", "documents", "high", due=3),
            Draft("Formal outfit for dinners on board", "clothing", "low"),
        ],
        "friends_family": [Draft("A small gift for your hosts", "other", "low", due=2)],
        "hotel": [Draft("Save the hotel address in the local language", "bookings", "low")],
    }
    if kind in extras:
        items += extras[kind]
    return items


_ACTIVITY_GEAR: dict[str, list[Draft]] = {
    "hiking": [
        Draft("Broken-in hiking boots", "clothing", "high"),
        Draft("Daypack, water and trail snacks", "activities", "medium"),
    ],
    "skiing": [
        Draft("Ski goggles, helmet and gloves", "activities", "high"),
        Draft("Book ski passes and equipment rental", "bookings", "medium", due=7),
    ],
    "beach": [Draft("Beach towel and bag", "activities", "low")],
    "diving": [Draft("Dive certification card and logbook", "documents", "high")],
    "swimming": [Draft("Goggles", "activities", "low")],
    "cycling": [Draft("Helmet and bike lock", "activities", "medium")],
    "camping": [Draft("Headlamp with spare batteries", "electronics", "medium")],
    "museums": [Draft("Book museum tickets with timed entry", "bookings", "low", due=7)],
    "business": [Draft("Laptop, charger and presentation files", "electronics", "high")],
    "photography": [Draft("Camera, spare batteries and memory cards", "electronics", "medium")],
    "running": [Draft("Running shoes and kit", "clothing", "low")],
}
_SYNONYMS = {"hike": "hiking", "trekking": "hiking", "ski": "skiing", "snowboarding": "skiing",
             "scuba": "diving", "snorkeling": "swimming", "swim": "swimming", "bike": "cycling",
             "museum": "museums", "photo": "photography", "conference": "business", "meeting": "business",
             "work": "business", "run": "running", "marathon": "running"}  # fmt: skip


def activities(f: TripFacts) -> list[Draft]:
    items: list[Draft] = []
    matched: set[str] = set()
    for word in sorted(f.words):
        key = _SYNONYMS.get(word, word)
        if key in _ACTIVITY_GEAR and key not in matched:
            matched.add(key)
            items += _ACTIVITY_GEAR[key]
    for activity in f.trip.activities:
        words = set(_WORD.findall(activity.casefold()))
        if not {_SYNONYMS.get(word, word) for word in words} & matched:
            items.append(Draft(f"Gear and bookings for {activity}", "activities", "medium", due=7))
    return items


def occasion(f: TripFacts) -> list[Draft]:
    if f.mentions("wedding", "gala", "ceremony", "funeral"):
        return [
            Draft(f"Formal outfit and shoes for the {f.trip.occasion}", "clothing", "high"),
            Draft("Gift or card", "other", "medium", due=3),
        ]
    if f.mentions("business", "conference", "meeting", "work", "client"):
        return [
            Draft("Business attire", "clothing", "high"),
            Draft("Business cards and meeting agenda", "documents", "medium", due=1),
        ]
    if f.mentions("birthday", "anniversary", "honeymoon"):
        return [Draft("Book the special dinner or activity", "bookings", "medium", due=14)]
    return []


def kids(f: TripFacts) -> list[Draft]:
    items: list[Draft] = []
    if f.children:
        items += [
            Draft("Snacks and entertainment for the journey", "kids", "medium"),
            Draft("Children's medicines (fever, allergies)", "kids", "high"),
        ]
        if f.trip.transport == "car":
            items.append(Draft("Child car seats", "kids", "high", quantity=f.children))
    if f.infants:
        days = f.trip.days
        items += [
            Draft("Nappies", "kids", "high", quantity=min(999, f.infants * days * 6)),
            Draft("Baby food, bottles and formula", "kids", "high"),
            Draft("Stroller or baby carrier", "kids", "medium"),
        ]
        if f.trip.transport == "car":
            items.append(Draft("Infant car seat", "kids", "high", quantity=f.infants))
    return items


def home(f: TripFacts) -> list[Draft]:
    items = [Draft("Lock windows and doors; take the house keys", "home", "medium")]
    if f.trip.days > 3:
        items += [
            Draft("Empty the fridge and take out the rubbish", "home", "low", due=0),
            Draft("Arrange care for pets and plants", "home", "medium", due=7),
            Draft("Pause deliveries or ask someone to collect mail", "home", "low", due=3),
        ]
    return items


def preferences(f: TripFacts) -> list[Draft]:
    return [Draft(f"Pack for your preference: {pref}", "other", "low") for pref in f.trip.preferences]


RULES: tuple[Callable[[TripFacts], list[Draft]], ...] = (
    documents, money, health, transport, lodging, electronics, clothing, toiletries,
    kids, activities, occasion, preferences, home,
)  # fmt: skip
