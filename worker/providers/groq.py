"""The Groq provider: the official SDK, structured output, errors classified for the retry layer.

The SDK's own retries are off (`max_retries=0`): Celery owns retrying, as countdowns, so a
waiting retry never holds a worker slot. One unusable answer gets one immediate repair request
in the same attempt; a second unusable answer fails the attempt.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

import groq
import httpx

from shared.errors import (
    InvalidModelOutput,
    ProviderError,
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamUnavailable,
)
from shared.schemas import Checklist, GeneratedBy, TripRequest
from shared.settings import GroqSettings
from worker.providers.parse import parse_checklist
from worker.providers.prompt import MODEL_OUTPUT_SCHEMA, Message, build_messages, repair_message

__all__ = ["STRICT_SCHEMA_MODELS", "GroqProvider", "classify_status", "retry_after_seconds"]

#: Models on which Groq enforces `json_schema` with `strict: true` (constrained decoding);
#: every other model gets `json_object` plus the schema in the prompt.
STRICT_SCHEMA_MODELS = frozenset({"openai/gpt-oss-20b", "openai/gpt-oss-120b"})
_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?(?:(?P<s>\d+(?:\.\d+)?)s)?")
_RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")


def _duration(value: str) -> float | None:
    """Groq's reset headers look like `7.66s`, `2m59.56s` or `1h2m3s`."""
    match = _DURATION.fullmatch(value.strip())
    if not match or not any(match.groupdict().values()):
        return None
    hours, minutes, seconds = (float(match.group(name) or 0) for name in ("h", "m", "s"))
    return hours * 3600 + minutes * 60 + seconds


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """The delay a response asks for: `retry-after` (seconds or HTTP date), else the rate-limit resets."""
    raw = headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - (time.time() if now is None else now))
    resets = [seconds for name in _RESET_HEADERS if (value := headers.get(name)) and (seconds := _duration(value))]
    return max(resets) if resets else None


def classify_status(error: groq.APIStatusError) -> ProviderError:
    """Map an HTTP error from Groq onto the retryable / permanent tree."""
    status = error.status_code
    message = f"Groq answered {status}: {_error_text(error)}"
    retry_after = retry_after_seconds(error.response.headers)
    if status == 429:
        return UpstreamRateLimited(message, retry_after=retry_after)
    if status >= 500 or status in (408, 409):
        return UpstreamUnavailable(message, retry_after=retry_after)
    if status in (401, 403):
        return UpstreamAuthFailed(message)
    if status == 404:
        return UpstreamModelNotFound(message)
    if status == 400 and _error_code(error) in ("json_validate_failed", "output_parse_failed"):
        # Groq refused the model's own output as invalid JSON: a repairable answer, not our request.
        return InvalidModelOutput(message)
    return UpstreamRejectedRequest(message)


def _error_body(error: groq.APIStatusError) -> dict[str, Any]:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _error_code(error: groq.APIStatusError) -> str | None:
    code = _error_body(error).get("code")
    return code if isinstance(code, str) else None


def _error_text(error: groq.APIStatusError) -> str:
    message = _error_body(error).get("message")
    return message[:200] if isinstance(message, str) else error.response.reason_phrase


class GroqProvider:
    name = "groq"

    def __init__(self, settings: GroqSettings) -> None:
        self.settings = settings
        self.generated_by = GeneratedBy(provider="groq", model=settings.model)
        self.client = groq.Groq(
            api_key=settings.api_key,
            base_url=settings.base_url,
            max_retries=0,
            timeout=settings.timeout,
        )

    def _response_format(self) -> dict[str, Any]:
        if self.settings.model in STRICT_SCHEMA_MODELS:
            return {
                "type": "json_schema",
                "json_schema": {"name": "trip_checklist", "schema": MODEL_OUTPUT_SCHEMA, "strict": True},
            }
        return {"type": "json_object"}

    def _complete(self, messages: list[Message]) -> str | None:
        try:
            completion = self.client.chat.completions.create(  # type: ignore[call-overload]
                model=self.settings.model,
                messages=messages,  # plain dicts are the SDK's documented form
                response_format=self._response_format(),
                temperature=0.3,
                max_completion_tokens=self.settings.max_output_tokens,
            )
        except groq.APIStatusError as exc:
            raise classify_status(exc) from exc
        except groq.APITimeoutError as exc:
            raise UpstreamUnavailable(f"Groq did not answer within {self.settings.timeout:g}s") from exc
        except groq.APIConnectionError as exc:
            raise UpstreamUnavailable(f"could not reach Groq: {exc}") from exc
        except (groq.APIResponseValidationError, ValueError) as exc:
            # The SDK raises a bare JSONDecodeError (a ValueError) for a body that is not JSON.
            raise UpstreamBadResponse(f"Groq's response was not a valid chat completion: {exc}") from exc
        if not completion.choices:
            raise InvalidModelOutput("Groq's response had no choices")
        content: str | None = completion.choices[0].message.content
        return content

    def generate(self, trip: TripRequest) -> Checklist:
        messages = build_messages(trip)
        content = self._complete(messages)
        try:
            return parse_checklist(content, self.generated_by)
        except InvalidModelOutput as problem:
            repair = [
                *messages,
                {"role": "assistant", "content": (content or "")[:8000]},
                repair_message(str(problem)),
            ]
            return parse_checklist(self._complete(repair), self.generated_by)

    def close(self) -> None:
        self.client.close()
