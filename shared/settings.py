"""The one settings object, read from the environment (and a local `.env`), validated once.

Settings are grouped by concern, one frozen dataclass each. `load_settings()` parses every field,
collects *every* problem and raises one `SettingsError` listing them all, so a bad deployment is
fixed in one round instead of one variable at a time. Nothing here connects to anything.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar

from dotenv import dotenv_values

from shared.errors import SettingsError
from shared.redis_url import InvalidRedisUrl, RedisEndpoint

__all__ = [
    "ApiSettings",
    "AppSettings",
    "AuthSettings",
    "GroqSettings",
    "JobSettings",
    "LimitSettings",
    "ObservabilitySettings",
    "RedisSettings",
    "Settings",
    "WebhookSettings",
    "WorkerSettings",
    "get_settings",
    "load_settings",
    "load_settings_or_report",
]

Environment = Literal["development", "test", "production"]
_ENVIRONMENTS: tuple[Environment, ...] = ("development", "test", "production")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PROVIDERS = ("auto", "groq", "offline")
_FALLBACKS = ("none", "offline")
_REASONING_EFFORTS = ("low", "medium", "high", "none")
_LOG_FORMATS = ("json", "console")
#: The shortest METRICS_TOKEN production accepts.
MIN_METRICS_TOKEN = 16
#: A current Groq production model that supports strict structured outputs.
DEFAULT_GROQ_MODEL = "openai/gpt-oss-120b"
#: A worker is alive, and its jobs are held, for this many heartbeat intervals after its last beat.
LEASE_BEATS = 3
DEV_SECRET_KEY = "dev-only-secret-key-change-me-in-production"  # noqa: S105 - refused in production

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AppSettings:
    environment: Environment = "development"
    """`development`, `test` or `production`; production enforces the safety checks."""
    debug: bool = False
    """Verbose errors in logs; refused in production."""
    log_level: str = "INFO"
    """Root log level for both processes."""
    secret_key: str = DEV_SECRET_KEY
    """Signing key for tokens and webhooks; at least 32 characters in production."""


@dataclass(frozen=True, slots=True)
class ApiSettings:
    port: int = 8000
    """Port `make run` binds the API to."""
    workers: int = 1
    """API processes the ASGI server starts."""
    allowed_origins: tuple[str, ...] = ()
    """Exact CORS origins; empty disables CORS."""
    docs_enabled: bool = True
    """Serve /schema/swagger; defaults to off in production."""
    legacy_wait: float = 25.0
    """Seconds the legacy endpoint waits for a job before answering 202."""
    max_wait: float = 30.0
    """Upper bound of `?wait=` on GET /checklists/{id}."""
    max_body_bytes: int = 64 * 1024
    """Request bodies above this many bytes get 413."""
    sse_heartbeat: float = 15.0
    """Seconds an event stream may stay silent before it sends a comment (keeps proxies from closing it)."""


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str | None = None
    """Redis URL for jobs, the Celery broker and limits; unset means `make run` embeds one.
    redis:// or rediss://, read by redis-py's rules for every client (`shared.redis_url`)."""


@dataclass(frozen=True, slots=True)
class GroqSettings:
    api_key: str | None = None
    """Groq API key; unset selects the offline provider."""
    model: str = DEFAULT_GROQ_MODEL
    """Chat model used for checklists."""
    base_url: str | None = None
    """Override the Groq endpoint (tests point it at a fake server)."""
    timeout: float = 30.0
    """Seconds one Groq call may take before it counts as a timeout."""
    max_output_tokens: int = 4096
    """`max_completion_tokens` per call (GROQ_MAX_TOKENS); reasoning tokens count against it. An
    answer cut off at this limit is asked for once more with twice the limit."""
    temperature: float = 0.2
    """Sampling temperature (GROQ_TEMPERATURE): low, for consistent checklists."""
    seed: int | None = 7
    """`seed` sent with every call, for best-effort repeatable answers (GROQ_SEED; `none` omits it)."""
    reasoning_effort: str = "low"
    """`reasoning_effort` for reasoning models (openai/gpt-oss-*): `low`, `medium`, `high`, or `none`
    to omit it (GROQ_REASONING_EFFORT). A checklist needs little deliberation, and reasoning tokens
    count against both the completion limit and the budget."""
    requests_per_window: int = 30
    """Groq calls allowed per budget window across all workers (GROQ_RPM; 0 = unlimited)."""
    tokens_per_window: int = 8000
    """Estimated tokens allowed per budget window across all workers (GROQ_TPM; 0 = unlimited)."""
    tokens_per_call: int = 2500
    """The token estimate charged for one call (GROQ_TOKENS_PER_CALL)."""
    budget_window: float = 60.0
    """The budget window in seconds (Groq's limits are per minute)."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    provider: Literal["auto", "groq", "offline"] = "auto"
    """`auto` uses Groq when a key is set, otherwise the offline generator."""
    fallback: Literal["none", "offline"] = "none"
    """`offline`: answer from the offline generator once Groq attempts are exhausted."""
    max_attempts: int = 5
    """Provider attempts per job before it fails."""
    backoff_base: float = 2.0
    """First retry delay in seconds; doubles each attempt, with full jitter."""
    backoff_cap: float = 60.0
    """Longest delay between attempts, including a server's `retry-after`."""
    concurrency: int = 16
    """Task slots per worker process (thread pool)."""
    visibility_timeout: int = 300
    """Seconds before an unacknowledged message is redelivered: the last resort behind job leases."""
    heartbeat_interval: float = 5.0
    """Seconds between worker heartbeats, which also renew the leases of the jobs a worker runs."""

    @property
    def lease(self) -> float:
        """Seconds a running job stays its worker's without a heartbeat (three beats); also how
        long a queued job's message may go unseen before the recovery sweep looks for it."""
        return self.heartbeat_interval * LEASE_BEATS

    @property
    def sweep_interval(self) -> float:
        """Seconds between recovery sweeps, which also start delayed jobs when they are due."""
        return min(1.0, self.heartbeat_interval / 2)


@dataclass(frozen=True, slots=True)
class JobSettings:
    ttl: int = 7 * 24 * 3600
    """Seconds a job is kept after its last change."""
    idempotency_ttl: int = 24 * 3600
    """Seconds an Idempotency-Key is remembered."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    access_token_ttl: int = 15 * 60
    """Seconds an access token (JWT) is valid."""
    refresh_token_ttl: int = 30 * 24 * 3600
    """Seconds a refresh token is valid (each use rotates it)."""
    issuer: str = "trip-checklist"
    """JWT `iss`."""
    audience: str = "trip-checklist-api"
    """JWT `aud`."""
    previous_secret_key: str | None = None
    """A retired signing key that still verifies tokens during a rotation (SECRET_KEY_PREVIOUS)."""
    api_key_cache_ttl: float = 30.0
    """Seconds an API process trusts its cached API-key lookup (revocations are pushed at once)."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    requests: int = 100
    """Requests per principal per window, on every authenticated endpoint."""
    window: int = 60
    """The general window, in seconds."""
    submit_requests: int = 10
    """Job submissions per principal per submit window (each costs an LLM call)."""
    submit_window: int = 60
    poll_requests: int = 600
    """Job reads per principal per window (cheap, so a higher budget)."""
    auth_ip_requests: int = 20
    """register/login/refresh calls per client address per auth window."""
    auth_ip_window: int = 60
    login_failures: int = 10
    """Failed logins per account before it is locked for `login_lock_window` seconds."""
    login_lock_window: int = 15 * 60
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs whose X-Forwarded-For is believed."""


#: The Standard Webhooks retry schedule: the delay before each attempt (the first at once).
DEFAULT_WEBHOOK_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    timeout: float = 10.0
    """Seconds one delivery attempt may take, connecting included (WEBHOOK_TIMEOUT)."""
    retry_schedule: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE
    """Seconds before each attempt of one delivery; its length is the number of attempts."""
    jitter: float = 0.1
    """Each retry delay is spread by up to this fraction, either way."""
    disable_after: float = 5 * 24 * 3600.0
    """An endpoint whose deliveries have all failed for this long is disabled."""
    allow_private: bool = False
    """Deliver to loopback and private addresses (local development and tests); refused in production."""
    max_endpoints: int = 20
    """Standing endpoints per user."""
    concurrency: int = 4
    """Deliveries one worker process runs at once; more wait in Redis, never in a task slot.
    Default: half of WORKER_CONCURRENCY, at most 4."""
    secret_overlap: float = 24 * 3600.0
    """Seconds the previous secret still signs after a rotation."""
    allow_http: bool = True
    """Accept http:// URLs (not in production, where only https:// is)."""

    @property
    def hold(self) -> float:
        """Seconds a started attempt keeps its delivery: after that it counts as lost (its worker
        died) and the recovery sweep sends it again."""
        return self.timeout + 5.0


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    log_format: Literal["json", "console"] = "console"
    """`json`: one JSON object per line (the default in production); `console`: readable lines."""
    metrics_token: str | None = None
    """Bearer token `GET /metrics` requires; required in production, open when unset elsewhere."""
    worker_metrics_port: int = 9808
    """Port each worker process serves its Prometheus metrics on; 0 turns it off."""
    worker_metrics_host: str = "127.0.0.1"
    """Address the worker's metrics port binds to (`0.0.0.0` in a container, for Prometheus)."""


@dataclass(frozen=True, slots=True)
class Settings:
    app: AppSettings = field(default_factory=AppSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    groq: GroqSettings = field(default_factory=GroqSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def use_groq(self) -> bool:
        """Whether the worker calls Groq (as opposed to the offline generator)."""
        if self.worker.provider == "auto":
            return self.groq.api_key is not None
        return self.worker.provider == "groq"

    @property
    def redis_url(self) -> str:
        if self.redis.url is None:
            raise SettingsError(["REDIS_URL is not set (make run and the tests start a local Redis)"])
        return self.redis.url


class _Reader:
    """Reads typed values from an env mapping, collecting problems instead of raising."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def _parse(self, name: str, default: T, parse: Callable[[str], T], kind: str) -> T:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not {kind}")
            return default

    def text(self, name: str, default: str) -> str:
        return self._parse(name, default, str, "text")

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self._parse(name, default, int, "an integer")
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self._parse(name, default, float, "a number")
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        return self._parse(name, default, _parse_bool, "a boolean (true/false)")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        normalised = value.upper() if choices == _LOG_LEVELS else value.lower()
        if normalised not in choices:
            self.problems.append(f"{name}={value!r} must be one of {', '.join(choices)}")
            return default
        return normalised

    def numbers(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            values = tuple(float(part) for part in raw.split(","))
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a comma-separated list of seconds")
            return default
        if any(value < 0 for value in values):
            self.problems.append(f"{name} must not contain negative delays, got {raw!r}")
        return values

    def csv(self, name: str) -> tuple[str, ...]:
        raw = self.raw(name)
        if raw is None:
            return ()
        return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate settings from `env` (default: `.env` overlaid by the process environment)."""
    if env is None:
        env = _default_env()
    read = _Reader(env)
    environment = read.choice("ENVIRONMENT", "development", _ENVIRONMENTS)
    production = environment == "production"
    app = AppSettings(
        environment=environment,  # type: ignore[arg-type]  # checked by choice()
        debug=read.boolean("DEBUG", False),
        log_level=read.choice("LOG_LEVEL", "INFO", _LOG_LEVELS),
        secret_key=read.text("SECRET_KEY", DEV_SECRET_KEY),
    )
    api = ApiSettings(
        port=read.integer("PORT", 8000, minimum=1),
        workers=read.integer("WORKERS", 1, minimum=1),
        allowed_origins=read.csv("ALLOWED_ORIGINS"),
        docs_enabled=read.boolean("DOCS_ENABLED", not production),
        legacy_wait=read.number("LEGACY_WAIT", 25.0),
        max_wait=read.number("MAX_WAIT", 30.0),
        max_body_bytes=read.integer("MAX_BODY_BYTES", 64 * 1024, minimum=1024),
        sse_heartbeat=read.number("SSE_HEARTBEAT", 15.0, minimum=0.1),
    )
    groq = GroqSettings(
        api_key=read.optional("GROQ_API_KEY"),
        model=read.text("GROQ_MODEL", DEFAULT_GROQ_MODEL),
        base_url=read.optional("GROQ_BASE_URL"),
        timeout=read.number("GROQ_TIMEOUT", 30.0, minimum=0.1),
        max_output_tokens=read.integer("GROQ_MAX_TOKENS", 4096, minimum=256),
        temperature=_temperature(read),
        seed=_seed(read),
        reasoning_effort=read.choice("GROQ_REASONING_EFFORT", "low", _REASONING_EFFORTS),
        requests_per_window=read.integer("GROQ_RPM", 30),
        tokens_per_window=read.integer("GROQ_TPM", 8000),
        tokens_per_call=read.integer("GROQ_TOKENS_PER_CALL", 2500, minimum=1),
        budget_window=read.number("GROQ_BUDGET_WINDOW", 60.0, minimum=0.1),
    )
    worker = WorkerSettings(
        provider=read.choice("LLM_PROVIDER", "auto", _PROVIDERS),  # type: ignore[arg-type]
        fallback=read.choice("LLM_FALLBACK", "none", _FALLBACKS),  # type: ignore[arg-type]
        max_attempts=read.integer("LLM_MAX_ATTEMPTS", 5, minimum=1),
        backoff_base=read.number("LLM_BACKOFF_BASE", 2.0),
        backoff_cap=read.number("LLM_BACKOFF_CAP", 60.0),
        concurrency=read.integer("WORKER_CONCURRENCY", 16, minimum=1),
        visibility_timeout=read.integer("VISIBILITY_TIMEOUT", 300, minimum=1),
        heartbeat_interval=read.number("WORKER_HEARTBEAT_INTERVAL", 5.0, minimum=0.1),
    )
    jobs = JobSettings(
        ttl=read.integer("JOB_TTL", 7 * 24 * 3600, minimum=60),
        idempotency_ttl=read.integer("IDEMPOTENCY_TTL", 24 * 3600, minimum=60),
    )
    auth = AuthSettings(
        access_token_ttl=read.integer("ACCESS_TOKEN_TTL", 15 * 60, minimum=30),
        refresh_token_ttl=read.integer("REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=60),
        issuer=read.text("JWT_ISSUER", "trip-checklist"),
        audience=read.text("JWT_AUDIENCE", "trip-checklist-api"),
        previous_secret_key=read.optional("SECRET_KEY_PREVIOUS"),
        api_key_cache_ttl=read.number("API_KEY_CACHE_TTL", 30.0),
    )
    limits = LimitSettings(
        requests=read.integer("RATE_LIMIT_REQUESTS", 100, minimum=1),
        window=read.integer("RATE_LIMIT_WINDOW", 60, minimum=1),
        submit_requests=read.integer("SUBMIT_RATE_LIMIT_REQUESTS", 10, minimum=1),
        submit_window=read.integer("SUBMIT_RATE_LIMIT_WINDOW", 60, minimum=1),
        poll_requests=read.integer("POLL_RATE_LIMIT_REQUESTS", 600, minimum=1),
        auth_ip_requests=read.integer("AUTH_RATE_LIMIT_REQUESTS", 20, minimum=1),
        auth_ip_window=read.integer("AUTH_RATE_LIMIT_WINDOW", 60, minimum=1),
        login_failures=read.integer("LOGIN_FAILURE_LIMIT", 10, minimum=1),
        login_lock_window=read.integer("LOGIN_LOCK_WINDOW", 15 * 60, minimum=1),
        trusted_proxies=_networks(read, "TRUSTED_PROXIES"),
    )
    observability = ObservabilitySettings(
        log_format=read.choice("LOG_FORMAT", "json" if production else "console", _LOG_FORMATS),  # type: ignore[arg-type]
        metrics_token=read.optional("METRICS_TOKEN"),
        worker_metrics_port=read.integer("WORKER_METRICS_PORT", 9808),
        worker_metrics_host=read.text("WORKER_METRICS_HOST", "127.0.0.1"),
    )
    webhooks = WebhookSettings(
        timeout=read.number("WEBHOOK_TIMEOUT", 10.0, minimum=0.1),
        retry_schedule=read.numbers("WEBHOOK_RETRY_SCHEDULE", DEFAULT_WEBHOOK_SCHEDULE),
        jitter=read.number("WEBHOOK_RETRY_JITTER", 0.1),
        disable_after=read.number("WEBHOOK_DISABLE_AFTER", 5 * 24 * 3600.0, minimum=1.0),
        allow_private=read.boolean("WEBHOOK_ALLOW_PRIVATE", False),
        max_endpoints=read.integer("WEBHOOK_MAX_ENDPOINTS", 20, minimum=1),
        # By default half the worker's slots at most, so that deliveries never crowd out checklists.
        concurrency=read.integer("WEBHOOK_CONCURRENCY", max(1, min(4, worker.concurrency // 2)), minimum=1),
        secret_overlap=read.number("WEBHOOK_SECRET_OVERLAP", 24 * 3600.0),
        allow_http=not production,
    )
    settings = Settings(
        app=app,
        api=api,
        redis=RedisSettings(url=_redis_url(read)),
        groq=groq,
        worker=worker,
        jobs=jobs,
        auth=auth,
        limits=limits,
        observability=observability,
        webhooks=webhooks,
    )
    problems = read.problems + _cross_checks(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def _temperature(read: _Reader) -> float:
    value = read.number("GROQ_TEMPERATURE", 0.2)
    if value > 2:
        read.problems.append(f"GROQ_TEMPERATURE must be at most 2, got {value}")
    return value


def _seed(read: _Reader) -> int | None:
    raw = read.raw("GROQ_SEED")
    if raw is not None and raw.lower() == "none":
        return None
    return read.integer("GROQ_SEED", 7)


def _networks(read: _Reader, name: str) -> tuple[str, ...]:
    networks = read.csv(name)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            read.problems.append(f"{name} entry {network!r} is not an IP network (CIDR)")
    return networks


def _redis_url(read: _Reader) -> str | None:
    """REDIS_URL, if every client of the service would read it the same way (`shared.redis_url`)."""
    url = read.optional("REDIS_URL")
    if url is not None:
        try:
            RedisEndpoint.parse(url)
        except InvalidRedisUrl as exc:
            read.problems.extend(exc.problems)
    return url


def _cross_checks(settings: Settings) -> list[str]:
    """Rules that involve several fields, and the production safety rules."""
    problems: list[str] = []
    worker = settings.worker
    if worker.backoff_cap < worker.backoff_base:
        problems.append("LLM_BACKOFF_CAP must not be below LLM_BACKOFF_BASE")
    longest_hold = 2 * settings.groq.timeout + worker.lease
    if worker.visibility_timeout <= longest_hold:
        # A worker holds a task's message while the attempt runs: a Groq call and possibly one
        # repair call. Retries and Groq-budget waits hold none (they wait in Redis), so neither
        # LLM_BACKOFF_CAP nor GROQ_BUDGET_WINDOW bounds it any more.
        problems.append(
            f"VISIBILITY_TIMEOUT must be above 2 x GROQ_TIMEOUT + 3 x WORKER_HEARTBEAT_INTERVAL "
            f"({longest_hold:g}s): a running attempt's message would be handed to a second worker"
        )
    if settings.observability.worker_metrics_port > 65535:
        problems.append(f"WORKER_METRICS_PORT must be a port number, got {settings.observability.worker_metrics_port}")
    hooks = settings.webhooks
    if not hooks.retry_schedule:
        problems.append("WEBHOOK_RETRY_SCHEDULE must list at least one delay")
    if hooks.jitter >= 1:
        problems.append("WEBHOOK_RETRY_JITTER must be below 1 (a fraction of each delay)")
    if hooks.concurrency > worker.concurrency:
        problems.append("WEBHOOK_CONCURRENCY must not exceed WORKER_CONCURRENCY: deliveries would fill every slot")
    if worker.visibility_timeout <= hooks.hold:
        problems.append(
            f"VISIBILITY_TIMEOUT must be above WEBHOOK_TIMEOUT + 5 ({hooks.hold:g}s): a running delivery's "
            "message would be handed to a second worker"
        )
    if settings.worker.provider == "groq" and settings.groq.api_key is None:
        problems.append("LLM_PROVIDER=groq needs GROQ_API_KEY")
    if settings.app.environment == "production":
        if len(settings.app.secret_key) < 32 or settings.app.secret_key == DEV_SECRET_KEY:
            problems.append("SECRET_KEY must be a unique value of at least 32 characters in production")
        previous = settings.auth.previous_secret_key
        if previous is not None and len(previous) < 32:
            problems.append("SECRET_KEY_PREVIOUS must be at least 32 characters in production")
        if settings.app.debug:
            problems.append("DEBUG must be false in production")
        if "*" in settings.api.allowed_origins:
            problems.append("ALLOWED_ORIGINS must list exact origins in production, not '*'")
        if hooks.allow_private:
            problems.append("WEBHOOK_ALLOW_PRIVATE must be false in production: it lets webhooks reach internal hosts")
        if settings.groq.api_key is None and settings.worker.provider != "offline":
            problems.append("GROQ_API_KEY is required in production unless LLM_PROVIDER=offline")
        token = settings.observability.metrics_token
        if token is None or len(token) < MIN_METRICS_TOKEN:
            # /metrics names routes, error codes and traffic: never open to the internet.
            problems.append(f"METRICS_TOKEN must be set (at least {MIN_METRICS_TOKEN} characters) in production")
    return problems


def _default_env() -> dict[str, str]:
    """`.env` in the working directory (if any), overridden by the real environment."""
    env: dict[str, str] = {}
    dotenv = Path(os.environ.get("ENV_FILE", ".env"))
    if dotenv.is_file():
        env.update({key: value for key, value in dotenv_values(dotenv).items() if value is not None})
    env.update(os.environ)
    return env


def load_settings_or_report() -> Settings | None:
    """The settings for a command (`python -m api.serve`, `ops.run_local`, `ops.check_settings`):
    None, with every problem printed to standard error, when they are invalid (it then exits 2)."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return load_settings()
