"""Checking a model's checklist against the facts the service verified: pure functions.

The hard rules, each a contradiction the service can prove from `TripFacts`:

- an adapter item exactly when the destination's plugs do not fit the origin's (when both are known);
- passport and visa items only for international trips, and a passport item for every one;
- items for children or infants only when children or infants travel.

`violations` lists what an answer breaks (each with a sentence for the model's repair request
and one for the traveller); `correct` makes the answer obey: it removes the contradicting items,
adds the missing ones from the offline generator's own wording (and tops the list up from it,
should removals leave fewer than 10 items), and says so in `warnings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from shared.schemas import Checklist, ChecklistItem
from worker.providers.facts import TripFacts
from worker.providers.offline.offline import drafts_for, to_item
from worker.providers.parse import MAX_ITEMS, MIN_ITEMS

__all__ = ["Violation", "correct", "violations"]

_PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}
_ADAPTER = re.compile(r"\badapter", re.IGNORECASE)
_PASSPORT = re.compile(r"\bpassports?\b|\bvisas?\b", re.IGNORECASE)
_PASSPORT_ONLY = re.compile(r"\bpassports?\b", re.IGNORECASE)
_KIDS = re.compile(
    r"\b(?:child|children|kids?|infants?|bab(?:y|ies)|toddlers?|nappy|nappies|diapers?|stroller|pushchair)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # "adapter_missing", "adapter_unneeded", "passport_domestic", "passport_missing", "kids_without_kids"
    to_model: str  # for the repair request
    to_traveller: str  # for the checklist's warnings, once corrected
    remove: tuple[str, ...] = ()  # ids of the items that contradict the facts
    add_matching: re.Pattern[str] | None = None  # the offline item to add, by its text


def _items(checklist: Checklist, texts: list[str], pattern: re.Pattern[str]) -> list[ChecklistItem]:
    """The items whose text or details match; `texts` holds each item's, in order."""
    return [item for item, text in zip(checklist.items, texts, strict=True) if pattern.search(text)]


def _quoted(items: list[ChecklistItem]) -> str:
    return ", ".join(f'"{item.text}"' for item in items[:3])


def violations(checklist: Checklist, facts: TripFacts) -> list[Violation]:
    """Every hard rule `checklist` breaks, given `facts`."""
    found: list[Violation] = []
    texts = [f"{item.text} {item.details or ''}" for item in checklist.items]
    adapters = _items(checklist, texts, _ADAPTER)
    origin = facts.origin.country.name if facts.origin else "home"
    if facts.adapter_plugs and not adapters:
        plugs = "/".join(facts.adapter_plugs)
        found.append(
            Violation(
                "adapter_missing",
                f"the destination's sockets take plug type {plugs}, which plugs from {origin} do not fit: "
                "add a travel adapter item",
                f"added a travel adapter for plug type {plugs}, which plugs from {origin} do not fit",
                add_matching=_ADAPTER,
            )
        )
    if facts.adapter_plugs == () and adapters:
        found.append(
            Violation(
                "adapter_unneeded",
                f"plugs from {origin} fit the sockets at every destination: remove {_quoted(adapters)}",
                f"removed {_quoted(adapters)}: plugs from {origin} fit the sockets there",
                remove=tuple(item.id for item in adapters),
            )
        )
    passports = _items(checklist, texts, _PASSPORT)
    if facts.international is False and passports:
        found.append(
            Violation(
                "passport_domestic",
                f"the trip is domestic (within {origin}): remove the passport and visa items {_quoted(passports)}",
                f"removed {_quoted(passports)}: the trip does not leave {origin}",
                remove=tuple(item.id for item in passports),
            )
        )
    if facts.international and not any(_PASSPORT_ONLY.search(text) for text in texts):
        found.append(
            Violation(
                "passport_missing",
                "the trip is international: add an item to check passports",
                "added a passport check: the trip crosses a border",
                add_matching=_PASSPORT_ONLY,
            )
        )
    kids = [item for item in checklist.items if item.category == "kids" or _KIDS.search(item.text)]
    if not facts.children and not facts.infants and kids:
        found.append(
            Violation(
                "kids_without_kids",
                f"no children or infants travel: remove {_quoted(kids)}",
                f"removed {_quoted(kids)}: no children or infants travel",
                remove=tuple(item.id for item in kids),
            )
        )
    return found


def correct(checklist: Checklist, facts: TripFacts, found: list[Violation]) -> Checklist:
    """`checklist` made to obey the hard rules: contradicting items out, missing ones in, each
    correction named in `warnings`."""
    if not found:
        return checklist
    removed = {item_id for violation in found for item_id in violation.remove}
    items = [item for item in checklist.items if item.id not in removed]
    offline = [to_item(draft) for draft in drafts_for(facts)]
    for violation in found:
        if violation.add_matching is not None:
            addition = next((item for item in offline if violation.add_matching.search(item.text)), None)
            if addition is not None:
                # Added items are important (documents, power): first, before the cap is applied.
                items = [addition, *items][:MAX_ITEMS]
    if len(items) < MIN_ITEMS:
        # Removing contradictions can leave too few items: top up with the offline generator's own.
        present = {item.text.casefold() for item in items}
        spare = [item for item in offline if item.text.casefold() not in present]
        items += spare[: MIN_ITEMS - len(items)]
    items.sort(key=lambda item: _PRIORITY_ORDER[item.priority])  # stable: the model's order within a priority
    notes = [f"Corrected against verified facts: {violation.to_traveller}." for violation in found]
    return msgspec.structs.replace(checklist, items=items, warnings=[*checklist.warnings, *notes][:10])
