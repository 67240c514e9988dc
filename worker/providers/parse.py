"""Turning a model's answer into a valid `Checklist`: pure functions, no I/O.

The answer is decoded with msgspec against the model-output shape, then cleaned: blank and
duplicate items dropped, text bounded, out-of-range numbers discarded, items ordered by priority
and capped at 40. Fewer than 10 usable items is an `InvalidModelOutput`.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

from shared.errors import InvalidModelOutput
from shared.schemas import Category, Checklist, ChecklistItem, GeneratedBy, Priority

__all__ = ["MAX_ITEMS", "MIN_ITEMS", "finalise", "item_id", "parse_checklist"]

MIN_ITEMS = 10
MAX_ITEMS = 40
_TEXT_LIMIT = 200
_DETAILS_LIMIT = 400
_PRIORITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_NOT_WORD = re.compile(r"[^\w]+")


class _ModelItem(msgspec.Struct):
    text: str
    category: Category
    priority: Priority
    details: str | None = None
    due_days_before: int | None = None
    quantity: int | None = None


class _ModelChecklist(msgspec.Struct):
    title: str
    items: list[_ModelItem]
    warnings: list[str] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(_ModelChecklist)


def item_id(text: str) -> str:
    """A stable id for an item, derived from its normalised text."""
    return hashlib.blake2b(_dedupe_key(text).encode(), digest_size=5).hexdigest()


def _dedupe_key(text: str) -> str:
    return _NOT_WORD.sub(" ", text.casefold()).strip()


def _bounded(value: int | None, low: int, high: int) -> int | None:
    return value if value is not None and low <= value <= high else None


def _squash(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


def finalise(title: str, items: list[ChecklistItem], warnings: list[str], generated_by: GeneratedBy) -> Checklist:
    """Drop duplicates, order by priority (stable), cap at MAX_ITEMS, check MIN_ITEMS."""
    unique: dict[str, ChecklistItem] = {}
    for item in items:
        key = _dedupe_key(item.text)
        if key and key not in unique:
            unique[key] = item
    ordered = sorted(unique.values(), key=lambda item: _PRIORITY_ORDER[item.priority])[:MAX_ITEMS]
    if len(ordered) < MIN_ITEMS:
        raise InvalidModelOutput(f"the checklist has {len(ordered)} usable items; at least {MIN_ITEMS} are needed")
    seen_warnings: dict[str, str] = {}
    for warning in warnings:
        cleaned = _squash(warning, _DETAILS_LIMIT)
        if cleaned:
            seen_warnings.setdefault(cleaned.casefold(), cleaned)
    return Checklist(
        title=_squash(title, _TEXT_LIMIT) or "Trip checklist",
        items=ordered,
        warnings=list(seen_warnings.values())[:10],
        generated_by=generated_by,
    )


def parse_checklist(content: str | None, generated_by: GeneratedBy) -> Checklist:
    """Decode and clean a model answer; raise `InvalidModelOutput` saying what is wrong."""
    if content is None or not content.strip():
        raise InvalidModelOutput("the answer was empty")
    text = content.strip()
    if text.startswith("```") or text.endswith("```"):
        # Only then: the pattern's `$` branch is otherwise tried at every position of the answer.
        text = _FENCE.sub("", text)
    try:
        raw = _decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise InvalidModelOutput(f"the answer does not match the schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidModelOutput(f"the answer is not valid JSON: {exc}") from None
    items = [
        ChecklistItem(
            id=item_id(item.text),
            text=_squash(item.text, _TEXT_LIMIT),
            category=item.category,
            priority=item.priority,
            details=_squash(item.details, _DETAILS_LIMIT) or None if item.details else None,
            due=_bounded(item.due_days_before, 0, 365),
            quantity=_bounded(item.quantity, 1, 999),
        )
        for item in raw.items
        if item.text.strip()
    ]
    return finalise(raw.title, items, raw.warnings, generated_by)
