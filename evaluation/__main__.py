"""`make eval`: score the offline generator on the evaluation set and print recall and wrong items."""

from __future__ import annotations

import sys

from evaluation.score import evaluate


def main() -> int:
    report = evaluate()
    for trip in report.trips:
        if trip.missing or trip.wrong:
            print(f"  {trip.name}: missing {trip.missing or '-'}, wrong {trip.wrong or '-'}")
    found = sum(len(trip.found) for trip in report.trips)
    print(f"trips: {len(report.trips)}")
    print(f"recall: {report.recall:.1%} ({found} of {report.expected} expected concepts)")
    print(f"wrong items: {report.wrong}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
