"""Scoring the offline generator against the evaluation set (`trips.json`, `concepts.json`).

Each trip lists the concepts a careful traveller expects in its checklist (`must`) and those that
would be wrong for it (`must_not`); a concept is a regular expression over item texts. Recall is
the share of expected concepts found, over every trip; a wrong item is a `must_not` concept found.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from shared.schemas import Checklist, TripRequest
from shared.validation import normalise_trip
from worker.providers.offline.offline import OfflineProvider

__all__ = ["Report", "TripScore", "evaluate", "load_cases"]

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Case:
    name: str
    trip: TripRequest
    must: list[str]
    must_not: list[str]


@dataclass
class TripScore:
    name: str
    found: list[str]
    missing: list[str]
    wrong: list[str]


@dataclass
class Report:
    trips: list[TripScore] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return sum(len(trip.found) + len(trip.missing) for trip in self.trips)

    @property
    def recall(self) -> float:
        return sum(len(trip.found) for trip in self.trips) / max(self.expected, 1)

    @property
    def wrong(self) -> int:
        return sum(len(trip.wrong) for trip in self.trips)


def _concepts() -> dict[str, re.Pattern[str]]:
    raw: dict[str, str] = json.loads((_HERE / "concepts.json").read_text())["concepts"]
    return {name: re.compile(pattern, re.IGNORECASE) for name, pattern in raw.items()}


def load_cases() -> list[Case]:
    raw: list[dict[str, Any]] = json.loads((_HERE / "trips.json").read_text())["trips"]
    return [
        Case(
            name=case["name"],
            trip=normalise_trip(msgspec.convert(case["trip"], TripRequest)),
            must=case["must"],
            must_not=case["must_not"],
        )
        for case in raw
    ]


def _present(checklist: Checklist, pattern: re.Pattern[str]) -> bool:
    return any(pattern.search(item.text) for item in checklist.items)


def evaluate(provider: OfflineProvider | None = None) -> Report:
    provider = provider or OfflineProvider()
    concepts = _concepts()
    report = Report()
    for case in load_cases():
        unknown = [name for name in case.must + case.must_not if name not in concepts]
        if unknown:
            raise KeyError(f"{case.name}: unknown concepts {unknown}")
        checklist = provider.checklist(case.trip)
        found = [name for name in case.must if _present(checklist, concepts[name])]
        report.trips.append(
            TripScore(
                name=case.name,
                found=found,
                missing=[name for name in case.must if name not in found],
                wrong=[name for name in case.must_not if _present(checklist, concepts[name])],
            )
        )
    return report
