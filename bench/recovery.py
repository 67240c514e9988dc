"""`make bench BENCH_ARGS=--recovery`: how long crashed work takes to finish, with default settings.

Two crashes, each with 16 jobs in flight on a worker whose calls to the fake Groq take 2 s:
1. the worker is killed with SIGKILL while another worker is already running: time from the kill
   until every job has succeeded (the leases run out, the sweep queues the jobs again);
2. Redis is killed with SIGKILL and restarted from its append-only file 10 s later: time from
   its return until every job has succeeded, and how many Groq calls were made again.

Timings use the default WORKER_HEARTBEAT_INTERVAL (5 s, so a 15 s lease) and VISIBILITY_TIMEOUT
(300 s); the README's "Reliability" section reports them.
"""

from __future__ import annotations

import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from bench.harness import UNLIMITED, api_server, base_env, celery_worker
from shared import keys
from shared.embedded_redis import EmbeddedRedis, free_port
from tests.fakes.groq_server import FakeGroq, Reply

JOBS = 16
CALL = 2.0
FINAL = {"succeeded", "failed", "canceled"}


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _worker_up(client: redis.Redis, name: str) -> bool:
    try:
        return client.zscore(keys.WORKERS, name) is not None
    except redis.RedisError:
        return False


@contextmanager
def _stack(data: Path, fake: FakeGroq) -> Iterator[tuple[EmbeddedRedis, str, dict[str, str], httpx.Client]]:
    server = EmbeddedRedis(data, persist=True).start()
    env = base_env(
        REDIS_URL=server.url,
        GROQ_API_KEY="bench-not-secret",
        GROQ_BASE_URL=fake.base_url,
        GROQ_RPM="0",
        GROQ_TPM="0",
        WORKER_CONCURRENCY=str(JOBS),
        **UNLIMITED,
    )
    try:
        with (
            api_server(free_port(), env) as api,
            httpx.Client(base_url=api, timeout=60) as http,
        ):
            credentials = {"email": "recovery@example.com", "password": "bench pass phrase 2026"}
            http.post("/api/v1/auth/register", json=credentials).raise_for_status()
            token = http.post("/api/v1/auth/login", json=credentials).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            yield server, api, env, http
    finally:
        server.stop()


def _submit(http: httpx.Client, tag: str) -> list[str]:
    trip = {"days": 3, "transport": "plane", "occasion": "visit"}
    return [
        http.post("/api/v1/checklists", json={**trip, "location": f"Oslo {tag} {n}"}).json()["id"] for n in range(JOBS)
    ]


def _statuses(http: httpx.Client, ids: list[str]) -> list[str]:
    try:
        return [http.get(f"/api/v1/checklists/{job_id}").json().get("status", "?") for job_id in ids]
    except (httpx.HTTPError, ValueError):
        return ["?"]


def _all_done(http: httpx.Client, ids: list[str]) -> bool:
    return all(status in FINAL for status in _statuses(http, ids))


def worker_killed(fake: FakeGroq, scratch: Path) -> float:
    host = socket.gethostname()
    with _stack(scratch / "redis-worker", fake) as (server, _api, env, http):
        client = redis.Redis.from_url(server.url)
        fake.reset()
        fake.default = Reply.slow(CALL)
        with celery_worker(env, "-n", "doomed@%h") as doomed:
            _wait_for(lambda: _worker_up(client, f"doomed@{host}"), 60, "the first worker")
            ids = _submit(http, "kill")
            _wait_for(lambda: _statuses(http, ids).count("running") == JOBS, 30, "every job running")
            with celery_worker(env, "-n", "standby@%h"):
                _wait_for(lambda: _worker_up(client, f"standby@{host}"), 60, "the second worker")
                doomed.send_signal(signal.SIGKILL)
                doomed.wait()
                killed = time.monotonic()
                _wait_for(lambda: _all_done(http, ids), 120, "every job to finish")
                took = time.monotonic() - killed
        statuses = _statuses(http, ids)
    print(f"  worker SIGKILL with {JOBS} jobs, another worker running: all {sorted(set(statuses))} {took:5.1f} s later")
    return took


def redis_restarted(fake: FakeGroq, scratch: Path, outage: float = 10.0) -> float:
    with _stack(scratch / "redis-restart", fake) as (server, _api, env, http):
        client = redis.Redis.from_url(server.url)
        with celery_worker(env, "-n", "survivor@%h") as survivor:
            _wait_for(lambda: _worker_up(client, f"survivor@{socket.gethostname()}"), 60, "the worker")
            fake.reset()
            fake.default = Reply.slow(CALL)
            ids = _submit(http, "restart")
            _wait_for(lambda: _statuses(http, ids).count("running") == JOBS, 30, "every job running")
            assert server.process is not None
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            time.sleep(outage)
            server.start()
            back = time.monotonic()
            _wait_for(lambda: _all_done(http, ids), 180, "every job to finish")
            took = time.monotonic() - back
            alive = survivor.poll() is None
        statuses = _statuses(http, ids)
        calls = len(fake.received)
    print(
        f"  Redis SIGKILL, back after {outage:g} s: all {sorted(set(statuses))} {took:5.1f} s after its return; "
        f"{calls} Groq calls for {JOBS} jobs; worker alive throughout: {alive}"
    )
    return took


def recovery() -> None:
    print(f"\nRecovery with default settings ({JOBS} jobs in flight, Groq answering in {CALL:g} s):")
    fake = FakeGroq().start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            worker_killed(fake, Path(scratch))
            redis_restarted(fake, Path(scratch))
    finally:
        fake.stop()
