"""The Groq provider: the official SDK, grounded prompts, structured output, answers checked.

Before the call, the trip's facts are derived with the offline generator's knowledge
(`worker.providers.facts`) and sent as a second data block. The answer is parsed and checked
against those facts (`worker.providers.checks`): an unusable answer, or one that breaks a hard
rule (an adapter where the plugs fit, a visa for a domestic trip, ...), gets one repair request in
the same attempt. What the repair leaves broken the service corrects itself, and says so in the
checklist's warnings; a second unusable answer fails the attempt.

An answer cut off at the completion limit (`finish_reason: "length"`) is asked for once more with
twice the limit, then fails the job as `upstream_output_truncated`. Every call's `usage` and the
last response's `x-ratelimit-*` headers are handed back (`Spend`), for the job and the budget.

The SDK's own retries are off (`max_retries=0`): the worker owns retrying, as countdowns in
Redis, so a waiting retry never holds a worker slot.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import groq
import httpx
import msgspec

from shared import metrics
from shared.errors import (
    InvalidModelOutput,
    ProviderError,
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamModelNotFound,
    UpstreamOutputTruncated,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamUnavailable,
)
from shared.schemas import Checklist, GeneratedBy, TripRequest, Usage
from shared.settings import GroqSettings
from worker.providers.base import Generation, Spend, UpstreamLimits
from worker.providers.checks import Violation, correct, violations
from worker.providers.facts import TripFacts, derive_facts, facts_as_data
from worker.providers.offline.geo import Gazetteer, gazetteer
from worker.providers.parse import parse_checklist
from worker.providers.prompt import MODEL_OUTPUT_SCHEMA, Message, build_messages, repair_message

__all__ = [
    "REASONING_MODELS",
    "STRICT_SCHEMA_MODELS",
    "GroqProvider",
    "classify_status",
    "rate_limits",
    "retry_after_seconds",
]

#: Models on which Groq enforces `json_schema` with `strict: true` (constrained decoding);
#: every other model gets `json_object` plus the schema in the prompt.
STRICT_SCHEMA_MODELS = frozenset({"openai/gpt-oss-20b", "openai/gpt-oss-120b"})
#: Models that take `reasoning_effort` low/medium/high (Groq's API reference).
REASONING_MODELS = frozenset({"openai/gpt-oss-20b", "openai/gpt-oss-120b"})
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


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def rate_limits(headers: httpx.Headers) -> UpstreamLimits | None:
    """What Groq's `x-ratelimit-*` headers say is left: tokens this minute, requests today."""
    limits = UpstreamLimits(
        remaining_tokens=_integer(headers.get("x-ratelimit-remaining-tokens")),
        reset_tokens=_duration(headers.get("x-ratelimit-reset-tokens", "")),
        remaining_requests=_integer(headers.get("x-ratelimit-remaining-requests")),
        reset_requests=_duration(headers.get("x-ratelimit-reset-requests", "")),
    )
    return limits if limits != UpstreamLimits() else None


#: The chat completions endpoint, as the SDK's `chat.completions.create` posts to it.
_COMPLETIONS = "/openai/v1/chat/completions"


class _TokenDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _CompletionUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    completion_tokens_details: _TokenDetails | None = None


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    """What is read of a chat completion (OpenAI's shape); every other field is ignored."""

    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _CompletionUsage | None = None


_completion = msgspec.json.Decoder(_Completion)


@dataclass
class _Meter:
    """What one attempt's calls cost, summed as they happen."""

    calls: int = 0
    usage: Usage | None = None
    limits: UpstreamLimits | None = None

    def record(self, usage: Any, limits: UpstreamLimits | None) -> None:
        self.calls += 1
        self.limits = limits or self.limits
        if usage is None:
            return
        details = getattr(usage, "completion_tokens_details", None)
        reasoning = int(getattr(details, "reasoning_tokens", 0) or 0)
        this = Usage(
            calls=1,
            prompt_tokens=int(usage.prompt_tokens or 0),
            completion_tokens=int(usage.completion_tokens or 0),
            reasoning_tokens=reasoning,
            total_tokens=int(usage.total_tokens or 0),
        )
        metrics.GROQ_TOKENS.labels("prompt").inc(this.prompt_tokens)
        metrics.GROQ_TOKENS.labels("completion").inc(this.completion_tokens)
        if reasoning:
            metrics.GROQ_TOKENS.labels("reasoning").inc(reasoning)
        if self.usage is None:
            self.usage = this
            return
        self.usage = Usage(
            calls=self.usage.calls + 1,
            prompt_tokens=self.usage.prompt_tokens + this.prompt_tokens,
            completion_tokens=self.usage.completion_tokens + this.completion_tokens,
            reasoning_tokens=self.usage.reasoning_tokens + this.reasoning_tokens,
            total_tokens=self.usage.total_tokens + this.total_tokens,
        )

    def spend(self) -> Spend:
        usage = self.usage
        if usage is not None and usage.calls != self.calls:
            # Calls without a usage block still count as calls.
            usage = Usage(
                calls=self.calls,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                total_tokens=usage.total_tokens,
            )
        return Spend(calls=self.calls, usage=usage, limits=self.limits)


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


def _observe_call(outcome: str, status: str, started: float) -> None:
    metrics.GROQ_REQUESTS.labels(outcome, status).inc()
    metrics.GROQ_DURATION.observe(time.perf_counter() - started)


def _counted(error: ProviderError, status: str, started: float) -> ProviderError:
    """`error`, once the call it ended is counted (outcome: its code)."""
    _observe_call(error.code, status, started)
    return error


class GroqProvider:
    name = "groq"

    def __init__(self, settings: GroqSettings, places: Gazetteer | None = None) -> None:
        self.settings = settings
        self.places = places or gazetteer()
        self.generated_by = GeneratedBy(provider="groq", model=settings.model)
        # One SDK client per worker thread, each with one kept-alive connection. A client shared by
        # 100 slots kept one pool under one lock, and httpcore walks every pooled connection (a
        # poll() on each idle one) under that lock when a request starts and when its response
        # closes: at 100 slots that was a quarter of the worker's CPU (README, "Worker throughput").
        # A thread makes one call at a time, so its own pool never waits and stays one connection.
        # The TLS context (the CA bundle, parsed) is shared: one per client would cost memory.
        self._tls = httpx.create_ssl_context()
        self._local = threading.local()
        self._clients: list[groq.Groq] = []
        self._clients_lock = threading.Lock()

    @property
    def client(self) -> groq.Groq:
        """This thread's SDK client, made on its first call."""
        client: groq.Groq | None = getattr(self._local, "client", None)
        if client is None:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            client = groq.Groq(
                api_key=self.settings.api_key,
                base_url=self.settings.base_url,
                max_retries=0,
                timeout=self.settings.timeout,
                http_client=groq.DefaultHttpxClient(limits=limits, timeout=self.settings.timeout, verify=self._tls),
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _response_format(self) -> dict[str, Any]:
        if self.settings.model in STRICT_SCHEMA_MODELS:
            return {
                "type": "json_schema",
                "json_schema": {"name": "trip_checklist", "schema": MODEL_OUTPUT_SCHEMA, "strict": True},
            }
        return {"type": "json_object"}

    def _options(self, limit: int) -> dict[str, Any]:
        options: dict[str, Any] = {
            "response_format": self._response_format(),
            "temperature": self.settings.temperature,
            "max_completion_tokens": limit,
        }
        if self.settings.seed is not None:
            options["seed"] = self.settings.seed
        if self.settings.model in REASONING_MODELS and self.settings.reasoning_effort != "none":
            options["reasoning_effort"] = self.settings.reasoning_effort
        return options

    def _complete(self, messages: list[Message], meter: _Meter) -> str | None:
        """One answer; cut off at the limit, asked once more with twice the limit."""
        limit = self.settings.max_output_tokens
        content, finish = self._call(messages, limit, meter)
        if finish == "length":
            content, finish = self._call(messages, limit * 2, meter)
            if finish == "length":
                raise UpstreamOutputTruncated(
                    f"the answer was cut off at the completion limit ({limit} and then {limit * 2} tokens); "
                    "raise GROQ_MAX_TOKENS or lower GROQ_REASONING_EFFORT"
                )
        return content

    def _call(self, messages: list[Message], limit: int, meter: _Meter) -> tuple[str | None, str | None]:
        started = time.perf_counter()
        status = ""
        body = {"model": self.settings.model, "messages": messages, **self._options(limit)}
        try:
            # The SDK's own request path (auth, headers, timeouts, its error classes), without
            # `chat.completions.create`'s walk over the parameters and pydantic's over the answer:
            # the body is plain JSON already, and the answer's few fields are read with msgspec.
            # The two cost about a millisecond of CPU per call (README, "Worker throughput").
            raw = self.client.post(_COMPLETIONS, cast_to=httpx.Response, content=msgspec.json.encode(body))
            status = str(raw.status_code)
            completion = _completion.decode(raw.content)
        except groq.APIStatusError as exc:
            raise _counted(classify_status(exc), str(exc.status_code), started) from exc
        except groq.APITimeoutError as exc:
            timeout = UpstreamUnavailable(f"Groq did not answer within {self.settings.timeout:g}s")
            raise _counted(timeout, status, started) from exc
        except groq.APIConnectionError as exc:
            raise _counted(UpstreamUnavailable(f"could not reach Groq: {exc}"), status, started) from exc
        except (groq.APIResponseValidationError, ValueError) as exc:
            # msgspec's DecodeError and ValidationError are ValueErrors: not JSON, or not a completion.
            broken = UpstreamBadResponse(f"Groq's response was not a valid chat completion: {exc}")
            raise _counted(broken, status, started) from exc
        meter.record(completion.usage, rate_limits(raw.headers))
        if not completion.choices:
            raise _counted(InvalidModelOutput("Groq's response had no choices"), status, started)
        _observe_call("ok", status, started)
        choice = completion.choices[0]
        return choice.message.content, choice.finish_reason

    def _judge(self, content: str | None, facts: TripFacts) -> tuple[Checklist | None, list[Violation], str]:
        """The parsed answer (None if unusable), the hard rules it breaks, and what to tell the model."""
        try:
            checklist = parse_checklist(content, self.generated_by)
        except InvalidModelOutput as problem:
            return None, [], str(problem)
        broken = violations(checklist, facts)
        told = "it contradicts facts the service verified: " + "; ".join(v.to_model for v in broken)
        return checklist, broken, told if broken else ""

    def generate(self, trip: TripRequest) -> Generation:
        meter = _Meter()
        try:
            return Generation(self._generate(trip, meter), meter.spend())
        except ProviderError as error:
            error.spend = meter.spend()
            raise

    def _generate(self, trip: TripRequest, meter: _Meter) -> Checklist:
        facts = derive_facts(trip, self.places)
        messages = build_messages(trip, facts_as_data(facts))
        content = self._complete(messages, meter)
        checklist, broken, problem = self._judge(content, facts)
        if not problem:
            assert checklist is not None
            return checklist
        repair = [*messages, {"role": "assistant", "content": (content or "")[:8000]}, repair_message(problem)]
        repaired, still_broken, second_problem = self._judge(self._complete(repair, meter), facts)
        if repaired is None:
            if checklist is None:
                raise InvalidModelOutput(second_problem)
            # The repair was unusable, the first answer was not: correct that one ourselves.
            return correct(checklist, facts, broken)
        fixed = [v for v in broken if v.rule not in {s.rule for s in still_broken}]
        notes = [f"Corrected against verified facts: {v.to_traveller}." for v in fixed]
        repaired = msgspec.structs.replace(repaired, warnings=[*repaired.warnings, *notes][:10])
        return correct(repaired, facts, still_broken)

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
