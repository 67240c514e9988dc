"""The one retry policy: which failures get another attempt, and after how long. Pure.

Retryable errors back off exponentially (`base * 2**(attempt-1)`, capped) with "equal jitter":
half the delay is fixed, half random, so a burst of failures spreads out without ever retrying
immediately. A delay the server asked for (`retry-after`) wins over the backoff, within the cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.errors import ProviderError, RetryableProviderError
from shared.settings import WorkerSettings

__all__ = ["RetryPolicy"]

_jitter = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base: float
    cap: float

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RetryPolicy:
        return cls(max_attempts=settings.max_attempts, base=settings.backoff_base, cap=settings.backoff_cap)

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """`attempt` is the number of the attempt that just failed (1-based)."""
        return isinstance(error, RetryableProviderError) and attempt < self.max_attempts

    def delay(self, error: ProviderError, attempt: int, rng: random.Random | None = None) -> float:
        if isinstance(error, RetryableProviderError) and error.retry_after is not None:
            return min(self.cap, max(0.0, error.retry_after))
        ceiling = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        return ceiling / 2 + (rng or _jitter).uniform(0, ceiling / 2)
