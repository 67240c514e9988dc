"""The service's error tree. Every error carries a stable machine-readable `code`.

    ServiceError
    ├── SettingsError                 bad configuration; stops start-up (lists every problem)
    ├── ApiError                      answered as problem+json with `status` and `code`
    │   ├── InvalidRequest            422 invalid_request (names the field)
    │   │   └── WeakPassword          422 weak_password
    │   ├── AuthenticationFailed      401, `code` says why (token_expired, invalid_api_key, ...)
    │   ├── EmailTaken                409 email_taken
    │   ├── RateLimited               429 rate_limited / login_locked, with Retry-After
    │   ├── MalformedBody             400 malformed_json
    │   ├── UnsupportedMediaType      415 unsupported_media_type
    │   ├── NotFound                  404 not_found
    │   ├── IdempotencyKeyReused      409 idempotency_key_reused
    │   ├── JobNotCancelable          409 job_not_cancelable
    │   ├── WebhookLimitReached       409 webhook_limit_reached
    │   └── DependencyUnavailable     503 dependency_unavailable
    └── ProviderError                 a checklist provider failed; stored on the job as `error`
        ├── UpstreamOutputTruncated   the answer hit the completion limit twice (not retried;
        │                             the offline fallback may still answer)
        ├── RetryableProviderError    worth another attempt after `retry_after` (or backoff)
        │   ├── UpstreamRateLimited   429 from Groq, honouring its retry-after
        │   ├── UpstreamUnavailable   5xx, timeout, connection error
        │   ├── UpstreamBadResponse   a response that is not a chat completion (broken JSON)
        │   └── InvalidModelOutput    an answer that is not a usable checklist, even after repair
        └── PermanentProviderError    retrying cannot help
            ├── UpstreamAuthFailed        401/403
            ├── UpstreamModelNotFound     404
            └── UpstreamRejectedRequest   other 4xx

HTTP mapping lives in one place: `api/problems.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

__all__ = [
    "ApiError",
    "AuthenticationFailed",
    "DependencyUnavailable",
    "EmailTaken",
    "IdempotencyKeyReused",
    "InvalidModelOutput",
    "InvalidRequest",
    "JobNotCancelable",
    "MalformedBody",
    "NotFound",
    "PermanentProviderError",
    "ProviderError",
    "RateLimited",
    "RetryableProviderError",
    "ServiceError",
    "SettingsError",
    "UnsupportedMediaType",
    "UpstreamAuthFailed",
    "UpstreamBadResponse",
    "UpstreamModelNotFound",
    "UpstreamOutputTruncated",
    "UpstreamRateLimited",
    "UpstreamRejectedRequest",
    "UpstreamUnavailable",
    "WeakPassword",
    "WebhookLimitReached",
]


class ServiceError(Exception):
    """Root of every error this service raises on purpose."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(ServiceError):
    code = "invalid_settings"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid settings:\n  - " + "\n  - ".join(self.problems))


class ApiError(ServiceError):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    #: A more specific code for this instance (e.g. which way a token was wrong), if any.
    reason: str | None = None

    @property
    def problem_code(self) -> str:
        """The `code` a client sees: the instance's reason, else the class's code."""
        return self.reason or self.code


class InvalidRequest(ApiError):
    status = 422
    code = "invalid_request"
    title = "Invalid request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class WeakPassword(InvalidRequest):
    code = "weak_password"
    title = "Password refused"


class AuthenticationFailed(ApiError):
    """401; `reason` is the stable code (one per way a credential can be wrong)."""

    status = 401
    code = "unauthorized"
    title = "Authentication failed"

    def __init__(self, message: str, reason: str = "unauthorized") -> None:
        super().__init__(message)
        self.reason: str = reason


class EmailTaken(ApiError):
    status = 409
    code = "email_taken"
    title = "Email already registered"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(
        self, message: str, retry_after: int, headers: dict[str, str] | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers or {}
        self.reason = reason


class MalformedBody(ApiError):
    status = 400
    code = "malformed_json"
    title = "Malformed request body"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class NotFound(ApiError):
    status = 404
    code = "not_found"
    title = "Not found"


class IdempotencyKeyReused(ApiError):
    status = 409
    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different body"


class JobNotCancelable(ApiError):
    status = 409
    code = "job_not_cancelable"
    title = "Job already finished"


class WebhookLimitReached(ApiError):
    status = 409
    code = "webhook_limit_reached"
    title = "Too many webhook endpoints"


class DependencyUnavailable(ApiError):
    status = 503
    code = "dependency_unavailable"
    title = "A dependency is unavailable"


class ProviderError(ServiceError):
    code = "provider_error"
    #: What the failed attempt cost upstream (a `worker.providers.base.Spend`), so the worker can
    #: record the tokens on the job and settle the Groq budget; None when nothing was spent.
    spend: object | None = None


class UpstreamOutputTruncated(ProviderError):
    """The model's answer stopped at the completion-token limit, also after one retry with a larger
    limit. Another attempt would end the same way, so none is made."""

    code = "upstream_output_truncated"


class RetryableProviderError(ProviderError):
    code = "upstream_error"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamRateLimited(RetryableProviderError):
    code = "upstream_rate_limited"


class UpstreamUnavailable(RetryableProviderError):
    code = "upstream_unavailable"


class UpstreamBadResponse(RetryableProviderError):
    code = "upstream_bad_response"


class InvalidModelOutput(RetryableProviderError):
    code = "invalid_model_output"


class PermanentProviderError(ProviderError):
    code = "upstream_rejected"


class UpstreamAuthFailed(PermanentProviderError):
    code = "upstream_auth_failed"


class UpstreamModelNotFound(PermanentProviderError):
    code = "upstream_model_not_found"


class UpstreamRejectedRequest(PermanentProviderError):
    code = "upstream_bad_request"
