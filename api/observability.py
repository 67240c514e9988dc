"""What the API tells operators: request ids, HTTP metrics, one access-log line per request, and
the `/metrics` page.

`Observed` wraps the whole application (routing and error handling included, like Litestar's own
OpenTelemetry middleware), so every answer, a 404 for an unknown path and a 401 or 429 from
`api.security` too, gets an `X-Request-ID`, counts in `tripcheck_http_requests_total` by route
template (never the raw path) and status class, and writes one line on the `api.access` logger.
A long-poll (`?wait=` above 0) counts under its template plus `?wait`, so latency alerts and
panels can leave out requests that wait on purpose.

The counts, durations and in-flight requests are added up in this process (`metrics.TALLIES`)
and written into prometheus-client's values every half second by `TallyFlusher`, and before this
process renders /metrics: one mmap write per request was a tenth of a poll's CPU.

`MetricsPage` renders `/metrics`. With several API processes (uvicorn `--workers`, started by
`api.serve`) prometheus-client runs in multiprocess mode: each process writes its samples to files
in `PROMETHEUS_MULTIPROC_DIR`, and whichever process answers a scrape adds them all up. The gauges
that describe the whole service (queue depth, the oldest waiting message's age, live workers) are
read from Redis in one script just before the page is rendered, on Redis's clock, so they are
right with no worker running (`shared.job_scripts.BACKLOG`).
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import REGISTRY, Collector

from api.security import Network, client_address
from shared import job_scripts, keys, metrics
from shared.observability import REQUEST_ID_HTTP_HEADER, LogContext, bind, request_id_from, unbind
from shared.redis_mux import MultiplexedRedis, RedisReplyError, RedisUnavailable

__all__ = ["REQUEST_ID_HEADER", "MetricsPage", "Observed", "TallyFlusher", "mark_this_process_dead", "status_class"]

_ACCESS = "api.access"
access_log = logging.getLogger(_ACCESS)
log = logging.getLogger(__name__)

REQUEST_ID_HEADER = REQUEST_ID_HTTP_HEADER
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Routes a request that matched none counts under (unknown paths must not become labels).
UNMATCHED = "unmatched"
_STATUS_CLASSES = {status: f"{status // 100}xx" for status in range(100, 600)}
_WAIT = re.compile(rb"(?:^|&)wait=([^&]*)")
_CLIENT_GONE = 499


def status_class(status: int) -> str:
    return _STATUS_CLASSES.get(status, "other")


def _is_long_poll(query: bytes) -> bool:
    """`?wait=` above 0: the request waits for the job on purpose (the caller checked `wait=`)."""
    match = _WAIT.search(query)
    try:
        return match is not None and float(match.group(1)) > 0
    except ValueError:
        return False


class Observed:
    """Request ids, HTTP metrics and the access log (see the module): `wrap` the app's ASGI handler
    with it, and give Litestar its `before_send` hook, which sees each answer's status and adds the
    request id header (in the same pass over the answer as the security headers)."""

    def __init__(self, trusted_proxies: Sequence[Network]) -> None:
        self.app: ASGIApp | None = None
        self.trusted_proxies = trusted_proxies
        # Labelled children, looked up once per label set: `labels()` costs more than the increment.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def wrap(self, app: ASGIApp) -> Observed:
        self.app = app
        return self

    async def before_send(self, message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            state = scope["state"]
            state["status"] = message["status"]
            context = state.get("log_context")
            if context is not None:
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID, context.request_id.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "wrap() the app first"
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                header = value
                break
        context = LogContext(request_id=request_id_from(header))
        state = scope.setdefault("state", {})
        state["log_context"] = context
        token = bind(context)
        started = time.perf_counter()
        tallies = metrics.TALLIES
        tallies.in_flight += 1
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            # The client went away before an answer (a long-poll given up): 499, as nginx logs it,
            # not a server error.
            state.setdefault("status", _CLIENT_GONE)
            raise
        finally:
            tallies.in_flight -= 1
            # 500: what the client got if the app failed without answering.
            self._record(scope, context, state.get("status", 500), time.perf_counter() - started)
            unbind(token)

    def _record(self, scope: HTTPScope, context: LogContext, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = scope.get("path_template") or UNMATCHED
        query = scope["query_string"]
        if b"wait=" in query and _is_long_poll(query):
            route += "?wait"
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self._counters[method, route, status] = metrics.HTTP_REQUESTS.labels(
                method, route, status_class(status)
            )
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[method, route] = metrics.HTTP_DURATION.labels(method, route)
        tallies = metrics.TALLIES
        tallies.count(counter)
        tallies.observe(histogram, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        user = scope.get("user")
        if user is not None and context.owner is None:
            context.owner = user.user_id
        if context.job_id is None:
            context.job_id = scope.get("path_params", {}).get("job_id")
        milliseconds = round(seconds * 1000, 2)
        path = scope["path"]
        # The record is made here and handed to the logger, as `Logger.info(..., extra=...)` would
        # (minus its checks of the extra fields, which cost a tenth of the line).
        record = logging.LogRecord(
            _ACCESS, logging.INFO, "", 0, "%s %s %d %.2fms", (method, path, status, milliseconds), None
        )
        record.__dict__.update(
            method=method,
            route=route,
            path=path,
            status=status,
            duration_ms=milliseconds,
            client=client_address(scope, self.trusted_proxies),
        )
        access_log.handle(record)


class TallyFlusher:
    """Writes `metrics.TALLIES` into prometheus-client's values every `interval` seconds while the
    API runs (a timer on the event loop, no task), and once more at shutdown."""

    def __init__(self, interval: float = metrics.TALLY_FLUSH_INTERVAL) -> None:
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        try:
            metrics.TALLIES.flush()
        except Exception:  # a metrics file that cannot be written must not stop the timer
            log.exception("metrics: could not write this process's tallies")
        self.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        metrics.TALLIES.flush()


class _ReadFromRedis(Collector):
    """The scrape-time gauges (`shared.metrics.SCRAPE_TIME_GAUGES`) as read just before rendering."""

    def __init__(self, workers: int, queues: dict[str, tuple[int, float]]) -> None:
        self.workers = workers
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        help_of = metrics.SCRAPE_TIME_GAUGES
        name = f"{metrics.PREFIX}_queue_depth"
        depth = GaugeMetricFamily(name, help_of[name], labels=["queue"])
        name = f"{metrics.PREFIX}_queue_oldest_message_age_seconds"
        age = GaugeMetricFamily(name, help_of[name], labels=["queue"])
        for queue, (waiting, oldest) in self.queues.items():
            depth.add_metric([queue], waiting)
            age.add_metric([queue], oldest)
        name = f"{metrics.PREFIX}_workers_alive"
        yield depth
        yield age
        yield GaugeMetricFamily(name, help_of[name], value=self.workers)


#: Messages looked at from a queue's consuming end to find the oldest one whose job is known.
_TAIL = 10
_READ_TIMEOUT = 2.0


class MetricsPage:
    """Renders `/metrics`: every API process's samples, and the gauges read from Redis now."""

    def __init__(self, link: MultiplexedRedis, *, live_window: float, multiprocess_dir: str | None) -> None:
        self.link = link
        self.live_window = live_window
        self.multiprocess_dir = multiprocess_dir
        #: Each queue, and the key of the record its messages' task ids name (where `pushed` is).
        self.queues = {keys.QUEUE: keys.job(""), keys.WEBHOOK_QUEUE: keys.delivery("")}

    async def render(self) -> bytes:
        metrics.TALLIES.flush()  # this process's own requests are in the page at once
        registry = self._registry()
        from_redis = await self._read_redis()
        if from_redis is not None:
            registry.register(from_redis)
        return generate_latest(registry)

    def _registry(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:  # one process (tests run the app in their own): its registry
            registry = CollectorRegistry()
            registry.register(_Everything())
            return registry
        self._forget_dead_processes()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return registry

    def _forget_dead_processes(self) -> None:
        """Live gauges (requests in flight, open streams) of API processes that died without
        saying so (killed, crashed: uvicorn starts another) no longer count."""
        assert self.multiprocess_dir is not None
        for path in glob.glob(os.path.join(self.multiprocess_dir, "gauge_live*_*.db")):
            pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
            if not _alive(pid):
                mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]

    async def _read_redis(self) -> _ReadFromRedis | None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                reply = await self.link.run_script(
                    job_scripts.BACKLOG, [keys.WORKERS, *self.queues], [self.live_window, _TAIL, *self.queues.values()]
                )
        except (RedisUnavailable, RedisReplyError, OSError, TimeoutError) as exc:
            # The page still answers (Prometheus keeps the process's own samples); the gauges
            # read from Redis are absent until Redis answers, and RedisDown says why.
            kind = "refused" if isinstance(exc, RedisReplyError) else "unavailable"
            metrics.REDIS_ERRORS.labels("api", kind).inc()
            log.warning("metrics: could not read the queues from Redis: %s", exc)
            return None
        queues = {
            queue: (int(reply[1 + 2 * index]), float(reply[2 + 2 * index])) for index, queue in enumerate(self.queues)
        }
        return _ReadFromRedis(int(reply[0]), queues)


class _Everything(Collector):
    """The default registry's samples, to render beside the ones read from Redis."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def mark_this_process_dead(multiprocess_dir: str | None) -> None:
    """At shutdown: this process's live gauges stop counting."""
    if multiprocess_dir is not None:
        mark_process_dead(os.getpid(), multiprocess_dir)  # type: ignore[no-untyped-call]
