"""The offline generator's rules: pure functions from `TripFacts` to draft items.

Each rule looks at one aspect of the trip (documents, money, climate, transport, travellers,
lodging, activities, occasion, health, home) and returns the items that aspect calls for;
`offline.py` runs them all and assembles the checklist. Knowledge that grows (gear per activity,
per lodging kind, per kind of trip) lives in the tables below, keyed by what the facts say, not in
if-chains; the facts themselves come from `worker.providers.facts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.schemas import Category, Priority
from worker.providers.facts import ALTITUDE_SICKNESS_FROM, TripFacts

__all__ = ["RULES", "Draft", "TripFacts"]


@dataclass(frozen=True, slots=True)
class Draft:
    """An item before ids are assigned."""

    text: str
    category: Category
    priority: Priority
    details: str | None = None
    due: int | None = None
    quantity: int | None = None


def documents(f: TripFacts) -> list[Draft]:
    items = [Draft("Carry a government-issued photo ID", "documents", "high")]
    countries = f.countries
    where = ", ".join(countries[:4]) if countries else "your destination"
    if f.international is not False and (f.international or f.trip.transport == "plane"):
        maybe = "" if f.international else " (if you cross a border)"
        items.append(
            Draft(
                f"Check every passport is valid for 6+ months after return{maybe}",
                "documents",
                "high",
                details=f"Many countries, {where} possibly among them, refuse entry on passports close to expiry.",
                due=30,
                quantity=f.travelers if f.travelers > 1 else None,
            )
        )
        items.append(Draft(f"Check visa and entry requirements for {where}", "documents", "high", due=30))
        items.append(Draft("Buy travel insurance that covers medical care abroad", "documents", "high", due=14))
        items.append(Draft("Keep digital and paper copies of passports and bookings", "documents", "medium", due=2))
    if f.trip.transport == "car" or f.lodging == "campervan":
        items.append(Draft("Pack driving licence and vehicle registration", "documents", "high"))
        if f.international:
            items.append(Draft("Check whether you need an International Driving Permit", "documents", "medium", due=21))
    if f.children or f.infants:
        if f.international:
            items.append(Draft("Passport for each child and infant", "documents", "high", due=42))
        items.append(Draft("Bring children's ID or birth certificates", "documents", "high"))
    if f.altitude_risk and f.mentions(*_TREK_WORDS):
        items.append(
            Draft(
                f"Check your insurance covers trekking up to {f.max_elevation:,} m",
                "documents",
                "high",
                details="Many policies stop at 2,500-4,000 m unless trekking cover is added.",
                due=14,
            )
        )
    return items


def money(f: TripFacts) -> list[Draft]:
    items = [Draft("Bring a payment card and some cash", "money", "high")]
    origin_currency = f.origin.country.currency if f.origin else None
    currencies: dict[str, str] = {}
    for stop in f.stops:
        country = stop.place.country
        if country.currency and country.currency != origin_currency:
            currencies.setdefault(country.currency, country.currency_name or country.currency)
    if f.international and len(currencies) > 2:
        codes = ", ".join(currencies)
        items.append(Draft(f"Check which currency each stop uses ({codes})", "money", "medium", due=3))
    elif f.international:
        for code, name in currencies.items():
            items.append(Draft(f"Get some {name} ({code}) for arrival", "money", "medium", due=3))
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
    if f.adapter_plugs:
        plugs = "/".join(f.adapter_plugs)
        needed = set(f.adapter_plugs)
        where = ", ".join(dict.fromkeys(s.place.country.name for s in f.stops if needed & set(s.place.country.plugs)))
        items.append(
            Draft(
                f"Travel adapter for plug type {plugs}",
                "electronics",
                "high",
                details=f"Sockets in {where} take type {plugs}; yours do not fit them.",
            )
        )
    elif f.adapter_plugs is None and f.destination and f.destination.country.plugs:
        # Where home is unknown, name the sockets so the traveller can tell.
        plugs = "/".join(dict.fromkeys(p for stop in f.stops for p in stop.place.country.plugs))
        items.append(Draft(f"Travel adapter for plug type {plugs}, if your plugs differ", "electronics", "medium"))
    if f.international:
        items.append(Draft("Arrange roaming or a local SIM/eSIM", "electronics", "medium", due=3))
    return items


_BY_CLIMATE: dict[str, list[Draft]] = {
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
_SWIM_WORDS = (
    "beach",
    "swim",
    "swimming",
    "pool",
    "snorkeling",
    "snorkelling",
    "diving",
    "surf",
    "surfing",
    "spa",
    "island",
    "islands",
    "seaside",
    "coast",
    "lake",
)
_RAIN_WORDS = ("rain", "hiking", "trekking", "trek", "festival", "camping", "sailing")
_WORK_WORDS = ("business", "conference", "meeting", "meetings", "work", "client")


def clothing(f: TripFacts) -> list[Draft]:
    items = [
        Draft("Underwear and socks", "clothing", "high", quantity=min(f.trip.days + 1, 8)),
        Draft("Everyday outfits", "clothing", "medium", quantity=min(f.trip.days, 7)),
        Draft("Comfortable walking shoes", "clothing", "medium"),
        Draft("Sleepwear", "clothing", "low"),
    ]
    if f.trip.days > 7:
        items.append(
            Draft(
                "Plan laundry or pack travel detergent",
                "clothing",
                "medium" if f.trip.days > 14 else "low",
                details=f"{f.trip.days} days is more than a week of clothes.",
            )
        )
    if len(f.climates - {"unknown"}) > 1:
        items.append(
            Draft(
                "Pack for both the coldest and the warmest stop",
                "clothing",
                "medium",
                details="Your stops differ in climate; layers cover both.",
            )
        )
    for climate in ("cold", "mild", "warm", "hot", "unknown"):
        if climate in f.climates:
            items += _BY_CLIMATE[climate]
    rainy = f.seasons & {"wet", "autumn", "spring"} or "mild" in f.climates
    if rainy or f.mentions(*_RAIN_WORDS) or f.lodging in ("camping", "hut", "campervan"):
        items.append(Draft("Rain jacket or umbrella", "clothing", "medium"))
    # In hot weather there is usually water to swim in, but not on a business trip or a trek.
    swim_weather = bool(f.climates & {"hot", "warm"}) and not f.mentions(*_WORK_WORDS, *_TREK_WORDS)
    if f.mentions(*_SWIM_WORDS) or f.lodging in ("cruise", "boat") or swim_weather:
        items.append(Draft("Swimwear", "clothing", "medium", quantity=2 if f.trip.days > 3 else 1))
    return items


def winter_north(f: TripFacts) -> list[Draft]:
    """Winter at high latitudes: ice underfoot, deep cold, little daylight."""
    if not f.high_latitude_winter:
        return []
    return [
        Draft("Thermal base layers", "clothing", "medium", quantity=2),
        Draft("Warm coat, hat and gloves", "clothing", "high"),
        Draft("Insulated, waterproof winter boots", "clothing", "high"),
        Draft(
            "Ice grips or traction cleats for your shoes",
            "clothing",
            "medium",
            details="Pavements and paths are icy for months.",
        ),
        Draft("Hand warmers and a spare pair of gloves", "clothing", "low"),
    ]


def toiletries(f: TripFacts) -> list[Draft]:
    items = [
        Draft("Toothbrush and toothpaste", "toiletries", "high"),
        Draft("Deodorant and personal hygiene items", "toiletries", "medium"),
    ]
    if f.trip.transport == "plane":
        items.append(Draft("Put liquids under 100 ml in a clear bag for security", "toiletries", "medium", due=1))
    sunny = f.climates & {"hot", "warm"} or f.altitude_risk or f.lodging in ("cruise", "boat", "camping")
    if sunny or f.mentions("beach", "ski", "skiing", "hiking", "trekking", "festival", "sailing"):
        items.append(Draft("Sunscreen (SPF 30+)", "toiletries", "high" if "hot" in f.climates else "medium"))
    outdoors = f.mentions("camping", "hiking", "safari", "jungle", "festival") or f.lodging == "camping"
    # Outdoors means insects, except where only cold weather is expected (a husky safari in Lapland).
    if "hot" in f.climates or (outdoors and f.climates != {"cold"}):
        items.append(Draft("Insect repellent", "toiletries", "medium"))
    if f.lodging in ("hostel", "camping", "hut"):
        items.append(Draft("Quick-dry towel", "toiletries", "medium"))
    return items


def health(f: TripFacts) -> list[Draft]:
    items = [
        Draft(
            "Prescription medicines for the whole trip plus spare",
            "health",
            "high",
            details="Keep them in your hand luggage with the prescriptions.",
        ),
        Draft("Small first-aid kit and pain relief", "health", "medium"),
    ]
    if "hot" in f.climates and f.international:
        tropical = [stop.place.country.name for stop in f.stops if stop.climate in ("hot", "mild")]
        where = ", ".join(dict.fromkeys(tropical[:3])) or "the destination"
        items.append(Draft(f"Check recommended vaccinations for {where}", "health", "high", due=42))
    water = f.lodging in ("cruise", "boat") or f.mentions(
        "boat", "ferry", "ferries", "cruise", "sailing", "yacht", "catamaran"
    )
    if f.trip.transport in ("car", "bus") or water:
        text = "Seasickness remedy (tablets or wristbands)" if water else "Motion-sickness remedy"
        items.append(Draft(text, "health", "medium" if water else "low"))
    if f.trip.transport == "plane":
        items.append(Draft("Refillable water bottle (empty through security)", "health", "low"))
    return items


def altitude(f: TripFacts) -> list[Draft]:
    """Above ~2,500 m: acclimatisation, cold nights and strong sun, whatever the latitude."""
    if not f.altitude_risk or f.max_elevation is None:
        return []
    high = next(stop.place.name for stop in f.stops if stop.place.elevation == f.max_elevation)
    items = [
        Draft(
            "Plan acclimatisation days and learn the signs of altitude sickness",
            "health",
            "high",
            details=f"{high} is at {f.max_elevation:,} m; altitude sickness is common above "
            f"{ALTITUDE_SICKNESS_FROM:,} m. Go up slowly and descend if symptoms worsen.",
        ),
        Draft("Ask a doctor about altitude sickness medication", "health", "medium", due=21),
        Draft("Warm fleece or down layer for cold nights at altitude", "clothing", "high"),
        Draft("Lip balm with SPF and glacier-grade sunglasses (strong UV at altitude)", "toiletries", "medium"),
    ]
    if f.children or f.infants:
        items.append(Draft("Ask a doctor whether the altitude is safe for your children", "kids", "high", due=21))
    return items


_TREK_WORDS = ("trek", "trekking", "hike", "hiking", "hillwalking", "mountaineering", "climb", "climbing", "trail")


def trekking(f: TripFacts) -> list[Draft]:
    if not f.mentions(*_TREK_WORDS):
        return []
    items = [
        Draft("Broken-in hiking boots", "clothing", "high"),
        Draft("Daypack, water and trail snacks", "activities", "medium"),
        Draft("Head torch with spare batteries", "electronics", "medium"),
        Draft("Blister plasters", "health", "medium"),
    ]
    remote = f.altitude_risk or f.lodging in ("hut", "camping") or f.trip.days > 3
    if f.climates & {"cold", "mild"}:
        items.append(Draft("Warm fleece or down layer for cold nights at altitude", "clothing", "high"))
    if remote:
        items.append(Draft("Water purification tablets or a filter", "health", "high"))
        items.append(Draft("Trekking poles", "activities", "low"))
    if f.altitude_risk or f.lodging == "hut":
        items.append(
            Draft(
                "Warm sleeping bag",
                "activities",
                "high",
                details="Teahouses and huts are unheated at night; a bag rated well below freezing.",
            )
        )
    return items


_FESTIVAL_WORDS = ("festival", "festivals", "glastonbury", "coachella", "burning", "rave", "concert", "carnival")


def festival(f: TripFacts) -> list[Draft]:
    if not f.mentions(*_FESTIVAL_WORDS):
        return []
    return [
        Draft("Festival tickets or wristband", "bookings", "high", due=1),
        Draft("Wet wipes and hand sanitiser", "toiletries", "medium"),
        Draft("Rain poncho", "clothing", "medium"),
        Draft("Earplugs", "other", "medium"),
        Draft("Sunscreen (SPF 30+)", "toiletries", "medium"),
    ]


_ON_WATER: dict[str, list[Draft]] = {
    "cruise": [
        Draft("Cruise boarding documents and luggage tags", "documents", "high", due=3),
        Draft("Formal outfit for formal nights on board", "clothing", "medium"),
        Draft("Day bag for shore excursions", "activities", "low"),
    ],
    "sailing": [
        Draft("Non-marking deck shoes", "clothing", "high"),
        Draft("Dry bag for phone and valuables", "activities", "high"),
        Draft("Windproof, waterproof jacket", "clothing", "high"),
        Draft("Sunglasses with a strap", "clothing", "low"),
    ],
}
_SAILING_WORDS = ("sailing", "sail", "yacht", "catamaran", "boat", "kayaking", "kayak", "rafting", "liveaboard")


def on_water(f: TripFacts) -> list[Draft]:
    items: list[Draft] = []
    if f.lodging == "cruise" or f.mentions("cruise"):
        items += _ON_WATER["cruise"]
        if f.climates & {"cold", "mild"}:
            items.append(Draft("Warm fleece and windproof layer for the deck", "clothing", "medium"))
        if f.international is not False:
            items.append(Draft("Check passport and visa rules for every port of call", "documents", "high", due=30))
    if f.lodging == "boat" or f.mentions(*_SAILING_WORDS):
        items += _ON_WATER["sailing"]
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


_LODGING: dict[str, list[Draft]] = {
    "camping": [
        Draft("Tent, sleeping bags and mats", "activities", "high"),
        Draft("Head torch with spare batteries", "electronics", "medium"),
        Draft("Camping stove, fuel and cookware", "activities", "medium"),
        Draft("Wet wipes and hand sanitiser", "toiletries", "medium"),
    ],
    "hostel": [
        Draft("Padlock for lockers", "other", "medium"),
        Draft("Earplugs and eye mask", "other", "low"),
    ],
    "hut": [
        Draft("Sleeping bag liner", "activities", "medium"),
        Draft("Earplugs and eye mask", "other", "low"),
        Draft("Cash for meals and hot water at the huts", "money", "medium"),
    ],
    "rental": [Draft("Save check-in instructions and the host's contact", "bookings", "medium", due=1)],
    "campervan": [
        Draft("Book campsites or check overnight parking rules", "bookings", "medium", due=7),
        Draft("Levelling blocks, hook-up cable and water hose", "transport", "medium"),
    ],
    "boat": [Draft("Check the boat's packing list: soft bags, not hard suitcases", "bookings", "medium", due=7)],
    "friends_family": [Draft("A small gift for your hosts", "other", "low", due=2)],
    "hotel": [Draft("Save the hotel address in the local language", "bookings", "low")],
}


def lodging(f: TripFacts) -> list[Draft]:
    if f.nights == 0:
        return []
    items = [Draft("Confirm accommodation for every night", "bookings", "high", due=7, details=f"{f.nights} night(s).")]
    return items + _LODGING.get(f.lodging, [])


_ACTIVITY_GEAR: dict[str, list[Draft]] = {
    "skiing": [
        Draft("Ski goggles, helmet and gloves", "activities", "high"),
        Draft("Book ski passes and equipment rental", "bookings", "medium", due=7),
    ],
    "beach": [Draft("Beach towel and bag", "activities", "low")],
    "diving": [Draft("Dive certification card and logbook", "documents", "high")],
    "swimming": [Draft("Goggles", "activities", "low")],
    "cycling": [Draft("Helmet and bike lock", "activities", "medium")],
    "museums": [Draft("Book museum tickets with timed entry", "bookings", "low", due=7)],
    "business": [Draft("Laptop, charger and presentation files", "electronics", "high")],
    "photography": [Draft("Camera, spare batteries and memory cards", "electronics", "medium")],
    "running": [Draft("Running shoes and kit", "clothing", "low")],
    "safari": [
        Draft("Binoculars", "activities", "medium"),
        Draft("Neutral-coloured clothing for game drives", "clothing", "medium"),
    ],
}
# Words that are activities handled by their own rule (trekking, festivals, water) count as known.
_HANDLED = {"hiking", "camping", "festival", "sailing"}
_SYNONYMS = {"hike": "hiking", "trekking": "hiking", "trek": "hiking", "ski": "skiing", "snowboarding": "skiing",
             "scuba": "diving", "snorkeling": "swimming", "snorkelling": "swimming", "swim": "swimming",
             "bike": "cycling", "museum": "museums", "photo": "photography", "conference": "business",
             "meeting": "business", "work": "business", "run": "running", "marathon": "running",
             "camp": "camping", "festivals": "festival", "sail": "sailing", "yacht": "sailing",
             "kayaking": "sailing", "kayak": "sailing", "cruise": "sailing", "climbing": "hiking",
             "backpacking": "hiking", "mountaineering": "hiking", "rafting": "sailing", "boat": "sailing"}  # fmt: skip


def activities(f: TripFacts) -> list[Draft]:
    items: list[Draft] = []
    matched: set[str] = set()
    for word in sorted(f.words):
        key = _SYNONYMS.get(word, word)
        if key in _ACTIVITY_GEAR and key not in matched:
            matched.add(key)
            items += _ACTIVITY_GEAR[key]
        elif key in _HANDLED:
            matched.add(key)
    for activity in f.trip.activities:
        words = {word.strip(".,") for word in activity.casefold().split()}
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
        items += [
            Draft("Nappies", "kids", "high", quantity=min(999, f.infants * f.trip.days * 6)),
            Draft("Baby food, bottles and formula", "kids", "high"),
            Draft("Stroller or baby carrier", "kids", "medium"),
        ]
        if f.trip.transport == "car":
            items.append(Draft("Infant car seat", "kids", "high", quantity=f.infants))
        if f.trip.transport == "plane":
            items.append(Draft("Book the infant's seat or lap place with the airline", "kids", "high", due=14))
    if f.children or f.infants:
        if f.climates & {"hot", "warm"} or f.altitude_risk:
            items.append(Draft("Children's sun hats and high-SPF sunscreen", "kids", "high"))
        if "cold" in f.climates:
            items.append(Draft("Warm layers, hats and mittens for the children", "kids", "high"))
        if f.lodging in ("cruise", "boat") or f.mentions("sailing", "boat", "cruise"):
            items.append(Draft("Children's life jackets (check the operator's sizes)", "kids", "high", due=7))
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


# Items are ordered by priority, then by rule: the rules about what is particular to this trip come
# before the everyday ones, so that a rich trip's cap of 40 items drops the everyday ones first.
RULES: tuple[Callable[[TripFacts], list[Draft]], ...] = (
    documents, health, altitude, on_water, trekking, festival, winter_north, kids, clothing, toiletries,
    electronics, money, lodging, activities, occasion, transport, preferences, home,
)  # fmt: skip
