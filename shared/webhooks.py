"""The webhook store on Redis, as the API uses it: endpoints, secrets, pings, redelivery, the
delivery log, and deleting all of an owner's. `shared.webhook_scripts` draws the layout; the
worker's side (expanding events, attempts) is `worker.webhooks.store`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import keys, webhook_scripts
from shared.queue import TaskMessage
from shared.redis_mux import MultiplexedRedis
from shared.webhook_schemas import NewWebhookEndpoint, WebhookEndpoint, WebhookSecret, webhook_id

__all__ = [
    "LogPage",
    "WebhookStore",
    "decode_log_cursor",
    "endpoint_from_hash",
    "log_member",
    "secrets_in_force",
]

_LOG_MEMBER = re.compile(r"^\d{17}:[0-9a-f]{32}:\d+$")
DELETE_BATCH = 100


def _time(raw: str | bytes | None) -> datetime | None:
    if raw is None or raw in ("", b""):
        return None
    return datetime.fromtimestamp(float(raw), UTC)


def _text(fields: dict[bytes, bytes], name: str) -> str:
    return fields.get(name.encode(), b"").decode()


def endpoint_from_hash(endpoint_id: str, fields: dict[bytes, bytes]) -> WebhookEndpoint:
    """An endpoint as clients see it (never its secrets), from its hash."""
    created = _time(fields.get(b"created_at")) or datetime.fromtimestamp(0, UTC)
    return WebhookEndpoint(
        id=endpoint_id,
        url=_text(fields, "url"),
        events=[event for event in _text(fields, "events").split(",") if event],
        description=_text(fields, "description"),
        enabled=fields.get(b"enabled") == b"1",
        disabled_reason=_text(fields, "disabled_reason") or None,
        failing_since=_time(fields.get(b"failing_since")),
        created_at=created,
        updated_at=_time(fields.get(b"updated_at")) or created,
    )


def secrets_in_force(fields: dict[bytes, bytes], now: float) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    current = _text(fields, "secret")
    previous = _text(fields, "previous_secret")
    until = float(fields.get(b"previous_until") or 0)
    return [current, previous] if previous and until > now else [current]


def log_member(at: datetime, delivery: str, attempt: int) -> str:
    """A delivery log entry's member: newest last by lex order (like the job index)."""
    return f"{int(at.timestamp() * 1_000_000):017d}:{delivery}:{attempt}"


def decode_log_cursor(cursor: str) -> str | None:
    """The log member a cursor stands for, or None when it is not one of ours."""
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return member if _LOG_MEMBER.match(member) else None


def _encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[bytes]  # DeliveryAttempt JSON, newest first
    next_cursor: str | None


def _pairs(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


class WebhookStore:
    """Asyncio webhook store used by the API."""

    def __init__(self, client: MultiplexedRedis, *, ttl: int, check_after: float) -> None:
        self.client = client
        #: Seconds delivery records are kept (`JOB_TTL`).
        self.ttl = ttl
        #: Seconds after which the sweep sends a pushed delivery message again if nobody took it.
        self.check_after = check_after

    # -- endpoints -------------------------------------------------------------------------

    async def create_endpoint(
        self,
        owner: str,
        endpoint_id: str,
        *,
        url: str,
        events: Sequence[str],
        description: str,
        secret: str,
        limit: int,
    ) -> NewWebhookEndpoint | None:
        """The new endpoint (with its secret), or None when the owner has `limit` already."""
        created = await self.client.run_script(
            webhook_scripts.CREATE_ENDPOINT,
            [keys.user_webhooks(owner), keys.webhook(endpoint_id)],
            [limit, endpoint_id, owner, url, ",".join(events), description, secret],
        )
        if created is None:
            return None
        at = _time(created)
        assert at is not None
        return NewWebhookEndpoint(
            id=endpoint_id,
            url=url,
            events=list(events),
            description=description,
            enabled=True,
            disabled_reason=None,
            failing_since=None,
            created_at=at,
            updated_at=at,
            secret=secret,
        )

    async def _fields(self, endpoint_id: str) -> dict[bytes, bytes]:
        return _pairs(await self.client.execute("HGETALL", keys.webhook(endpoint_id)))

    async def get_endpoint(self, owner: str, endpoint_id: str) -> WebhookEndpoint | None:
        fields = await self._fields(endpoint_id)
        if fields.get(b"owner") != owner.encode():
            return None
        return endpoint_from_hash(endpoint_id, fields)

    async def list_endpoints(self, owner: str) -> list[WebhookEndpoint]:
        ids = sorted(member.decode() for member in await self.client.execute("SMEMBERS", keys.user_webhooks(owner)))
        found = await asyncio.gather(*(self.get_endpoint(owner, endpoint_id) for endpoint_id in ids))
        return sorted((endpoint for endpoint in found if endpoint), key=lambda endpoint: endpoint.created_at)

    async def update_endpoint(self, owner: str, endpoint_id: str, changes: dict[str, str]) -> bool:
        pairs = [item for name_value in changes.items() for item in name_value]
        return bool(
            await self.client.run_script(webhook_scripts.UPDATE_ENDPOINT, [keys.webhook(endpoint_id)], [owner, *pairs])
        )

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> bool:
        return bool(
            await self.client.run_script(
                webhook_scripts.DELETE_ENDPOINT,
                [keys.user_webhooks(owner), keys.webhook(endpoint_id), keys.webhook_deliveries(endpoint_id)],
                [owner, endpoint_id],
            )
        )

    # -- secrets ---------------------------------------------------------------------------

    async def _secret(self, key: str, owner: str, new: str, overlap: float, *, mode: str, must_exist: bool) -> Any:
        return await self.client.run_script(
            webhook_scripts.ROTATE, [key], [owner, new, overlap, mode, "1" if must_exist else "0"]
        )

    async def rotate_endpoint_secret(
        self, owner: str, endpoint_id: str, new: str, overlap: float
    ) -> WebhookSecret | None:
        reply = await self._secret(keys.webhook(endpoint_id), owner, new, overlap, mode="1", must_exist=True)
        return _secret_view(reply) if reply else None

    async def default_secret(self, owner: str, new: str, overlap: float, *, rotate: bool) -> WebhookSecret:
        """The owner's default secret, created (as `new`) on first use; rotated to `new` if asked."""
        mode = "1" if rotate else "0"
        reply = await self._secret(keys.webhook_secret(owner), owner, new, overlap, mode=mode, must_exist=False)
        return _secret_view(reply)

    # -- deliveries ------------------------------------------------------------------------

    async def ping(
        self, owner: str, endpoint_id: str, delivery: str, body: bytes, message: TaskMessage, *, request_id: str = ""
    ) -> bool:
        return bool(
            await self.client.run_script(
                webhook_scripts.PING,
                [
                    keys.delivery(delivery),
                    keys.WEBHOOK_DELIVERIES_DUE,
                    keys.WEBHOOK_QUEUE,
                    keys.user_deliveries(owner),
                    keys.webhook(endpoint_id),
                ],
                [
                    delivery,
                    owner,
                    endpoint_id,
                    body,
                    webhook_id(delivery),
                    message.body,
                    self.ttl,
                    self.check_after,
                    request_id,
                ],
            )
        )

    async def redeliver(self, owner: str, delivery: str, message: TaskMessage) -> str | None:
        """The delivery's webhook-id once it is on its way again; None if it is not the owner's."""
        reply = await self.client.run_script(
            webhook_scripts.REDELIVER,
            [keys.delivery(delivery), keys.WEBHOOK_DELIVERIES_DUE, keys.WEBHOOK_QUEUE],
            [delivery, owner, message.body, self.check_after, self.ttl],
        )
        return reply.decode() if reply else None

    async def log(self, key: str, *, limit: int, after: str | None) -> LogPage:
        """Attempts logged under `key` (a job's or an endpoint's log), newest first."""
        upper = f"({after}" if after else "+"
        members = await self.client.execute("ZREVRANGEBYLEX", key, upper, "-", "LIMIT", 0, limit + 1)
        page = [member.decode() for member in members[:limit]]
        entries = await asyncio.gather(
            *(
                self.client.execute("HGET", keys.delivery_attempts(delivery), attempt)
                for _, delivery, attempt in (member.split(":") for member in page)
            )
        )
        more = len(members) > limit
        return LogPage(
            entries=[entry for entry in entries if entry is not None],
            next_cursor=_encode_cursor(page[-1]) if more and page else None,
        )

    async def endpoint_owner(self, endpoint_id: str) -> str | None:
        owner = await self.client.execute("HGET", keys.webhook(endpoint_id), "owner")
        return owner.decode() if owner else None

    # -- account deletion ------------------------------------------------------------------

    async def delete_owner(self, owner: str) -> None:
        """Every endpoint, secret and delivery record of `owner`, in batches."""
        while True:
            endpoint_ids = [
                raw.decode()
                for raw in await self.client.execute("SRANDMEMBER", keys.user_webhooks(owner), DELETE_BATCH)
            ]
            delivery_ids = [
                raw.decode()
                for raw in await self.client.execute("SRANDMEMBER", keys.user_deliveries(owner), DELETE_BATCH)
            ]
            # The job logs are named in the delivery hashes: read them first, so that the script
            # gets every key it touches through KEYS.
            jobs = await asyncio.gather(
                *(self.client.execute("HGET", keys.delivery(delivery), "job") for delivery in delivery_ids)
            )
            script_keys = [
                keys.user_webhooks(owner),
                keys.webhook_secret(owner),
                keys.user_deliveries(owner),
                keys.WEBHOOK_DELIVERIES_DUE,
            ]
            for endpoint_id in endpoint_ids:
                script_keys += [keys.webhook(endpoint_id), keys.webhook_deliveries(endpoint_id)]
            for delivery, job in zip(delivery_ids, jobs, strict=True):
                job_log = keys.job_deliveries(job.decode()) if job else ""
                script_keys += [keys.delivery(delivery), keys.delivery_attempts(delivery), job_log]
            done = await self.client.run_script(
                webhook_scripts.DELETE_OWNER, script_keys, [len(endpoint_ids), *endpoint_ids, *delivery_ids]
            )
            if done:
                return


def _secret_view(reply: Any) -> WebhookSecret:
    secret, until = reply[0].decode(), float(reply[1])
    return WebhookSecret(secret=secret, previous_valid_until=datetime.fromtimestamp(until, UTC) if until else None)
