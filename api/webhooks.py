"""Webhooks as the API offers them: per-job webhooks on submission, standing endpoints, secrets,
test pings, the delivery log and redelivery. Controllers translate HTTP to these calls.

URLs are checked here with every rule that needs no DNS (`shared.webhook_urls`), so that what can
be refused at submission is a 422 naming the field; the worker checks again, with DNS, before
each connection.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from shared import keys
from shared.errors import InvalidRequest, NotFound, WebhookLimitReached
from shared.jobs import JobStore
from shared.queue import TaskEnvelopes
from shared.settings import WebhookSettings
from shared.webhook_schemas import (
    EventType,
    NewWebhookEndpoint,
    PingAccepted,
    RedeliveryAccepted,
    WebhookEndpoint,
    WebhookEndpointRequest,
    WebhookEndpointUpdate,
    WebhookSecret,
    WebhookSpec,
    new_secret,
    ping_payload,
    webhook_id,
)
from shared.webhook_urls import RefusedUrl, check_url
from shared.webhooks import WebhookStore, decode_log_cursor

__all__ = ["WebhookService"]

_ID = re.compile(r"[0-9a-f]{32}")
_encoder = msgspec.json.Encoder()


def _check_id(ident: str, what: str) -> None:
    # Ids are 32 lower-case hex characters; anything else cannot exist, so skip the round trip.
    if not _ID.fullmatch(ident):
        raise NotFound(f"no {what} {ident!r}")


def _events(events: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(events))  # repeated names add nothing; the order is the client's


@dataclass
class WebhookService:
    store: WebhookStore
    jobs: JobStore
    envelopes: TaskEnvelopes  # the delivery task's messages
    settings: WebhookSettings

    def checked_url(self, url: str, field: str) -> str:
        try:
            check_url(url, allow_http=self.settings.allow_http, allow_private=self.settings.allow_private)
        except RefusedUrl as exc:
            raise InvalidRequest(f"{exc} - at `{field}`", field=field) from None
        return url

    def job_hook(self, spec: WebhookSpec | None, prefix: str) -> bytes:
        """A job's own webhook as stored with the job (JSON), b"" for none; 422 for a refused URL."""
        if spec is None:
            return b""
        url = self.checked_url(spec.url, f"{prefix}.url")
        return _encoder.encode(WebhookSpec(url=url, events=_events(spec.events)))

    # -- endpoints -------------------------------------------------------------------------

    async def create(self, owner: str, request: WebhookEndpointRequest) -> NewWebhookEndpoint:
        url = self.checked_url(request.url, "$.url")
        created = await self.store.create_endpoint(
            owner,
            os.urandom(16).hex(),
            url=url,
            events=_events(request.events),
            description=request.description.strip(),
            secret=new_secret(),
            limit=self.settings.max_endpoints,
        )
        if created is None:
            raise WebhookLimitReached(f"a user can have at most {self.settings.max_endpoints} webhook endpoints")
        return created

    async def list(self, owner: str) -> list[WebhookEndpoint]:
        return await self.store.list_endpoints(owner)

    async def get(self, owner: str, endpoint_id: str) -> WebhookEndpoint:
        _check_id(endpoint_id, "webhook endpoint")
        endpoint = await self.store.get_endpoint(owner, endpoint_id)
        if endpoint is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return endpoint

    async def update(self, owner: str, endpoint_id: str, update: WebhookEndpointUpdate) -> WebhookEndpoint:
        _check_id(endpoint_id, "webhook endpoint")
        changes: dict[str, str] = {}
        if update.url is not None:
            changes["url"] = self.checked_url(update.url, "$.url")
        if update.events is not None:
            changes["events"] = ",".join(_events(update.events))
        if update.description is not None:
            changes["description"] = update.description.strip()
        if update.enabled is not None:
            changes["enabled"] = "1" if update.enabled else "0"
            if not update.enabled:
                changes["disabled_reason"] = ""  # disabled by its owner: no reason of ours to show
        if changes and not await self.store.update_endpoint(owner, endpoint_id, changes):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return await self.get(owner, endpoint_id)

    async def delete(self, owner: str, endpoint_id: str) -> None:
        _check_id(endpoint_id, "webhook endpoint")
        if not await self.store.delete_endpoint(owner, endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")

    # -- secrets ---------------------------------------------------------------------------

    async def rotate(self, owner: str, endpoint_id: str) -> WebhookSecret:
        _check_id(endpoint_id, "webhook endpoint")
        rotated = await self.store.rotate_endpoint_secret(
            owner, endpoint_id, new_secret(), self.settings.secret_overlap
        )
        if rotated is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return rotated

    async def default_secret(self, owner: str, *, rotate: bool = False) -> WebhookSecret:
        return await self.store.default_secret(owner, new_secret(), self.settings.secret_overlap, rotate=rotate)

    # -- deliveries ------------------------------------------------------------------------

    async def ping(self, owner: str, endpoint_id: str, *, request_id: str = "") -> PingAccepted:
        """A test event for an endpoint; its delivery carries the request id of the API request."""
        _check_id(endpoint_id, "webhook endpoint")
        delivery = os.urandom(16).hex()
        body = ping_payload(endpoint_id, datetime.now(UTC))
        message = self.envelopes.build_another(delivery, request_id=request_id)
        if not await self.store.ping(owner, endpoint_id, delivery, body, message, request_id=request_id):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return PingAccepted(delivery_id=delivery, webhook_id=webhook_id(delivery))

    async def redeliver(self, owner: str, delivery: str, *, request_id: str = "") -> RedeliveryAccepted:
        """Send a delivery again; this attempt's message carries the request id of the API request."""
        _check_id(delivery, "delivery")
        sent = await self.store.redeliver(
            owner, delivery, self.envelopes.build_another(delivery, request_id=request_id)
        )
        if sent is None:
            raise NotFound(f"no delivery {delivery!r}")
        return RedeliveryAccepted(delivery_id=delivery, webhook_id=sent)

    async def _log(self, key: str, limit: int, cursor: str | None) -> bytes:
        after = None
        if cursor is not None:
            after = decode_log_cursor(cursor)
            if after is None:
                raise InvalidRequest("cursor is not one this API issued", field="cursor")
        page = await self.store.log(key, limit=limit, after=after)
        return b'{"items":[' + b",".join(page.entries) + b'],"next_cursor":' + _encoder.encode(page.next_cursor) + b"}"

    async def job_log(self, owner: str, job_id: str, *, limit: int, cursor: str | None) -> bytes:
        """The job's delivery attempts (JSON page), newest first; 404 unless it is the owner's."""
        _check_id(job_id, "checklist job")
        if await self.jobs.get_doc(owner, job_id) is None:
            raise NotFound(f"no checklist job {job_id!r}")
        return await self._log(keys.job_deliveries(job_id), limit, cursor)

    async def endpoint_log(self, owner: str, endpoint_id: str, *, limit: int, cursor: str | None) -> bytes:
        _check_id(endpoint_id, "webhook endpoint")
        if await self.store.endpoint_owner(endpoint_id) != owner:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return await self._log(keys.webhook_deliveries(endpoint_id), limit, cursor)

    async def delete_owner(self, owner: str) -> None:
        """Account deletion: endpoints, secrets and delivery records."""
        await self.store.delete_owner(owner)
