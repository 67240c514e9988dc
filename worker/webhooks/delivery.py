"""One delivery attempt: claim → sign → POST → log the outcome and schedule what follows.

Attempts share the worker's thread pool with checklists, so a process runs at most `concurrency`
at once: a task that finds every delivery slot taken does not wait in its task slot, it hands its
delivery back to Redis for a moment later (the recovery sweep sends it again). A receiver that
hangs therefore holds at most a few slots, each for at most the timeout.

What an answer means (Standard Webhooks' conventions): 2xx is delivered; 410 Gone disables the
endpoint (or ends a job's own webhook); anything else, a timeout or a connection error is tried
again on the retry schedule, no sooner than a `Retry-After` asks; after the last attempt the
delivery has failed. An endpoint whose deliveries have all failed for `disable_after` is disabled,
with the reason shown to its owner. An attempt holds its delivery until the timeout and some
slack have passed: a worker killed mid-attempt leaves it to the sweep, which sends it again with
the same `webhook-id`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from shared.settings import WebhookSettings
from shared.webhook_schemas import DeliveryAttempt, new_secret
from shared.webhooks import log_member
from worker.webhooks.schedule import next_delay, retry_after_seconds
from worker.webhooks.signing import signed_headers
from worker.webhooks.store import Claim, Finish, SyncWebhookStore
from worker.webhooks.transport import DeliveryFailed, Response, Transport

__all__ = ["BUSY_DELAY", "Deliverer", "Outcome", "judge"]

log = logging.getLogger(__name__)

#: Seconds a delivery waits in Redis when this worker has no delivery slot free.
BUSY_DELAY = 0.5
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome: str  # succeeded | retrying | failed
    delay: float = 0.0
    disable_reason: str = ""


def judge(
    answer: Response | DeliveryFailed,
    tries: int,
    settings: WebhookSettings,
    *,
    is_endpoint: bool,
    rng: random.Random | None = None,
) -> Outcome:
    """What an attempt's answer means for the delivery. Pure."""
    if isinstance(answer, Response) and 200 <= answer.status < 300:
        return Outcome("succeeded")
    if isinstance(answer, Response) and answer.status == 410:
        reason = "the receiver answered 410 Gone" if is_endpoint else ""
        return Outcome("failed", disable_reason=reason)
    if isinstance(answer, DeliveryFailed) and not answer.retry:
        return Outcome("failed")
    retry_after = retry_after_seconds(answer.retry_after) if isinstance(answer, Response) else None
    delay = next_delay(tries, settings.retry_schedule, jitter=settings.jitter, retry_after=retry_after, rng=rng)
    return Outcome("failed") if delay is None else Outcome("retrying", delay)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Deliverer:
    store: SyncWebhookStore
    transport: Transport
    settings: WebhookSettings
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.settings.concurrency)

    def run(self, delivery_id: str) -> str:
        """Attempt delivery `delivery_id` if it is due; returns what happened (for the task's log)."""
        if not self.slots.acquire(blocking=False):
            self.store.postpone(delivery_id, BUSY_DELAY)
            return "busy"
        try:
            claim = self.store.claim(delivery_id, self.settings.hold)
            if isinstance(claim, str):
                return claim
            return self.attempt(claim)
        finally:
            self.slots.release()

    def attempt(self, claim: Claim) -> str:
        started = self.clock()
        url, answer = self._send(claim)
        duration = self.clock() - started
        outcome = judge(answer, claim.tries, self.settings, is_endpoint=bool(claim.endpoint), rng=self.rng)
        attempted_at = _at(claim.now)
        finished_at = claim.now + duration
        error = answer.reason if isinstance(answer, DeliveryFailed) else None
        status = answer.status if isinstance(answer, Response) else None
        if status is not None and outcome.outcome != "succeeded":
            error = f"the receiver answered {status}"
        entry = DeliveryAttempt(
            delivery_id=claim.id,
            webhook_id=claim.webhook_id,
            attempt=claim.attempt,
            event=claim.event,
            job_id=claim.job or None,
            endpoint_id=claim.endpoint or None,
            url=url,
            attempted_at=attempted_at,
            duration_ms=round(duration * 1000, 1),
            status_code=status,
            error=error,
            outcome=outcome.outcome,  # type: ignore[arg-type]  # one of the three
            next_retry_at=_at(finished_at + outcome.delay) if outcome.outcome == "retrying" else None,
        )
        failing = f"every delivery failed for {self.settings.disable_after:g}s; the last: {error}"
        result = self.store.finish(
            claim,
            Finish(
                outcome=outcome.outcome,
                delay=outcome.delay,
                entry=_encoder.encode(entry),
                member=log_member(attempted_at, claim.id, claim.attempt),
                disable_reason=outcome.disable_reason,
                failure=failing,
            ),
            self.settings.disable_after,
        )
        log.info(
            "webhook %s attempt %d (%s to %s): %s%s",
            claim.webhook_id,
            claim.attempt,
            claim.event,
            url or "-",
            outcome.outcome,
            f" ({error})" if error else "",
        )
        return result

    def _send(self, claim: Claim) -> tuple[str, Response | DeliveryFailed]:
        """The URL the attempt went to and its answer."""
        url = claim.url
        endpoint: dict[bytes, bytes] = {}
        if claim.endpoint:
            endpoint = self.store.endpoint(claim.endpoint)
            if not endpoint:
                return "", DeliveryFailed("the endpoint was deleted", retry=False)
            url = endpoint.get(b"url", b"").decode()
            if endpoint.get(b"enabled") != b"1" and claim.event != "ping":
                reason = endpoint.get(b"disabled_reason", b"").decode() or "by its owner"
                return url, DeliveryFailed(f"the endpoint is disabled ({reason})", retry=False)
        secrets = self.store.signing_secrets(claim, endpoint, new_secret())
        headers = signed_headers(claim.webhook_id, int(time.time()), claim.body, secrets)
        try:
            return url, self.transport.post(url, claim.body, headers)
        except DeliveryFailed as failed:
            return url, failed
