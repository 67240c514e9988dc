"""One delivery attempt: claim → sign → POST → log the outcome and schedule what follows.

Attempts share the worker's thread pool with checklists, so a process runs at most `concurrency`
at once, and at most half of those to one receiver host: a task that finds no slot free does not
wait in its task slot, it hands its delivery back to Redis for a moment later (the recovery sweep
sends it again). A receiver that hangs therefore holds a few slots at most, each for at most the
timeout, and neither checklists nor other receivers wait for it.

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
from urllib.parse import urlsplit

import msgspec

from shared import metrics
from shared.observability import REQUEST_ID_HTTP_HEADER, current_context
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


def _count(answer: Response | DeliveryFailed, outcome: Outcome, duration: float | None) -> None:
    """One attempt in `tripcheck_webhook_deliveries_total`: delivered, retrying, failed, or refused
    (never sent, never will be: a deleted or disabled endpoint, a forbidden address); its time when
    a request was made."""
    if outcome.outcome == "succeeded":
        label = "delivered"
    elif isinstance(answer, DeliveryFailed) and not answer.retry:
        label = "refused"
    else:
        label = outcome.outcome
    metrics.WEBHOOK_DELIVERIES.labels(label).inc()
    if duration is not None:
        metrics.WEBHOOK_DURATION.observe(duration)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    endpoint: dict[bytes, bytes]
    refused: DeliveryFailed | None  # the attempt ends before any request (a deleted endpoint, ...)

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "") if self.refused is None else ""


class _Slots:
    """Delivery slots of this process: `total` at once, at most `per_host` to one receiver host,
    so that one receiver that hangs holds half of them at most. Never blocks."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.per_host = max(1, total // 2)
        self._lock = threading.Lock()
        self._running = 0
        self._hosts: dict[str, int] = {}

    def take(self) -> bool:
        with self._lock:
            if self._running >= self.total:
                return False
            self._running += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._running -= 1

    def take_host(self, host: str) -> bool:
        with self._lock:
            if self._hosts.get(host, 0) >= self.per_host:
                return False
            self._hosts[host] = self._hosts.get(host, 0) + 1
            return True

    def give_back_host(self, host: str) -> None:
        with self._lock:
            self._hosts[host] -= 1
            if not self._hosts[host]:
                del self._hosts[host]


@dataclass
class Deliverer:
    store: SyncWebhookStore
    transport: Transport
    settings: WebhookSettings
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.slots = _Slots(self.settings.concurrency)

    def run(self, delivery_id: str) -> str:
        """Attempt delivery `delivery_id` if it is due; returns what happened (for the task's log)."""
        if not self.slots.take():
            self.store.postpone(delivery_id, BUSY_DELAY)
            return "busy"
        try:
            claim = self.store.claim(delivery_id, self.settings.hold)
            if isinstance(claim, str):
                return claim
            context = current_context()
            if context is not None:  # the attempt's lines name the job (if any) and its owner
                context.job_id, context.owner = claim.job or None, claim.owner
            target = self._target(claim)
            if not self.slots.take_host(target.host):
                self.store.unclaim(claim, BUSY_DELAY)
                return "busy"
            try:
                return self.attempt(claim, target)
            finally:
                self.slots.give_back_host(target.host)
        finally:
            self.slots.give_back()

    def _target(self, claim: Claim) -> _Target:
        """Where the attempt goes: the job's webhook, or the endpoint's current URL."""
        if not claim.endpoint:
            return _Target(claim.url, {}, None)
        endpoint = self.store.endpoint(claim.endpoint)
        if not endpoint:
            return _Target("", {}, DeliveryFailed("the endpoint was deleted", retry=False))
        url = endpoint.get(b"url", b"").decode()
        if endpoint.get(b"enabled") != b"1" and claim.event != "ping":
            reason = endpoint.get(b"disabled_reason", b"").decode() or "by its owner"
            return _Target(url, endpoint, DeliveryFailed(f"the endpoint is disabled ({reason})", retry=False))
        return _Target(url, endpoint, None)

    def attempt(self, claim: Claim, target: _Target) -> str:
        started = self.clock()
        answer = target.refused or self._send(claim, target)
        duration = self.clock() - started
        outcome = judge(answer, claim.tries, self.settings, is_endpoint=bool(claim.endpoint), rng=self.rng)
        _count(answer, outcome, None if target.refused else duration)
        attempted_at = _at(claim.now)
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
            url=target.url,
            attempted_at=attempted_at,
            duration_ms=round(duration * 1000, 1),
            status_code=status,
            error=error,
            outcome=outcome.outcome,  # type: ignore[arg-type]  # one of the three
            next_retry_at=_at(claim.now + duration + outcome.delay) if outcome.outcome == "retrying" else None,
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
        # The receiver's host only: webhook URLs often carry a token in their path or query.
        log.info(
            "webhook %s attempt %d (%s to %s): %s%s",
            claim.webhook_id,
            claim.attempt,
            claim.event,
            urlsplit(target.url).hostname or "-",
            outcome.outcome,
            f" ({error})" if error else "",
        )
        return result

    def _send(self, claim: Claim, target: _Target) -> Response | DeliveryFailed:
        secrets = self.store.signing_secrets(claim, target.endpoint, new_secret())
        headers = signed_headers(claim.webhook_id, int(time.time()), claim.body, secrets)
        context = current_context()
        if context is not None and context.request_id:
            # The receiver can tie the delivery to the request that made its job (the client's
            # own X-Request-ID, if it sent one); outside the signed content, like any header.
            headers[REQUEST_ID_HTTP_HEADER] = context.request_id
        try:
            return self.transport.post(target.url, claim.body, headers)
        except DeliveryFailed as failed:
            return failed
