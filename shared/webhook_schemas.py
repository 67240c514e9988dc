"""Webhooks as clients see them (msgspec Structs), and the pure rules both the API and the worker
follow: event names, secrets, delivery ids, payloads. No I/O."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "DEFAULT_EVENTS",
    "EVENT_TYPES",
    "MAX_PAYLOAD_BYTES",
    "DeliveryAttempt",
    "DeliveryAttemptPage",
    "EventType",
    "NewWebhookEndpoint",
    "PingAccepted",
    "RedeliveryAccepted",
    "WebhookEndpoint",
    "WebhookEndpointList",
    "WebhookEndpointRequest",
    "WebhookEndpointUpdate",
    "WebhookSecret",
    "WebhookSpec",
    "delivery_id",
    "event_payload",
    "new_secret",
    "ping_payload",
    "webhook_id",
]

EventType = Literal["job.queued", "job.running", "job.retrying", "job.succeeded", "job.failed", "job.canceled"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
#: What a webhook gets when it names no events: the job's end, however it ends.
DEFAULT_EVENTS: tuple[EventType, ...] = ("job.succeeded", "job.failed", "job.canceled")
#: Payloads stay below this; a bigger job is sent without its checklist (`result`), which the
#: receiver reads with GET (the payload says so).
MAX_PAYLOAD_BYTES = 64 * 1024
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret

Url = Annotated[str, Meta(min_length=1, max_length=2048, description="https:// (http:// outside production)")]
Events = Annotated[
    list[EventType],
    Meta(min_length=1, max_length=len(EVENT_TYPES), description="Event types to receive (default: the job's end)"),
]


class WebhookSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A job's own webhook, given on submission; signed with the owner's default secret."""

    url: Url
    events: Events = msgspec.field(default_factory=lambda: list(DEFAULT_EVENTS))


class WebhookEndpointRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A standing endpoint: every matching event of the owner's jobs goes to it."""

    url: Url
    events: Events = msgspec.field(default_factory=lambda: list(DEFAULT_EVENTS))
    description: Annotated[str, Meta(max_length=200)] = ""


class WebhookEndpointUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Fields to change; enabling a disabled endpoint clears why it was disabled."""

    url: Url | None = None
    events: Events | None = None
    description: Annotated[str, Meta(max_length=200)] | None = None
    enabled: bool | None = None


class WebhookEndpoint(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    """Why the service disabled it (410 Gone, or every delivery failing for days), if it did."""
    failing_since: datetime | None
    """When the current run of failed deliveries began; None after a success."""
    created_at: datetime
    updated_at: datetime


class NewWebhookEndpoint(WebhookEndpoint, kw_only=True):
    secret: str
    """The signing secret (Standard Webhooks `whsec_…`): shown only this once."""


class WebhookEndpointList(msgspec.Struct, kw_only=True):
    items: list[WebhookEndpoint]


class WebhookSecret(msgspec.Struct, kw_only=True):
    secret: str
    """The current secret (`whsec_…`)."""
    previous_valid_until: datetime | None
    """Until then the previous secret signs too (a second signature), after a rotation."""


class PingAccepted(msgspec.Struct, kw_only=True):
    delivery_id: str
    webhook_id: str


class RedeliveryAccepted(msgspec.Struct, kw_only=True):
    delivery_id: str
    webhook_id: str


class DeliveryAttempt(msgspec.Struct, kw_only=True):
    """One attempt to deliver one event to one target."""

    delivery_id: str
    webhook_id: str
    """The `webhook-id` header: the same on every attempt of one event to one target."""
    attempt: int
    event: str
    job_id: str | None
    endpoint_id: str | None
    """The standing endpoint, or None for the job's own webhook."""
    url: str
    attempted_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    outcome: Literal["succeeded", "retrying", "failed"]
    next_retry_at: datetime | None


class DeliveryAttemptPage(msgspec.Struct, kw_only=True):
    items: list[DeliveryAttempt]
    next_cursor: str | None


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def delivery_id(job_id: str, event_id: str, target: str) -> str:
    """The one delivery of one event to one target (an endpoint id, or "" for the job's webhook):
    deterministic, so that expanding the same event twice creates nothing new."""
    return hashlib.sha256(f"{job_id}/{event_id}/{target}".encode()).hexdigest()[:32]


def webhook_id(delivery: str) -> str:
    """The `webhook-id` of a delivery: the same on every attempt, so receivers can de-duplicate."""
    return f"msg_{delivery}"


_encoder = msgspec.json.Encoder()


def _iso(moment: datetime) -> bytes:
    return _encoder.encode(moment.astimezone(UTC).isoformat().replace("+00:00", "Z"))


def event_time(event_id: str) -> datetime:
    """When a job event happened: its stream id starts with Redis's time in milliseconds."""
    return datetime.fromtimestamp(int(event_id.split("-", 1)[0]) / 1000, UTC)


def event_payload(event_type: str, event_id: str, doc: bytes) -> bytes:
    """`{"type", "timestamp", "data": <the job as GET returns it>}`, below `MAX_PAYLOAD_BYTES`."""
    head = b'{"type":' + _encoder.encode(event_type) + b',"timestamp":' + _iso(event_time(event_id))
    payload = head + b',"data":' + doc + b"}"
    if len(payload) < MAX_PAYLOAD_BYTES:
        return payload
    # A checklist this large is sent without its result; `result_omitted` tells the receiver to GET it.
    job = msgspec.json.decode(doc)
    job["result"] = None
    return head + b',"result_omitted":true,"data":' + _encoder.encode(job) + b"}"


def ping_payload(endpoint_id: str, now: datetime) -> bytes:
    return (
        b'{"type":"ping","timestamp":'
        + _iso(now)
        + b',"data":{"endpoint_id":'
        + _encoder.encode(endpoint_id)
        + b',"message":"a test event from Trip Checklist"}}'
    )
