"""The offline provider: a deterministic, knowledge-based checklist that needs no network.

Used when no Groq key is configured and, with `LLM_FALLBACK=offline`, once Groq attempts are
exhausted. Its answers say `provider: "offline"`, so nobody mistakes them for an LLM's.
"""

from __future__ import annotations

from shared.schemas import Checklist, ChecklistItem, GeneratedBy, TripRequest
from worker.providers.base import Generation
from worker.providers.facts import TripFacts, derive_facts
from worker.providers.offline.geo import Gazetteer, gazetteer
from worker.providers.offline.rules import RULES, Draft
from worker.providers.parse import finalise, item_id

__all__ = ["OFFLINE_MODEL", "OfflineProvider", "drafts_for", "to_item"]

#: Bumped whenever the rules change, so stored answers say which rules wrote them.
OFFLINE_MODEL = "trip-rules-2"


def _warnings(facts: TripFacts) -> list[str]:
    trip = facts.trip
    warnings: list[str] = []
    if not facts.stops:
        warnings.append(f"'{trip.location}' was not recognised; country-specific advice is missing.")
    elif facts.unresolved:
        missing = ", ".join(f"'{part}'" for part in facts.unresolved)
        warnings.append(f"{missing} was not recognised; advice for it is missing.")
    if facts.stops and facts.international is not False:
        countries = ", ".join(facts.countries[:4])
        warnings.append(f"Check visa and entry rules for {countries} for your nationality.")
        warnings.append(f"Read your government's travel advice for {countries}.")
    if facts.altitude_risk:
        warnings.append("Altitude sickness can be serious: ask a doctor before you go, and descend if it worsens.")
    if trip.start_date is None:
        warnings.append("Add start_date for season-specific advice; check the forecast before you pack.")
    if trip.language.split("-")[0].lower() != "en":
        warnings.append("The offline generator writes in English only.")
    return warnings


def drafts_for(facts: TripFacts) -> list[Draft]:
    """Every rule's items for these facts, in rule order (duplicates included)."""
    return [draft for rule in RULES for draft in rule(facts)]


def to_item(draft: Draft) -> ChecklistItem:
    return ChecklistItem(
        id=item_id(draft.text),
        text=draft.text,
        category=draft.category,
        priority=draft.priority,
        details=draft.details,
        due=draft.due,
        quantity=draft.quantity,
    )


class OfflineProvider:
    name = "offline"

    def __init__(self, places: Gazetteer | None = None) -> None:
        self.places = places or gazetteer()
        self.generated_by = GeneratedBy(provider="offline", model=OFFLINE_MODEL)

    def facts(self, trip: TripRequest) -> TripFacts:
        return derive_facts(trip, self.places)

    def checklist(self, trip: TripRequest) -> Checklist:
        facts = self.facts(trip)
        items = [to_item(draft) for draft in drafts_for(facts)]
        where = " & ".join(stop.place.name for stop in facts.stops[:3]) if facts.stops else trip.location
        title = f"{trip.days}-day {trip.occasion} trip to {where}"
        return finalise(title, items, _warnings(facts), self.generated_by)

    def generate(self, trip: TripRequest) -> Generation:
        return Generation(self.checklist(trip))

    def close(self) -> None:
        """Nothing to release: the gazetteer is shared by the process."""
