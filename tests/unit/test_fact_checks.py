"""A model's checklist checked against the facts the service verified, and corrected."""

from __future__ import annotations

import json
from typing import Any

from shared.schemas import Checklist, GeneratedBy, Travelers, TripRequest
from tests.fakes.groq_server import good_checklist
from worker.providers.checks import correct, violations
from worker.providers.facts import TripFacts, derive_facts
from worker.providers.offline.geo import gazetteer
from worker.providers.parse import parse_checklist

BY = GeneratedBy(provider="groq", model="test-model")


def facts(**fields: object) -> TripFacts:
    base: dict[str, object] = {"location": "Berlin, Germany", "days": 4, "transport": "train", "occasion": "visit"}
    return derive_facts(TripRequest(**(base | fields)), gazetteer())  # type: ignore[arg-type]


def answer(*extra: str, category: str = "other") -> Checklist:
    raw: dict[str, Any] = good_checklist(items=12)
    raw["items"] += [
        {
            "text": text,
            "category": category,
            "priority": "high",
            "details": None,
            "due_days_before": None,
            "quantity": None,
        }
        for text in extra
    ]
    return parse_checklist(json.dumps(raw), BY)


def rules(checklist: Checklist, trip: TripFacts) -> list[str]:
    return [violation.rule for violation in violations(checklist, trip)]


def test_an_answer_that_fits_the_facts_breaks_no_rule() -> None:
    assert rules(answer(), facts(origin="Munich, Germany")) == []


def test_an_adapter_where_the_plugs_fit_is_a_violation() -> None:
    trip = facts(origin="Vienna, Austria")
    checklist = answer("Buy a travel adapter for type C", "Check every passport is valid")

    assert rules(checklist, trip) == ["adapter_unneeded"]


def test_a_missing_adapter_where_the_plugs_differ_is_a_violation() -> None:
    assert "adapter_missing" in rules(answer("Check your passport"), facts(location="London", origin="Berlin"))


def test_passport_and_visa_items_on_a_domestic_trip_are_violations() -> None:
    trip = facts(location="Lyon, France", origin="Paris, France")

    assert rules(answer("Apply for a visa", "Renew your passport"), trip) == ["passport_domestic"]


def test_an_international_trip_without_a_passport_item_is_a_violation() -> None:
    assert rules(answer(), facts(origin="Vienna, Austria")) == ["passport_missing"]


def test_items_for_children_when_none_travel_are_violations() -> None:
    trip = facts(origin="Munich, Germany")

    assert rules(answer("Pack a stroller"), trip) == ["kids_without_kids"]
    assert rules(answer("Snacks", category="kids"), trip) == ["kids_without_kids"]
    assert rules(answer("Pack a stroller"), facts(origin="Munich", travelers=Travelers(infants=1))) == []


def test_unknown_facts_prove_nothing() -> None:
    trip = facts(location="Somewhere Unknown")  # no origin, no destination: nothing to contradict

    assert rules(answer("Buy a travel adapter", "Apply for a visa", "Kids' snacks"), trip) == ["kids_without_kids"]


def test_correcting_removes_contradictions_adds_what_is_missing_and_says_so() -> None:
    trip = facts(location="London", origin="Berlin, Germany")
    checklist = answer("Pack a stroller")

    corrected = correct(checklist, trip, violations(checklist, trip))

    texts = [item.text for item in corrected.items]
    assert "Pack a stroller" not in texts
    assert any("adapter for plug type G" in text for text in texts)
    assert any("passport" in text.lower() for text in texts)
    assert violations(corrected, trip) == []
    assert any(w.startswith("Corrected against verified facts: removed") for w in corrected.warnings)
    assert any("added a travel adapter for plug type G" in w for w in corrected.warnings)


def test_a_correction_never_leaves_fewer_than_ten_items() -> None:
    trip = facts(origin="Munich, Germany")
    raw = good_checklist(items=10)
    for item in raw["items"][:4]:
        item["text"] = f"{item['text']} for the kids"
    checklist = parse_checklist(json.dumps(raw), BY)

    corrected = correct(checklist, trip, violations(checklist, trip))

    assert len(corrected.items) == 10
    assert not any("kids" in item.text for item in corrected.items)
