"""Every Prometheus metric the service exports, in one place, named one way.

All names start with `tripcheck_` and follow Prometheus conventions (`_total` counters, base
units: `_seconds`, `_bytes`). The API runs several processes: there prometheus-client's
multiprocess mode adds them up (`api/observability.py` serves them); a worker process serves its
own on `WORKER_METRICS_PORT`. Gauges that describe the whole service (queue depth, live workers)
are read from Redis when the API is scraped, so they are right even when no worker runs.

The alert rules and the Grafana dashboard in `ops/` use these names; a test checks that every
name they use is really exported by a running API and worker.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime

import redis
from prometheus_client import Counter, Gauge, Histogram

from shared.redis_mux import RedisUnavailable
from shared.schemas import Job

__all__ = [
    "AUTH_FAILURES",
    "BODY_TOO_LARGE",
    "GROQ_BUDGET_WAITS",
    "GROQ_DURATION",
    "GROQ_REQUESTS",
    "GROQ_RETRIES",
    "GROQ_TOKENS",
    "HTTP_DURATION",
    "HTTP_IN_FLIGHT",
    "HTTP_REQUESTS",
    "JOBS_FINISHED",
    "JOBS_SUBMITTED",
    "JOB_ATTEMPTS",
    "JOB_DURATION",
    "JOB_QUEUE_WAIT",
    "OFFLINE_FALLBACKS",
    "RATE_LIMITED",
    "RATE_LIMITER_ERRORS",
    "RECOVERY_ACTIONS",
    "REDIS_ERRORS",
    "SCRAPE_TIME_GAUGES",
    "SSE_STREAMS_OPEN",
    "TALLIES",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_DURATION",
    "Tallies",
    "count_redis_error",
    "observe_finished",
    "observe_started",
]

PREFIX = "tripcheck"

#: Request latency buckets (seconds): the API answers in about a millisecond; long-polls wait up to 30 s.
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Job timing buckets (seconds): an offline job takes milliseconds, a Groq job seconds, retries minutes.
_JOB_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
_CALL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

# --- HTTP (API) -------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests_total",
    "HTTP requests answered, by method, route template and status class (2xx, 4xx, ...).",
    ["method", "route", "status_class"],
)
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    f"{PREFIX}_http_requests_in_flight",
    "HTTP requests being answered right now.",
    multiprocess_mode="livesum",
)

# --- Jobs ---------------------------------------------------------------------------------------
JOBS_SUBMITTED = Counter(f"{PREFIX}_jobs_submitted_total", "Jobs accepted, by API (v1 or legacy).", ["api"])
JOBS_FINISHED = Counter(
    f"{PREFIX}_jobs_finished_total",
    "Jobs that reached a final status, by status and error code ('' when none).",
    ["status", "error_code"],
)
JOB_QUEUE_WAIT = Histogram(
    f"{PREFIX}_job_queue_wait_seconds", "Time from a job's creation to its first start.", buckets=_JOB_BUCKETS
)
JOB_DURATION = Histogram(
    f"{PREFIX}_job_duration_seconds", "Time from a job's creation to its final status.", buckets=_JOB_BUCKETS
)
JOB_ATTEMPTS = Histogram(
    f"{PREFIX}_job_attempts", "Attempts a job used, counted when it reaches a final status.", buckets=(1, 2, 3, 4, 5, 8)
)
RECOVERY_ACTIONS = Counter(
    f"{PREFIX}_recovery_actions_total",
    "What the recovery sweep did: recovered (queued again), failed, pushed (a message), restored (unacked).",
    ["action"],
)

# --- Groq (worker) ------------------------------------------------------------------------------
GROQ_REQUESTS = Counter(
    f"{PREFIX}_groq_requests_total",
    "Calls to Groq, by outcome (ok or an error code) and HTTP status ('' when there was none).",
    ["outcome", "status"],
)
GROQ_DURATION = Histogram(f"{PREFIX}_groq_request_duration_seconds", "Time a Groq call took.", buckets=_CALL_BUCKETS)
GROQ_RETRIES = Counter(f"{PREFIX}_groq_retries_total", "Attempts scheduled again, by the error's code.", ["reason"])
GROQ_TOKENS = Counter(
    f"{PREFIX}_groq_tokens_total", "Tokens Groq reported using, by kind (prompt, completion, reasoning).", ["kind"]
)
GROQ_BUDGET_WAITS = Counter(f"{PREFIX}_groq_budget_waits_total", "Jobs held back by the shared Groq budget.")
OFFLINE_FALLBACKS = Counter(
    f"{PREFIX}_offline_fallbacks_total", "Jobs answered by the offline generator after Groq attempts ran out."
)

# --- Security and limits (API) ------------------------------------------------------------------
AUTH_FAILURES = Counter(f"{PREFIX}_auth_failures_total", "Failed authentications, by reason.", ["reason"])
RATE_LIMITED = Counter(f"{PREFIX}_rate_limited_total", "Requests refused by a quota (429), by quota.", ["quota"])
RATE_LIMITER_ERRORS = Counter(
    f"{PREFIX}_rate_limiter_errors_total", "Requests let through because the rate limiter was unreachable."
)
BODY_TOO_LARGE = Counter(f"{PREFIX}_request_body_too_large_total", "Requests refused for a body over MAX_BODY_BYTES.")

# --- Push channels ------------------------------------------------------------------------------
WEBHOOK_DELIVERIES = Counter(
    f"{PREFIX}_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome (delivered, retrying, failed, refused).",
    ["outcome"],
)
WEBHOOK_DURATION = Histogram(
    f"{PREFIX}_webhook_delivery_duration_seconds", "Time a webhook delivery attempt took.", buckets=_CALL_BUCKETS
)
SSE_STREAMS_OPEN = Gauge(
    f"{PREFIX}_sse_streams_open", "Server-sent event streams open right now.", multiprocess_mode="livesum"
)

# --- Read from Redis when the API is scraped (right even when no worker runs) ----------------------
#: Name -> help of the gauges the API's /metrics computes from Redis at each scrape.
SCRAPE_TIME_GAUGES = {
    f"{PREFIX}_queue_depth": "Task messages waiting on a queue, by queue.",
    f"{PREFIX}_queue_oldest_message_age_seconds": "How long the oldest waiting message has waited, by queue.",
    f"{PREFIX}_workers_alive": "Workers whose heartbeat is recent (three WORKER_HEARTBEAT_INTERVALs).",
}

# --- Redis ----------------------------------------------------------------------------------------
REDIS_ERRORS = Counter(
    f"{PREFIX}_redis_errors_total",
    "Redis commands that failed, by process (api, worker) and kind (unavailable, refused).",
    ["process", "kind"],
)


class Tallies:
    """The API's per-request metrics, added up in plain numbers and written into their
    prometheus-client values by `flush`: every `TALLY_FLUSH_INTERVAL` seconds, before this process
    renders /metrics, and at shutdown (`api.observability.TallyFlusher`). A scrape shows a request
    within that interval; a process killed outright loses at most that interval's counts.

    Why: in multiprocess mode each `inc()` or `observe()` takes a lock, asks for the process id and
    writes into a memory-mapped file (a histogram twice); a request made five of them, which cost
    more than a tenth of a poll's CPU (README "Performance"). Here it costs a few dict operations.
    Everything runs on the event loop's thread: no lock is needed.
    """

    def __init__(self) -> None:
        #: Requests being answered by this process now (`HTTP_IN_FLIGHT` once flushed).
        self.in_flight = 0
        self._in_flight_written = 0
        self._counts: dict[Counter, float] = {}
        #: Per histogram child: observations per bucket (its bounds, +Inf last), then their sum.
        self._observed: dict[Histogram, list[float]] = {}

    def count(self, child: Counter, amount: float = 1.0) -> None:
        """`child.inc(amount)`, at the next flush (`child`: a labelled child, looked up once)."""
        self._counts[child] = self._counts.get(child, 0.0) + amount

    def observe(self, child: Histogram, value: float) -> None:
        """`child.observe(value)`, at the next flush."""
        tally = self._observed.get(child)
        if tally is None:
            tally = self._observed[child] = [0.0] * (len(_upper_bounds(child)) + 1)
        # The first bucket whose bound is >= value, as `Histogram.observe` picks it.
        tally[bisect_left(_upper_bounds(child), value)] += 1
        tally[-1] += value

    def flush(self) -> None:
        """Write what was added up since the last flush into the prometheus-client values."""
        counts, self._counts = self._counts, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        observed, self._observed = self._observed, {}
        for histogram, tally in observed.items():
            _add_observations(histogram, tally)
        if self.in_flight != self._in_flight_written:
            self._in_flight_written = self.in_flight
            HTTP_IN_FLIGHT.set(self.in_flight)


def _upper_bounds(child: Histogram) -> list[float]:
    bounds: list[float] = child._upper_bounds
    return bounds


def _add_observations(child: Histogram, tally: list[float]) -> None:
    """Add a tally of observations to a histogram child in one write per bucket, as that many
    `observe()` calls would. prometheus-client has no public call for it: this uses the child's
    bucket and sum values (`_buckets`, `_sum`, with `_upper_bounds`), as `Histogram.observe` does in
    prometheus-client 0.26; tests/unit/test_metric_tallies.py fails the day that changes."""
    buckets = child._buckets
    for index, observations in enumerate(tally[:-1]):
        if observations:
            buckets[index].inc(observations)
    child._sum.inc(tally[-1])


#: This process's tallies (the API's; a worker writes its metrics directly).
TALLIES = Tallies()
#: Seconds between two flushes of `TALLIES` (how late a scrape of another process may be).
TALLY_FLUSH_INTERVAL = 0.5


def count_redis_error(process: str, error: BaseException) -> None:
    """One failed Redis command of `process`: `unavailable` (no answer in time, no connection,
    loading) or `refused` (an error reply: full, read-only, ...)."""
    unavailable = isinstance(
        error, redis.ConnectionError | redis.TimeoutError | RedisUnavailable | OSError | TimeoutError
    )
    REDIS_ERRORS.labels(process, "unavailable" if unavailable else "refused").inc()


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def observe_started(job: Job) -> None:
    """A job's attempt started: its first start measures how long it waited in the queue."""
    if job.attempts == 1 and (waited := _seconds(job.created_at, job.started_at)) is not None:
        JOB_QUEUE_WAIT.observe(waited)


def observe_finished(job: Job) -> None:
    """A job reached its final status (counted once: only the write that made it final calls this)."""
    JOBS_FINISHED.labels(job.status, job.error.code if job.error is not None else "").inc()
    if (took := _seconds(job.created_at, job.finished_at)) is not None:
        JOB_DURATION.observe(took)
    JOB_ATTEMPTS.observe(job.attempts)
