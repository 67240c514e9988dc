"""The offline provider: a deterministic, knowledge-based checklist that needs no network.

Used when no Groq key is configured and, with `LLM_FALLBACK=offline`, once Groq attempts are
exhausted. Its answers say `provider: "offline"`, so nobody mistakes them for an LLM's.
"""

from __future__ import annotations

from shared.schemas import Checklist, ChecklistItem, GeneratedBy, TripRequest
from worker.providers.offline.geo import Gazetteer, gazetteer
from worker.providers.offline.rules import RULES, TripFacts, derive_facts
from worker.providers.parse import finalise, item_id

__all__ = ["OFFLINE_MODEL", "OfflineProvider"]

#: Bumped whenever the rules change, so stored answers say which rules wrote them.
OFFLINE_MODEL = "trip-rules-1"


def _warnings(facts: TripFacts) -> list[str]:
    trip = facts.trip
    warnings: list[str] = []
    if facts.destination is None:
        warnings.append(f"'{trip.location}' was not recognised; country-specific advice is missing.")
    elif facts.international is not False:
        warnings.append(f"Check visa and entry rules for {facts.destination.country.name} for your nationality.")
        warnings.append(f"Read your government's travel advice for {facts.destination.country.name}.")
    if trip.start_date is None:
        warnings.append("Add start_date for season-specific advice; check the forecast before you pack.")
    if trip.language.split("-")[0].lower() != "en":
        warnings.append("The offline generator writes in English only.")
    return warnings


class OfflineProvider:
    name = "offline"

    def __init__(self, places: Gazetteer | None = None) -> None:
        self.places = places or gazetteer()
        self.generated_by = GeneratedBy(provider="offline", model=OFFLINE_MODEL)

    def facts(self, trip: TripRequest) -> TripFacts:
        destination = self.places.resolve(trip.location)
        origin = self.places.resolve(trip.origin) if trip.origin else None
        return derive_facts(trip, destination, origin)

    def generate(self, trip: TripRequest) -> Checklist:
        facts = self.facts(trip)
        drafts = [draft for rule in RULES for draft in rule(facts)]
        items = [
            ChecklistItem(
                id=item_id(draft.text),
                text=draft.text,
                category=draft.category,
                priority=draft.priority,
                details=draft.details,
                due=draft.due,
                quantity=draft.quantity,
            )
            for draft in drafts
        ]
        title = (
            f"{trip.days}-day {trip.occasion} trip to {facts.destination.name if facts.destination else trip.location}"
        )
        return finalise(title, items, _warnings(facts), self.generated_by)

    def close(self) -> None:
        """Nothing to release: the gazetteer is shared by the process."""
