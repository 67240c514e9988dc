"""The offline generator against the checked-in evaluation set: the regression floor `make eval` reports."""

from __future__ import annotations

from evaluation.score import evaluate


def test_the_offline_generator_meets_its_floor_on_the_evaluation_set() -> None:
    report = evaluate()

    missing = {trip.name: trip.missing for trip in report.trips if trip.missing}
    wrong = {trip.name: trip.wrong for trip in report.trips if trip.wrong}
    assert len(report.trips) >= 40
    assert report.recall >= 0.9, missing
    assert report.wrong == 0, wrong
