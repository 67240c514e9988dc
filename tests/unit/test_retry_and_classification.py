"""The retry policy and the mapping of Groq's HTTP errors onto it."""

from __future__ import annotations

import random

import groq
import httpx
import pytest

from shared.errors import (
    InvalidModelOutput,
    PermanentProviderError,
    UpstreamAuthFailed,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamUnavailable,
)
from worker.providers.base import UpstreamLimits
from worker.providers.groq import classify_status, rate_limits, retry_after_seconds
from worker.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base=2.0, cap=60.0)


def status_error(status: int, headers: dict[str, str] | None = None, code: str = "x") -> groq.APIStatusError:
    request = httpx.Request("POST", "https://groq.test/openai/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request, json={"error": {"code": code}})
    return groq.APIStatusError("error", response=response, body={"error": {"code": code, "message": "m"}})


def test_retryable_errors_are_retried_until_the_last_attempt() -> None:
    error = UpstreamUnavailable("down")

    assert [POLICY.should_retry(error, attempt) for attempt in range(1, 6)] == [True] * 4 + [False]


def test_permanent_errors_are_never_retried() -> None:
    assert not POLICY.should_retry(UpstreamAuthFailed("no"), 1)


def test_backoff_doubles_with_jitter_and_stays_under_the_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (7, 60.0), (20, 60.0)]:
        delays = [POLICY.delay(UpstreamUnavailable("x"), attempt, rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert len(set(delays)) > 100  # jittered


def test_a_servers_retry_after_wins_over_backoff_within_the_cap() -> None:
    assert POLICY.delay(UpstreamRateLimited("slow down", retry_after=7.5), 1) == 7.5
    assert POLICY.delay(UpstreamRateLimited("slow down", retry_after=600), 1) == 60.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, UpstreamRateLimited),
        (500, UpstreamUnavailable),
        (502, UpstreamUnavailable),
        (503, UpstreamUnavailable),
        (408, UpstreamUnavailable),
        (401, UpstreamAuthFailed),
        (403, UpstreamAuthFailed),
        (404, UpstreamModelNotFound),
        (400, UpstreamRejectedRequest),
        (422, UpstreamRejectedRequest),
    ],
)
def test_http_statuses_map_to_the_error_tree(status: int, kind: type[Exception]) -> None:
    assert type(classify_status(status_error(status))) is kind


def test_permanent_codes_carry_stable_names() -> None:
    assert classify_status(status_error(401)).code == "upstream_auth_failed"
    assert classify_status(status_error(404)).code == "upstream_model_not_found"
    assert isinstance(classify_status(status_error(400)), PermanentProviderError)


def test_groqs_own_json_validation_failure_is_an_output_problem() -> None:
    assert isinstance(classify_status(status_error(400, code="json_validate_failed")), InvalidModelOutput)


def test_rate_limit_carries_the_retry_after() -> None:
    error = classify_status(status_error(429, {"retry-after": "12"}))

    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after == 12


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"x-ratelimit-reset-requests": "2m59.56s"}, 179.56),
        ({"x-ratelimit-reset-tokens": "7.66s", "x-ratelimit-reset-requests": "1.2s"}, 7.66),
        ({"x-ratelimit-reset-requests": "1h2m3s"}, 3723.0),
        ({}, None),
        ({"x-ratelimit-reset-tokens": "soon"}, None),
    ],
)
def test_retry_after_is_read_from_the_headers(headers: dict[str, str], seconds: float | None) -> None:
    found = retry_after_seconds(httpx.Headers(headers))

    assert found == pytest.approx(seconds) if seconds is not None else found is None


def test_retry_after_may_be_an_http_date() -> None:
    headers = httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"})

    assert retry_after_seconds(headers, now=1445412500.0) == pytest.approx(10.0)


def test_groqs_rate_limit_headers_say_what_is_left() -> None:
    headers = httpx.Headers(
        {
            "x-ratelimit-remaining-requests": "14370",
            "x-ratelimit-remaining-tokens": "5840",
            "x-ratelimit-reset-requests": "2m59.56s",
            "x-ratelimit-reset-tokens": "7.66s",
        }
    )

    assert rate_limits(headers) == UpstreamLimits(
        remaining_tokens=5840, reset_tokens=7.66, remaining_requests=14370, reset_requests=179.56
    )
    assert rate_limits(httpx.Headers({"x-ratelimit-remaining-tokens": "lots"})) is None
