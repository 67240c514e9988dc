"""msgspec Structs: the contract between the API, the worker and clients.

Constraints declared with `Meta` are enforced by msgspec while decoding (and published in the
OpenAPI schema); rules that need the whole object (stripping, control characters, dates) live in
`shared.validation`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.webhook_schemas import WebhookSpec

__all__ = [
    "CATEGORIES",
    "TERMINAL_STATUSES",
    "Accommodation",
    "Category",
    "Checklist",
    "ChecklistItem",
    "GeneratedBy",
    "Job",
    "JobError",
    "JobLinks",
    "JobPage",
    "JobStatus",
    "LegacyAccepted",
    "LegacyItem",
    "LegacyRequest",
    "LegacyResponse",
    "Priority",
    "SubmitAccepted",
    "Transport",
    "Travelers",
    "TripRequest",
    "TripSubmission",
    "Usage",
    "Waiting",
]

Transport = Literal["car", "train", "plane", "bus", "other"]
#: Where the traveller sleeps, as they write it: the old values (hotel, hostel, rental, camping,
#: friends_family, cruise, other) and any other word ("villa", "teahouse", "liveaboard"). The rules
#: reason from a normalised kind derived from it (`worker.providers.facts.lodging_kind`).
Accommodation = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=50,
        description="Free text, e.g. hotel, hostel, rental, camping, friends_family, cruise, villa, teahouse, boat.",
        examples=["hotel", "teahouse", "sailing boat"],
    ),
]
Category = Literal[
    "documents",
    "money",
    "health",
    "clothing",
    "toiletries",
    "electronics",
    "bookings",
    "transport",
    "activities",
    "home",
    "kids",
    "other",
]
CATEGORIES: tuple[Category, ...] = Category.__args__  # type: ignore[attr-defined]
Priority = Literal["high", "medium", "low"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})

Place = Annotated[str, Meta(min_length=2, max_length=100)]
ShortText = Annotated[str, Meta(min_length=1, max_length=50)]
# BCP 47 shape: a 2-3 letter language, then optional script/region/variant subtags.
LanguageTag = Annotated[str, Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35)]


class Travelers(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    adults: Annotated[int, Meta(ge=0, le=50)] = 1
    children: Annotated[int, Meta(ge=0, le=50)] = 0
    infants: Annotated[int, Meta(ge=0, le=20)] = 0


class TripRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """What a client asks for: the legacy fields plus optional richer details."""

    location: Place
    days: Annotated[int, Meta(ge=1, le=365)]
    transport: Transport
    occasion: Place
    notes: Annotated[str, Meta(max_length=500)] | None = None
    preferences: Annotated[list[ShortText], Meta(max_length=10)] = msgspec.field(default_factory=list)
    origin: Place | None = None
    start_date: date | None = None
    end_date: date | None = None
    travelers: Travelers | None = None
    activities: Annotated[list[ShortText], Meta(max_length=20)] = msgspec.field(default_factory=list)
    accommodation: Accommodation | None = None
    language: LanguageTag = "en"


class TripSubmission(TripRequest, kw_only=True):
    """What `POST /checklists` takes: a trip, and optionally a webhook for this job. The job's
    `request` is the trip alone."""

    webhook: WebhookSpec | None = None

    def trip(self) -> TripRequest:
        return TripRequest(**{name: getattr(self, name) for name in TripRequest.__struct_fields__})


class GeneratedBy(msgspec.Struct, kw_only=True):
    provider: Literal["groq", "offline"]
    model: str


class ChecklistItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    text: str
    category: Category
    priority: Priority
    details: str | None = None
    due: Annotated[int, Meta(ge=0, le=365)] | None = None
    """Days before departure by which the item should be done."""
    quantity: Annotated[int, Meta(ge=1, le=999)] | None = None


class Checklist(msgspec.Struct, kw_only=True):
    title: str
    items: list[ChecklistItem]
    warnings: list[str]
    generated_by: GeneratedBy


class JobError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class Waiting(msgspec.Struct, kw_only=True):
    """Why a queued job has not started yet, and until when (at the earliest)."""

    reason: Literal["upstream_budget"]
    until: datetime


class Usage(msgspec.Struct, kw_only=True):
    """Tokens the model reported for this job, summed over all its calls (repairs and retries too)."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int


class JobLinks(msgspec.Struct, kw_only=True, rename={"self_": "self"}):
    self_: str
    cancel: str


class Job(msgspec.Struct, kw_only=True):
    """A checklist job as clients see it (and as it is stored)."""

    id: str
    status: JobStatus
    created_at: datetime
    attempts: int
    request: TripRequest
    links: JobLinks
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Checklist | None = None
    error: JobError | None = None
    waiting: Waiting | None = None
    """Set while a queued job waits for the shared Groq budget."""
    usage: Usage | None = None
    """What the model's calls for this job cost, as the model reported it."""


class SubmitAccepted(msgspec.Struct, kw_only=True):
    id: str
    status: JobStatus
    created_at: datetime
    links: JobLinks


class JobPage(msgspec.Struct, kw_only=True):
    items: list[Job]
    next_cursor: str | None


class LegacyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body the old synchronous service took; `webhook` is this service's optional addition."""

    trip_data: TripRequest
    webhook: WebhookSpec | None = None


class LegacyAccepted(SubmitAccepted, kw_only=True):
    """The legacy endpoint's 202: the job was not done in time; `waiting` says if it waits for budget."""

    waiting: Waiting | None = None


class LegacyItem(msgspec.Struct, kw_only=True):
    id: str
    text: str
    category: str
    checked: bool
    priority: Priority
    user_added: bool
    created_at: datetime
    updated_at: datetime


class LegacyResponse(msgspec.Struct, kw_only=True):
    id: str
    items: list[LegacyItem]
    generated_at: datetime
    trip_data: TripRequest
