"""The webhook store as the worker uses it (redis-py, blocking): turn outbox events into
deliveries, push the task messages of due deliveries, claim and finish attempts.

The layout and the scripts are `shared.webhook_scripts`'. Reads that a script needs the result of
(the job, its event, the owner's endpoints) come first; the script then gets every key it touches
through KEYS, and re-checks what matters (the outbox entry still there, the delivery still pending).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import redis

from shared import keys, webhook_scripts
from shared.jobs import bind_script
from shared.queue import TaskEnvelopes
from shared.webhook_schemas import WebhookSpec, delivery_id, event_payload, webhook_id
from shared.webhooks import secrets_in_force

__all__ = ["Claim", "Delivery", "Finish", "SyncWebhookStore"]

log = logging.getLogger(__name__)

_spec_decoder = msgspec.json.Decoder(WebhookSpec)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one target, about to be created."""

    id: str
    job: str
    endpoint: str  # '' for the job's own webhook
    event: str
    url: str  # the job's webhook; '' for an endpoint (read at each attempt)
    body: bytes
    request_id: str = ""  # the job's submission's: its messages carry it (`shared.observability`)


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery an attempt now holds."""

    id: str
    now: float  # Redis's clock when the attempt started
    attempt: int  # of all attempts, numbering the log
    tries: int  # in this round, indexing the retry schedule
    owner: str
    job: str
    endpoint: str
    event: str
    url: str
    body: bytes
    webhook_id: str


@dataclass(frozen=True, slots=True)
class Finish:
    """What an attempt ends with."""

    outcome: str  # succeeded | retrying | failed
    delay: float  # until the next attempt, when retrying
    entry: bytes  # the attempt's log entry (DeliveryAttempt JSON)
    member: str  # its member in the logs
    disable_reason: str = ""  # the receiver asked to be left alone (410)
    failure: str = ""  # why the endpoint is disabled should it have failed for too long


class SyncWebhookStore:
    def __init__(self, client: redis.Redis, envelopes: TaskEnvelopes, *, ttl: int, check_after: float) -> None:
        self.client = client
        self.envelopes = envelopes
        self.ttl = ttl
        self.check_after = check_after
        self._expand = bind_script(client, webhook_scripts.EXPAND)
        self._due = bind_script(client, webhook_scripts.DUE)
        self._push = bind_script(client, webhook_scripts.PUSH_DUE)
        self._claim = bind_script(client, webhook_scripts.CLAIM)
        self._postpone = bind_script(client, webhook_scripts.POSTPONE)
        self._unclaim = bind_script(client, webhook_scripts.UNCLAIM)
        self._finish = bind_script(client, webhook_scripts.FINISH)
        self._rotate = bind_script(client, webhook_scripts.ROTATE)

    # -- events into deliveries ------------------------------------------------------------

    def outbox(self, limit: int) -> list[str]:
        """The oldest outbox entries (`<job id>/<event id>`)."""
        members: list[bytes] = cast(Any, self.client.zrange(keys.OUTBOX, 0, limit - 1))
        return [raw.decode() for raw in members]

    def outbox_of(self, job_id: str, recent: int = 4) -> list[str]:
        """The outbox entries of the job's latest events (a worker's fast path after a change)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.OUTBOX)
            pipe.xrevrange(keys.job_events(job_id), count=recent)
            waiting, entries = pipe.execute()
        members = [f"{job_id}/{sid.decode()}" for sid, _ in reversed(entries)]
        if not waiting or not members:
            return []  # one round trip when no webhook waits at all
        with self.client.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.zscore(keys.OUTBOX, member)
            scores = pipe.execute()
        return [member for member, score in zip(members, scores, strict=True) if score is not None]

    def drop(self, member: str) -> None:
        """Remove an outbox entry that cannot be expanded (it would be retried forever)."""
        self.client.zrem(keys.OUTBOX, member)

    def expand(self, member: str) -> int:
        """Create the deliveries of one outbox event and push their messages; -1 when another
        process did it already. An event whose job is gone, or that no one wants, only leaves."""
        job_id, _, event_id = member.partition("/")
        owner, deliveries = self._deliveries(job_id, event_id)
        script_keys = [keys.OUTBOX, keys.WEBHOOK_DELIVERIES_DUE, keys.WEBHOOK_QUEUE, keys.user_deliveries(owner)]
        args: list[Any] = [member, self.ttl, self.check_after, owner]
        for delivery in deliveries:
            script_keys.append(keys.delivery(delivery.id))
            message = self.envelopes.build_another(delivery.id, request_id=delivery.request_id)
            args += [
                delivery.id,
                delivery.job,
                delivery.endpoint,
                delivery.event,
                delivery.url,
                delivery.body,
                webhook_id(delivery.id),
                message.body,
                delivery.request_id,
            ]
        return int(self._expand(keys=script_keys, args=args))

    def _deliveries(self, job_id: str, event_id: str) -> tuple[str, list[Delivery]]:
        fields_of_job = self.client.hmget(keys.job(job_id), ["owner", "hook", "doc", "rid"])
        owner_raw, hook_raw, doc, rid_raw = cast(list[bytes | None], fields_of_job)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = cast(
            Any, self.client.xrange(keys.job_events(job_id), event_id, event_id)
        )
        if owner_raw is None or doc is None or not entries:
            return (owner_raw or b"").decode(), []  # the job or its event is gone: nothing to say
        owner = owner_raw.decode()
        fields = entries[0][1]
        event = fields[b"type"].decode()
        body = event_payload(event, event_id, fields.get(b"doc", doc))
        rid = (rid_raw or b"").decode()
        deliveries = []
        if hook_raw:
            hook = _spec_decoder.decode(hook_raw)
            if event in hook.events:
                ident = delivery_id(job_id, event_id, "")
                deliveries.append(Delivery(ident, job_id, "", event, hook.url, body, rid))
        members: set[bytes] = cast(Any, self.client.smembers(keys.user_webhooks(owner)))
        endpoint_ids = sorted(raw.decode() for raw in members)
        if endpoint_ids:
            with self.client.pipeline(transaction=False) as pipe:
                for endpoint_id in endpoint_ids:
                    pipe.hmget(keys.webhook(endpoint_id), ["events", "enabled"])
                rows = pipe.execute()
            for endpoint_id, (events, enabled) in zip(endpoint_ids, rows, strict=True):
                if enabled == b"1" and event in (events or b"").decode().split(","):
                    ident = delivery_id(job_id, event_id, endpoint_id)
                    deliveries.append(Delivery(ident, job_id, endpoint_id, event, "", body, rid))
        return owner, deliveries

    def push_due(self, limit: int) -> int:
        """Task messages for deliveries whose time has come; returns how many were pushed."""
        ids = [raw.decode() for raw in self._due(keys=[keys.WEBHOOK_DELIVERIES_DUE], args=[limit])]
        if not ids:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            for ident in ids:
                pipe.hget(keys.delivery(ident), "rid")
            rids = pipe.execute()
        args: list[Any] = [self.check_after]
        for ident, rid in zip(ids, rids, strict=True):
            args += [ident, self.envelopes.build_another(ident, request_id=(rid or b"").decode()).body]
        script_keys = [keys.WEBHOOK_DELIVERIES_DUE, keys.WEBHOOK_QUEUE, *map(keys.delivery, ids)]
        return int(self._push(keys=script_keys, args=args))

    # -- attempts --------------------------------------------------------------------------

    def claim(self, ident: str, hold: float) -> Claim | str:
        """The delivery, held for `hold` seconds by this attempt; or why there is nothing to do."""
        reply = self._claim(keys=[keys.delivery(ident), keys.WEBHOOK_DELIVERIES_DUE], args=[ident, hold])
        if reply[0] != b"claimed":
            return str(reply[0].decode())
        _, now, attempt, tries, owner, job, endpoint, event, url, body, msg = reply
        return Claim(
            id=ident,
            now=float(now),
            attempt=int(attempt),
            tries=int(tries),
            owner=owner.decode(),
            job=job.decode(),
            endpoint=endpoint.decode(),
            event=event.decode(),
            url=url.decode(),
            body=body,
            webhook_id=msg.decode(),
        )

    def postpone(self, ident: str, delay: float) -> None:
        """Have the sweep send the delivery's message again after `delay` seconds."""
        self._postpone(keys=[keys.WEBHOOK_DELIVERIES_DUE], args=[ident, delay])

    def unclaim(self, claim: Claim, delay: float) -> None:
        """Give back a claimed delivery whose attempt did not start (uncounted), for `delay` seconds."""
        self._unclaim(
            keys=[keys.delivery(claim.id), keys.WEBHOOK_DELIVERIES_DUE], args=[claim.id, claim.attempt, delay]
        )

    def finish(self, claim: Claim, finish: Finish, disable_after: float) -> str:
        reply = self._finish(
            keys=[
                keys.delivery(claim.id),
                keys.WEBHOOK_DELIVERIES_DUE,
                keys.delivery_attempts(claim.id),
                keys.job_deliveries(claim.job) if claim.job else "",
                keys.webhook(claim.endpoint) if claim.endpoint else "",
                keys.webhook_deliveries(claim.endpoint) if claim.endpoint else "",
            ],
            args=[
                claim.id,
                claim.attempt,
                finish.outcome,
                finish.delay,
                finish.entry,
                finish.member,
                self.ttl,
                disable_after,
                finish.disable_reason,
                finish.failure,
            ],
        )
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def endpoint(self, endpoint_id: str) -> dict[bytes, bytes]:
        """The endpoint's hash (empty when it was deleted)."""
        return cast(dict[bytes, bytes], self.client.hgetall(keys.webhook(endpoint_id)))

    def signing_secrets(self, claim: Claim, endpoint: dict[bytes, bytes], new_secret: str) -> list[str]:
        """The secrets that sign this attempt: the endpoint's, or the owner's default one (created
        here, as `new_secret`, if the owner never asked for it)."""
        if claim.endpoint:
            return secrets_in_force(endpoint, claim.now)
        self._rotate(keys=[keys.webhook_secret(claim.owner)], args=[claim.owner, new_secret, 0, "0", "0"])
        fields = cast(dict[bytes, bytes], self.client.hgetall(keys.webhook_secret(claim.owner)))
        return secrets_in_force(fields, claim.now)
