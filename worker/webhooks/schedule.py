"""When a failed delivery is tried again: the retry schedule, with jitter, honouring Retry-After.
Pure."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["MAX_RETRY_AFTER", "next_delay", "retry_after_seconds"]

#: The longest `Retry-After` honoured: a receiver cannot park a delivery for longer than a day.
MAX_RETRY_AFTER = 24 * 3600.0


def next_delay(
    tries: int,
    schedule: Sequence[float],
    *,
    jitter: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after `tries` failed attempts of this round; None when the
    schedule is used up. `schedule[i]` is the delay before attempt i + 1 (the first is at once).

    Jitter spreads each delay by up to `jitter` of it either way, so that the deliveries of an
    outage do not all come back together. A receiver's `Retry-After` is honoured: never sooner
    (up to `MAX_RETRY_AFTER`).
    """
    if tries >= len(schedule):
        return None
    delay = schedule[tries]
    if jitter and delay:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header (seconds or an HTTP date) in seconds from now; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
