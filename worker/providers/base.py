"""What every checklist provider offers the task: trip in, checklist out, or a `ProviderError`."""

from __future__ import annotations

from typing import Protocol

from shared.schemas import Checklist, TripRequest

__all__ = ["ChecklistProvider"]


class ChecklistProvider(Protocol):
    name: str

    def generate(self, trip: TripRequest) -> Checklist:
        """Write a checklist for `trip`; raise a `shared.errors.ProviderError` on failure."""
        ...

    def close(self) -> None:
        """Release per-process resources (HTTP connections)."""
        ...
