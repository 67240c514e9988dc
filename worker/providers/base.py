"""What every checklist provider offers the task: trip in, `Generation` out, or a `ProviderError`.

A `Generation` carries the checklist and what it cost upstream (`Spend`: calls, the tokens the
model reported, the rate-limit headers of the last response), so the worker can record usage on
the job and settle the shared Groq budget. A failed attempt's cost rides on the error (`spend`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shared.schemas import Checklist, TripRequest, Usage

__all__ = ["ChecklistProvider", "Generation", "Spend", "UpstreamLimits", "spend_of"]


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """What Groq's `x-ratelimit-*` headers said was left (tokens per minute, requests per day)."""

    remaining_tokens: int | None = None
    reset_tokens: float | None = None  # seconds until the token limit is fully replenished
    remaining_requests: int | None = None
    reset_requests: float | None = None


@dataclass(frozen=True, slots=True)
class Spend:
    calls: int = 0
    usage: Usage | None = None
    limits: UpstreamLimits | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    checklist: Checklist
    spend: Spend = field(default_factory=Spend)


def spend_of(error: BaseException) -> Spend:
    """What a failed attempt cost (nothing, if the provider did not say)."""
    spend = getattr(error, "spend", None)
    return spend if isinstance(spend, Spend) else Spend()


class ChecklistProvider(Protocol):
    name: str

    def generate(self, trip: TripRequest) -> Generation:
        """Write a checklist for `trip`; raise a `shared.errors.ProviderError` on failure."""
        ...

    def close(self) -> None:
        """Release per-process resources (HTTP connections)."""
        ...
